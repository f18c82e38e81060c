"""Training throughput, side by side in one run: the old whole-slice pretraining against patch training
from the case cache, candidate model sizes, and CPU settings (OpenMP wait policy, threads,
channels_last, torch.compile). Optionally the GPU target of the full model.

    .venv/bin/python benchmarks/bench_training.py                  # pipelines + candidates + CPU settings
    .venv/bin/python benchmarks/bench_training.py --steps 6        # more timed steps (steadier figures)
    .venv/bin/python benchmarks/bench_training.py --compile        # also torch.compile on the CPU
    .venv/bin/python benchmarks/bench_training.py --device cuda    # GPU: full aa_unet, bf16, channels_last

Figures are process CPU seconds (all threads of this process), which a shared machine changes far less
than wall time; the two pipelines are timed in alternation so that both see the same machine. "Dice per
CPU-hour" comes from the runs' learning curves (``X.curve.jsonl``, see docs/models.md), not from here.

The *old* pipeline is what ``ctseg pretrain`` did until the patch training: a pool of 8 cases generated
on the fly at 512x512 (one replaced every 4 steps), whole slices through the plan (resampled to 1 mm,
padded to 256), MONAI augmentation, batch 4. The *new* one: crops of 160x160 from cached cases on the
model grid (lesion / hard-negative / random centres), cheap torch augmentation, batch 8; the cache is
generated once (its cost per crop is shown, amortised over the crops a case gives in a run).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ctseg_core.losses import class_weights_from_labels, create_loss
from ctseg_core.models import count_flops, count_parameters, create_model
from ctseg_core.preprocess import Plan
from ctseg_core.synth import generate_case
from ctseg_core.training.augment import Augmenter
from ctseg_core.training.case_cache import CacheEntry, build_entries, list_entries
from ctseg_core.training.crops import CropSampler
from ctseg_core.training.dataset import LoadedCase, SliceDataset, sampling_weights
from ctseg_core.training.recipe import Recipe
from ctseg_core.training.synthetic import training_case

BUNDLED_V1 = {"encoder": "resnest14d"}  # the configuration of the first bundled model
CANDIDATES = {
    "resnest14d (bundled v1)": BUNDLED_V1,
    "resnest14d half width": {"encoder": "resnest14d", "encoder_args": {"channels": [32, 64, 128, 256], "stem_width": 16},
                              "decoder_channels": [16, 24, 32, 64, 128, 128]},
    "resnest26d half width": {"encoder": "resnest26d", "encoder_args": {"channels": [32, 64, 128, 256], "stem_width": 16},
                              "decoder_channels": [16, 24, 32, 64, 128, 128]},
    "resnest50d (paper)": {"encoder": "resnest50d"},
}
CROPS_PER_CASE = 160  # crops each cached case gives in a campaign run (2,500 cases, 50,000 steps of 8)


class OldPipeline:
    """The former on-the-fly pool of whole slices (kept here only to measure against)."""

    def __init__(self, plan: Plan, batch: int, pool: int = 8, refresh_every: int = 4, shape=(512, 512)):
        self.plan, self.batch, self.refresh_every, self.shape = plan, batch, refresh_every, shape
        self.augment = Augmenter(Recipe().augment)
        self.next_seed, self.step = 0, 0
        self.pool = [self._new() for _ in range(pool)]
        self._index()
        self.rng = np.random.default_rng(0)

    def _new(self) -> LoadedCase:
        case = generate_case(self.next_seed, shape_yx=self.shape)
        self.next_seed += 1
        return LoadedCase(f"s{self.next_seed}", case.volume, case.labels)

    def _index(self) -> None:
        self.ds = SliceDataset(self.pool, self.plan)
        self.w = sampling_weights(self.ds.has_lesion, 0.6)

    def batch_data(self) -> dict:
        self.step += 1
        if self.step % self.refresh_every == 0:
            self.pool[self.step // self.refresh_every % len(self.pool)] = self._new()
            self._index()
        items = [self.ds[int(i)] for i in self.rng.choice(len(self.ds), self.batch, p=self.w)]
        pairs = [self.augment(it["image"], it["label"], int(self.rng.integers(2**31))) for it in items]
        size = tuple(max(p[0].shape[-k] for p in pairs) for k in (2, 1))
        pad = torch.nn.functional.pad
        img = [pad(p[0], _pads(p[0], size), value=self.plan.pad_value) for p in pairs]
        lab = [pad(p[1], _pads(p[1], size), value=0) for p in pairs]
        return {"image": torch.stack(img), "label": torch.stack(lab)}


def _pads(t, size):
    dy, dx = size[0] - t.shape[-2], size[1] - t.shape[-1]
    return (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2)


class NewPipeline:
    def __init__(self, cache: Path, plan: Plan, batch: int, patch: int = 160):
        entries = [CacheEntry.open(p) for p in list_entries(cache)]
        self.sampler = CropSampler(entries, patch, pad_value=plan.pad_value)
        self.batch, self.step = batch, 0

    def batch_data(self) -> dict:
        self.step += 1
        return self.sampler.batch(0, self.step, self.batch)


class Step:
    """One optimizer step of a model (AdamW, focal + Dice)."""

    def __init__(self, config: dict, channels_last=False, compile_model=False):
        torch.manual_seed(0)
        self.model = create_model("aa_unet", **config)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = torch.compile(self.model) if compile_model else self.model
        self.opt = torch.optim.AdamW(self.model.parameters(), 1e-3)
        self.loss = create_loss("focal_dice", class_weights_from_labels([np.arange(8, dtype=np.uint8)]))
        self.channels_last = channels_last

    def __call__(self, batch: dict) -> None:
        x = batch["image"]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.net(x), batch["label"]).backward()
        self.opt.step()


def cpu_s(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def compare_pipelines(cache: Path, config: dict, steps: int, gen_cpu_per_case: float) -> None:
    plan = Plan(spacing_mm=1.0)
    old, new = OldPipeline(plan, 4), NewPipeline(cache, plan, 8)
    step_old, step_new = Step(config), Step(config)
    for p, s in ((old, step_old), (new, step_new)):  # warm-up
        s(p.batch_data())
    t = {"old data": 0.0, "old model": 0.0, "new data": 0.0, "new model": 0.0}
    for _ in range(steps):  # alternate: both see the same machine
        for name, p, s in (("old", old, step_old), ("new", new, step_new)):
            holder = {}
            t[f"{name} data"] += cpu_s(lambda: holder.update(b=p.batch_data()))
            t[f"{name} model"] += cpu_s(lambda: s(holder["b"]))
    old_pix, new_pix = 4 * 256 * 256, 8 * 160 * 160
    gen_new = gen_cpu_per_case / CROPS_PER_CASE * 8  # per step of 8 crops
    rows = [("old: whole 256 px slices, on-the-fly pool, batch 4", t["old data"] / steps, t["old model"] / steps, 0.0, 4,
             old_pix),
            ("new: 160 px crops from the cache, batch 8", t["new data"] / steps, t["new model"] / steps, gen_new, 8, new_pix)]
    print(f"\n## pipelines at equal model ({_name(config)}), CPU seconds per optimizer step ({steps} timed, alternating)")
    print(f"{'pipeline':<52}{'data':>7}{'model':>7}{'cache':>7}{'samples/CPU-s':>15}{'Mpx/CPU-s':>11}")
    per = []
    for name, d, m, g, n, px in rows:
        total = d + m + g
        per.append((n / total, px / total))
        print(f"{name:<52}{d:>7.3f}{m:>7.3f}{g:>7.3f}{n / total:>15.2f}{px / total / 1e6:>11.3f}")
    print(f"ratio new/old: {per[1][0] / per[0][0]:.1f}x samples per CPU-second, {per[1][1] / per[0][1]:.1f}x pixels "
          f"(the cache column: generating a case once, {gen_cpu_per_case:.2f} CPU-s, amortised over "
          f"{CROPS_PER_CASE} crops)")


def compare_candidates(cache: Path, steps: int, compile_model: bool, with_flops: bool) -> None:
    plan = Plan(spacing_mm=1.0)
    data = NewPipeline(cache, plan, 8)
    batches = [data.batch_data() for _ in range(steps + 1)]
    print(f"\n## model candidates on 160 px crops, batch 8 (CPU seconds per step, {steps} timed)")
    print(f"{'candidate':<26}{'params M':>9}{'GFLOPs 160px':>13}{'s/step':>8}{'channels_last':>14}"
          + (f"{'compiled':>10}" if compile_model else ""))
    for name, config in CANDIDATES.items():
        step = Step(config)
        flops = count_flops(step.model, (1, 3, 160, 160)) / 1e9 if with_flops else float("nan")
        step(batches[0])
        plain = sum(cpu_s(lambda b=b: step(b)) for b in batches[1:]) / steps
        cl = Step(config, channels_last=True)
        cl(batches[0])
        ch_last = sum(cpu_s(lambda b=b: cl(b)) for b in batches[1:]) / steps
        line = f"{name:<26}{count_parameters(step.model) / 1e6:>9.2f}{flops:>13.2f}{plain:>8.3f}{ch_last:>14.3f}"
        if compile_model:
            comp = Step(config, compile_model=True)
            comp(batches[0])
            line += f"{sum(cpu_s(lambda b=b: comp(b)) for b in batches[1:]) / steps:>10.3f}"
        print(line, flush=True)


def omp_policies(steps: int) -> None:
    """The new pipeline's model step with OpenMP threads spinning (ACTIVE) or sleeping (PASSIVE) while
    waiting, in child processes (the policy is read when OpenMP loads), on whatever load the machine has."""
    print("\n## OpenMP wait policy (child processes; wall and CPU seconds per step; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    code = ("import time,torch,sys;sys.path.insert(0,'benchmarks');import bench_training as b;"
            "s=b.Step(b.CANDIDATES['resnest14d half width']);x={'image':torch.rand(8,3,160,160),"
            "'label':torch.randint(0,8,(8,160,160))};s(x);w=time.perf_counter();c=time.process_time()\n"
            f"for _ in range({steps}): s(x)\n"
            f"print((time.perf_counter()-w)/{steps},(time.process_time()-c)/{steps})")
    for policy in ("ACTIVE", "PASSIVE"):
        env = dict(os.environ, OMP_WAIT_POLICY=policy)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        wall, cpu = (float(v) for v in out.stdout.split())
        print(f"{policy:<8} wall {wall:.3f} s/step, CPU {cpu:.3f} s/step")


def _name(config: dict) -> str:
    return next((k for k, v in CANDIDATES.items() if v == config), str(config))


def gpu_throughput(steps: int, batch: int) -> None:
    device = torch.device("cuda")
    step = Step(CANDIDATES["resnest50d (paper)"], channels_last=True)
    step.model.to(device)
    step.opt = torch.optim.AdamW(step.model.parameters(), 1e-3)
    x = {"image": torch.rand(batch, 3, 256, 256, device=device), "label": torch.randint(0, 8, (batch, 256, 256), device=device)}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        step(x)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step(x)
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    print(f"\n## GPU {torch.cuda.get_device_name()}: full aa_unet (ResNeSt-50d), 256 px, batch {batch}, bf16: "
          f"{batch / dt:.0f} samples/s (target 200)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per figure")
    ap.add_argument("--cases", type=int, default=6, help="cases in the temporary cache")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile on the CPU (slow to compile)")
    ap.add_argument("--no-flops", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.device.startswith("cuda"):
        gpu_throughput(args.steps * 5, 32)
        return
    print(f"# training throughput on {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch "
          f"{torch.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load average "
          f"{os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.process_time()
        build_entries(tmp, range(args.cases), Plan(spacing_mm=1.0), training_case)
        gen = (time.process_time() - t0) / args.cases
        compare_pipelines(Path(tmp), BUNDLED_V1, args.steps, gen)
        compare_candidates(Path(tmp), args.steps, args.compile, not args.no_flops)
    omp_policies(args.steps)


if __name__ == "__main__":
    main()
