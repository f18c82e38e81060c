"""``ctseg convert PATH OUT.nii.gz [--series UID]``: load a scan (tilt and spacing corrected) and write it."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from ctseg_core.cli import output_file


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help="write a DICOM series (corrected) or image as NIfTI/NRRD/MHA",
                              description=__doc__.splitlines()[0])
    p.add_argument("path", type=Path, help="a DICOM folder (searched recursively) or an image file")
    p.add_argument("out", type=output_file, help="output image (.nii.gz, .nrrd, .mha)")
    p.add_argument("--series", metavar="UID", help="the series to convert (as listed by `ctseg info`)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ctseg_core.io import is_image_file, load_volume
    from ctseg_core.io.images import write_volume

    if not is_image_file(args.out):
        print(f"ctseg: error: {args.out}: output must end in .nii.gz, .nii, .nrrd or .mha", file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        volume = load_volume(args.path, series_uid=args.series)
    write_volume(volume, args.out)
    z, y, x = volume.shape
    sz, sy, sx = volume.spacing
    print(f"wrote {args.out}: {z}x{y}x{x} voxels (z, y, x), spacing {sz:.3f} x {sy:.3f} x {sx:.3f} mm")
    if volume.meta.series_uid:
        print(f"series {volume.meta.series_uid} {volume.meta.description}".rstrip())
    for note in volume.meta.notes:
        print(f"note: {note}")
    for w in caught:
        if not any(str(w.message).endswith(n) for n in volume.meta.notes):
            print(f"warning: {w.message}", file=sys.stderr)
    return 0
