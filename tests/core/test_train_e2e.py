"""Fine-tuning end to end on generated head CTs in a real workspace, through the command line.

- a weak (random) model fine-tuned on four corrected cases gets clearly better on held-out cases and
  becomes the active version; the JSON-lines protocol carries plan, validation, steps and done;
- a run on deliberately wrong labels is kept but not promoted, and the active version stays;
- SIGTERM cancels a training process cleanly (state saved, ``cancelled`` event, exit 0) and
  ``--resume`` finishes with exactly the weights of an uninterrupted run with the same seed;
- ``torchrun --nproc-per-node 2`` (gloo, CPU): both ranks train, rank 0 alone writes one version.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ctseg_core.checkpoint import ModelCard, load_checkpoint
from ctseg_core.cli import main as ctseg
from ctseg_core.io import load_volume
from ctseg_core.io.images import write_volume
from ctseg_core.metrics import overlap_counts
from ctseg_core.model_store import ModelStore
from ctseg_core.models import create_model
from ctseg_core.predictor import Predictor
from ctseg_core.preprocess import Plan
from ctseg_core.store import Workspace
from ctseg_core.synth import generate_case
from ctseg_core.training.run import STATE_FILE
from ctseg_core.volume import LabelMap

ROOT = Path(__file__).resolve().parents[2]
SIZE = (96, 96)
ICH = 1
SMALL = dict(encoder="resnet18d", decoder_channels=(16, 16, 32, 32, 64, 64))
TRAIN_SEEDS, HELD_OUT_SEEDS = (118, 102, 119, 125), (112, 153)  # ICH of 8-32 mL each (drawn per seed)


def generated(seed):
    return generate_case(seed, shape_yx=SIZE, lesion_classes=[ICH])


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Generated scans written as NIfTI (the workspace references them) with their true labels."""
    folder = tmp_path_factory.mktemp("scans")
    out = []
    for seed in TRAIN_SEEDS:
        case = generated(seed)
        path = folder / f"synth_{seed}.nii.gz"
        write_volume(case.volume, path)
        out.append((path, case.labels.array))
    return out


@pytest.fixture(scope="module")
def held_out():
    return [generated(seed) for seed in HELD_OUT_SEEDS]


@pytest.fixture(scope="module")
def weak_model():
    torch.manual_seed(0)
    model = create_model("aa_unet", **SMALL)
    return model, ModelCard.for_model(model, plan=Plan(spacing_mm=None).to_dict())


def add_cases(root: Path, sources, relabel=None) -> list[str]:
    """Corrected cases in the workspace: labels = truth, or ``relabel(volume, truth)``."""
    ws = Workspace(root)
    ids = []
    for path, truth in sources:
        volume = load_volume(path)
        case = ws.open_case(volume, path)
        labels = truth if relabel is None else relabel(volume.array, truth)
        case.save_final(LabelMap(labels.astype(np.uint8), volume.geometry))
        case.set_status("corrected", annotator="test")
        ids.append(case.id)
    return ids


def make_workspace(root: Path, sources, model_and_card, relabel=None) -> tuple[Path, list[str]]:
    """A workspace with corrected cases whose active model version is the given model (``v1``)."""
    ids = add_cases(root, sources, relabel)
    store = ModelStore.for_workspace(root)
    model, card = model_and_card
    store.use(store.add(model, dataclasses.replace(card, metrics={}, extra={}, parent_version=None)).version)
    return root, ids


def run_cli(argv, capsys) -> tuple[int, list[dict], str]:
    code = ctseg(argv)
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def held_out_dice(checkpoint: Path, cases) -> float:
    """ICH Dice over the held-out generated cases with the real inference path (Predictor)."""
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    total = None
    for case in cases:
        counts = overlap_counts(predictor.predict(case.volume).labels, case.labels)
        total = counts if total is None else total + counts
    return float(total.dice()[ICH])


def common_args(ws: Path, val_id: str, *more: str) -> list[str]:
    return ["--workspace", str(ws), "--device", "cpu", "--val-cases", val_id, "--seed", "0", *more]


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory, sources, weak_model):
    """One fine-tune of the weak model on three corrected cases (the fourth validates); the parent's card names
    a guard threshold (too low to remove anything: an argmax class has at least 1/8)."""
    model, card = weak_model
    card = dataclasses.replace(card, guard={"min_piece_confidence": 0.01, "chosen": "a test"})
    ws, ids = make_workspace(tmp_path_factory.mktemp("ws_good"), sources, (model, card))
    out, err = io.StringIO(), io.StringIO()  # capsys is function-scoped
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = ctseg(["train", *common_args(ws, ids[3], "--steps", "50", "--strategy", "full", "--lr", "1e-3")])
    events = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    return ws, ids, code, events, err.getvalue()


