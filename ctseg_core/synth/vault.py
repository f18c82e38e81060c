"""The skull vault's inner table as a depth function of a ``Head`` (its half-width, -length, -height and
-depth, and its taper): how far a point lies below the inner table. Shared by the anatomy, the lesions and
the surgery of the generator."""

from __future__ import annotations

import numpy as np


def inner_depth(head, u, v, w, terms: tuple | None = None) -> np.ndarray:
    """Approximate depth (mm) below the inner table along the ray from the origin (negative outside).

    Below w = 0 the vault is deeper and leans backwards (room for the posterior fossa). ``terms``: the
    plane-independent part (``vault_terms(head, u, v)``, cropped like u and v), to reuse across planes."""
    q0, q1, rho2 = vault_terms(head, u, v) if terms is None else terms
    lean = np.clip(-w / np.float32(60.0), 0.0, 1.0) if np.ndim(w) else float(np.clip(-w / 60.0, 0.0, 1.0))
    q = q0 if (np.ndim(lean) == 0 and lean == 0.0) else q0 + np.float32(lean) * (q1 - q0)
    if np.ndim(w):
        c = np.where(w >= 0, np.float32(head.half_height), np.float32(head.half_depth))
    else:
        c = head.half_height if w >= 0 else head.half_depth
    r = np.sqrt(q + (w / c) ** 2) + np.float32(1e-6)
    return (1.0 - r) * np.sqrt(rho2 + w * w + np.float32(1e-6)) / r


def vault_terms(head, u, v) -> tuple:
    """The vault's in-plane terms: normalised radius squared upright and leaning back 11 mm, and u^2 + v^2."""
    return _vault_q(head, u, v, 0.0), _vault_q(head, u, v, 11.0), (u * u + v * v).astype(np.float32)


def _vault_q(head, u, v, lean_mm: float):
    vs = v - lean_mm
    a = head.half_width * (1.0 + head.taper * np.clip(vs / head.half_length, -1.2, 1.0))
    return ((u / a) ** 2 + (vs / head.half_length) ** 2).astype(np.float32)
