"""The inference engine: a ``Predictor`` owns the model, the device and the batching (nnU-Net style).

``predict(volume, start_slice=z, on_slice=cb, cancel=token)`` segments slice by slice in an order that
starts at ``z`` and spreads outward (z, z+1, z-1, z+2, ...). The first batch holds one slice so the
viewed slice's overlay arrives first; later batches are larger. Each slice's labels and
probabilities are mapped back to the volume's own grid and handed to ``on_slice`` as they arrive.
Preprocessing comes from the model card's plan (``ctseg_core.preprocess``), the same code training uses.

Slab models (RSANet) and scan models (RADnet) run through ``ctseg_core.sequence_inference`` behind the
same ``predict``: slabs of consecutive slices from the viewed slice outwards, or every slice's features
then the scan's sequence model; a scan model's ``Prediction`` carries per-slice probabilities
(``slice_probabilities``, ``triage``) and no label map (all background: no overlay).
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ctseg_core.atomic import atomic_path
from ctseg_core.checkpoint import ModelCard, check_plan_fits, load_checkpoint
from ctseg_core.errors import DeviceError
from ctseg_core.guard import Guard
from ctseg_core.jobs import CancelToken
from ctseg_core.sliding_window import sliding_window
from ctseg_core.volume import LabelMap, Volume

SliceCallback = Callable[[int, np.ndarray, np.ndarray], None]  # (z, labels_yx uint8, probs_cyx float16)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU; otherwise the named device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise DeviceError(f"unknown device {device!r} (auto, cpu, cuda, cuda:N or mps)") from exc
    _check_available(dev)
    return dev


def _check_available(dev: torch.device) -> None:
    """DeviceError when ``dev`` is not on this machine (a clear message instead of a CUDA traceback later)."""
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"{dev} was asked for but this machine has no usable CUDA GPU")
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"{dev} does not exist: this machine has {count} CUDA GPU(s) (cuda:0"
                              + (f" to cuda:{count - 1})" if count > 1 else ")"))
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError("mps was asked for but Apple's Metal (MPS) is not available here")


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 natively (AVX512-BF16 or AMX); autocast to bf16 is slow elsewhere."""
    if sys.platform != "linux":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def slice_order(depth: int, start: int | None = None) -> list[int]:
    """Every slice once: start (default the middle), then start+1, start-1, start+2, start-2, ..."""
    if depth <= 0:
        return []
    start = depth // 2 if start is None else int(start)
    if not 0 <= start < depth:
        raise IndexError(f"start slice {start} outside 0..{depth - 1}")
    order = [start]
    for step in range(1, depth):
        for z in (start + step, start - step):
            if 0 <= z < depth:
                order.append(z)
    return order


def onnx_cache_dir() -> Path:
    """Where exported ONNX models are kept (``CTSEG_CACHE`` or ~/.cache/ctseg), one file per weights hash."""
    return Path(os.environ.get("CTSEG_CACHE", Path.home() / ".cache" / "ctseg")) / "onnx"


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxRuntimeEngine:
    """The model run by ONNX Runtime on the CPU (measured faster than eager PyTorch there).

    The model is exported once (TorchScript-based exporter, batch/height/width dynamic) to
    ``onnx_cache_dir()/<architecture>-<weights hash>.onnx`` and reused by later sessions."""

    def __init__(self, model: nn.Module, card: ModelCard, threads: int | None = None,
                 cache_dir: Path | None = None):
        import onnxruntime as ort

        digest = (card.weights_sha256 or _state_digest(model))[:20]
        self.path = (cache_dir or onnx_cache_dir()) / f"{card.architecture}-{digest}.onnx"
        if not self.path.is_file():
            export_onnx(model, self.path, in_chans=int(card.config.get("in_chans", 3)))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(out)


def export_onnx(model: nn.Module, path: Path, in_chans: int = 3, size: int = 256) -> Path:
    """Export ``model`` to ONNX (atomic write) with dynamic batch, height and width."""
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(1, in_chans, size, size)
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval().cpu(), (x,), str(tmp), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
                          opset_version=18, dynamo=False)
    return path


