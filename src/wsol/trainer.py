"""Generic, reproducible, resumable training loop for CAM models ``logits, cams = model(x)``.

Training recipe of Moreaux et al. (2018), "Mind the Regularized GAP", §3.2-3.3:

* loss = categorical cross-entropy ``l = -Σ_k Y_k log p_k`` on the logits (``loss="ce"``; ``"bce"`` =
  sigmoid binary cross-entropy for multi-label / one-logit binary tasks), plus an optional *activity
  regularization* term (eq. 5-6) ``L1 = α Σ_k |Σ_{x,y} f_k(x, y)|`` or ``L2 = α Σ_k sqrt(Σ_{x,y} f_k(x, y)²)``
  on the last convolutional activations ``f_k``, so the total loss is ``l + L_reg``;
* Nadam optimizer (``optimizer="nadam"``, default lr 0.002 = Keras' default), learning rate decayed every
  second epoch (``lr_step_epochs=2``; ``lr_gamma=0.94`` as in Szegedy et al. 2016, which Moreaux follows);
* the pre-trained backbone frozen for the first N epochs (``freeze_backbone_epochs``; Moreaux: 10) so the new
  head is initialised w.r.t. the pre-trained features, then everything is optimised;
* the weights with the lowest validation loss are kept (``best.pt``).

Reproducibility: at the start of epoch ``e`` the global torch / numpy / python RNGs are re-seeded from
``(seed, e)`` and the shuffle order comes from a sampler whose generator is seeded from ``(seed, e)`` too, so
an epoch is a pure function of (weights, optimizer state, seed, e). Hence ``fit(resume=True)`` continues from
``last.pt`` to bit-identical weights on CPU (on CUDA only up to non-deterministic kernels).

Distributed training only needs to override :meth:`Trainer.make_sampler` (e.g. a ``DistributedSampler``),
:meth:`Trainer.wrap_model` (DDP), :meth:`Trainer.reduce_sums` (all-reduce) and set ``is_main_process``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

# Not tqdm.auto: its asyncio variant calls iter() on the DataLoader at construction, which starts the workers
# twice and consumes the sampler once more.
from tqdm import tqdm

from wsol.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from wsol.heads import ActivityRegularizer

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "SeededShuffleSampler",
    "TrainConfig",
    "Trainer",
    "atomic_torch_save",
    "derive_seed",
    "load_checkpoint",
    "resolve_device",
    "seed_everything",
    "seed_worker",
]

CHECKPOINT_FORMAT_VERSION = 1
Regularizer = Callable[[Any], torch.Tensor]
MetricsFn = Callable[[torch.Tensor, torch.Tensor], Mapping[str, float]]

# Config fields that do not change the trained weights: they may differ between a run and its resumption.
_RESUME_FREE_FIELDS = frozenset(
    {"epochs", "out_dir", "num_workers", "progress", "log_format", "checkpoint_every", "device", "channels_last"}
)


# ----------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Hyper-parameters of :class:`Trainer` (defaults follow Moreaux et al. 2018 §3.3 where it says something).

    Attributes:
        epochs: total number of epochs (a resumed run continues up to this number).
        batch_size: mini-batch size.
        optimizer: ``"sgd"`` (with ``momentum``), ``"adam"`` or ``"nadam"``.
        lr: initial learning rate (Keras' Nadam default 0.002).
        momentum: SGD momentum (ignored by Adam / Nadam).
        weight_decay: L2 weight decay passed to the optimizer.
        lr_step_epochs: StepLR period in epochs (Moreaux: 2); 0 keeps the learning rate constant.
        lr_gamma: StepLR multiplicative factor.
        freeze_backbone_epochs: number of initial epochs during which the backbone parameters get no update.
        freeze_backbone_bn: while frozen, also keep the backbone's BatchNorm layers in eval mode (running
            statistics unchanged, as Keras does for non-trainable layers).
        loss: ``"ce"`` softmax cross-entropy on integer (or probability) targets, or ``"bce"`` sigmoid binary
            cross-entropy on multi-hot targets (a ``(B,)`` 0/1 target with one logit is accepted too).
        regularizer: activity regularization ``"none"``, ``"l1"`` (eq. 5) or ``"l2"`` (eq. 6).
        reg_weight: α of eq. 5-6 (Moreaux: 1e-7).
        grad_clip_norm: clip the global gradient norm to this value (None: no clipping).
        seed: master seed (shuffling, RNG re-seeding at each epoch).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        amp: mixed precision (autocast) — only on CUDA; ignored with a warning on CPU.
        amp_dtype: ``"bf16"`` or ``"fp16"`` (fp16 also uses a GradScaler).
        num_workers: DataLoader worker processes.
        out_dir: folder for ``last.pt``, ``best.pt``, ``metrics.csv`` and ``metrics.json``.
        checkpoint_every: write ``last.pt`` every this many epochs (and always after the last epoch).
        progress: show a tqdm progress bar (only when stderr is a terminal).
        log_format: per-epoch summary line on stderr: ``"text"``, ``"json"`` (one JSON object per line) or
            ``"none"``.
        channels_last: run model and inputs in ``torch.channels_last`` memory format (same numbers up to
            float rounding; often much faster for convolutions on CPU).
        head_lr_mult: learning rate of the non-backbone parameters (the new CAM layers) = ``lr × head_lr_mult``;
            the backbone keeps ``lr``. Choe et al. 2020 (wsolevaluation) train the new layers 10× faster
            than the pre-trained ones. Needs a model exposing its backbone (as for freezing).
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: Literal["sgd", "adam", "nadam"] = "nadam"
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_step_epochs: int = 2
    lr_gamma: float = 0.94
    freeze_backbone_epochs: int = 0
    freeze_backbone_bn: bool = True
    loss: Literal["ce", "bce"] = "ce"
    regularizer: Literal["none", "l1", "l2"] = "none"
    reg_weight: float = 0.0
    grad_clip_norm: float | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    amp_dtype: Literal["bf16", "fp16"] = "bf16"
    num_workers: int = 0
    out_dir: str = "runs/train"
    checkpoint_every: int = 1
    progress: bool = True
    log_format: Literal["text", "json", "none"] = "text"
    channels_last: bool = False
    head_lr_mult: float = 1.0

    def __post_init__(self) -> None:
        self.out_dir = str(self.out_dir)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""

        def pos_int(name: str, minimum: int = 1) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
                raise ValueError(f"TrainConfig.{name} must be an int >= {minimum}, got {v!r}")

        def choice(name: str, options: tuple[str, ...]) -> None:
            if getattr(self, name) not in options:
                raise ValueError(f"TrainConfig.{name} must be one of {list(options)}, got {getattr(self, name)!r}")

        def finite(name: str, minimum: float = 0.0, strict: bool = False) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and math.isfinite(v) and (v > minimum if strict else v >= minimum)
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be a finite number {'>' if strict else '>='} {minimum}, "
                                 f"got {v!r}")

        pos_int("epochs")
        pos_int("batch_size")
        pos_int("lr_step_epochs", 0)
        pos_int("freeze_backbone_epochs", 0)
        pos_int("seed", 0)
        pos_int("num_workers", 0)
        pos_int("checkpoint_every")
        choice("optimizer", ("sgd", "adam", "nadam"))
        choice("loss", ("ce", "bce"))
        choice("regularizer", ("none", "l1", "l2"))
        choice("amp_dtype", ("bf16", "fp16"))
        choice("log_format", ("text", "json", "none"))
        finite("lr", 0.0)
        finite("head_lr_mult", 0.0, strict=True)
        finite("momentum", 0.0)
        finite("weight_decay", 0.0)
        finite("lr_gamma", 0.0, strict=True)
        finite("reg_weight", 0.0)
        if self.grad_clip_norm is not None:
            finite("grad_clip_norm", 0.0, strict=True)
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            raise ValueError(f"TrainConfig.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-python dict (safe for JSON and ``torch.load(weights_only=True)``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}")
        return cls(**dict(d))


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------
def derive_seed(seed: int, *keys: int, bits: int = 63) -> int:
    """A seed that is a pure function of ``(seed, *keys)`` (numpy ``SeedSequence`` hashing), ``< 2**bits``."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 32 | int(state[1])) >> (64 - bits))


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy / python from the per-worker torch seed."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → CUDA if available else CPU; a CUDA request without CUDA raises ``ValueError``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available")
    return dev


