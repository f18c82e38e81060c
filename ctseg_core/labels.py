"""The one class table: background plus the seven hemorrhage classes, and two review labels.

Every other module (generator, models, metrics, GUI overlay, DICOM SEG, findings) reads it from here.

- ``CLASSES`` (ids 0-7): what ctseg's own models output and are trained on.
- ``REVIEW_CLASSES`` (ids 8, 9): results of a model whose classes are not ctseg's. ``extra_axial`` is
  blood whose type (SDH, EDH or SAH) the model does not tell (BLAST-CT's EAH); the reviewer assigns each
  component to one of ``assign_to``. ``oedema`` is perilesional oedema: shown on request, never counted
  as blood (``hemorrhage=False``). No model is trained on these labels.
- ``LABEL_CLASSES``: every value a label map may hold (both tables).
A model whose classes differ lists its own in its card, each with ``maps_to`` (a key here):
``output_label_values`` turns that into the label value of each output channel.
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
    hemorrhage: bool = True  # counted as blood (False: background and non-hemorrhage review labels)
    assign_to: tuple[str, ...] = ()  # a provisional result: the reviewer assigns it to one of these keys


BACKGROUND = LabelClass(0, "background", "Background", (0, 0, 0), None, "everything that is not hemorrhage",
                        hemorrhage=False)

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
               "small air pockets under the frontal convexity", hemorrhage=False),
    LabelClass(7, "ivh", "Intraventricular hemorrhage (IVH)", (240, 50, 230), (40, 80),
               "hyperdense blood in the ventricles, layering in dependent horns"),
)

NUM_CLASSES = len(CLASSES)  # including background
LESION_CLASSES = CLASSES[1:]
CLASS_BY_KEY = {c.key: c for c in CLASSES}

EXTRA_AXIAL = LabelClass(8, "extra_axial", "Extra-axial hemorrhage, type not assigned", (150, 90, 255), (40, 90),
                         "drawn by a model that does not tell SDH, EDH and SAH apart (BLAST-CT's EAH); "
                         "assign each component to SDH, EDH or SAH", assign_to=("sdh", "edh", "sah"))
OEDEMA = LabelClass(9, "oedema", "Perilesional oedema (not hemorrhage)", (150, 150, 60), (5, 30),
                    "hypodense brain around a contusion or hematoma, drawn by BLAST-CT; never counted as blood",
                    hemorrhage=False)
REVIEW_CLASSES: tuple[LabelClass, ...] = (EXTRA_AXIAL, OEDEMA)
LABEL_CLASSES: tuple[LabelClass, ...] = CLASSES + REVIEW_CLASSES  # every value a label map may hold
NUM_LABEL_VALUES = len(LABEL_CLASSES)
LABEL_BY_KEY = {c.key: c for c in LABEL_CLASSES}


def class_names(include_background: bool = True) -> list[str]:
    return [c.name for c in (CLASSES if include_background else LESION_CLASSES)]


def class_keys(include_background: bool = True) -> list[str]:
    return [c.key for c in (CLASSES if include_background else LESION_CLASSES)]


def class_table_json() -> list[dict]:
    """The class table as plain JSON data (stored in model cards and exports)."""
    return [{"id": c.id, "key": c.key, "name": c.name, "colour": list(c.colour)} for c in CLASSES]


def label_table_json() -> list[dict]:
    """Every label value a map may hold (``LABEL_CLASSES``) as plain JSON data (stored beside label maps)."""
    return [{"id": c.id, "key": c.key, "name": c.name, "colour": list(c.colour), "hemorrhage": c.hemorrhage}
            for c in LABEL_CLASSES]


def output_label_values(classes: list[dict]) -> list[int]:
    """The label value of each output channel of a model whose card lists ``classes``.

    A table without ``maps_to`` must be ctseg's own (channel i is label i). A table with ``maps_to`` lists
    the model's own classes in channel order (ids 0, 1, ...), each naming a key of ``LABEL_CLASSES``;
    channel 0 must map to background. Raises ``ValueError`` describing the first problem."""
    if not any("maps_to" in c for c in classes):
        ours = [(c["id"], c["key"], c["name"]) for c in class_table_json()]
        theirs = [(c.get("id"), c.get("key"), c.get("name")) for c in classes]
        if theirs != ours:
            diff = next((f"class {t} vs ours {o}" for t, o in zip(theirs, ours) if t != o),
                        f"{len(theirs)} classes vs our {len(ours)}")
            raise ValueError(f"class table differs from ctseg's ({diff})")
        return [c.id for c in CLASSES]
    values = []
    for i, c in enumerate(classes):
        if c.get("id") != i:
            raise ValueError(f"class ids must run 0, 1, 2, ... in channel order; entry {i} has id {c.get('id')!r}")
        target = LABEL_BY_KEY.get(c.get("maps_to"))
        if target is None:
            raise ValueError(f"class {c.get('key')!r} maps to {c.get('maps_to')!r}, which is not a ctseg label "
                             f"(known: {', '.join(LABEL_BY_KEY)})")
        values.append(target.id)
    if not values or values[0] != BACKGROUND.id:
        raise ValueError("output channel 0 must map to background")
    return values
