"""Draw docs/midline_ge.png: the midline measurement on the real GE head series (a normal head).

The slice of the largest distance with the ideal midline (green), the midline points (orange) and the
distance (red), as the report's key image draws it. Needs ../shared/data/dicom/ge_head_tilt.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GE = ROOT.parent / "shared" / "data" / "dicom" / "ge_head_tilt"
OUT = Path(__file__).resolve().parent / "midline_ge.png"


def main() -> int:
    from ctseg_core.io import load_volume
    from ctseg_core.measure.midline import measure_midline_shift
    from ctseg_core.report.key_images import midline_image

    volume = load_volume(sys.argv[1] if len(sys.argv) > 1 else GE)
    m = measure_midline_shift(volume)
    print(m.summary(), f"(ideal midline at {m.angle_deg:+.1f} deg)")
    for s in m.slices:
        print(f"  slice {s.slice_index + 1}: {s.shift_mm:+.2f} mm ({len(s.points)} points, {s.points[0].structure})")
    png = midline_image(volume, None, m)
    if png is None:
        return 1
    OUT.write_bytes(png)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
