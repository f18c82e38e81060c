"""Every registered model: forward shape, backward, ablation flags; the blocks; registry and FLOPs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctseg_core.errors import CheckpointError
from ctseg_core.labels import NUM_CLASSES
from ctseg_core.losses import RadnetLoss
from ctseg_core.models import count_flops, create_model, default_config, list_models, model_info, model_kind
from ctseg_core.models.blocks import AttentionGate, SqueezeExcite
from ctseg_core.models.slice_attention import RecurrentSliceAttention
from tiny_models import SMALL_DECODER, tiny_config, tiny_input

PAPER_MODELS = {"aa_unet", "rsu", "rsu_s", "rsu_c", "resnet50_unet", "focusnetpp", "rsanet", "radnet"}  # issue 16
BLAST_CT_MODELS = {"deepmedic", "blast_ct"}  # issue 12


def test_registry_holds_the_paper_models():
    assert set(list_models()) == PAPER_MODELS | BLAST_CT_MODELS
    assert default_config("aa_unet")["encoder"] == "resnest50d"
    assert default_config("aa_unet")["num_classes"] == NUM_CLASSES == 8
    assert list_models("slab") == ["rsanet"] and list_models("scan") == ["radnet"]
    assert set(list_models("slice")) == PAPER_MODELS - {"rsanet", "radnet"}


def test_every_model_is_a_slice_slab_scan_or_volume_model():
    assert set(list_models()) == {n for kind in ("slice", "slab", "scan", "volume") for n in list_models(kind)}
    assert set(list_models("volume")) == BLAST_CT_MODELS


@pytest.mark.parametrize("name", list_models("slice"))
def test_slice_models_map_each_stack_to_its_logits(name):
    torch.manual_seed(0)
    model = create_model(name, **tiny_config(name)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, NUM_CLASSES, 64, 64)
        assert model(torch.randn(1, 3, 32, 96)).shape == (1, NUM_CLASSES, 32, 96)
    with pytest.raises(ValueError, match="multiples of"):
        model(torch.randn(1, 3, 40, 64))


def test_slab_and_scan_models_take_runs_of_slices():
    torch.manual_seed(0)
    rsanet = create_model("rsanet", **tiny_config("rsanet")).eval()
    radnet = create_model("radnet", **tiny_config("radnet")).eval()
    with torch.no_grad():
        assert rsanet(torch.randn(2, 4, 64, 32)).shape == (2, NUM_CLASSES, 4, 64, 32)
        assert rsanet(torch.randn(1, 1, 32, 32)).shape == (1, NUM_CLASSES, 1, 32, 32)  # any number of slices
        assert radnet(torch.randn(2, 5, 3, 64, 32)).shape == (2, 5)
        assert radnet(torch.randn(7, 3, 32, 32)).shape == (7,)  # one scan
    for model, bad in ((rsanet, torch.randn(1, 4, 40, 32)), (radnet, torch.randn(5, 3, 40, 32)),
                       (rsanet, torch.randn(1, 1, 4, 32, 32))):
        with pytest.raises(ValueError):
            model(bad)


def _training_loss(name: str, model, x: torch.Tensor) -> torch.Tensor:
    """A loss of the model's kind on random targets (slab logits (N, C, K, H, W) take (N, K, H, W) targets)."""
    out = model(x)
    if model_kind(name) == "scan":
        target = {"slice": torch.randint(0, 2, out["slice_logits"].shape).float(),
                  "mask": torch.randint(0, 2, out["aux"][0].shape).float()}
        return RadnetLoss()(out, target)
    return nn.functional.cross_entropy(out, torch.randint(0, NUM_CLASSES, (out.shape[0],) + tuple(out.shape[2:])))


@pytest.mark.parametrize("name", [n for n in list_models() if model_kind(n) != "volume"])  # volume: test_deepmedic
def test_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, **tiny_config(name)).train()
    for m in model.modules():  # RSA starts as the identity (factors 0); open it so its projections learn too
        if isinstance(m, RecurrentSliceAttention):
            nn.init.constant_(m.betas, 0.5)
    _training_loss(name, model, tiny_input(name, batch=2)).backward()
    params = dict(model.named_parameters())
    assert all(p.grad is not None for p in params.values())
    # timm zero-initialises each residual branch's last BatchNorm (bn3), so at initialisation gradients
    # reach the branch's inner layers only through bn3's weight; everything else must get a gradient
    zero = [n for n, p in params.items() if not p.grad.abs().sum()
            and not (n.startswith("encoder.layer") and not n.endswith(("bn3.weight", "bn2.weight")))]
    assert zero == []
    if "encoder" in default_config(name):
        assert any(n.startswith("encoder.layer4") and params[n].grad.abs().sum() for n in params)


@pytest.mark.parametrize("name, gates, se", [("aa_unet", True, True), ("rsu", False, False),
                                             ("rsu_s", True, False), ("rsu_c", False, True),
                                             ("resnet50_unet", False, False)])
def test_ablations_switch_blocks_by_flags(name, gates, se):
    model = create_model(name, **tiny_config(name))
    n_gates = sum(isinstance(m, AttentionGate) for m in model.modules())
    n_se = sum(isinstance(m, SqueezeExcite) for m in model.modules())
    assert n_gates == (5 if gates else 0)
    assert n_se == (5 if se else 0)


