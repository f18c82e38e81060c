"""One slice numbering everywhere a person reads it: 1-based in the view header, the cursor readout, the
findings and their CSV, with the nearest scanner image named where the real GE series was resampled
(28 tilted images -> 37 slices); the header's location does not move with the crosshair."""

from __future__ import annotations

import csv

import numpy as np
import pydicom
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from gui_helpers import open_and_wait


def _nearest_instance(ge_tilt, volume, k):
    """The InstanceNumber of the source file nearest to axial slice k, from the files themselves."""
    point = volume.geometry.index_to_physical(k, 300, 256)
    best = None
    for f in sorted(ge_tilt.glob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        iop = np.array(ds.ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        d = abs(float(np.dot(point - np.array(ds.ImagePositionPatient, float), normal)))
        if best is None or d < best[0]:
            best = (d, int(ds.InstanceNumber))
    return best[1]


def test_slice_numbers_agree_in_header_readout_and_csv(qtbot, window, ge_tilt, tmp_path):
    assert open_and_wait(qtbot, window, ge_tilt) == "no model"
    s, ax = window.session, window.views["axial"]
    assert s.volume.shape[0] == 37  # 28 images, resampled
    k = 20
    image = _nearest_instance(ge_tilt, s.volume, k)
    s.set_position(k, 300, 256)
    header = ax.header.text()
    assert f"slice {k + 1} / 37" in header and f"image {image} " in header
    s.set_position(k, 100, 60)  # elsewhere on the same (tilted) slice: the header does not change
    assert ax.header.text() == header

    window._on_cursor((k, 300, 256))
    readout = window.cursor_label.text()
    assert readout.startswith(f"slice {k + 1} ≈ image {image} (") and "row 301, column 257" in readout

    s.final.array[k, 280:320, 230:280] = 2  # SDH on this slice only
    s.notify_labels_edited((k, k + 1, 280, 320, 230, 280))
    sdh_row = 1
    assert window.findings_panel.table.item(sdh_row, 2).text() == f"{k + 1}"
    assert f"image {image}" in window.findings_panel.table.item(sdh_row, 2).toolTip()
    window.export_findings(str(tmp_path / "f.csv"))
    rows = {r["key"]: r for r in csv.DictReader(open(tmp_path / "f.csv"))}
    assert rows["sdh"]["slices"] == f"{k + 1}"


def test_readout_follows_keyboard_scrolling(qtbot, window, ge_tilt):
    assert open_and_wait(qtbot, window, ge_tilt) == "no model"
    s, ax = window.session, window.views["axial"]
    s.set_position(10, 300, 256)
    vp = ax.graphics.viewport()
    QTest.mouseMove(vp, vp.rect().center())
    qtbot.waitUntil(lambda: window.cursor_label.text().startswith("slice 11 "), timeout=3000)
    QTest.keyClick(ax.graphics, Qt.Key_Up)
    assert s.position[0] == 11 and window.cursor_label.text().startswith("slice 12 ")  # the mouse did not move
