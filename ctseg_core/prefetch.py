"""Prefetch: segment the next case to review in the background and store the prediction with it, so that
opening it shows the model's result at once (the app's device queue runs this when the device is free).
"""

from __future__ import annotations

from ctseg_core.errors import CaseLockedError


def prefetch_case(predictor, case, cancel=None) -> bool:
    """Segment ``case`` (a workspace ``Case``) with ``predictor`` and store the prediction and its uncertainty,
    unless it already holds one of this model (False) or another program has it open (False, nothing
    written). ``cancel`` (a ``CancelToken``) stops it between slices (``Cancelled``)."""
    from ctseg_core.model_identity import ModelIdentity

    model = ModelIdentity.of_predictor(predictor)
    stored = case.prediction_model()
    if stored is not None and model.same_model(stored):
        return False
    volume = case.load_volume()
    prediction = predictor.predict(volume, cancel=cancel)
    try:
        case.lock_for_editing(reader="")
    except CaseLockedError:
        return False
    try:
        case.save_prediction(prediction.labels, model.label, model=model, uncertainty=prediction.uncertainty())
    finally:
        case.release_lock()
    return True
