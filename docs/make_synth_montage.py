"""Montage of generated cases beside the real GE head series (brain window 40/80).

Rows: the real GE series; zoomed GE details beside the same details of a generated case (inner table at
4 and 7 mm, frontal horns, skull base); the normal structures the generator adds so that a model learns
to leave them alone (each crop centred on the structure, never labelled); whole slices of cases drawn with
``sample_acquisition`` (random scanner, pose and artefacts; label contours in the last column).

Run: .venv/bin/python docs/make_synth_montage.py [--out docs/synth_montage.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from ctseg_core.labels import CLASSES  # noqa: E402
from ctseg_core.synth import generate_case  # noqa: E402
from ctseg_core.synth.acquisition import Acquisition, sample_acquisition  # noqa: E402
from ctseg_core.synth import tissues as T  # noqa: E402
from ctseg_core.synth.hard_negatives import hard_negative_categories  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "dicom" / "ge_head_tilt"
CROP_MM = 90.0


def real_slices() -> list[tuple[np.ndarray, float]]:
    import pydicom

    ds = sorted((pydicom.dcmread(p) for p in sorted(REAL.glob("*.dcm"))), key=lambda d: int(d.InstanceNumber))
    return [(d.pixel_array.astype(np.float32) * float(d.RescaleSlope) + float(d.RescaleIntercept),
             float(d.SliceThickness)) for d in ds]


def show(ax, img, title, labels=None, ps=None):
    ax.imshow(img, cmap="gray", vmin=0, vmax=80, interpolation="bilinear")
    if labels is not None and labels.any():
        for c in CLASSES[1:]:
            m = labels == c.id
            if m.any():
                ax.contour(m, levels=[0.5], colors=[np.array(c.colour) / 255.0], linewidths=0.8)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def crop(img, centre_rc, ps, mm=CROP_MM):
    h = int(mm / ps / 2)
    r, c = (int(x) for x in centre_rc)
    r, c = np.clip(r, h, img.shape[0] - h), np.clip(c, h, img.shape[1] - h)
    return img[r - h:r + h, c - h:c + h]


def structure_crop(case, category):
    """(crop, slice index) centred where the hard-negative ``category`` is most present (``devices_inside``:
    a device beside the ventricles or the inner table)."""
    masks = hard_negative_categories(case)
    if category == "frontal_horns":  # the slice 15 mm above the head-frame origin, centred on its ventricles
        g = case.volume.geometry
        k = int(np.argmin(np.abs(g.origin[2] + g.spacing[0] * np.arange(g.shape[0]) - 15.0)))
        m = np.zeros(masks["ventricles_csf"].shape, bool)
        m[k] = case.tissue[k] == T.VENTRICLE
        if not m.any():
            return None
        return crop(case.volume.array[k], np.argwhere(m[k]).mean(axis=0), g.spacing[1]), k
    if category == "burr_hole":  # postoperative air within the vault's bone
        bone = (case.structures & np.uint16(T.STRUCTURE_BIT["vault_bone"])) > 0
        m = masks["postop_air"] & ndi.binary_dilation(bone, np.ones((1, 5, 5), bool))
        if not m.any():
            return None
        k = int(np.argmax(m.sum(axis=(1, 2))))
        return crop(case.volume.array[k], np.argwhere(m[k]).mean(axis=0), case.volume.spacing[1]), k
    if category == "devices_inside":
        m = masks["metal_devices"] & masks["inner_table_rim"] | masks["metal_devices"] & masks["ventricles_csf"]
    else:
        m = masks[category]
    per = m.sum(axis=(1, 2))
    if not per.any():
        return None
    k = int(np.argmax(per))
    rc = np.argwhere(m[k]).mean(axis=0)
    return crop(case.volume.array[k], rc, case.volume.spacing[1]), k


def inner_table_crop(case, level_mm, back: bool = False):
    """Crop at the vault's front (``back``: rear) edge on the slice nearest head height ``level_mm``."""
    g = case.volume.geometry
    zs = g.origin[2] + g.spacing[0] * np.arange(g.shape[0])
    k = int(np.argmin(np.abs(zs - level_mm)))
    bone = case.volume.array[k] > 300
    rows = np.flatnonzero(bone.any(axis=1))
    cols = np.flatnonzero(bone.any(axis=0))
    inset = 0.2 * CROP_MM / g.spacing[1]
    rc = (rows[-1] - inset if back else rows[0] + inset, (cols[0] + cols[-1]) / 2)
    return crop(case.volume.array[k], rc, g.spacing[1])


