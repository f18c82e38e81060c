"""The comparison table of docs/models.md ("Other architectures") from the budget runs and their evaluation.

RUNS holds, for each run NAME, its checkpoint's model card (configuration, steps, training CPU time) as
RUNS/runs/NAME.json (or RUNS/budget/NAME.json), and the evaluation: either one ``ctseg evaluate ... --json``
of all the checkpoints together, RUNS/eval.json (rows matched by the checkpoint's name), or one per run,
RUNS/eval/NAME.json. Prints the markdown tables: per-class Dice (sample and voxel average), scan-level
detection, budget and time per slice.

    python docs/make_comparison.py RUNS > table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ("aa_unet", "aa_unet_rsa", "rsu", "rsu_s", "rsu_c", "resnet50_unet", "focusnetpp", "rsanet", "radnet")
CLASSES = ("1", "2", "3", "4", "5", "6", "7")
TITLES = ("ICH", "SDH", "SAH", "EDH", "CSDH", "PNEUMO", "IVH")


def load(runs: Path) -> list[dict]:
    combined = runs / "eval.json"
    together = json.loads(combined.read_text()) if combined.is_file() else None
    rows = []
    for name in ORDER:
        card_path = next((p for p in (runs / "runs" / f"{name}.json", runs / "budget" / f"{name}.json")
                          if p.is_file()), None)
        if card_path is None:
            continue
        if together is not None:
            report = together
            found = [r for r in together["results"] if r["model"].startswith(f"{name} (")]
        else:
            eval_path = runs / "eval" / f"{name}.json"
            report = json.loads(eval_path.read_text()) if eval_path.is_file() else None
            found = report["results"][:1] if report else []
        if found:
            normal = [n for n in report.get("normal_scans", []) if n["model"] == found[0]["model"]]
            rows.append({"name": name, "card": json.loads(card_path.read_text()), "result": found[0],
                         "n_cases": report["n_cases"], "normal": normal[0] if normal else None})
    return rows


def describe(card: dict) -> str:
    cfg = card["config"]
    if card["architecture"] in ("aa_unet", "rsu", "rsu_s", "rsu_c", "resnet50_unet"):
        extra = " + RSA bottleneck" if cfg.get("bottleneck_attention") == "rsa" else ""
        width = ", half width" if (cfg.get("encoder_args") or {}).get("channels") else ""
        return f"{card['architecture']}{extra} ({cfg['encoder']}{width})"
    if card["architecture"] == "focusnetpp":
        return f"focusnetpp (widths {'-'.join(str(w) for w in cfg['widths'])})"
    if card["architecture"] == "rsanet":
        return f"rsanet ({cfg['slab_slices']} slices, filters {'-'.join(str(f) for f in cfg['filters'])})"
    return f"{card['architecture']} (DenseNet-{3 * cfg['layers_per_block'] + 4}, growth {cfg['growth']})"


def cell(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def dice_table(rows: list[dict], field: str) -> str:
    lines = ["| model | loss | " + " | ".join(TITLES) + " | mean |", "|---|---|" + "---:|" * (len(TITLES) + 1)]
    for r in rows:
        overlap = r["result"]["overlap"]
        loss = r["card"]["recipe"]["loss"]
        if overlap is None:
            lines.append(f"| {describe(r['card'])} | {loss} | " + " | ".join("-" for _ in TITLES)
                         + " | - (slice triage: no outlines) |")
            continue
        values = [overlap[field].get(c) for c in CLASSES]
        present = [v for v in values if v is not None]
        mean = sum(present) / len(present) if present else None
        lines.append(f"| {describe(r['card'])} | {loss} | " + " | ".join(cell(v) for v in values) + f" | {cell(mean)} |")
    return "\n".join(lines)


def detection_table(rows: list[dict]) -> str:
    lines = ["| model | acc | sens | spec | prec | F1 | F1 per class (ICH SDH SAH EDH CSDH PNEUMO IVH) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        d = r["result"]["detection"]
        a = d["any"]
        per_class = " ".join("-" if c not in d or d[c]["f1"] is None else f"{d[c]['f1']:.2f}" for c in CLASSES)
        lines.append(f"| {describe(r['card'])} | " + " | ".join(
            "-" if a[k] is None else f"{a[k]:.2f}" for k in ("accuracy", "recall", "specificity", "precision", "f1"))
            + f" | {per_class} |")
    return "\n".join(lines)


def budget_table(rows: list[dict]) -> str:
    lines = ["| model | params (M) | steps | samples | training CPU-min | inference s/slice (wall) | CPU s/slice "
             "| real GE series (normal): mL painted / call |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        extra, t = r["card"]["extra"], r["result"]["timing"]
        params = r["card"].get("_parameters")
        lines.append(f"| {describe(r['card'])} | {'-' if params is None else f'{params / 1e6:.2f}'} | {extra['steps']} | "
                     f"{extra['samples']} | {extra['run']['train_cpu_s'] / 60:.1f} | {t['wall_s_per_slice']:.2f} | "
                     f"{t['cpu_s_per_slice']:.2f} | {normal_cell(r['normal'])} |")
    return "\n".join(lines)


def normal_cell(normal: dict | None) -> str:
    """What a model made of the normal GE series: mL of blood painted, or a triage model's call."""
    if normal is None:
        return "-"
    if normal.get("triage") is not None:
        tri = normal["triage"]
        return f"call {'positive' if tri['positive'] else 'negative'} (p {tri['probability']:.2f})"
    return f"{normal.get('blood_ml', 0.0):.1f} mL"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    runs = Path(argv[1])
    rows = load(runs)
    from ctseg_core.models import count_parameters, create_model

    for r in rows:
        card = r["card"]
        r["card"]["_parameters"] = count_parameters(create_model(card["architecture"], **card["config"]))
    n = rows[0]["n_cases"] if rows else 0
    print(f"Dice per class, sample average over {n} scans (cf. Table I)\n")
    print(dice_table(rows, "dice_sample"))
    print("\nDice per class, voxel average (all voxels pooled)\n")
    print(dice_table(rows, "dice_voxel"))
    print("\nScan-level detection (any hemorrhage; a class counts when on 3+ consecutive slices)\n")
    print(detection_table(rows))
    print("\nBudget and cost\n")
    print(budget_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
