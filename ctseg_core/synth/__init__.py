"""Procedural head-CT generator with exact ground truth for the seven hemorrhage classes."""

from ctseg_core.synth.case import SynthCase, generate_case
from ctseg_core.synth.dicom_writer import write_case

__all__ = ["SynthCase", "generate_case", "write_case"]
