"""Inference speed of the All Attention U-Net against its ResNeSt50 encoder alone, side by side.

One run prints parameters, FLOPs (3x512x512), time per slice at batch 1 and at the best batch for the
whole ``aa_unet`` and for the encoder alone, the ratio between them for each speed-up tried
(inference_mode, channels_last, bf16 autocast where the CPU has native bf16, TorchScript freeze with
oneDNN fusions, torch.compile, ONNX Runtime), the time to the first slice through ``Predictor.predict``,
and the process's peak memory. Calls of the two models alternate, so the ratios hold on a shared,
noisy machine even where absolute times do not.

    .venv/bin/python benchmarks/bench_inference.py [--threads 2] [--repeats 5] [--skip compile,onnx] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctseg_core.checkpoint import ModelCard  # noqa: E402
from ctseg_core.models import count_flops, count_parameters, create_model  # noqa: E402
from ctseg_core.prediction import cpu_has_native_bf16  # noqa: E402
from ctseg_core.predictor import Predictor  # noqa: E402
from ctseg_core.volume import Volume  # noqa: E402

VARIANTS = ("no_grad", "inference_mode", "channels_last", "bf16", "jit_freeze", "compile", "onnx")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_pair(run_a, run_b, repeats: int) -> tuple[float, float, float]:
    """(min seconds of a, min seconds of b, median of the paired ratios a/b), the two called alternately
    after one warm-up call each. The minimum is the estimate least inflated by other processes; the
    ratio of calls made back to back is the number that holds on a shared machine."""
    run_a(), run_b()
    ta, tb = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        run_a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        run_b()
        tb.append(time.perf_counter() - t)
    return min(ta), min(tb), statistics.median(a / b for a, b in zip(ta, tb))


def eager_runner(module, x, mode="inference_mode", autocast=None):
    ctx = torch.inference_mode if mode == "inference_mode" else torch.no_grad

    def run():
        with ctx(), (torch.autocast("cpu", dtype=autocast) if autocast else contextlib.nullcontext()):
            return module(x)
    return run


def variant_runners(name, full, enc, x):
    """(full runner, encoder runner, note) for one speed-up, or None where it does not apply."""
    if name == "no_grad":
        return eager_runner(full, x, "no_grad"), eager_runner(enc, x, "no_grad"), ""
    if name == "inference_mode":
        return eager_runner(full, x), eager_runner(enc, x), ""
    if name == "channels_last":
        xc = x.contiguous(memory_format=torch.channels_last)
        fc = create_model("aa_unet").eval().to(memory_format=torch.channels_last)
        fc.load_state_dict(full.state_dict())
        return eager_runner(fc, xc), eager_runner(fc.encoder, xc), ""
    if name == "bf16":
        if not cpu_has_native_bf16():
            return None
        with torch.inference_mode():
            ref = torch.softmax(full(x), 1)
            low = torch.softmax(eager_runner(full, x, autocast=torch.bfloat16)().float(), 1)
        note = f"max |p_bf16 - p_fp32| = {float((ref - low).abs().max()):.3f}"
        return eager_runner(full, x, autocast=torch.bfloat16), eager_runner(enc, x, autocast=torch.bfloat16), note
    if name == "jit_freeze":
        t = time.perf_counter()
        with torch.inference_mode():
            fj = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(full, x, check_trace=False)))
            ej = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(_EncoderSum(enc).eval(), x,
                                                                                  check_trace=False)))
        return eager_runner(fj, x), eager_runner(ej, x), f"trace+freeze {time.perf_counter() - t:.0f} s"
    if name == "compile":
        t = time.perf_counter()
        fc, ec = torch.compile(full), torch.compile(enc)
        with torch.inference_mode():
            fc(x), ec(x)
        return eager_runner(fc, x), eager_runner(ec, x), f"compile {time.perf_counter() - t:.0f} s"
    if name == "onnx":
        return onnx_runners(full, enc, x)
    raise ValueError(name)


class _EncoderSum(torch.nn.Module):
    """The encoder with its five outputs as a tuple (TorchScript traces tuples, not lists)."""

    def __init__(self, enc):
        super().__init__()
        self.enc = enc

    def forward(self, x):
        return tuple(self.enc(x))


def onnx_runners(full, enc, x):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    tmp = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    sessions = []
    for module, name in ((full, "full"), (_EncoderSum(enc).eval(), "enc")):
        path = tmp / f"{name}.onnx"
        torch.onnx.export(module, (x,), str(path), opset_version=18, dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sessions.append(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]))
    feed = x.numpy()
    runs = [lambda s=s: s.run(None, {s.get_inputs()[0].name: feed}) for s in sessions]
    return runs[0], runs[1], f"export+load {time.perf_counter() - t:.0f} s"


def first_slice_times(model, size: int, depth: int = 9) -> dict:
    """Time from predict() to the first on_slice, and per slice overall, for a cold and a warm Predictor."""
    rng = np.random.default_rng(0)
    vol = Volume.from_array(rng.normal(30, 20, (depth, size, size)).astype(np.float32),
                            spacing=(5.0, 0.49, 0.49))
    card = ModelCard.for_model(model)
    out = {}
    for label in ("cold", "warm"):
        predictor = Predictor(model, card, device="cpu")
        t0 = time.perf_counter()
        first = []
        predictor.predict(vol, start_slice=depth // 2,
                          on_slice=lambda z, lab, p: first or first.append(time.perf_counter() - t0))
        total = time.perf_counter() - t0
        out[label] = {"first_slice_s": first[0], "per_slice_s": total / depth,
                      "batch_size": predictor.strategy.auto_batch_size((size, size))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", default="1,2,4")
    ap.add_argument("--skip", default="", help=f"comma list of variants to skip ({', '.join(VARIANTS)})")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report = {"threads": args.threads, "size": args.size, "torch": torch.__version__,
              "cpu_native_bf16": cpu_has_native_bf16()}

    full = create_model("aa_unet").eval()
    enc = full.encoder
    shape = (1, 3, args.size, args.size)
    report["aa_unet"] = {"parameters": count_parameters(full), "gflops": count_flops(full, shape) / 1e9}
    report["encoder"] = {"parameters": count_parameters(enc), "gflops": count_flops(enc, shape) / 1e9}
    _say(args, f"aa_unet: {report['aa_unet']['parameters'] / 1e6:.2f} M parameters, "
               f"{report['aa_unet']['gflops']:.1f} GFLOPs at 3x{args.size}x{args.size}; encoder alone "
               f"{report['encoder']['parameters'] / 1e6:.2f} M, {report['encoder']['gflops']:.1f} GFLOPs; "
               f"{args.threads} threads, torch {torch.__version__}, native bf16: {report['cpu_native_bf16']}")

    # batch sweep (inference_mode, as the predictor runs on CPU)
    _say(args, "\ntimes: minimum over repeats; ratio: median of aa_unet/encoder over back-to-back pairs")
    _say(args, f"\n{'batch':>5} {'aa_unet s/slice':>16} {'encoder s/slice':>16} {'ratio':>6}")
    sweep = {}
    for b in (int(v) for v in args.batches.split(",")):
        x = torch.randn(b, 3, args.size, args.size)
        tf, te, ratio = time_pair(eager_runner(full, x), eager_runner(enc, x), args.repeats)
        sweep[b] = {"aa_unet_s_per_slice": tf / b, "encoder_s_per_slice": te / b, "ratio": ratio}
        _say(args, f"{b:>5} {tf / b:>16.3f} {te / b:>16.3f} {ratio:>6.2f}")
    best_full = min(sweep, key=lambda b: sweep[b]["aa_unet_s_per_slice"])
    best_enc = min(sweep, key=lambda b: sweep[b]["encoder_s_per_slice"])
    report["batches"] = sweep
    report["best_batch"] = {"aa_unet": best_full, "encoder": best_enc}
    _say(args, f"best batch: aa_unet {best_full} ({sweep[best_full]['aa_unet_s_per_slice']:.3f} s/slice), "
               f"encoder {best_enc} ({sweep[best_enc]['encoder_s_per_slice']:.3f} s/slice)")

    # speed-ups at batch 1
    x = torch.randn(1, 3, args.size, args.size)
    skip = set(filter(None, args.skip.split(",")))
    _say(args, f"\n{'speed-up (batch 1)':<16} {'aa_unet s':>10} {'encoder s':>10} {'ratio':>6} {'vs no_grad':>11}  note")
    variants, base = {}, None
    for name in VARIANTS:
        if name in skip:
            continue
        try:
            runners = variant_runners(name, full, enc, x)
        except Exception as exc:  # a speed-up that fails here is reported, not fatal
            variants[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
            _say(args, f"{name:<16} {'failed':>10}  {variants[name]['error']}")
            continue
        if runners is None:
            _say(args, f"{name:<16} {'n/a':>10}  (not available on this machine)")
            continue
        tf, te, ratio = time_pair(runners[0], runners[1], args.repeats)
        base = base or tf
        variants[name] = {"aa_unet_s": tf, "encoder_s": te, "ratio": ratio, "speedup": base / tf,
                          "note": runners[2]}
        _say(args, f"{name:<16} {tf:>10.3f} {te:>10.3f} {ratio:>6.2f} {base / tf:>10.2f}x  {runners[2]}")
    report["variants"] = variants

    report["predictor"] = first_slice_times(full, args.size)
    p = report["predictor"]
    _say(args, f"\nPredictor.predict, 9 slices {args.size}x{args.size}: first slice after "
               f"{p['cold']['first_slice_s']:.2f} s cold / {p['warm']['first_slice_s']:.2f} s warm; "
               f"{p['warm']['per_slice_s']:.3f} s per slice overall (batches of {p['warm']['batch_size']} "
               "after the first)")
    report["peak_rss_mb"] = peak_rss_mb()
    _say(args, f"peak memory (process RSS): {report['peak_rss_mb']:.0f} MB")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def _say(args, text: str) -> None:
    print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
