"""How a synthetic head is scanned: matrix, pixel spacing, slice thickness, pose, reconstruction kernel,
noise and artefacts. ``Acquisition`` holds concrete values; ``sample_acquisition`` draws the training
distribution (SynthSeg's lesson: randomise what the model must ignore, keep the labels exact).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

KERNELS = ("smooth", "standard", "sharp")


@dataclass(frozen=True)
class Acquisition:
    """One scan's acquisition and reconstruction. The default is the legacy ``generate_case`` scan
    (512x512, 0.40-0.50 mm pixels by seed, contiguous 5 mm slices, standard kernel, 3-4 HU noise); its
    point spread and bone glare were matched to the real GE series (profiles across the inner table)."""

    shape_yx: tuple[int, int] = (512, 512)
    pixel_spacing_mm: float | None = None  # None: 0.40-0.50 mm x 512 / size, drawn by seed
    slice_thickness_mm: float = 5.0
    slice_spacing_mm: float | None = None  # None: the thickness (contiguous); smaller: overlapping slices
    n_slices: int | None = None  # None: foramen magnum to vertex; else this many, centred on that range
    z_range_mm: tuple[float, float] | None = None  # render only slices centred in this range (scanner z = head w)
    max_slices: int | None = None  # render only this many adjacent slices, at a random height (by seed)
    head_scale: float | None = None  # None: the head is fitted into the field of view; else the seed's size x this
    # (a small field of view then cuts the head)
    head_offset_mm: tuple[float, float] | None = None  # in-plane shift of the head (x, y); None: by seed
    yaw_deg: float | None = None  # in-plane rotation; None: by seed (-10..10)
    roll_deg: float = 0.0  # head tilted towards a shoulder (left side up for positive)
    pitch_deg: float = 0.0  # chin down positive: the slices cut the head obliquely (orbits beside the posterior fossa)
    gantry_tilt_deg: float = 0.0  # recorded for ``write_case`` (a tilted DICOM series); the volume stays patient-space
    hu_spread: float = 0.0  # 0: the narrow legacy tissue CT numbers; 1: the full ranges real scanners show
    kernel: str = "standard"  # reconstruction kernel family (recorded; the numbers below are what it means)
    psf_sigma_mm: float = 0.5  # in-plane point spread (Gaussian sigma; a standard head kernel such as GE STD+)
    sharpen: float = 0.0  # edge enhancement of sharp kernels: overshoot in bone, undershoot beside it
    halo_weight: float = 0.045  # long tail of the point spread: bone glares into the brain beside the inner table
    halo_sigma_mm: float = 2.0
    noise_hu: float | None = None  # standard deviation of the image noise; None: 3-4 HU by seed
    noise_grain_mm: float | None = None  # width of the noise grain; None: 3 px (2 px at coarse pixels)
    skull_base_noise: float = 1.0  # noise factor low in the head (photon starvation through dense bone)
    beam_hardening: float = 1.0  # strength of the dark bands between dense skull-base bone (0: none)
    motion_mm: float = 0.0  # patient motion: ghosted slices, shifted by up to this
    metal_streaks: float = 1.0  # strength of the streaks from metal (0: none)
    fov_circle: bool = False  # outside the reconstruction circle the image is -1024
    # the slice sensitivity profile: flat over the thickness, plus a share in a long Gaussian tail (real
    # profiles have one; near the vertex it widens the partial volume beside the inner table to several mm)
    ssp_tail: float = 0.0  # share of the profile in the tail (0: a flat profile)
    ssp_tail_sigma: float = 0.6  # the tail's standard deviation along z, in slice thicknesses
    # residual beam hardening ("cupping"): the brain next to the skull reads brighter, fading inward
    skull_shading_hu: float = 0.0  # HU added at the inner table (0: none)
    skull_shading_mm: float = 8.0  # decay length inward (exponential)

    def __post_init__(self):
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        if not 0.3 <= self.slice_thickness_mm <= 10.0:
            raise ValueError(f"slice thickness {self.slice_thickness_mm} mm is outside 0.3-10 mm")
        if self.max_slices is not None and self.max_slices < 1:
            raise ValueError("max_slices must be at least 1")
        if self.z_range_mm is not None and self.z_range_mm[0] > self.z_range_mm[1]:
            raise ValueError(f"z_range_mm {self.z_range_mm} is empty")
        if self.skull_shading_hu < 0 or self.skull_shading_mm <= 0:
            raise ValueError(f"skull shading {self.skull_shading_hu} HU / {self.skull_shading_mm} mm: "
                             "the strength must be >= 0 and the length > 0")

    @property
    def spacing_z_mm(self) -> float:
        return float(self.slice_spacing_mm or self.slice_thickness_mm)

    def as_dict(self) -> dict:
        """JSON-able record (goes into ``SynthCase.params['acquisition']``)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def with_(self, **changes) -> "Acquisition":
        return replace(self, **changes)


