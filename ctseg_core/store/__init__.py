"""The annotation workspace: cases, their label maps ("prediction", "final"), review status and edit journal.

A workspace is a folder (default ``$CTSEG_WORKSPACE`` or ``~/ctseg-workspace``) with ``cases/<case id>/``
per scan. Source scans are referenced (path, series UID, content hash; see ``source``), never written.

GUI::

    ws = Workspace()                                   # or Workspace(root)
    case = ws.open_case(volume, source_path)           # creates or finds the case of this scan
    labels, origin = case.load_for_editing(volume)     # "recovered" (crash), "final", "prediction", "empty"
    history = History(labels.array, journal=case.journal_append)   # every committed step is journaled
    case.save_final(labels)                            # debounced autosave / case switch / exit: atomic,
                                                       # then the journal is trimmed
    case.set_status("corrected", annotator="dr_x")

Training (cases reviewed by an annotator)::

    for tc in Workspace(root).training_cases(statuses=("corrected", "approved")):
        volume = tc.load_volume()          # re-read from the source (DICOM folder or NIfTI), geometry checked
        labels = tc.load_labels(volume)    # final.nii.gz checked against the scan's grid
        tc.case_id, tc.final_path          # identifiers / the label file itself

Several readers (``readers``): ``ws.reader_case(case_id, "alice")`` is the case with alice's own map,
journal, lock and status; ``readers.save_adjudicated`` makes an adjudicated map the case's final labels.
Who does what: ``identity`` (the reader's name), ``audit`` (``ws.audit``: the workspace's append-only log of
every edit, save, status change and training run, and its replay).

A case's source may be a NIfTI file (``ctseg_core.io.images.write_volume`` then ``open_case(volume, path)``),
which is how tests create cases from generated volumes.
"""

from ctseg_core.store.case import STATUSES, TRAINING_STATUSES, Case, CaseRecord
from ctseg_core.store.journal import Journal
from ctseg_core.store.source import SourceRef
from ctseg_core.store.workspace import TrainingCase, Workspace, default_root

__all__ = ["Workspace", "Case", "CaseRecord", "TrainingCase", "SourceRef", "Journal", "STATUSES",
           "TRAINING_STATUSES", "default_root"]
