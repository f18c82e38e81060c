"""Folders of labelled scans as the generator writes them (``ctseg synth``): ``<case>_ct.nii.gz`` beside
``<case>_labels.nii.gz``. Read by ``ctseg evaluate`` and by the evaluations of a pretraining run."""

from __future__ import annotations

from pathlib import Path

from ctseg_core.errors import LoadError

CT_SUFFIX = "_ct.nii.gz"
LABELS_SUFFIX = "_labels.nii.gz"


def find_cases(folder: Path) -> list[tuple[str, Path, Path]]:
    """(case name, CT path, labels path) for every CT with its labels beside it, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LoadError("data folder not found", folder)
    cases = []
    for ct in sorted(folder.glob(f"*{CT_SUFFIX}")):
        name = ct.name[: -len(CT_SUFFIX)]
        labels = folder / f"{name}{LABELS_SUFFIX}"
        if labels.is_file():
            cases.append((name, ct, labels))
    if not cases:
        raise LoadError(f"no *{CT_SUFFIX} files with matching *{LABELS_SUFFIX} labels", folder)
    return cases
