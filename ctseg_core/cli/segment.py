"""``ctseg segment INPUT -o LABELS.nii.gz [--model NAME|CKPT] [--members N]``: segment a scan (DICOM
folder or image file) with a bundled model (``aa_unet``, the default; ``blast_ct``, BLAST-CT's ensemble)
or a checkpoint, and print per-class volumes (mL) and scan-level detection (3+ consecutive slices).
Review labels a model drew (unassigned extra-axial blood, oedema) are listed when present.
A model that gives per-slice probabilities (RADnet) adds its triage: each slice's probability (``--json``:
``triage.slice_probabilities``, slice 1 first) and the scan's call; it draws no labels (the written
label map is empty)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from ctseg_core.cli import output_file

from ctseg_core.errors import CheckpointError, CtsegError


def default_model_path() -> Path:
    from ctseg_core.resources import DEFAULT_MODEL

    return DEFAULT_MODEL


def resolve_model(path: str | Path | None) -> Path:
    """The checkpoint to use: a bundled model's (by name), the given one, or the bundled default (a clear
    error when missing)."""
    from ctseg_core.resources import bundled_models, model_path

    if path is not None:
        path = model_path(path)
        if str(path) in {str(p) for p in bundled_models().values()} and not path.is_file():
            raise CheckpointError("the bundled model is missing from this installation", path)
        return path
    default = default_model_path()
    if not default.is_file():
        raise CheckpointError("the bundled default model is missing; pass a checkpoint with --model", default)
    return default


def predictor_options(args) -> dict:
    """The Predictor options given on the command line (only those set: each model kind takes its own)."""
    options = {}
    if getattr(args, "tta", False):
        options["tta"] = True
    if getattr(args, "engine", None):
        options["engine"] = args.engine
    if getattr(args, "members", None):
        options["members"] = args.members
    if getattr(args, "no_guard", False):
        options["guard"] = None
    else:
        own = {name: getattr(args, name) for name in ("piece_confidence", "type_share")
               if getattr(args, name, None) is not None}
        if own:  # the card's value for the rest (Guard.for_card)
            from ctseg_core.guard import Guard

            options["guard"] = Guard(min_piece_confidence=own.get("piece_confidence"),
                                     min_type_share=own.get("type_share"))
    return options


def _number(text: str, fits, wanted: str) -> float:
    """An argument parsed as a number for which ``fits(value)`` holds, else the parser's error naming ``wanted``."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")  # fits nothing
    if not fits(value):
        raise argparse.ArgumentTypeError(f"{wanted}, not {text!r}")
    return value


def _threshold(text: str) -> float:
    return _number(text, lambda v: 0 <= v < 1, "a mean probability from 0 to below 1")


def _share(text: str) -> float:
    return _number(text, lambda v: v == 0 or 0.5 <= v <= 1, "0 (off) or a share from 0.5 to 1")


def add_guard_arguments(p) -> None:
    """--no-guard and --piece-confidence, as ``predictor_options`` reads them."""
    p.add_argument("--no-guard", action="store_true",
                   help="slice models: the model's labels as they are, without the anatomical guard (which removes "
                        "labels outside the cranial cavity, at CT numbers implausible for the class, pieces under "
                        "0.01 mL and pieces the model is unsure of, and gives touching extra-axial blood one type; on "
                        "by default)")
    p.add_argument("--piece-confidence", type=_threshold, metavar="P",
                   help="the guard's last rule: remove each 3-D piece whose mean probability of its class is under P "
                        "(0: keep them all; default: the value on the model card, none where it names none)")
    p.add_argument("--type-share", type=_share, metavar="S",
                   help="the guard's one-type rule: touching subdural, epidural and chronic subdural blood takes the "
                        "type that holds at least the share S of its probability (0: keep the model's types; "
                        "default: the value on the model card, none where it names none)")


def _run(args) -> int:
    from ctseg_core.findings import compute_findings
    from ctseg_core.io import is_image_file, load_volume, resolve_scan_path
    from ctseg_core.io.images import write_labels
    from ctseg_core.predictor import Predictor

    resolve_scan_path(args.input)  # a missing input is an error before the model is loaded
    if not is_image_file(args.output):
        raise CtsegError("the label map must end in .nii.gz, .nii, .nrrd or .mha", args.output)
    predictor = Predictor.from_checkpoint(resolve_model(args.model), device=args.device, **predictor_options(args))
    from ctseg_core.terminal import ProgressBar

    volume = load_volume(args.input)
    with ProgressBar(volume.shape[0], "segmenting", "slice", enabled=not args.json) as bar:
        prediction = predictor.predict(volume, progress=bar.callback)
    write_labels(prediction.labels, args.output)
    findings = compute_findings(prediction.labels, source="prediction", scan=str(args.input),
                                model=predictor.describe())
    triage, guard = prediction.triage, getattr(prediction, "guard_report", None)
    if args.json:
        out = {
            "input": str(args.input), "output": str(args.output), "model": predictor.describe(),
            "device": str(predictor.device),
            "classes": [{"id": c.class_id, "key": c.key, "name": c.name, "volume_ml": round(c.volume_ml, 3),
                         "detected": c.positive, "hemorrhage": c.hemorrhage} for c in findings.classes],
        }
        if triage is not None:
            out["triage"] = triage.to_json()
        if guard is not None:  # what the anatomical guard removed, mL per rule
            out["guard"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(guard).items()}
        print(json.dumps(out, indent=2))
        return 0
    print(f"model: {predictor.describe()} on {predictor.device}")
    print(f"labels written to {args.output}")
    if guard is not None:
        print(guard.describe())
    if triage is not None:
        print(f"triage (per-slice hemorrhage probability; this model draws no labels): {triage.describe()}")
        print("slice probabilities: " + " ".join(f"{z + 1}:{p:.2f}" for z, p in enumerate(triage.slice_probabilities)))
    print(f"{'class':<44}{'volume (mL)':>12}  detected (3+ consecutive slices)")
    for c in findings.classes:
        note = "" if c.hemorrhage else "  (not hemorrhage)"
        print(f"{c.name:<44}{c.volume_ml:>12.2f}  {'yes' if c.positive else 'no'}{note}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("segment", help="segment a scan and print volumes and detections",
                              description=__doc__)
    p.add_argument("input", type=Path, help="DICOM folder (or a file in it) or a NIfTI/NRRD/MHA image")
    p.add_argument("-o", "--output", type=output_file, required=True, help="label map to write (e.g. labels.nii.gz)")
    p.add_argument("--model", help="aa_unet (the bundled default), blast_ct (BLAST-CT's real-data ensemble), "
                                   "or a checkpoint (X.safetensors with X.json)")
    p.add_argument("--members", type=int, help="ensemble members to run (blast_ct: 1-12, default all 12; "
                                                "fewer is faster and less accurate)")
    add_guard_arguments(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default %(default)s)")
    p.add_argument("--tta", action="store_true", help="average with a left-right flipped pass")
    p.add_argument("--engine", choices=("torch", "onnxruntime", "auto"),
                   help="inference engine on the CPU (onnxruntime: faster there when installed)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)
