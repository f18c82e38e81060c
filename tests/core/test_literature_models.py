"""The other models of the literature: FocusNet++'s group attention and multi-scale outputs, RSANet's slice-wise
attention (SA / RSA blocks, as a network over slices and as aa_unet's bottleneck), RADnet's DenseNet-40 +
bidirectional LSTM + auxiliary heads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctseg_core.labels import NUM_CLASSES
from ctseg_core.models import create_model
from ctseg_core.models.focusnet import GroupAttentionBlock
from ctseg_core.models.radnet import DenseLayer
from ctseg_core.models.slice_attention import (DIRECTION_DIMS, RecurrentSliceAttention, SliceAttention,
                                               slice_attention)
from tiny_models import tiny_config


def _reference_sa(q, k, v, dim):
    """SA written out slice by slice: response_i = sum_j softmax_j(<q_i, k_j>) v_j."""
    n = q.shape[dim]
    qs = [q.select(dim, i).reshape(q.shape[0], -1) for i in range(n)]
    ks = [k.select(dim, j).reshape(k.shape[0], -1) for j in range(n)]
    scores = torch.stack([torch.stack([(qs[i] * ks[j]).sum(1) for j in range(n)], 1) for i in range(n)], 1)
    att = torch.softmax(scores, dim=-1)
    out = [sum(att[:, i, j, None] * v.select(dim, j).reshape(v.shape[0], -1) for j in range(n))
           for i in range(n)]
    return torch.stack([o.reshape(v.select(dim, 0).shape) for o in out], dim)


@pytest.mark.parametrize("direction", list(DIRECTION_DIMS))
def test_slice_attention_is_a_softmax_weighted_sum_over_the_slices_of_one_direction(direction):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 4, 5, 6) * 0.3 for _ in range(3))
    dim = DIRECTION_DIMS[direction]
    assert torch.allclose(slice_attention(q, k, v, dim), _reference_sa(q, k, v, dim), atol=1e-5)


def test_sa_and_rsa_blocks_start_as_the_identity_and_share_one_sa_block():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3, 5, 6)
    sa, rsa = SliceAttention(4, "axial"), RecurrentSliceAttention(4)
    assert torch.equal(sa(x), x) and torch.equal(rsa(x), x)  # the learned factors start at 0
    assert rsa.directions == ("coronal", "sagittal", "axial")
    assert sum(isinstance(m, nn.Conv3d) for m in rsa.modules()) == 3  # one query, key and value for all passes
    with torch.no_grad():
        rsa.betas.fill_(1.0)
        sa.beta.fill_(1.0)
        sa.sa.load_state_dict(rsa.sa.state_dict())
        expected = x
        for d in rsa.directions:  # each pass adds its response to the output of the previous one
            expected = expected + rsa.sa(expected, d)
        assert torch.allclose(rsa(x), expected, atol=1e-5)
        assert torch.allclose(sa(x), x + rsa.sa(x, "axial"), atol=1e-6)


def test_rsa_on_one_slice_runs_in_plane_only():
    torch.manual_seed(0)
    rsa = RecurrentSliceAttention(4)
    with torch.no_grad():
        rsa.betas.copy_(torch.tensor([0.0, 0.0, 5.0]))  # only the axial pass open
        x = torch.randn(2, 4, 5, 6)
        assert torch.equal(rsa(x), x)  # nothing to attend to along z
        rsa.betas.copy_(torch.tensor([1.0, 0.0, 0.0]))
        assert rsa(x).shape == x.shape and not torch.allclose(rsa(x), x)


def test_aa_unet_takes_the_rsa_block_on_its_bottleneck():
    torch.manual_seed(0)
    plain = create_model("aa_unet", **tiny_config("aa_unet")).eval()
    torch.manual_seed(0)
    with_rsa = create_model("aa_unet", bottleneck_attention="rsa", **tiny_config("aa_unet")).eval()
    assert plain.bottleneck is None and isinstance(with_rsa.bottleneck, RecurrentSliceAttention)
    assert with_rsa.ctseg_model["config"]["bottleneck_attention"] == "rsa"
    with_rsa.load_state_dict({**with_rsa.state_dict(), **plain.state_dict()})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(plain(x), with_rsa(x))  # at initialisation the block is the identity
        with_rsa.bottleneck.betas.fill_(1.0)
        assert not torch.allclose(plain(x), with_rsa(x))
    with pytest.raises(ValueError, match="bottleneck_attention"):
        create_model("aa_unet", bottleneck_attention="nonlocal", **tiny_config("aa_unet"))


def test_rsanet_slices_meet_only_in_the_rsa_block():
    torch.manual_seed(0)
    model = create_model("rsanet", **tiny_config("rsanet")).eval()
    x = torch.randn(1, 4, 32, 32)
    changed = x.clone()
    changed[0, 3] += 3.0  # another last slice
    with torch.no_grad():
        same = model(x)[:, :, 0], model(changed)[:, :, 0]
        assert torch.allclose(*same, atol=1e-6)  # RSA closed: slice 0 does not see slice 3
        model.rsa.betas.fill_(1.0)
        assert not torch.allclose(model(x)[:, :, 0], model(changed)[:, :, 0], atol=1e-4)


def test_focusnet_group_attention_and_multiscale_outputs():
    torch.manual_seed(0)
    block = GroupAttentionBlock(16, 24, cardinality=4).eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        maps = block.group_attention(x)
        assert len(maps) == 2 and all(m.shape == (2, 4, 8, 8) for m in maps)  # one per pair of groups
        assert all(float(m.min()) >= 0 and float(m.max()) <= 1 for m in maps)
        assert block(x).shape == (2, 24, 8, 8)
    with pytest.raises(ValueError, match="cardinality"):
        GroupAttentionBlock(18, 24, cardinality=4)
    model = create_model("focusnetpp", **tiny_config("focusnetpp")).eval()
    with torch.no_grad():
        outs = model.intermediate_outputs(torch.randn(1, 3, 32, 48))
        assert [o.shape for o in outs] == [(1, NUM_CLASSES, 32, 48)] * 4  # every scale, upsampled to full size
        assert all(float(o.min()) >= 0 and float(o.max()) <= 1 for o in outs)  # sigmoid outputs
    default = create_model("focusnetpp")
    assert sum(isinstance(m, GroupAttentionBlock) for m in default.modules()) == 12 + 4  # encoder + decoder


def test_radnet_is_a_densenet40_with_auxiliary_heads_and_a_bidirectional_lstm():
    model = create_model("radnet")
    convs3 = [m for m in model.modules() if isinstance(m, DenseLayer)]
    assert len(convs3) == 36  # three dense blocks of 12 layers: DenseNet-40 with the stem, 2 transitions, classifier
    assert model.lstm.bidirectional and model.lstm.num_layers == 1
    assert len(model.aux_heads) == 3
    torch.manual_seed(0)
    tiny = create_model("radnet", **tiny_config("radnet")).train()
    out = tiny(torch.randn(1, 6, 3, 32, 32))
    assert out["slice_logits"].shape == (1, 6) and [a.shape for a in out["aux"]] == [(1, 6, 32, 32)] * 3
    tiny.eval()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        logits = tiny(x)
        assert torch.allclose(logits, tiny.sequence_logits(tiny.slice_features(x)[None])[0], atol=1e-6)
        later = x.clone()
        later[5] += 2.0
        assert not torch.isclose(tiny(later)[0], logits[0])  # the first slice sees the last one (bidirectional)


def test_radnet_he_initialisation():
    model = create_model("radnet")
    conv = model.blocks[1].layers[3][2]
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_in) ** 0.5, rel=0.15)
