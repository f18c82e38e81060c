"""Model > Bundled model (aa_unet, BLAST-CT with 1/4/12 members) through the real inference thread, and how
BLAST-CT's review labels show: legend rows, overlay colours (oedema hidden until ticked), findings rows that
say which model drew them, per-member progress in the status bar."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
from PySide6.QtCore import QSettings

from gui_helpers import open_and_wait, phantom_volume
from ctseg_core.io.images import write_volume
from ctseg_core.labels import EXTRA_AXIAL, OEDEMA
from ctseg_core.volume import LabelMap


class ReviewLabelPredictor:
    """Like BLAST-CT's output: blood-density voxels as unassigned extra-axial blood, a band beside them as
    oedema, streamed slice by slice with per-member progress messages."""

    def __init__(self):
        self.card = SimpleNamespace(summary=lambda: "blast_ct v1 — trained on real head CTs (stub)")
        self.messages = []

    def describe(self):
        return self.card.summary() + " (1 of 12 members)"

    def predict(self, volume, start_slice=None, on_slice=None, cancel=None, progress=None):
        labels = np.zeros(volume.shape, np.uint8)
        labels[volume.array == 70.0] = EXTRA_AXIAL.id
        labels[3:9, 60:90, 30:100] = OEDEMA.id  # more voxels than the blood
        for z in range(volume.shape[0]):
            probs = np.zeros((5,) + volume.shape[1:], np.float16)
            probs[0] = 1.0
            if on_slice is not None:
                on_slice(z, labels[z], probs)
            if progress is not None:
                progress(z + 1, volume.shape[0], f"member 1/1: tile {z + 1}/{volume.shape[0]}")
        return SimpleNamespace(labels=LabelMap(labels, volume.geometry))


def test_bundled_model_menu_loads_blast_ct_with_its_members(qtbot, window, settings, tmp_path):
    actions = window.bundled_model_actions
    assert set(actions) == {("aa_unet", None), ("blast_ct", 1), ("blast_ct", 4), ("blast_ct", 12)}
    with qtbot.waitSignal(window.inference.model_loaded, timeout=60000):
        actions[("blast_ct", 4)].trigger()
    assert "blast_ct v1" in window.model_label.text() and "4 of 12 members" in window.model_label.text()
    assert "not trained by ctseg" in window.session.model_summary
    assert settings.value("model/path") == "blast_ct" and int(settings.value("model/members")) == 4
    assert actions[("blast_ct", 4)].isChecked() and not actions[("aa_unet", None)].isChecked()
    with qtbot.waitSignal(window.inference.model_loaded, timeout=60000):
        actions[("aa_unet", None)].trigger()
    assert window.session.model_summary.startswith("aa_unet") and "members" not in window.session.model_summary


def test_the_chosen_model_is_loaded_at_the_next_start(qtbot, tmp_path):
    from app.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    settings.setValue("model/path", "blast_ct")
    settings.setValue("model/members", 1)
    win = MainWindow(enable_3d=False, settings=settings, interactive=False)
    qtbot.addWidget(win)
    try:
        qtbot.waitUntil(lambda: win.model.state == "ready", timeout=60000)
        assert "1 of 12 members" in win.session.model_summary
        assert win.bundled_model_actions[("blast_ct", 1)].isChecked()
    finally:
        win.inference.shutdown()


def test_a_fresh_install_opens_with_the_default_of_the_readme_rule(qtbot, tmp_path):
    """No choice in the settings: the app loads ``resources.APP_DEFAULT_MODEL`` (aa_unet since 1 Dec, by the
    README's rule) with the anatomical guard, and the menu shows it chosen."""
    from app.main_window import MainWindow
    from ctseg_core.resources import APP_DEFAULT_MEMBERS, APP_DEFAULT_MODEL

    settings = QSettings(str(tmp_path / "fresh.ini"), QSettings.IniFormat)
    win = MainWindow(enable_3d=False, settings=settings, interactive=False)
    qtbot.addWidget(win)
    try:
        qtbot.waitUntil(lambda: win.model.state == "ready", timeout=60000)
        assert (APP_DEFAULT_MODEL, APP_DEFAULT_MEMBERS) == ("aa_unet", None)
        assert win.session.model_summary.startswith("aa_unet v4") and "members" not in win.session.model_summary
        assert "synthetic" in win.session.model_summary  # what it was trained on, on the status bar
        assert win.inference.worker.predictor.guard.min_piece_confidence == 0.92  # the whole guard, from its card
        assert win.inference.worker.predictor.guard.min_type_share == 0.8
        assert win.bundled_model_actions[("aa_unet", None)].isChecked()
    finally:
        win.inference.shutdown()


def test_review_labels_in_legend_overlay_findings_and_export(qtbot, window, tmp_path):
    path = tmp_path / "phantom.nii.gz"
    write_volume(phantom_volume(), path)
    with qtbot.waitSignal(window.inference.model_loaded, timeout=30000):
        window.load_predictor(ReviewLabelPredictor())
    progress_formats = []
    window.inference.progress.connect(lambda *a: progress_formats.append(window.model.progress_text.text()))
    assert open_and_wait(qtbot, window, path) == "inferred"
    assert any("member 1/1: tile" in f for f in progress_formats)

    legend = [window.classes_panel.table.item(r, 2).text() for r in range(window.classes_panel.table.rowCount())]
    assert any(EXTRA_AXIAL.name in t and "reassign" in t for t in legend) and any(OEDEMA.name in t for t in legend)
    ax = window.views["axial"]
    ax.set_slice(5)
    overlay = ax.rendered_overlay()
    assert tuple(overlay[45, 50, :3]) == EXTRA_AXIAL.colour and overlay[45, 50, 3] == 255
    assert overlay[61, 50, 3] == 0  # oedema: hidden until its box is ticked
    assert window.go_to_largest_finding() and 38 <= window.session.position[1] < 58  # the blood, not the oedema
    window.classes_panel.show_boxes[OEDEMA.id].setChecked(True)
    ax.set_slice(5)
    assert tuple(ax.rendered_overlay()[61, 50, :3]) == OEDEMA.colour

    qtbot.waitUntil(lambda: window.findings_panel.findings is not None
                    and window.findings_panel.findings.classes[-1].key == "oedema", timeout=5000)
    findings = window.findings_panel.findings
    eah, oedema = findings.by_key("extra_axial"), findings.by_key("oedema")
    assert eah.hemorrhage and eah.positive and not oedema.hemorrhage
    assert findings.model.startswith("blast_ct v1") and findings.by_key("sdh").voxels == 0
    table = window.findings_panel.table
    rows = {table.item(r, 0).text(): r for r in range(table.rowCount()) if not table.isRowHidden(r)}
    assert {"EXTRA_AXIAL", "OEDEMA"} <= set(rows) and table.item(rows["OEDEMA"], 3).text() == "present"
    window.export_findings(str(tmp_path / "f.json"))
    data = json.loads((tmp_path / "f.json").read_text())
    assert data["model"].startswith("blast_ct v1")
    assert {c["key"]: c["hemorrhage"] for c in data["classes"]}["oedema"] is False


def test_the_guard_switch_reloads_the_model_with_and_without_it(qtbot, window, settings, tmp_path):
    from tiny_models import save_tiny_checkpoint

    settings.setValue("model/path", str(save_tiny_checkpoint(tmp_path)))
    with qtbot.waitSignal(window.inference.model_loaded, timeout=60000):
        window.load_model(None)
    on = window.session.model
    assert window.guard_action.isChecked() and "Guard(" in on.postprocess
    with qtbot.waitSignal(window.inference.model_loaded, timeout=60000):
        window.guard_action.setChecked(False)
    off = window.session.model
    assert off.postprocess == "" and settings.value("model/guard", True, type=bool) is False
    assert off.sha256 == on.sha256 and not off.same_model(on)  # same weights, other labels: a re-run is due
    with qtbot.waitSignal(window.inference.model_loaded, timeout=60000):
        window.guard_action.setChecked(True)
    assert window.session.model.same_model(on)
