"""Regenerate the bundled demo case (resources/demo): one 512x512 synthetic head CT with ICH, SDH, SAH and IVH.

Run: .venv/bin/python docs/make_synth_demo.py
"""

from __future__ import annotations

from ctseg_core.io.images import write_labels, write_volume
from ctseg_core.resources import DEMO_CT, DEMO_TRUTH
from ctseg_core.synth import generate_case

DEMO_SEED = 2003
DEMO_CLASSES = [1, 2, 3, 7]


def main() -> int:
    case = generate_case(DEMO_SEED, lesion_classes=DEMO_CLASSES)
    write_volume(case.volume, DEMO_CT)  # whole HU: stored as int16
    write_labels(case.labels, DEMO_TRUTH)
    sizes = DEMO_CT.stat().st_size + DEMO_TRUTH.stat().st_size
    names = ", ".join(les["name"] for les in case.lesions)
    print(f"{DEMO_CT} + {DEMO_TRUTH}: {case.volume.shape}, {names}, {sizes / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