def legacy_acquisition(thin: bool = False, shape_yx=(512, 512), pixel_spacing: float | None = None,
                       n_slices: int | None = None, tilt_deg: float = 0.0) -> Acquisition:
    """The scan the keyword arguments of ``generate_case`` have always described."""
    return Acquisition(shape_yx=tuple(int(s) for s in shape_yx), pixel_spacing_mm=pixel_spacing,
                       slice_thickness_mm=1.0 if thin else 5.0, n_slices=n_slices, gantry_tilt_deg=float(tilt_deg))


def sample_thickness(rng: np.random.Generator) -> float:
    """Slice thickness of the training distribution: most mass on 2.5-5 mm, some thin, some 7 mm."""
    kind = rng.choice(4, p=[0.12, 0.08, 0.62, 0.18])
    lo, hi = [(0.6, 1.25), (1.25, 2.5), (2.5, 5.0), (5.0, 7.0)][int(kind)]
    t = rng.uniform(lo, hi)
    if kind == 3 and rng.random() < 0.5:
        t = 7.0  # 7 mm vault slices are common (e.g. the GE series)
    return round(float(t), 2)


def sample_acquisition(rng: np.random.Generator, *, shape_yx=(512, 512), max_slices: int | None = None,
                       z_range_mm: tuple[float, float] | None = None) -> Acquisition:
    """Draw one scan of the training distribution. ``max_slices`` / ``z_range_mm`` render only a slab
    (a training sample needs only a few adjacent slices), so thin-slice cases stay cheap."""
    t = sample_thickness(rng)
    spacing = t if rng.random() < 0.8 else round(float(t * rng.uniform(0.5, 1.0)), 2)
    kernel = str(rng.choice(KERNELS, p=[0.3, 0.5, 0.2]))
    thin_noise = float(np.clip(np.sqrt(4.0 / t), 0.8, 2.5))  # thinner slices, fewer photons per voxel
    if kernel == "smooth":
        psf, sharpen, noise, grain = rng.uniform(0.6, 0.9), 0.0, rng.uniform(2.0, 4.0), rng.uniform(1.4, 2.4)
    elif kernel == "standard":
        psf, sharpen, noise, grain = rng.uniform(0.4, 0.65), 0.0, rng.uniform(3.0, 6.0), rng.uniform(0.9, 1.6)
    else:
        psf, sharpen, noise, grain = rng.uniform(0.25, 0.4), rng.uniform(0.15, 0.5), rng.uniform(6.0, 14.0), \
            rng.uniform(0.45, 0.9)
    yaw = rng.uniform(-25, 25)
    roll = float(np.clip(rng.normal(0, 4), -10, 10))
    pitch = rng.uniform(-10, 22)
    tilt = rng.uniform(5, 25) if rng.random() < 0.3 else 0.0
    return Acquisition(
        shape_yx=tuple(int(s) for s in shape_yx), pixel_spacing_mm=round(float(rng.uniform(0.35, 0.6)) * 512.0
                                                                          / max(shape_yx), 4),
        slice_thickness_mm=t, slice_spacing_mm=spacing, z_range_mm=z_range_mm, max_slices=max_slices,
        head_scale=float(rng.uniform(0.88, 1.1)), head_offset_mm=tuple(float(x) for x in rng.uniform(-22, 22, 2)),
        yaw_deg=float(yaw), roll_deg=roll, pitch_deg=float(pitch), gantry_tilt_deg=float(tilt),
        hu_spread=float(rng.uniform(0.5, 1.0)), kernel=kernel, psf_sigma_mm=float(psf), sharpen=float(sharpen),
        halo_weight=float(rng.uniform(0.02, 0.07)), halo_sigma_mm=float(rng.uniform(1.2, 3.0)),
        noise_hu=float(noise * thin_noise), noise_grain_mm=float(grain), skull_base_noise=float(rng.uniform(1.0, 2.0)),
        beam_hardening=float(rng.uniform(0.0, 2.0)),
        motion_mm=float(rng.uniform(0.5, 4.0)) if rng.random() < 0.15 else 0.0,
        metal_streaks=float(rng.uniform(0.5, 1.5)), fov_circle=bool(rng.random() < 0.5),
        ssp_tail=float(rng.uniform(0.1, 0.45)), ssp_tail_sigma=float(rng.uniform(0.4, 1.0)),
        skull_shading_hu=float(rng.uniform(0.0, 16.0)), skull_shading_mm=float(rng.uniform(4.0, 14.0)))
