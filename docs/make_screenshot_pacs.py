"""Draw docs/screenshot_pacs.png: the app's Inbox / Outbox dock after receiving the real GE series.

A temporary workspace; the app's listener is turned on (PACS menu), the GE head series is sent to it with
pynetdicom's SCU (as a scanner or a C-MOVE would), a non-CT instance too (kept aside); the series is
segmented in the background with the bundled model and opened from the inbox; the case is approved, so
its DICOM SEG goes to the outbox, whose destination is down here (the item waits for its next try).
Run under a display: ``xvfb-run -s "-screen 0 1600x1000x24" python docs/make_screenshot_pacs.py``.
"""

from __future__ import annotations

import copy
import os
import socket
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "screenshot_pacs.png"
GE = Path(__file__).resolve().parents[2] / "shared" / "data" / "dicom" / "ge_head_tilt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send_series(port: int) -> None:
    import pydicom
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    ae = AE(ae_title="CT_SCANNER")
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(SecondaryCaptureImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="CTSEG")
    datasets = [pydicom.dcmread(f) for f in sorted(GE.glob("*.dcm"))]
    dose = copy.deepcopy(datasets[0])
    dose.SOPClassUID = dose.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    dose.SOPInstanceUID = dose.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dose.Modality = "OT"
    for ds in datasets + [dose]:
        assoc.send_c_store(ds)
    assoc.release()


def main() -> int:
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from ctseg_core.pacs.config import LocalNode, Node, PacsConfig, config_path, save_config

    tmp = Path(tempfile.mkdtemp(prefix="ctseg-shot-"))
    ws = tmp / "workspace"
    ws.mkdir()
    os.environ["CTSEG_WORKSPACE"] = str(ws)
    port = free_port()
    save_config(PacsConfig(local=LocalNode("CTSEG", "127.0.0.1", port, settle_s=2.0),
                           nodes={"pacs": Node("pacs", "PACS", "127.0.0.1", free_port())}, query_node="pacs",
                           send_node="pacs", include_sr=False), config_path(ws))
    app = QApplication.instance() or QApplication(sys.argv[:1])
    from app.editing import install_editing
    from app.main_window import MainWindow
    from app.pacs_link import install_pacs

    win = MainWindow(auto_infer=False, enable_3d=False, settings=QSettings(str(tmp / "s.ini"), QSettings.IniFormat),
                     interactive=False)
    editing = install_editing(win, ws)
    pacs = install_pacs(win, editing)
    win.resize(1600, 1000)
    win.show()
    pacs.dock.show()
    pacs.dock.raise_()
    pacs.listen_action.setChecked(True)
    send_series(port)
    state = {"opened": False}

    def poll():
        dock = pacs.dock_widget
        dock.refresh()
        entries = dock.entries
        if not state["opened"] and entries and entries[0].state == "segmented":
            state["opened"] = True
            win.pipeline_done.connect(lambda _: QTimer.singleShot(500, approve))
            dock.open_row(0)
            return
        QTimer.singleShot(300, poll)

    def approve():
        editing.store.set_status("approved")
        QTimer.singleShot(15000, shoot)

    def shoot():
        pacs.dock_widget.refresh()
        pacs.dock_widget.inbox_table.selectRow(0)
        win.session.set_position(14, 256, 256)
        win.save_screenshot(str(OUT))
        print(f"wrote {OUT}")
        win.close()
        app.quit()

    QTimer.singleShot(300, poll)
    app.exec()
    return 0


if __name__ == "__main__":
    sys.exit(main())
