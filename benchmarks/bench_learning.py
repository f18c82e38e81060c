"""The learning curve of a site's corrections: held-out Dice against the number of corrected cases k.

    nice -n 5 .venv/bin/python benchmarks/bench_learning.py                 # k = 1, 2, 4, 8 (about an hour
                                                                             # on 2 busy cores)
    .venv/bin/python benchmarks/bench_learning.py --ks 1 2 --steps 10       # a quicker look

A simulated annotator on generated head CTs with known truth (``ctseg_core.synth``):
1. the bundled model segments each training case (the real ``Predictor``, guard on) and its labels are stored
   as the case's prediction, as the app does;
2. the annotator reviews the slices where the model was wrong (at least ``--wrong-voxels`` voxels differ
   from the truth; the worst first, at most ``--budget`` of a case's slices: the bundled model is wrong on
   nearly every slice of these small cases, and an annotator's time is limited) plus 20 % of the other
   slices, and on those slices replaces the labels by the truth;
   the other slices keep the model's labels (nobody looked at them); every reviewed slice is also
   confirmed with the "Slice reviewed" key;
3. for k = 1, 2, 4, 8 of these cases, the bundled model is fine-tuned in a fresh workspace with the app's
   default strategy for this machine (``default_strategy``: decoder-only on a CPU) and a fixed number of
   steps, two ways: **plain** (every slice of the final map taken as truth, weight 1) and **weighted**
   (unreviewed slices ignored, corrected voxels weighted ``--corrected-weight``); the workspace's validation
   set is two further corrected cases (fixed, the same in every run);
4. each new version is scored on held-out generated cases through the Predictor (sample-average Dice per
   class, mean over the classes present);
5. a run whose corrections are deliberately wrong (all brain tissue painted as ICH) must not be promoted.

Prints a table, writes ``--out`` (JSON with every number, rewritten after every run) and ``--png`` (the
curve; ``--plot-only`` redraws it from ``--out``). Cases are small (128 x 128 at 1 mm, the head fitted into
that field of view, 6 slices of 5 mm, ICH + SDH in each) so that the whole benchmark runs on a shared CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ctseg_core.io import load_volume
from ctseg_core.io.images import write_volume
from ctseg_core.labels import LESION_CLASSES
from ctseg_core.metrics import overlap_counts, overlap_scores
from ctseg_core.predictor import Predictor
from ctseg_core.resources import DEFAULT_MODEL
from ctseg_core.store import Workspace
from ctseg_core.store.reviewed import mark_slices
from ctseg_core.synth import generate_case
from ctseg_core.training.recipe import Recipe
from ctseg_core.training.run import TrainRequest, run_training
from ctseg_core.volume import LabelMap

CASE = dict(shape_yx=(128, 128), pixel_spacing=1.0, n_slices=6, lesion_classes=[1, 2])
POOL_SEEDS = (301, 302, 303, 304, 305, 306, 307, 308)
VAL_SEEDS = (321, 322)
HELD_OUT_SEEDS = (341, 342, 343)
ICH = 1


def write_case(seed: int, folder: Path) -> tuple[Path, np.ndarray]:
    case = generate_case(seed, **CASE)
    path = folder / f"synth_{seed}.nii.gz"
    write_volume(case.volume, path)
    return path, case.labels.array.astype(np.uint8)


def annotate(pred: np.ndarray, truth: np.ndarray, rng: np.random.Generator, wrong_voxels: int,
             budget: float, other_share: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(final labels, reviewed slices) of the simulated annotator: the slices where the model was wrong (at
    least ``wrong_voxels`` wrong), the worst first and at most ``budget`` of the slices (an annotator's time
    is limited), plus ``other_share`` of the other slices."""
    n_wrong = (pred != truth).sum(axis=(1, 2))
    worst = np.argsort(-n_wrong, kind="stable")[: max(1, int(round(budget * len(n_wrong))))]
    wrong = np.zeros(len(n_wrong), bool)
    wrong[worst] = True
    wrong &= n_wrong >= wrong_voxels
    others = ~wrong & (rng.random(len(wrong)) < other_share)
    reviewed = wrong | others
    final = pred.copy()
    final[reviewed] = truth[reviewed]
    return final, reviewed