# (title, what the seed must hold (a test on its params), acquisition changes, category to centre on)
LOOKALIKES = [
    ("old head: wide CSF spaces, large ventricles", lambda p: p["atrophy"] > 0.9, {}, "frontal_horns"),
    ("falx, sagittal sinus, tentorium haze (7 mm)", lambda p: True, {"slice_thickness_mm": 7.0}, "falx_tentorium_sinus"),
    ("calcified choroid plexus, basal ganglia", lambda p: p["calcifications"]["basal"] and p["calcifications"]["choroid"],
     {}, "calcification"),
    ("falx calcification", lambda p: p["calcifications"]["falx"] >= 2 and not p["calcifications"]["choroid"]
     and not p["calcifications"]["pineal"] and not p["calcifications"]["basal"], {}, "calcification"),
    ("craniotomy: kerf air, plates", lambda p: p["surgery"]["flap"] == "craniotomy" and p["surgery"]["fresh"]
     and p["surgery"]["plates"] >= 2, {}, "postop_air"),
    ("craniectomy defect", lambda p: p["surgery"]["flap"] == "craniectomy", {}, None),
    ("burr hole, scalp air", lambda p: p["surgery"]["burr_holes"] and p["surgery"]["fresh"] and not p["surgery"]["flap"],
     {}, "burr_hole"),
    ("shunt catheter in the frontal horn", lambda p: p["surgery"]["shunt"], {}, "devices_inside"),
    ("aneurysm clip: metal streaks", lambda p: p["surgery"]["clips"] and not p["surgery"]["shunt"], {}, "metal_devices"),
    ("scalp haematoma (outside the skull)", lambda p: p["surgery"]["scalp"] == "haematoma" and p["surgery"]["scalp_mm"] > 10,
     {}, "scalp_haematoma"),
    ("scalp swelling", lambda p: p["surgery"]["scalp"] == "swelling" and p["surgery"]["scalp_mm"] > 8, {},
     "scalp_haematoma"),
    ("skull base, 7 mm: beam hardening", lambda p: True, {"slice_thickness_mm": 7.0, "beam_hardening": 1.5}, "skull_base"),
]


def find_seed(test, start: int = 1, limit: int = 800) -> int:
    """The first seed from ``start`` whose anatomy passes ``test`` (a 1-slice 32 px scan tells)."""
    tiny = Acquisition(shape_yx=(32, 32), pixel_spacing_mm=8.0, max_slices=1, head_scale=1.0)
    for seed in range(start, limit):
        if test(generate_case(seed, normal=True, acquisition=tiny).params):
            return seed
    raise SystemExit(f"no seed below {limit} passes {test}")


