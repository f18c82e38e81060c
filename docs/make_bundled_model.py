"""How resources/models/aa_unet_default (version 2) was made from a pretraining run's snapshots.

    .venv/bin/python docs/make_bundled_model.py RUN/model 4000,4400,4800,5200,5600,6000 \
        --cache CACHE --eval EVAL --real ../shared/data/dicom/ge_head_tilt --out AVERAGED

1. the mean of the snapshots ``RUN/model.step<N>`` of one learning-rate cycle (stochastic weight averaging);
2. BatchNorm statistics recomputed on 60 batches of 8 training crops from the cache (momentum None:
   a plain average);
3. the same evaluation as the run's (held-out generated cases and a real scan without hemorrhage, the model
   alone and with the anatomical guard), written beside the checkpoint as ``AVERAGED.eval.json``.
The card and float16 copy in resources/models were then written with the training data of both stages
and these figures (docs/models.md). Nothing here downloads anything.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ctseg_core.checkpoint import load_checkpoint, save_checkpoint
from ctseg_core.io import load_volume
from ctseg_core.preprocess import plan_from_dict
from ctseg_core.training.case_cache import CacheEntry, list_entries
from ctseg_core.training.synthetic import PretrainConfig, evaluate_generated, evaluate_real, make_sampler


def averaged(run: Path, steps: list[int]):
    models = [load_checkpoint(f"{run}.step{s}.safetensors", device="cpu") for s in steps]
    model, card = models[-1]
    states = [m.state_dict() for m, _ in models]
    model.load_state_dict({k: (sum(s[k].float() for s in states) / len(states) if v.is_floating_point() else v)
                           for k, v in states[-1].items()})
    return model, card


def recompute_batchnorm(model, card, cache: Path, batches: int = 60) -> None:
    plan = plan_from_dict(card.plan)
    cfg = PretrainConfig(out=Path("unused"), cache=cache, model_config=card.config,
                         patch=plan.patch_size or 160, batch_size=8)
    sampler = make_sampler(cfg, plan, [CacheEntry.open(p) for p in list_entries(cache)])
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for k in range(batches):
            model(sampler.batch(123, k, 8, stream=2)["image"])
    model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="the run's checkpoint path X (snapshots X.step<N> beside it)")
    ap.add_argument("steps", help="comma-separated snapshot steps of one learning-rate cycle")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--eval", type=Path, required=True, help="held-out generated cases")
    ap.add_argument("--real", type=Path, required=True, help="a real scan without hemorrhage")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    model, card = averaged(args.run, steps)
    recompute_batchnorm(model, card, args.cache)
    row = {"step": steps[-1], "swa_of": steps}
    row.update(evaluate_generated(model, card, args.eval, torch.device("cpu")))
    row.update(evaluate_real(model, card, load_volume(args.real), torch.device("cpu")))
    card.extra = dict(card.extra or {}, swa_of_steps=steps)
    save_checkpoint(model, card, args.out)
    Path(f"{args.out}.eval.json").write_text(json.dumps(row))
    print(json.dumps({k: v for k, v in row.items() if "mean" in k or "total" in k}))


if __name__ == "__main__":
    main()
