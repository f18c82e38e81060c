"""The Predictor with a volume (3-D) model: the same call and result as a slice model; labels on the scan's
own grid through a model whose output is a known function of its input; the viewed slab first; progress
per member; cancel; BLAST-CT's classes mapped onto ctseg's labels; the grid mapping itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ctseg_core.checkpoint import ModelCard
from ctseg_core.errors import Cancelled, CheckpointError
from ctseg_core.jobs import CancelToken
from ctseg_core.labels import EXTRA_AXIAL
from ctseg_core.models.deepmedic import BLAST_CT_CLASS_TABLE
from ctseg_core.prediction import Prediction
from ctseg_core.predictor import Predictor
from ctseg_core.volume import Volume
from ctseg_core.volume_plan import VolumePlan, canonical_axes

BLOOD, BRAIN, AIR = 90.0, 30.0, -1000.0  # the plan maps -15..100 HU to -1..1: 0.5 is 71.25 HU


class ThresholdNet3D(nn.Module):
    """EAH (channel 2) where the normalised input is above 0.5, else background; 5-voxel unpadded margin."""

    margin = 5

    def alignment(self) -> int:
        return 15

    def input_size(self, out):
        return tuple(o + 2 * self.margin for o in out)

    def forward(self, x):
        m = self.margin
        core = x[:, 0, m:-m, m:-m, m:-m]
        logits = torch.full((x.shape[0], 5, *core.shape[1:]), -100.0)
        logits[:, 0] = 0.0
        logits[:, 2] = 50.0 * (core - 0.5)
        return logits


class Ensemble(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.members = nn.ModuleList([ThresholdNet3D() for _ in range(n)])

    def alignment(self) -> int:
        return 15


def predictor(members_in_model=2, **options) -> Predictor:
    card = ModelCard(architecture="threshold3d_test", config={"in_chans": 1, "num_classes": 5},
                     classes=[dict(c) for c in BLAST_CT_CLASS_TABLE], plan=VolumePlan().to_dict())
    return Predictor(Ensemble(members_in_model), card, device="cpu", **{"engine": "torch", **options})


def head(shape, spacing=(1.0, 1.0, 1.0), direction=None, blood=None) -> Volume:
    """An ellipsoid of brain in air, with a box of blood (array index slices)."""
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    arr = np.where(zz ** 2 + yy ** 2 + xx ** 2 < 0.9, BRAIN, AIR).astype(np.float32)
    if blood is not None:
        arr[blood] = BLOOD
    return Volume.from_array(arr, spacing=spacing, origin=(5.0, -3.0, 40.0), direction=direction)


def test_isotropic_scan_gives_exactly_the_models_function_on_every_voxel():
    vol = head((50, 40, 44), blood=(slice(20, 31), slice(12, 22), slice(15, 30)))
    out = predictor(tile=15).predict(vol)
    assert isinstance(out, Prediction)
    assert np.array_equal(out.labels.array, np.where(vol.array > 71.25, EXTRA_AXIAL.id, 0))
    assert out.labels.geometry == vol.geometry
    assert out.probabilities.shape == (50, 5, 40, 44) and out.probabilities.dtype == np.float16
    assert out.channel_labels == (0, 1, EXTRA_AXIAL.id, 9, 7)  # BLAST-CT: IPH->ICH, EAH->extra-axial, IVH->IVH
    assert np.allclose(out.probabilities.astype(np.float32).sum(axis=1), 1.0, atol=2e-3)


def test_anisotropic_reversed_scan_is_labelled_on_its_own_grid():
    """2.5 mm slices stored inferior-last (z direction reversed), 0.8 x 0.7 mm pixels: resampled to 1 mm for
    the model and back; the blood box is found where it is, its inside and its surroundings exact."""
    direction = np.diag([1.0, 1.0, -1.0])
    blood = (slice(6, 14), slice(15, 31), slice(12, 28))
    vol = head((20, 48, 40), spacing=(2.5, 0.8, 0.7), direction=direction, blood=blood)
    out = predictor(tile=30).predict(vol).labels.array
    inside = np.zeros(vol.shape, bool)
    inside[7:13, 17:29, 14:26] = True
    near = np.zeros(vol.shape, bool)
    near[5:15, 13:33, 10:30] = True
    assert np.all(out[inside] == EXTRA_AXIAL.id)
    assert not np.any(out[~near])
    assert abs(int((out == EXTRA_AXIAL.id).sum()) - 8 * 16 * 16) < 0.25 * 8 * 16 * 16


def test_viewed_slab_first_then_outwards_with_progress_per_member():
    vol = head((60, 30, 30))
    seen, messages = [], []
    predictor(tile=15).predict(vol, start_slice=40, on_slice=lambda z, lab, p: seen.append(z),
                               progress=lambda d, n, msg: messages.append((d, n, msg)))
    assert seen[:15] == list(range(30, 45))  # the slab holding slice 40 (1-mm slices: 15 per slab)
    assert seen[15:30] == list(range(45, 60))  # then the nearer neighbour
    assert sorted(set(seen)) == list(range(60))
    first, last = messages[0], messages[-1]
    assert first[2].startswith("member 1/2") and last[2].startswith("member 2/2") and last[0] == last[1]
    assert [d for d, _, _ in messages] == list(range(1, last[1] + 1))


def test_members_option_cancel_and_refusals():
    vol = head((30, 30, 30))
    one = predictor(members=1, tile=15)
    assert one.describe().endswith("(1 of 2 members)")
    token = CancelToken()
    with pytest.raises(Cancelled):
        one.predict(vol, cancel=token, progress=lambda *a: token.cancel())
    with pytest.raises(CheckpointError, match="members must be 1..2"):
        predictor(members=3)
    with pytest.raises(CheckpointError, match="volume model: option.*tta"):
        predictor(tta=True)
    with pytest.raises(ValueError, match="multiple of 15"):
        predictor(tile=20)


def test_no_head_gives_background_everywhere():
    vol = Volume.from_array(np.full((10, 12, 14), AIR, np.float32))
    out = predictor(tile=15).predict(vol)
    assert not out.labels.array.any() and np.all(out.probabilities[:, 0] == 1)


def test_canonical_axes_follow_the_direction():
    assert canonical_axes(np.eye(3)) == ((0, 1, 2), (False, False, False))
    assert canonical_axes(np.diag([-1.0, 1.0, -1.0])) == ((0, 1, 2), (True, False, True))
    sagittal = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], float)  # i -> P, j -> -S, k -> L
    axes, flips = canonical_axes(sagittal)
    assert axes == (1, 2, 0) and flips == (True, False, False)


def test_grid_brings_a_smooth_field_back_to_a_permuted_scan():
    """A sagittal scan (slices along L): the model grid's planes map back onto the scan's slices."""
    sagittal = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], float)
    plan = VolumePlan()
    vol = head((13, 20, 16), spacing=(1.5, 1.0, 1.0), direction=sagittal)
    grid = plan.grid(vol.geometry)
    field = lambda s, p, a: s + 2 * p + 3 * a  # noqa: E731  linear in model-grid (mm) coordinates
    m = np.indices(grid.model_shape).astype(np.float32)
    model_field = field(m[0] * 1.0, m[1] * 1.0, m[2] * 1.0)
    canonical_scan = grid.canonical(np.zeros(vol.shape))  # a view of the scan in canonical axes
    for z in (0, 5, 12):
        lo, hi, w = grid.slice_planes(z)
        a = grid.slice_axis
        plane = np.take(model_field, lo, axis=a) * (1 - w) + np.take(model_field, hi, axis=a) * w
        back = grid.plane_to_scan(plane[None])[0]
        assert back.shape == vol.shape[1:]
        idx = np.indices(canonical_scan.shape).astype(float) * np.asarray(grid.spacing)[:, None, None, None]
        expected_canonical = field(idx[0], idx[1], idx[2])
        expected = np.zeros(vol.shape)
        grid.canonical(expected)[...] = expected_canonical
        assert np.allclose(back, expected[z], atol=1e-4)


def test_onnxruntime_engine_gives_torchs_result_with_full_size_tiles(tmp_path, monkeypatch):
    """A small DeepMedic ensemble with random weights: ONNX Runtime (tiles all 30^3, exported once to the
    cache and reused; the part of a tile past the head's box is dropped) and torch (short tiles at the far
    ends) give the same labels and probabilities."""
    pytest.importorskip("onnxruntime")
    from ctseg_core.models import create_model
    from test_deepmedic import randomised

    monkeypatch.setenv("CTSEG_CACHE", str(tmp_path / "cache"))
    model = randomised(create_model("blast_ct", members=2, feature_maps=(4,) * 8, fully_connected=(8, 8)))
    card = ModelCard.for_model(model)
    rng = np.random.default_rng(0)
    small = head((40, 44, 38), spacing=(1.0, 0.9, 1.1), blood=(slice(15, 25), slice(10, 30), slice(10, 20)))
    arr = np.pad(small.array, ((0, 0), (0, 0), (0, 30)), constant_values=AIR)  # air beyond the head's box
    vol = Volume.from_array(arr + rng.normal(0, 5, arr.shape).astype(np.float32), spacing=(1.0, 0.9, 1.1))
    by_torch = Predictor(model, card, device="cpu", engine="torch", tile=30).predict(vol)
    ort = Predictor(model, card, device="cpu", engine="onnxruntime", tile=30)
    by_ort = ort.predict(vol)
    exported = sorted(p.name for p in (tmp_path / "cache" / "onnx").iterdir())
    assert len(exported) == 2 and all(name.endswith("-110x110x110.onnx") for name in exported)
    assert np.array_equal(by_ort.labels.array, by_torch.labels.array)
    assert by_torch.probabilities[:, 1:].astype(np.float32).std(axis=0).max() > 0.01  # not a constant field
    diff = np.abs(by_ort.probabilities.astype(np.float32) - by_torch.probabilities.astype(np.float32))
    assert diff.max() < 2e-3  # float16 storage of float32 results that agree to ~1e-5
    again = Predictor(model, card, device="cpu", engine="onnxruntime", tile=30)
    assert np.array_equal(again.predict(vol).labels.array, by_ort.labels.array)  # reuses the cached files
    assert sorted(p.name for p in (tmp_path / "cache" / "onnx").iterdir()) == exported
