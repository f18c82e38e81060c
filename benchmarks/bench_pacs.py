"""From the last DICOM instance received to the segmentation stored: ctseg's listener end to end.

The real GE head series (28 slices) is sent with pynetdicom's SCU to a listener running in this process
(``PacsService``: the C-STORE SCP, series-complete detection, background segmentation); the clock runs
from the C-STORE response of the last instance until the case's prediction is stored. The time splits
into the settle time (a series is complete when nothing arrived for ``--settle`` seconds), loading the
series from the inbox, the model, and storing the case. ``--repeats`` sends the series again under new
UIDs (a new case each time).

    .venv/bin/python benchmarks/bench_pacs.py [--model CKPT] [--settle 2] [--repeats 3] [--device auto]
Default model: the bundled one (``--tiny`` for the test suite's tiny model).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parents[1]
GE_TILT = ROOT.parent / "shared" / "data" / "dicom" / "ge_head_tilt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_series(files: list[Path]) -> list:
    """The series under new study/series/instance UIDs (each repeat is a new case)."""
    study, series = generate_uid(), generate_uid()
    out = []
    for f in files:
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        out.append(ds)
    return out


def send(port: int, datasets) -> float:
    """C-STORE every dataset on one association; the monotonic time of the last response."""
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    ae = AE(ae_title="BENCH")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="CTSEG")
    assert assoc.is_established
    for ds in datasets:
        assert assoc.send_c_store(ds).Status == 0
    t_last = time.monotonic()
    assoc.release()
    return t_last


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="checkpoint (default: the bundled model)")
    p.add_argument("--tiny", action="store_true", help="the test suite's tiny model at 2 mm")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    args = p.parse_args()

    from ctseg_core.pacs.config import LocalNode, PacsConfig
    from ctseg_core.pacs.segmenter import SeriesSegmenter
    from ctseg_core.pacs.service import PacsService
    from ctseg_core.resources import DEFAULT_MODEL

    work = Path(tempfile.mkdtemp(prefix="bench_pacs_"))
    model = args.model or DEFAULT_MODEL
    if args.tiny:
        import sys

        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_models import save_tiny_checkpoint

        model = save_tiny_checkpoint(work, spacing_mm=2.0)
    port = free_port()
    config = PacsConfig(local=LocalNode("CTSEG", "127.0.0.1", port, settle_s=args.settle)).check()
    segmenter = SeriesSegmenter(work / "ws", model=model, device=args.device)
    done: dict[str, float] = {}
    service = PacsService(work / "ws", config, segment=segmenter,
                          on_series=lambda e: done.setdefault(e.series_uid, time.monotonic())
                          if e.state in ("segmented", "failed") else None)
    service.start()
    segmenter.predictor()  # the model is loaded once, before the clock (a running listener has it loaded)
    files = sorted(GE_TILT.glob("*.dcm"))
    rows = []
    try:
        for _ in range(args.repeats):
            series = fresh_series(files)
            uid = series[0].SeriesInstanceUID
            t_last = send(port, series)
            while uid not in done:
                time.sleep(0.02)
            entry = service.inbox.entry(series[0].StudyInstanceUID, uid)
            assert entry.state == "segmented", entry.error
            rows.append({"total_s": done[uid] - t_last, **segmenter.timings})
    finally:
        service.stop()
    print(f"model: {model} on {segmenter.predictor().device}; series: GE head CT, {len(files)} slices; "
          f"settle time {args.settle:g} s")
    print(f"{'repeat':>6} {'last instance -> stored (s)':>28} {'settle+queue (s)':>17} {'load (s)':>9} "
          f"{'model (s)':>10} {'store (s)':>10}")
    for i, r in enumerate(rows, 1):
        rest = r["total_s"] - r["load_s"] - r["predict_s"] - r["store_s"]
        print(f"{i:>6} {r['total_s']:>28.2f} {rest:>17.2f} {r['load_s']:>9.2f} {r['predict_s']:>10.2f} "
              f"{r['store_s']:>10.2f}")
    print(f"median last instance -> segmentation stored: {statistics.median(r['total_s'] for r in rows):.2f} s")


if __name__ == "__main__":
    main()
