"""Measurements beyond per-class volumes: midline shift, the lesion list, growth between two scans.

``measure_scan(volume, labels)`` gives everything one scan's findings hold (``ScanMeasurements``): the
per-class findings (``ctseg_core.findings``), the midline shift (``midline``) and the lesion list
(``lesions``), sharing one head frame (``head_frame``: the skull's ideal midline on every slice).
``growth`` compares two scans of one patient. No Qt; the app runs this off the GUI thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ctseg_core.atomic import atomic_write_text
from ctseg_core.findings import Findings, compute_findings
from ctseg_core.measure.head_frame import head_frame
from ctseg_core.measure.lesions import LesionList, list_lesions
from ctseg_core.measure.midline import MidlineShift, measure_midline_shift
from ctseg_core.volume import LabelMap, Volume


@dataclass
class ScanMeasurements:
    findings: Findings
    midline: MidlineShift
    lesions: LesionList

    def to_dict(self) -> dict:
        return {"findings": self.findings.to_dict(), "midline_shift": self.midline.to_dict(),
                "lesions": self.lesions.to_dict()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def measure_scan(volume: Volume, labels: LabelMap, source: str = "", scan: str = "") -> ScanMeasurements:
    """Per-class findings, midline shift and lesion list of ``labels`` on ``volume``."""
    labels.check_matches(volume)
    frame = head_frame(volume)
    midline = measure_midline_shift(volume, labels, frame)
    return ScanMeasurements(compute_findings(labels, source=source, scan=scan), midline,
                            list_lesions(volume, labels, frame, midline=midline))


def write_measurements_json(measurements: ScanMeasurements, path) -> None:
    atomic_write_text(path, measurements.to_json())


__all__ = ["ScanMeasurements", "measure_scan", "write_measurements_json", "MidlineShift", "LesionList"]
