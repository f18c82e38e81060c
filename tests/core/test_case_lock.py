"""Two writers on one case: the second opener is read-only (told who edits it), a dead owner's lock is taken
over, an old one only on request, and an owner whose lock was taken over cannot overwrite anything."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from ctseg_core.edit import Delta
from ctseg_core.errors import CaseLockedError
from ctseg_core.store import Workspace
from ctseg_core.store.lock import STALE_AFTER_S, lock_path

OWNER = """
import sys, numpy as np
from ctseg_core.edit import Delta
from ctseg_core.store import Workspace
case = Workspace(sys.argv[1]).case(sys.argv[2])
case.lock_for_editing()
labels, _ = case.load_for_editing()
for z in range(labels.array.shape[0]):
    m = np.zeros(labels.array.shape, bool); m[z, 5:9, 5:9] = True
    d = Delta.write(labels.array, (0, 0, 0), m, 1); d.apply(labels.array); case.journal_append(d)
print("locked", flush=True)
sys.stdin.readline()
"""


def _edit(labels, value, z=1):
    m = np.zeros(labels.shape, bool)
    m[z, 30:40, 30:40] = True
    d = Delta.write(labels, (0, 0, 0), m, value)
    d.apply(labels)
    return d


@pytest.fixture
def case_and_scan(ws, make_scan, tmp_path):
    vol, path = make_scan(tmp_path)
    return ws.open_case(vol, path), vol


def _start_owner(ws, case):
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(ws.root), case.id], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_gets_the_case_read_only_and_writes_nothing(ws, case_and_scan):
    case, vol = case_and_scan
    proc = _start_owner(ws, case)
    try:
        mine = Workspace(ws.root).case(case.id)
        with pytest.raises(CaseLockedError) as err:
            mine.lock_for_editing()
        owner = err.value.owner
        assert owner.pid == proc.pid and owner.host == socket.gethostname() and owner.user
        assert f"process {proc.pid}" in str(err.value) and owner.user in str(err.value)
        assert mine.read_only
        labels, origin = mine.load_for_editing(vol)  # what the owner journaled is visible, read-only
        assert origin == "recovered" and labels.array[:, 5:9, 5:9].all()
        journal_before = (mine.folder / "journal.jsonl").read_bytes()
        d = _edit(labels.array, 2)
        for write in (lambda: mine.journal_append(d), lambda: mine.save_final(labels),
                      lambda: mine.set_status("approved"), lambda: mine.save_prediction(labels, "x")):
            with pytest.raises(CaseLockedError, match="read-only"):
                write()
        assert (mine.folder / "journal.jsonl").read_bytes() == journal_before
        assert not mine.final_path.exists()
    finally:
        proc.kill()
        proc.wait()
    # the owner died without releasing: its lock is certainly stale and is taken over on opening
    again = Workspace(ws.root).case(case.id)
    again.lock_for_editing()
    assert any("no longer running" in n for n in again.notes)
    labels, origin = again.load_for_editing(vol)
    assert origin == "recovered" and labels.array[:, 5:9, 5:9].all()  # the dead owner's edits are kept
    again.journal_append(_edit(labels.array, 2))
    again.save_final(labels)
    again.release_lock()
    assert not lock_path(again.folder).exists()


def _foreign_lock(case, age_s):
    path = lock_path(case.folder)
    path.write_text(json.dumps({"pid": 4242, "host": "another-workstation", "user": "dr_b", "reader": "",
                                "since": "2026-01-01T08:00:00+00:00", "token": "abc"}))
    old = time.time() - age_s
    os.utime(path, (old, old))
    return path


def test_lock_of_another_host_is_respected_until_old_and_then_taken_over_only_on_request(case_and_scan):
    case, vol = case_and_scan
    _foreign_lock(case, age_s=30)
    with pytest.raises(CaseLockedError, match="dr_b on another-workstation") as err:
        case.lock_for_editing()
    assert not err.value.stale
    _foreign_lock(case, age_s=STALE_AFTER_S + 60)
    with pytest.raises(CaseLockedError, match="looks stale") as err:
        case.lock_for_editing()  # never taken silently: the user decides
    assert err.value.stale
    case.lock_for_editing(take_over=True)
    assert any("took the case lock over from dr_b" in n for n in case.notes)
    labels, _ = case.load_for_editing(vol)
    case.save_final(labels)


def test_owner_whose_lock_was_taken_over_cannot_overwrite(ws, case_and_scan):
    case, vol = case_and_scan
    first = Workspace(ws.root).case(case.id)
    first.lock_for_editing()
    labels, _ = first.load_for_editing(vol)
    second = Workspace(ws.root).case(case.id)  # opened before the first owner's next edit
    first.journal_append(_edit(labels.array, 1, z=1))
    with pytest.raises(CaseLockedError):
        second.lock_for_editing()  # one process, two openers: still two owners
    second.lock_for_editing(take_over=True)
    with pytest.raises(CaseLockedError, match="taken over"):
        first.journal_append(_edit(labels.array, 3, z=2))
    with pytest.raises(CaseLockedError, match="taken over"):
        first.save_final(labels)
    assert not first.edit_lock.refresh()
    mine, origin = second.load_for_editing(vol)
    assert origin == "recovered" and (mine.array[1] == 1).any()  # the first owner's journaled edit is kept
    assert second.journal.append([_edit(mine.array, 4, z=3)]) == 2  # sequence numbers continue, no collision


def test_an_update_lock_left_by_a_killed_process_is_broken_at_once_and_a_live_ones_is_waited_for(tmp_path):
    """A process killed inside a ``case.json`` update leaves its O_EXCL lock file; the next save must not fail
    for the half minute the age rule waits (found by the SIGKILL test under load)."""
    from ctseg_core.errors import StoreError
    from ctseg_core.store.lock import update_mutex

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / "case.json.lock"
    lock.write_text(f"{int(gone.stdout)} {socket.gethostname()}")  # fresh, its process no longer runs
    t0 = time.monotonic()
    with update_mutex(lock, timeout_s=5):
        assert lock.read_text() == f"{os.getpid()} {socket.gethostname()}"  # now ours, naming us
    assert time.monotonic() - t0 < 2 and not lock.exists()
    for holder in (f"{os.getpid()} {socket.gethostname()}", f"{int(gone.stdout)} another-host", ""):
        lock.write_text(holder)  # alive here, on another host (cannot tell), not yet written: wait
        with pytest.raises(StoreError, match="does not finish"):
            with update_mutex(lock, timeout_s=0.3):
                pass
        assert lock.read_text() == holder
