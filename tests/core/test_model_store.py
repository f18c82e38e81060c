"""Model version registry: versions, active pointer, promote/rollback, refusal of other architectures."""

from __future__ import annotations

import json

import pytest
import torch

from ctseg_core.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from ctseg_core.errors import CheckpointError, StoreError, WriteError
from ctseg_core.model_store import ACTIVE_FILE, ROOT_VERSION, ModelStore
from ctseg_core.models import create_model

SMALL = dict(encoder="resnet18d", decoder_channels=(8, 8, 8, 8, 8, 8))


def tiny(arch="aa_unet", seed=0):
    torch.manual_seed(seed)
    return create_model(arch, **SMALL)


@pytest.fixture()
def root_model(tmp_path):
    model = tiny()
    return save_checkpoint(model, ModelCard.for_model(model), tmp_path / "bundled" / "root.safetensors")


def first_weight(path):
    model, _ = load_checkpoint(path)
    return next(iter(model.state_dict().values())).clone()


def test_root_is_active_until_a_version_is_used(tmp_path, root_model):
    store = ModelStore(tmp_path / "models", root_model)
    assert [v.version for v in store.versions()] == [ROOT_VERSION]
    assert store.active_version() == ROOT_VERSION
    assert store.active_path() == root_model
    assert store.architecture() == "aa_unet"


def test_add_use_and_roll_back(tmp_path, root_model):
    store = ModelStore(tmp_path / "models", root_model)
    v1 = store.add(tiny(seed=1), ModelCard.for_model(tiny(), parent_version=ROOT_VERSION))
    v2 = store.add(tiny(seed=2), ModelCard.for_model(tiny(), parent_version="v1"))
    assert (v1.version, v2.version) == ("v1", "v2")
    assert [v.version for v in store.versions()] == [ROOT_VERSION, "v1", "v2"]
    assert store.get("v2").parent == "v1" and store.get("v2").card.version == "v2"
    assert store.active_version() == ROOT_VERSION  # adding does not promote

    store.use("v2")
    assert store.active_path() == v2.path
    assert json.loads((tmp_path / "models" / ACTIVE_FILE).read_text())["version"] == "v2"
    assert torch.equal(first_weight(store.active_path()), first_weight(v2.path))
    assert not torch.equal(first_weight(v1.path), first_weight(v2.path))

    store.use(ROOT_VERSION)  # roll back to the bundled model
    assert store.active_path() == root_model
    store.use("v1")
    assert ModelStore(tmp_path / "models", root_model).active_version() == "v1"  # persisted
    assert store.next_version() == "v3"


def test_active_pointer_is_replaced_atomically(tmp_path, root_model, monkeypatch):
    store = ModelStore(tmp_path / "models", root_model)
    store.add(tiny(seed=1), ModelCard.for_model(tiny()))
    store.use("v1")
    pointer = tmp_path / "models" / ACTIVE_FILE
    before = pointer.read_bytes()

    import ctseg_core.atomic as atomic

    def crash(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(WriteError, match="disk full"):  # the OSError, named with its file (a CtsegError)
        store.use(ROOT_VERSION)
    assert pointer.read_bytes() == before  # the old pointer survives a failed write
    assert [p.name for p in pointer.parent.iterdir() if p.name.startswith(".")] == []  # no temp files left
    assert store.active_version() == "v1"


def test_unknown_version_and_broken_pointer(tmp_path, root_model):
    store = ModelStore(tmp_path / "models", root_model)
    with pytest.raises(StoreError, match="no model version 'v7'"):
        store.use("v7")
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / ACTIVE_FILE).write_text("{not json")
    with pytest.raises(StoreError, match="active model pointer is unreadable"):
        store.active_version()


def test_refuses_another_architecture(tmp_path, root_model):
    store = ModelStore(tmp_path / "models", root_model)
    other = tiny("rsu")
    with pytest.raises(CheckpointError, match="'rsu' model cannot be added"):
        store.add(other, ModelCard.for_model(other))
    # a foreign checkpoint dropped into the folder by hand is refused when made active
    save_checkpoint(other, ModelCard.for_model(other), tmp_path / "models" / "v1.safetensors")
    with pytest.raises(CheckpointError, match="architecture 'rsu' is not the expected 'aa_unet'"):
        store.use("v1")
    assert store.active_version() == ROOT_VERSION


