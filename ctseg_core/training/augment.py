"""Training augmentation: MONAI dictionary transforms applied to image and label together.

Rotation, zoom (a zoom-in is a random crop resized to the input), shift, left-right flip, contrast and
brightness. Each sample is augmented with its own seed, so a run (and a resumed run) is reproducible
whatever the number of loader workers or processes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.transforms import Compose, RandAffined, RandFlipd, RandScaleIntensityd, RandShiftIntensityd

from ctseg_core.training.recipe import Augmentation

IMAGE, LABEL, WEIGHT = "image", "label", "weight"


def build_augment(aug: Augmentation) -> Compose:
    """A MONAI Compose over ``{"image": (C, H, W), "label": (1, H, W), "weight": (1, H, W)}`` (the weight codes
    of ``SliceDataset`` move with the label)."""
    return Compose([
        RandAffined(
            keys=(IMAGE, LABEL, WEIGHT), prob=aug.prob,
            rotate_range=math.radians(aug.rotate_deg),
            scale_range=(aug.zoom, aug.zoom),
            translate_range=None,  # set per call from the image size, see _translate
            mode=("bilinear", "nearest", "nearest"), padding_mode=("border", "zeros", "zeros"),
        ),
        RandFlipd(keys=(IMAGE, LABEL, WEIGHT), prob=aug.flip_prob, spatial_axis=1),  # left-right (x)
        RandScaleIntensityd(keys=IMAGE, factors=aug.contrast, prob=aug.prob),
        RandShiftIntensityd(keys=IMAGE, offsets=aug.brightness, prob=aug.prob),
    ])


class Augmenter:
    """Augment one sample with a given seed (pure function of image, label and seed)."""

    def __init__(self, aug: Augmentation):
        self.aug = aug
        self.transform = build_augment(aug)
        self._sized: tuple[int, int] | None = None

    def _fit_translate(self, shape_hw: tuple[int, int]) -> None:
        if self._sized == shape_hw:
            return
        affine = self.transform.transforms[0]
        t = self.aug.translate_frac
        affine.rand_affine.rand_affine_grid.translate_range = ((-t * shape_hw[0], t * shape_hw[0]),
                                                               (-t * shape_hw[1], t * shape_hw[1]))
        self._sized = shape_hw

    def __call__(self, image, label, seed: int, weight=None):
        """``image`` (C, H, W) float, ``label`` (H, W) integer [, ``weight`` (H, W) codes] -> augmented tensors of
        the same shapes (a pair, or a triple when ``weight`` is given)."""
        self._fit_translate(tuple(image.shape[-2:]))
        self.transform.set_random_state(seed=int(seed) % (2**32))
        label = torch.as_tensor(np.asarray(label)).to(torch.float32)[None]
        codes = torch.zeros_like(label) if weight is None else torch.as_tensor(np.asarray(weight)).to(torch.float32)[None]
        out = self.transform({IMAGE: torch.as_tensor(image, dtype=torch.float32), LABEL: label, WEIGHT: codes})
        img = torch.as_tensor(out[IMAGE]).as_subclass(torch.Tensor).float().contiguous()
        lab = torch.as_tensor(out[LABEL]).as_subclass(torch.Tensor)[0].round().to(torch.int64).contiguous()
        if weight is None:
            return img, lab
        return img, lab, torch.as_tensor(out[WEIGHT]).as_subclass(torch.Tensor)[0].round().to(torch.int64).contiguous()
