"""DICOM Structured Report of the measurements (TID 1500 Measurement Report, through highdicom).

Written beside the DICOM SEG it refers to (``write_dicom_sr``), in the same study:
- one volumetric measurement group (TID 1411) per class present: the total volume (mL), referencing that
  class's segment in the SEG and the source CT series; finding type as in the SEG (hemorrhage, hematoma,
  air); tracking identifier "<KEY> total";
- one volumetric group per lesion of the lesion list: tracking identifier "<KEY> <n>", the same segment,
  volume (mL), largest 3-D diameter (mm, derivation "Maximum"), ABC/2 volume for ICH (method "Volume of
  ellipsoid"), maximum thickness for extra-axial collections (mm), and the rough location as finding
  sites (lobe or region, with laterality Left/Right/Bilateral or the topographical modifier Midline);
- one measurement group (TID 1501) for the midline shift (mm), with its side as laterality, when it
  was measured; when not, a qualitative evaluation saying so.
Every group names the algorithm (ctseg and the model version) and carries the hemorrhage class as a
qualitative evaluation. Codes not in DICOM's or SNOMED CT's tables as pydicom ships them use the local
coding scheme ``99CTSEG`` (allowed for private codes): thickness, midline shift, the class, posterior
fossa and deep grey nuclei. ``read_dicom_sr`` reads the values back (tests, and any consumer).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ctseg_core.atomic import atomic_write_with
from ctseg_core.errors import CtsegError, LoadError
from ctseg_core.io.seg import SourceGrid, _read_sources
from ctseg_core.labels import CLASS_BY_KEY
from ctseg_core.measure import ScanMeasurements
from ctseg_core.measure import lesions as L
from ctseg_core.volume import Volume

SCHEME = "99CTSEG"
_HEMATOMA = {"sdh", "edh", "csdh"}


def _local(value: str, meaning: str):
    import highdicom as hd

    return hd.sr.CodedConcept(value, SCHEME, meaning)


def _codes():
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return {
        "volume": codes.SCT.Volume, "diameter": codes.SCT.Diameter, "maximum": codes.SCT.Maximum,
        "ellipsoid": codes.DCM.VolumeOfEllipsoid, "thickness": _local("THICKNESS", "Thickness perpendicular to the inner table"),
        "midline_shift": _local("MLS", "Midline shift"), "class": _local("CLASS", "Hemorrhage class"),
        "not_measured": _local("NOTMEASURED", "Not measured"),
        "ml": hd.sr.CodedConcept("mL", "UCUM", "milliliter"), "mm": codes.UCUM.Millimeter,
        "left": codes.SCT.Left, "right": codes.SCT.Right, "bilateral": codes.SCT.Bilateral,
        "midline": codes.SCT.Midline, "head": codes.SCT.Head, "brain": codes.SCT.Brain,
        L.FRONTAL: codes.SCT.FrontalLobe, L.TEMPORAL: codes.SCT.TemporalLobe, L.PARIETAL: codes.SCT.ParietalLobe,
        L.OCCIPITAL: codes.SCT.OccipitalLobe, L.VENTRICULAR: codes.SCT.BrainVentricle,
        L.POSTERIOR_FOSSA: _local("POSTFOSSA", "Posterior cranial fossa"),
        L.DEEP: _local("DEEPGREY", "Deep grey nuclei (basal ganglia, thalamus)"),
    }


REGION_BY_CODE = {"83251001": L.FRONTAL, "78277001": L.TEMPORAL, "16630005": L.PARIETAL, "31065004": L.OCCIPITAL,
                  "35764002": L.VENTRICULAR, "POSTFOSSA": L.POSTERIOR_FOSSA, "DEEPGREY": L.DEEP}


def _finding_type(key: str):
    from pydicom.sr.codedict import codes

    if key == "pneumocephalus":
        return codes.SCT.Air
    return codes.SCT.Hematoma if key in _HEMATOMA else codes.SCT.Hemorrhage


def write_dicom_sr(measurements: ScanMeasurements, volume: Volume, seg_path: str | Path, out_path: str | Path, *,
                   model_version: str | None = None, series_number: int = 901) -> Path:
    """Write the measurement report referencing the DICOM SEG at ``seg_path`` and the scan's source series."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    import ctseg_core

    seg_path = Path(seg_path)
    try:
        seg = pydicom.dcmread(seg_path)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise LoadError(f"cannot read the DICOM SEG the report refers to ({exc})", seg_path) from exc
    if getattr(seg, "Modality", "") != "SEG":
        raise LoadError("not a DICOM SEG", seg_path)
    grid = SourceGrid(volume.meta.extra)
    sources = _read_sources(grid)
    source_series = str(sources[0].SeriesInstanceUID)
    segment_of = {str(s.SegmentLabel): int(s.SegmentNumber) for s in seg.SegmentSequence}
    c = _codes()
    algorithm = hd.sr.AlgorithmIdentification(name="ctseg", version=str(model_version or "manual"),
                                              family=codes.cid7162.ArtificialIntelligence)

    def referenced(key: str):
        name = CLASS_BY_KEY[key].name
        if name not in segment_of:
            raise CtsegError(f"the DICOM SEG has no segment for {name}: write the SEG from the same labels", seg_path)
        return hd.sr.ReferencedSegment(sop_class_uid=str(seg.SOPClassUID), sop_instance_uid=str(seg.SOPInstanceUID),
                                       segment_number=segment_of[name],
                                       source_series=hd.sr.SourceSeriesForSegmentation(source_series))

    def measurement(name, value, unit, **kw):
        return hd.sr.Measurement(name=name, value=round(float(value), 3), unit=unit, algorithm_id=algorithm, **kw)

    def klass(key: str):
        return hd.sr.QualitativeEvaluation(c["class"], _local(key, CLASS_BY_KEY[key].name))

    groups = []
    for f in measurements.findings.classes:
        if f.voxels == 0:
            continue
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{f.key.upper()} total"),
            referenced_segment=referenced(f.key), finding_type=_finding_type(f.key), algorithm_id=algorithm,
            measurements=[measurement(c["volume"], f.volume_ml, c["ml"])], qualitative_evaluations=[klass(f.key)]))
    for les in measurements.lesions.lesions:
        values = [measurement(c["volume"], les.volume_ml, c["ml"]),
                  measurement(c["diameter"], les.diameter_mm, c["mm"], derivation=c["maximum"])]
        if les.abc2 is not None:
            values.append(measurement(c["volume"], les.abc2.volume_ml, c["ml"], method=c["ellipsoid"]))
        if les.thickness is not None:
            values.append(measurement(c["thickness"], les.thickness.mm, c["mm"], derivation=c["maximum"]))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{les.key.upper()} {les.number}"),
            referenced_segment=referenced(les.key), finding_type=_finding_type(les.key), algorithm_id=algorithm,
            finding_sites=_sites(les, c), measurements=values, qualitative_evaluations=[klass(les.key)]))
    groups.append(_midline_group(measurements.midline, c, algorithm, measurement))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="ctseg", manufacturer_name="ctseg", model_name=str(model_version or "manual")))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.ComputedTomographyOfHead, imaging_measurements=groups)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        sr = hd.sr.Comprehensive3DSR(
            evidence=[seg] + sources, content=report, series_instance_uid=hd.UID(), series_number=series_number,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="ctseg",
            series_description="ctseg measurements (not for clinical use)", is_complete=True,
            software_versions=str(ctseg_core.__version__))
    out_path = Path(out_path)
    atomic_write_with(out_path, lambda tmp: sr.save_as(tmp, enforce_file_format=True))
    return out_path


