"""Dock panels: classes/legend, findings, log (cases and training panels are added by other modules)."""
