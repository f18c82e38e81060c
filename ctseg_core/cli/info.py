"""``ctseg info PATH [--json]``: the series found in a DICOM folder (or an image file), and what was skipped.

With ``--json`` exactly one JSON object is printed: {"series": [...], "skipped": [{"path", "reason"}]}.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ctseg_core.io import resolve_scan_path


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="list the image series in a DICOM folder or image file",
                              description=__doc__.splitlines()[0])
    p.add_argument("path", type=Path, help="a DICOM folder (searched recursively), a file in it, or a NIfTI/NRRD/MHA file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def scan_path(path: Path):
    """A FolderScan for a DICOM folder (or the folder of a DICOM file, that file's series selected), or one
    pseudo-series for an image file. A path that does not exist is an error naming it."""
    from ctseg_core.io.dicom import FolderScan, scan_folder, series_of_file

    where = resolve_scan_path(path)
    if where.kind == "image":
        return FolderScan([image_file_series(where.file)], [])
    with warnings.catch_warnings():  # problems are listed in "skipped"; keep stdout/stderr clean
        warnings.simplefilter("ignore")
        scan = scan_folder(where.folder)
    if where.file is not None:
        scan.select(series_of_file(scan, where.file))
    return scan


def image_file_series(path: Path):
    """A NIfTI/NRRD/MHA file described as one series (header only)."""
    import SimpleITK as sitk

    from ctseg_core.errors import LoadError
    from ctseg_core.io.dicom import SeriesInfo
    from ctseg_core.io.nifti_header import check_nifti, is_nifti

    if is_nifti(path):
        check_nifti(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise LoadError("not a readable NIfTI/NRRD/MHA image", path) from exc
    size, spacing = reader.GetSize(), reader.GetSpacing()
    if len(size) != 3:
        raise LoadError(f"expected a 3-D image, got {len(size)}-D", path)
    direction = np.asarray(reader.GetDirection()).reshape(3, 3)
    normal = direction[:, 2]
    tilt = float(np.degrees(np.arccos(np.clip(abs(normal[2]), 0, 1))))
    return SeriesInfo(series_uid=path.name, modality="", description=path.name, n_slices=size[2], rows=size[1],
                      cols=size[0], pixel_spacing_mm=(spacing[1], spacing[0]),
                      slice_spacing_mm=(spacing[2], spacing[2]), gantry_tilt_deg=0.0, is_axial_ct=True,
                      selected=True, files=[path],
                      notes=["image file: one volume, no DICOM metadata (modality and acquisition tilt unknown)",
                             f"slice normal {tilt:.1f}° from the patient's z axis"])


def run(args) -> int:
    scan = scan_path(args.path)
    if args.json:
        print(json.dumps(scan.to_json()))
        return 0
    print(format_table(scan))
    return 0


def format_table(scan) -> str:
    head = f"{'':1} {'modality':<8} {'slices':>6} {'rows x cols':>11} {'pixel mm':>11} {'spacing mm':>13} {'tilt°':>7}  description / series UID"
    lines = [head, "-" * len(head)]
    for s in scan.series:
        lo, hi = s.slice_spacing_mm
        spacing = f"{lo:.2f}" if abs(hi - lo) < 0.005 else f"{lo:.2f}-{hi:.2f}"
        pixel = f"{s.pixel_spacing_mm[0]:.3f}x{s.pixel_spacing_mm[1]:.3f}"
        lines.append(f"{'*' if s.selected else ' ':1} {s.modality or '?':<8} {s.n_slices:>6} {f'{s.rows} x {s.cols}':>11} "
                     f"{pixel:>11} {spacing:>13} {s.gantry_tilt_deg:>+7.2f}  {s.description or '(no description)'}")
        lines.append(f"{'':59}{s.series_uid}")
        lines.extend(f"{'':61}- {n}" for n in s.notes)
    if scan.skipped:
        lines.append(f"skipped {len(scan.skipped)} file(s):")
        lines.extend(f"  {k.path}: {k.reason}" for k in scan.skipped)
    lines.append("* = the series that is opened by default (or --series UID)")
    return "\n".join(lines)
