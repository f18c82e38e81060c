"""Draw docs/learning_curve.png from pretraining runs' learning curves (``X.curve.jsonl``).

    .venv/bin/python docs/make_learning_curve.py NAME=RUN.curve.jsonl [NAME=...] [--out docs/learning_curve.png]

Left: mean Dice (sample average over the held-out generated cases, the seven classes) against training
CPU-hours, model alone (solid) and with the anatomical guard (dashed). Right: millilitres painted on the
real GE head CT (no hemorrhage: all false positive), log scale.

``--table`` prints instead the rows of docs/models.md's table (Markdown), one per evaluation: steps,
samples, CPU-hours, Dice per class (sample average; the voxel average in the next column group) and the
GE false-positive mL, each as "model alone / with the guard" where the run measured both.

``--from-table docs/models.md`` draws the runs whose rows are already in that table (the curve files of
earlier sessions' runs lived beside the training, outside the repository, and go with the machine):

    .venv/bin/python docs/make_learning_curve.py --from-table docs/models.md NAME=RUN.curve.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_curve(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="NAME=PATH of a run's curve.jsonl")
    ap.add_argument("--from-table", type=Path, help="also draw the runs tabled in this Markdown file")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("learning_curve.png"))
    ap.add_argument("--table", action="store_true", help="print the Markdown table rows instead of drawing")
    args = ap.parse_args()
    if args.table:
        print_table(args.runs)
        return
    runs = read_table(args.from_table) if args.from_table else {}
    runs.update({name: read_curve(Path(path)) for name, path in (spec.split("=", 1) for spec in args.runs)})
    if not runs:
        ap.error("nothing to draw: give NAME=PATH runs or --from-table")
    fig, (dice_ax, fp_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    dice_ax.set_prop_cycle(color=plt.cm.tab20.colors)  # a colour per run for up to 20 runs; fp_ax reuses them
    for name, rows in runs.items():
        hours = [r["train_cpu_h"] for r in rows]
        line, = dice_ax.plot(hours, [r.get("mean_dice_sample") or 0 for r in rows], marker="o", ms=3, label=name)
        if any("mean_dice_sample_guard" in r for r in rows):
            dice_ax.plot(hours, [r.get("mean_dice_sample_guard") or 0 for r in rows], ls="--", color=line.get_color())
        fp_ax.plot(hours, [max(r.get("real_fp_total_ml", 0), 0.01) for r in rows], marker="o", ms=3,
                   color=line.get_color(), label=name)
        if any("real_fp_total_ml_guard" in r for r in rows):
            fp_ax.plot(hours, [max(r.get("real_fp_total_ml_guard", 0), 0.01) for r in rows], ls="--",
                       color=line.get_color())
    dice_ax.set(xlabel="training CPU-hours", ylabel="mean Dice (sample average, 7 classes)",
                title="held-out generated cases (solid: model alone, dashed: with guard)")
    fp_ax.set(xlabel="training CPU-hours", ylabel="mL painted (log)", yscale="log",
              title="real GE head CT without hemorrhage (target < 5 mL)")
    fp_ax.axhline(5, color="grey", lw=0.8, ls=":")
    for ax in (dice_ax, fp_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


CLASSES = ("ich", "sdh", "sah", "edh", "csdh", "pneumocephalus", "ivh")


def _pair(row: dict, key: str, fmt: str) -> str:
    alone, guard = row.get(key), row.get(f"{key}_guard")
    if alone is None:
        return ""
    return format(alone, fmt) + (f" / {format(guard, fmt)}" if guard is not None else "")


def table_row(name: str, row: dict) -> str:
    sample = " / ".join(f"{row['dice_sample'][c]:.2f}" for c in CLASSES)
    voxel = " / ".join(f"{row['dice_voxel'][c]:.2f}" for c in CLASSES)
    if "dice_sample_guard" in row:
        sample += f" (guard: {' / '.join(format(row['dice_sample_guard'][c], '.2f') for c in CLASSES)})"
    return (f"| {name} | {row['step']} | {row['samples']:,} | {row['train_cpu_h']:.2f} | {sample} | "
            f"{_pair(row, 'mean_dice_sample', '.3f')} | {voxel} | {_pair(row, 'real_fp_total_ml', '.1f')} |")


def read_table(path: Path) -> dict[str, list[dict]]:
    """The curves tabled in ``path`` (rows as ``--table`` prints them), by run name; a note in brackets
    after the name is dropped; rows of averages and of earlier models (several words for a name, a range of
    CPU-hours) are not curves and are left out."""
    runs: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = cells[0].split(" (")[0]
        if len(cells) != 8 or not cells[1].isdigit() or not re.fullmatch(r"[\w-]+", name) \
                or not re.fullmatch(r"[\d.]+", cells[3]):
            continue
        row = {"step": int(cells[1]), "samples": int(cells[2].replace(",", "")), "train_cpu_h": float(cells[3])}
        for key, cell in (("mean_dice_sample", cells[5]), ("real_fp_total_ml", cells[7])):
            values = [float(v) for v in cell.split(" / ")]
            row[key] = values[0]
            if len(values) > 1:
                row[f"{key}_guard"] = values[1]
        runs.setdefault(name, []).append(row)
    return runs


def print_table(runs: list[str]) -> None:
    print("| run | step | samples | CPU-h | Dice per class, sample average (ICH / SDH / SAH / EDH / CSDH / PNEUMO / IVH) "
          "| mean (alone / guard) | Dice, voxel average | GE false positive mL (alone / guard) |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in runs:
        name, path = spec.split("=", 1)
        for row in read_curve(Path(path)):
            print(table_row(name, row))


if __name__ == "__main__":
    main()
