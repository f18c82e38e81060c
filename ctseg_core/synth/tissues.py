"""Tissue codes of the generator's tissue map (anatomy under the lesions) and their CT numbers."""

from __future__ import annotations

import numpy as np

AIR, SOFT, FAT, CORTICAL, DIPLOE, SINUS_AIR, CSF, VENTRICLE, GREY, WHITE, DEEP_GREY, DURA, CALCIFICATION, \
    EYE, ORBIT_FAT, TABLE, EXTRA_AXIAL, BRAINSTEM, MUSCLE, FOAM, MIXED, VENOUS_SINUS, SKULL_BASE, \
    SCALP_HAEMATOMA, POSTOP_AIR, METAL, WM_HYPODENSITY, CATHETER = range(28)

NAMES = {AIR: "air", SOFT: "skin/scalp", FAT: "fat", CORTICAL: "cortical bone", DIPLOE: "diploe", SINUS_AIR: "sinus air",
         CSF: "CSF (sulci, fissures, cisterns)", VENTRICLE: "ventricular CSF", GREY: "grey matter", WHITE: "white matter",
         DEEP_GREY: "deep grey matter", DURA: "falx/tentorium", CALCIFICATION: "physiological calcification",
         EYE: "globe", ORBIT_FAT: "orbital fat", TABLE: "table/headrest", EXTRA_AXIAL: "epidural/subdural space",
         BRAINSTEM: "brainstem", MUSCLE: "muscle", FOAM: "head-rest foam",
         MIXED: "partial volume: the slice's planes hold different tissues", VENOUS_SINUS: "dural venous sinus",
         SKULL_BASE: "skull-base bone (petrous, sphenoid, clivus, orbital roofs)",
         SCALP_HAEMATOMA: "scalp haematoma or swelling (outside the skull)",
         POSTOP_AIR: "postoperative air outside the dura (scalp, bone flap kerf, burr holes)",
         METAL: "metal or radio-opaque device (aneurysm clip, shunt catheter, plates and screws)",
         WM_HYPODENSITY: "periventricular white-matter hypodensity (small-vessel disease)",
         CATHETER: "radio-opaque plastic device (shunt catheter and valve)"}

BONE = (CORTICAL, DIPLOE, SKULL_BASE)
CSF_SPACES = (CSF,)
INTRACRANIAL = (CSF, VENTRICLE, GREY, WHITE, DEEP_GREY, DURA, CALCIFICATION, EXTRA_AXIAL, BRAINSTEM, VENOUS_SINUS,
                WM_HYPODENSITY)
NEVER_LABELLED = (CALCIFICATION, DURA, VENOUS_SINUS, SKULL_BASE, SCALP_HAEMATOMA, POSTOP_AIR, METAL, CATHETER, CORTICAL, DIPLOE,
                  SOFT, FAT, MUSCLE, SINUS_AIR, AIR, TABLE, FOAM, EYE, ORBIT_FAT)
N_TISSUES = 28

# Structure bits: which tissues any plane of a slice held (``SynthCase.structures``): small structures that
# thick slices turn into MIXED voxels in the tissue map stay findable (hard negatives for a crop sampler).
STRUCTURES = {
    "vault_bone": (CORTICAL, DIPLOE),
    "intracranial": INTRACRANIAL,
    "ventricles_csf": (VENTRICLE, CSF),
    "falx_tentorium_sinus": (DURA, VENOUS_SINUS),
    "skull_base": (SKULL_BASE,),
    "calcification": (CALCIFICATION,),
    "scalp_soft_tissue": (SOFT, FAT, MUSCLE, SCALP_HAEMATOMA),
    "scalp_haematoma": (SCALP_HAEMATOMA,),
    "postop_air": (POSTOP_AIR,),
    "metal_devices": (METAL, CATHETER),
    "metal": (METAL,),  # what streaks
    "white_matter_hypodensity": (WM_HYPODENSITY,),
}
STRUCTURE_BIT = {name: 1 << i for i, name in enumerate(STRUCTURES)}
STRUCTURE_LUT = np.zeros(N_TISSUES, np.uint16)  # tissue code -> its structure bits
for _name, _codes in STRUCTURES.items():
    STRUCTURE_LUT[list(_codes)] |= np.uint16(STRUCTURE_BIT[_name])


def hu_table(rng: np.random.Generator, spread: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed mean HU and texture amplitude (HU per unit texture) of every tissue.

    ``spread`` (0..1) widens each range towards what real scanners show (different kVp, calibration,
    beam-hardening correction), and adds a calibration offset of up to 4 HU to every soft tissue; 0 gives the
    narrow legacy ranges. Blood never comes from here (lesions keep their class's range)."""
    s = float(np.clip(spread, 0.0, 1.0))

    def u(lo, hi, lo_w=None, hi_w=None):  # the range, widened by ``spread`` towards (lo_w, hi_w)
        lo_w = lo if lo_w is None else lo_w
        hi_w = hi if hi_w is None else hi_w
        return rng.uniform(lo + s * (lo_w - lo), hi + s * (hi_w - hi))

    hu = np.zeros(N_TISSUES, np.float32)
    amp = np.zeros(N_TISSUES, np.float32)
    grey = u(37.0, 42.0, 33.0, 45.0)
    white = min(u(23.5, 27.5, 21.0, 31.0), grey - 5.0)
    values = {
        AIR: (-1000, 0), SOFT: (u(35, 50, 30, 60), 6), FAT: (u(-110, -80, -120, -60), 8),
        CORTICAL: (u(1450, 1700, 1150, 1900), 60), DIPLOE: (u(750, 950, 500, 1000), 150),
        SINUS_AIR: (-990, 5), CSF: (u(5, 11, 0, 15), 1.0), VENTRICLE: (u(5, 10, 0, 14), 0.5),
        GREY: (grey, 1.2), WHITE: (white, 1.0), DEEP_GREY: (grey - rng.uniform(4, 7), 1.0),
        DURA: (u(50, 65, 45, 85), 3), CALCIFICATION: (u(250, 700, 120, 900), 80), EYE: (u(12, 22, 5, 25), 1),
        ORBIT_FAT: (u(-100, -70, -110, -60), 8), TABLE: (u(250, 600, 150, 800), 20), EXTRA_AXIAL: (8, 1),
        BRAINSTEM: (white + rng.uniform(3, 6), 1.0), VENOUS_SINUS: (u(42, 58, 38, 72), 2),
        MUSCLE: (u(38, 48, 35, 60), 4), FOAM: (u(-930, -850, -960, -700), 15),
        SKULL_BASE: (u(1100, 1400, 800, 1700), 180), SCALP_HAEMATOMA: (u(45, 75, 20, 80), 4),
        POSTOP_AIR: (-990, 5), METAL: (3071, 0), WM_HYPODENSITY: (white - rng.uniform(4, 9), 1.0),
        CATHETER: (u(250, 700, 150, 900), 20),
    }
    for k, (h, a) in values.items():
        hu[k], amp[k] = h, a
    off = s * rng.uniform(-4, 4)  # calibration: water is not exactly 0 on every scanner (drawn always: same stream)
    if s > 0:
        soft = np.array([SOFT, CSF, VENTRICLE, GREY, WHITE, DEEP_GREY, DURA, EYE, EXTRA_AXIAL, BRAINSTEM, VENOUS_SINUS,
                         MUSCLE, SCALP_HAEMATOMA, WM_HYPODENSITY])
        hu[soft] += off
    return hu, amp
