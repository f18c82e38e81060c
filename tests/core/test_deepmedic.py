"""DeepMedic / BLAST-CT: the layer arithmetic, the state-dict names of the published weights, the volume
models' forward/backward, and tiling: tiles on ctseg's lattice give BLAST-CT's own 30^3-patch result."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from ctseg_core.models import create_model, list_models
from ctseg_core.models.deepmedic import DeepMedic
from ctseg_core.volume_strategy import Tile, _edge_padded_block, axis_chunks
from tiny_models import tiny_config, tiny_input


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights, BatchNorm statistics and PReLU slopes, so every layer matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=g))
                else:
                    t.copy_(0.3 * torch.randn(t.shape, generator=g))
    return model.eval()


def test_layer_arithmetic_matches_blast_ct():
    net = create_model("deepmedic")
    assert net.output_size((110, 110, 110)) == (30, 30, 30)  # BLAST-CT's training and test patches
    assert net.input_size((30, 30, 30)) == (110, 110, 110)
    assert net.output_size((140, 125, 95)) == (60, 45, 15)
    assert net.alignment() == 15
    with pytest.raises(ValueError, match="does not fit DeepMedic"):
        net.output_size((103, 110, 110))  # would waste input: BLAST-CT refuses it too


def test_state_dict_names_are_the_published_ones():
    state = create_model("deepmedic").state_dict()
    assert len(state) == 189
    assert sum(v.numel() for v in state.values()) == 1032986  # the BLAST-CT README's count for one member
    assert list(state)[:7] == [f"path(5, 5, 5)0.path.1.{n}" for n in (
        "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked", "conv.weight",
        "prelu.weight")]
    assert state["path(1, 1, 1)2.path.8.conv.weight"].shape == (50, 50, 3, 3, 3)
    assert state["fully_connected.0.conv.weight"].shape == (250, 150, 1, 1, 1)
    assert state["fully_connected.2.conv.weight"].shape == (5, 250, 1, 1, 1)
    ensemble = create_model("blast_ct").state_dict()
    assert len(ensemble) == 12 * 189 and "members.11.fully_connected.2.conv.weight" in ensemble


@pytest.mark.parametrize("name", list_models("volume"))
def test_volume_models_forward_and_backward(name):
    torch.manual_seed(0)
    model = create_model(name, **tiny_config(name)).train()
    x = tiny_input(name)
    out = model(x)
    assert out.shape == (1, 5, 15, 15, 15)
    target = torch.randint(0, 5, (1, 15, 15, 15))
    nn.functional.cross_entropy(out, target).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_ensemble_is_the_mean_of_the_members_softmax():
    model = randomised(create_model("blast_ct", **tiny_config("blast_ct")))
    x = tiny_input("blast_ct")
    with torch.no_grad():
        mean = sum(torch.softmax(m(x), 1) for m in model.members) / 2
        assert torch.allclose(torch.softmax(model(x), 1), mean, atol=1e-6)


def test_axis_chunks_start_on_the_lattice_and_cover_the_range():
    assert axis_chunks(17, 200, 60, 15) == [(15, 75), (75, 135), (135, 195), (195, 210)]
    assert axis_chunks(0, 30, 60, 15) == [(0, 30)]
    for lo, hi in [(3, 4), (44, 91), (0, 301)]:
        chunks = axis_chunks(lo, hi, 45, 15)
        assert chunks[0][0] <= lo and chunks[-1][1] >= hi and all(a % 15 == 0 for a, _ in chunks)
        assert all(b == c for (_, b), (c, _) in zip(chunks, chunks[1:]))


def blast_ct_patches(net: DeepMedic, x: np.ndarray) -> np.ndarray:
    """BLAST-CT's own tiling (FullImageToOverlappingPatchesNiftiDataset + reconstruct_image): 30^3 outputs
    centred at 30 i + 15, 110^3 inputs cut around the same centres with edge padding."""
    out = np.zeros((5, *[-(-n // 30) * 30 for n in x.shape]), np.float32)
    for centre in itertools.product(*[[30 * i + 15 for i in range(n // 30 + 1)] for n in x.shape]):
        block = _edge_padded_block(x, [c - 55 for c in centre], (110, 110, 110))
        with torch.no_grad():
            p = torch.softmax(net(torch.from_numpy(block)[None, None]), 1)[0].numpy()
        region = tuple(slice(c - 15, c + 15) for c in centre)
        if all(r.stop <= n for r, n in zip(region, out.shape[1:])):
            out[(slice(None),) + region] = p
    return out[(slice(None),) + tuple(slice(0, n) for n in x.shape)]


def test_larger_tiles_on_the_lattice_reproduce_blast_cts_patches():
    """Tiles of 45 and 60 voxels starting at multiples of 15 (what VolumeStrategy runs) give exactly the
    probabilities of BLAST-CT's 30^3 patches, including at the volume's edges."""
    net = randomised(create_model("deepmedic", feature_maps=(4,) * 8, fully_connected=(8, 8)))
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (47, 52, 61)).astype(np.float32)
    reference = blast_ct_patches(net, x)
    for tile_edge in (45, 60):
        chunks = [axis_chunks(0, n, tile_edge, 15) for n in x.shape]
        ours = np.zeros_like(reference)
        for c0, c1, c2 in itertools.product(*chunks):
            tile = Tile((c0[0], c1[0], c2[0]), (c0[1], c1[1], c2[1]))
            size_in = net.input_size(tile.size)
            margin = [(i - o) // 2 for i, o in zip(size_in, tile.size)]
            block = _edge_padded_block(x, [lo - m for lo, m in zip(tile.lo, margin)], size_in)
            with torch.no_grad():
                p = torch.softmax(net(torch.from_numpy(block)[None, None]), 1)[0].numpy()
            keep = tuple(slice(lo, min(hi, n)) for lo, hi, n in zip(tile.lo, tile.hi, x.shape))
            ours[(slice(None),) + keep] = p[(slice(None),) + tuple(slice(0, k.stop - k.start) for k in keep)]
        assert np.abs(ours - reference).max() < 1e-5
