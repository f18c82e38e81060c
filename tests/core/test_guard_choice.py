"""Choosing a model's own guard settings (ctseg_core.guard_choice, ``ctseg choose-guard``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tiny_models import save_tiny_checkpoint, tiny_predictor
from ctseg_core.checkpoint import read_card
from ctseg_core.cli import main
from ctseg_core.predictor import Predictor
from ctseg_core.guard_choice import Collection, Piece, Scan, choose, choose_share, measure, painted_ml, score
from ctseg_core.synth import generate_case


def scan(name, truth_ml, *pieces) -> Scan:
    return Scan(name, {c: truth_ml.get(c, 0.0) for c in range(1, 8)}, [Piece(*p) for p in pieces])


# Two scans: an ICH found by a confident and a hesitant piece, an SDH found by one piece at 0.95, false CSDH.
SCANS = [
    scan("a", {1: 10.0}, (1, 8.0, 0.97, 7.0), (1, 2.0, 0.85, 1.5), (5, 1.0, 0.83, 0.0)),
    scan("b", {2: 4.0}, (2, 4.0, 0.95, 3.5), (5, 0.5, 0.91, 0.0)),
]


def test_score_removes_the_pieces_under_the_threshold():
    s = score(SCANS, 0.90)  # the hesitant ICH piece and the first false CSDH go
    assert s["lost"] == 0
    assert s["true_removed_ml"] == 1.5 and s["false_removed_ml"] == pytest.approx(0.5 + 1.0)
    ich_a = 2 * 7.0 / (8.0 + 10.0)
    csdh_b = 0.0  # painted on b, no CSDH in its truth
    assert s["per_class"][0] == pytest.approx(round(ich_a, 3))
    assert s["per_class"][4] == pytest.approx(csdh_b)
    assert painted_ml(SCANS, 0.90) == pytest.approx(8.0 + 4.0 + 0.5)


def test_a_finding_is_lost_when_every_true_piece_of_it_goes():
    assert score(SCANS, 0.96)["lost"] == 1  # the SDH (0.95) goes; the ICH keeps its 0.97 piece
    assert score(SCANS, 0.98)["lost"] == 2


def test_choice_is_the_highest_safe_threshold_one_step_lower():
    assert choose(SCANS) == 0.92  # 0.94 is the highest losing nothing
    only_hesitant = [scan("c", {1: 3.0}, (1, 3.0, 0.81, 2.0))]
    assert choose(only_hesitant) == 0.0  # 0.80 alone is safe: no margin left, the rule stays off
    assert choose([scan("d", {})]) == 0.96  # nothing to lose: 0.98, one step lower


def collection(prob, painted, hit, truth) -> Collection:
    return Collection(tuple(prob), tuple(painted), tuple(hit), tuple(truth))


def typed_scans() -> list[Scan]:
    """A CSDH (truth 10 mL) painted 7 mL CSDH + 3 mL SDH in one collection, the model 80 % sure of CSDH;
    a scan whose EDH (2 mL) touches its SDH (8 mL), both painted right, the model 85 % sure of SDH."""
    a = scan("a", {5: 10.0}, (5, 7.0, 0.97, 7.0), (2, 3.0, 0.95, 0.0))  # SDH, CSDH, EDH order below: SDH, EDH, CSDH
    a.collections = {t: [collection((2.0, 0.0, 8.0), (3.0, 0.0, 7.0), (0.0, 0.0, 7.0), (0.0, 0.0, 10.0))]
                     for t in (0.0, 0.92)}
    b = scan("b", {2: 8.0, 4: 2.0}, (2, 8.0, 0.97, 8.0), (4, 2.0, 0.96, 2.0))
    b.collections = {t: [collection((8.5, 1.5, 0.0), (8.0, 2.0, 0.0), (8.0, 2.0, 0.0), (8.0, 2.0, 0.0))]
                     for t in (0.0, 0.92)}
    return [a, b]


def test_a_share_retypes_collections_it_is_sure_of_and_counts_the_types_it_loses():
    scans = typed_scans()
    off = score(scans, 0.92)
    assert off["per_class"][4] == pytest.approx(round(2 * 7 / 17, 3))  # CSDH on a: 7 of 10, 7 painted
    assert off["lost"] == 0
    at_80 = score(scans, 0.92, 0.8)  # both retyped: a's CSDH holds 0.8 of its probability, b's SDH 0.85
    assert at_80["per_class"][4] == pytest.approx(round(2 * 10 / 20, 3))
    assert at_80["lost"] == 1  # b's EDH became SDH
    at_90 = score(scans, 0.92, 0.9)  # neither is sure enough
    assert (at_90["dice"], at_90["lost"]) == (off["dice"], off["lost"])


def test_the_share_is_the_highest_that_keeps_the_best_dice_and_loses_nothing():
    scans = typed_scans()
    # 0.5-0.8: both retyped (b loses its EDH); 0.9, 1.0: none
    assert choose_share(scans, 0.92) == 0.0  # the only gain loses a finding
    scans[1].truth_ml.update({2: 10.0, 4: 0.0})  # b's "EDH" is in fact SDH, and the model 94 % sure of SDH
    scans[1].collections = {t: [collection((8.5, 0.5, 0.0), (8.0, 2.0, 0.0), (8.0, 0.0, 0.0), (10.0, 0.0, 0.0))]
                            for t in (0.0, 0.92)}
    assert choose_share(scans, 0.92) == 0.8  # a needs 0.8 or less; b is retyped up to 0.9 too


def test_measure_records_every_piece_of_the_predictors_labels():
    case = generate_case(5, shape_yx=(96, 96), n_slices=8, lesion_classes=[1, 7])
    predictor = tiny_predictor(seed=3)  # without the guard: a random model paints many pieces
    result = measure(predictor, case.volume, case.labels.array, "case")
    labels = predictor.predict(case.volume).labels.array
    voxel_ml = float(np.prod(case.volume.spacing)) / 1000
    assert len(result.pieces) > 2
    for cls in range(1, 8):
        mine = [p for p in result.pieces if p.cls == cls]
        assert sum(p.ml for p in mine) == pytest.approx((labels == cls).sum() * voxel_ml)
        overlap = ((labels == cls) & (case.labels.array == cls)).sum() * voxel_ml
        assert sum(p.true_ml for p in mine) == pytest.approx(overlap)
        assert all(0 <= p.mean <= 1 for p in mine)
        assert result.truth_ml[cls] == pytest.approx((case.labels.array == cls).sum() * voxel_ml)


@pytest.fixture
def labelled_folder(tmp_path):
    from ctseg_core.io.images import write_labels, write_volume

    folder = tmp_path / "held_out"
    for seed in (11, 12):
        case = generate_case(seed, shape_yx=(96, 96), n_slices=8, lesion_classes=[1, 2])
        write_volume(case.volume, folder / f"case_{seed}_ct.nii.gz")
        write_labels(case.labels, folder / f"case_{seed}_labels.nii.gz")
    return folder


def test_command_writes_its_choice_on_the_card_and_not_the_weights(tmp_path, labelled_folder, capsys):
    ckpt = save_tiny_checkpoint(tmp_path, "mine", seed=4)
    weights = ckpt.read_bytes()
    assert read_card(ckpt).guard == {}
    assert main(["choose-guard", str(ckpt), "--choose", str(labelled_folder), "--device", "cpu",
                 "--write", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    chosen, share = report["min_piece_confidence"], report["min_type_share"]
    card = read_card(ckpt)
    assert card.guard["min_piece_confidence"] == chosen and "held_out" in card.guard["chosen"]
    assert card.guard["min_type_share"] == share
    assert Predictor.from_checkpoint(ckpt, device="cpu").guard.min_type_share == share
    assert Predictor.from_checkpoint(ckpt, device="cpu").guard.min_piece_confidence == chosen  # as segment, the app load it
    assert ckpt.read_bytes() == weights
    assert report["thresholds"][str(labelled_folder)]["0.00"]["lost"] == 0
    assert report["shares"][str(labelled_folder)]["0.00"] == report["thresholds"][str(labelled_folder)][f"{chosen:.2f}"]
    # the table the command prints marks the same choice
    assert main(["choose-guard", str(ckpt), "--choose", str(labelled_folder), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    marked = [line.split()[0] for line in text.splitlines() if line.endswith("<- chosen")]
    assert marked == [f"{chosen:.2f}", f"{share:.2f}"]  # one row of each table
    assert f"chosen: min_piece_confidence {chosen:.2f}, min_type_share {share:.2f}" in text


def test_a_bundled_models_card_is_refused_before_anything_runs(tmp_path, capsys):
    empty = tmp_path / "none"
    empty.mkdir()  # not a labelled folder: had the scans run first, this would be the error
    assert main(["choose-guard", "aa_unet", "--choose", str(empty), "--write"]) == 2
    err = capsys.readouterr().err
    assert "bundled model's card is not rewritten" in err and "aa_unet_default" in err
