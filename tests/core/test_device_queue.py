"""The device queue: one job on the device at a time, the open case first, training paused (not waited for)."""

from __future__ import annotations

import numpy as np
import pytest

from ctseg_core.device_queue import DeviceJob, DeviceQueue


class Device:
    """Records who uses the device; fails the test when two jobs are on it at once."""

    def __init__(self):
        self.on: set[str] = set()
        self.log: list[str] = []

    def enter(self, name):
        assert not self.on, f"{name} started while {self.on} held the device"
        self.on.add(name)
        self.log.append(f"+{name}")

    def leave(self, name):
        self.on.discard(name)
        self.log.append(f"-{name}")


def job(device, kind, name, pausable=False, cancel_on_pause=False, queue=None):
    j = DeviceJob(kind, name, start=lambda: device.enter(name))
    if pausable:
        j.pause = lambda: device.log.append(f"pause {name}")  # the job lets go later (reported by the test)
        j.resume = lambda: device.enter(name)
    if cancel_on_pause:
        j.pause = lambda: (device.leave(name), queue.finished(j))
    return j


def test_inference_and_training_are_never_on_the_device_together():
    device = Device()
    q = DeviceQueue()
    train = q.submit(job(device, "train", "train", pausable=True))
    assert device.on == {"train"}
    infer = q.submit(job(device, "infer", "case A"))
    assert device.on == {"train"} and train.state == "pausing" and infer.state == "waiting"  # asked, not yet gone
    device.leave("train")
    q.paused(train)  # the training process reported ``paused`` between two steps
    assert device.on == {"case A"}
    second = q.submit(job(device, "infer", "case B"))
    assert second.state == "waiting"  # inference after inference: in order
    device.leave("case A")
    q.finished(infer)
    assert device.on == {"case B"} and train.state == "paused"
    device.leave("case B")
    q.finished(second)
    assert device.on == {"train"} and train.state == "running"  # resumed once nothing more urgent waits
    assert device.log == ["+train", "pause train", "-train", "+case A", "-case A", "+case B", "-case B", "+train"]


def test_priorities_open_case_then_prefetch_then_training():
    device = Device()
    q = DeviceQueue()
    first = q.submit(job(device, "infer", "open"))
    q.submit(job(device, "train", "train", pausable=True))
    pre = q.submit(job(device, "prefetch", "next", cancel_on_pause=True, queue=q))
    assert [k for k, _, _ in q.snapshot()] == ["infer", "prefetch", "train"]
    device.leave("open")
    q.finished(first)
    assert device.on == {"next"}
    again = q.submit(job(device, "infer", "open again"))  # a prefetch gives way by being cancelled
    assert device.on == {"open again"} and pre.state == "done"
    device.leave("open again")
    q.finished(again)
    assert device.on == {"train"}
    assert "training run (train): running" in q.describe()


def test_a_random_mix_never_overlaps():
    rng = np.random.default_rng(0)
    device = Device()
    q = DeviceQueue()
    for _ in range(300):
        holder = q.holder
        if holder is not None and rng.random() < 0.4:
            device.leave(holder.label)
            (q.paused if holder.state == "pausing" else q.finished)(holder)
        else:
            kind = ["infer", "prefetch", "train"][int(rng.integers(3))]
            q.submit(job(device, kind, f"{kind}{rng.integers(1e9)}", pausable=kind == "train"))
        assert len(device.on) <= 1 and sum(j.on_device for j in q.jobs) <= 1


def test_a_job_kind_must_be_known():
    with pytest.raises(ValueError, match="unknown device job kind"):
        DeviceJob("render", "x", start=lambda: None)
