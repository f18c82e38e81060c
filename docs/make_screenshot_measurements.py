"""Draw docs/screenshot_measurements.png: the app on a generated case with a midline shift.

A generated head CT (seed 7, 512x512: ICH, SDH and IVH, a requested 8 mm shift) opens with its exact labels
as the corrected map (no inference); once the measurements are in, the Lesions dock is raised, the SDH row
chosen and the axial view moved to the slice of the largest shift, where the midline lines are drawn.
Run under a display: ``xvfb-run -s "-screen 0 1600x1000x24" python docs/make_screenshot_measurements.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "screenshot_measurements.png"


def main() -> int:
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from ctseg_core.io.images import write_labels, write_volume
    from ctseg_core.synth import generate_case

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from app.main_window import MainWindow
    from app.measurements import install_measurements

    tmp = Path(tempfile.mkdtemp(prefix="ctseg-shot-"))
    case = generate_case(7, lesion_classes=[1, 2, 7], midline_shift_mm=8.0)
    case.volume.meta.description = "generated head CT, seed 7 (8 mm shift requested)"
    write_volume(case.volume, tmp / "ct.nii.gz")
    write_labels(case.labels, tmp / "labels.nii.gz")
    window = MainWindow(auto_infer=False, enable_3d=True, interactive=False)
    c = install_measurements(window)
    window.show()
    window.opener.opened.connect(lambda _: window.open_labels(str(tmp / "labels.nii.gz")))
    state = {"done": False}

    def on_measured(m):
        if state["done"] or not m.lesions.lesions:
            return
        state["done"] = True
        c.dock.show()
        c.dock.raise_()
        window.resizeDocks([window.classes_dock, c.dock, window.volume_dock], [230, 330, 300], Qt.Vertical)
        sdh = next(i for i, les in enumerate(c.panel.lesions) if les.key == "sdh")
        c.panel.activate(sdh)
        k, j, i = m.lesions.lesions[sdh].centre
        if m.midline.found:
            j, i = (int(v) for v in m.midline.point)
            window.session.set_position(m.midline.slice_index, j, i)
        QTimer.singleShot(2500, shoot)

    def shoot():
        window.save_screenshot(str(OUT))
        print(f"wrote {OUT}: {c.measurements.midline.summary()}; truth "
              f"{case.params['deep_midline_shift_mm']:+.1f} mm (+ = left)")
        window.close()
        app.quit()

    c.updated.connect(on_measured)
    window.open_path(str(tmp / "ct.nii.gz"))
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