def lookalike_panels():
    out = []
    for title, test, changes, category in LOOKALIKES:
        seed = find_seed(test, start=40 if category == "falx_tentorium_sinus" or category == "skull_base" else 1)
        case = generate_case(seed, normal=True, acquisition=Acquisition(**changes))
        if category is None:  # the craniectomy: the slice through the middle of the defect
            d = np.array(case.params["surgery"]["flap_direction"]) * 72.0  # about the vault's radius
            g = case.volume.geometry
            zs = g.origin[2] + g.spacing[0] * np.arange(g.shape[0])
            k = int(np.argmin(np.abs(zs - d[2])))
            a = np.deg2rad(case.params["head_angle_deg"])
            cx, cy = case.params["head_centre_xy"]
            x, y = cx + np.cos(a) * d[0] - np.sin(a) * d[1], cy + np.sin(a) * d[0] + np.cos(a) * d[1]
            rc = ((y - g.origin[1]) / g.spacing[1], (x - g.origin[0]) / g.spacing[2])
            got = (crop(case.volume.array[k], rc, g.spacing[1]), k)
        else:
            got = structure_crop(case, category)
        if got is None:
            continue
        out.append((f"{title} (seed {seed}, slice {got[1] + 1})", got[0]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "synth_montage.png"))
    ap.add_argument("--acq-seeds", type=int, nargs="*", default=[1, 4, 7, 9])
    ap.add_argument("--dpi", type=int, default=70)
    args = ap.parse_args(argv)
    real = real_slices()
    ge_ps = 0.488
    rows = [[(f"real GE #{i + 1} ({real[i][1]:g} mm)", real[i][0], None) for i in (4, 9, 14, 17, 22, 19)]]
    # details: GE vs a generated head with the GE's scan (0.49 mm, 4 mm below and 7 mm above)
    ge_details = [("GE inner table, 4 mm", crop(real[13][0], (95, 256), ge_ps)),
                  ("GE inner table, 7 mm", crop(real[17][0], (85, 256), ge_ps)),
                  ("GE vertex, 7 mm", crop(real[22][0], (130, 256), ge_ps)),
                  ("GE frontal horns", crop(real[17][0], (200, 250), ge_ps)),
                  ("GE skull base", crop(real[9][0], (200, 250), ge_ps)),
                  ("GE posterior fossa", crop(real[9][0], (330, 256), ge_ps))]
    rows.append([(t, img, None) for t, img in ge_details])
    old = find_seed(lambda p: p["atrophy"] > 0.7 and not p["surgery"]["flap"] and not p["surgery"]["clips"])
    thick = generate_case(old, normal=True, acquisition=Acquisition(pixel_spacing_mm=ge_ps, slice_thickness_mm=7.0))
    tailed = generate_case(old, normal=True, acquisition=Acquisition(pixel_spacing_mm=ge_ps, slice_thickness_mm=7.0,
                                                                      ssp_tail=0.25, ssp_tail_sigma=0.7))
    thin4 = generate_case(old, normal=True, acquisition=Acquisition(pixel_spacing_mm=ge_ps, slice_thickness_mm=4.0))
    g = thick.volume.geometry
    zs4 = thin4.volume.geometry.origin[2] + 4.0 * np.arange(thin4.volume.shape[0])
    k_base = int(np.argmin(np.abs(zs4 + 30)))
    horns = structure_crop(thick, "frontal_horns")[0]
    rows.append([("synth inner table, 4 mm", inner_table_crop(thin4, 20), None),
                 ("synth inner table, 7 mm", inner_table_crop(thick, 25), None),
                 ("synth vertex, 7 mm, slice profile with a tail (0.25)", inner_table_crop(tailed, 58), None),
                 ("synth frontal horns (old head)", horns, None),
                 ("synth skull base, 4 mm", crop(thin4.volume.array[k_base], (0.42 * g.shape[1], g.shape[2] / 2), ge_ps), None),
                 ("synth posterior fossa, 4 mm", crop(thin4.volume.array[k_base], (0.7 * g.shape[1], g.shape[2] / 2), ge_ps), None)])
    shaded = generate_case(old, normal=True, acquisition=Acquisition(pixel_spacing_mm=ge_ps, slice_thickness_mm=7.0,
                                                                      skull_shading_hu=12.0, skull_shading_mm=10.0))
    rows.append([("GE occipital periphery, 7 mm", crop(real[17][0], (420, 256), ge_ps), None),
                 ("synth occipital periphery, 7 mm", inner_table_crop(thick, 25, back=True), None),
                 ("synth, skull shading 12 HU / 10 mm", inner_table_crop(shaded, 25, back=True), None)])
    panels = lookalike_panels()
    for i in range(0, len(panels), 6):
        rows.append([(t, img, None) for t, img in panels[i:i + 6]])
    for s in args.acq_seeds:
        acq = sample_acquisition(np.random.default_rng(s))
        case = generate_case(s, acquisition=acq)
        gz = case.volume.geometry
        zs = gz.origin[2] + gz.spacing[0] * np.arange(gz.shape[0])
        ks = [int(np.argmin(np.abs(zs - w))) for w in (-40, -15, 10, 30, 55)]
        lab = case.labels.array
        ks.append(int(np.argmax((lab > 0).sum(axis=(1, 2)))) if lab.any() else ks[3])
        names = ",".join(les["name"] for les in case.lesions) or "normal"
        desc = (f"seed {s} {acq.slice_thickness_mm:g} mm {acq.pixel_spacing_mm:.2f} px {acq.kernel} "
                f"pitch {acq.pitch_deg:.0f} roll {acq.roll_deg:.0f} ({names})")
        rows.append([(desc if c == 0 else f"#{k + 1}", case.volume.array[k], lab[k] if c == 5 else None)
                     for c, k in enumerate(ks)])
    fig, axes = plt.subplots(len(rows), 6, figsize=(18, 3.1 * len(rows)))
    for r, row in enumerate(rows):
        for c in range(6):
            if c < len(row):
                title, img, lab = row[c]
                show(axes[r, c], img, title, lab)
            else:
                axes[r, c].axis("off")
    fig.suptitle("row 1: real GE head CT; row 2: GE details; row 3: the same details generated with the GE's scan "
                 "(0.49 mm, 4 and 7 mm);\nrow 4: the brain next to the occipital bone, GE and generated without and with "
                 "the skull shading; then normal look-alikes of blood the generator adds (never labelled); "
                 "then cases from sample_acquisition (labels in the last column). Brain window 40/80",
                 fontsize=9, y=0.998)
    fig.tight_layout(rect=(0, 0, 1, 0.99))
    fig.savefig(args.out, dpi=args.dpi)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
