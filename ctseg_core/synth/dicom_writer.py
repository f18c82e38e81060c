"""Write a synthetic case as NIfTI or as a DICOM CT series (optionally gantry-tilted), with its labels.

DICOM: one CT Image Storage file per slice, Explicit VR Little Endian, int16 stored values with
RescaleIntercept -1024 (stored = HU + 1024), ImagePositionPatient / ImageOrientationPatient / PixelSpacing /
SliceThickness, deterministic UIDs from the seed. With a tilt the planes are tilted about the row (x) axis
like a gantry-tilted acquisition (column direction (0, cos t, -sin t), positions stepping along z by
thickness / cos t, GantryDetectorTilt = t) and the pixels are resampled from the orthogonal volume.
The labels are written on the grid ``ctseg_core.io.load_volume`` gives for the series.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ctseg_core.io.images import write_labels, write_volume
from ctseg_core.volume import Geometry, LabelMap

INTERCEPT = -1024.0


def write_case(case, out_dir, fmt: str = "nifti", tilt_deg: float = 0.0) -> dict[str, Path]:
    """Write ``case`` into ``out_dir``; returns the written paths ({"ct": ..., "labels": ...}).

    DICOM uses ``tilt_deg``, or when that is 0 the tilt the case was generated with (``generate_case(tilt_deg=)``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"case_{case.seed}"
    labels_path = out_dir / f"{stem}_labels.nii.gz"
    if fmt == "nifti":
        if tilt_deg:
            raise ValueError("a gantry tilt can only be written as DICOM (NIfTI holds the orthogonal volume)")
        ct_path = out_dir / f"{stem}_ct.nii.gz"
        write_volume(case.volume, ct_path)
        write_labels(case.labels, labels_path)
        return {"ct": ct_path, "labels": labels_path}
    if fmt != "dicom":
        raise ValueError(f"unknown format {fmt!r}: use 'nifti' or 'dicom'")
    tilt_deg = tilt_deg or float(getattr(case, "params", {}).get("tilt_deg", 0.0))
    series_dir = out_dir / f"{stem}_dicom"
    write_dicom_series(case, series_dir, tilt_deg)
    if tilt_deg:
        from ctseg_core.io import load_volume

        loaded = load_volume(series_dir).geometry
        write_labels(resample_labels(case.labels, loaded), labels_path)
    else:
        write_labels(case.labels, labels_path)
    return {"ct": series_dir, "labels": labels_path}


def tilted_planes(geom: Geometry, tilt_deg: float):
    """Row/column directions and the position of each tilted slice, centred on the volume's centre."""
    t = math.radians(tilt_deg)
    n, ny, nx = geom.shape
    dz, dy, dx = geom.spacing
    r = np.array([1.0, 0.0, 0.0])
    c = np.array([0.0, math.cos(t), -math.sin(t)])
    centre = geom.index_to_physical((n - 1) / 2, (ny - 1) / 2, (nx - 1) / 2)
    step = dz / math.cos(t)
    positions = []
    for k in range(n):
        pc = centre + np.array([0.0, 0.0, (k - (n - 1) / 2) * step])
        positions.append(pc - r * dx * (nx - 1) / 2 - c * dy * (ny - 1) / 2)
    return r, c, np.array(positions)


def sample_tilted(volume, tilt_deg: float) -> np.ndarray:
    """HU on the tilted planes (linear interpolation; outside the volume: air)."""
    geom = volume.geometry
    n, ny, nx = geom.shape
    dz, dy, dx = geom.spacing
    r, c, pos = tilted_planes(geom, tilt_deg)  # rows keep the volume's x grid: only (y, z) are interpolated
    out = np.full((n, ny, nx), INTERCEPT, np.float32)
    j = np.arange(ny)
    for k in range(n):
        pts = pos[k][None, :] + j[:, None] * dy * c[None, :]  # (ny, 3): first pixel of each row
        idx = np.array([geom.physical_to_index(p) for p in (pts[0], pts[-1])])  # linear in j: interpolate ends
        kk = np.linspace(idx[0][0], idx[1][0], ny)
        jj = np.linspace(idx[0][1], idx[1][1], ny)
        k0 = np.floor(kk).astype(int)
        j0 = np.floor(jj).astype(int)
        fk, fj = (kk - k0)[:, None].astype(np.float32), (jj - j0)[:, None].astype(np.float32)
        ok = (k0 >= 0) & (k0 + 1 < n) & (j0 >= 0) & (j0 + 1 < ny)
        k0c, j0c = np.clip(k0, 0, n - 2), np.clip(j0, 0, ny - 2)
        a = volume.array
        row = ((a[k0c, j0c] * (1 - fj) + a[k0c, j0c + 1] * fj) * (1 - fk)
               + (a[k0c + 1, j0c] * (1 - fj) + a[k0c + 1, j0c + 1] * fj) * fk)
        out[k][ok] = row[ok]
    return np.rint(out)


def resample_labels(labels: LabelMap, target: Geometry) -> LabelMap:
    """Nearest-neighbour labels on another grid (physical space)."""
    import SimpleITK as sitk

    from ctseg_core.volume import to_sitk

    src = to_sitk(labels.array, labels.geometry)
    ref = to_sitk(np.zeros(target.shape, np.uint8), target)
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return LabelMap(sitk.GetArrayFromImage(out).astype(np.uint8), target)


def _uid(seed: int, *parts) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["ctseg-synth", str(seed)] + [str(p) for p in parts])


def write_dicom_series(case, series_dir: Path, tilt_deg: float = 0.0) -> list[Path]:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    from ctseg_core.atomic import atomic_path

    geom = case.volume.geometry
    n, ny, nx = geom.shape
    dz, dy, dx = geom.spacing
    if abs(tilt_deg) > 0.0:
        hu = sample_tilted(case.volume, tilt_deg)
        r, c, pos = tilted_planes(geom, tilt_deg)
    else:
        hu = case.volume.array
        r, c = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
        pos = np.array([geom.index_to_physical(k, 0, 0) for k in range(n)])
    stored = np.clip(np.rint(hu - INTERCEPT), -32768, 32767).astype(np.int16)
    study, series, frame = _uid(case.seed, "study"), _uid(case.seed, "series", tilt_deg), _uid(case.seed, "frame")
    series_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        ds = Dataset()
        sop = _uid(case.seed, "sop", tilt_deg, k)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.Manufacturer = "CT", "ctseg synthetic"
        ds.PatientName, ds.PatientID = f"SYNTH^{case.seed}", f"SYNTH{case.seed:06d}"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260101"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 2, k + 1
        ds.SeriesDescription = f"synthetic head CT seed {case.seed}" + (f" tilt {tilt_deg:g}" if tilt_deg else "")
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.BodyPartExamined, ds.KVP = "HEAD", 120
        ds.ImagePositionPatient = [f"{x:.4f}" for x in pos[k]]
        ds.ImageOrientationPatient = [f"{x:.6f}" for x in np.concatenate([r, c])]
        ds.PixelSpacing = [f"{dy:.6f}", f"{dx:.6f}"]
        ds.SliceThickness = f"{float(getattr(case, 'params', {}).get('slice_thickness', dz)):.3f}"
        ds.SliceLocation = f"{pos[k][2]:.4f}"
        ds.GantryDetectorTilt = f"{tilt_deg:.2f}"
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{INTERCEPT:g}", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "80"
        ds.PixelData = stored[k].tobytes()
        path = series_dir / f"IM{k + 1:04d}.dcm"
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        paths.append(path)
    return paths
