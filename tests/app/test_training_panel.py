"""The Training dock: a real (tiny) fine-tune in its own process through the panel, cancel, errors, the
too-few-cases message, and the versions list with "Make active". Generated 64x64 head CTs as corrected
cases in a temporary workspace whose active model is a small random All-Attention U-Net (v1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gui_helpers import open_and_wait
from gui_helpers import make_window
from ctseg_core.checkpoint import ModelCard
from ctseg_core.io import load_volume
from ctseg_core.io.images import write_volume
from ctseg_core.model_store import ModelStore
from ctseg_core.models import create_model
from ctseg_core.preprocess import Plan
from ctseg_core.store import Workspace
from ctseg_core.synth import generate_case
from ctseg_core.training.run import STATE_FILE
from ctseg_core.volume import LabelMap
from PySide6.QtWidgets import QLabel

from app.panels.training_panel import error_text, install_training

SEEDS = (101, 102, 103)
TINY_ARGS = ["--device", "cpu", "--batch-size", "4", "--seed", "0"]


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Generated scans (NIfTI) with their true labels."""
    folder = tmp_path_factory.mktemp("train_scans")
    out = []
    for seed in SEEDS:
        case = generate_case(seed, shape_yx=(64, 64), n_slices=12, lesion_classes=[1])
        path = folder / f"synth_{seed}.nii.gz"
        write_volume(case.volume, path)
        out.append((path, case.labels.array.astype(np.uint8)))
    return out


def fill_workspace(root, scans) -> list[str]:
    """Corrected cases (labels = truth) and a tiny random model as the active version v1."""
    ws = Workspace(root)
    ids = []
    for path, truth in scans:
        volume = load_volume(path)
        case = ws.open_case(volume, path)
        case.save_final(LabelMap(truth, volume.geometry))
        case.set_status("corrected", annotator="test")
        ids.append(case.id)
    torch.manual_seed(0)
    model = create_model("aa_unet", encoder="resnet18d", decoder_channels=(8, 8, 16, 16, 32, 32))
    store = ModelStore.for_workspace(root)
    store.use(store.add(model, ModelCard.for_model(model, plan=Plan(spacing_mm=None).to_dict())).version)
    return ids