def brain_as_ich(volume: np.ndarray) -> np.ndarray:
    return (((volume >= 20) & (volume <= 45)) * ICH).astype(np.uint8)


@dataclasses.dataclass
class Annotated:
    path: Path
    truth: np.ndarray
    prediction: np.ndarray
    final: np.ndarray
    reviewed: np.ndarray


def add_case(ws: Workspace, path: Path, final: np.ndarray, prediction: np.ndarray | None = None,
             reviewed: np.ndarray | None = None) -> str:
    volume = load_volume(path)
    case = ws.open_case(volume, path)
    if prediction is not None:
        case.save_prediction(LabelMap(prediction, volume.geometry), "default")
    case.save_final(LabelMap(final, volume.geometry))
    if reviewed is not None:
        mark_slices(case, np.flatnonzero(reviewed), by="simulated annotator")
    case.set_status("corrected", annotator="simulated annotator")
    return case.id


def held_out_scores(checkpoint: Path, held_out: list[tuple[object, np.ndarray]]) -> dict:
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    counts = [overlap_counts(predictor.predict(volume).labels, truth) for volume, truth in held_out]
    scores = overlap_scores(counts)
    present = [c for c in LESION_CLASSES if sum(int((t == c.id).sum()) for _, t in held_out)]
    per_class = {c.key: round(float(scores.dice_sample[c.id]), 4) for c in present}
    return {"dice": per_class, "mean": round(float(np.mean(list(per_class.values()))), 4)}


def fine_tune(root: Path, pool: list[Annotated], val_sources, mode: str, args, wrong: bool = False) -> dict:
    ws = Workspace(root)
    val_ids = [add_case(ws, p, t) for p, t in val_sources]
    for a in pool:
        final = a.final
        if wrong:
            final = np.where(a.reviewed[:, None, None], brain_as_ich(load_volume(a.path).array), a.prediction)
        add_case(ws, a.path, final.astype(np.uint8), a.prediction, a.reviewed)
    recipe = dataclasses.replace(Recipe(), steps=args.steps or None, batch_size=args.batch_size,
                                 unreviewed="train" if mode == "plain" else "ignore",
                                 corrected_weight=1.0 if mode == "plain" else args.corrected_weight)
    events = []
    t0 = time.perf_counter()
    done = run_training(TrainRequest(root, recipe=recipe, device="cpu", val_cases=val_ids, seed=0),
                        events.append)
    plan = next(e for e in events if e.name == "plan")
    before, after = [e for e in events if e.name == "validate"]
    return {"version_path": done.path, "promoted": done.promoted, "reason": done.reason,
            "val_before": before.mean_dice, "val_after": after.mean_dice, "train_slices": plan.train_slices,
            "steps": plan.total_steps,
            "strategy": plan.strategy, "seconds": round(time.perf_counter() - t0, 1)}


