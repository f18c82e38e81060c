"""Tissue codes of the generator's tissue map (anatomy under the lesions) and their CT numbers."""

from __future__ import annotations

import numpy as np

AIR, SOFT, FAT, CORTICAL, DIPLOE, SINUS_AIR, CSF, VENTRICLE, GREY, WHITE, DEEP_GREY, DURA, CALCIFICATION, \
    EYE, ORBIT_FAT, TABLE, EXTRA_AXIAL, BRAINSTEM, MUSCLE, FOAM, MIXED, VENOUS_SINUS = range(22)

NAMES = {AIR: "air", SOFT: "skin/scalp", FAT: "fat", CORTICAL: "cortical bone", DIPLOE: "diploe", SINUS_AIR: "sinus air",
         CSF: "CSF (sulci, fissures, cisterns)", VENTRICLE: "ventricular CSF", GREY: "grey matter", WHITE: "white matter",
         DEEP_GREY: "deep grey matter", DURA: "falx/tentorium", CALCIFICATION: "physiological calcification",
         EYE: "globe", ORBIT_FAT: "orbital fat", TABLE: "table/headrest", EXTRA_AXIAL: "epidural/subdural space",
         BRAINSTEM: "brainstem", MUSCLE: "muscle", FOAM: "head-rest foam",
         MIXED: "partial volume: the slice's planes hold different tissues", VENOUS_SINUS: "dural venous sinus"}

BONE = (CORTICAL, DIPLOE)
CSF_SPACES = (CSF,)
INTRACRANIAL = (CSF, VENTRICLE, GREY, WHITE, DEEP_GREY, DURA, CALCIFICATION, EXTRA_AXIAL, BRAINSTEM, VENOUS_SINUS)
N_TISSUES = 22


def hu_table(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed mean HU and texture amplitude (HU per unit texture) of every tissue."""
    hu = np.zeros(N_TISSUES, np.float32)
    amp = np.zeros(N_TISSUES, np.float32)
    grey = rng.uniform(37.0, 42.0)
    white = rng.uniform(23.5, 27.5)
    values = {
        AIR: (-1000, 0), SOFT: (rng.uniform(35, 50), 6), FAT: (rng.uniform(-110, -80), 8),
        CORTICAL: (rng.uniform(1450, 1700), 60), DIPLOE: (rng.uniform(750, 950), 150),
        SINUS_AIR: (-990, 5), CSF: (rng.uniform(5, 11), 1.0), VENTRICLE: (rng.uniform(5, 10), 0.5),
        GREY: (grey, 1.2), WHITE: (white, 1.0), DEEP_GREY: (grey - rng.uniform(4, 7), 1.0),
        DURA: (rng.uniform(50, 65), 3), CALCIFICATION: (rng.uniform(250, 700), 80), EYE: (rng.uniform(12, 22), 1),
        ORBIT_FAT: (rng.uniform(-100, -70), 8), TABLE: (rng.uniform(250, 600), 20), EXTRA_AXIAL: (8, 1),
        BRAINSTEM: (white + rng.uniform(3, 6), 1.0), VENOUS_SINUS: (rng.uniform(42, 58), 2), MUSCLE: (rng.uniform(38, 48), 4), FOAM: (rng.uniform(-930, -850), 15),
    }
    for k, (h, a) in values.items():
        hu[k], amp[k] = h, a
    return hu, amp
