"""Montage of generated cases (brain window, some with label contours) beside the real GE head series.

Run: .venv/bin/python docs/make_synth_montage.py [--out docs/synth_montage.png] [--seeds 1 2 3 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ctseg_core.labels import CLASSES  # noqa: E402
from ctseg_core.synth import generate_case  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "dicom" / "ge_head_tilt"


def real_slices() -> list[np.ndarray]:
    import pydicom

    ds = sorted((pydicom.dcmread(p) for p in sorted(REAL.glob("*.dcm"))), key=lambda d: int(d.InstanceNumber))
    return [d.pixel_array.astype(np.float32) * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in ds]


LEVELS_MM = (-48, -32, -12, 12, 48)  # head-frame heights: skull base, orbits, suprasellar, ventricles, convexity


def pick_levels(case) -> list[int]:
    """Slices nearest the levels of the real series' columns (the generator's head frame has w = scanner z)."""
    g = case.volume.geometry
    zs = g.origin[2] + g.spacing[0] * np.arange(g.shape[0])
    return [int(np.argmin(np.abs(zs - w))) for w in LEVELS_MM]


def show(ax, img, title, labels=None):
    ax.imshow(img, cmap="gray", vmin=0, vmax=80, interpolation="bilinear")
    if labels is not None and labels.any():
        for c in CLASSES[1:]:
            m = labels == c.id
            if m.any():
                ax.contour(m, levels=[0.5], colors=[np.array(c.colour) / 255.0], linewidths=0.8)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "synth_montage.png"))
    ap.add_argument("--seeds", type=int, nargs="*", default=[3, 11, 12, 20])
    ap.add_argument("--dpi", type=int, default=70)
    args = ap.parse_args(argv)
    rows = []
    real = real_slices()
    rows.append(("real GE", [real[i] for i in (4, 9, 14, 17, 22, 19)], None))
    for s in args.seeds:
        case = generate_case(s)
        ks = pick_levels(case)
        lab = case.labels.array
        ks.append(int(np.argmax((lab > 0).sum(axis=(1, 2)))) if lab.any() else ks[3])
        names = ",".join(les["name"] for les in case.lesions) or "normal"
        rows.append((f"seed {s} ({names})", [case.volume.array[k] for k in ks], [lab[k] for k in ks]))
    fig, axes = plt.subplots(len(rows), 6, figsize=(18, 3.1 * len(rows)))
    for r, (name, imgs, labs) in enumerate(rows):
        for c, img in enumerate(imgs):
            show(axes[r, c], img, f"{name} #{c}", None if labs is None or c < 5 else labs[c])
    fig.suptitle("synthetic head CT (rows 2..) beside a real GE head CT (row 1), brain window 40/80; "
                 "last column: the slice with most lesion voxels, with label contours", fontsize=9, y=0.998)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(args.out, dpi=args.dpi)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
