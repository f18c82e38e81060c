"""Checkpoints: bit-exact round trip for every model; every refusal names the file and the problem."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from ctseg_core.checkpoint import ModelCard, load_checkpoint, read_card, save_checkpoint
from ctseg_core.errors import CheckpointError
from ctseg_core.labels import class_table_json
from ctseg_core.models import create_model, list_models
from tiny_models import SMALL_DECODER, tiny_config, tiny_input


def tiny(name="aa_unet"):
    torch.manual_seed(0)
    model = create_model(name, **tiny_config(name)).eval()
    card = ModelCard.for_model(model, training_data={"description": "synthetic head CT", "source": "synthetic",
                                                     "generator_version": "1", "seeds": [1, 2], "n_cases": 2},
                               version="3", parent_version="2", guard={"min_piece_confidence": 0.9, "chosen": "a test"})
    return model, card


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, card = tiny()
    path = save_checkpoint(model, card, tmp_path_factory.mktemp("ck") / "model")
    return model, card, path


@pytest.mark.parametrize("name", list_models())
def test_round_trip_is_bit_exact(name, tmp_path):
    model, card = tiny(name)
    path = save_checkpoint(model, card, tmp_path / name)
    assert path.name == f"{name}.safetensors" and (tmp_path / f"{name}.json").is_file()
    loaded, loaded_card = load_checkpoint(path, expected_architecture=name)
    x = tiny_input(name)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded_card == card and loaded_card.architecture == name


def test_card_carries_everything(saved):
    _, card, path = saved
    back = read_card(path)
    assert back.classes == class_table_json()
    assert back.config["decoder_channels"] == list(SMALL_DECODER) and back.config["encoder"] == "resnest14d"
    assert back.plan["adjacent_slices"] == 3 and "intensity" in back.plan
    assert len(back.weights_sha256) == 64 and back.created.endswith("+00:00")
    assert back.summary() == "aa_unet v3 (retrained from v2) — trained on synthetic head CT (2 cases)"
    assert read_card(path.with_suffix(".json")) == back  # either file names the checkpoint
    assert back.guard == {"min_piece_confidence": 0.9, "chosen": "a test"}


def test_fp16_weights_load_back_close(tmp_path):
    model, card = tiny()
    path = save_checkpoint(model, card, tmp_path / "half", fp16=True)
    full = save_checkpoint(model, ModelCard.for_model(model), tmp_path / "full")
    assert path.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_checkpoint(path)
    assert all(v.dtype != torch.float16 for v in loaded.state_dict().values())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=5e-2)


def test_refuses_wrong_architecture(saved):
    _, _, path = saved
    with pytest.raises(CheckpointError, match="not the expected 'rsu'") as err:
        load_checkpoint(path, expected_architecture="rsu")
    assert str(path.with_suffix(".json")) in str(err.value)


def test_refuses_tampered_weights(saved, tmp_path):
    _, _, path = saved
    copy = tmp_path / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # one bit of one weight
    copy.write_bytes(bytes(data))
    (tmp_path / "model.json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(CheckpointError, match="sha256") as err:
        load_checkpoint(copy)
    assert str(copy) in str(err.value)


def test_refuses_other_class_table(saved, tmp_path):
    _, _, path = saved
    copy = tmp_path / "model.safetensors"
    copy.write_bytes(path.read_bytes())
    card = json.loads(path.with_suffix(".json").read_text())
    card["classes"][2], card["classes"][3] = card["classes"][3], card["classes"][2]
    (tmp_path / "model.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="class table differs"):
        load_checkpoint(copy)


def test_refuses_unknown_architecture_and_mismatched_shapes(saved, tmp_path):
    _, _, path = saved
    copy = tmp_path / "model.safetensors"
    copy.write_bytes(path.read_bytes())
    card = json.loads(path.with_suffix(".json").read_text())
    (tmp_path / "model.json").write_text(json.dumps({**card, "architecture": "segformer9000"}))
    with pytest.raises(CheckpointError, match="unknown architecture 'segformer9000'"):
        load_checkpoint(copy)
    card["config"]["decoder_channels"] = [8, 8, 16, 16, 32, 64]
    (tmp_path / "model.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="has shape") as err:
        load_checkpoint(copy)
    assert str(copy) in str(err.value)


class _Boom:
    """Unpickling this would create a marker file: proves nothing is ever unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_refuses_pickled_files_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    payload = pickle.dumps({"state_dict": _Boom(marker)})
    pt = tmp_path / "model.pt"
    pt.write_bytes(payload)
    with pytest.raises(CheckpointError, match="pickled files are never loaded"):
        load_checkpoint(pt)
    # the same pickle named as safetensors, with a card whose sha matches: still refused, never unpickled
    model, card = tiny()
    save_checkpoint(model, card, tmp_path / "fake")
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(payload)
    import hashlib

    card_json = json.loads((tmp_path / "fake.json").read_text())
    card_json["weights_sha256"] = hashlib.sha256(payload).hexdigest()
    (tmp_path / "fake.json").write_text(json.dumps(card_json))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(fake)
    assert not marker.exists()


def test_refuses_missing_or_broken_card(saved, tmp_path):
    _, _, path = saved
    copy = tmp_path / "model.safetensors"
    copy.write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match="model card not found"):
        load_checkpoint(copy)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(copy)
    (tmp_path / "model.json").write_text(json.dumps({"format": "ctseg-model-card/1", "architecture": "aa_unet"}))
    with pytest.raises(CheckpointError, match="lacks field"):
        load_checkpoint(copy)
    with pytest.raises(CheckpointError, match="weights file not found"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_refuses_plan_that_does_not_fit_the_inputs(saved, tmp_path):
    _, _, path = saved
    copy = tmp_path / "model.safetensors"
    copy.write_bytes(path.read_bytes())
    card = json.loads(path.with_suffix(".json").read_text())
    card["plan"]["adjacent_slices"] = 5
    (tmp_path / "model.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="5 adjacent slices but the model takes 3"):
        load_checkpoint(copy)


GUARD_RANGES = {"min_piece_confidence": ("a number from 0 to below 1", ["0.9", 1.5, -0.1, 1, True], 0.9),
                "min_type_share": ("0 .off. or a number from 0.5 to 1", ["0.8", 0.3, 1.2, -1, True], 0.8)}


@pytest.mark.parametrize("name, bad", [(n, b) for n, (_, bads, _) in GUARD_RANGES.items() for b in bads])
def test_refuses_guard_settings_out_of_their_range(saved, tmp_path, name, bad):
    _, _, path = saved
    copy = tmp_path / "model.safetensors"
    copy.write_bytes(path.read_bytes())
    card = json.loads(path.with_suffix(".json").read_text())
    card["guard"][name] = bad
    (tmp_path / "model.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=f"guard.{name} must be {GUARD_RANGES[name][0]}") as err:
        load_checkpoint(copy)
    assert "model.json" in str(err.value)  # the file is named
    card["guard"][name] = GUARD_RANGES[name][2]
    (tmp_path / "model.json").write_text(json.dumps(card))
    assert load_checkpoint(copy)[1].guard[name] == GUARD_RANGES[name][2]


def test_save_replaces_an_existing_checkpoint_atomically(tmp_path):
    model, card = tiny()
    path = save_checkpoint(model, card, tmp_path / "m")
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_checkpoint(model, ModelCard.for_model(model, version="4"), tmp_path / "m")
    loaded, back = load_checkpoint(path)
    assert back.version == "4"
    assert torch.equal(next(loaded.parameters()), next(model.parameters()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