def test_refuses_a_corrupted_version(tmp_path, root_model):
    store = ModelStore(tmp_path / "models", root_model)
    entry = store.add(tiny(seed=1), ModelCard.for_model(tiny()))
    data = bytearray(entry.path.read_bytes())
    data[-1] ^= 0xFF
    entry.path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        store.use(entry.version)


def test_no_model_at_all_is_a_clear_error(tmp_path):
    store = ModelStore(tmp_path / "models", tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="no model"):
        store.active_path()


def test_a_workspace_version_is_never_named_like_the_released_model(tmp_path, root_model):
    """The bundled card says version "1"; a workspace's first retrain is "v1": their names must differ."""
    from ctseg_core.checkpoint import read_card
    from ctseg_core.model_identity import ModelIdentity

    store = ModelStore(tmp_path / "models", root_model)
    root = read_card(root_model)
    assert root.version == "1" and root.summary().startswith("aa_unet v1 — ")
    v1 = store.add(tiny(seed=1), ModelCard.for_model(tiny(), parent_version=ROOT_VERSION))
    assert v1.card.summary().startswith("aa_unet v1 (retrained from default) — ")
    a, b = ModelIdentity.of(root), ModelIdentity.of(v1.card)
    assert a.label == "aa_unet v1" and b.label == "aa_unet v1 (retrained from default)"
    assert not a.same_model(b) and a.same_model(ModelIdentity.of(read_card(root_model)))
    assert ModelIdentity.from_json(b.to_json()) == b


def _scored(parent, before, after, cases=("a", "b")):
    card = ModelCard.for_model(tiny(), parent_version=parent)
    card.metrics = {"validation": {"cases": list(cases), "mean_before": before, "mean_after": after}}
    card.extra = {"promoted": after >= before}
    return card


def test_activation_warns_about_a_worse_version(tmp_path, root_model):
    store = ModelStore(tmp_path / "models", root_model)
    store.add(tiny(seed=1), _scored(ROOT_VERSION, 0.30, 0.50))  # v1 beat default
    store.add(tiny(seed=2), _scored("v1", 0.50, 0.40))  # v2 lost to v1: kept, not promoted
    store.add(tiny(seed=3), _scored("v1", 0.50, 0.55))  # v3 beat v1
    store.use("v3")
    assert "lower than its parent v1's 0.500" in store.activation_warning("v2")
    assert store.activation_warning("v3") is None  # already active
    store.use("v1")
    assert store.activation_warning("v3") is None  # better than the active one
    assert "beat it" in store.activation_warning(ROOT_VERSION)  # rolling back to what v1 beat
    imported = _scored(ROOT_VERSION, 0.30, 0.45)  # no promotion record (e.g. copied in by hand)
    imported.extra = {}
    store.add(tiny(seed=4), imported)
    assert store.activation_warning("v4") is None  # never measured on the current validation set: not compared
    from ctseg_core import version_scores

    for version, mean in (("v1", 0.50), ("v4", 0.45)):  # both measured on the current set (a run or --rescore)
        version_scores.record(store.dir, "set-b", ["a", "b"], 2, version, {"dice": {}, "mean": mean})
    assert "the active v1 0.500 on the same cases" in store.activation_warning("v4")
    version_scores.record(store.dir, "set-c", ["c"], 3, "v4", {"dice": {}, "mean": 0.45})  # the set changed
    assert store.activation_warning("v4") is None  # v1 has no score on the new set: the scores cannot be compared


def test_the_same_weights_with_other_post_processing_are_not_the_same_model(root_model):
    from ctseg_core.checkpoint import read_card
    from ctseg_core.model_identity import ModelIdentity

    card = read_card(root_model)
    plain, guarded = ModelIdentity.of(card), ModelIdentity.of(card, postprocess="Guard(margin_mm=3.0)")
    assert plain.same_model(ModelIdentity.of(card)) and not plain.same_model(guarded)
    assert ModelIdentity.from_json(guarded.to_json()) == guarded
