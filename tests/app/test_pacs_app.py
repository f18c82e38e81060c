"""The PACS in the app: the listener toggle receives the real GE series (sent with pynetdicom's SCU), the
series is segmented in the background and shows in the Inbox dock and the Cases dock as "new, segmented";
approving the opened case puts its DICOM SEG in the outbox, which keeps retrying a destination that is
down (Outbox tab); the settings dialog writes the TOML file; the query dialog searches a real Orthanc."""

from __future__ import annotations

import pytest

from gui_helpers import ThresholdPredictor, make_window
from orthanc_server import OrthancServer, free_port, orthanc_unavailable


def _write_settings(workspace, port, pacs_port=None, settle_s=1.0):
    from ctseg_core.pacs.config import LocalNode, Node, PacsConfig, config_path, save_config

    pacs_port = pacs_port or free_port()  # nothing listens there unless given: the destination is down
    config = PacsConfig(local=LocalNode("CTSEG", "127.0.0.1", port, settle_s=settle_s),
                        nodes={"pacs": Node("pacs", "ORTHANC", "127.0.0.1", pacs_port)}, query_node="pacs",
                        send_node="pacs", include_sr=False)
    workspace.mkdir(parents=True, exist_ok=True)
    return save_config(config, config_path(workspace))


def test_receive_segment_approve_and_outbox_in_the_app(qtbot, settings, tmp_path, workspace, ge_tilt):
    import pydicom
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    from app.pacs_link import install_pacs

    port = free_port()
    _write_settings(workspace, port)
    win, editor = make_window(qtbot, settings, tmp_path, workspace)
    pacs = install_pacs(win, editor, predictor_factory=lambda path: ThresholdPredictor())
    dock = pacs.dock_widget
    menu_texts = [a.text() for a in win.menu("&PACS").actions()]
    assert "Query / retrieve..." in menu_texts and "PACS settings..." in menu_texts
    assert dock.listen_label.text() == "Listener off"

    pacs.listen_action.setChecked(True)  # the menu toggle
    assert pacs.listening and dock.listen_label.text() == f"Listening as CTSEG on port {port}"
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="CTSEG")
    assert assoc.is_established
    files = sorted(ge_tilt.glob("*.dcm"))
    assert all(assoc.send_c_store(pydicom.dcmread(f)).Status == 0 for f in files)
    assoc.release()

    pacs.dock.show()
    dock.tabs.setCurrentIndex(0)
    qtbot.waitUntil(lambda: dock.inbox_table.rowCount() == 1
                    and dock.inbox_table.item(0, 0).text() == "new, segmented", timeout=120000)
    assert dock.inbox_table.item(0, 3).text() == str(len(files))
    cases = editor.cases_panel
    qtbot.waitUntil(lambda: cases.table.rowCount() == 1, timeout=10000)
    assert cases.table.item(0, 1).text() == "new, segmented"
    case_id = dock.entries[0].case_id

    with qtbot.waitSignal(win.pipeline_done, timeout=60000):
        dock.open_row(0)
    assert editor.store.case.id == case_id
    editor.store.set_status("approved")  # send on approval: the SEG goes to the outbox
    dock.tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: dock.outbox_table.rowCount() == 1
                    and dock.outbox_table.item(0, 0).text().startswith("retrying in"), timeout=60000)
    assert dock.outbox_table.item(0, 1).text() == case_id and dock.outbox_table.item(0, 3).text() == "seg.dcm"
    assert "could not be reached" in dock.outbox_table.item(0, 0).toolTip()

    pacs.listen_action.setChecked(False)
    assert not pacs.listening and dock.listen_label.text() == "Listener off"
    win.close()
    win.inference.shutdown()
    # the item survives the app: it is still pending on disk for the next session
    from ctseg_core.pacs.outbox import Outbox

    (item,) = Outbox(workspace).items()
    assert item.state == "pending" and item.attempts >= 1