def _state_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over classes with logits floored at 80 below the largest: probabilities stay above
    1e-35 and never become float32 denormals, which slow every later operation on x86 by 10-100x."""
    logits = logits - logits.amax(dim=1, keepdim=True)
    return torch.softmax(logits.clamp_(min=-80.0), dim=1)


def slice_uncertainty(probs_cyx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 (y, x) of one slice's probabilities (C, y, x): 1 - the largest class probability (0 = certain)."""
    return np.subtract(1.0, probs_cyx.max(axis=0), out=out, dtype=np.float32)


@dataclass
class Prediction:
    labels: LabelMap  # what the overlay shows: the model's labels, after the anatomical guard when it is on
    probabilities: np.ndarray | None  # float16 (z, C, y, x) on the volume's grid (the model's, never guarded);
    # None for a scan model (RADnet), which gives per-slice probabilities only
    model_labels: np.ndarray | None = None  # uint8 (z, y, x) argmax before the guard; None when no guard ran
    slice_probabilities: np.ndarray | None = None  # float32 (z,): P(hemorrhage on slice z), scan models only

    @property
    def triage(self):
        """The scan's triage (``ctseg_core.triage.Triage``) when the model gives slice probabilities, else None."""
        if self.slice_probabilities is None:
            return None
        from ctseg_core.triage import Triage

        return Triage(np.asarray(self.slice_probabilities, np.float32))

    def uncertainty(self) -> np.ndarray | None:
        """float32 (z, y, x): ``slice_uncertainty`` of every slice (None without voxel probabilities)."""
        if self.probabilities is None:
            return None
        out = np.empty(self.labels.array.shape, dtype=np.float32)
        for z in range(out.shape[0]):  # per slice: keeps the float32 temporaries small
            slice_uncertainty(self.probabilities[z], out=out[z])
        return out


