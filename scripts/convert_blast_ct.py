"""One-off conversion of BLAST-CT's published v1 weights into a ctseg checkpoint (run once; the result is
committed as resources/models/blast_ct_v1.safetensors + .json with the licence and NOTICE beside it).

    python scripts/convert_blast_ct.py [--peers ../shared/peers/blast-ct-v1] [--out resources/models/blast_ct_v1]

The originals are legacy torch state dicts (pickles). They are read here, and only here and in the
conversion test, with ``torch.load(..., weights_only=True)`` (a restricted unpickler that builds tensors
and plain containers only, never arbitrary objects), after their SHA-256 sums were checked against the
published list. ctseg itself only ever reads the safetensors file.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_PEERS = ROOT.parent / "shared" / "peers" / "blast-ct-v1"
DEFAULT_OUT = ROOT / "resources" / "models" / "blast_ct_v1"
COMMIT = "361e8c797fbcb276627a7941b39298bef563113b"
REPOSITORY = "https://github.com/biomedia-mira/blast-ct"
CITATION = ("Monteiro M, Newcombe VFJ, Mathieu F, Adatia K, Kamnitsas K, Ferrante E, Das T, Whitehouse D, "
            "Rueckert D, Menon DK, Glocker B. Multiclass semantic segmentation and quantification of traumatic "
            "brain injury lesions on head CT using deep learning: an algorithm development and multicentre "
            "validation study. Lancet Digit Health 2020;2(6):e314-e322.")
N_MEMBERS = 12

NOTICE = f"""BLAST-CT model weights in ctseg
================================

blast_ct_v1.safetensors holds the 12 networks of the BLAST-CT v1 ensemble
(Brain Lesion Analysis and Segmentation Tool for Computed Tomography), published by the
BioMedIA group, Imperial College London, under the Apache License 2.0 (blast_ct_v1.LICENSE.txt):

  {REPOSITORY}
  commit {COMMIT}
  files blast_ct/data/saved_models/model_1.pt ... model_12.pt

Please cite:
  {CITATION}

Changes made by ctseg (Apache-2.0, section 4(b)): the twelve PyTorch state dicts were read
(torch.load with weights_only=True) and written unchanged in name and shape, one after the other
under the prefixes "members.0." ... "members.11.", into one safetensors file, values unchanged
(float32; each converted network gives bit-identical outputs to the original, which ctseg's tests
check). The weights were not retrained or otherwise altered. The network code that runs them
(ctseg_core/models/deepmedic.py) is ctseg's own, written to match the published architecture.

BLAST-CT is not intended for clinical use, and neither is ctseg.
"""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def published_sums(peers: Path) -> dict[str, str]:
    sums = {}
    for line in (peers / "SHA256SUMS.txt").read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name] = digest
    return sums


def member_path(peers: Path, i: int) -> Path:
    """The original file of member ``i`` (0-based)."""
    return peers / "weights" / f"model_{i + 1}.pt"


def read_member(peers: Path, i: int) -> dict:
    """Member ``i``'s state dict, after checking the file's SHA-256 against the published list."""
    import torch

    path = member_path(peers, i)
    expected = published_sums(peers)[f"weights/{path.name}"]
    if sha256(path) != expected:
        raise SystemExit(f"{path}: SHA-256 differs from SHA256SUMS.txt")
    return torch.load(path, map_location="cpu", weights_only=True)


def build_card(model, config: dict, fp16: bool, originals: dict[str, str]):
    """The card: the ensemble's configuration and BLAST-CT's classes (from the registry), the plan from
    config.json, and where the weights come from."""
    from ctseg_core.checkpoint import ModelCard
    from ctseg_core.volume_plan import VolumePlan

    window = config["data"]["transformation"]["IntensityWindowNormalization"]
    plan = VolumePlan(spacing_mm=tuple(float(v) for v in config["data"]["resolution"]),
                      intensity_hu=(window["lower_bound"], window["upper_bound"]), intensity_value=(-1.0, 1.0),
                      extra={"window": "BLAST-CT IntensityWindowNormalization: clamp to -15..100 HU, then "
                                       "(2 HU - lower - upper) / (upper - lower)",
                             "trained_patch": config["training"]["input_patch_size"]})
    dm = config["model"]["DeepMedic"]
    card = ModelCard.for_model(
        model,
        plan=plan.to_dict(),
        training_data={
            "description": "real head CTs of traumatic brain injury (BLAST-CT, not trained by ctseg)",
            "source": "BLAST-CT v1 (Monteiro et al., Lancet Digital Health 2020)",
            "n_cases": 184,
            "notes": "As the BLAST-CT README (commit 361e8c79) describes it: 184 annotated head CTs "
                     "from multiple clinical sites, validated on an internal set of 655 scans and "
                     "on 500 patients of the public CQ500 data set. Labels: IPH, EAH, perilesional oedema, IVH.",
        },
        version="1",
        recipe={"trained_by": "the BLAST-CT authors (not ctseg)", "loss": "cross-entropy",
                "optimizer": config["optimizer"], "scheduler": config["scheduler"],
                "patch_sampling": config["training"]["sampler"]},
        extra={"source_repository": REPOSITORY, "commit": COMMIT, "license": "Apache-2.0",
               "license_file": "blast_ct_v1.LICENSE.txt", "notice_file": "blast_ct_v1.NOTICE.txt",
               "citation": CITATION, "not_trained_by_ctseg": True, "original_sha256": originals,
               "weights_dtype": "float16" if fp16 else "float32", "converted_by": "scripts/convert_blast_ct.py",
               "ensemble": "mean of the members' softmax outputs (BLAST-CT sums them; same arg-max)"})
    if (card.config["feature_maps"], card.config["fully_connected"]) != (dm["feature_maps"], dm["fully_connected"]) \
            or card.config["num_classes"] != config["data"]["num_classes"] or [c["key"] for c in card.classes][1:] \
            != [n.lower() for n in config["data"]["class_names"][1:]]:
        raise SystemExit("config.json does not match the registered blast_ct configuration")
    return card


def convert(peers: Path, out: Path, fp16: bool = False) -> Path:
    import json

    from ctseg_core.checkpoint import save_checkpoint
    from ctseg_core.models import create_model

    config = json.loads((peers / "weights" / "config.json").read_text())
    model = create_model("blast_ct", members=N_MEMBERS)
    originals = {}
    for i, member in enumerate(model.members):
        member.load_state_dict(read_member(peers, i), strict=True)
        originals[member_path(peers, i).name] = sha256(member_path(peers, i))
    card = build_card(model, config, fp16, originals)
    path = save_checkpoint(model, card, out, fp16=fp16)
    shutil.copyfile(peers / "LICENSE.txt", out.with_name(out.name + ".LICENSE.txt"))
    out.with_name(out.name + ".NOTICE.txt").write_text(NOTICE)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peers", type=Path, default=DEFAULT_PEERS, help="folder with weights/, LICENSE.txt, SHA256SUMS.txt")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="checkpoint stem to write")
    p.add_argument("--fp16", action="store_true", help="store float16 weights (half the size; measured on a test "
                   "block: probabilities move by up to 0.009 and 1 voxel in 3,375 changes class in 4 of 12 members, "
                   "so the bundled file keeps float32)")
    args = p.parse_args(argv)
    path = convert(args.peers, args.out, fp16=args.fp16)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) with its card, licence and NOTICE")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
