"""Progress on a terminal for the long commands (tqdm bars with ETA on stderr), machine-readable output kept.

- ``ProgressBar(total, desc, unit, enabled)``: a tqdm bar on stderr (shown only when stderr is a terminal and
  ``enabled``), used as a context manager; its ``callback`` fits ``progress(done, total, message)``.
- ``EventOutput(json_lines)``: the JSON-lines protocol of ``train`` / ``pretrain`` (one event per line on
  stdout, what the app and scripts read) or, for a person at a terminal, a step bar with loss and ETA
  and one readable line per other event.
"""

from __future__ import annotations

import json
import sys

from tqdm import tqdm


def stderr_is_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class ProgressBar:
    """``with ProgressBar(total, "segmenting", "slice") as b: work(progress=b.callback)``."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True):
        self.tqdm = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True,
                         disable=not (enabled and stderr_is_terminal()))

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.tqdm.close()

    def callback(self, done: int, total: int, message: str = "") -> None:
        """A ``progress(done, total, message)`` callback: moves the bar to ``done`` of ``total``."""
        if total and self.tqdm.total != total:
            self.tqdm.reset(total=total)
        self.tqdm.update(max(0, done - self.tqdm.n))

    def advance(self, n: int = 1, note: str = "") -> None:
        if note:
            self.tqdm.set_postfix_str(note, refresh=False)
        self.tqdm.update(n)

    def write(self, text: str) -> None:
        """A line of output that does not break the bar."""
        if self.tqdm.disable:
            print(text)
        else:
            self.tqdm.write(text)


def json_output_wanted(json_flag: bool) -> bool:
    """JSON lines when asked for, or when stdout is not a terminal (a pipe, the app, a script)."""
    return json_flag or not getattr(sys.stdout, "isatty", lambda: False)()


class EventOutput:
    """Where training events go: JSON lines (``json_lines``) or a bar with readable lines."""

    def __init__(self, json_lines: bool, desc: str = "training"):
        self.json_lines = json_lines
        self.desc = desc
        self._bar: tqdm | None = None

    def __call__(self, event) -> None:
        from ctseg_core.training.events import as_json

        event = as_json(event)  # a typed training event, or a plain dict (pretraining's own events)
        if self.json_lines:
            print(json.dumps(event), flush=True)
            return
        kind = event.get("event")
        if kind in ("start", "step") and event.get("total_steps"):
            self._step(event)
        else:
            text = describe_event(event)
            if text:
                (self._bar.write if self._bar is not None else print)(text)
            if kind in ("done", "cancelled", "error", "trained") and self._bar is not None:
                self.close()

    def _step(self, event: dict) -> None:
        total = int(event["total_steps"])
        if self._bar is None:
            self._bar = tqdm(total=total, initial=int(event.get("step", 0)), desc=self.desc, unit="step",
                             file=sys.stderr, dynamic_ncols=True)
        if "loss" in event:
            self._bar.set_postfix(loss=f"{event['loss']:.4f}", refresh=False)
        self._bar.update(max(0, int(event["step"]) - self._bar.n))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def describe_event(event: dict) -> str:
    """One readable line for a training event ("" for those the bar shows)."""
    kind = event.get("event")
    if kind == "plan":
        return (f"fine-tuning {event.get('parent')} ({event.get('strategy')}) on {len(event.get('train_cases', []))} "
                f"case(s), validating on {len(event.get('val_cases', []))}; {event.get('total_steps')} steps on "
                f"{event.get('device')}")
    if kind == "validating":
        return f"measuring {event.get('version')}: validation case {event['case']} of {event['cases']}" \
            if event.get("case") else ""
    if kind == "validate":
        mean = event.get("mean_dice")
        return f"validation Dice {event.get('when', '')} ({event.get('version', '')}): " + \
            ("-" if mean is None else f"{mean:.3f}") + "  " + \
            ", ".join(f"{k} {v:.3f}" for k, v in (event.get("dice") or {}).items())
    if kind == "trained":
        return f"trained {event.get('step')} steps in {event.get('seconds', 0):.0f} s"
    if kind == "done":
        return f"new version {event.get('version')}: {event.get('reason')}"
    if kind == "cancelled":
        return f"cancelled at step {event.get('step')} of {event.get('total_steps')}"
    if kind == "snapshot":
        return ""
    if kind == "validation_set":
        return f"validation set chosen and frozen: {event.get('reason')} ({', '.join(event.get('cases', []))})"
    if kind == "paused":
        return f"paused at step {event.get('step')}: another job has the device"
    if kind == "resumed":
        return f"continuing after a pause of {event.get('paused_s', 0):.0f} s"
    if kind == "rescored":
        mean = event.get("mean_dice")
        return f"{event.get('version')}: validation Dice " + ("-" if mean is None else f"{mean:.3f}") + \
            " on the current validation set"
    if kind == "error":
        return f"error: {event.get('message')}"
    return json.dumps(event)
