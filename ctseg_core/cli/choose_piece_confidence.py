"""``ctseg choose-piece-confidence MODEL --choose FOLDER [--check FOLDER ...] [--normal-scan SCAN ...] [--write]``:
choose the threshold of the anatomical guard's last rule (remove each 3-D piece whose mean probability of its
class is under it) for a model, on labelled scans it never trained on (``*_ct.nii.gz`` beside
``*_labels.nii.gz``, as ``ctseg synth`` writes them).

The rule (ctseg_core.piece_confidence): on the ``--choose`` folder alone, the highest of 0.80, 0.82 ... 0.98
that loses none of its findings, one step lower as a margin. The table shows, for each threshold and folder,
the sample-averaged Dice, the findings lost and the true and false mL removed, and the mL still painted on the
``--normal-scan`` scans (all false). ``--write`` puts the choice on the checkpoint's card (its ``.json``
beside the weights; the weights are not touched), where ``ctseg segment``, ``ctseg evaluate`` and the app
read it. The bundled models' cards are never written.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from ctseg_core.errors import CheckpointError


def _predictor(model: str, device: str):
    from ctseg_core.cli.segment import resolve_model
    from ctseg_core.guard import Guard
    from ctseg_core.predictor import Predictor, card_model_kind

    path = resolve_model(model)
    predictor = Predictor.from_checkpoint(path, device=device, guard=Guard(min_piece_confidence=0))
    if card_model_kind(predictor.card) != "slice" or predictor.guard is None:
        raise CheckpointError(f"the anatomical guard runs on slice models only; {predictor.card.architecture} is "
                              f"a {card_model_kind(predictor.card)} model", path)
    return predictor, path


def _table(sets: dict, normal: list, chosen: float) -> str:
    from ctseg_core.piece_confidence import THRESHOLDS, painted_ml, score

    lines = [f"{'threshold':>9} " + " ".join(f"{Path(n).name[:34]:>34}" for n in sets) + ("   normal mL" if normal else "")]
    for t in (0.0, *THRESHOLDS):
        cells = [f"{s['dice']:.3f} lost {s['lost']} true {s['true_removed_ml']:5.2f} false {s['false_removed_ml']:6.2f}"
                 for s in (score(scans, t) for scans in sets.values())]
        lines.append(f"{t:>9.2f} " + " ".join(f"{c:>34}" for c in cells)
                     + (f"   {painted_ml(normal, t):9.2f}" if normal else "") + ("  <- chosen" if t == chosen else ""))
    pooled = [s for scans in sets.values() for s in scans]
    lines.append(f"all {len(pooled)} scans: Dice {score(pooled, 0)['dice']:.3f} without the rule, "
                 f"{score(pooled, chosen)['dice']:.3f} at {chosen:.2f} (per class {score(pooled, chosen)['per_class']})")
    return "\n".join(lines)


def _writable(path: Path) -> None:
    from ctseg_core.resources import bundled_models

    if str(path) in {str(p) for p in bundled_models().values()}:
        raise CheckpointError("a bundled model's card is not rewritten; copy its .safetensors and .json files "
                              "and choose on the copy", path)


def write_choice(path: Path, chosen: float, choose_set: str, check_sets: list[str]) -> Path:
    """Put ``chosen`` on the card of the checkpoint ``path`` (atomically); returns the card's path."""
    from ctseg_core.atomic import atomic_write_text
    from ctseg_core.checkpoint import checkpoint_paths, read_card

    _writable(path)
    card = read_card(path)
    card.guard = {"min_piece_confidence": chosen,
                  "chosen": f"{date.today().isoformat()} by ctseg choose-piece-confidence on {choose_set} (the "
                            f"highest threshold losing none of its findings, one step lower); checked on "
                            f"{', '.join(check_sets) or 'no other set'}"}
    _, card_path = checkpoint_paths(path)
    atomic_write_text(card_path, card.to_json())
    return card_path


def _run(args) -> int:
    import numpy as np

    from ctseg_core.io import load_volume
    from ctseg_core.piece_confidence import THRESHOLDS, choose, measure, measure_folder, painted_ml, score

    predictor, path = _predictor(args.model, args.device)
    if args.write:
        _writable(path)  # refused before the scans are run, not after
    say = None if args.json else print
    sets = {str(folder): measure_folder(predictor, folder, progress=say) for folder in [args.choose, *args.check]}
    normal = []
    for scan in args.normal_scan:
        volume = load_volume(scan)
        normal.append(measure(predictor, volume, np.zeros(volume.shape, np.uint8), str(scan)))
    chosen = choose(sets[str(args.choose)])
    card_path = write_choice(path, chosen, args.choose.name, [f.name for f in args.check]) if args.write else None
    if args.json:
        print(json.dumps({"model": str(path), "chosen": chosen, "choose_set": str(args.choose),
                          "sets": {name: {f"{t:.2f}": score(scans, t) for t in (0.0, *THRESHOLDS)}
                                   for name, scans in sets.items()},
                          "normal_ml": {f"{t:.2f}": painted_ml(normal, t) for t in (0.0, *THRESHOLDS)},
                          "written": str(card_path) if card_path else None}, indent=2))
        return 0
    print()
    print(_table(sets, normal, chosen))
    print(f"chosen: {chosen:.2f}" + (f" (written to {card_path})" if card_path else " (not written; --write puts it "
                                                                                      "on the card)"))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("choose-piece-confidence",
                              help="choose a model's unsure-piece threshold on labelled held-out scans",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="aa_unet (the bundled model) or a checkpoint (X.safetensors with X.json)")
    p.add_argument("--choose", type=Path, required=True,
                   help="folder of labelled scans the model never trained on: the choice is made on it alone")
    p.add_argument("--check", type=Path, action="append", default=[],
                   help="another labelled folder, shown beside it (no part in the choice); repeat for several")
    p.add_argument("--normal-scan", type=Path, action="append", default=[],
                   help="a scan without hemorrhage (DICOM folder or image); repeat for several")
    p.add_argument("--write", action="store_true", help="put the chosen threshold on the checkpoint's card")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)
