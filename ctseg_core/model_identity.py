"""Which model produced a result: name, version (with its parent), weights hash and training data.

``ModelIdentity.of(card)`` is built from a ``ModelCard`` (or any object with some of its fields, such as
a test stub); it travels as data from the inference thread to the GUI, is stored beside a saved
prediction (``prediction.json``), and decides whether a stored prediction came from the active model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class ModelIdentity:
    architecture: str
    version: str  # as the card names it ("1", "v3")
    parent: str = ""  # the version it was fine-tuned from ("" for a released model)
    sha256: str = ""  # of the weights file ("" when unknown, e.g. a test stub)
    training: str = ""  # "synthetic head CT ... (307 cases)"
    summary: str = ""  # the card's one-line summary
    postprocess: str = ""  # what the predictor does to the model's labels (e.g. the anatomical guard), "" = none

    @classmethod
    def of(cls, card, postprocess: str = "") -> "ModelIdentity":
        summary = card.summary() if callable(getattr(card, "summary", None)) else str(card)
        td = getattr(card, "training_data", None) or {}
        what = td.get("description") or td.get("source") or ""
        n = td.get("n_cases")
        return cls(architecture=str(getattr(card, "architecture", "") or summary.split(" ")[0]),
                   version=str(getattr(card, "version", "") or ""),
                   parent=str(getattr(card, "parent_version", "") or ""),
                   sha256=str(getattr(card, "weights_sha256", "") or ""),
                   training=what + (f" ({n} cases)" if what and n is not None else ""),
                   summary=summary, postprocess=postprocess)

    @classmethod
    def of_predictor(cls, predictor) -> "ModelIdentity":
        """The identity of what a predictor produces: its card, its post-processing (the anatomical guard,
        when it has one) and how its strategy runs it (an ensemble's members)."""
        guard = getattr(predictor, "guard", None)
        strategy = getattr(predictor, "strategy", None)
        detail = strategy.describe() if strategy is not None else ""  # e.g. "4 of 12 members"
        parts = [repr(guard) if guard else "", detail]
        identity = cls.of(predictor.card, postprocess="; ".join(p for p in parts if p))
        describe = getattr(predictor, "describe", None)  # the card's summary and how it runs ("4 of 12 members")
        return replace(identity, summary=describe()) if callable(describe) else identity

    @property
    def label(self) -> str:
        """A short unique name: "aa_unet v1" for a released model, "aa_unet v1 (retrained from default)"
        for a workspace version (the sha prefix tells two releases of one number apart)."""
        return version_label(self.architecture, self.version, self.parent) if self.version else \
            self.summary.split(" — ")[0]

    @property
    def short_sha(self) -> str:
        return self.sha256[:8]

    def same_model(self, other: "ModelIdentity | None") -> bool:
        """The same weights (by hash when both know theirs, else by label) with the same post-processing:
        then the same scan gives the same labels."""
        if other is None or self.postprocess != other.postprocess:
            return False
        if self.sha256 and other.sha256:
            return self.sha256 == other.sha256
        return self.label == other.label

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | None) -> "ModelIdentity | None":
        if not isinstance(data, dict) or "architecture" not in data:
            return None
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: str(v) for k, v in data.items() if k in names})


def version_label(architecture: str, version: str, parent: str | None = None) -> str:
    """ "aa_unet v3", or "aa_unet v3 (retrained from v2)" when the version has a parent."""
    def named(v) -> str:
        v = str(v)
        return f"v{v}" if v[:1].isdigit() else v

    return f"{architecture} {named(version)}" + (f" (retrained from {named(parent)})" if parent else "")