@pytest.fixture
def trainer(qtbot, settings, tmp_path, workspace, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # inherited by the training process
    win, editor = make_window(qtbot, settings, tmp_path, workspace, autosave_ms=600000)
    panel = install_training(win, editor)
    panel.extra_args = list(TINY_ARGS)
    yield win, editor, panel
    panel.shutdown()
    win.close()
    win.inference.shutdown()


def test_retrain_through_the_panel_shows_dice_adds_a_version_and_runs_it(qtbot, trainer, workspace, scans):  # noqa: F811
    win, editor, panel = trainer
    fill_workspace(workspace, scans)
    assert open_and_wait(qtbot, win, scans[0][0]) == "no model"  # the case opens with its saved corrections
    panel.refresh_versions()
    assert panel.version_rows() == [("default", False), ("v1", True)]  # the bundled model is the root version
    assert panel.auto_strategy in panel.strategy_label.text() and panel.auto_reason in panel.strategy_label.text()

    panel.steps.setValue(3)
    panel.strategy.setCurrentIndex(panel.strategy.findData("decoder"))
    assert panel.arguments()[-len(TINY_ARGS) - 4:-len(TINY_ARGS)] == ["--steps", "3", "--strategy", "decoder"]
    panel.retrain_button.click()
    assert panel.running and not panel.retrain_button.isEnabled() and panel.cancel_button.isEnabled()
    assert not panel.make_active_button.isEnabled() and not panel.resume_button.isEnabled()
    win.session.set_position(4, 30, 30)  # the GUI stays usable while the process trains
    qtbot.waitUntil(lambda: panel.state != "running", timeout=120000)
    assert panel.state == "done", panel.error_label.text()

    events = panel.process.events
    kinds = [e.name for e in events]
    assert kinds[:2] == ["validation_set", "plan"] and kinds[-1] == "done" and "step" in kinds
    before, after = [e for e in events if e.name == "validate"]
    assert panel.result_table.rowCount() == len(after.dice) >= 1
    table = {panel.result_table.item(r, 0).text(): (panel.result_table.item(r, 1).text(),
                                                   panel.result_table.item(r, 2).text())
             for r in range(panel.result_table.rowCount())}
    assert table["Intracerebral hemorrhage (ICH)"] == (f"{before.dice['ich']:.3f}", f"{after.dice['ich']:.3f}")
    change = after.dice["ich"] - before.dice["ich"]  # the rule's numbers are shown with the decision
    assert panel.result_table.item(0, 3).text() == f"{change:+.3f} " + ("ok" if change >= -0.05 else "too low")
    assert "no lesion class loses more than 0.05" in panel.rule_label.text()
    steps = [e for e in events if e.name == "step"]
    assert steps[-1].step == 3 and panel.progress.value() == 3 or not panel.progress.isVisible()
    # live plots: the loss of every step, the Dice bars before and after; validation progress was reported
    assert panel.plots.steps == [e.step for e in steps] and len(panel.plots.smoothed) == len(steps)
    assert panel.plots.before == before.dice and panel.plots.after == after.dice
    validating = [e for e in events if e.name == "validating"]
    assert [(e.when, e.case) for e in validating][:2] == [("before", 0), ("before", 1)]
    assert validating[-1].when == "after" and validating[-1].case == validating[-1].cases >= 1
    dialog = panel.show_run_details()
    assert dialog.table.rowCount() == len(after.dice) + 1 and dialog.width() >= 500
    assert dialog.table.item(0, 0).text() == "Intracerebral hemorrhage (ICH)"
    assert dialog.table.item(0, 3).text() == f"{after.dice['ich'] - before.dice['ich']:+.3f}"
    dialog.close()
    done = events[-1]
    assert panel.reason_label.text() == done.reason and done.version == "v2"
    assert "new version v2" in panel.status_label.text()
    store = ModelStore.for_workspace(workspace)
    assert [v.version for v in store.versions()] == ["default", "v1", "v2"]
    assert panel.version_rows() == [("default", False), ("v1", not done.promoted), ("v2", done.promoted)]
    # the versions table shows scores of the current validation set only: v1 (before) and v2 (after)
    assert panel.versions_table.item(1, 4).text() == f"{before.mean_dice:.3f}"
    assert panel.versions_table.item(2, 4).text() == f"{after.mean_dice:.3f}"
    assert panel.versions_table.item(0, 4).text() == "-"  # the bundled model was not measured here
    assert any("training finished" in t for t in win.log_panel.text_lines())

    # the new version on the open case: loaded in the inference thread, then run
    assert panel.run_new_button.isEnabled()
    with qtbot.waitSignal(win.pipeline_done, timeout=60000) as blocker:
        panel.run_new_button.click()
    assert blocker.args == ["inferred"] and "v2" in win.session.model_summary

    assert [panel.versions_table.item(r, 2).text() for r in range(3)] == ["-", "-", "v1"]  # trained from
    assert "(retrained from v1)" in panel.versions_table.item(2, 1).toolTip()

    # roll back to v1 from the versions list: the store's pointer and the app's model follow; when v1 scored
    # worse than v2 the panel asks first
    asked = []
    panel.confirm = lambda title, text: asked.append(text) or True
    panel.versions_table.selectRow(1)  # row 0 is the bundled root version
    with qtbot.waitSignal(win.inference.model_loaded, timeout=30000):
        panel.make_active_button.click()
    assert bool(asked) == (done.promoted and after.mean_dice > before.mean_dice)
    assert store.active_version() == "v1" and panel.version_rows() == [("default", False), ("v1", True), ("v2", False)]
    assert win.settings.value("model/path") == str(store.get("v1").path)
    assert "v1" in win.session.model_summary


def test_cancel_stops_the_process_and_says_so(qtbot, trainer, workspace, scans):  # noqa: F811
    win, editor, panel = trainer
    fill_workspace(workspace, scans)
    panel.steps.setValue(5000)
    assert panel.start()
    qtbot.waitUntil(lambda: any(e.name == "step" for e in panel.process.events), timeout=300000)
    assert "loss" in panel.status_label.text() and panel.progress.maximum() == 5000
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: panel.state != "running", timeout=60000)
    assert panel.state == "cancelled" and not panel.running
    assert panel.process.events[-1].name == "cancelled"
    assert "cancelled" in panel.status_label.text() and panel.error_label.text() == ""
    store = ModelStore.for_workspace(workspace)
    assert [v.version for v in store.versions()] == ["default", "v1"] and (store.dir / STATE_FILE).is_file()
    assert panel.retrain_button.isEnabled() and not panel.run_new_button.isEnabled()
    assert panel.resume_button.isEnabled() and panel.arguments(resume=True)[5] == "--resume"


