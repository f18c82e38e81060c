"""DICOM series loading speed: ctseg's loader vs SimpleITK's ImageSeriesReader vs a plain pydicom loop.

Series: the real GE head series (28 tilted slices, uneven spacing) and a generated series of 300
uncompressed 512x512 slices (copies of the real GE slices with new UIDs, axial orientation, no tilt,
0.625 mm apart, files named in shuffled order) so all three readers read the same thing.

Each reader runs ``--repeats`` times per series, the readers taking turns (files warm in the page cache);
the table shows the median wall time, its ratio to SimpleITK, and the median CPU time of the process
(all threads; less sensitive than wall time to other work on a shared machine).

    .venv/bin/python benchmarks/bench_loading.py [--repeats 5] [--slices 300]
Targets (issue 2): ctseg <= 1.5x SimpleITK and < 1 s for the 300-slice series.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parents[1]
GE_TILT = ROOT.parent / "shared" / "data" / "dicom" / "ge_head_tilt"


def make_series(folder: Path, n: int, spacing_mm: float = 0.625, source: Path = GE_TILT) -> Path:
    """Write ``n`` axial, untilted copies of the real GE slices into ``folder`` (names shuffled)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [pydicom.dcmread(p) for p in sorted(source.glob("*.dcm"))]
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    names = list(range(n))
    random.Random(0).shuffle(names)
    for k in range(n):
        ds = sources[k % len(sources)]
        uid = generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID = series, study, frame
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-125.0, -125.0, round(k * spacing_mm, 4)]
        ds.GantryDetectorTilt = 0
        ds.SliceThickness = spacing_mm
        ds.SliceLocation = round(k * spacing_mm, 4)
        ds.InstanceNumber = k + 1
        ds.save_as(folder / f"IM{names[k]:05d}", enforce_file_format=True)
    return folder


def read_ctseg(folder: Path) -> np.ndarray:
    """A cold load: the header cache (which spares a second parse after ``scan_folder``) is emptied."""
    from ctseg_core.io.dicom import load_dicom_series
    from ctseg_core.io.dicom_scan import clear_header_cache

    clear_header_cache()
    return load_dicom_series(folder).array


def read_sitk(folder: Path) -> np.ndarray:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # it warns about the GE series' uneven spacing
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayFromImage(reader.Execute())


def read_pydicom_loop(folder: Path) -> np.ndarray:
    """The plain loop: read every file fully, sort by z, stack, rescale to float32 HU."""
    slices = []
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slices.append((float(ds.ImagePositionPatient[2]), hu))
    slices.sort(key=lambda s: s[0])
    return np.stack([s[1] for s in slices])


READERS = {"ctseg": read_ctseg, "SimpleITK": read_sitk, "pydicom loop": read_pydicom_loop}


def time_once(fn, folder: Path) -> tuple[float, float, tuple]:
    """Wall time, CPU time (all threads of this process) and the output shape of one read."""
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = fn(folder)
    return time.perf_counter() - t0, time.process_time() - c0, arr.shape


def time_readers(folder: Path, repeats: int) -> dict[str, tuple[float, float, tuple]]:
    """Median wall and CPU time per reader; the readers take turns in every round, so a burst of other
    work on the machine hits all of them alike."""
    runs: dict[str, list] = {name: [] for name in READERS}
    for _ in range(repeats):
        for name, fn in READERS.items():
            runs[name].append(time_once(fn, folder))
    return {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs), rs[-1][2])
            for name, rs in runs.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ctseg_bench_") as tmp:
        generated = make_series(Path(tmp) / "generated", args.slices)
        cases = [(f"real GE tilt ({len(list(GE_TILT.glob('*.dcm')))} slices)", GE_TILT),
                 (f"generated {args.slices}x512x512", generated)]
        print(f"{'series':<28} {'reader':<14} {'median s':>9} {'x SimpleITK':>12} {'cpu s':>7}  output shape")
        for name, folder in cases:
            time_readers(folder, 1)  # warm the page cache and imports
            results = time_readers(folder, args.repeats)
            base = results["SimpleITK"][0]
            for reader, (sec, cpu, shape) in results.items():
                print(f"{name:<28} {reader:<14} {sec:>9.3f} {sec / base:>12.2f} {cpu:>7.3f}  {shape}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
