"""Draw docs/screenshot_adjudication.png: the adjudication view on a generated case read by two readers.

A generated head CT (seed 7: ICH, SDH, IVH) goes into a temporary double-reading workspace with its exact
labels stored as the model's prediction. Reader "alice" draws the SDH two voxels wider (about 1 mm) and
leaves out the IVH on its upper slices; reader "bob" draws the ICH one voxel smaller and adds a small SAH
that is not there.
The app opens the case as the adjudicator "chief" and the adjudication view shows alice (A) against bob (B)
at the largest region where they differ.
Run under a display: ``xvfb-run -s "-screen 0 1600x1000x24" python docs/make_screenshot_readers.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "screenshot_adjudication.png"


def reader_maps(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    plane = np.zeros((1, 3, 3), bool)
    plane[0, 1, :] = plane[0, :, 1] = True  # in-plane 4-neighbourhood
    alice = truth.copy()
    alice[ndimage.binary_dilation(truth == 2, plane, iterations=2) & (truth == 0)] = 2
    ivh = np.flatnonzero((truth == 7).any(axis=(1, 2)))
    if ivh.size:
        upper = ivh[len(ivh) // 2:]
        alice[upper] = np.where(truth[upper] == 7, 0, alice[upper])
    bob = truth.copy()
    bob[(truth == 1) & ~ndimage.binary_erosion(truth == 1, plane)] = 0
    z = int(np.flatnonzero(truth.any(axis=(1, 2)))[0]) + 2
    bob[z, 180:192, 300:310] = np.where(truth[z, 180:192, 300:310] == 0, 3, truth[z, 180:192, 300:310])
    return alice, bob


def build_workspace(tmp: Path):
    from ctseg_core.io.images import read_volume, write_volume
    from ctseg_core.store import Workspace
    from ctseg_core.synth import generate_case
    from ctseg_core.volume import LabelMap

    case = generate_case(7, lesion_classes=[1, 2, 7])
    case.volume.meta.description = "generated head CT, seed 7"
    write_volume(case.volume, tmp / "ct.nii.gz")
    volume = read_volume(tmp / "ct.nii.gz")
    ws = Workspace(tmp / "workspace")
    ws.set_double_reading(True)
    c = ws.open_case(volume, tmp / "ct.nii.gz")
    c.save_prediction(LabelMap(case.labels.array.copy(), volume.geometry), "generator truth")
    for name, array in zip(("alice", "bob"), reader_maps(case.labels.array)):
        rc = ws.reader_case(c.id, name)
        rc.lock_for_editing()
        rc.save_final(LabelMap(array, volume.geometry))
        rc.set_status("done")
        rc.release_lock()
    return ws, tmp / "ct.nii.gz"


def main() -> int:
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from app.editing import install_editing
    from app.main_window import MainWindow
    from app.reading import install_reading

    tmp = Path(tempfile.mkdtemp(prefix="ctseg-shot-"))
    ws, scan = build_workspace(tmp)
    settings = QSettings(str(tmp / "s.ini"), QSettings.IniFormat)
    settings.setValue("review/annotator", "chief")
    window = MainWindow(auto_infer=False, enable_3d=False, settings=settings, interactive=False)
    editing = install_editing(window, ws.root)
    reading = install_reading(window, editing)
    window.show()
    state = {}

    def on_opened(_):
        view = reading.open_adjudication()
        view.resize(1500, 860)
        state["view"] = view
        QTimer.singleShot(1500, shoot)

    def shoot():
        view = state["view"]
        view.grab().save(str(OUT))
        adj = view.adjudication
        print(f"wrote {OUT}: {len(adj.components)} regions differ; "
              + ", ".join(f"{r.key} Dice {r.dice:.3f}" for r in view.rows if r.dice is not None))
        window.close()
        app.quit()

    window.opener.opened.connect(on_opened)
    window.open_path(str(scan))
    app.exec()
    return 0


if __name__ == "__main__":
    sys.exit(main())
