"""The one-page human-readable report (HTML, key images embedded): measurements, model, "not for clinical use".

``report_html(...)`` returns the page; ``write_report_html(...)`` writes it atomically. It holds: the scan
and the label map it was measured on, the model (name and version) or "manual", a banner saying it is not
for clinical use, the per-class volumes with the 3-slice rule, the midline shift with its 5 mm reference,
the lesion list (side, location, volume, ABC/2, thickness with its 10 mm reference, diameter, slices
numbered from 1), growth since a prior scan when given (with the ICH expansion criterion), and key images:
the midline slice and up to ``MAX_LESION_IMAGES`` of the largest lesions. Reference values are shown
beside the numbers; the report gives measurements, not advice.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html

from ctseg_core.atomic import atomic_write_text
from ctseg_core.findings import MIN_CONSECUTIVE_SLICES
from ctseg_core.measure import ScanMeasurements
from ctseg_core.measure.growth import ICH_GROWTH_FRACTION, ICH_GROWTH_ML
from ctseg_core.measure.lesions import THICKNESS_GUIDELINE_MM
from ctseg_core.measure.midline import GUIDELINE_MM
from ctseg_core.report.key_images import lesion_image, midline_image

MAX_LESION_IMAGES = 3
NOT_FOR_CLINICAL_USE = ("NOT FOR CLINICAL USE. Research software: the measurements come from an automatic "
                        "segmentation and automatic landmarks; a clinician must check every value on the images.")

_CSS = """
body{font-family:Helvetica,Arial,sans-serif;font-size:12px;margin:18px;color:#111;max-width:1100px}
h1{font-size:18px;margin:0 0 4px}h2{font-size:14px;margin:14px 0 4px;border-bottom:1px solid #999}
.banner{background:#b00;color:#fff;font-weight:bold;padding:6px 8px;margin:6px 0}
table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #bbb;padding:2px 6px;text-align:left}
td.n{text-align:right}.flag{color:#b00;font-weight:bold}.ref{color:#666}
.images img{width:31%;margin:0 1% 6px 0;border:1px solid #444}.meta{color:#444}
@media print{.images img{width:31%}body{margin:8mm}}
"""


def _esc(value) -> str:
    return html.escape(str(value))


def _img(png: bytes | None, alt: str) -> str:
    if not png:
        return ""
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def report_html(measurements: ScanMeasurements, volume, labels, *, scan: str = "", labels_source: str = "",
                model: str = "", growth=None, created: str | None = None) -> str:
    """The report page. ``model``: the model's name and version ("" when the labels were drawn by hand)."""
    f, mid, les = measurements.findings, measurements.midline, measurements.lesions
    created = created or _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    meta = volume.meta
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>ctseg report</title><style>{_CSS}</style>"
             "</head><body>",
             "<h1>Head CT hemorrhage measurements</h1>",
             f"<div class='banner'>{_esc(NOT_FOR_CLINICAL_USE)}</div>",
             "<div class='meta'>"
             f"Scan: {_esc(scan or meta.description or meta.source_path or 'unnamed')}"
             + (f" &middot; patient ID {_esc(meta.patient_id)}" if meta.patient_id else "")
             + f" &middot; {volume.shape[0]} slices, {volume.spacing[0]:.2f} mm apart"
             + f"<br>Labels: {_esc(labels_source or 'final (reviewed) map')} &middot; model: "
             + f"{_esc(model or 'none (labels drawn or corrected by hand)')} &middot; report made {_esc(created)}"
             + "</div>"]
    parts += _classes_section(f)
    parts += _midline_section(mid)
    parts += _lesions_section(les)
    if growth is not None:
        parts += _growth_section(growth)
    images = [_img(midline_image(volume, labels, mid), "midline")]
    for lesion in sorted(les.lesions, key=lambda x: -x.volume_ml)[:MAX_LESION_IMAGES]:
        images.append(_img(lesion_image(volume, labels, lesion, les.id_map), lesion.label))
    parts.append("<h2>Key images</h2><div class='images'>" + "".join(i for i in images if i) + "</div>")
    parts.append("<p class='ref'>Midline: ideal line (green) along the skull's symmetry axis, midline structures "
                 "(orange), the largest distance (red). Lesions outlined in their class colour; thickness in white. "
                 "Slices are numbered from 1 in the scan's order.</p>")
    parts.append(f"<div class='banner'>{_esc(NOT_FOR_CLINICAL_USE)}</div></body></html>")
    return "\n".join(parts)


def _classes_section(f) -> list[str]:
    rows = []
    for c in f.classes:
        if c.voxels == 0:
            continue
        abc = "" if c.abc2 is None else f"{c.abc2.volume_ml:.1f}"
        rows.append(f"<tr><td>{_esc(c.name)}</td><td class='n'>{c.volume_ml:.2f}</td><td class='n'>{abc}</td>"
                    f"<td>{_esc(c.slices_text or '-')}</td><td>{'positive' if c.positive else 'below rule'}</td></tr>")
    if not rows:
        return ["<h2>Findings</h2><p>No hemorrhage labelled.</p>"]
    return ["<h2>Findings per class</h2><table><tr><th>Class</th><th>Volume (mL)</th><th>ABC/2 (mL)</th>"
            f"<th>Slices</th><th>Present on {MIN_CONSECUTIVE_SLICES}+ consecutive slices</th></tr>", *rows, "</table>"]


def _midline_section(mid) -> list[str]:
    if not mid.found:
        return [f"<h2>Midline shift</h2><p>Not measured: {_esc(mid.reason)}.</p>"]
    flag = " class='flag'" if mid.shift_mm > GUIDELINE_MM else ""
    side = f" to the patient's {mid.side}" if mid.side else ""
    return ["<h2>Midline shift</h2>",
            f"<p><span{flag}>{mid.shift_mm:.1f} mm{_esc(side)}</span> <span class='ref'>(reference line "
            f"{GUIDELINE_MM:g} mm)</span>, at the {_esc(mid.structure)} on slice {mid.slice_index + 1}: the largest "
            "perpendicular distance from the ideal midline (the skull's symmetry axis) to the septum pellucidum or "
            "third ventricle.</p>"]


def _lesions_section(les) -> list[str]:
    if not les.lesions:
        return []
    rows = []
    for x in les.lesions:
        thick = ""
        if x.thickness is not None:
            cls = " flag" if x.thickness.mm > THICKNESS_GUIDELINE_MM else ""
            thick = f"<span class='{cls.strip()}'>{x.thickness.mm:.1f}</span>"
        abc = "" if x.abc2 is None else f"{x.abc2.volume_ml:.1f}"
        rows.append(f"<tr><td>{x.number}</td><td>{_esc(x.key.upper())}</td><td>{_esc(x.side)}</td>"
                    f"<td>{_esc(x.location)}</td><td class='n'>{x.volume_ml:.2f}</td><td class='n'>{abc}</td>"
                    f"<td class='n'>{thick}</td><td class='n'>{x.diameter_mm:.0f}</td>"
                    f"<td>{x.slices[0] + 1}&ndash;{x.slices[-1] + 1}</td></tr>")
    frag = "; ".join(f"{k.upper()} {v['count']} piece(s), {v['volume_ml']:.2f} mL" for k, v in les.fragments.items())
    return ["<h2>Lesions</h2><table><tr><th>#</th><th>Class</th><th>Side</th><th>Location</th><th>Volume (mL)</th>"
            f"<th>ABC/2 (mL)</th><th>Thickness (mm) <span class='ref'>ref. {THICKNESS_GUIDELINE_MM:g}</span></th>"
            "<th>Largest diameter (mm)</th><th>Slices</th></tr>", *rows, "</table>",
            f"<p class='ref'>Pieces under {les.min_volume_ml:g} mL not listed" + (f": {_esc(frag)}" if frag else "")
            + ". Thickness: largest distance from the inner table, perpendicular to it (extra-axial collections).</p>"]


def _growth_section(g) -> list[str]:
    crit = f"growth > {ICH_GROWTH_ML:g} mL or > {100 * ICH_GROWTH_FRACTION:.0f} %"
    rows = []
    for c in g.classes:
        if c.prior_ml == 0 and c.follow_up_ml == 0:
            continue
        pct = "" if c.change_pct is None else f"{c.change_pct:+.0f} %"
        flag = " <span class='flag'>expansion</span>" if c.expansion else ""
        rows.append(f"<tr><td>{_esc(c.name)}</td><td class='n'>{c.prior_ml:.2f}</td><td class='n'>{c.follow_up_ml:.2f}"
                    f"</td><td class='n'>{c.change_ml:+.2f}</td><td class='n'>{pct}</td><td>{flag}</td></tr>")
    lrows = []
    for c in g.lesions:
        pct = "" if c.change_pct is None else f"{c.change_pct:+.0f} %"
        status = f"<span class='flag'>{_esc(c.status)}</span>" if c.status == "new" or c.expansion else _esc(c.status)
        lrows.append(f"<tr><td>{_esc(c.key.upper())}</td><td>{c.prior or ''}</td><td>{c.follow_up or ''}</td>"
                     f"<td>{_esc(c.location)}</td><td class='n'>{c.prior_ml:.2f}</td><td class='n'>{c.follow_up_ml:.2f}</td>"
                     f"<td class='n'>{c.change_ml:+.2f}</td><td class='n'>{pct}</td><td>{status}</td></tr>")
    reg = g.registration
    return ["<h2>Change since the prior scan</h2>",
            f"<p>Scans aligned by a rigid registration on the skull (rotation {reg.angle_deg:.1f}&deg;, translation "
            f"{sum(t * t for t in reg.translation) ** 0.5:.1f} mm). ICH expansion criterion: {crit}: "
            + ("<span class='flag'>met</span>" if g.ich_expansion else "not met") + ".</p>",
            "<table><tr><th>Class</th><th>Prior (mL)</th><th>Follow-up (mL)</th><th>Change (mL)</th><th>Change</th>"
            "<th></th></tr>", *rows, "</table>",
            "<table><tr><th>Class</th><th>Prior #</th><th>Follow-up #</th><th>Where</th><th>Prior (mL)</th>"
            "<th>Follow-up (mL)</th><th>Change (mL)</th><th>Change</th><th>Status</th></tr>", *lrows, "</table>"]


def write_report_html(path, measurements: ScanMeasurements, volume, labels, **kw) -> None:
    atomic_write_text(path, report_html(measurements, volume, labels, **kw))
