"""Growth between two scans of one patient: rigid registration, then per-class and per-lesion change.

Registration (``register_rigid``): SimpleITK, a rigid (Euler 3-D) transform that maps follow-up points
onto the prior, Mattes mutual information restricted to the skull (bone above ``SKULL_HU``, which leaves
the scanner's head rest out, grown by ``SKULL_MASK_MM``), images clamped to soft tissue..bone, two
resolution levels (the finer at about ``WORK_MM`` in-plane), started from the skulls' centres of mass. The skull does not change between scans
while the bleed and the brain around it may, so it is what the scans are aligned by.

Comparison (``compare_scans``): each scan's volumes are measured on its own grid (no resampling error);
the prior's lesions are carried onto the follow-up grid (nearest neighbour) to pair lesions: a follow-up
lesion takes the prior lesion of its class it overlaps most, else the nearest one within ``MATCH_MM``;
unpaired follow-up lesions are new, unpaired prior lesions resolved. Hematoma expansion (ICH): growth of
more than ``ICH_GROWTH_ML`` mL or more than ``ICH_GROWTH_FRACTION`` of the prior volume, the usual
definition in the ICH literature (e.g. Dowlatshahi et al., Stroke 2011), flagged per scan and per
lesion: a measurement, not advice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from ctseg_core.errors import CtsegError
from ctseg_core.labels import LESION_CLASSES
from ctseg_core.measure.lesions import LesionList, list_lesions
from ctseg_core.volume import Geometry, LabelMap, Volume, to_sitk

SKULL_HU = 700.0
SKULL_MASK_MM = 4.0
CLAMP_HU = (-100.0, 2000.0)
MATCH_MM = 15.0
ICH_ID = 1
ICH_GROWTH_ML = 6.0
ICH_GROWTH_FRACTION = 0.33
WORK_MM = 1.7  # in-plane pixel of the finest registration level
SAMPLING = 0.5  # share of the skull-mask voxels the metric samples per level
STABLE_FRACTION = 0.1  # changes within +-10 % (and 0.5 mL) are called stable


@dataclass
class RigidRegistration:
    """Maps follow-up (fixed) LPS points onto the prior (moving): p_prior = R (p - c) + c + t."""

    matrix: tuple[float, ...]  # 3x3 rotation, row-major
    translation: tuple[float, float, float]  # mm
    centre: tuple[float, float, float]  # mm (LPS)
    metric: float  # final Mattes mutual information (more negative is better)
    iterations: int

    @property
    def rotation(self) -> np.ndarray:
        return np.asarray(self.matrix, float).reshape(3, 3)

    @property
    def angle_deg(self) -> float:
        """Total rotation angle."""
        return float(np.rad2deg(np.arccos(np.clip((np.trace(self.rotation) - 1) / 2, -1.0, 1.0))))

    def to_prior(self, points_lps) -> np.ndarray:
        p = np.atleast_2d(np.asarray(points_lps, float))
        c = np.asarray(self.centre)
        return (p - c) @ self.rotation.T + c + np.asarray(self.translation)

    def to_sitk(self):
        import SimpleITK as sitk

        t = sitk.Euler3DTransform()
        t.SetCenter(self.centre)
        t.SetMatrix(self.matrix)
        t.SetTranslation(self.translation)
        return t


@dataclass
class ClassChange:
    key: str
    name: str
    prior_ml: float
    follow_up_ml: float
    change_ml: float
    change_pct: float | None  # None when the prior volume is 0
    expansion: bool = False  # ICH only: the expansion criterion is met


@dataclass
class LesionChange:
    key: str
    status: str  # "new", "resolved", "grown", "shrunk", "stable"
    follow_up: int | None  # lesion number in the follow-up's list
    prior: int | None  # lesion number in the prior's list
    prior_ml: float
    follow_up_ml: float
    change_ml: float
    change_pct: float | None
    expansion: bool = False  # ICH only
    location: str = ""


@dataclass
class Growth:
    registration: RigidRegistration
    classes: list[ClassChange]
    lesions: list[LesionChange]
    prior_lesions: LesionList = field(repr=False)
    follow_up_lesions: LesionList = field(repr=False)
    interval: str = ""  # e.g. "prior 2024-03-01, follow-up 2024-03-02" when known

    @property
    def ich_expansion(self) -> bool:
        return any(c.expansion for c in self.classes)

    @property
    def new_lesions(self) -> list[LesionChange]:
        return [les for les in self.lesions if les.status == "new"]

    def to_dict(self) -> dict:
        reg = asdict(self.registration)
        reg["angle_deg"] = round(self.registration.angle_deg, 3)
        return {"registration": reg, "criterion": f"ICH expansion: growth > {ICH_GROWTH_ML:g} mL or > "
                f"{100 * ICH_GROWTH_FRACTION:.0f} %", "ich_expansion": self.ich_expansion,
                "classes": [asdict(c) for c in self.classes], "lesions": [asdict(c) for c in self.lesions],
                "interval": self.interval}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def register_rigid(follow_up: Volume, prior: Volume) -> RigidRegistration:
    """The rigid transform that maps the follow-up onto the prior, by mutual information on the skull."""
    import SimpleITK as sitk

    fixed, moving = _skull_image(follow_up), _skull_image(prior)
    fixed_mask, moving_mask = _skull_mask(follow_up), _skull_mask(prior)
    moving_bone = sitk.Cast(moving_mask, sitk.sitkFloat32)
    fixed_bone = sitk.Cast(fixed_mask, sitk.sitkFloat32)
    if sitk.GetArrayViewFromImage(fixed_bone).max() == 0 or sitk.GetArrayViewFromImage(moving_bone).max() == 0:
        raise CtsegError("no skull found in one of the scans: cannot align them (bone above "
                         f"{SKULL_HU:g} HU is needed)")
    initial = sitk.CenteredTransformInitializer(fixed_bone, moving_bone, sitk.Euler3DTransform(),
                                                sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricFixedMask(_in_plane_shrink(fixed_mask, follow_up))
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(SAMPLING, seed=7)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=200,
                                                 relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2, 1])  # on images already brought to about WORK_MM in-plane
    reg.SetSmoothingSigmasPerLevel([2.0, 1.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(initial, inPlace=False)
    result = reg.Execute(_in_plane_shrink(fixed, follow_up), _in_plane_shrink(moving, prior))
    if isinstance(result, sitk.CompositeTransform):  # the optimised transform comes back wrapped
        result = result.GetBackTransform()
    euler = sitk.Euler3DTransform(result)
    return RigidRegistration(tuple(euler.GetMatrix()), tuple(euler.GetTranslation()), tuple(euler.GetCenter()),
                             float(reg.GetMetricValue()), int(reg.GetOptimizerIteration()))


def _in_plane_shrink(image, volume: Volume):
    """The image at about WORK_MM in-plane (slices kept): the finest level the registration uses."""
    import SimpleITK as sitk

    f = max(1, int(round(WORK_MM / min(volume.geometry.spacing[1:]))))
    return image if f == 1 else sitk.Shrink(image, [f, f, 1])


def _skull_image(volume: Volume):
    import SimpleITK as sitk

    arr = np.clip(volume.array, *CLAMP_HU).astype(np.float32)
    return sitk.Cast(to_sitk(arr, volume.geometry), sitk.sitkFloat32)


def _skull_mask(volume: Volume):
    """Bone above SKULL_HU (largest 3-D component: the skull, not the head rest), grown by SKULL_MASK_MM."""
    from scipy import ndimage

    bone = volume.array > SKULL_HU
    lab, n = ndimage.label(bone)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        bone = lab == int(np.argmax(sizes))
    reach = max(1, int(round(SKULL_MASK_MM / min(volume.geometry.spacing[1:]))))
    bone = ndimage.binary_dilation(bone, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool),
                                   iterations=reach)
    return to_sitk(bone.astype(np.uint8), volume.geometry)


def resample_to(geometry: Geometry, prior: Volume | LabelMap, registration: RigidRegistration,
                labels: bool = False, array: np.ndarray | None = None) -> np.ndarray:
    """The prior's voxels (or ``array`` on the prior's grid) on the follow-up ``geometry``: nearest neighbour
    for labels, linear for HU (outside the prior: 0 / -1024)."""
    import SimpleITK as sitk

    src = prior.array if array is None else array
    img = to_sitk(src, prior.geometry)
    ref = to_sitk(np.zeros(geometry.shape, np.uint8), geometry)
    out = sitk.Resample(img, ref, registration.to_sitk(), sitk.sitkNearestNeighbor if labels else sitk.sitkLinear,
                        0 if labels else -1024.0, img.GetPixelID())
    return sitk.GetArrayFromImage(out)


def compare_scans(prior: Volume, prior_labels: LabelMap, follow_up: Volume, follow_up_labels: LabelMap,
                  registration: RigidRegistration | None = None, prior_lesions: LesionList | None = None,
                  follow_up_lesions: LesionList | None = None) -> Growth:
    """Per-class and per-lesion change from ``prior`` to ``follow_up`` (registered here unless given)."""
    prior_labels.check_matches(prior)
    follow_up_labels.check_matches(follow_up)
    registration = registration or register_rigid(follow_up, prior)
    prior_lesions = prior_lesions or list_lesions(prior, prior_labels)
    follow_up_lesions = follow_up_lesions or list_lesions(follow_up, follow_up_labels)
    classes = _class_changes(prior_labels, follow_up_labels)
    prior_ids = resample_to(follow_up.geometry, prior, registration, labels=True, array=prior_lesions.id_map)
    lesions = _lesion_changes(prior_lesions, follow_up_lesions, prior_ids, registration)
    return Growth(registration, classes, lesions, prior_lesions, follow_up_lesions)


def expansion(prior_ml: float, follow_up_ml: float) -> bool:
    """The hematoma expansion criterion: growth > ICH_GROWTH_ML or > ICH_GROWTH_FRACTION of the prior."""
    growth = follow_up_ml - prior_ml
    return growth > ICH_GROWTH_ML or (prior_ml > 0 and growth > ICH_GROWTH_FRACTION * prior_ml)


def _pct(prior_ml: float, follow_up_ml: float) -> float | None:
    return None if prior_ml <= 0 else round(100.0 * (follow_up_ml - prior_ml) / prior_ml, 1)


def _class_changes(prior_labels: LabelMap, follow_up_labels: LabelMap) -> list[ClassChange]:
    from ctseg_core.metrics import class_volumes_ml

    before, after = class_volumes_ml(prior_labels), class_volumes_ml(follow_up_labels)
    out = []
    for cls in LESION_CLASSES:
        a, b = float(before[cls.id]), float(after[cls.id])
        out.append(ClassChange(cls.key, cls.name, round(a, 3), round(b, 3), round(b - a, 3), _pct(a, b),
                               expansion=cls.id == ICH_ID and a > 0 and expansion(a, b)))
    return out


def _lesion_changes(prior: LesionList, follow_up: LesionList, prior_ids_on_follow_up: np.ndarray,
                    registration: RigidRegistration) -> list[LesionChange]:
    by_number = {les.number: les for les in prior.lesions}
    taken: set[int] = set()
    out = []
    for les in follow_up.lesions:
        under = prior_ids_on_follow_up[follow_up.id_map == les.number]
        counts = np.bincount(under[under > 0], minlength=1)
        match = None
        for number in np.argsort(-counts):
            if counts[number] == 0:
                break
            cand = by_number.get(int(number))
            if cand is not None and cand.class_id == les.class_id and int(number) not in taken:
                match = cand
                break
        if match is None:
            match = _nearest(les, prior, taken, registration)
        if match is not None:
            taken.add(match.number)
        out.append(_change(les.key, match, les))
    for les in prior.lesions:
        if les.number not in taken:
            out.append(_change(les.key, les, None))
    return out


def _nearest(les, prior: LesionList, taken: set[int], registration: RigidRegistration):
    centre = registration.to_prior(les.centre_lps)[0]
    best, best_d = None, MATCH_MM
    for cand in prior.of_class(les.class_id):
        d = float(np.linalg.norm(np.asarray(cand.centre_lps) - centre))
        if cand.number not in taken and d <= best_d:
            best, best_d = cand, d
    return best


def _change(key: str, before, after) -> LesionChange:
    a = 0.0 if before is None else before.volume_ml
    b = 0.0 if after is None else after.volume_ml
    if before is None:
        status = "new"
    elif after is None:
        status = "resolved"
    elif abs(b - a) <= max(0.5, STABLE_FRACTION * a):
        status = "stable"
    else:
        status = "grown" if b > a else "shrunk"
    where = (after or before)
    return LesionChange(key, status, None if after is None else after.number, None if before is None else before.number,
                        round(a, 3), round(b, 3), round(b - a, 3), _pct(a, b),
                        expansion=key == "ich" and before is not None and after is not None and expansion(a, b),
                        location=" ".join(x for x in (where.side, where.location) if x))
