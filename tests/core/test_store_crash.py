"""A process killed (SIGKILL) in the middle of saving leaves the last save intact and the journal complete."""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from ctseg_core.edit import Delta
from ctseg_core.io.images import read_volume, write_volume
from ctseg_core.store import Workspace
from ctseg_core.volume import LabelMap, Volume

SHAPE = (40, 256, 256)

CHILD = r"""
import sys
import numpy as np
from ctseg_core.store import Workspace
from ctseg_core.volume import LabelMap
sys.path.insert(0, sys.argv[3])
from test_store_crash import edit

case = Workspace(sys.argv[1]).case(sys.argv[2])
labels, _ = case.load_for_editing()
print("ready", flush=True)
k, offset = 0, int(sys.argv[4])
while True:
    case.journal_append(edit(labels.array, offset + k))
    print("journaled", k, flush=True)
    case.save_final(labels)
    print("saved", k, flush=True)
    k += 1
"""


def edit(arr, k):
    """Edit number k (deterministic), applied to ``arr``; returns its delta."""
    z = k % arr.shape[0]
    change = np.zeros((1,) + arr.shape[1:], bool)
    change[0, (k * 7) % 200:(k * 7) % 200 + 40, :] = True
    delta = Delta.write(arr, (z, 0, 0), change, 1 + k % 7)
    delta.apply(arr)
    return delta


def _states(base, n, offset):
    arr = base.copy()
    out = [arr.copy()]
    for k in range(n):
        edit(arr, offset + k)
        out.append(arr.copy())
    return out  # out[m] = state after edits 0..m-1


def _index_of(states, arr):
    """The last m with states[m] == arr (an edit that changes nothing makes equal neighbours)."""
    return max((m for m, s in enumerate(states) if np.array_equal(s, arr)), default=None)


def test_sigkill_during_saves_keeps_last_save_and_journal(tmp_path):
    rng = np.random.default_rng(3)
    vol = Volume.from_array(rng.normal(40, 20, SHAPE).round().astype(np.float32), spacing=(5.0, 0.9, 0.9))
    src = tmp_path / "scan.nii.gz"
    write_volume(vol, src)
    source_bytes = src.read_bytes()
    vol = read_volume(src)
    ws = Workspace(tmp_path / "ws")
    case = ws.open_case(vol, src)
    # a busy prediction so every save writes a few MB (slow enough to be killed mid-write)
    case.save_prediction(LabelMap(rng.integers(0, 8, SHAPE).astype(np.uint8), vol.geometry), "m")
    base = case.load_prediction().array

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    for offset in (0, 1003):  # the second run makes other edits than the first
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(ws.root), case.id, os.path.dirname(__file__),
                                 str(offset)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        seen = []
        while "saved 1" not in seen:  # let it save twice, then kill it at a random moment
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            seen.append(line.strip())
        time.sleep(float(rng.uniform(0.0, 0.4)))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        lines = [ln.split() for ln in seen + out.splitlines() if ln.strip()]
        journaled = [int(k) for tag, k in lines if tag == "journaled"]
        saved = [int(k) for tag, k in lines if tag == "saved"]

        reopened = Workspace(ws.root).case(case.id)
        states = _states(base, journaled[-1] + 3, offset)
        final = reopened.load_final(vol)  # loads: the file is whole, never half-written
        m_final = _index_of(states, final.array)
        assert m_final is not None and m_final >= saved[-1] + 1  # the last reported save (or a newer one)
        recovered, origin = reopened.load_for_editing(vol)
        m_rec = _index_of(states, recovered.array)
        assert m_rec is not None and m_rec >= journaled[-1] + 1  # every journaled edit is back
        assert m_rec >= m_final
        assert not list(reopened.folder.glob(".*.tmp*"))  # leftovers of the killed write removed
        reopened.save_final(recovered)  # the next run continues from the recovered state
        base = recovered.array.copy()
    assert src.read_bytes() == source_bytes
