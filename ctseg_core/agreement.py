"""Agreement statistics over a workspace: readers against each other, against the final map, the model.

For every case, every pair of maps of one kind is compared per lesion class (``adjudication.compare``):
- ``inter_reader``: each pair of readers' maps;
- ``reader_vs_final``: each reader's map against the case's final map (adjudicated, corrected or approved);
- ``model_vs_final``: the stored prediction against the final map.
Per kind and class: the mean Dice over the pairs where either map has the class (n), and Bland-Altman
numbers of the volume difference (first minus second, mL) over the same pairs: bias (mean difference),
SD of the differences, 95 % limits of agreement (bias ± 1.96 SD; none with fewer than 2 pairs).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ctseg_core.adjudication import compare
from ctseg_core.errors import CtsegError
from ctseg_core.labels import LESION_CLASSES
from ctseg_core.store.case import FINAL, TRAINING_STATUSES, Case
from ctseg_core.store.readers import load_reader_map, readers_of

KINDS = ("inter_reader", "reader_vs_final", "model_vs_final")
LOA_Z = 1.96


@dataclass
class PairResult:
    case: str
    kind: str
    first: str  # "reader:alice", "final", "model"
    second: str
    classes: list  # ClassComparison per lesion class

    def to_json(self) -> dict:
        return {"case": self.case, "kind": self.kind, "first": self.first, "second": self.second,
                "classes": [c.to_json() for c in self.classes]}


@dataclass
class ClassAgreement:
    key: str
    n: int = 0  # pairs where either map has the class
    dice: list = field(default_factory=list)
    differences_ml: list = field(default_factory=list)

    def to_json(self) -> dict:
        d = np.asarray(self.differences_ml, float)
        sd = float(d.std(ddof=1)) if d.size >= 2 else None
        bias = float(d.mean()) if d.size else None
        return {"class": self.key, "n": self.n, "dice_mean": float(np.mean(self.dice)) if self.dice else None,
                "volume_bias_ml": bias, "volume_sd_ml": sd,
                "limits_of_agreement_ml": [bias - LOA_Z * sd, bias + LOA_Z * sd] if sd is not None else None}


def case_pairs(case: Case) -> list[PairResult]:
    """Every comparison one case offers (see the module's kinds)."""
    geometry = case.geometry
    maps = {f"reader:{r.reader}": load_reader_map(case, r.reader) for r in readers_of(case.folder)}
    maps = {k: v.array for k, v in maps.items() if v is not None}
    final = case.load_final() if case.record.status in TRAINING_STATUSES and (case.folder / FINAL).is_file() \
        else None
    prediction = case.load_prediction()
    out = [PairResult(case.id, "inter_reader", x, y, compare(maps[x], maps[y], geometry))
           for x, y in itertools.combinations(sorted(maps), 2)]
    if final is not None:
        out += [PairResult(case.id, "reader_vs_final", x, "final", compare(maps[x], final.array, geometry))
                for x in sorted(maps)]
        if prediction is not None:
            out.append(PairResult(case.id, "model_vs_final", "model", "final",
                                  compare(prediction.array, final.array, geometry)))
    return out


def summarise(pairs: list[PairResult]) -> dict:
    """{kind: {class key: ClassAgreement.to_json()}} over the pairs."""
    table = {kind: {c.key: ClassAgreement(c.key) for c in LESION_CLASSES} for kind in KINDS}
    for pair in pairs:
        for c in pair.classes:
            if c.dice is None:
                continue
            agg = table[pair.kind][c.key]
            agg.n += 1
            agg.dice.append(c.dice)
            agg.differences_ml.append(c.difference_ml)
    return {kind: {key: agg.to_json() for key, agg in rows.items()} for kind, rows in table.items()}


def workspace_agreement(workspace) -> dict:
    """The agreement report of a ``Workspace``: summary per kind and class, every pair, the problems."""
    pairs, problems = [], []
    for rec in workspace.cases():
        try:
            pairs += case_pairs(workspace.case(rec.id))
        except (CtsegError, OSError) as exc:  # one unreadable case must not hide the others
            problems.append(f"case {rec.id}: {exc}")
    return {"workspace": str(workspace.root), "cases": len({p.case for p in pairs}),
            "summary": summarise(pairs), "pairs": [p.to_json() for p in pairs], "problems": problems}
