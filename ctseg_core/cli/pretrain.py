"""``ctseg pretrain-cache`` and ``ctseg pretrain``: train the starting model on generated head CTs
(see ctseg_core.training.synthetic and ctseg_core.training.case_cache)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path


# ctseg_core.losses.LOSSES and RADnet's own loss (written out: building the parser imports no torch)
LOSS_CHOICES = ("focal", "dice", "focal_dice", "hybrid", "exp_ce", "radnet")


def register(sub) -> None:
    c = sub.add_parser("pretrain-cache", help="generate head CTs into a training cache on the model grid")
    c.add_argument("--cache", required=True, type=Path, help="cache folder (created; existing cases are kept)")
    c.add_argument("--seeds", default="0:1000", help="START:STOP training seeds (STOP excluded)")
    c.add_argument("--spacing", type=float, default=1.0, help="in-plane mm of the model grid")
    c.set_defaults(func=run_cache)

    p = sub.add_parser("pretrain", help="train a model from scratch on cached generated head CTs (the bundled model)")
    p.add_argument("--out", required=True, type=Path, help="checkpoint path (X -> X.safetensors + X.json)")
    p.add_argument("--cache", required=True, type=Path, help="case cache folder (ctseg pretrain-cache)")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps to reach (a resumed run continues)")
    p.add_argument("--resume-from", type=Path, help="X.state.safetensors (exact; a changed --lr, --base-lr or "
                   "--cycle-steps applies from the saved step, and the resume event says so) or a checkpoint "
                   "(weights + step)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arch", default="aa_unet", help="any registered model (ctseg models)")
    p.add_argument("--model-config", type=json.loads, default=None,
                   help='create_model options as JSON, e.g. \'{"widths": [16, 24, 48, 80, 128, 256]}\'')
    p.add_argument("--encoder", default=None, help="timm encoder of the U-Net family (default resnest50d, the paper's)")
    p.add_argument("--encoder-args", type=json.loads, default=None,
                   help='timm options as JSON, e.g. \'{"channels": [32, 64, 128, 256], "stem_width": 16}\'')
    p.add_argument("--decoder-channels", type=lambda s: [int(v) for v in s.split(",")], default=None,
                   help="six widths, levels 1/1..1/32 (e.g. 16,32,64,128,256,256)")
    p.add_argument("--spacing", type=float, default=1.0, help="in-plane mm the model works at")
    p.add_argument("--patch", type=int, default=160, help="square crop side on the model grid (multiple of 32)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--loss", choices=LOSS_CHOICES, default=None,
                   help="training loss (default focal_dice; scan models: radnet, their own)")
    p.add_argument("--class-weight-power", type=float, default=0.5,
                   help="the loss's class weights are (1 / class frequency) ** this (0: all equal; a resumed run "
                        "with another power has its weights estimated again)")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw",
                   help="adamw with the cyclic rate, or sgd (momentum 0.9, rate /10 at 1/3 and 2/3: RADnet's)")
    p.add_argument("--slices", type=int, default=None,
                   help="slab models: slices per sample (default the model's); scan models: run length (12)")
    p.add_argument("--scan-size", type=int, default=224, help="scan models: whole slices padded/cropped to this")
    p.add_argument("--max-train-cpu-min", type=float, default=None,
                   help="stop when the training CPU time reaches this many minutes (a fixed budget)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--base-lr", type=float, default=1e-4)
    p.add_argument("--cycle-steps", type=int, default=1000, help="half-cycle of the cyclic learning rate")
    p.add_argument("--lesion-rate", type=float, default=0.5, help="share of crops centred on a lesion")
    p.add_argument("--hard-negative-rate", type=float, default=0.3, help="share centred on a hard negative")
    p.add_argument("--eval-data", type=Path, help="held-out generated cases (ctseg synth) scored at each evaluation")
    p.add_argument("--eval-real", type=Path, help="a real scan without hemorrhage: false-positive mL tracked")
    p.add_argument("--eval-every", type=int, default=0,
                   help="steps between evaluations; each keeps a copy of the weights as X.step<N>")
    p.add_argument("--snapshot-every", type=int, default=100,
                   help="steps between saves of the checkpoint X and the running state X.state.safetensors "
                        "(what --resume-from continues exactly); numbered copies are made only at evaluations")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true",
                   help="JSON lines on stdout even on a terminal (always so when stdout is not a terminal)")
    p.set_defaults(func=run)


def model_options(args, defaults: dict) -> dict:
    """create_model options: ``--model-config``, plus the U-Net family's ``--encoder``, ``--encoder-args`` and
    ``--decoder-channels`` where the architecture takes them (an error where it does not)."""
    from ctseg_core.errors import CtsegError

    config = dict(args.model_config or {})
    family = {"encoder": args.encoder, "encoder_args": args.encoder_args, "decoder_channels": args.decoder_channels}
    for key, value in family.items():
        if value is None:
            continue
        if key not in defaults:
            raise CtsegError(f"--{key.replace('_', '-')} does not apply to {args.arch} (its options: "
                             f"{', '.join(sorted(defaults))}; pass them with --model-config)")
        config[key] = value
    if "encoder" in defaults and "encoder" not in config:
        config["encoder"] = defaults["encoder"]
    return config


def run_cache(args) -> int:
    from ctseg_core.preprocess import Plan
    from ctseg_core.training.case_cache import build_entries
    from ctseg_core.training.synthetic import VAL_SEED0, training_case

    start, stop = (int(v) for v in args.seeds.split(":"))
    if not 0 <= start < stop <= VAL_SEED0:
        print(f"error: --seeds must satisfy 0 <= START < STOP <= {VAL_SEED0} (higher seeds are held out)",
              file=sys.stderr)
        return 2
    n = build_entries(args.cache, range(start, stop), Plan(spacing_mm=args.spacing), training_case,
                      progress=lambda m: print(m, flush=True))
    print(f"added {n} case(s) to {args.cache}")
    return 0


def run(args) -> int:
    from ctseg_core.terminal import EventOutput, json_output_wanted
    from ctseg_core.training.crops import CropRates
    from ctseg_core.training.synthetic import PretrainConfig, train_synthetic

    from ctseg_core.errors import CtsegError
    from ctseg_core.models import default_config, is_model

    if not is_model(args.arch):
        raise CtsegError(f"unknown architecture {args.arch!r} (see ctseg models)")
    model_config = model_options(args, default_config(args.arch))
    cfg = PretrainConfig(out=args.out, cache=args.cache, steps=args.steps, seed=args.seed, architecture=args.arch,
                         model_config=model_config, spacing_mm=args.spacing, patch=args.patch, batch_size=args.batch,
                         loss=args.loss, class_weight_power=args.class_weight_power, optimizer=args.optimizer,
                         slices=args.slices, scan_size=args.scan_size,
                         max_train_cpu_s=None if args.max_train_cpu_min is None else 60.0 * args.max_train_cpu_min,
                         lr=args.lr, base_lr=args.base_lr, cycle_steps=args.cycle_steps,
                         rates=CropRates(args.lesion_rate, args.hard_negative_rate), eval_data=args.eval_data,
                         eval_real=args.eval_real, eval_every=args.eval_every, resume_from=args.resume_from,
                         snapshot_every=args.snapshot_every, device=args.device,
                         command="ctseg " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    output = EventOutput(json_output_wanted(args.json), desc="pretraining")
    try:
        path = train_synthetic(cfg, emit=output)
    finally:
        output.close()
    print(f"saved {path}")
    return 0