def test_listener_that_cannot_start_unchecks_the_toggle(qtbot, settings, tmp_path, workspace):
    import socket

    from app.pacs_link import install_pacs

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        _write_settings(workspace, busy.getsockname()[1])
        win, editor = make_window(qtbot, settings, tmp_path, workspace)
        pacs = install_pacs(win, editor, predictor_factory=lambda path: ThresholdPredictor())
        pacs.listen_action.setChecked(True)
        assert not pacs.listening and not pacs.listen_action.isChecked()
        assert any("could not start" in b.windowTitle() for b in win.error_boxes)
    win.close()
    win.inference.shutdown()


def test_settings_dialog_writes_the_toml_file(qtbot, tmp_path):
    from ctseg_core.pacs.config import Node, PacsConfig, load_config, save_config
    from PySide6.QtWidgets import QDialog

    from app.panels.pacs_settings_dialog import PacsSettingsDialog

    path = tmp_path / "pacs.toml"
    dialog = PacsSettingsDialog(PacsConfig(), path)
    qtbot.addWidget(dialog)
    dialog.ae_title.setText("CTSEG_OR")
    dialog.port.setValue(11120)
    dialog.add_node(Node("pacs", "ORTHANC", "10.1.2.3", 4242))
    dialog.query_node.setCurrentText("pacs")
    dialog.send_node.setCurrentText("pacs")
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    save_config(dialog.result_config, path)
    back = load_config(path)
    assert back.local.ae_title == "CTSEG_OR" and back.local.port == 11120
    assert back.query().host == "10.1.2.3" and back.destination().ae_title == "ORTHANC"

    bad = PacsSettingsDialog(back, path)
    qtbot.addWidget(bad)
    bad.nodes.item(0, 3).setText("99999")
    bad.accept()
    assert bad.result_config is None and "outside 1..65535" in bad.message.text()


@pytest.mark.skipif(bool(orthanc_unavailable()), reason=orthanc_unavailable() or "ok")
def test_query_dialog_finds_the_study_in_orthanc(qtbot, settings, tmp_path, workspace, ge_tilt):
    from ctseg_core.pacs.config import load_config
    from ctseg_core.pacs.sender import store_files
    from app.pacs_link import install_pacs, _ask_query

    server = OrthancServer(tmp_path / "orthanc", {}).start()
    try:
        path = _write_settings(workspace, free_port(), pacs_port=server.dicom_port)
        config = load_config(path)
        store_files(config.query(), config, sorted(ge_tilt.glob("*.dcm"))[:3])
        win, editor = make_window(qtbot, settings, tmp_path, workspace)
        pacs = install_pacs(win, editor, predictor_factory=lambda path: ThresholdPredictor())
        _ask_query(win, pacs)
        dialog = pacs.query_dialog
        dialog.patient_id.setText("QMNx85rKkkg")
        dialog.search_button.click()
        qtbot.waitUntil(lambda: "found" in dialog.status.text() or "failed" in dialog.status.text(), timeout=30000)
        assert dialog.status.text() == "1 CT study found"
        assert dialog.table.item(0, 1).text() == "QMNx85rKkkg" and dialog.table.item(0, 5).text() == "3"
        dialog.patient_id.setText("nobody")
        dialog.search_button.click()
        qtbot.waitUntil(lambda: dialog.status.text() == "0 CT studies found", timeout=30000)
        dialog.date_from.setText("2024")
        dialog.search_button.click()
        assert "YYYYMMDD" in dialog.status.text()
        dialog.close()
        win.close()
        win.inference.shutdown()
    finally:
        server.stop()


def test_the_inbox_follows_the_workspace(qtbot, settings, tmp_path, workspace):
    from app.pacs_link import install_pacs

    _write_settings(workspace, free_port())
    win, editor = make_window(qtbot, settings, tmp_path, workspace)
    pacs = install_pacs(win, editor, predictor_factory=lambda path: ThresholdPredictor())
    assert pacs.service.workspace_root == workspace and pacs.config.send_node == "pacs"
    other = tmp_path / "other"
    editor.store.set_workspace(other)  # File > Set workspace
    assert pacs.service.workspace_root == other and (other / "inbox").is_dir()
    assert pacs.config.send_node == ""  # the other workspace has no PACS settings yet
    win.close()
    win.inference.shutdown()