def _sites(les, c) -> list:
    import highdicom as hd

    laterality = {"left": c["left"], "right": c["right"], "bilateral": c["bilateral"]}.get(les.side)
    modifier = c["midline"] if les.side == "midline" else None
    return [hd.sr.FindingSite(anatomic_location=c[region], laterality=laterality, topographical_modifier=modifier)
            for region in les.regions]


def _midline_group(midline, c, algorithm, measurement):
    import highdicom as hd

    tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="midline shift")
    if not midline.found:
        return hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking, algorithm_id=algorithm,
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(c["midline_shift"], c["not_measured"])])
    side = {"left": c["left"], "right": c["right"]}.get(midline.side)
    site = [hd.sr.FindingSite(anatomic_location=c["brain"], laterality=side)] if side is not None else None
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, algorithm_id=algorithm, finding_sites=site,
        measurements=[measurement(c["midline_shift"], midline.shift_mm, c["mm"])])


# ---------------------------------------------------------------- reading back

@dataclass
class SRGroup:
    tracking: str
    class_key: str = ""
    referenced_seg: str = ""  # SOP instance UID
    segment_number: int = 0
    source_series: str = ""
    values: dict[str, float] = field(default_factory=dict)  # "volume_ml", "abc2_ml", "diameter_mm", "thickness_mm", ...
    regions: list[str] = field(default_factory=list)
    laterality: str = ""  # "left", "right", "bilateral", "midline" or ""
    algorithm: str = ""  # "name version"