def test_aa_unet_default_is_resnest50_with_full_resolution_stem():
    model = create_model("aa_unet").eval()
    assert type(model.encoder).__name__ == "FeatureListNet"
    assert model.encoder.feature_info.channels() == [64, 256, 512, 1024, 2048]
    assert any("ResNestBottleneck" in type(m).__name__ for m in model.encoder.modules())
    stem_convs = [m for m in model.stem if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in stem_convs] == [(3, 3), (3, 3)] and stem_convs[0].in_channels == 3
    assert all(s[0].kernel_size == (1, 1) for s in model.skips)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, NUM_CLASSES, 64, 64)


def test_attention_gate_map_is_a_probability_at_x_resolution():
    torch.manual_seed(0)
    gate = AttentionGate(8, 16).eval()
    x, g = torch.randn(2, 8, 32, 32), torch.randn(2, 16, 16, 16)
    with torch.no_grad():
        alpha = gate.attention(x, g)
    assert alpha.shape == (2, 1, 32, 32)
    assert float(alpha.min()) >= 0 and float(alpha.max()) <= 1 and float(alpha.std()) > 0
    with torch.no_grad():
        assert torch.allclose(gate(x, g), x * alpha)


def test_squeeze_excite_rescales_whole_channels():
    se = SqueezeExcite(8)
    nn.init.zeros_(se.fc2.weight)
    with torch.no_grad():
        se.fc2.bias.copy_(torch.tensor([-50.0, 50.0] * 4))
    x = torch.rand(1, 8, 4, 4)
    with torch.no_grad():
        y = se(x)
    assert torch.allclose(y[:, 1::2], x[:, 1::2]) and float(y[:, 0::2].abs().max()) < 1e-12


def test_create_model_rejects_unknown_names_and_keys():
    with pytest.raises(CheckpointError, match="unknown model architecture"):
        create_model("no_such_net")
    with pytest.raises(CheckpointError, match="no configuration key"):
        create_model("aa_unet", widthh=3)


def test_flop_count_of_a_known_layer():
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    assert count_flops(conv, (1, 3, 8, 8)) == 2 * 3 * 4 * 9 * 8 * 8
    info = model_info("aa_unet", input_shape=(1, 3, 64, 64), **tiny_config("aa_unet"))
    assert info.parameters > 1e6 and info.flops > 1e8


def test_encoder_weights_from_local_safetensors(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    classifier = timm.create_model("resnet18d", pretrained=False)
    path = tmp_path / "resnet18d_imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, str(path))
    model = create_model("rsu", encoder="resnet18d", decoder_channels=SMALL_DECODER, encoder_weights=str(path))
    assert torch.equal(model.encoder.state_dict()["conv1.0.weight"], classifier.state_dict()["conv1.0.weight"])
    other = tmp_path / "other.safetensors"
    save_file({"conv1.0.weight": torch.zeros(1)}, str(other))
    with pytest.raises(CheckpointError, match="lack"):
        create_model("rsu", encoder="resnet18d", decoder_channels=SMALL_DECODER, encoder_weights=str(other))


def test_models_cli_lists_every_model_as_json(capsys):
    import json

    from ctseg_core.cli import main
    from ctseg_core.cli.models import ACTIONS

    assert "list" in ACTIONS
    assert main(["models", "--json", "--no-flops"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == list_models() and len(listed) == 10
    by_name = {m["name"]: m for m in listed}
    assert all(by_name[n]["parameters"] > 1e7 for n in ("aa_unet", "rsu", "rsu_s", "rsu_c", "resnet50_unet"))
    assert {by_name[n]["kind"] for n in ("rsanet", "radnet", "focusnetpp")} == {"slab", "scan", "slice"}
    assert "1.0M" in by_name["radnet"]["paper"] and by_name["rsanet"]["paper"]
    # RADnet's DenseNet-40 (growth 12): the 1.0M parameters of Huang et al. plus the stem, LSTM and heads
    dense = create_model("radnet")
    densenet = sum(p.numel() for n, p in dense.named_parameters() if n.startswith(("blocks", "transitions")))
    assert 0.9e6 < densenet < 1.1e6
    assert by_name["deepmedic"]["parameters"] == 1030033  # + 2953 BatchNorm statistics = the README's 1,032,986
    assert by_name["blast_ct"]["parameters"] == 12 * 1030033
    assert by_name["blast_ct"]["flops_input_shape"] == [1, 1, 110, 110, 110]
    assert by_name["blast_ct"]["flops_per_slice"] is None
    assert main(["models", "frobnicate"]) == 2


def test_models_cli_table_shows_flops_per_slice_and_the_papers(capsys):
    from ctseg_core.cli import main

    assert main(["models", "--no-flops"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["model", "kind", "params", "(M)", "GFLOPs", "at", "input",
                                           "GFLOPs/slice", "description"]
    assert "What the papers report:" in out and "radnet: its DenseNet-40" in out


def test_flops_per_slice_divides_a_slab_by_its_slices():
    info = model_info("rsanet", input_shape=(1, 4, 32, 32), **tiny_config("rsanet"))
    assert info.kind == "slab" and info.slices == 4 and info.flops_per_slice == info.flops / 4
