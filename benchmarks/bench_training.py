"""Training throughput: samples/s of the fine-tuner's own train step (``FineTuner.train_step``) at
512x512, full and decoder-only, and the data pipeline (plan sample + augmentation) per loader worker;
plus the time of a decoder-only fine-tune of 200 steps on this machine.

    .venv/bin/python benchmarks/bench_training.py                    # this machine (CPU: few steps)
    .venv/bin/python benchmarks/bench_training.py --device cuda      # GPU: bf16 autocast, channels_last
    .venv/bin/python benchmarks/bench_training.py --device cuda --compile

Target on one H100: at least 200 samples/s for the full ``aa_unet`` in bf16. On a CPU the model
steps are measured over a few steps and the 200-step fine-tune is extrapolated (said in the output).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ctseg_core.losses import class_weights_from_labels, create_loss
from ctseg_core.models import create_model
from ctseg_core.preprocess import Plan
from ctseg_core.training.augment import Augmenter
from ctseg_core.training.recipe import Recipe
from ctseg_core.training.trainer import FineTuner, apply_strategy, make_optimizer, set_train_mode


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_throughput(arch: str, strategy: str, device: torch.device, size: int, batch: int, steps: int,
                     warmup: int, compile_model: bool) -> dict:
    """Samples/s of optimizer steps on random 2.5D input already on the device (the model's cost alone)."""
    torch.manual_seed(0)
    recipe = Recipe(strategy=strategy, batch_size=batch, channels_last=device.type == "cuda", compile=compile_model,
                    mixed_precision=True)
    model = create_model(arch).to(device)
    params = apply_strategy(model, strategy)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer, scheduler = make_optimizer(params, recipe, warmup + steps)
    net = torch.compile(model) if compile_model else model
    labels = torch.zeros(batch, size, size, dtype=torch.int64)
    labels[:, size // 3:size // 2, size // 3:size // 2] = 1
    loss_fn = create_loss("focal", class_weights_from_labels([labels.numpy().astype(np.uint8)])).to(device)
    tuner = FineTuner(net, optimizer, scheduler, loss_fn, [], recipe=recipe, device=device, total_steps=warmup + steps)
    set_train_mode(model, strategy)
    group = [{"image": torch.rand(batch, 3, size, size, device=device), "label": labels.to(device)}]
    for _ in range(warmup):
        tuner.train_step(group)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        tuner.train_step(group)
    sync(device)
    seconds = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"s_per_step": seconds, "samples_per_s": batch / seconds, "peak_gib": peak,
            "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
            "channels_last": recipe.channels_last}


def data_throughput(size: int, n: int = 20) -> float:
    """Samples/s of one loader worker: plan input stack + label at 512x512 + MONAI augmentation."""
    rng = np.random.default_rng(0)
    volume = rng.normal(30, 20, (9, size, size)).astype(np.float32)
    labels = (rng.random((9, size, size)) > 0.99).astype(np.uint8)
    plan = Plan(spacing_mm=None)
    augment = Augmenter(Recipe().augment)
    t0 = time.perf_counter()
    for i in range(n):
        x, y = plan.training_pair(volume, labels, 1 + i % 7, (0.45, 0.45))
        augment(x, y, i)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default="aa_unet")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch-size", type=int, help="default 32 on GPU, 2 on CPU")
    ap.add_argument("--steps", type=int, help="timed steps (default 20 on GPU, 2 on CPU)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default 5 on GPU, 1 on CPU)")
    ap.add_argument("--strategies", default="full,decoder")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--finetune-steps", type=int, default=200, help="the decoder-only fine-tune to time")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (the shared machine has 2)")
    args = ap.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if not gpu:
        torch.set_num_threads(args.threads)
    batch = args.batch_size or (32 if gpu else 2)
    steps = args.steps or (20 if gpu else 2)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"

    print(f"# training throughput, {args.arch} at {args.size}x{args.size}, device {name}, torch {torch.__version__}")
    print(f"# {steps} timed steps after {warmup} warm-up steps, batch {batch}, AdamW + focal loss, "
          f"compile={args.compile}\n")
    header = f"{'strategy':<9}{'precision':<15}{'ch_last':<9}{'batch':>6}{'s/step':>10}{'samples/s':>11}{'peak GiB':>10}"
    print(header)
    print("-" * len(header))
    results = {}
    for strategy in args.strategies.split(","):
        r = model_throughput(args.arch, strategy, device, args.size, batch, steps, warmup, args.compile)
        results[strategy] = r
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        print(f"{strategy:<9}{r['precision']:<15}{str(r['channels_last']):<9}{batch:>6}{r['s_per_step']:>10.3f}"
              f"{r['samples_per_s']:>11.3g}{peak:>10}", flush=True)
    per_worker = data_throughput(args.size)
    print(f"\ndata pipeline (plan sample + MONAI augmentation, {args.size}x{args.size}): "
          f"{per_worker:.1f} samples/s per loader worker")
    if "full" in results and gpu:
        need = results["full"]["samples_per_s"] / per_worker
        verdict = "meets" if results["full"]["samples_per_s"] >= 200 else "misses"
        print(f"full fine-tune {verdict} the 200 samples/s target; feeding it takes ~{need:.0f} loader workers "
              f"(--num-workers)")
    if "decoder" in results:
        samples = args.finetune_steps * Recipe().batch_size
        model_s = results["decoder"]["s_per_step"] / batch * samples
        data_s = samples / per_worker
        print(f"decoder-only fine-tune of {args.finetune_steps} steps x batch {Recipe().batch_size} at "
              f"{args.size}x{args.size}: about {(model_s + data_s) / 60:.1f} min = model {model_s / 60:.1f} min + data "
              f"{data_s / 60:.1f} min in-process (EXTRAPOLATED from {steps} measured steps of batch {batch})")


if __name__ == "__main__":
    main()
