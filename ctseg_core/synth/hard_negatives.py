"""Where the normal structures that look like blood lie in a generated case: masks for a crop sampler
that centres training crops on them (hard negatives). None of these voxels carries a label."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ctseg_core.synth import tissues as T

CATEGORIES = tuple(name for name in T.STRUCTURES if name not in ("vault_bone", "intracranial", "metal"))


def hard_negative_categories(case, rim_mm: float = 3.0) -> dict[str, np.ndarray]:
    """Boolean masks on the case's grid, one per category: ``inner_table_rim`` (intracranial voxels within
    ``rim_mm`` in-plane of the vault's bone: the bright rim that looks like a thin subdural), and the
    categories of ``CATEGORIES``: ``ventricles_csf``, ``falx_tentorium_sinus``, ``skull_base``,
    ``calcification``, ``scalp_soft_tissue`` (scalp, face and neck soft tissue, any scalp haematoma),
    ``scalp_haematoma``, ``postop_air`` (outside the dura), ``metal_devices``, ``white_matter_hypodensity``.

    A voxel belongs to a category when any plane of its slice held that tissue (``SynthCase.structures``),
    so small structures that a thick slice mixes with their surroundings are found too. Labelled voxels
    are left out of every mask. Use ``np.argwhere(mask)`` for crop centres."""
    bits = case.structures
    if bits is None:
        if case.tissue is None:
            raise ValueError("the case has no tissue map (generate it with ctseg_core.synth.generate_case)")
        bits = T.STRUCTURE_LUT[case.tissue]
    unlabelled = case.labels.array == 0
    has = lambda name: (bits & np.uint16(T.STRUCTURE_BIT[name])) > 0  # noqa: E731
    out = {"inner_table_rim": _near(has("vault_bone"), case.volume.spacing[1], rim_mm) & has("intracranial")
           & unlabelled}
    for name in CATEGORIES:
        out[name] = has(name) & unlabelled
    return out


def _near(mask: np.ndarray, pixel_mm: float, rim_mm: float) -> np.ndarray:
    """In-plane neighbourhood (a square of half-width ``rim_mm``) of a 3-D mask."""
    r = max(1, int(round(rim_mm / pixel_mm)))
    return ndi.uniform_filter(mask.astype(np.float32), size=(1, 2 * r + 1, 2 * r + 1), mode="constant") > 1e-3
