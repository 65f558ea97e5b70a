"""Data-parallel training on ``torch.distributed``: ``torchrun --nproc_per_node N -m wsol train ...``.

One process per GPU (NCCL) or per CPU worker (gloo), each holding a full model replica wrapped in
``DistributedDataParallel`` (DDP). :class:`DistributedTrainer` plugs into the hooks of
:class:`wsol.trainer.Trainer` and keeps its semantics:

* ``TrainConfig.batch_size`` is the **global** batch ``B``; each of the ``W`` processes loads ``B / W`` images.
  The sampler shards the very same seeded permutation the one-process trainer draws: at step ``s`` the global
  batch is ``G_s = π[sB : (s+1)B]`` and rank ``r`` takes ``G_s[r::W]``, so the union of the local batches is
  ``G_s`` (nothing is padded or dropped: the last, shorter batch is split as evenly as possible, a rank may get
  an empty share).
* Gradients are averaged with the weights of the local batch sizes ``n_r`` (a DDP communication hook):
  ``g = Σ_r (n_r / L) g_r`` with ``L = Σ_r n_r`` and ``g_r`` the gradient of the rank's *mean* loss, i.e.
  ``g = (1/L) Σ_{i∈G_s} ∇ℓ_i``: exactly the gradient of the mean loss over the global batch, even for the last
  partial batch or when unreadable images were dropped from some local batches. Hence the weights follow a
  one-process run with the same global batch up to float rounding — for models whose forward pass does not
  mix samples. BatchNorm does: each process normalises with the statistics of its local batch (and rank 0's
  running statistics are broadcast at every forward). ``sync_bn=True`` converts the BatchNorm layers to
  ``SyncBatchNorm`` (CUDA only), which computes the statistics over the global batch.
* A step in which some rank's local batch is empty (all its images unreadable, or no share of the last
  batch) is still taken by every rank: the empty rank runs a zero-sample forward / backward (its gradient
  weight ``n_r / L`` is 0), so no collective is left waiting. When the whole global batch is unreadable every
  rank skips the step together, as the one-process trainer does.
* Validation is sharded in contiguous blocks; the metric sums are all-reduced and the logits / targets given
  to ``metrics_fn`` are all-gathered in dataset order (``metrics_fn`` runs on rank 0, its result is broadcast).
* Only rank 0 logs, shows the progress bar and writes ``last.pt`` / ``best.pt`` / ``metrics.*``. Checkpoints
  hold the un-wrapped model and the sampler depends only on ``(seed, epoch, global batch)``, so a run can
  resume with another number of processes (``--resume``; every rank reads ``last.pt``, which must therefore
  be on a file system shared by all nodes).
* The process group has a finite timeout (``timeout_s``, default 30 min, ``WSOL_DIST_TIMEOUT_S``): a collective
  waiting for a dead peer fails instead of hanging forever. torchrun's agent stops the other workers as soon as
  one exits with an error; each failing rank prints ``wsol: training failed on rank R of W ...``.

Random data augmentation and dropout draw from per-rank seeds (rank 0 uses the one-process seeds), so such
runs are statistically, not numerically, equivalent to a one-process run.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime
import os
import socket
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from wsol.trainer import MetricsFn, Regularizer, TrainConfig, Trainer, derive_seed, seed_everything, seed_worker

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ContiguousShardBatchSampler",
    "DistEnv",
    "DistributedTrainer",
    "ShardedBatchSampler",
    "destroy_distributed",
    "init_distributed",
    "launched_distributed",
    "make_trainer",
]

#: Process-group timeout (seconds) unless ``timeout_s`` or the ``WSOL_DIST_TIMEOUT_S`` environment variable says
#: otherwise. Long enough for rank 0 to write a checkpoint or a slow dataset index to be built on every rank.
DEFAULT_TIMEOUT_S = 1800.0

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_state = {"owned": False, "failed": False}


# ----------------------------------------------------------------------------------------------------------
# Process group
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job.

    Attributes:
        rank: global rank ``0 ≤ rank < world_size``.
        local_rank: rank on this node (= the CUDA device index with NCCL).
        world_size: number of processes.
        backend: ``"nccl"`` or ``"gloo"``.
        device: ``cuda:local_rank`` (NCCL) or ``cpu`` (gloo).
    """

    rank: int
    local_rank: int
    world_size: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def destroy(self) -> None:
        """Destroy the default process group (no-op when it is not initialised)."""
        destroy_distributed()

    def __enter__(self) -> DistEnv:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # After a failure a collective may be stuck: do not risk blocking in the teardown.
        if exc_type is None:
            self.destroy()


