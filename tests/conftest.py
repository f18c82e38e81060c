"""Shared fixtures: the real DICOM data in ../shared/data (read-only) and temporary copies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CTSEG_SHARED_DATA", ROOT.parent / "shared" / "data"))
DICOM_DATA = SHARED_DATA / "dicom"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as ctseg_core sets it; here before any test imports torch


@pytest.fixture(scope="session")
def dicom_data() -> Path:
    if not DICOM_DATA.is_dir():
        pytest.fail(f"real DICOM test data not found at {DICOM_DATA} (set CTSEG_SHARED_DATA)")
    return DICOM_DATA


@pytest.fixture(scope="session")
def ge_tilt(dicom_data) -> Path:
    return dicom_data / "ge_head_tilt"


@pytest.fixture(scope="session")
def ge_tilt_altered(dicom_data) -> Path:
    return dicom_data / "ge_head_tilt_altered_geometry"


@pytest.fixture(scope="session")
def philips_multi(dicom_data) -> Path:
    return dicom_data / "philips_phantom_multi_series"
