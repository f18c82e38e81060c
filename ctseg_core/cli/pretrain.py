"""``ctseg pretrain``: train the starting model on generated head CTs (see ctseg_core.training.synthetic)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("pretrain", help="train aa_unet from scratch on generated head CTs (the bundled model)")
    p.add_argument("--out", required=True, type=Path, help="checkpoint path (X -> X.safetensors + X.json)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder", default="resnest50d", help="timm encoder (resnest50d is the paper's)")
    p.add_argument("--spacing", type=float, default=1.0, help="in-plane mm the model works at")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--snapshot-every", type=int, default=100)
    p.add_argument("--json", action="store_true",
                   help="JSON lines on stdout even on a terminal (always so when stdout is not a terminal)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ctseg_core.terminal import EventOutput, json_output_wanted
    from ctseg_core.training.synthetic import SyntheticConfig, train_synthetic

    cfg = SyntheticConfig(out=args.out, steps=args.steps, seed=args.seed, encoder=args.encoder,
                          spacing_mm=args.spacing, batch_size=args.batch, lr=args.lr, device=args.device,
                          snapshot_every=args.snapshot_every,
                          command="ctseg " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    output = EventOutput(json_output_wanted(args.json), desc="pretraining")
    try:
        path = train_synthetic(cfg, emit=output)
    finally:
        output.close()
    print(f"saved {path}")
    return 0
