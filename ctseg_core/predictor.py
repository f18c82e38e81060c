"""The inference engine: a ``Predictor`` owns the model and the device; a strategy chosen by the model
card's plan does the work, behind one call:

``predict(volume, start_slice=z, on_slice=cb, cancel=token, progress=p) -> Prediction``: labels and
probabilities on the scan's own grid; ``on_slice(z, labels_yx, probs_cyx)`` as slices become available,
the viewed slice's region first; ``progress(done, total, message)``; cancelling raises ``Cancelled``.
The returned labels are final: the anatomical guard's last rule (no specks) needs the whole volume, so a
slice sent earlier may lose a speck there.

- ``SliceStrategy`` (plan kind "slices", ``ctseg_core.preprocess.Plan``): a 2-D model, slice by slice in
  an order that starts at ``z`` and spreads outward (z, z+1, z-1, z+2, ...). The first batch holds one
  slice so the viewed slice's overlay arrives first; later batches are larger (nnU-Net style batching).
- ``VolumeStrategy`` (plan kind "volume", ``ctseg_core.volume_strategy``): a 3-D model or ensemble on
  tiles of the head, the slab of tiles around the viewed slice first, member after member.
- ``SlabStrategy`` and ``ScanStrategy`` (plan kind "slices", ``ctseg_core.sequence_inference``): models the
  registry calls "slab" (RSANet: K consecutive slices in, K out) and "scan" (RADnet: per-slice probabilities
  of the whole scan, no label map: ``Prediction.slice_probabilities`` and ``Prediction.triage``).
Preprocessing comes from the model card's plan, the same code training uses. A model whose classes are
not ctseg's maps each output channel to a ctseg label (``ctseg_core.labels.output_label_values``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ctseg_core.atomic import atomic_path
from ctseg_core.checkpoint import ModelCard, check_plan_fits, load_checkpoint
from ctseg_core.errors import CheckpointError, DeviceError
from ctseg_core.guard import Guard
from ctseg_core.jobs import CancelToken
from ctseg_core.prediction import (  # noqa: F401 (Prediction, SliceCallback, slice_order, slice_uncertainty: re-exported)
    Prediction,
    SliceCallback,
    amp_dtype,
    label_lookup,
    labelled_prediction,
    labels_from_probabilities,
    onnx_cache_dir,
    onnxruntime_available,
    slice_order,
    slice_uncertainty,
    softmax_classes,
    state_digest,
    view_order_batches,
)
from ctseg_core.preprocess import Plan
from ctseg_core.sliding_window import sliding_window
from ctseg_core.volume import Volume


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


class OnnxRuntimeEngine:
    """The model run by ONNX Runtime on the CPU (measured faster than eager PyTorch there).

    The model is exported once (TorchScript-based exporter, batch/height/width dynamic) to
    ``onnx_cache_dir()/<architecture>-<weights hash>.onnx`` and reused by later sessions."""

    def __init__(self, model: nn.Module, card: ModelCard, threads: int | None = None,
                 cache_dir: Path | None = None):
        import onnxruntime as ort

        digest = (card.weights_sha256 or state_digest(model))[:20]
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


class Predictor:
    """Runs a model on a scan through the strategy its card's plan names (see the module docstring).

    ``options`` go to the strategy: ``SliceStrategy`` takes batch_size, tta, amp, channels_last, engine;
    ``VolumeStrategy`` takes members, tile, amp, engine."""

    def __init__(self, model: nn.Module, card: ModelCard, device: str | torch.device = "auto", **options):
        self.card = card
        self.device = resolve_device(device)
        self.plan = check_plan_fits(card)
        self.kind = card_model_kind(card)
        strategy = strategy_class(self.plan.kind, self.kind)
        accepted = strategy_options(strategy)
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            what = self.plan.kind if self.kind == "slice" else self.kind
            raise CheckpointError(f"{card.architecture} is a {what} model: option(s) "
                                  f"{', '.join(unknown)} do not apply to it (it takes {', '.join(accepted)})")
        self.strategy = strategy(model, card, self.plan, self.device, **options)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "auto", **options) -> "Predictor":
        model, card = load_checkpoint(path, device="cpu")
        return cls(model, card, device=device, **options)

    @property
    def model(self) -> nn.Module:
        return self.strategy.model

    @property
    def guard(self) -> Guard | None:
        """The anatomical guard the strategy applies to the model's labels (None: none)."""
        return getattr(self.strategy, "guard", None)

    def describe(self) -> str:
        """One line: the card's summary and how the strategy runs it (e.g. "4 of 12 members")."""
        detail = self.strategy.describe()
        return self.card.summary() + (f" ({detail})" if detail else "")

    def predict(self, volume: Volume, start_slice: int | None = None, on_slice: SliceCallback | None = None,
                cancel: CancelToken | None = None, progress=None) -> Prediction:
        return self.strategy.predict(volume, start_slice=start_slice, on_slice=on_slice, cancel=cancel,
                                     progress=progress)


