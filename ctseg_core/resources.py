"""Paths of the files shipped in ``resources/`` (demo case, default model, icons)."""

from __future__ import annotations

import os
from pathlib import Path

RESOURCES = Path(os.environ.get("CTSEG_RESOURCES", Path(__file__).resolve().parents[1] / "resources"))

DEMO_DIR = RESOURCES / "demo"
DEMO_CT = DEMO_DIR / "demo_ct.nii.gz"  # a generated head CT with several lesion classes
DEMO_TRUTH = DEMO_DIR / "demo_truth_labels.nii.gz"  # the generator's exact labels for it

MODELS_DIR = RESOURCES / "models"
DEFAULT_MODEL = MODELS_DIR / "aa_unet_default.safetensors"  # with its card beside it: .json

ICONS_DIR = RESOURCES / "icons"