def launched_distributed() -> bool:
    """True when the torchrun environment (``WORLD_SIZE``) announces more than one process.

    Raises:
        ValueError: ``WORLD_SIZE`` is set but not an integer.
    """
    return "WORLD_SIZE" in os.environ and _env_int("WORLD_SIZE") > 1


def _env_int(name: str) -> int:
    raw = os.environ.get(name)
    try:
        return int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"environment variable {name}={raw!r} must be an integer (set by torchrun)") from None


def _timeout(timeout_s: float | None) -> float:
    if timeout_s is None:
        raw = os.environ.get("WSOL_DIST_TIMEOUT_S")
        if raw is None:
            return DEFAULT_TIMEOUT_S
        try:
            timeout_s = float(raw)
        except ValueError:
            raise ValueError(f"WSOL_DIST_TIMEOUT_S={raw!r} must be a number of seconds") from None
    if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < float("inf")):
        raise ValueError(f"timeout_s must be a finite number of seconds > 0, got {timeout_s!r}")
    return float(timeout_s)


def _current_env() -> DistEnv:
    backend = str(dist.get_backend())
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    return DistEnv(dist.get_rank(), local_rank, dist.get_world_size(), backend, device)


def init_distributed(backend: str | None = None, timeout_s: float | None = None) -> DistEnv | None:
    """Join the process group described by torchrun's environment; ``None`` when not launched by torchrun.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Idempotent: when the
    default group already exists its :class:`DistEnv` is returned. The group is destroyed at interpreter exit
    (unless a rank failed: tearing down after a failed collective could block).

    Args:
        backend: ``"nccl"`` (one CUDA device per process: ``cuda:LOCAL_RANK``) or ``"gloo"`` (CPU);
            default NCCL when CUDA is available, gloo otherwise.
        timeout_s: collective timeout, after which a rank waiting for a dead or stuck peer raises instead of
            hanging (default :data:`DEFAULT_TIMEOUT_S` or ``WSOL_DIST_TIMEOUT_S``).

    Raises:
        ValueError: partial / malformed torchrun environment, unknown backend, NCCL without CUDA, or
            ``LOCAL_RANK`` beyond the visible CUDA devices.
    """
    if not dist.is_available():
        return None
    if dist.is_initialized():
        return _current_env()
    present = [v for v in _TORCHRUN_VARS if v in os.environ]
    if not present:
        return None
    missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise ValueError(f"incomplete torch.distributed environment: {missing} not set (launch with torchrun)")
    rank, world, local_rank = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} must lie in [0, WORLD_SIZE={world})")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"backend must be 'nccl' or 'gloo', got {backend!r}")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend='nccl' needs CUDA, which is not available; use backend='gloo'")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) are "
                             "visible: start at most that many processes per node (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    timeout = datetime.timedelta(seconds=_timeout(timeout_s))
    kwargs: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout, **kwargs)
    if not _state["owned"]:
        _state["owned"] = True
        atexit.register(_destroy_at_exit)
    return DistEnv(rank, local_rank, world, backend, device)


