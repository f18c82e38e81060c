"""``ctseg-app [PATH] [--screenshot OUT.png] [--no-infer] [--model CKPT] [--no-3d] [--reader NAME]``

With no PATH the bundled demo case opens. ``--screenshot`` loads the scan, waits for inference, the
findings and the 3-D surfaces, moves to the largest finding, saves a picture of the main window and
exits (0 on success, 2 when the scan or the model failed, 1 on a time-out).
"""

from __future__ import annotations

import argparse
import sys
import time

SCREENSHOT_TIMEOUT_S = 600


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ctseg-app", description="Review and correct head-CT hemorrhage segmentations")
    p.add_argument("path", nargs="?", help="DICOM folder or image file (default: the bundled demo case)")
    p.add_argument("--screenshot", metavar="OUT.png", help="save a picture of the window after loading, then exit")
    p.add_argument("--no-infer", action="store_true", help="do not run the model when the scan opens")
    p.add_argument("--model", metavar="CKPT", help="model checkpoint (.safetensors with its card), or a bundled "
                                                   "model: aa_unet, blast_ct (Model > Bundled model also chooses)")
    p.add_argument("--no-3d", action="store_true", help="turn the 3-D view off")
    p.add_argument("--labels", metavar="FILE", help="label map to show as the corrected labels (same grid)")
    p.add_argument("--series", metavar="UID", help="series instance UID to open from a multi-series folder")
    p.add_argument("--reader", metavar="NAME", help="your name as a reader for this session (default: the name set "
                                                    "in the app, else the system account)")
    return p


class _ScreenshotWhenIdle:
    """Wait until the pipeline is done and the debounced findings, lesion measurements and 3-D updates settled,
    then save and quit."""

    def __init__(self, window, out: str, app):
        from PySide6.QtCore import QTimer

        self.window, self.out, self.app = window, out, app
        self.t0 = time.perf_counter()
        self.done_at = None
        self.rc = 1
        self.timer = QTimer(interval=200)
        self.timer.timeout.connect(self._poll)
        window.pipeline_done.connect(self._on_done)
        self.timer.start()

    def _on_done(self, state: str) -> None:
        self.window.session.log(f"pipeline: {state}")
        self.state = state
        self.done_at = time.perf_counter()
        self.focused = False

    def _settled(self) -> bool:
        w = self.window
        findings_busy = w.findings_panel._busy or w.findings_panel._timer.isActive()
        vv = w.volume_view
        surfaces_busy = vv.available and (vv._busy or vv._timer.isActive())
        measurements = getattr(w, "measurements", None)  # the Lesions dock's table and the midline
        measuring = measurements is not None and measurements.pending
        return not (findings_busy or surfaces_busy or measuring) and time.perf_counter() - self.done_at > 0.5

    def _poll(self) -> None:
        timed_out = time.perf_counter() - self.t0 > SCREENSHOT_TIMEOUT_S
        if (self.done_at is None or not self._settled()) and not timed_out:
            return
        if not getattr(self, "focused", True):  # show the largest finding, then let the views settle once more
            self.focused = True
            if self.window.go_to_largest_finding():
                self.done_at = time.perf_counter()
                return
        self.timer.stop()
        self.window.save_screenshot(self.out)
        print(f"screenshot written to {self.out}" + (" (timed out waiting)" if timed_out else ""))
        self.rc = 1 if timed_out else (2 if getattr(self, "state", "") == "failed" else 0)
        self.window.close()
        self.app.quit()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("ctseg")
    app.setOrganizationName("ctseg")
    from app.main_window import MainWindow
    from ctseg_core.resources import DEMO_CT

    window = MainWindow(model_path=args.model, auto_infer=False if args.no_infer else None,
                        enable_3d=not args.no_3d, interactive=args.screenshot is None)
    from app.editing import install_editing

    editing = install_editing(window)  # tools, undo, autosave, Cases dock ($CTSEG_WORKSPACE or File > Set workspace)
    if args.reader:
        editing.store.set_annotator(args.reader, remember=False)
    from app.reading import install_reading

    install_reading(window, editing)  # reader in the title, double reading, adjudication, agreement, audit log
    from app.panels.training_panel import install_training

    install_training(window, editing)  # Training dock, Model > Retrain on corrected cases..., model versions
    from app.measurements import install_measurements

    install_measurements(window)  # Lesions dock, midline overlay, prior comparison, File > Write report...
    from app.pacs_link import install_pacs

    install_pacs(window, editing)  # PACS menu (listener, query/retrieve, send, settings), Inbox / Outbox dock
    window.show()
    shot = _ScreenshotWhenIdle(window, args.screenshot, app) if args.screenshot else None
    path = args.path or str(DEMO_CT)
    if args.labels:
        window.opener.opened.connect(lambda _: window.open_labels(args.labels))
    window.open_path(path, series_uid=args.series)
    rc = app.exec()
    from app.workers import task_pool

    task_pool().waitForDone(10000)  # let background jobs end before the interpreter shuts down
    return shot.rc if shot is not None else rc


if __name__ == "__main__":
    sys.exit(main())
