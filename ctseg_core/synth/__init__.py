"""Procedural head-CT generator with exact ground truth for the seven hemorrhage classes."""

from ctseg_core.synth.acquisition import Acquisition, sample_acquisition
from ctseg_core.synth.case import SynthCase, generate_case
from ctseg_core.synth.dicom_writer import write_case
from ctseg_core.synth.hard_negatives import hard_negative_categories

__all__ = ["Acquisition", "SynthCase", "generate_case", "hard_negative_categories", "sample_acquisition", "write_case"]