class Predictor:
    def __init__(self, model: nn.Module, card: ModelCard, device: str | torch.device = "auto",
                 batch_size: int | None = None, tta: bool = False, amp: str = "auto",
                 channels_last: bool | None = None, engine: str = "torch", guard: Guard | None = Guard()):
        """``amp``: "auto" (bf16 or fp16 autocast on CUDA, fp16 on MPS, none on CPU), "bf16", "fp16" or
        "off". ``channels_last``: default on for GPUs, off on CPU (measured slower there with GroupNorm).
        ``engine``: "torch" (default), "onnxruntime" (CPU only; exports the model once to a cache), or
        "auto": ONNX Runtime on a CPU where it is installed, else torch (benchmarks/bench_inference.py
        measures the difference). ``guard``: the anatomical guard applied to each slice's labels
        (``ctseg_core.guard``; None: the model's labels as they are)."""
        from ctseg_core.models import is_model, model_kind

        self.card = card
        self.guard = guard
        self.plan = check_plan_fits(card)
        # "slice", "slab" or "scan"; a network built outside the registry runs as a slice model
        self.kind = model_kind(card.architecture) if is_model(card.architecture) else "slice"
        if tta and self.kind != "slice":
            raise ValueError(f"test-time augmentation applies to slice models; {card.architecture} is a {self.kind} "
                             "model")
        self.device = resolve_device(device)
        self.tta = tta
        self.amp_dtype = self._amp_dtype(amp)
        self.channels_last = (self.device.type != "cpu") if channels_last is None else channels_last
        model = model.eval().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.engine = self._engine(engine, model, card)
        self.batch_size = batch_size
        self.first_batch_size = 1

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto", **kw) -> "Predictor":
        model, card = load_checkpoint(path, device="cpu")
        return cls(model, card, device=device, **kw)

    def _engine(self, engine: str, model: nn.Module, card: ModelCard):
        if engine not in ("auto", "torch", "onnxruntime"):
            raise ValueError(f"engine must be auto, torch or onnxruntime, got {engine!r}")
        if engine == "onnxruntime" and self.device.type != "cpu":
            raise ValueError("the onnxruntime engine runs on the CPU only")
        if self.kind != "slice":  # the exported graph takes one stack of slices
            if engine == "onnxruntime":
                raise ValueError(f"the onnxruntime engine runs slice models; {card.architecture} is a {self.kind} "
                                 "model")
            return None
        use_ort = engine == "onnxruntime" or (engine == "auto" and self.device.type == "cpu"
                                              and self.amp_dtype is None and onnxruntime_available())
        return OnnxRuntimeEngine(model, card) if use_ort else None

    def _amp_dtype(self, amp: str) -> torch.dtype | None:
        if amp == "off":
            return None
        if amp == "bf16":
            if self.device.type == "cpu" and not cpu_has_native_bf16():
                raise ValueError("bf16 autocast asked for on a CPU without native bf16 (it would be slower)")
            return torch.bfloat16
        if amp == "fp16":
            return torch.float16
        if amp != "auto":
            raise ValueError(f"amp must be auto, bf16, fp16 or off, got {amp!r}")
        if self.device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.device.type == "mps":
            return torch.float16
        return None

    def auto_batch_size(self, padded_shape: tuple[int, int]) -> int:
        """Slices per batch after the first: 1 on CPU (bench_inference.py: batches of 2 and 4 gain nothing
        per slice there, and single slices keep callbacks and cancelling prompt);
        on a GPU as many as fit in half the free memory at ~3 kB per input pixel (fp16 activations)."""
        if self.batch_size:
            return int(self.batch_size)
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            per_slice = padded_shape[0] * padded_shape[1] * 3000 * (2 if self.tta else 1)
            return int(max(1, min(32, free // 2 // per_slice)))
        return 1 if self.device.type == "cpu" else 8

    def predict(self, volume: Volume, start_slice: int | None = None, on_slice: SliceCallback | None = None,
                cancel: CancelToken | None = None, progress=None) -> Prediction:
        if self.kind != "slice":
            from ctseg_core.sequence_inference import predict_sequence

            return predict_sequence(self, volume, start_slice, on_slice, cancel, progress)
        depth, height, width = volume.shape
        grid = self.plan.grid((height, width), volume.spacing[1:])
        order = slice_order(depth, start_slice)
        labels = np.zeros(volume.shape, dtype=np.uint8)
        model_labels = np.zeros(volume.shape, dtype=np.uint8) if self.guard is not None else None
        probs = np.zeros((depth, self.model_classes, height, width), dtype=np.float16)
        batch = self.auto_batch_size(grid.padded_shape)
        batches = [order[:self.first_batch_size]] + [order[i:i + batch]
                                                     for i in range(self.first_batch_size, depth, batch)]
        done = 0
        for zs in batches:
            if not zs:
                continue
            if cancel is not None:
                cancel.raise_if_cancelled()
            p, lab = self._predict_batch(volume.array, zs, grid)  # on the scan's grid
            for i, z in enumerate(zs):
                probs[z] = p[i]
                if self.guard is None:
                    labels[z] = lab[i]
                else:
                    model_labels[z] = lab[i]
                    labels[z] = self.guard.apply_slice(volume.array[z], lab[i], volume.spacing[1:])
                if on_slice is not None:
                    on_slice(z, labels[z], probs[z])
            done += len(zs)
            if progress is not None:
                progress(done, depth, f"segmented {done}/{depth} slices")
        return Prediction(LabelMap(labels, volume.geometry), probs, model_labels)

    @property
    def model_classes(self) -> int:
        return int(self.card.config.get("num_classes", len(self.card.classes)))

    def _predict_batch(self, hu: np.ndarray, zs: list[int], grid) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (n, C, H, W) float16, labels (n, H, W) uint8) for slices ``zs``."""
        x = torch.from_numpy(np.stack([self.plan.input_stack(hu, z) for z in zs]))
        x = grid.to_model(x).to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            p = self._scan_probabilities(x, grid)
            labels = p.argmax(dim=1).to(torch.uint8)  # in torch: numpy's float16 argmax is slow
            return p.to(torch.float16).cpu().numpy(), labels.cpu().numpy()

    def _scan_probabilities(self, x: torch.Tensor, grid) -> torch.Tensor:
        """Softmax on the scan's grid: logits are mapped back (cropped, resampled), then normalised."""
        p = _softmax(grid.to_scan(self._logits(x)))
        if self.tta:  # left-right flip, flipped back on the model's grid
            p = (p + _softmax(grid.to_scan(self._logits(x.flip(-1)).flip(-1)))) / 2
        return p

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """float32 logits on the model grid; a patch-trained model runs on sliding windows of its patch size."""
        if self.plan.patch_size:
            return sliding_window(lambda t: self._forward(t).float(), x, self.plan.patch_size)
        return self._forward(x).float()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.engine is not None:
            return self.engine(x)
        if self.amp_dtype is None:
            return self.model(x)
        with torch.autocast(self.device.type, dtype=self.amp_dtype):
            return self.model(x)
