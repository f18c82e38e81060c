"""Review > Slice reviewed (Ctrl+Return) and Review > Next uncertain slice (Ctrl+Shift+N), and the prefetch of
the next case to review.

"Slice reviewed" records that a person looked at the shown axial slice and found it right
(``ctseg_core.store.reviewed``): training then learns from it (slices a person edited count without it;
the others are left out of the loss). "Next uncertain slice" moves to the slice that nobody reviewed yet
where the model expects most of its errors (``ctseg_core.review_order.next_slice``). After the open case's
segmentation, the next case to review (``cases_to_review``) is segmented in the background on the device
queue, so that it opens with its prediction (setting ``model/prefetch``; on by default in the app, off
when it runs without a user).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QAction, QKeySequence

from ctseg_core.errors import CtsegError


def reviewed_mask(session, case) -> np.ndarray | None:
    """bool (z,): the slices of the open case a person reviewed (edited from the prediction, or confirmed)."""
    from ctseg_core.store.reviewed import confirmed_slices
    from ctseg_core.training.dataset import review_masks

    if not session.has_volume() or session.final is None:
        return None
    prediction = session.prediction.array if session.prediction_complete else None
    confirmed = confirmed_slices(case.folder) if case is not None else []
    reviewed, _ = review_masks(session.final.array, prediction, confirmed)
    if reviewed is None:
        reviewed = np.zeros(session.volume.shape[0], bool)
        reviewed[list(confirmed)] = True
    return reviewed


def mark_slice_reviewed(window, store) -> bool:
    from ctseg_core.store.reviewed import mark_slices

    session, case = window.session, store.case
    if case is None or not session.has_volume():
        session.log("open a case of the workspace first: there is nothing to mark", "warning")
        return False
    z = int(session.position[0])
    try:
        mark_slices(case, [z], by=store.annotator)
    except CtsegError as exc:
        session.log(f"slice {z + 1} could not be marked as reviewed: {exc}", "error")
        return False
    session.log(f"slice {z + 1} marked as reviewed (training learns from it)")
    return True


def go_to_next_uncertain_slice(window, store) -> int | None:
    from ctseg_core.review_order import next_slice

    session = window.session
    if not session.has_volume() or session.uncertainty is None or np.isnan(session.uncertainty).all():
        session.log("no uncertainty of the model for this scan yet (run the model first)", "warning")
        return None
    try:
        reviewed = reviewed_mask(session, store.case)
    except CtsegError as exc:
        session.log(str(exc), "warning")
        reviewed = None
    z_now = int(session.position[0])
    z = next_slice(np.nan_to_num(session.uncertainty, nan=0.0), session.volume.spacing, reviewed, z_now)
    if z is None:
        session.log("every uncertain slice has been reviewed")
        return None
    _, j, i = session.position
    session.set_position(z, j, i)
    session.log(f"slice {z + 1}: the most uncertain slice not yet reviewed")
    return z


def prefetch_next_case(window, store) -> bool:
    """Queue a background segmentation of the next case to review (if it has no prediction of the active model)."""
    from ctseg_core.review_order import cases_to_review

    if store.workspace is None or not window.settings.value("model/prefetch", window.interactive, bool):
        return False
    open_id = store.case.id if store.case is not None else None
    try:
        order = cases_to_review(store.workspace, exclude=[open_id] if open_id else [])
        for case_id, _ in order:
            case = store.workspace.case(case_id)
            if window.session.model is None or not window.session.model.same_model(case.prediction_model()):
                return window.model.prefetch(str(case.folder), case_id)
    except CtsegError as exc:
        window.session.log(f"no background segmentation of the next case: {exc}", "warning")
    return False


def install_review_keys(window, editing) -> None:
    review = window.menu("&Review")
    review.addSeparator()
    for text, slot, key in (("Slice reviewed (train on it)", lambda: mark_slice_reviewed(window, editing.store),
                             "Ctrl+Return"),
                            ("Next uncertain slice", lambda: go_to_next_uncertain_slice(window, editing.store),
                             "Ctrl+Shift+N")):
        action = QAction(text, window)
        action.setShortcut(QKeySequence(key))
        action.triggered.connect(lambda *_, s=slot: s())
        review.addAction(action)
    window.pipeline_done.connect(lambda outcome: outcome in ("inferred", "stored")
                                 and prefetch_next_case(window, editing.store))
