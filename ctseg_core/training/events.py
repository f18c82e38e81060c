"""The events of a fine-tuning run: their names, payloads and the protocol version, in one place.

The trainer and ``run_training`` emit these objects; ``ctseg train`` writes them as JSON lines
(``to_json``: ``{"event": name, "protocol": PROTOCOL, ...fields}``) or as readable lines on a terminal;
the app's training panel reads the lines back with ``from_json`` and gets the same objects. A line of
another protocol version is refused with a clear message (an old app with a newer core, or the other
way round), never half understood.

No torch here: the app imports this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, ClassVar

PROTOCOL = 2  # version 1: untyped dicts without a "protocol" field (before issue 14)


class ProtocolError(ValueError):
    """A line that is not an event of this protocol version."""


@dataclass(frozen=True)
class TrainingEvent:
    name: ClassVar[str] = ""

    def to_json(self) -> dict:
        return {"event": self.name, "protocol": PROTOCOL, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Plan(TrainingEvent):
    """The run's configuration, before anything is measured."""

    name: ClassVar[str] = "plan"
    parent: str
    strategy: str
    strategy_reason: str
    train_cases: list
    val_cases: list
    total_steps: int
    seed: int
    from_scratch: bool = False
    device: str = "cpu"
    world_size: int = 1
    resumed_from_step: int | None = None
    corrected_weight: float = 1.0
    unreviewed: str = "ignore"
    train_slices: int = 0  # reviewed slices the run trains on
    validation_set: str = ""  # fingerprint of the workspace's validation set


@dataclass(frozen=True)
class ValidationSetChosen(TrainingEvent):
    """The workspace's validation set was chosen now (the first run) and is frozen from here on."""

    name: ClassVar[str] = "validation_set"
    cases: list
    classes: dict  # case id -> lesion class keys it holds
    revision: int
    reason: str


@dataclass(frozen=True)
class Validating(TrainingEvent):
    """Progress while a model is measured on the validation cases (``case`` of ``cases`` done)."""

    name: ClassVar[str] = "validating"
    when: str  # "before", "after" or "rescore"
    version: str
    case: int
    cases: int


@dataclass(frozen=True)
class Validate(TrainingEvent):
    """A model's validation Dice per class: ``dice`` the sample average (over cases), ``dice_voxel`` the voxel
    average (voxels pooled over the cases), both through the Predictor on the scans' own grids."""

    name: ClassVar[str] = "validate"
    when: str
    version: str
    dice: dict
    mean_dice: float | None
    dice_voxel: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Start(TrainingEvent):
    name: ClassVar[str] = "start"
    step: int
    total_steps: int
    strategy: str
    device: str
    world_size: int = 1


@dataclass(frozen=True)
class Step(TrainingEvent):
    name: ClassVar[str] = "step"
    step: int
    total_steps: int
    loss: float
    lr: float
    eta_s: float | None


@dataclass(frozen=True)
class Paused(TrainingEvent):
    """The run gave the device to a more urgent job (inference of the open case) between two steps."""

    name: ClassVar[str] = "paused"
    step: int


@dataclass(frozen=True)
class Resumed(TrainingEvent):
    name: ClassVar[str] = "resumed"
    step: int
    paused_s: float


@dataclass(frozen=True)
class Trained(TrainingEvent):
    name: ClassVar[str] = "trained"
    step: int
    seconds: float


@dataclass(frozen=True)
class Done(TrainingEvent):
    """The new version was saved; ``promoted``: made active by the rule (``reason`` says why, with numbers)."""

    name: ClassVar[str] = "done"
    version: str
    promoted: bool
    reason: str
    active: str
    path: str
    decision: dict = field(default_factory=dict)  # per class: before, after, change, tolerance, ok


@dataclass(frozen=True)
class Rescored(TrainingEvent):
    """A version measured on the current validation set (after the set changed)."""

    name: ClassVar[str] = "rescored"
    version: str
    dice: dict
    mean_dice: float | None
    validation_set: str


@dataclass(frozen=True)
class Cancelled(TrainingEvent):
    name: ClassVar[str] = "cancelled"
    step: int
    total_steps: int


@dataclass(frozen=True)
class Error(TrainingEvent):
    name: ClassVar[str] = "error"
    message: str


EVENTS: dict[str, type[TrainingEvent]] = {cls.name: cls for cls in (
    Plan, ValidationSetChosen, Validating, Validate, Start, Step, Paused, Resumed, Trained, Done, Rescored,
    Cancelled, Error)}

Emit = Callable[[TrainingEvent], None]


def from_json(data: dict) -> TrainingEvent:
    """The event of one JSON line; ``ProtocolError`` for another protocol version or an unknown name."""
    if not isinstance(data, dict) or "event" not in data:
        raise ProtocolError("not a training event (no 'event' field)")
    version = data.get("protocol")
    if version != PROTOCOL:
        raise ProtocolError(f"training event protocol {version} is not this program's {PROTOCOL} "
                            "(the app and the training command come from different versions)")
    cls = EVENTS.get(data["event"])
    if cls is None:
        raise ProtocolError(f"unknown training event {data['event']!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise ProtocolError(f"malformed {data['event']!r} event ({exc})") from exc


def as_json(event) -> dict:
    """The JSON form of an event object (a plain dict passes as it is: pretraining's own events)."""
    return event.to_json() if isinstance(event, TrainingEvent) else event
