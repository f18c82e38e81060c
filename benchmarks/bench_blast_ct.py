"""BLAST-CT (the bundled 12-member DeepMedic ensemble) on one scan: the time a user waits, and where it goes.

Part 1, one tile: a DeepMedic member on one tile (output 30^3 = BLAST-CT's own patch, 45^3, 60^3) with
PyTorch (fp32, inference_mode; bf16 autocast where the CPU has native bf16) and ONNX Runtime (fp32),
calls alternating so the ratios hold on a shared machine; voxels per second of output.
Part 2, the scan: ``Predictor.predict`` on a real scan with 1 and with 4 members (engine auto: ONNX Runtime
on a CPU where installed), total seconds, seconds per member, tiles, and the volumes painted; the first
member's ONNX export (once per machine, cached) is timed apart.

    .venv/bin/python benchmarks/bench_blast_ct.py [SCAN] [--members 1,4] [--threads 2] [--skip-tiles] [--json]

SCAN defaults to ../shared/data/dicom/ge_head_tilt. Run it with ``nice`` on a shared machine and read the
load average it prints: wall times scale with what else runs. The process's CPU seconds (all its threads)
are printed too: they hardly depend on other processes, and CPU seconds / threads estimates the wall time
of the same run on an idle machine with that many cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctseg_core.checkpoint import load_checkpoint  # noqa: E402
from ctseg_core.prediction import cpu_has_native_bf16, onnxruntime_available  # noqa: E402
from ctseg_core.predictor import Predictor  # noqa: E402
from ctseg_core.resources import BLAST_CT_MODEL  # noqa: E402

GE = ROOT.parent / "shared" / "data" / "dicom" / "ge_head_tilt"


def tile_table(member, tiles=(30, 45, 60), repeats: int = 2) -> list[dict]:
    rows = []
    for out in tiles:
        size = member.input_size((out,) * 3)
        x = torch.randn(1, 1, *size)
        runners = {"torch fp32": lambda x=x: member(x)}
        if cpu_has_native_bf16():
            def bf16(x=x):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return member(x)
            runners["torch bf16"] = bf16
        if onnxruntime_available():
            import onnxruntime as ort

            from ctseg_core.volume_strategy import export_fixed_onnx

            path = Path(tempfile.mkdtemp()) / "m.onnx"
            export_fixed_onnx(member, path, tuple(x.shape))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            runners["onnxruntime fp32"] = lambda s=session, x=x: s.run(None, {"input": x.numpy()})
        best = {k: float("inf") for k in runners}
        cpu = {k: float("inf") for k in runners}
        with torch.inference_mode():
            for _ in range(repeats + 1):  # the first round warms up
                for name, run in runners.items():
                    t, c = time.perf_counter(), time.process_time()
                    run()
                    best[name] = min(best[name], time.perf_counter() - t)
                    cpu[name] = min(cpu[name], time.process_time() - c)
        for name, seconds in best.items():
            rows.append({"output": out, "input": size[0], "engine": name, "seconds": seconds,
                         "cpu_seconds": cpu[name], "kvoxels_per_cpu_s": out ** 3 / cpu[name] / 1000})
    return rows


def scan_row(scan, members: int) -> dict:
    from ctseg_core.comparison import label_volumes_ml
    from ctseg_core.io import load_volume

    volume = load_volume(scan)
    predictor = Predictor.from_checkpoint(BLAST_CT_MODEL, device="cpu", members=members)
    onnx = predictor.strategy.onnx
    export_s = 0.0
    if onnx is not None:  # export (or load) every member first, so the scan time is inference only
        t = time.perf_counter()
        for m in range(members):
            onnx.session(m)
        export_s = time.perf_counter() - t
    ticks = []
    t, cpu = time.perf_counter(), time.process_time()
    out = predictor.predict(volume, progress=lambda d, n, msg: ticks.append(n))
    seconds, cpu_seconds = time.perf_counter() - t, time.process_time() - cpu
    return {"scan": Path(scan).name, "members": members, "engine": "onnxruntime" if onnx else "torch",
            "tiles": ticks[-1] // members if ticks else 0, "seconds": seconds, "per_member_s": seconds / members,
            "cpu_seconds": cpu_seconds, "cpu_per_member_s": cpu_seconds / members,
            "export_or_load_s": export_s,
            "volumes_ml": {k: round(v, 3) for k, v in label_volumes_ml(out.labels).items() if v}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scan", nargs="?", default=str(GE))
    p.add_argument("--members", default="1,4")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-tiles", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"threads": torch.get_num_threads(), "load_average_start": os.getloadavg()}
    if not args.skip_tiles:
        model, _ = load_checkpoint(BLAST_CT_MODEL)
        report["tiles"] = tile_table(model.members[0].eval())
    report["scan"] = [scan_row(args.scan, int(m)) for m in args.members.split(",")]
    report["load_average_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"threads {report['threads']}, load average at start {report['load_average_start'][0]:.1f}")
    for row in report.get("tiles", []):
        print(f"tile {row['output']:>3}^3 (input {row['input']}^3) {row['engine']:<17} {row['seconds']:7.2f} s wall "
              f"{row['cpu_seconds']:7.2f} CPU s {row['kvoxels_per_cpu_s']:7.1f} kvoxel per CPU s")
    for row in report["scan"]:
        print(f"{row['scan']}: {row['members']} member(s), {row['engine']}, {row['tiles']} tiles: "
              f"{row['seconds']:.0f} s wall ({row['per_member_s']:.0f} s per member), {row['cpu_seconds']:.0f} CPU s "
              f"({row['cpu_per_member_s']:.0f} per member); export/load {row['export_or_load_s']:.0f} s apart; "
              f"painted {row['volumes_ml']}")
    print(f"load average at end {report['load_average_end'][0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