def test_a_failing_run_shows_a_readable_error(qtbot, trainer, workspace, scans):  # noqa: F811
    win, editor, panel = trainer
    fill_workspace(workspace, scans)
    panel.extra_args += ["--from", "v9"]  # no such version: the process reports an error and exits 2
    assert panel.start()
    qtbot.waitUntil(lambda: panel.state != "running", timeout=120000)
    assert panel.state == "failed"
    assert "Training failed" in panel.error_label.text() and "no model version 'v9'" in panel.error_label.text()
    assert any(level == "error" and "v9" in text for level, text in win.log_panel.lines)
    assert panel.retrain_button.isEnabled()


def test_too_few_cases_is_said_instead_of_starting(qtbot, trainer, workspace, scans):  # noqa: F811
    win, editor, panel = trainer
    fill_workspace(workspace, scans[:1])
    retrain = [a for a in win.menu("&Model").actions() if a.text().startswith("Retrain on corrected cases")]
    assert retrain == [panel.retrain_action]
    retrain[0].trigger()
    assert not panel.running and panel.state == "idle"
    assert "Too few cases" in panel.error_label.text() and "1 corrected, adjudicated or approved" in panel.error_label.text()
    assert any(level == "warning" and "Too few cases" in text for level, text in win.log_panel.lines)


def test_activating_a_worse_version_asks_and_no_leaves_the_active_one(qtbot, trainer, workspace, scans):  # noqa: F811
    win, editor, panel = trainer
    fill_workspace(workspace, scans[:1])
    store = ModelStore.for_workspace(workspace)
    torch.manual_seed(1)
    model = create_model("aa_unet", encoder="resnet18d", decoder_channels=(8, 8, 16, 16, 32, 32))
    card = ModelCard.for_model(model, plan=Plan(spacing_mm=None).to_dict(), parent_version="v1")
    card.metrics = {"validation": {"cases": ["a"], "mean_before": 0.6, "mean_after": 0.4,
                                   "dice_before": {"ich": 0.6}, "dice_after": {"ich": 0.4}}}
    card.extra = {"promoted": False, "promotion_reason": "v2 was kept but not made active"}
    store.add(model, card)
    panel.refresh_versions()
    asked = []
    panel.confirm = lambda title, text: asked.append((title, text)) or False  # the user says No
    assert not panel.make_active("v2")
    assert asked and asked[0][0] == "Make v2 active?" and "0.400" in asked[0][1] and "0.600" in asked[0][1]
    assert store.active_version() == "v1" and panel.version_rows()[-1] == ("v2", False)
    panel.confirm = lambda title, text: True  # Yes
    with qtbot.waitSignal(win.inference.model_loaded, timeout=30000):
        assert panel.make_active("v2")
    assert store.active_version() == "v2"
    dialog = panel.show_version_details(2)
    assert dialog.table.item(0, 3).text() == "-0.200" and "v2 was kept" in dialog.findChild(QLabel).text()
    dialog.close()


def test_error_text_prefers_the_error_event_then_the_traceback_tail():
    from ctseg_core.training.events import Error

    assert error_text([Error("bad case")], "Traceback\n  x\nValueError: y\n", 2) == "bad case"
    assert error_text([], "Traceback (most recent call last):\n  File x\nMemoryError: out of memory\n", 1) == \
        "MemoryError: out of memory"
    assert error_text([], "", -1) == "the training process crashed"


def test_inference_of_the_open_case_pauses_training_and_never_runs_beside_it(qtbot, trainer, workspace, scans):  # noqa: F811
    win, editor, panel = trainer
    fill_workspace(workspace, scans)
    store = ModelStore.for_workspace(workspace)
    with qtbot.waitSignal(win.inference.model_loaded, timeout=30000):
        win.load_model(str(store.get("v1").path))
    assert open_and_wait(qtbot, win, scans[0][0]) in ("inferred", "stored")
    queue = win.model.device_queue
    overlaps = []
    win.inference.running_changed.connect(
        lambda running: running and overlaps.append(panel.job is not None and panel.job.state != "paused"))

    panel.steps.setValue(5000)
    assert panel.start()
    assert "training run" in panel.queue_label.text()
    qtbot.waitUntil(lambda: any(e.name == "step" for e in panel.process.events), timeout=300000)
    with qtbot.waitSignal(win.pipeline_done, timeout=120000) as blocker:
        win.run_inference()  # the open case needs the device: training gives it up between two steps
    assert blocker.args == ["inferred"]
    names = [e.name for e in panel.process.events]
    assert "paused" in names and overlaps == [False]  # inference started only once training had paused
    qtbot.waitUntil(lambda: "resumed" in [e.name for e in panel.process.events], timeout=30000)
    assert queue.holder is panel.job and panel.job.state == "running"
    steps_after = [e.step for e in panel.process.events[names.index("paused"):] if e.name == "step"]
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: panel.state != "running", timeout=60000)
    assert panel.state == "cancelled" and queue.holder is None
    assert steps_after == sorted(steps_after)  # it went on from where it paused