def applicable_options(card: ModelCard, options: dict) -> dict:
    """The subset of ``options`` that the card's model kind takes (e.g. ``members`` only for volume models,
    ``tta`` only for slice models)."""
    accepted = strategy_options(strategy_class(check_plan_fits(card).kind, card_model_kind(card)))
    return {k: v for k, v in options.items() if k in accepted}


def card_model_kind(card: ModelCard) -> str:
    """The registry's kind of the card's model ("slice", "slab" or "scan"; ``ctseg_core.models.KIND_DOCS``);
    a network built outside the registry runs as a slice model."""
    from ctseg_core.models import is_model, model_kind

    return model_kind(card.architecture) if is_model(card.architecture) else "slice"


def strategy_options(strategy) -> list[str]:
    """The keyword options a strategy class takes (besides model, card, plan, device)."""
    import inspect

    params = inspect.signature(strategy.__init__).parameters
    return [n for n in params if n not in ("self", "model", "card", "plan", "device")]


def strategy_class(kind: str, model_kind: str = "slice"):
    """The strategy class for a plan kind ("slices" or "volume") and, on slices, the registry's model kind:
    "slice" (``SliceStrategy``), "slab" or "scan" (``ctseg_core.sequence_inference``)."""
    if kind == "slices" and model_kind in ("slab", "scan"):
        from ctseg_core.sequence_inference import ScanStrategy, SlabStrategy

        return SlabStrategy if model_kind == "slab" else ScanStrategy
    if kind == "slices":
        return SliceStrategy
    if kind == "volume":
        from ctseg_core.volume_strategy import VolumeStrategy

        return VolumeStrategy
    raise ValueError(f"no inference strategy for plan kind {kind!r}")


class SliceStrategy:
    """A 2-D model, slice by slice from the viewed slice outwards (see the module docstring)."""

    def __init__(self, model: nn.Module, card: ModelCard, plan: Plan, device: torch.device,
                 batch_size: int | None = None, tta: bool = False, amp: str = "auto",
                 channels_last: bool | None = None, engine: str = "torch", guard: Guard | None = Guard()):
        """``amp``: see ``amp_dtype``. ``channels_last``: default on for GPUs, off on CPU (measured slower
        there with GroupNorm). ``engine``: "torch" (default), "onnxruntime" (CPU only; exports the model
        once to a cache), or "auto": ONNX Runtime on a CPU where it is installed, else torch
        (benchmarks/bench_inference.py measures the difference). ``guard``: the anatomical guard applied
        to each slice's labels and, at the end, its whole-volume rules (``ctseg_core.guard``; a threshold it leaves
        unset comes from the model card; None: the model's labels as they are)."""
        self.card = card
        self.guard = guard.for_card(card) if guard is not None else None
        self.plan = plan
        self.device = device
        self.tta = tta
        self.amp_dtype = amp_dtype(amp, device)
        self.channels_last = (self.device.type != "cpu") if channels_last is None else channels_last
        model = model.eval().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.engine = self._engine(engine, model, card)
        self.batch_size = batch_size
        self.first_batch_size = 1
        self.lookup = label_lookup(card)

    def describe(self) -> str:
        return ""

    def _engine(self, engine: str, model: nn.Module, card: ModelCard):
        if engine not in ("auto", "torch", "onnxruntime"):
            raise ValueError(f"engine must be auto, torch or onnxruntime, got {engine!r}")
        if engine == "onnxruntime" and self.device.type != "cpu":
            raise ValueError("the onnxruntime engine runs on the CPU only")
        use_ort = engine == "onnxruntime" or (engine == "auto" and self.device.type == "cpu"
                                              and self.amp_dtype is None and onnxruntime_available())
        return OnnxRuntimeEngine(model, card) if use_ort else None

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
        depth, height, width = volume.shape
        grid = self.plan.grid((height, width), volume.spacing[1:])
        labels = np.zeros(volume.shape, dtype=np.uint8)
        model_labels = np.zeros(volume.shape, dtype=np.uint8) if self.guard is not None else None
        probs = np.zeros((depth, self.model_classes, height, width), dtype=np.float16)
        batch = self.auto_batch_size(grid.padded_shape)
        done = 0
        for zs in view_order_batches(depth, start_slice, self.first_batch_size, batch, cancel):
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
        return labelled_prediction(volume, labels, probs, self.card, self.guard, model_labels)

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
            labels = labels_from_probabilities(p, self.lookup)
            return p.to(torch.float16).cpu().numpy(), labels.cpu().numpy()

    def _scan_probabilities(self, x: torch.Tensor, grid) -> torch.Tensor:
        """Softmax on the scan's grid: logits are mapped back (cropped, resampled), then normalised."""
        p = softmax_classes(grid.to_scan(self._logits(x)))
        if self.tta:  # left-right flip, flipped back on the model's grid
            p = (p + softmax_classes(grid.to_scan(self._logits(x.flip(-1)).flip(-1)))) / 2
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
