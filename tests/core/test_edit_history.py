"""Undo/redo restores bit for bit, stores changed voxels only, and honours its byte budget."""

import hashlib

import numpy as np

from ctseg_core.edit import Delta, History, PaintPolicy, ops


def _h(a):
    return hashlib.sha256(a.tobytes()).hexdigest()


def _scene():
    rng = np.random.default_rng(1)
    hu = rng.normal(50, 30, size=(12, 96, 96)).astype(np.float32)
    labels = rng.integers(0, 3, size=hu.shape).astype(np.uint8)  # busy existing labels
    return hu, labels


def _edits(labels, hu, history, spacing=(3.0, 0.5, 0.5)):
    """A mix of tools over several slices; returns the hash after every step."""
    hashes = []
    history.begin_stroke("brush")
    for a, b in [((2, 10, 10), (2, 30, 50)), ((2, 30, 50), (2, 60, 60)), ((2, 60, 60), (2, 62, 20))]:
        history.apply(ops.brush(labels, [a, b], spacing, 4.0, 1))
    history.commit()
    hashes.append(_h(labels))
    history.apply(ops.brush(labels, [(6, 48, 48)], spacing, 10.0, 3, sphere=True))
    hashes.append(_h(labels))
    history.apply(ops.flood_fill(labels, hu, (8, 40, 40), (20, 200), 4, three_d=True,
                                 policy=PaintPolicy("protect_locked", {1})))
    hashes.append(_h(labels))
    history.apply(ops.polygon_fill(labels, 9, [(5, 5), (5, 80), (70, 40)], 0))
    hashes.append(_h(labels))
    history.begin_stroke("eraser")
    history.apply(ops.brush(labels, [(3, 20, 20), (3, 70, 70)], spacing, 6.0, 0))
    history.commit()
    hashes.append(_h(labels))
    return hashes


def test_undo_redo_restore_bit_for_bit():
    hu, labels = _scene()
    original = labels.copy()
    changes = []
    history = History(labels, on_change=changes.append)
    hashes = _edits(labels, hu, history)
    final = labels.copy()
    assert len(set(hashes)) == len(hashes)  # every step changed something
    for expected in reversed([_h(original)] + hashes[:-1]):
        assert history.undo() is not None
        assert _h(labels) == expected
    np.testing.assert_array_equal(labels, original)
    assert not history.can_undo and history.can_redo and history.undo() is None
    for expected in hashes:
        history.redo()
        assert _h(labels) == expected
    np.testing.assert_array_equal(labels, final)
    assert not history.can_redo
    # changed regions were reported, one per delta applied / step undone or redone
    assert all(len(b) == 6 for b in changes) and len(changes) == 7 + 5 + 5  # 7 deltas applied, 5 undos, 5 redos


def test_on_change_bbox_covers_exactly_the_changed_voxels():
    hu, labels = _scene()
    before = labels.copy()
    boxes = []
    history = History(labels, on_change=boxes.append)
    history.apply(ops.brush(labels, [(5, 40, 40)], (2.0, 0.5, 0.5), 5.0, 7, sphere=True))
    z0, z1, y0, y1, x0, x1 = boxes[-1]
    diff = np.argwhere(before != labels)
    assert (diff.min(0) == [z0, y0, x0]).all() and (diff.max(0) + 1 == [z1, y1, x1]).all()
    assert history.undo() == boxes[-1]


def test_new_edit_clears_redo_and_abort_reverts_open_stroke():
    hu, labels = _scene()
    original = labels.copy()
    history = History(labels)
    history.apply(ops.brush(labels, [(1, 20, 20)], (1, 1, 1), 5, 5))
    after_first = labels.copy()
    history.undo()
    assert history.can_redo
    history.apply(ops.brush(labels, [(1, 50, 50)], (1, 1, 1), 5, 6))
    assert not history.can_redo
    history.begin_stroke("brush")
    history.apply(ops.brush(labels, [(4, 10, 10), (4, 80, 80)], (1, 1, 1), 3, 2))
    history.apply(ops.brush(labels, [(4, 80, 80), (4, 80, 10)], (1, 1, 1), 3, 2))
    history.abort()
    assert history.undo_name == "edit"
    history.undo()
    np.testing.assert_array_equal(labels, original)
    assert not np.array_equal(after_first, original)


def test_history_stores_changed_voxels_only_and_honours_budget():
    labels = np.zeros((40, 512, 512), np.uint8)
    history = History(labels)
    history.apply(ops.brush(labels, [(20, 256, 256)], (5.0, 0.49, 0.49), 10.0, 1, sphere=True))
    # a 20 mm sphere: ~ 4/3 pi 10^3 / (5*.49*.49) voxels; stored far below one slice, let alone the volume
    assert history.nbytes < 0.05 * labels.nbytes and history.nbytes < 512 * 512

    small = History(np.zeros((4, 64, 64), np.uint8), budget_bytes=3000)
    sizes = []
    for k in range(30):
        small.apply(ops.brush(small.labels, [(k % 4, 32, 32)], (1, 1, 1), 6 + k % 3, 1 + k % 7))
        assert small.nbytes <= 3000
        sizes.append(small.nbytes)
    assert small.dropped_steps > 0 and small.can_undo
    while small.can_undo:  # what is kept still undoes cleanly
        small.undo()
    assert small.can_redo


def test_journal_receives_deltas_that_replay_the_same_state():
    hu, labels = _scene()
    start = labels.copy()
    log: list[Delta] = []
    history = History(labels, journal=log.extend)
    _edits(labels, hu, history)
    history.undo()
    history.undo()
    history.redo()
    replay = start.copy()
    for d in log:
        d.apply(replay)
    np.testing.assert_array_equal(replay, labels)