def draw(results: dict, baseline: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(baseline["dice"]), figsize=(4 * (1 + len(baseline["dice"])), 3.4))
    for ax, key in zip(axes, ["mean", *baseline["dice"]]):
        for mode, style in (("plain", "o--"), ("weighted", "s-")):
            rows = [r for r in results["runs"] if r["mode"] == mode]
            ks = [0] + [r["k"] for r in rows]
            ys = [baseline["mean"] if key == "mean" else baseline["dice"][key]]
            ys += [r["held_out"]["mean"] if key == "mean" else r["held_out"]["dice"].get(key) for r in rows]
            ax.plot(ks, ys, style, label=mode)
        ax.set_title("mean Dice" if key == "mean" else f"{key.upper()} Dice")
        ax.set_xlabel("corrected cases k")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks([0, 1, 2, 4, 8])
        ax.set_xticklabels(["0", "1", "2", "4", "8"])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out Dice (sample average)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--steps", type=int, default=16,
                    help="optimizer steps of every fine-tune; 0: the app's default (Recipe.epochs passes over the "
                         "training slices, so more cases train longer)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--corrected-weight", type=float, default=Recipe.corrected_weight)
    ap.add_argument("--wrong-voxels", type=int, default=100,
                    help="a slice with this many wrong voxels (mm^2 at 1 mm) is reviewed")
    ap.add_argument("--budget", type=float, default=0.5, help="most slices of a case the annotator reviews for errors")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("docs/learning_results.json"))
    ap.add_argument("--png", type=Path, default=Path("docs/learning_curve_k.png"))
    ap.add_argument("--plot-only", action="store_true", help="redraw --png from --out")
    args = ap.parse_args(argv)
    if args.plot_only:
        results = json.loads(args.out.read_text())
        draw(results, results["baseline"], args.png)
        return 0
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench_learning_"))
    scans = tmp / "scans"
    scans.mkdir()
    pool_sources = [write_case(s, scans) for s in POOL_SEEDS[:max(args.ks)]]
    val_sources = [write_case(s, scans) for s in VAL_SEEDS]
    held_out = []
    for s in HELD_OUT_SEEDS:
        c = generate_case(s, **CASE)
        held_out.append((c.volume, c.labels.array.astype(np.uint8)))

    bundled = Predictor.from_checkpoint(DEFAULT_MODEL, device="cpu")
    rng = np.random.default_rng(0)
    pool = []
    for path, truth in pool_sources:
        pred = bundled.predict(load_volume(path)).labels.array
        final, reviewed = annotate(pred, truth, rng, args.wrong_voxels, args.budget)
        pool.append(Annotated(path, truth, pred, final, reviewed))
        print(f"annotated {path.name}: {int(reviewed.sum())}/{len(reviewed)} slices reviewed, "
              f"{int((final != pred).sum())} voxels corrected", flush=True)
    baseline = held_out_scores(DEFAULT_MODEL, held_out)
    print(f"bundled model on the held-out cases: mean Dice {baseline['mean']:.3f} {baseline['dice']}", flush=True)

    results = {"config": {**vars(args), "out": str(args.out), "png": str(args.png), "case": CASE,
                          "pool_seeds": POOL_SEEDS, "val_seeds": VAL_SEEDS, "held_out_seeds": HELD_OUT_SEEDS},
               "baseline": baseline,
               "annotator": [{"case": a.path.name, "reviewed": int(a.reviewed.sum()), "slices": len(a.reviewed),
                              "corrected_voxels": int((a.final != a.prediction).sum())} for a in pool],
               "runs": []}
    def save():
        results["seconds"] = round(time.perf_counter() - t_start, 1)
        args.out.write_text(json.dumps(results, indent=1) + "\n")

    k_wrong = min(4, max(args.ks))  # first: the one result that must hold whatever the noise
    wrong = fine_tune(tmp / "ws_wrong", pool[:k_wrong], val_sources, "weighted", args, wrong=True)
    wrong.pop("version_path")
    results["wrong_labels"] = {**wrong, "k": k_wrong}
    print(f"deliberately wrong labels (k={k_wrong}): val {wrong['val_before']:.3f}->{wrong['val_after']:.3f}, "
          f"promoted={wrong['promoted']}: {wrong['reason']}", flush=True)
    save()
    for k in args.ks:
        for mode in ("plain", "weighted"):
            r = fine_tune(tmp / f"ws_{mode}_{k}", pool[:k], val_sources, mode, args)
            r.update(k=k, mode=mode, held_out=held_out_scores(Path(r.pop("version_path")), held_out))
            results["runs"].append(r)
            save()
            print(f"k={k} {mode:8s} held-out mean {r['held_out']['mean']:.3f} {r['held_out']['dice']}  "
                  f"val {r['val_before']:.3f}->{r['val_after']:.3f} promoted={r['promoted']} "
                  f"({r['train_slices']} slices, {r['steps']} steps, {r['seconds']:.0f} s)", flush=True)
    print("\n  k  mode       held-out mean  " + "  ".join(f"{k.upper():>6s}" for k in baseline["dice"]))
    print(f"  0  bundled    {baseline['mean']:13.3f}  " + "  ".join(f"{v:6.3f}" for v in baseline["dice"].values()))
    for r in results["runs"]:
        print(f"{r['k']:3d}  {r['mode']:9s}  {r['held_out']['mean']:13.3f}  "
              + "  ".join(f"{r['held_out']['dice'].get(k, float('nan')):6.3f}" for k in baseline["dice"]))
    save()
    print(f"\ntotal {results['seconds'] / 60:.1f} min")
    draw(results, baseline, args.png)
    ok = not wrong["promoted"]
    print("wrong-label run not promoted: " + ("yes" if ok else "NO (a failure)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
