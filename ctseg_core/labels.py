"""The one class table: background plus the seven hemorrhage classes.

Every other module (generator, models, metrics, GUI overlay, DICOM SEG, findings) reads it from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelClass:
    id: int
    key: str  # short stable identifier used in files and JSON
    name: str
    colour: tuple[int, int, int]  # RGB 0-255, the overlay colour
    hu_range: tuple[float, float] | None  # typical HU on CT (None for background)
    note: str


BACKGROUND = LabelClass(0, "background", "Background", (0, 0, 0), None, "everything that is not hemorrhage")

CLASSES: tuple[LabelClass, ...] = (
    BACKGROUND,
    LabelClass(1, "ich", "Intracerebral hemorrhage (ICH)", (230, 25, 75), (50, 90),
               "parenchymal mass, hypodense oedema rim; basal ganglia or lobar"),
    LabelClass(2, "sdh", "Acute subdural hematoma (SDH)", (255, 225, 25), (50, 80),
               "crescent along the convexity, crosses sutures, may follow falx or tentorium"),
    LabelClass(3, "sah", "Subarachnoid hemorrhage (SAH)", (60, 180, 75), (40, 70),
               "thin hyperdense filling of sulci, Sylvian fissures and basal cisterns"),
    LabelClass(4, "edh", "Epidural hematoma (EDH)", (0, 130, 200), (50, 90),
               "biconvex lens against the inner table, bounded by sutures"),
    LabelClass(5, "csdh", "Chronic subdural hematoma (CSDH)", (245, 130, 48), (0, 30),
               "hypodense crescent, sometimes mixed density or layered"),
    LabelClass(6, "pneumocephalus", "Pneumocephalus", (70, 240, 240), (-1000, -200),
               "small air pockets under the frontal convexity"),
    LabelClass(7, "ivh", "Intraventricular hemorrhage (IVH)", (240, 50, 230), (40, 80),
               "hyperdense blood in the ventricles, layering in dependent horns"),
)

NUM_CLASSES = len(CLASSES)  # including background
LESION_CLASSES = CLASSES[1:]
CLASS_BY_KEY = {c.key: c for c in CLASSES}


def class_names(include_background: bool = True) -> list[str]:
    return [c.name for c in (CLASSES if include_background else LESION_CLASSES)]


def class_keys(include_background: bool = True) -> list[str]:
    return [c.key for c in (CLASSES if include_background else LESION_CLASSES)]


def class_table_json() -> list[dict]:
    """The class table as plain JSON data (stored in model cards and exports)."""
    return [{"id": c.id, "key": c.key, "name": c.name, "colour": list(c.colour)} for c in CLASSES]
