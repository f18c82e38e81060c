"""Inference of a 3-D (volume) model or ensemble, behind ``Predictor.predict`` (see ctseg_core.predictor).

1. The scan goes onto the model's grid (``VolumeGrid``: canonical axes, 1 mm for BLAST-CT) and through the
   plan's intensity map; the head is found (``head_box``).
2. The head's bounding box is cut into tiles whose outputs start on multiples of the model's
   ``alignment()`` and measure ``tile`` voxels (fewer at the far end with torch; with ONNX Runtime, whose
   exported networks take one input size, every tile is full size and the part beyond is dropped, so both
   engines keep the same voxels). Every tile sees an input block
   ``model.input_size`` wide around its output, padded by repeating the edge voxels where it leaves the
   volume (as BLAST-CT pads its patches). Because tile outputs start on the same lattice as BLAST-CT's
   30^3 patches, the result is the one BLAST-CT computes there; larger tiles only waste less input.
   Tiles holding no head voxel are not computed (their voxels are background).
3. Tiles are grouped into slabs across the scan's slices; the slab holding the viewed slice runs first,
   then the others outwards. Members run one after the other; the ensemble's probability is the mean of
   the members' softmax outputs so far (BLAST-CT sums them and takes the arg-max: the same labels).
   On a CPU, members run in ONNX Runtime when it is installed (``engine="auto"``): measured about three
   times faster than PyTorch's CPU 3-D convolutions for DeepMedic, float32 like PyTorch; each member is
   exported once per tile size to ``CTSEG_CACHE`` (default ~/.cache/ctseg/onnx) and reused.
4. After each slab of each member, the scan slices it touches are brought back to the scan's grid
   (linear interpolation of the probabilities, then arg-max) and handed to ``on_slice``: the first
   member's result appears slab by slab, later members refine it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ctseg_core.checkpoint import ModelCard
from ctseg_core.errors import CheckpointError
from ctseg_core.jobs import CancelToken
from ctseg_core.labels import output_label_values
from ctseg_core.prediction import Prediction, amp_dtype, onnx_cache_dir, onnxruntime_available, state_digest
from ctseg_core.volume import LabelMap, Volume
from ctseg_core.volume_plan import VolumeGrid, VolumePlan, head_box

CPU_TILE = 60  # output voxels per tile edge on a CPU (input 140^3 for DeepMedic)
GPU_TILE = 120


@dataclass(frozen=True)
class Tile:
    lo: tuple[int, int, int]  # output block computed on the model grid, canonical axes, half open
    hi: tuple[int, int, int]
    keep: tuple[int, int, int] | None = None  # end of the part kept (None: hi); full-size tiles compute more

    @property
    def size(self) -> tuple[int, int, int]:
        return tuple(h - a for a, h in zip(self.lo, self.hi))

    @property
    def kept_hi(self) -> tuple[int, int, int]:
        return self.hi if self.keep is None else tuple(min(h, k) for h, k in zip(self.hi, self.keep))


def axis_chunks(lo: int, hi: int, tile: int, align: int, full: bool = False) -> list[tuple[int, int]]:
    """Chunks covering [lo, hi): starts on multiples of ``align``, ``tile`` long, the last one shorter
    (rounded up to a multiple of ``align``) unless ``full``."""
    chunks, pos = [], (lo // align) * align
    while pos < hi:
        size = tile if full else min(tile, math.ceil((hi - pos) / align) * align)
        chunks.append((pos, pos + size))
        pos += size
    return chunks


def ensemble_members(model: nn.Module) -> list[nn.Module]:
    """The networks of an ensemble (its ``members``), or the model itself."""
    members = getattr(model, "members", None)
    return list(members) if members is not None else [model]


class VolumeStrategy:
    def __init__(self, model: nn.Module, card: ModelCard, plan: VolumePlan, device: torch.device,
                 members: int | None = None, tile: int | None = None, amp: str = "auto", engine: str = "auto"):
        """``members``: how many of an ensemble's networks to run (default all; fewer is faster and less
        accurate). ``tile``: output tile edge in voxels (a multiple of the model's alignment; default
        60 on a CPU, 120 on a GPU). ``amp``: see ``ctseg_core.prediction.amp_dtype``. ``engine``: "auto"
        (ONNX Runtime on a CPU where it is installed, else torch), "torch" or "onnxruntime" (CPU only)."""
        self.card, self.plan, self.device = card, plan, device
        available = ensemble_members(model)
        n = len(available) if members is None else int(members)
        if not 1 <= n <= len(available):
            raise CheckpointError(f"{card.architecture} has {len(available)} member(s): members must be "
                                  f"1..{len(available)}, got {members}")
        self.model = model.eval()
        self.members = [m.to(device) for m in available[:n]]
        self.n_available = len(available)
        self.align = int(model.alignment())
        tile = tile or (CPU_TILE if device.type == "cpu" else GPU_TILE)
        if tile <= 0 or tile % self.align:
            raise ValueError(f"tile must be a positive multiple of {self.align}, got {tile}")
        self.tile = int(tile)
        self.amp_dtype = amp_dtype(amp, device)
        self.onnx = self._onnx(engine)
        self.channel_labels = tuple(output_label_values(card.classes))
        self.lookup = np.asarray(self.channel_labels, dtype=np.uint8)

    def _onnx(self, engine: str):
        if engine not in ("auto", "torch", "onnxruntime"):
            raise ValueError(f"engine must be auto, torch or onnxruntime, got {engine!r}")
        if engine == "onnxruntime" and self.device.type != "cpu":
            raise ValueError("the onnxruntime engine runs on the CPU only")
        use = engine == "onnxruntime" or (engine == "auto" and self.device.type == "cpu"
                                          and self.amp_dtype is None and onnxruntime_available())
        if not use:
            return None
        size_in = self.members[0].input_size((self.tile,) * 3)
        return OnnxMembers(self.members, self.card, size_in)

    def describe(self) -> str:
        return f"{len(self.members)} of {self.n_available} members" if self.n_available > 1 else ""

    # ---------------------------------------------------------------- the run
    def predict(self, volume: Volume, start_slice: int | None = None, on_slice=None,
                cancel: CancelToken | None = None, progress=None) -> Prediction:
        grid = self.plan.grid(volume.geometry)
        hu = grid.to_model(volume.array)
        head = head_box(hu, self.plan.head_threshold_hu)
        x = self.plan.map_intensity(hu)
        del hu
        slabs = self._slabs(grid, head, start_slice)
        out = _Output(grid, volume, self.lookup, [t for slab in slabs for t in slab])
        n_tiles = sum(len(s) for s in slabs)
        total, done = n_tiles * len(self.members), 0
        for m in range(len(self.members)):
            for slab in slabs:
                for tile in slab:
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    out.add(tile, self._tile_probabilities(m, x, tile))
                    done += 1
                    if progress is not None:
                        progress(done, total, f"member {m + 1}/{len(self.members)}: "
                                              f"tile {done - m * n_tiles}/{n_tiles}")
                out.emit(slab[0].lo[grid.slice_axis], slab[0].hi[grid.slice_axis], on_slice)
            if m == 0:
                out.emit_background(on_slice)
        if total == 0 and progress is not None:
            progress(1, 1, "no head found: nothing to segment")
        return Prediction(LabelMap(out.labels, volume.geometry), out.probs, self.channel_labels)

    def _slabs(self, grid: VolumeGrid, head, start_slice: int | None) -> list[list[Tile]]:
        """Tiles holding head voxels, grouped by their range along the slice axis, the viewed slab first."""
        if head is None:
            return []
        mask, box = head
        chunks = [axis_chunks(b.start, b.stop, self.tile, self.align, full=self.onnx is not None) for b in box]
        keep = tuple(axis_chunks(b.start, b.stop, self.tile, self.align)[-1][1] for b in box)  # as short tiles end
        a = grid.slice_axis
        slabs = []
        for c in chunks[a]:
            per_axis = [[c] if ax == a else chunks[ax] for ax in range(3)]
            tiles = [Tile(tuple(p[0] for p in combo), tuple(p[1] for p in combo), keep)
                     for combo in itertools.product(*per_axis)]
            tiles = [t for t in tiles if mask[tuple(slice(a, h) for a, h in zip(t.lo, t.kept_hi))].any()]
            if tiles:
                slabs.append(tiles)
        depth = grid.scan_shape[0]
        z = depth // 2 if start_slice is None else min(max(int(start_slice), 0), depth - 1)
        viewed = grid.slice_position(z)
        return sorted(slabs, key=lambda s: _distance(viewed, s[0].lo[a], s[0].hi[a]))

    def _tile_probabilities(self, m: int, x: np.ndarray, tile: Tile) -> np.ndarray:
        """Softmax (C, *tile.size) float32 of member ``m`` on one tile."""
        member = self.members[m]
        size_in = member.input_size(tile.size)
        margin = [(i - o) // 2 for i, o in zip(size_in, tile.size)]
        block = _edge_padded_block(x, [a - k for a, k in zip(tile.lo, margin)], size_in)
        with torch.inference_mode():
            t = torch.from_numpy(block)[None, None].to(self.device)
            if self.onnx is not None:
                logits = self.onnx(m, t)
            elif self.amp_dtype is None:
                logits = member(t)
            else:
                with torch.autocast(self.device.type, dtype=self.amp_dtype):
                    logits = member(t)
            return torch.softmax(logits.float(), dim=1)[0].cpu().numpy()


class OnnxMembers:
    """Each member run by ONNX Runtime at one input size: exported once (TorchScript-based exporter, fixed
    shape) to ``onnx_cache_dir()/<architecture>-<weights hash>-m<member>-<size>.onnx``, then reused."""

    def __init__(self, members: list[nn.Module], card: ModelCard, input_size, cache_dir=None):
        self.members, self.input_size = members, tuple(int(v) for v in input_size)
        folder = cache_dir or onnx_cache_dir()
        size = "x".join(map(str, self.input_size))
        digests = [(card.weights_sha256 or state_digest(m))[:20] for m in members]
        self.paths = [folder / f"{card.architecture}-{d}-m{i}-{size}.onnx" for i, d in enumerate(digests)]
        self.sessions: list = [None] * len(members)

    def session(self, m: int):
        if self.sessions[m] is None:
            import onnxruntime as ort

            if not self.paths[m].is_file():
                export_fixed_onnx(self.members[m], self.paths[m], (1, 1, *self.input_size))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            self.sessions[m] = ort.InferenceSession(str(self.paths[m]), opts, providers=["CPUExecutionProvider"])
        return self.sessions[m]

    def __call__(self, m: int, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.input_size:
            raise ValueError(f"the exported network takes {self.input_size}, got {tuple(x.shape[2:])}")
        session = self.session(m)
        return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.cpu().numpy()})[0])


def export_fixed_onnx(module: nn.Module, path, input_shape) -> None:
    """Export ``module`` for one input shape (atomic write)."""
    import warnings

    from ctseg_core.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval().cpu(), (torch.zeros(input_shape),), str(tmp), input_names=["input"],
                          output_names=["logits"], opset_version=18, dynamo=False)


def _distance(p: float, lo: int, hi: int) -> float:
    return 0.0 if lo <= p < hi else min(abs(p - lo), abs(p - (hi - 1)))


def _edge_padded_block(x: np.ndarray, lo, size) -> np.ndarray:
    """``x[lo : lo + size]`` along each axis, repeating the edge voxels outside the array."""
    inner = tuple(slice(max(a, 0), min(a + s, n)) for a, s, n in zip(lo, size, x.shape))
    pads = [(max(-a, 0), max(a + s - n, 0)) for a, s, n in zip(lo, size, x.shape)]
    block = x[inner]
    if any(p for pair in pads for p in pair):
        block = np.pad(block, pads, mode="edge")
    return np.ascontiguousarray(block, dtype=np.float32)


class _Output:
    """Sums of the members' probabilities on the tiles' box, and the result on the scan's grid."""

    def __init__(self, grid: VolumeGrid, volume: Volume, lookup: np.ndarray, tiles: list[Tile]):
        self.grid, self.lookup = grid, lookup
        channels = len(lookup)
        if tiles:
            lo = [min(t.lo[a] for t in tiles) for a in range(3)]
            hi = [min(max(t.kept_hi[a] for t in tiles), grid.model_shape[a]) for a in range(3)]
        else:
            lo, hi = [0, 0, 0], [0, 0, 0]
        self.box_lo, self.box_hi = lo, hi
        self.sums = np.zeros((channels, *[h - a for a, h in zip(lo, hi)]), np.float32)
        self.count = np.zeros([h - a for a, h in zip(lo, hi)], np.uint8)  # members summed per voxel
        self.labels = np.zeros(volume.shape, np.uint8)
        self.probs = np.zeros((volume.shape[0], channels, *volume.shape[1:]), np.float16)
        self.probs[:, 0] = 1.0
        self.planes = [grid.slice_planes(z) for z in range(volume.shape[0])]
        self.emitted = np.zeros(volume.shape[0], bool)

    def add(self, tile: Tile, probs: np.ndarray) -> None:
        hi = [min(h, n) for h, n in zip(tile.kept_hi, self.grid.model_shape)]
        src = probs[(slice(None),) + tuple(slice(0, h - a) for a, h in zip(tile.lo, hi))]
        dst = tuple(slice(a - b, h - b) for a, h, b in zip(tile.lo, hi, self.box_lo))
        self.sums[(slice(None),) + dst] += src
        self.count[dst] += 1

    def emit(self, lo: int, hi: int, on_slice) -> None:
        """Bring the scan slices that blend planes in [lo, hi) of the slice axis back to the scan's grid."""
        for z, (p0, p1, w) in enumerate(self.planes):
            if lo <= p0 < hi or (w > 0 and lo <= p1 < hi):
                self._store(z, self._plane(p0) * (1 - w) + (self._plane(p1) * w if w > 0 else 0), on_slice)

    def emit_background(self, on_slice) -> None:
        """Slices no tile touched stay background; hand them over once."""
        for z in np.flatnonzero(~self.emitted):
            self._store(int(z), None, on_slice)

    def _store(self, z: int, plane: np.ndarray | None, on_slice) -> None:
        if plane is not None:
            p = self.grid.plane_to_scan(plane)
            self.probs[z] = p
            self.labels[z] = self.lookup[np.argmax(p, axis=0)]
        self.emitted[z] = True
        if on_slice is not None:
            on_slice(z, self.labels[z], self.probs[z])

    def _plane(self, q: int) -> np.ndarray:
        """(C, a, b) mean probabilities on plane ``q`` across the slice axis; background outside the box."""
        a = self.grid.slice_axis
        in_plane = [ax for ax in range(3) if ax != a]
        shape = [self.grid.model_shape[ax] for ax in in_plane]
        plane = np.zeros((self.sums.shape[0], *shape), np.float32)
        plane[0] = 1.0
        if not self.box_lo[a] <= q < self.box_hi[a]:
            return plane
        sums = np.take(self.sums, q - self.box_lo[a], axis=1 + a)
        count = np.take(self.count, q - self.box_lo[a], axis=a).astype(np.float32)
        mean = np.where(count > 0, sums / np.maximum(count, 1), plane[(slice(None),) + tuple(
            slice(self.box_lo[ax], self.box_hi[ax]) for ax in in_plane)])
        plane[(slice(None),) + tuple(slice(self.box_lo[ax], self.box_hi[ax]) for ax in in_plane)] = mean
        return plane