def test_fine_tune_improves_a_weak_model_and_is_promoted(fine_tuned, held_out):
    ws, ids, code, events, err = fine_tuned
    assert code == 0, err
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan" and kinds[-1] == "done" and "cancelled" not in kinds
    plan = events[0]
    assert plan["parent"] == "v1" and plan["val_cases"] == [ids[3]] and sorted(plan["train_cases"]) == sorted(ids[:3])
    assert plan["strategy"] == "full" and plan["total_steps"] == 50
    steps = [e for e in events if e["event"] == "step"]
    assert steps[-1]["step"] == 50 and steps[-1]["eta_s"] == 0.0
    assert all(np.isfinite(e["loss"]) and e["lr"] > 0 for e in steps)
    before, after = [e for e in events if e["event"] == "validate"]
    assert (before["when"], after["when"]) == ("before", "after") and set(before["dice"]) == {"ich"}
    assert after["mean_dice"] > before["mean_dice"] + 0.15

    done = events[-1]
    assert done["version"] == "v2" and done["promoted"] is True and done["active"] == "v2"
    assert "not lower" in done["reason"] and done["reason"] in err
    assert all(e["protocol"] == 2 for e in events)
    store = ModelStore.for_workspace(ws)
    assert store.active_version() == "v2"
    # the promotion Dice is the Dice of the viewer's Predictor on the validation case (all slices reviewed)
    val_volume = load_volume(Workspace(ws).case(ids[3]).record.source.path)
    val_truth = Workspace(ws).case(ids[3]).load_final(val_volume).array
    predicted = Predictor.from_checkpoint(store.get("v2").path, device="cpu").predict(val_volume).labels
    assert after["dice"]["ich"] == pytest.approx(float(overlap_counts(predicted, val_truth).dice()[ICH]), abs=1e-6)

    weak, tuned = held_out_dice(store.get("v1").path, held_out), held_out_dice(store.active_path(), held_out)
    assert tuned > weak + 0.2, (weak, tuned)

    card = store.get("v2").card
    assert card.parent_version == "v1" and card.version == "v2"
    assert card.guard == store.get("v1").card.guard == {"min_piece_confidence": 0.01, "chosen": "a test"}
    assert sorted(card.training_data["train_cases"]) == sorted(ids[:3]) and card.training_data["val_cases"] == [ids[3]]
    val = card.metrics["validation"]
    assert val["dice_before"] == before["dice"] and val["dice_after"] == after["dice"]
    assert val["cases"] == [ids[3]] and set(val["hashes"]) == {ids[3]}  # the validation ids and their contents
    assert set(val["hashes"][ids[3]]) == {"scan", "labels"} and len(val["fingerprint"]) == 16
    assert val["dice_voxel_after"]["ich"] == pytest.approx(after["dice"]["ich"])  # one case: both averages agree
    assert val["decision"]["per_class"]["ich"]["ok"] and "no lesion class loses more" in val["decision"]["rule"]
    assert json.loads((ws / "validation.json").read_text())["cases"] == [ids[3]]
    assert card.recipe["strategy"] == "full" and card.recipe["loss"] == "focal" and card.recipe["lr"] == 1e-3
    assert card.extra["seed"] == 0 and card.extra["hardware"]["device"] == "cpu" and card.extra["promoted"] is True
    assert not (store.dir / STATE_FILE).exists()  # a finished run leaves no resumable state


def brain_as_ich(volume, truth):
    """Deliberately wrong corrections: all brain tissue (20..45 HU) marked as ICH."""
    return ((volume >= 20) & (volume <= 45)).astype(np.uint8) * ICH