class SeededShuffleSampler(Sampler[int]):
    """Random permutation of ``range(num_samples)`` drawn from a generator seeded with ``seed`` at *every*
    ``iter()``: iterating twice yields the same order (unlike ``RandomSampler(generator=g)``, whose order
    depends on how often ``g`` was used before), so the order is a pure function of the seed.
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.num_samples = int(num_samples)
        self.seed = int(seed)

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed)
        return iter(torch.randperm(self.num_samples, generator=gen).tolist())

    def __len__(self) -> int:
        return self.num_samples


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, ``os.replace``; on failure ``path`` is untouched."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a trainer checkpoint with ``torch.load(weights_only=True, map_location="cpu")``.

    Raises:
        ValueError: missing, truncated / corrupt file, or not a trainer checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"checkpoint {str(path)!r} cannot be loaded (corrupt or not a torch file): {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} is not a wsol trainer checkpoint (format {CHECKPOINT_FORMAT_VERSION})")
    return ckpt


def _rng_state() -> dict[str, Any]:
    """All global RNG states as tensors / plain python (loadable with ``weights_only=True``)."""
    bitgen, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": str(bitgen),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": list(py_state), "gauss_next": gauss_next},
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["bit_generator"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))


def _split_output(out: Any) -> torch.Tensor:
    """Logits of a model output: ``(logits, cams)`` tuple / ``CAMOutput`` (first element) or a bare tensor."""
    logits = out if isinstance(out, torch.Tensor) else (out[0] if isinstance(out, (tuple, list)) and out else None)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must return (logits (B, C), cams); got logits {shape}")
    return logits


def _unpack_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` from a batch ``(x, y, *extras)`` (extras such as annotations are ignored)."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError("the dataset must return (input, target[, ...]) items")
    return batch[0], batch[1]


# ----------------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------------
class Trainer:
    """Train ``model`` on ``train_set``, validating on ``val_set`` each epoch, with checkpoints and resume.

    Args:
        model: ``nn.Module`` with ``forward(x) -> (logits (B, C), cams)`` (a ``CAMOutput`` or a plain tuple).
            For ``freeze_backbone_epochs > 0`` it must have a ``backbone_parameters()`` method or a ``backbone``
            sub-module.
        train_set: dataset of ``(input, target[, ...])``.
        val_set: optional validation dataset; ``best.pt`` tracks the lowest validation loss (train loss
            when None).
        config: hyper-parameters (default :class:`TrainConfig`).
        regularizer: ``fn(model_output) -> scalar tensor`` added *as is* to the loss. When None and
            ``config.regularizer != "none"``, ``wsol.heads.activity_regularization(maps, kind, reg_weight)`` is
            used on ``output.extras["activations"]`` (``output.cams`` if the model gives no such extra).
        metrics_fn: ``fn(val_logits (N, C), val_targets) -> {name: float}`` on CPU tensors, logged with a
            ``val_`` prefix.

    Raises:
        ValueError: ``out_dir`` not writable, backbone freezing requested but no backbone exposed, bad config.
    """

    #: Logging and checkpoint writing happen only where this is True (rank 0 in distributed training).
    is_main_process: bool = True
    #: Plain data (str / numbers / lists / dicts) stored under ``"extras"`` in every checkpoint, e.g. the full
    #: run config of ``wsol train`` so that ``wsol evaluate`` can rebuild the data pipeline.
    checkpoint_extras: Mapping[str, Any] = {}  # replaced per instance, never mutated in place

    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        val_set: Dataset | None = None,
        config: TrainConfig | None = None,
        regularizer: Regularizer | None = None,
        metrics_fn: MetricsFn | None = None,
    ) -> None:
        self.config = config if config is not None else TrainConfig()
        self.config.validate()
        cfg = self.config
        self.device = resolve_device(cfg.device)
        self.out_dir = Path(cfg.out_dir)
        if self.is_main_process:
            self._check_out_dir()
        self.model = model.to(self.device)
        if self.config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_set = train_set
        self.val_set = val_set
        self.metrics_fn = metrics_fn
        self.regularizer = self._resolve_regularizer(regularizer)
        needs_backbone = cfg.freeze_backbone_epochs > 0 or cfg.head_lr_mult != 1.0
        self._backbone_params = self._find_backbone_params() if needs_backbone else []
        self._amp = cfg.amp and self.device.type == "cuda"
        if cfg.amp and not self._amp:
            warnings.warn("TrainConfig.amp=True ignored: mixed precision is only used on CUDA", stacklevel=2)
        self._amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bf16" else torch.float16
        self.optimizer = self.make_optimizer()
        step = cfg.lr_step_epochs if cfg.lr_step_epochs > 0 else 1
        gamma = cfg.lr_gamma if cfg.lr_step_epochs > 0 else 1.0
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=step, gamma=gamma)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self._amp and self._amp_dtype == torch.float16)
        self.history: list[dict[str, Any]] = []
        self.best_val_loss = math.inf
        self.epoch = 0  # number of completed epochs

    # -- setup ----------------------------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    def _check_out_dir(self) -> None:
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.out_dir) as fh:
                fh.write(b"ok")
        except OSError as exc:
            raise ValueError(f"TrainConfig.out_dir={str(self.out_dir)!r} is not a writable folder: {exc}") from exc

    def _resolve_regularizer(self, regularizer: Regularizer | None) -> Regularizer | None:
        cfg = self.config
        if regularizer is not None:
            if cfg.regularizer != "none":
                warnings.warn(
                    f"an explicit regularizer was passed; TrainConfig.regularizer={cfg.regularizer!r} is ignored",
                    stacklevel=3,
                )
            return regularizer
        if cfg.regularizer == "none":
            return None
        return ActivityRegularizer(cfg.regularizer, cfg.reg_weight)

    def _find_backbone_params(self) -> list[nn.Parameter]:
        model = self.model
        if callable(getattr(model, "backbone_parameters", None)):
            params = list(model.backbone_parameters())  # type: ignore[operator]
        elif isinstance(getattr(model, "backbone", None), nn.Module):
            params = list(model.backbone.parameters())  # type: ignore[union-attr]
        else:
            raise ValueError(
                f"TrainConfig.freeze_backbone_epochs={self.config.freeze_backbone_epochs} / head_lr_mult="
                f"{self.config.head_lr_mult} need the backbone, but {type(model).__name__} has neither a "
                "backbone_parameters() method nor a `backbone` sub-module"
            )
        if not params:
            raise ValueError(f"{type(model).__name__} exposes an empty backbone; cannot freeze it")
        return params

    def _backbone_bn_modules(self) -> list[nn.Module]:
        ids = {id(p) for p in self._backbone_params}
        bn_types = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
        out = []
        for m in self.model.modules():
            own = list(m.parameters(recurse=False))
            if isinstance(m, bn_types) and own and all(id(p) in ids for p in own):
                out.append(m)
        return out

    def make_optimizer(self) -> torch.optim.Optimizer:
        """Optimizer over all model parameters (frozen ones simply receive no gradient). Overridable.

        With ``head_lr_mult != 1`` there are two parameter groups: the backbone at ``lr`` and the rest at
        ``lr × head_lr_mult`` (the step schedule scales both).
        """
        cfg = self.config
        params: list[Any] = list(self.model.parameters())
        if cfg.head_lr_mult != 1.0:
            backbone = {id(p) for p in self._backbone_params}
            head = [p for p in params if id(p) not in backbone]
            params = [{"params": [p for p in params if id(p) in backbone]},
                      {"params": head, "lr": cfg.lr * cfg.head_lr_mult}]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.NAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    # -- overridable hooks for distributed training ---------------------------------------------------------
    def make_sampler(self, dataset: Dataset, epoch: int) -> Sampler[int]:
        """Shuffling sampler of epoch ``epoch``; its order is a pure function of ``(seed, epoch)``."""
        return SeededShuffleSampler(len(dataset), derive_seed(self.config.seed, epoch, 0))  # type: ignore[arg-type]

    def make_loader(self, dataset: Dataset, sampler: Sampler[int], epoch: int) -> DataLoader:
        """DataLoader with seeded workers (``seed_worker``) and a per-epoch base-seed generator."""
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            sampler=sampler,
            num_workers=self.config.num_workers,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(derive_seed(self.config.seed, epoch, 1)),
            pin_memory=self.device.type == "cuda",
            # Datasets that skip undecodable images (wsol.data.RecordDataset) bring their own collate.
            collate_fn=getattr(dataset, "collate_fn", None),
        )

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.config.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """Module used for forward passes (e.g. DDP); checkpoints always hold ``self.model``'s weights."""
        return model

    def reduce_sums(self, sums: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Turn per-process metric sums into floats — the one place where a distributed all-reduce goes."""
        return {k: float(v) for k, v in sums.items()}

    def on_batch_end(self, epoch: int, batch: int, loss: torch.Tensor) -> None:
        """Called after each optimisation step (no-op; for callbacks / tests)."""

    def on_epoch_end(self, epoch: int, record: Mapping[str, Any]) -> None:
        """Called after each epoch's metrics are logged and checkpoints are written (no-op)."""

    # -- losses ---------------------------------------------------------------------------------------------
    def task_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean CE (``loss="ce"``) or BCE-with-logits (``loss="bce"``) of a batch, computed in float32."""
        logits = logits.float()
        if self.config.loss == "ce":
            if target.is_floating_point() and target.shape == logits.shape:
                return F.cross_entropy(logits, target)  # probability targets
            if target.ndim != 1 or target.shape[0] != logits.shape[0]:
                raise ValueError(f"loss='ce' needs (B,) class targets for logits {tuple(logits.shape)}, "
                                 f"got {tuple(target.shape)}")
            return F.cross_entropy(logits, target.long())
        return F.binary_cross_entropy_with_logits(logits, self._bce_target(logits, target))

    @staticmethod
    def _bce_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape == logits.shape:
            return target.float()
        if target.ndim == 1 and target.shape[0] == logits.shape[0]:
            if logits.shape[1] == 1:
                return target.float().unsqueeze(1)
            if not target.is_floating_point():
                return F.one_hot(target.long(), logits.shape[1]).float()
        raise ValueError(f"loss='bce' cannot match targets {tuple(target.shape)} to logits {tuple(logits.shape)}")

    def _losses(self, out: Any, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits = _split_output(out)
        task = self.task_loss(logits, target)
        reg = self.regularizer(out).float() if self.regularizer is not None else torch.zeros((), device=task.device)
        if reg.ndim != 0:
            raise ValueError(f"the regularizer must return a scalar tensor, got shape {tuple(reg.shape)}")
        return task + reg, task, reg

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self._amp:
            return torch.autocast(device_type="cuda", dtype=self._amp_dtype)
        return contextlib.nullcontext()

    @staticmethod
    def _correct(logits: torch.Tensor, target: torch.Tensor, loss: str) -> tuple[torch.Tensor, int]:
        """Number of correct predictions and of predictions: argmax for CE, ``logit > 0`` per label for BCE."""
        if loss == "ce":
            if target.is_floating_point() and target.shape == logits.shape:
                target = target.argmax(1)
            return (logits.argmax(1) == target).sum(), target.numel()
        t = Trainer._bce_target(logits, target)
        return ((logits > 0).float() == t).sum(), t.numel()

    # -- training -------------------------------------------------------------------------------------------
    def _seed_epoch(self, epoch: int) -> None:
        seed_everything(derive_seed(self.config.seed, epoch, 2))

    def _set_backbone_frozen(self, frozen: bool) -> None:
        for p in self._backbone_params:
            p.requires_grad_(not frozen)

    def _bar(self, loader: DataLoader, desc: str) -> Iterator[Any]:
        disable = not (self.config.progress and self.is_main_process and sys.stderr.isatty())
        return iter(tqdm(loader, desc=desc, leave=False, disable=disable, dynamic_ncols=True))

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over ``train_set``; returns sample-weighted mean ``loss``, ``task_loss``, ``reg_loss``."""
        model = self.wrap_model(self.model)
        model.train()
        frozen = epoch < self.config.freeze_backbone_epochs
        if frozen and self.config.freeze_backbone_bn:
            for m in self._backbone_bn_modules():
                m.eval()
        loader = self.make_loader(self.train_set, self.make_sampler(self.train_set, epoch), epoch)
        sums = {k: torch.zeros((), dtype=torch.float64, device=self.device) for k in ("loss", "task", "reg", "n")}
        for b, batch in enumerate(self._bar(loader, f"epoch {epoch + 1}/{self.config.epochs}")):
            if batch is None:  # every image of the batch was unreadable (reported by the dataset)
                continue
            x, y = _unpack_batch(batch)
            x = self._to_device(x)
            y = y.to(self.device, non_blocking=True)
            with self._autocast():
                out = model(x)
                loss, task, reg = self._losses(out, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite training loss {float(loss.detach())} at epoch {epoch + 1}, batch {b} "
                    f"(task {float(task.detach())}, regularizer {float(reg.detach())}); lower the learning rate?"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.config.grad_clip_norm is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            bs = x.shape[0]
            sums["loss"] += loss.detach().double() * bs
            sums["task"] += task.detach().double() * bs
            sums["reg"] += reg.detach().double() * bs
            sums["n"] += bs
            self.on_batch_end(epoch, b, loss.detach())
        r = self.reduce_sums(sums)
        n = max(r["n"], 1.0)
        return {"loss": r["loss"] / n, "task_loss": r["task"] / n, "reg_loss": r["reg"] / n}

    @torch.no_grad()
    def validate(self, epoch: int) -> dict[str, float]:
        """Validation ``loss`` (task + regularizer, as Keras counts activity regularization), ``task_loss``,
        ``accuracy`` and the ``metrics_fn`` results."""
        assert self.val_set is not None
        model = self.wrap_model(self.model)
        model.eval()
        loader = self.make_loader(self.val_set, SequentialSampler(self.val_set), epoch)  # type: ignore[arg-type]
        sums = {k: torch.zeros((), dtype=torch.float64, device=self.device) for k in ("loss", "task", "correct",
                                                                                         "count", "n")}
        all_logits: list[torch.Tensor] = []
        all_targets: list[torch.Tensor] = []
        for batch in self._bar(loader, "validate"):
            if batch is None:
                continue
            x, y = _unpack_batch(batch)
            x = self._to_device(x)
            y = y.to(self.device, non_blocking=True)
            with self._autocast():
                out = model(x)
                loss, task, _ = self._losses(out, y)
            logits = _split_output(out).float()
            correct, count = self._correct(logits, y, self.config.loss)
            bs = x.shape[0]
            sums["loss"] += loss.double() * bs
            sums["task"] += task.double() * bs
            sums["correct"] += correct
            sums["count"] += count
            sums["n"] += bs
            if self.metrics_fn is not None:
                all_logits.append(logits.cpu())
                all_targets.append(y.cpu())
        r = self.reduce_sums(sums)
        n = max(r["n"], 1.0)
        result = {"loss": r["loss"] / n, "task_loss": r["task"] / n, "accuracy": r["correct"] / max(r["count"], 1.0)}
        if self.metrics_fn is not None and all_logits:
            extra = self.metrics_fn(torch.cat(all_logits), torch.cat(all_targets))
            result.update({str(k): float(v) for k, v in extra.items()})
        return result

    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        self._seed_epoch(epoch)
        self._set_backbone_frozen(epoch < self.config.freeze_backbone_epochs)
        lr = float(self.optimizer.param_groups[0]["lr"])
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
        record.update({f"train_{k}": v for k, v in self.train_one_epoch(epoch).items()})
        if self.val_set is not None:
            record.update({f"val_{k}": v for k, v in self.validate(epoch).items()})
        self.scheduler.step()
        record["time_s"] = time.perf_counter() - t0
        return record

    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """Train up to ``config.epochs`` epochs and return the per-epoch history.

        Each history record holds ``epoch`` (1-based), ``lr`` (used during the epoch), ``train_loss``
        (= ``train_task_loss + train_reg_loss``), ``val_loss``, ``val_task_loss``, ``val_accuracy`` (when a
        validation set is given), the ``metrics_fn`` results and ``time_s``. After every epoch ``metrics.csv`` /
        ``metrics.json`` are rewritten, ``last.pt`` is written every ``checkpoint_every`` epochs and ``best.pt``
        whenever the validation loss (train loss without a validation set) improves.

        Args:
            resume: continue from ``out_dir/last.pt`` (weights, optimizer, scheduler, scaler, history, RNG);
                starts from scratch, with a message, when no ``last.pt`` exists.

        Raises:
            KeyboardInterrupt: re-raised after printing how to resume; ``last.pt`` is then the last complete
                checkpoint (checkpoints are written atomically, never half-written).
        """
        if resume:
            self._resume()
        try:
            for epoch in range(self.epoch, self.config.epochs):
                record = self._run_epoch(epoch)
                self.history.append(record)
                self.epoch = epoch + 1
                monitor = record.get("val_loss", record["train_loss"])
                improved = monitor < self.best_val_loss
                if improved:
                    self.best_val_loss = float(monitor)
                if self.is_main_process:
                    last_due = self.epoch % self.config.checkpoint_every == 0 or self.epoch == self.config.epochs
                    if last_due:
                        self.save_checkpoint(self.last_path)
                    if improved:
                        self.save_checkpoint(self.best_path)
                    self._write_metrics()
                    self._log_epoch(record)
                self.on_epoch_end(epoch, record)
        except KeyboardInterrupt:
            if self.is_main_process:
                self._print_interrupt()
            raise
        finally:
            self._set_backbone_frozen(False)
        return self.history

    # -- checkpoints ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as tensors and plain python containers only."""
        return {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_val_loss": float(self.best_val_loss),
            "history": [dict(r) for r in self.history],
            "config": self.config.to_dict(),
            "rng": _rng_state(),
            "model_spec": self._model_spec(),
            "extras": dict(self.checkpoint_extras),
        }

    def _model_spec(self) -> dict[str, Any] | None:
        """How to rebuild the model (``wsol.models.load_model`` reads it), or None for hand-built models."""
        from wsol.models.loading import full_model_spec

        try:
            return full_model_spec(self.model)
        except ValueError:
            return None

    def load_state_dict(self, ckpt: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (model, optimizer, scheduler, scaler, counters, history, RNG)."""
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"]:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch = int(ckpt["epoch"])
        self.best_val_loss = float(ckpt["best_val_loss"])
        self.history = [dict(r) for r in ckpt["history"]]
        _set_rng_state(ckpt["rng"])

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Atomically write :meth:`state_dict` to ``path``."""
        atomic_torch_save(self.state_dict(), path)

    def _resume(self) -> None:
        if not self.last_path.is_file():
            self._say(f"resume: no checkpoint at {self.last_path}; starting from scratch")
            return
        ckpt = load_checkpoint(self.last_path)
        saved = ckpt["config"]
        current = self.config.to_dict()
        changed = sorted(k for k in current if k not in _RESUME_FREE_FIELDS and saved.get(k) != current[k])
        if changed:
            diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
            warnings.warn(f"resuming {self.last_path} with a different config ({diffs}); the result will "
                          "differ from an uninterrupted run", stacklevel=3)
        self.load_state_dict(ckpt)
        self._say(f"resumed from {self.last_path} after epoch {self.epoch}")

    # -- logging --------------------------------------------------------------------------------------------
    def _say(self, msg: str) -> None:
        if self.is_main_process and self.config.log_format != "none":
            tqdm.write(msg, file=sys.stderr)

    def _log_epoch(self, record: Mapping[str, Any]) -> None:
        if self.config.log_format == "json":
            self._say(json.dumps(dict(record)))
        elif self.config.log_format == "text":
            parts = [f"epoch {record['epoch']}/{self.config.epochs}"]
            parts += [f"{k}={v:.4g}" for k, v in record.items() if k != "epoch" and isinstance(v, float)]
            self._say("  ".join(parts))

    def _print_interrupt(self) -> None:
        if self.last_path.is_file():
            try:
                done = int(load_checkpoint(self.last_path)["epoch"])
                where = f"the last complete checkpoint is {self.last_path} (after epoch {done})"
            except ValueError:
                where = f"{self.last_path} could not be read"
        else:
            where = f"no checkpoint was written yet in {self.out_dir}"
        print(
            f"\nTraining interrupted during epoch {self.epoch + 1}; {where}. "
            "Resume with Trainer(...).fit(resume=True) (same config and out_dir).",
            file=sys.stderr,
        )

    def _write_metrics(self) -> None:
        """Rewrite ``metrics.csv`` and ``metrics.json`` from the full history (atomic, so consistent on resume)."""
        fields: list[str] = []
        for r in self.history:
            fields += [k for k in r if k not in fields]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(self.out_dir / "metrics.csv", text.getvalue())
        payload = json.dumps(self.history, indent=1).encode()
        atomic_write_bytes(self.out_dir / "metrics.json", payload)
