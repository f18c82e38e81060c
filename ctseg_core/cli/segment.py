"""``ctseg segment INPUT -o LABELS.nii.gz``: segment a scan (DICOM folder or image file) with a model
checkpoint and print per-class volumes (mL) and scan-level detection (3+ consecutive slices). A model that
gives per-slice probabilities (RADnet) adds its triage: each slice's probability (``--json``:
``triage.slice_probabilities``, slice 1 first) and the scan's call; it draws no labels (the written
label map is empty)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ctseg_core.cli import output_file

from ctseg_core.errors import CheckpointError, CtsegError


def default_model_path() -> Path:
    from ctseg_core.resources import DEFAULT_MODEL

    return DEFAULT_MODEL


def resolve_model(path: str | Path | None) -> Path:
    """The checkpoint to use: the given one, or the bundled default (a clear error when missing)."""
    if path is not None:
        return Path(path)
    default = default_model_path()
    if not default.is_file():
        raise CheckpointError("the bundled default model is missing; pass a checkpoint with --model", default)
    return default


def _progress(done: int, total: int, message: str = "") -> None:
    print(f"\r{message}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _run(args) -> int:
    from ctseg_core.io import is_image_file, load_volume, resolve_scan_path
    from ctseg_core.io.images import write_labels
    from ctseg_core.labels import LESION_CLASSES
    from ctseg_core.metrics import class_volumes_ml, scan_detection
    from ctseg_core.predictor import Predictor

    resolve_scan_path(args.input)  # a missing input is an error before the model is loaded
    if not is_image_file(args.output):
        raise CtsegError("the label map must end in .nii.gz, .nii, .nrrd or .mha", args.output)
    predictor = Predictor.from_checkpoint(resolve_model(args.model), device=args.device, tta=args.tta,
                                           engine=args.engine)
    volume = load_volume(args.input)
    prediction = predictor.predict(volume, progress=None if args.json else _progress)
    write_labels(prediction.labels, args.output)
    volumes = class_volumes_ml(prediction.labels)
    detected = scan_detection(prediction.labels)
    triage = prediction.triage
    if args.json:
        out = {"input": str(args.input), "output": str(args.output), "model": predictor.card.summary(),
               "device": str(predictor.device),
               "classes": [{"id": c.id, "key": c.key, "name": c.name, "volume_ml": round(volumes[c.id], 3),
                            "detected": detected[c.id]} for c in LESION_CLASSES]}
        if triage is not None:
            out["triage"] = triage.to_json()
        print(json.dumps(out, indent=2))
        return 0
    print(f"model: {predictor.card.summary()} on {predictor.device}")
    print(f"labels written to {args.output}")
    if triage is not None:
        print(f"triage (per-slice hemorrhage probability; this model draws no labels): {triage.describe()}")
        print("slice probabilities: " + " ".join(f"{z + 1}:{p:.2f}" for z, p in enumerate(triage.slice_probabilities)))
    print(f"{'class':<36}{'volume (mL)':>12}  detected (3+ consecutive slices)")
    for c in LESION_CLASSES:
        print(f"{c.name:<36}{volumes[c.id]:>12.2f}  {'yes' if detected[c.id] else 'no'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("segment", help="segment a scan and print volumes and detections",
                              description=__doc__)
    p.add_argument("input", type=Path, help="DICOM folder (or a file in it) or a NIfTI/NRRD/MHA image")
    p.add_argument("-o", "--output", type=output_file, required=True, help="label map to write (e.g. labels.nii.gz)")
    p.add_argument("--model", type=Path, help="checkpoint (X.safetensors with X.json); default: the bundled model")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default %(default)s)")
    p.add_argument("--tta", action="store_true", help="average with a left-right flipped pass")
    p.add_argument("--engine", choices=("torch", "onnxruntime", "auto"), default="torch",
                   help="inference engine on the CPU (onnxruntime: faster there when installed)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)
