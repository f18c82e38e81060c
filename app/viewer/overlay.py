"""Label and uncertainty overlays: lookup tables built from the one class table, and outlines."""

from __future__ import annotations

import numpy as np

from ctseg_core.labels import LABEL_CLASSES


def class_lut(visible: list[bool]) -> np.ndarray:
    """(256, 4) uint8 RGBA lookup table: label colours (classes and review labels), opaque where visible,
    transparent otherwise.

    Opacity is applied to the whole overlay item, so the table stays fixed while the slider moves.
    """
    lut = np.zeros((256, 4), np.uint8)
    for c in LABEL_CLASSES[1:]:
        if visible[c.id]:
            lut[c.id, :3] = c.colour
            lut[c.id, 3] = 255
    return lut


def outline(labels_yx: np.ndarray) -> np.ndarray:
    """Keep only the label pixels whose 4-neighbourhood holds another value (a 1-pixel contour)."""
    lab = labels_yx
    edge = np.zeros(lab.shape, bool)
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    return np.where(edge, lab, 0).astype(np.uint8)


def uncertainty_lut() -> np.ndarray:
    """(256, 4) uint8: transparent for certain pixels, rising to opaque yellow-white for uncertain ones."""
    t = np.linspace(0.0, 1.0, 256)
    lut = np.zeros((256, 4), np.uint8)
    lut[:, 0] = 255
    lut[:, 1] = (120 + 135 * t).astype(np.uint8)
    lut[:, 2] = (255 * np.clip(2 * t - 1, 0, 1)).astype(np.uint8)
    lut[:, 3] = (255 * np.clip(t * 1.5, 0, 1)).astype(np.uint8)
    lut[:8, 3] = 0  # near-zero uncertainty draws nothing
    return lut


def slice_uncertainty(probs_cyx: np.ndarray) -> np.ndarray:
    """1 - the largest class probability, float32 (y, x), for one streamed slice: see
    ``ctseg_core.prediction.slice_uncertainty`` (the one definition)."""
    from ctseg_core.prediction import slice_uncertainty as core

    return core(probs_cyx)