def destroy_distributed() -> None:
    """Destroy the default process group if it exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _destroy_at_exit() -> None:
    if not _state["failed"]:
        with contextlib.suppress(Exception):
            destroy_distributed()


def _describe_failure(env: DistEnv, exc: BaseException, where: str) -> str:
    msg = (f"wsol: training failed on rank {env.rank} of {env.world_size} (local rank {env.local_rank} on "
           f"{socket.gethostname()}) {where}: {type(exc).__name__}: {exc}")
    collective = isinstance(exc, getattr(dist, "DistError", ())) or any(
        s in str(exc).lower() for s in ("connection closed", "connection reset", "timed out", "timeout", "broken pipe")
    )
    if collective:
        msg += "\n  (a collective operation failed: another rank probably died first; look for its error)"
    return msg


def _report_failure(env: DistEnv, exc: BaseException, where: str) -> None:
    _state["failed"] = True
    print(_describe_failure(env, exc, where), file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------
# Samplers
# ----------------------------------------------------------------------------------------------------------
class ShardedBatchSampler(Sampler[list[int]]):
    """Per-rank batches of a global-batch schedule.

    The global order is ``π = list(base)`` (the one-process trainer's sampler) cut into consecutive global
    batches of ``batch_size`` (the last one shorter, nothing dropped); step ``s`` of rank ``r`` yields
    ``π[sB : (s+1)B][r::W]``. Every rank yields ``ceil(len(π) / B)`` lists, possibly empty (a rank without a
    share of the last batch), so all ranks take the same number of steps.
    """

    def __init__(self, base: Iterable[int], batch_size: int, rank: int, world_size: int) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad shard: batch_size={batch_size}, rank={rank}, world_size={world_size}")
        self.base, self.batch_size, self.rank, self.world_size = base, batch_size, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        order = list(self.base)
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size][self.rank :: self.world_size]

    def __len__(self) -> int:
        return -(-len(self.base) // self.batch_size)  # type: ignore[arg-type]


class ContiguousShardBatchSampler(Sampler[list[int]]):
    """Rank ``r`` takes the ``r``-th of ``W`` contiguous blocks of ``list(base)`` (sizes differ by at most one,
    the first ``len % W`` blocks being longer, as ``numpy.array_split``), in batches of ``batch_size``;
    concatenating the ranks' outputs in rank order restores the original order (used for validation).
    """

    def __init__(self, base: Iterable[int], batch_size: int, rank: int, world_size: int) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad shard: batch_size={batch_size}, rank={rank}, world_size={world_size}")
        self.base, self.batch_size, self.rank, self.world_size = base, batch_size, rank, world_size

    def _block(self) -> list[int]:
        order = list(self.base)
        q, m = divmod(len(order), self.world_size)
        start = self.rank * q + min(self.rank, m)
        return order[start : start + q + (self.rank < m)]

    def __iter__(self) -> Iterator[list[int]]:
        block = self._block()
        for start in range(0, len(block), self.batch_size):
            yield block[start : start + self.batch_size]

    def __len__(self) -> int:
        return -(-len(self._block()) // self.batch_size)


class _NoneForEmpty:
    """Collate wrapper: an empty index list (a rank without a share of the batch) gives ``None`` like a batch of
    unreadable images; other lists go to the dataset's collate (a module-level class so workers can pickle it)."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, items: list[Any]) -> Any:
        return self.collate(items) if items else None


# ----------------------------------------------------------------------------------------------------------
# Gradient averaging weighted by the local batch sizes (DDP communication hook)
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _HookState:
    """Weight ``n_r / L`` of this rank's mean-loss gradient for the current step."""

    weight: float = 1.0
    group: Any = None


def _weighted_allreduce_hook(state: _HookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """``g = Σ_r w_r g_r`` with ``w_r = n_r / L``: the global-batch mean gradient (DDP's default hook uses
    ``w_r = 1 / W``, which equals it only when all local batches have the same size)."""
    buf = bucket.buffer()
    buf.mul_(state.weight)
    fut = dist.all_reduce(buf, group=state.group, async_op=True).get_future()  # type: ignore[union-attr]
    return fut.then(lambda f: f.value()[0])


# DDP.register_comm_hook compares the annotations with the real classes; `from __future__ import annotations` made
# them strings.
_weighted_allreduce_hook.__annotations__.update(bucket=dist.GradBucket, state=_HookState,
                                                 **{"return": torch.futures.Future[torch.Tensor]})


def _logits_of(out: Any) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out[0]


class _StepSync:
    """Training loader of one rank: agrees with the other ranks on every step.

    Per step one all-reduce of the ``W`` local batch sizes ``n`` gives ``L = Σ n``; then
    ``L == 0`` → every rank yields ``None`` (the trainer skips the step everywhere); ``n_r == 0 < L`` → this rank
    yields a zero-sample batch shaped like the others' (one ``all_gather_object`` of empty templates, only on
    such steps) and takes part in the backward pass with weight 0; otherwise the hook weight is ``n_r / L``.
    """

    def __init__(self, loader: DataLoader, trainer: DistributedTrainer) -> None:
        self.loader, self.trainer = loader, trainer

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        t, env = self.trainer, self.trainer.env
        for batch in self.loader:
            n = 0 if batch is None else int(batch[0].shape[0])
            counts = torch.zeros(env.world_size, dtype=torch.int64, device=t.device)
            counts[env.rank] = n
            dist.all_reduce(counts)
            sizes = counts.tolist()
            total = sum(sizes)
            if total == 0:
                yield None
                continue
            if min(sizes) == 0:
                batch = self._fill_empty(batch)
            t._hook_state.weight = n / total
            yield batch

    @staticmethod
    def _fill_empty(batch: Any) -> Any:
        mine = None if batch is None else (batch[0][:0].cpu(), batch[1][:0].cpu())
        templates: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(templates, mine)
        if batch is not None:
            return batch
        return next(tpl for tpl in templates if tpl is not None)


class _ValRecorder:
    """Validation loader of one rank: records the targets of the batches it yields (for ``metrics_fn``)."""

    def __init__(self, loader: DataLoader, sink: list[torch.Tensor]) -> None:
        self.loader, self.sink = loader, sink

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            if batch is not None:
                self.sink.append(batch[1].cpu())
            yield batch


class _LogitRecorder(nn.Module):
    """Forward of the plain model (no DDP in evaluation) that records the float logits on the CPU."""

    def __init__(self, model: nn.Module, sink: list[torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.sink = sink

    def forward(self, x: torch.Tensor) -> Any:
        out = self.model(x)
        self.sink.append(_logits_of(out).detach().float().cpu())
        return out


# ----------------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------------
class DistributedTrainer(Trainer):
    """:class:`~wsol.trainer.Trainer` for one process of a data-parallel job (see the module docstring).

    Args:
        model, train_set, val_set, regularizer, metrics_fn: as for :class:`~wsol.trainer.Trainer`.
        config: ``batch_size`` is the *global* batch, divided evenly among the ``world_size`` processes.
            ``device`` ``"auto"`` / ``"cuda"`` / ``"cuda:N"`` becomes ``cuda:LOCAL_RANK`` with NCCL (pick GPUs
            with ``CUDA_VISIBLE_DEVICES``); ``"cpu"`` requires the gloo backend.
        env: the process group (default :func:`init_distributed`).
        sync_bn: convert BatchNorm layers to ``SyncBatchNorm`` (statistics over the global batch; CUDA only).
        find_unused_parameters: passed to DDP (for models with parameters that get no gradient in a step).

    Raises:
        ValueError: not in a process group, global batch not divisible by the world size, incompatible device,
            ``sync_bn`` without CUDA, or any :class:`~wsol.trainer.Trainer` error.
    """

    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        val_set: Dataset | None = None,
        config: TrainConfig | None = None,
        regularizer: Regularizer | None = None,
        metrics_fn: MetricsFn | None = None,
        *,
        env: DistEnv | None = None,
        sync_bn: bool = False,
        find_unused_parameters: bool = False,
    ) -> None:
        env = env if env is not None else init_distributed()
        if env is None:
            raise ValueError("DistributedTrainer needs a torch.distributed process group: launch with torchrun")
        self.env = env
        config = config if config is not None else TrainConfig()
        if config.batch_size % env.world_size:
            nearest = env.world_size * max(1, round(config.batch_size / env.world_size))
            raise ValueError(
                f"TrainConfig.batch_size={config.batch_size} is the global batch and must be divisible by the "
                f"number of processes ({env.world_size}); e.g. {nearest}"
            )
        config = dataclasses.replace(config, device=self._device_for(config.device, env))
        if sync_bn:
            if env.device.type != "cuda":
                raise ValueError("sync_bn=True needs CUDA devices (SyncBatchNorm has no CPU implementation)")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.is_main_process = env.rank == 0  # before Trainer.__init__: only rank 0 checks / creates out_dir
        self.local_batch_size = config.batch_size // env.world_size
        self.find_unused_parameters = find_unused_parameters
        self._hook_state = _HookState()
        self._ddp: DistributedDataParallel | None = None
        self._ddp_key: tuple[bool, ...] = ()
        self._validating = False
        self._val_logits: list[torch.Tensor] | None = None  # recording for metrics_fn when not None
        self._val_targets: list[torch.Tensor] | None = None
        super().__init__(model, train_set, val_set, config, regularizer, metrics_fn)
        inner = self.regularizer
        self.regularizer = None if inner is None else _EmptySafeRegularizer(inner)

    @staticmethod
    def _device_for(requested: str, env: DistEnv) -> str:
        if env.device.type == "cuda":
            if requested == "cpu":
                raise ValueError("TrainConfig.device='cpu' with the NCCL backend: use backend='gloo' for CPU runs")
            return str(env.device)
        if requested not in ("auto", "cpu"):
            raise ValueError(f"TrainConfig.device={requested!r} with the {env.backend} backend, which runs on the "
                             "CPU here; use device='auto' or 'cpu' (or NCCL on CUDA)")
        return "cpu"

    # -- hooks ----------------------------------------------------------------------------------------------
    def _seed_epoch(self, epoch: int) -> None:
        # Per-rank streams for dropout / augmentation (identical streams would correlate the ranks' samples).
        if self.env.rank == 0:
            super()._seed_epoch(epoch)
        else:
            seed_everything(derive_seed(self.config.seed, epoch, 2, self.env.rank))

    def make_sampler(self, dataset: Dataset, epoch: int) -> ShardedBatchSampler:  # type: ignore[override]
        """This rank's share of the one-process sampler's global batches (see :class:`ShardedBatchSampler`)."""
        base = super().make_sampler(dataset, epoch)
        return ShardedBatchSampler(base, self.config.batch_size, self.env.rank, self.env.world_size)

    def make_loader(self, dataset: Dataset, sampler: Sampler[Any], epoch: int) -> Any:  # type: ignore[override]
        """Training (``sampler`` from :meth:`make_sampler`): a step-synchronised loader; validation: the
        sampler's order split into contiguous per-rank blocks, with the targets recorded for ``metrics_fn``."""
        train = not self._validating
        if train and not isinstance(sampler, ShardedBatchSampler):
            raise TypeError(f"DistributedTrainer.make_sampler must return a ShardedBatchSampler, got "
                            f"{type(sampler).__name__}")
        batches: Sampler[list[int]] = sampler if train else ContiguousShardBatchSampler(
            sampler, self.local_batch_size, self.env.rank, self.env.world_size
        )
        keys = (epoch, 1) if self.env.rank == 0 else (epoch, 1, self.env.rank)
        loader = DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=self.config.num_workers,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(derive_seed(self.config.seed, *keys)),
            pin_memory=self.device.type == "cuda",
            collate_fn=_NoneForEmpty(getattr(dataset, "collate_fn", None) or default_collate),
        )
        if train:
            return _StepSync(loader, self)
        return loader if self._val_targets is None else _ValRecorder(loader, self._val_targets)

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """DDP with the weighted gradient hook for training (rebuilt when the set of trainable parameters
        changes, e.g. when the backbone is unfrozen: DDP only synchronises parameters that required a gradient
        when it was built); the plain model, recording logits, for validation."""
        if self._validating:
            return model if self._val_logits is None else _LogitRecorder(model, self._val_logits)
        key = tuple(p.requires_grad for p in model.parameters())
        if self._ddp is None or key != self._ddp_key:
            # A replaced wrapper's reducer stays inert: its autograd hooks only act after its own forward.
            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            ddp = DistributedDataParallel(model, device_ids=ids, find_unused_parameters=self.find_unused_parameters)
            ddp.register_comm_hook(self._hook_state, _weighted_allreduce_hook)
            self._ddp, self._ddp_key = ddp, key
        return self._ddp

    def reduce_sums(self, sums: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """All-reduce (sum) the per-rank metric sums."""
        names = list(sums)
        stacked = torch.stack([sums[k].to(self.device, torch.float64) for k in names])
        dist.all_reduce(stacked)
        return dict(zip(names, stacked.tolist(), strict=True))

    def task_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """As the base class, but 0 (still attached to the graph) for the zero-sample batch of a rank without
        data in a step, instead of the NaN of a mean over nothing."""
        if logits.shape[0] == 0:
            return logits.float().sum() * 0.0
        return super().task_loss(logits, target)

    # -- validation -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, epoch: int) -> dict[str, float]:
        """Sharded validation; ``metrics_fn`` gets all ranks' logits / targets in dataset order."""
        fn = self.metrics_fn
        logits: list[torch.Tensor] = []
        targets: list[torch.Tensor] = []
        self.metrics_fn, self._validating = None, True
        if fn is not None:
            self._val_logits, self._val_targets = logits, targets
        try:
            result = super().validate(epoch)
        finally:
            self.metrics_fn, self._validating = fn, False
            self._val_logits = self._val_targets = None
        if fn is not None:
            result.update(self._gathered_metrics(fn, logits, targets))
        return result

    def _gathered_metrics(self, fn: MetricsFn, logits: Sequence[torch.Tensor],
                          targets: Sequence[torch.Tensor]) -> dict[str, float]:
        if len(logits) != len(targets):
            raise RuntimeError(f"validation recorded {len(logits)} forward passes for {len(targets)} batches")
        mine = (torch.cat(list(logits)), torch.cat(list(targets))) if logits else None
        parts: list[Any] = [None] * self.env.world_size
        dist.all_gather_object(parts, mine)
        out: list[dict[str, float] | None] = [None]
        if self.env.rank == 0:
            got = [p for p in parts if p is not None]
            out[0] = ({str(k): float(v) for k, v in fn(torch.cat([p[0] for p in got]),
                                                        torch.cat([p[1] for p in got])).items()} if got else {})
        dist.broadcast_object_list(out, src=0)
        return dict(out[0] or {})

    # -- fit ------------------------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """:meth:`Trainer.fit` on every rank; every rank resumes from ``last.pt`` (and checks that all ranks
        found the same epoch), the ranks wait for rank 0's last writes before returning. An exception is
        reported with the rank (``wsol: training failed on rank R of W ...``) and re-raised."""
        try:
            if resume:
                with _warnings_only_on_main(self.is_main_process):
                    self._resume()
                self._check_same_epoch()
            history = super().fit(resume=False)
            dist.barrier()
            return history
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            _report_failure(self.env, exc, f"at epoch {self.epoch + 1}")
            raise

    def _check_same_epoch(self) -> None:
        ep = torch.tensor([self.epoch, -self.epoch], dtype=torch.int64, device=self.device)
        dist.all_reduce(ep, op=dist.ReduceOp.MAX)
        hi, lo = int(ep[0]), -int(ep[1])
        if hi != lo:
            raise ValueError(f"the ranks resumed from different epochs ({lo} to {hi}; this rank: {self.epoch}): "
                             f"{self.last_path} must be on a file system shared by all nodes")


@contextlib.contextmanager
def _warnings_only_on_main(is_main: bool) -> Iterator[None]:
    """Silence Python warnings on the other ranks (one copy of each message instead of ``W``)."""
    if is_main:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class _EmptySafeRegularizer:
    """The trainer's regularizer, returning an attached 0 on a zero-sample batch (a batch mean over nothing is
    NaN). Wrapping keeps the per-sample-mean regularizers (``wsol.heads.activity_regularization``) exact under
    the ``n_r / L`` gradient weights."""

    def __init__(self, inner: Regularizer) -> None:
        self.inner = inner

    def __call__(self, out: Any) -> torch.Tensor:
        logits = _logits_of(out)
        if logits.shape[0] == 0:
            return logits.float().sum() * 0.0
        return self.inner(out)

    def __repr__(self) -> str:
        return repr(self.inner)


# ----------------------------------------------------------------------------------------------------------
# Entry point for commands
# ----------------------------------------------------------------------------------------------------------
def make_trainer(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None = None,
    config: TrainConfig | None = None,
    **kw: Any,
) -> Trainer:
    """A :class:`DistributedTrainer` when launched by torchrun with ``WORLD_SIZE > 1`` (joining the process
    group: gloo when ``config.device == "cpu"`` or CUDA is missing, NCCL otherwise), a plain
    :class:`~wsol.trainer.Trainer` otherwise.

    Args:
        model, train_set, val_set, config: as for :class:`~wsol.trainer.Trainer`.
        **kw: ``regularizer``, ``metrics_fn`` (both trainers); ``sync_bn``, ``find_unused_parameters``,
            ``backend``, ``timeout_s`` (distributed only; ignored by the one-process trainer).
    """
    dist_only = {k: kw.pop(k) for k in ("sync_bn", "find_unused_parameters", "backend", "timeout_s") if k in kw}
    if not launched_distributed():
        return Trainer(model, train_set, val_set, config, **kw)
    device = config.device if config is not None else "auto"
    backend = dist_only.pop("backend", None) or ("gloo" if device == "cpu" or not torch.cuda.is_available()
                                                 else "nccl")
    env = init_distributed(backend, dist_only.pop("timeout_s", None))
    if env is None:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but this torch build has no torch.distributed")
    try:
        return DistributedTrainer(model, train_set, val_set, config, env=env, **dist_only, **kw)
    except BaseException as exc:
        _report_failure(env, exc, "while setting up the trainer")
        raise
