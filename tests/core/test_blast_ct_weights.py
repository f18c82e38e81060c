"""The bundled BLAST-CT checkpoint against BLAST-CT's original v1 files (../shared/peers/blast-ct-v1): every
converted member gives bit-identical outputs to the original state dict on the same volume; the card
names its source, licence and the originals' checksums; the licence and NOTICE are beside it.

The original files are legacy torch pickles: read here (and in scripts/convert_blast_ct.py) only, after
checking their published SHA-256, with torch.load(weights_only=True), which builds tensors and plain
containers only. Without the original files these tests are skipped (the bundled checkpoint itself is
tested wherever it is used)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ctseg_core.checkpoint import load_checkpoint, read_card
from ctseg_core.labels import output_label_values
from ctseg_core.models import create_model
from ctseg_core.resources import BLAST_CT_MODEL
from ctseg_core.volume_plan import VolumePlan

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(os.environ.get("CTSEG_PEERS", ROOT.parent / "shared" / "peers")) / "blast-ct-v1"

pytestmark = pytest.mark.skipif(not (PEERS / "weights").is_dir(),
                                reason=f"BLAST-CT's original weights are not at {PEERS} (set CTSEG_PEERS)")


def published_sums() -> dict[str, str]:
    lines = (PEERS / "SHA256SUMS.txt").read_text().split("\n")
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def original_state(i: int) -> dict:
    """Member ``i`` (1-based) as published, after its checksum is checked."""
    path = PEERS / "weights" / f"model_{i}.pt"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == published_sums()[f"weights/model_{i}.pt"]
    return torch.load(path, map_location="cpu", weights_only=True)


def head_block(n: int = 95, seed: int = 0) -> np.ndarray:
    """A 1-mm block at the edge of a head: brain, skull, scalp, air, a crescent of extra-axial blood, an
    intraparenchymal hematoma with a hypodense rim (enough for several classes to appear)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((n, n, n)) - n // 2
    r = np.sqrt(z ** 2 + y ** 2 + (x + 60) ** 2)
    hu = np.select([r < 86, r < 92, r < 99, r < 104], [32.0, np.where(y > 0, 65.0, 32.0), 1200.0, 40.0], -1000.0)
    d = np.sqrt(z ** 2 + (y + 15) ** 2 + (x + 10) ** 2)
    hu = np.where(d < 12, 75.0, np.where(d < 16, 18.0, hu))
    return (hu + rng.normal(0, 4, hu.shape)).astype(np.float32)


def test_converted_members_reproduce_the_originals_bit_for_bit():
    ensemble, card = load_checkpoint(BLAST_CT_MODEL)
    x = torch.from_numpy(VolumePlan.from_dict(card.plan).map_intensity(head_block()))[None, None]
    classes_seen = set()
    for i, member in enumerate(ensemble.members, start=1):
        original = create_model("deepmedic").eval()
        original.load_state_dict(original_state(i), strict=True)
        with torch.inference_mode():
            expected, ours = original(x), member(x)
        assert expected.shape == (1, 5, 15, 15, 15)
        assert torch.equal(ours, expected), f"member {i} differs from model_{i}.pt"
        classes_seen |= set(expected.argmax(1).unique().tolist())
    assert len(classes_seen) >= 3  # the block is not trivial: background and at least two lesion classes


def test_card_names_the_source_licence_and_originals():
    card = read_card(BLAST_CT_MODEL)
    assert card.architecture == "blast_ct" and card.config["members"] == 12
    assert card.extra["commit"].startswith("361e8c79") and card.extra["license"] == "Apache-2.0"
    assert card.extra["not_trained_by_ctseg"] is True and "not trained by ctseg" in card.summary()
    sums = published_sums()
    assert card.extra["original_sha256"] == {f"model_{i}.pt": sums[f"weights/model_{i}.pt"] for i in range(1, 13)}
    assert output_label_values(card.classes) == [0, 1, 8, 9, 7]  # IPH->ICH, EAH->extra-axial, oedema, IVH
    licence = BLAST_CT_MODEL.with_name("blast_ct_v1.LICENSE.txt")
    assert licence.read_bytes() == (PEERS / "LICENSE.txt").read_bytes()
    notice = BLAST_CT_MODEL.with_name("blast_ct_v1.NOTICE.txt").read_text()
    assert "Apache License 2.0" in notice and "Monteiro" in notice and "361e8c79" in notice