def read_dicom_sr(path: str | Path) -> list[SRGroup]:
    """The measurement groups of a ctseg SR, as plain values."""
    import highdicom as hd

    path = Path(path)
    try:
        sr = hd.sr.srread(path)
    except Exception as exc:  # highdicom/pydicom raise many types for a file that is not an SR
        raise LoadError(f"not a readable DICOM SR ({exc})", path) from exc
    report = sr.content
    out = [_read_group(g, volumetric=True) for g in report.get_volumetric_roi_measurement_groups()]
    out += [_read_group(g, volumetric=False) for g in report.get_image_measurement_groups()]
    return out


def _read_group(g, volumetric: bool) -> SRGroup:
    """The values of one measurement group (highdicom parses the document; items are read by concept)."""
    group = SRGroup(tracking=str(g.tracking_identifier))
    if volumetric and g.referenced_segment is not None:
        ref = g.referenced_segment
        group.referenced_seg = str(ref.referenced_sop_instance_uid)
        group.segment_number = int(ref.referenced_segment_numbers[0])
        series = ref.source_series_for_segmentation
        group.source_series = "" if series is None else str(series.value)
    algorithm = {}
    for item in g[0].ContentSequence:
        concept = item.ConceptNameCodeSequence[0]
        meaning, code = str(concept.CodeMeaning), str(concept.CodeValue)
        if meaning in ("Algorithm Name", "Algorithm Version"):
            algorithm[meaning] = str(item.TextValue)
        elif item.ValueType == "NUM":
            group.values[_value_name(code, item)] = float(item.MeasuredValueSequence[0].NumericValue)
        elif code == "CLASS":
            group.class_key = str(item.ConceptCodeSequence[0].CodeValue)
        elif meaning == "Finding Site":
            region = REGION_BY_CODE.get(str(item.ConceptCodeSequence[0].CodeValue))
            if region:
                group.regions.append(region)
            group.laterality = group.laterality or _laterality(item)
    group.algorithm = " ".join(algorithm.get(k, "") for k in ("Algorithm Name", "Algorithm Version")).strip()
    return group


def _value_name(code: str, item) -> str:
    if code == "118565006":
        methods = [m for m in getattr(item, "ContentSequence", [])
                   if str(m.ConceptNameCodeSequence[0].CodeMeaning) == "Measurement Method"]
        return "abc2_ml" if methods else "volume_ml"
    return {"81827009": "diameter_mm", "THICKNESS": "thickness_mm", "MLS": "midline_shift_mm"}.get(code, code)


def _laterality(site) -> str:
    for item in getattr(site, "ContentSequence", []):
        meaning = str(item.ConceptCodeSequence[0].CodeMeaning).lower()
        if meaning in ("left", "right", "bilateral", "midline"):
            return meaning
    return ""
