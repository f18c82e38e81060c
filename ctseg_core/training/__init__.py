"""Local fine-tuning on corrected cases (docs/learning.md).

- ``recipe``: the paper's recipe (focal loss, AdamW, cyclic LR, bf16, augmentation), what to do with
  unreviewed slices and the weight of corrected voxels, and ``default_strategy``;
- ``dataset``: 2.5D samples from the plan on reviewed slices with voxel weights, lesion over-sampling
  (``StepBatchSampler``), crops of the plan's patch size;
- ``validation_set``: the workspace's frozen, stratified validation set (``validation.json``);
- ``promotion``: Dice through the real ``Predictor`` and the promotion rule;
- ``augment``: MONAI dictionary transforms, seeded per sample;
- ``trainer``: ``FineTuner``, a loop of small hooks with callbacks and a pause between steps;
- ``events``: the typed events of a run and the protocol version;
- ``state``: the resumable training-state file (safetensors, JSON metadata, no pickle);
- ``distributed``: torchrun / DistributedDataParallel helpers;
- ``run``: ``run_training(TrainRequest, emit)``, one run end to end, and ``rescore`` (used by ``ctseg train``).
"""
