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
BLAST_CT_MODEL = MODELS_DIR / "blast_ct_v1.safetensors"  # BLAST-CT's 12-member ensemble (Apache-2.0, NOTICE beside it)

# The model the app opens with until the user chooses another (Model > Bundled model), by the rule in the
# README's "Default model" section: under 5 mL painted on the normal GE series first, then Dice, then time.
# Measured 1 Dec 2026: both pass (aa_unet v4 with its whole guard 0.06 mL, BLAST-CT 4 members 0.04 mL);
# aa_unet v4's any-blood Dice on the rule's five generated cases is higher (0.905 against BLAST-CT's 0.80 with
# 1 member and 0.78 with 4), so it is the default (until 30 Nov: BLAST-CT, 4 members).
APP_DEFAULT_MODEL = "aa_unet"
APP_DEFAULT_MEMBERS = None  # members of an ensemble default (None: not an ensemble)


def bundled_models() -> dict[str, Path]:
    """The models shipped in resources/models, by the name the command line and the app use."""
    import ctseg_core.resources as r  # read at call time (tests point these elsewhere)

    return {"aa_unet": r.DEFAULT_MODEL, "blast_ct": r.BLAST_CT_MODEL}


def model_path(name_or_path: str | Path) -> Path:
    """A bundled model's checkpoint for its name ("aa_unet", "blast_ct"), else the path itself."""
    return bundled_models().get(str(name_or_path), Path(name_or_path))

ICONS_DIR = RESOURCES / "icons"
