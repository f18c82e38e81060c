"""One device, one job on it at a time: inference of the open case first, then a background prefetch of the
next case, then a training run.

The queue holds jobs with a kind (its priority: ``infer`` 0, ``prefetch`` 1, ``train`` 2; lower first, then
first come first served). Exactly one job holds the device at a time; the queue starts the next one only
when the holder has finished (``finished``) or, for a job that can pause (a training run: between two
steps, ``ctseg train`` on SIGUSR1), has reported that it let the device go (``paused``). A job that can
pause is asked to (``pause()``) as soon as a more urgent job waits, and resumed (``resume()``) when none
does. So inference and training are never on the device together (no out-of-memory when both are asked
for) and the open case never waits for a training run to end.

Plain Python, no threads: every call comes from one thread (the app's GUI thread) and the jobs' own
callbacks do the work asynchronously (start a thread or a process) and report back through ``finished`` /
``paused``. ``on_change`` is called after every change (the app shows ``snapshot()``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

PRIORITY = {"infer": 0, "prefetch": 1, "train": 2}
KIND_TEXT = {"infer": "inference of the open case", "prefetch": "prefetch of the next case",
             "train": "training run"}
WAITING, RUNNING, PAUSING, PAUSED, DONE = "waiting", "running", "pausing", "paused", "done"


@dataclass(eq=False)
class DeviceJob:
    kind: str
    label: str
    start: Callable[[], None]
    pause: Callable[[], None] | None = None  # asks the job to give the device up (it reports ``paused``, or
    resume: Callable[[], None] | None = None  # ``finished`` when it cannot resume: a prefetch is cancelled)
    state: str = WAITING
    order: int = field(default=0)

    def __post_init__(self):
        if self.kind not in PRIORITY:
            raise ValueError(f"unknown device job kind {self.kind!r} (one of {', '.join(PRIORITY)})")
        if self.resume is not None and self.pause is None:
            raise ValueError("a job that can resume must be able to pause")

    @property
    def priority(self) -> tuple[int, int]:
        return PRIORITY[self.kind], self.order

    @property
    def on_device(self) -> bool:
        return self.state in (RUNNING, PAUSING)


class DeviceQueue:
    def __init__(self, on_change: Callable[[], None] | None = None):
        self.jobs: list[DeviceJob] = []
        self.on_change = on_change
        self._order = itertools.count()

    # ---- what the jobs and the app call ----
    def submit(self, job: DeviceJob) -> DeviceJob:
        job.order, job.state = next(self._order), WAITING
        self.jobs.append(job)
        self._dispatch()
        return job

    def finished(self, job: DeviceJob) -> None:
        """The job ended (done, failed or cancelled), or a waiting job is withdrawn."""
        if job in self.jobs:
            self.jobs.remove(job)
            job.state = DONE
            self._dispatch()

    def paused(self, job: DeviceJob) -> None:
        """A job asked to pause has let the device go."""
        if job in self.jobs and job.state == PAUSING:
            job.state = PAUSED
            self._dispatch()

    # ---- state ----
    @property
    def holder(self) -> DeviceJob | None:
        return next((j for j in self.jobs if j.on_device), None)

    def waiting(self, kind: str | None = None) -> list[DeviceJob]:
        return [j for j in self.jobs if j.state == WAITING and (kind is None or j.kind == kind)]

    def snapshot(self) -> list[tuple[str, str, str]]:
        """(kind, label, state) of every job, the device's holder first, then in the order they will run."""
        return [(j.kind, j.label, j.state) for j in sorted(self.jobs, key=lambda j: (not j.on_device, j.priority))]

    def describe(self) -> str:
        rows = self.snapshot()
        if not rows:
            return "device idle"
        return "; ".join(f"{KIND_TEXT[k]} ({label}): {state}" for k, label, state in rows)

    # ---- the scheduler ----
    def _dispatch(self) -> None:
        holder = self.holder
        if holder is not None:
            if holder.state == RUNNING and holder.pause is not None and self._more_urgent_than(holder):
                holder.state = PAUSING
                holder.pause()
        else:
            ready = [j for j in self.jobs if j.state in (WAITING, PAUSED)]
            if ready:
                job = min(ready, key=lambda j: j.priority)
                was_paused = job.state == PAUSED
                job.state = RUNNING
                (job.resume if was_paused else job.start)()
        if self.on_change is not None:
            self.on_change()

    def _more_urgent_than(self, job: DeviceJob) -> bool:
        return any(j.state == WAITING and PRIORITY[j.kind] < PRIORITY[job.kind] for j in self.jobs)
