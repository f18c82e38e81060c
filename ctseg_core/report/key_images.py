"""Key images for the report: axial slices with the midline lines or a lesion outlined (PNG, no Qt).

Radiological orientation (anterior at the top, the patient's right on the image's left), a CT window,
the class colours of ``ctseg_core.labels``; drawn with Pillow, enlarged to about ``TARGET_PX``.
"""

from __future__ import annotations

import io

import numpy as np

from ctseg_core.labels import CLASSES
from ctseg_core.windowing import PRESETS, Window, apply_window

TARGET_PX = 420
IDEAL_COLOUR = (60, 220, 90)
ACTUAL_COLOUR = (255, 170, 40)
DISTANCE_COLOUR = (255, 60, 60)
THICKNESS_COLOUR = (255, 255, 255)


class _Canvas:
    """One axial slice as an RGB image, with drawing in (row, col) voxel coordinates."""

    def __init__(self, hu: np.ndarray, direction: np.ndarray, window: Window):
        from PIL import Image, ImageDraw

        self.flip_rows = direction[1, 1] < 0  # rows should run to posterior
        self.flip_cols = direction[0, 0] < 0  # columns should run to the patient's left
        self.shape = hu.shape
        self.scale = max(1, int(round(TARGET_PX / max(hu.shape))))
        grey = (apply_window(self._oriented(hu), window) * 255).astype(np.uint8)
        self.image = Image.fromarray(grey).convert("RGB").resize(
            (grey.shape[1] * self.scale, grey.shape[0] * self.scale), Image.BILINEAR)
        self.draw = ImageDraw.Draw(self.image)

    def _oriented(self, a: np.ndarray) -> np.ndarray:
        return a[::-1 if self.flip_rows else 1, ::-1 if self.flip_cols else 1]

    def xy(self, row: float, col: float) -> tuple[float, float]:
        r = self.shape[0] - 1 - row if self.flip_rows else row
        c = self.shape[1] - 1 - col if self.flip_cols else col
        return ((c + 0.5) * self.scale, (r + 0.5) * self.scale)

    def overlay(self, labels: np.ndarray, only: np.ndarray | None = None) -> None:
        """Class outlines (filled lightly) of a label slice; ``only``: a mask restricting them."""
        from PIL import Image

        lab = self._oriented(labels if only is None else np.where(only, labels, 0))
        rgba = np.zeros(lab.shape + (4,), np.uint8)
        edge = np.zeros(lab.shape, bool)
        edge[1:] |= lab[1:] != lab[:-1]
        edge[:-1] |= lab[:-1] != lab[1:]
        edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
        edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
        for cls in CLASSES[1:]:
            m = lab == cls.id
            rgba[m, :3] = cls.colour
            rgba[m, 3] = np.where(edge[m], 255, 70)
        layer = Image.fromarray(rgba).resize(self.image.size, Image.NEAREST)
        self.image.paste(layer, (0, 0), layer)

    def line(self, a, b, colour, width: int = 2) -> None:
        self.draw.line([self.xy(*a), self.xy(*b)], fill=colour, width=width)

    def dots(self, points, colour, radius: float = 1.5) -> None:
        for r, c in points:
            x, y = self.xy(r, c)
            self.draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)

    def caption(self, text: str) -> None:
        from PIL import ImageFont

        font = ImageFont.load_default(size=max(12, self.image.size[0] // 32))
        self.draw.rectangle((0, 0, self.image.size[0], font.size + 8), fill=(0, 0, 0))
        self.draw.text((6, 3), text, fill=(255, 255, 255), font=font)

    def crop_to(self, rows: tuple[int, int], cols: tuple[int, int], margin: int) -> None:
        """Keep a box (voxel rows, cols) with ``margin`` voxels around it (for small lesions)."""
        (x0, y0), (x1, y1) = self.xy(rows[0] - margin, cols[0] - margin), self.xy(rows[1] + margin, cols[1] + margin)
        box = (max(int(min(x0, x1)), 0), max(int(min(y0, y1)), 0),
               min(int(max(x0, x1)), self.image.size[0]), min(int(max(y0, y1)), self.image.size[1]))
        self.image = self.image.crop(box)

    def png(self) -> bytes:
        from PIL import Image

        w, h = self.image.size
        f = TARGET_PX / max(w, h)
        image = self.image if abs(f - 1) < 0.05 else self.image.resize((int(w * f), int(h * f)), Image.BILINEAR)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()


def midline_image(volume, labels, midline) -> bytes | None:
    """The slice where the midline shift is largest: ideal midline, midline points, the distance."""
    if not midline.found:
        return None
    k = midline.slice_index
    canvas = _Canvas(volume.array[k], volume.geometry.direction_matrix, PRESETS["brain"])
    if labels is not None:
        canvas.overlay(labels.array[k])
    a, b = midline.ideal_line
    canvas.line(a, b, IDEAL_COLOUR)
    canvas.dots([(p.row, p.col) for p in midline.slice(k).points], ACTUAL_COLOUR)
    canvas.line(midline.foot, midline.point, DISTANCE_COLOUR, width=3)
    side = f" to the {midline.side}" if midline.side else ""
    canvas.caption(f"Slice {k + 1}: midline shift {midline.shift_mm:.1f} mm{side}")
    return canvas.png()


def lesion_image(volume, labels, lesion, id_map=None) -> bytes:
    """The lesion on the axial slice where it is largest, outlined (its thickness line if measured)."""
    k = lesion.centre[0]
    if lesion.thickness is not None:
        k = lesion.thickness.slice_index
    window = PRESETS["subdural"] if lesion.thickness is not None else PRESETS["brain"]
    canvas = _Canvas(volume.array[k], volume.geometry.direction_matrix, window)
    only = None if id_map is None else id_map[k] == lesion.number
    canvas.overlay(labels.array[k], only)
    if lesion.thickness is not None:
        t = lesion.thickness
        canvas.line(t.inner[1:], t.outer[1:], THICKNESS_COLOUR, width=2)
    text = f"Slice {k + 1}: {lesion.key.upper()} {lesion.number}, {lesion.volume_ml:.1f} mL"
    if lesion.thickness is not None:
        text += f", {lesion.thickness.mm:.1f} mm thick"
    if only is not None and only.any():
        rows, cols = np.nonzero(only)
        margin = int(40.0 / min(volume.geometry.spacing[1:]))
        canvas.crop_to((rows.min(), rows.max()), (cols.min(), cols.max()), margin)
    canvas.caption(text)
    return canvas.png()