def test_a_run_that_makes_things_worse_is_kept_but_not_promoted(tmp_path, fine_tuned, sources, capsys):
    good_ws = fine_tuned[0]
    good = load_checkpoint(ModelStore.for_workspace(good_ws).active_path())
    ws, ids = make_workspace(tmp_path / "ws_bad", sources[:3], good, relabel=brain_as_ich)
    val_ids = add_cases(ws, sources[3:])  # the validation case stays right
    store = ModelStore.for_workspace(ws)
    code, events, err = run_cli(["train", *common_args(ws, val_ids[0], "--steps", "12", "--strategy", "full",
                                                        "--lr", "1e-3")], capsys)
    assert code == 0, err
    done = events[-1]
    assert done["event"] == "done" and done["promoted"] is False and done["active"] == "v1"
    assert "lower than v1's" in done["reason"] and "kept but not made active" in err
    assert store.active_version() == "v1" and done["version"] in [v.version for v in store.versions()]
    assert store.get(done["version"]).card.extra["promoted"] is False

    code = ctseg(["models", "use", done["version"], "--workspace", str(ws)])  # the user may still choose it
    assert code == 0 and store.active_version() == done["version"]
    assert ctseg(["models", "use", "v1", "--workspace", str(ws)]) == 0 and store.active_version() == "v1"
    capsys.readouterr()


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}


def test_sigterm_cancels_cleanly_and_resume_matches_an_uninterrupted_run(tmp_path, sources, weak_model, capsys):
    args = ["--steps", "6", "--strategy", "decoder", "--batch-size", "4", "--checkpoint-every", "100"]
    ws_a, ids = make_workspace(tmp_path / "a", sources, weak_model)
    code, events_a, err = run_cli(["train", *common_args(ws_a, ids[3], *args)], capsys)
    assert code == 0 and events_a[-1]["event"] == "done", err

    ws_b, ids_b = make_workspace(tmp_path / "b", sources, weak_model)
    assert ids_b == ids
    proc = subprocess.Popen([sys.executable, "-m", "ctseg_core", "train", *common_args(ws_b, ids[3], *args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    for line in proc.stdout:
        if json.loads(line)["event"] == "start":
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=300)
    events_b = [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 0, err
    cancelled = events_b[-1]
    assert cancelled["event"] == "cancelled" and 0 <= cancelled["step"] < 6, events_b
    store_b = ModelStore.for_workspace(ws_b)
    assert (store_b.dir / STATE_FILE).is_file() and [v.version for v in store_b.versions()][-1] == "v1"
    assert "--resume" in err

    code, events_r, err = run_cli(["train", *common_args(ws_b, ids[3], "--resume", "--steps", "99")], capsys)
    assert code == 0, err
    assert events_r[0]["resumed_from_step"] == cancelled["step"] and events_r[0]["total_steps"] == 6  # the saved run
    assert events_r[-1]["event"] == "done" and not (store_b.dir / STATE_FILE).exists()
    a, _ = load_checkpoint(ModelStore.for_workspace(ws_a).get("v2").path)
    b, _ = load_checkpoint(store_b.get("v2").path)
    for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(wa, wb), name
    assert events_r[-1]["promoted"] == events_a[-1]["promoted"]


def test_resume_without_state_is_a_clear_error(tmp_path, sources, weak_model, capsys):
    ws, ids = make_workspace(tmp_path / "ws", sources[:2], weak_model)
    code, events, err = run_cli(["train", *common_args(ws, ids[1], "--resume")], capsys)
    assert code == 2 and events == [{"event": "error", "protocol": 2, "message": events[0]["message"]}]
    assert "no training state to resume from" in events[0]["message"] and "state.safetensors" in err


def test_torchrun_two_cpu_processes(tmp_path, sources, weak_model):
    ws, ids = make_workspace(tmp_path / "ws", sources, weak_model)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "ctseg_core", "train", *common_args(ws, ids[3], "--steps", "3", "--batch-size", "2",
                                                   "--strategy", "decoder")]
    env = {**_env(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("done") == 1 and [e["event"] for e in events].count("plan") == 1
    assert events[0]["world_size"] == 2
    assert "rank 0 of 2 finished (done)" in proc.stderr and "rank 1 of 2 finished (done)" in proc.stderr
    store = ModelStore.for_workspace(ws)
    assert [v.version for v in store.versions()][-2:] == ["v1", "v2"]
    assert sorted(p.name for p in store.dir.iterdir() if p.is_file()) == [
        "active.json", "scores.json", "v1.json", "v1.safetensors", "v2.json", "v2.safetensors"]
    assert store.get("v2").card.extra["hardware"]["processes"] == 2
