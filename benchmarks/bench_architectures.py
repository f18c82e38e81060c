"""Every registered 2-D architecture (slice, slab and scan models) through the Predictor on one generated scan:
time per slice, parameters and FLOPs per slice, side by side (the same volume, the same plan: 1 mm grid, whole
slices, guard off). Volume models (BLAST-CT's DeepMedic) have their own: benchmarks/bench_blast_ct.py.

Each model runs at its default configuration with random weights (speed does not depend on training) or,
with ``--configs budget``, at the smaller configurations of the comparison in docs/models.md ("Other
architectures"). Models run in turn, ``--repeats`` times each, and the fastest run counts (the estimate least
inflated by other processes on a shared machine).

    .venv/bin/python benchmarks/bench_architectures.py [--configs default|budget] [--slices 8] [--repeats 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctseg_core.checkpoint import ModelCard  # noqa: E402
from ctseg_core.models import create_model, list_models, model_info, model_kind  # noqa: E402
from ctseg_core.predictor import Predictor  # noqa: E402
from ctseg_core.preprocess import Plan  # noqa: E402

BUDGET_CONFIGS = {  # the comparison's configurations (docs/models.md, Other architectures)
    "aa_unet": {"encoder": "resnest14d"}, "rsu": {"encoder": "resnest14d"}, "rsu_s": {"encoder": "resnest14d"},
    "rsu_c": {"encoder": "resnest14d"}, "resnet50_unet": {"encoder": "resnet18d"},
    "focusnetpp": {"widths": [16, 24, 48, 80, 128, 256], "head_channels": [64, 32, 16]},
    "rsanet": {"filters": [16, 32, 64, 128, 256]}, "radnet": {},
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", choices=("default", "budget"), default="default")
    p.add_argument("--slices", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from ctseg_core.synth import generate_case

    volume = generate_case(950000, n_slices=args.slices).volume  # a held-out seed, 512x512 at ~0.45 mm
    rows = []
    for name in [n for n in list_models() if model_kind(n) != "volume"]:
        config = BUDGET_CONFIGS.get(name, {}) if args.configs == "budget" else {}
        torch.manual_seed(0)
        model = create_model(name, **config)
        plan = Plan(spacing_mm=1.0, adjacent_slices=1 if model_kind(name) == "slab" else 3)
        predictor = Predictor(model, ModelCard.for_model(model, plan=plan.to_dict()), device="cpu", guard=None)
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            predictor.predict(volume)
            best = min(best, time.perf_counter() - t)
        info = model_info(name, **config)
        rows.append({"model": name, "kind": info.kind, "parameters_m": round(info.parameters / 1e6, 2),
                     "gflops_per_512_slice": round(info.flops_per_slice / 1e9, 1),
                     "s_per_slice": round(best / volume.shape[0], 3)})
    if args.json:
        print(json.dumps({"configs": args.configs, "threads": torch.get_num_threads(), "rows": rows}, indent=2))
        return 0
    print(f"{args.configs} configurations, {volume.shape[0]} slices of 512x512 on a 1 mm grid, "
          f"{torch.get_num_threads()} threads, fastest of {args.repeats}")
    print(f"{'model':<15}{'kind':<7}{'params (M)':>11}{'GFLOPs/512 slice':>18}{'s/slice':>9}")
    for r in rows:
        print(f"{r['model']:<15}{r['kind']:<7}{r['parameters_m']:>11.2f}{r['gflops_per_512_slice']:>18.1f}"
              f"{r['s_per_slice']:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
