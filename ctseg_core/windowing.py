"""CT window presets and windowing (HU -> display or network input)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    name: str
    level: float  # centre, HU
    width: float  # HU

    @property
    def low(self) -> float:
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        return self.level + self.width / 2


PRESETS: dict[str, Window] = {
    "brain": Window("brain", 40, 80),
    "subdural": Window("subdural", 75, 215),
    "stroke": Window("stroke", 40, 40),
    "bone": Window("bone", 600, 2800),
}


def apply_window(hu: np.ndarray, window: Window, out_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Clip ``hu`` to the window and scale linearly to ``out_range`` (float32)."""
    lo, hi = out_range
    scaled = (np.asarray(hu, dtype=np.float32) - window.low) / window.width
    np.clip(scaled, 0.0, 1.0, out=scaled)
    return scaled * (hi - lo) + lo


def piecewise_linear(hu: np.ndarray, knots_hu, values) -> np.ndarray:
    """HU -> float32 by linear interpolation between knots, clamped outside them; NaN becomes the lowest
    knot's value (air): it would otherwise spread through every convolution and attention map."""
    out = np.interp(np.asarray(hu, dtype=np.float32), knots_hu, values).astype(np.float32, copy=False)
    nan = np.isnan(out)
    if nan.any():
        out[nan] = values[0]
    return out
