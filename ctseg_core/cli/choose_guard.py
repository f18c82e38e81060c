"""``ctseg choose-guard MODEL --choose FOLDER [--check FOLDER ...] [--normal-scan SCAN ...] [--write]``: choose a
model's own settings of the anatomical guard — rule 4's threshold (remove each 3-D piece whose mean probability
of its class is under it) and rule 5's share (touching SDH, EDH and CSDH take the type holding at least that
share of their probability) — on labelled scans it never trained on (``*_ct.nii.gz`` beside
``*_labels.nii.gz``, as ``ctseg synth`` writes them).

The rules of the choice (ctseg_core.guard_choice), on the ``--choose`` folder alone: the threshold is the highest
of 0.80, 0.82 ... 0.98 losing none of its findings, one step lower as a margin; then, at that threshold, the
share is the highest of 0.5 ... 1 losing no finding whose Dice is within 0.005 of the best (as little retyping
as gives the gain; 0 where retyping does not help). The tables show, per folder, the sample-averaged Dice, the
findings lost and (thresholds) the true and false mL removed, and the mL still painted on the ``--normal-scan``
scans (all false). ``--write`` puts both on the checkpoint's card (its ``.json`` beside the weights; the weights
are not touched), where ``ctseg segment``, ``ctseg evaluate`` and the app read them. The bundled models' cards
are never written.
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
    predictor = Predictor.from_checkpoint(path, device=device, guard=Guard(min_piece_confidence=0, min_type_share=0))
    if card_model_kind(predictor.card) != "slice" or predictor.guard is None:
        raise CheckpointError(f"the anatomical guard runs on slice models only; {predictor.card.architecture} is "
                              f"a {card_model_kind(predictor.card)} model", path)
    return predictor, path


def _cell(s: dict, removed: bool) -> str:
    text = f"{s['dice']:.3f} lost {s['lost']}"
    return text + (f" true {s['true_removed_ml']:5.2f} false {s['false_removed_ml']:6.2f}" if removed else "")


def _tables(sets: dict, normal: list, chosen: float, share: float) -> str:
    from ctseg_core.guard_choice import SHARES, THRESHOLDS, painted_ml, score

    names = " ".join(f"{Path(n).name[:34]:>34}" for n in sets)
    lines = ["rule 4, unsure pieces (rule 5 off): Dice; findings lost; true / false mL removed",
             f"{'threshold':>9} {names}" + ("   normal mL" if normal else "")]
    for t in (0.0, *THRESHOLDS):
        cells = " ".join(f"{_cell(score(scans, t), True):>34}" for scans in sets.values())
        lines.append(f"{t:>9.2f} {cells}" + (f"   {painted_ml(normal, t):9.2f}" if normal else "")
                     + ("  <- chosen" if t == chosen else ""))
    lines += ["", f"rule 5, one type per extra-axial collection (rule 4 at {chosen:.2f}): Dice; findings lost",
              f"{'share':>9} {names}"]
    for v in (0.0, *SHARES):
        cells = " ".join(f"{_cell(score(scans, chosen, v), False):>34}" for scans in sets.values())
        lines.append(f"{v:>9.2f} {cells}" + ("  <- chosen" if v == share else ""))
    pooled = [scan for scans in sets.values() for scan in scans]
    final = score(pooled, chosen, share)
    lines.append(f"all {len(pooled)} scans: Dice {score(pooled, 0)['dice']:.3f} with neither rule, {final['dice']:.3f} "
                 f"at {chosen:.2f} / {share:.2f} (per class {final['per_class']})")
    return "\n".join(lines)


def _writable(path: Path) -> None:
    from ctseg_core.resources import bundled_models

    if str(path) in {str(p) for p in bundled_models().values()}:
        raise CheckpointError("a bundled model's card is not rewritten; copy its .safetensors and .json files "
                              "and choose on the copy", path)


def write_choice(path: Path, chosen: float, share: float, choose_set: str, check_sets: list[str]) -> Path:
    """Put the threshold and the share on the card of the checkpoint ``path`` (atomically); returns the card's path."""
    from ctseg_core.atomic import atomic_write_text
    from ctseg_core.checkpoint import checkpoint_paths, read_card

    _writable(path)
    card = read_card(path)
    card.guard = {"min_piece_confidence": chosen, "min_type_share": share,
                  "chosen": f"{date.today().isoformat()} by ctseg choose-guard on {choose_set} (threshold: the highest "
                            f"losing none of its findings, one step lower; share: the highest losing none and within "
                            f"0.005 of the best Dice); checked on {', '.join(check_sets) or 'no other set'}"}
    _, card_path = checkpoint_paths(path)
    atomic_write_text(card_path, card.to_json())
    return card_path


def _run(args) -> int:
    import numpy as np

    from ctseg_core.guard_choice import SHARES, THRESHOLDS, choose, choose_share, measure, measure_folder, painted_ml, score
    from ctseg_core.io import load_volume

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
    share = choose_share(sets[str(args.choose)], chosen)
    checks = [f.name for f in args.check]
    card_path = write_choice(path, chosen, share, args.choose.name, checks) if args.write else None
    if args.json:
        print(json.dumps({"model": str(path), "min_piece_confidence": chosen, "min_type_share": share,
                          "choose_set": str(args.choose),
                          "thresholds": {n: {f"{t:.2f}": score(s, t) for t in (0.0, *THRESHOLDS)} for n, s in sets.items()},
                          "shares": {n: {f"{v:.2f}": score(s, chosen, v) for v in (0.0, *SHARES)} for n, s in sets.items()},
                          "normal_ml": {f"{t:.2f}": painted_ml(normal, t) for t in (0.0, *THRESHOLDS)},
                          "written": str(card_path) if card_path else None}, indent=2))
        return 0
    print()
    print(_tables(sets, normal, chosen, share))
    print(f"chosen: min_piece_confidence {chosen:.2f}, min_type_share {share:.2f}"
          + (f" (written to {card_path})" if card_path else " (not written; --write puts them on the card)"))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("choose-guard", help="choose a model's own guard settings on labelled held-out scans",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="aa_unet (the bundled model) or a checkpoint (X.safetensors with X.json)")
    p.add_argument("--choose", type=Path, required=True,
                   help="folder of labelled scans the model never trained on: the choice is made on it alone")
    p.add_argument("--check", type=Path, action="append", default=[],
                   help="another labelled folder, shown beside it (no part in the choice); repeat for several")
    p.add_argument("--normal-scan", type=Path, action="append", default=[],
                   help="a scan without hemorrhage (DICOM folder or image); repeat for several")
    p.add_argument("--write", action="store_true", help="put the chosen settings on the checkpoint's card")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)
