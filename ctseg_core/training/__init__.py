"""Local fine-tuning on corrected cases.

- ``recipe``: the paper's recipe (focal loss, AdamW, cyclic LR, bf16, augmentation) and ``default_strategy``;
- ``dataset``: 2.5D samples from the plan, split by case, lesion over-sampling (``StepBatchSampler``);
- ``augment``: MONAI dictionary transforms, seeded per sample;
- ``trainer``: ``FineTuner``, a loop of small hooks;
- ``state``: the resumable training-state file (safetensors, JSON metadata, no pickle);
- ``distributed``: torchrun / DistributedDataParallel helpers;
- ``run``: ``run_training(TrainRequest, emit)``, one run end to end (used by ``ctseg train``).
"""
