"""Query and retrieve: search a PACS (C-FIND, study root) and pull a study or a series.

``find_studies(config, patient_id=..., patient_name=..., date=...)`` returns ``StudyMatch`` rows (CT
studies only: ModalitiesInStudy = CT); ``find_series`` lists one study's series. ``retrieve`` pulls a
study (or one series) either with C-MOVE to this ctseg's own listener (the PACS must know our AE title,
host and port) or with C-GET (the images come back on the same association and are filed into the inbox
here). Progress is reported from the PACS's pending responses (completed/remaining sub-operations).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ctseg_core.errors import Cancelled, PacsError
from ctseg_core.pacs.config import PacsConfig
from ctseg_core.pacs.inbox import Inbox, SeriesEntry
from ctseg_core.pacs.net import associate, check_status, make_ae

_DATE = re.compile(r"(\d{8})?(-(\d{8})?)?")


@dataclass
class StudyMatch:
    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    study_description: str = ""
    accession_number: str = ""
    modalities: str = ""
    n_series: str = ""
    n_instances: str = ""


@dataclass
class SeriesMatch:
    study_uid: str
    series_uid: str
    modality: str = ""
    series_number: str = ""
    series_description: str = ""
    n_instances: str = ""


@dataclass
class RetrieveResult:
    completed: int = 0
    failed: int = 0
    warning: int = 0
    status: int = 0
    series: list[SeriesEntry] = field(default_factory=list)  # C-GET: the series filed into the inbox

    @property
    def total(self) -> int:
        return self.completed + self.failed + self.warning


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword, "") if ds is not None else ""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def check_date(date: str) -> str:
    """A DICOM date or range: "20240131", "20240101-20240131", "20240101-", "-20240131" (or "")."""
    date = (date or "").replace(" ", "")
    if date and not _DATE.fullmatch(date):
        raise PacsError(f"date {date!r}: use YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    return date


def _find(config: PacsConfig, query, what: str) -> list:
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    node = config.query()
    ae = make_ae(config)
    ae.add_requested_context(FIND)
    rows = []
    with associate(ae, node, config) as assoc:
        for status, identifier in assoc.send_c_find(query, FIND):
            value = check_status(status, f"C-FIND ({what}) at {node.describe()}")
            if value in (0xFF00, 0xFF01) and identifier is not None:
                rows.append(identifier)
    return rows


def find_studies(config: PacsConfig, patient_id: str = "", patient_name: str = "", date: str = "",
                 modality: str = "CT") -> list[StudyMatch]:
    """CT studies matching the patient id / name (wildcards * and ? allowed) and study date (range)."""
    from pydicom.dataset import Dataset

    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.PatientID = patient_id.strip()
    q.PatientName = patient_name.strip()
    q.StudyDate = check_date(date)
    q.ModalitiesInStudy = modality
    for keyword in ("StudyInstanceUID", "StudyDescription", "AccessionNumber", "StudyTime",
                    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"):
        setattr(q, keyword, "")
    rows = _find(config, q, "studies")
    out = [StudyMatch(_text(r, "StudyInstanceUID"), _text(r, "PatientID"), _text(r, "PatientName"),
                      _text(r, "StudyDate"), _text(r, "StudyDescription"), _text(r, "AccessionNumber"),
                      _text(r, "ModalitiesInStudy"), _text(r, "NumberOfStudyRelatedSeries"),
                      _text(r, "NumberOfStudyRelatedInstances")) for r in rows]
    return sorted(out, key=lambda m: (m.study_date, m.patient_id), reverse=True)


def find_series(config: PacsConfig, study_uid: str) -> list[SeriesMatch]:
    from pydicom.dataset import Dataset

    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = study_uid
    for keyword in ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                    "NumberOfSeriesRelatedInstances"):
        setattr(q, keyword, "")
    rows = _find(config, q, "series")
    return [SeriesMatch(study_uid, _text(r, "SeriesInstanceUID"), _text(r, "Modality"), _text(r, "SeriesNumber"),
                        _text(r, "SeriesDescription"), _text(r, "NumberOfSeriesRelatedInstances")) for r in rows]


def _retrieve_query(study_uid: str, series_uid: str | None):
    from pydicom.dataset import Dataset

    q = Dataset()
    q.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    q.StudyInstanceUID = study_uid
    if series_uid:
        q.SeriesInstanceUID = series_uid
    return q


def _count(status, keyword: str) -> int:
    try:
        return int(status.get(keyword, 0) or 0)
    except (TypeError, ValueError):
        return 0


def retrieve(config: PacsConfig, study_uid: str, series_uid: str | None = None, *, workspace_root=None,
             mode: str | None = None, progress: Callable[[int, int, str], None] | None = None,
             cancel=None) -> RetrieveResult:
    """Pull a study (or one series) from the query node. ``mode``: "move" (to our listener, which must be
    running and known to the PACS) or "get" (needs ``workspace_root``: files into its inbox). Raises
    ``PacsError`` when the PACS refuses or nothing could be retrieved."""
    mode = mode or config.retrieve
    if mode == "get":
        if workspace_root is None:
            raise PacsError("C-GET files into a workspace's inbox: give the workspace")
        return _get(config, study_uid, series_uid, Inbox(workspace_root), progress, cancel)
    if mode != "move":
        raise PacsError(f"unknown retrieve mode {mode!r} (move or get)")
    return _move(config, study_uid, series_uid, progress, cancel)


def _follow(responses, assoc, what: str, progress, cancel) -> RetrieveResult:
    result = RetrieveResult()
    for status, _identifier in responses:
        if cancel is not None and cancel.cancelled:
            assoc.abort()
            raise Cancelled("retrieve cancelled")
        value = check_status(status, what)
        result.status = value
        result.completed = _count(status, "NumberOfCompletedSuboperations")
        result.failed = _count(status, "NumberOfFailedSuboperations")
        result.warning = _count(status, "NumberOfWarningSuboperations")
        remaining = _count(status, "NumberOfRemainingSuboperations")
        if progress is not None:
            total = result.total + remaining
            progress(result.total, max(total, result.total), f"{what}: {result.total} of {total} instances")
    if result.completed + result.warning == 0 and result.failed:
        raise PacsError(f"{what}: none of the {result.failed} instance(s) could be transferred")
    return result


def _move(config: PacsConfig, study_uid: str, series_uid: str | None, progress, cancel) -> RetrieveResult:
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

    node = config.query()
    ae = make_ae(config)
    ae.add_requested_context(MOVE)
    what = f"C-MOVE from {node.describe()} to {config.local.ae_title}"
    with associate(ae, node, config) as assoc:
        responses = assoc.send_c_move(_retrieve_query(study_uid, series_uid), config.local.ae_title, MOVE)
        return _follow(responses, assoc, what, progress, cancel)


def _get(config: PacsConfig, study_uid: str, series_uid: str | None, inbox: Inbox, progress,
         cancel) -> RetrieveResult:
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

    from ctseg_core.pacs.receiver import STATUS_CANNOT_UNDERSTAND, STATUS_SUCCESS, get_storage_classes

    node = config.query()
    ae = make_ae(config)
    ae.add_requested_context(GET)
    roles = []
    for uid in get_storage_classes():
        ae.add_requested_context(uid)
        roles.append(build_role(uid, scp_role=True))
    filed: dict[tuple[str, str], SeriesEntry] = {}

    def on_store(event):
        try:
            received = inbox.file_instance(event.encoded_dataset(include_meta=True), node.ae_title)
        except Exception:  # noqa: BLE001
            return STATUS_CANNOT_UNDERSTAND
        if received.entry is not None:
            filed[received.entry.key] = received.entry
        return STATUS_CANNOT_UNDERSTAND if received.malformed else STATUS_SUCCESS

    what = f"C-GET from {node.describe()}"
    with associate(ae, node, config, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]) as assoc:
        result = _follow(assoc.send_c_get(_retrieve_query(study_uid, series_uid), GET), assoc, what, progress,
                         cancel)
    for key in filed:  # the transfer is over: these series are complete
        entry = inbox.entry(*key)
        if entry is not None and entry.state == "receiving":
            result.series.append(inbox.set_state(entry, "queued", "complete: C-GET finished"))
    return result


def describe_result(result: RetrieveResult) -> str:
    text = f"{result.completed} instance(s) retrieved"
    if result.failed or result.warning:
        text += f", {result.failed} failed, {result.warning} with warnings"
    return text