def test_the_case_list_moves_a_case_in_and_out_of_the_validation_set(qtbot, trainer, workspace, scans):  # noqa: F811
    import json

    from app.panels.cases_panel import VAL_COLUMN

    win, editor, panel = trainer
    ids = fill_workspace(workspace, scans)
    cases = editor.cases_panel
    editor.store.set_annotator("dr_val")
    cases.refresh()
    col = VAL_COLUMN
    assert all(cases.table.item(r, col).text() == "" for r in range(cases.table.rowCount()))
    assert cases.table.isColumnHidden(col)  # no validation set yet: the column takes no room
    assert cases.toggle_validation(ids[0]) and cases.toggle_validation(ids[1])
    assert not cases.table.isColumnHidden(col)
    marked = {cases.record_at(r).id for r in range(cases.table.rowCount()) if cases.table.item(r, col).text() == "✓"}
    assert marked == {ids[0], ids[1]}
    assert cases.toggle_validation(ids[0])  # out again, to training
    data = json.loads((workspace / "validation.json").read_text())
    assert data["cases"] == [ids[1]] and [(h["action"], h["by"]) for h in data["history"]] == [
        ("added", "dr_val"), ("added", "dr_val"), ("removed", "dr_val")]
    assert "Validation set: 1 case(s)" in panel.validation_label.text()


def test_slice_reviewed_and_next_uncertain_slice(qtbot, trainer, workspace, scans):  # noqa: F811
    from app.review_keys import go_to_next_uncertain_slice, mark_slice_reviewed
    from ctseg_core.store.reviewed import confirmed_slices

    win, editor, panel = trainer
    fill_workspace(workspace, scans[:2])
    store = ModelStore.for_workspace(workspace)
    with qtbot.waitSignal(win.inference.model_loaded, timeout=30000):
        win.load_model(str(store.get("v1").path))
    assert open_and_wait(qtbot, win, scans[2][0]) == "inferred"  # a new case: the model's labels, unedited
    win.session.set_position(3, 30, 30)
    action = next(a for a in win.menu("&Review").actions() if a.text().startswith("Slice reviewed"))
    assert action.shortcut().toString() == "Ctrl+Return"
    assert mark_slice_reviewed(win, editor.store)
    assert confirmed_slices(editor.store.case.folder) == [3]
    z = go_to_next_uncertain_slice(win, editor.store)
    assert z is not None and z != 3 and win.session.position[0] == z
    u = np.nan_to_num(win.session.uncertainty)
    scores = [(np.where(u[k] >= 0.05, u[k], 0).sum() if k != 3 else -1) for k in range(u.shape[0])]
    assert z == int(np.argmax(scores))  # the most uncertain slice nobody reviewed


def test_the_next_case_is_segmented_in_the_background_after_the_open_one(qtbot, trainer, workspace, scans):  # noqa: F811
    from ctseg_core.io import load_volume as load

    win, editor, panel = trainer
    fill_workspace(workspace, scans[:1])
    new_case = Workspace(workspace).open_case(load(scans[1][0]), scans[1][0])  # still to review, no prediction
    win.settings.setValue("model/prefetch", True)
    store = ModelStore.for_workspace(workspace)
    with qtbot.waitSignal(win.inference.model_loaded, timeout=30000):
        win.load_model(str(store.get("v1").path))
    with qtbot.waitSignal(win.model.prefetched, timeout=120000) as blocker:
        assert open_and_wait(qtbot, win, scans[2][0]) == "inferred"
    assert blocker.args == [str(new_case.folder), "stored"]
    stored = Workspace(workspace).case(new_case.id)
    assert stored.load_prediction() is not None and stored.load_uncertainty() is not None
    assert win.session.model.same_model(stored.prediction_model())
    assert win.model.device_queue.holder is None
