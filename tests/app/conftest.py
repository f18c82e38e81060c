"""GUI test fixtures (helpers live in gui_helpers.py)."""

from __future__ import annotations

import pytest

# re-exported for test modules that import helpers from conftest (prefer: from gui_helpers import ...)
from gui_helpers import ThresholdPredictor, open_and_wait, phantom_volume, tiny_real_predictor  # noqa: F401


@pytest.fixture
def phantom_nifti(tmp_path):
    from ctseg_core.io.images import write_volume

    path = tmp_path / "phantom.nii.gz"
    write_volume(phantom_volume(), path)
    return path


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    ws = tmp_path / "workspace"
    monkeypatch.setenv("CTSEG_WORKSPACE", str(ws))  # nothing may reach the user's home
    return ws


@pytest.fixture
def settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


@pytest.fixture
def window(qtbot, settings, tmp_path):
    """A main window without a model (missing path), no 3-D, non-interactive (no modal dialogs)."""
    from app.main_window import MainWindow

    win = MainWindow(model_path=str(tmp_path / "no_model.safetensors"), enable_3d=False, settings=settings,
                     interactive=False)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.inference.shutdown()


@pytest.fixture
def edit_win(qtbot, settings, tmp_path, workspace):
    """A main window with editing installed and the phantom's case open (crosshair on slice 6)."""
    from gui_helpers import make_window, write_phantom

    win, editor = make_window(qtbot, settings, tmp_path, workspace)
    scan = write_phantom(tmp_path / "phantom.nii.gz")
    assert open_and_wait(qtbot, win, scan) == "no model"
    assert editor.store.case is not None
    win.session.set_position(5, 64, 64)
    yield win, editor
    win.close()
    win.inference.shutdown()
