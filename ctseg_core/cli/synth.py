"""``ctseg synth --n N --out DIR --seed S [--format nifti|dicom] [--thin] [--tilt DEG] [--random-scan]``: synthetic
head CTs.

Writes cases for seeds S..S+N-1 (CT + exact labels) and ``cases.json`` listing what each case holds.
"""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("synth", help="generate synthetic head CTs with exact hemorrhage labels",
                              description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1, help="number of cases (default 1)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--format", choices=("nifti", "dicom"), default="nifti")
    p.add_argument("--thin", action="store_true", help="1 mm slices instead of 5 mm")
    p.add_argument("--tilt", type=float, default=0.0, help="gantry tilt in degrees (DICOM only)")
    p.add_argument("--size", type=int, default=512, help="in-plane size in pixels (default 512)")
    p.add_argument("--classes", type=str, default=None, help="comma-separated class ids to force, e.g. 1,7")
    p.add_argument("--normal", action="store_true", help="cases without lesions")
    p.add_argument("--random-scan", action="store_true",
                   help="draw each case's scan from the training distribution (thickness, pixels, pose, kernel, "
                        "artefacts: ctseg_core.synth.sample_acquisition); --size sets the matrix")
    p.set_defaults(func=run)


def run(args) -> int:
    from ctseg_core.errors import CtsegError
    from ctseg_core.synth import generate_case, write_case

    if args.n < 1:
        raise CtsegError("--n must be at least 1")
    if args.tilt and args.format != "dicom":
        raise CtsegError("--tilt needs --format dicom")
    if args.random_scan and (args.thin or args.tilt):
        raise CtsegError("--random-scan draws the thickness and the tilt itself: leave out --thin and --tilt")
    try:
        classes = [int(c) for c in args.classes.split(",")] if args.classes else None
    except ValueError:
        raise CtsegError(f"--classes takes class ids separated by commas, e.g. 1,7 (got {args.classes!r})") from None
    if classes and not set(classes) <= set(range(1, 8)):
        raise CtsegError(f"--classes: lesion class ids are 1..7 (got {args.classes})")
    from ctseg_core.terminal import ProgressBar

    index = []
    with ProgressBar(args.n, "generating", "case") as bar:
        for seed in range(args.seed, args.seed + args.n):
            if args.random_scan:
                import numpy as np

                from ctseg_core.synth import sample_acquisition

                acq = sample_acquisition(np.random.default_rng(seed), shape_yx=(args.size, args.size))
                case = generate_case(seed, lesion_classes=classes, normal=True if args.normal else None,
                                     acquisition=acq)
            else:
                case = generate_case(seed, thin=args.thin, shape_yx=(args.size, args.size), lesion_classes=classes,
                                     normal=True if args.normal else None, tilt_deg=args.tilt)
            tilt = args.tilt if args.format == "dicom" else 0.0  # a drawn tilt goes into DICOM only
            paths = write_case(case, args.out, fmt=args.format, tilt_deg=tilt)
            index.append({"seed": seed, "ct": str(paths["ct"]), "labels": str(paths["labels"]),
                          "shape": list(case.volume.shape), "spacing": list(case.volume.spacing),
                          "lesions": case.lesions})
            names = ",".join(les["name"] for les in case.lesions) or "normal"
            bar.write(f"seed {seed}: {case.volume.shape} {names} -> {paths['ct']}")
            bar.advance()
    from ctseg_core.atomic import atomic_write_text

    atomic_write_text(Path(args.out) / "cases.json", json.dumps(index, indent=1))
    return 0
