"""Training on generated cases (how the bundled model is made): a tiny run end to end."""

import json

import numpy as np

from ctseg_core.checkpoint import load_checkpoint
from ctseg_core.training.synthetic import VAL_SEED0, SyntheticConfig, train_synthetic


def test_synthetic_training_writes_an_honest_checkpoint(tmp_path):
    events = []
    cfg = SyntheticConfig(out=tmp_path / "m", steps=3, pool_size=2, refresh_every=1, n_val=1, encoder="resnet18d",
                          model_config={"decoder_channels": (8, 8, 8, 8, 8, 8)}, spacing_mm=2.0, batch_size=2,
                          snapshot_every=2, shape_yx=(128, 128), command="ctseg pretrain --test")
    path = train_synthetic(cfg, emit=events.append)
    kinds = [e["event"] for e in events]
    assert kinds.count("snapshot") == 1 and kinds[-1] == "validate" and "trained" in kinds
    model, card = load_checkpoint(path, expected_architecture="aa_unet")
    td = card.training_data
    assert td["source"] == "synthetic" and "no real patient data" in td["description"]
    assert "Not for clinical use" in td["note"]
    # pool of 2 plus one new case per step after the first: seeds 0..3, all below the validation range
    assert td["seeds"] == [0, 3] and td["n_cases"] == 4 and td["seeds"][1] < VAL_SEED0
    assert card.extra["command"] == "ctseg pretrain --test" and card.extra["steps"] == 3
    assert card.plan_obj.spacing_mm == 2.0
    assert set(card.metrics["validation_synthetic"]["dice"]) <= {"ich", "sdh", "sah", "edh", "csdh",
                                                                  "pneumocephalus", "ivh"}
    json.loads(path.with_suffix(".json").read_text())
    weights = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    assert all(np.isfinite(v.numpy()).all() for v in weights.values())
