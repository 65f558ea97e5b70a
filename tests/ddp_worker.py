"""Worker launched by tests/test_distributed.py under torchrun (not a test module: no ``test_`` prefix).

``python -m torch.distributed.run --nproc_per_node N tests/ddp_worker.py WORKDIR SCENARIO[,SCENARIO...]``
(scenarios: equiv, first, resume, bad, recipe, cli, crash).

Each scenario trains a tiny CAM net on generated data with :func:`wsol.distributed.make_trainer` and every rank
saves ``WORKDIR/<scenario>_rank<r>.pt`` (history, final weights, how often it wrote checkpoints / metrics).
The data, model and configs are defined here and imported by the test for the one-process references.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from wsol.data.records import collate_skip_bad
from wsol.trainer import SeededShuffleSampler, TrainConfig, derive_seed

SEED = 3
BATCH = 8


class TinyNet(nn.Module):
    """conv-ReLU backbone → 1×1 conv classifier → CAMs; logits = GAP of the CAMs (no BatchNorm, no dropout:
    every sample's loss depends on that sample only, so data parallelism is exact up to rounding)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cams = self.classifier(self.backbone(x))
        return cams.mean(dim=(2, 3)), cams


def make_model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def make_data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 8, 8, generator=g) + y.view(-1, 1, 1, 1).float() * torch.rand(n, 1, 1, 1, generator=g)
    return TensorDataset(x, y)


# 41 = 5 global batches of 8 + one of 1: rank 1 has no share of the last step (zero-sample step).
TRAIN = make_data(41, seed=1)
VAL = make_data(21, seed=2)
VAL1 = make_data(1, seed=5)


def order_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Order-sensitive summaries: they match only if the gathered logits come in dataset order."""
    w = torch.arange(1, logits.shape[0] + 1, dtype=torch.float64)
    return {"n_val": float(logits.shape[0]), "weighted_logit": float((w * logits[:, 1].double()).sum()),
            "weighted_target": float((w * targets.double()).sum())}


def config(out_dir: str | Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"epochs": 2, "batch_size": BATCH, "optimizer": "adam", "lr": 0.05, "lr_step_epochs": 1,
                            "lr_gamma": 0.5, "seed": SEED, "device": "cpu", "out_dir": str(out_dir),
                            "progress": False, "log_format": "none", "regularizer": "l1", "reg_weight": 1e-3}
    base.update(kw)
    return TrainConfig(**base)


class PartlyUnreadable(Dataset):
    """32 items; the ``bad`` ones return ``None`` (like an undecodable image in ``RecordDataset``)."""

    collate_fn = staticmethod(collate_skip_bad)

    def __init__(self) -> None:
        self.data = make_data(32, seed=4)
        order = list(SeededShuffleSampler(32, derive_seed(SEED, 0, 0)))  # epoch 0 of the trainer's sampler
        # Epoch 1, step 0: rank 1's whole share (positions 1, 3, 5, 7) is unreadable; step 1: the whole batch.
        self.bad = set(order[0:BATCH][1::2]) | set(order[BATCH : 2 * BATCH])

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> Any:
        return None if i in self.bad else self.data[i]


def scenario(name: str, workdir: Path) -> tuple[nn.Module, Dataset, Dataset | None, TrainConfig, dict[str, Any]]:
    """(model, train set, val set, config, fit kwargs) of a scenario."""
    if name == "equiv":  # 2 epochs, backbone frozen in the first (DDP is rebuilt when it thaws)
        return make_model(), TRAIN, VAL, config(workdir / name, freeze_backbone_epochs=1), {}
    if name == "first":  # epoch 1 only, resumed elsewhere with another world size
        return make_model(), TRAIN, VAL, config(workdir / name, epochs=1), {}
    if name == "resume":  # epoch 2 from the 1-process checkpoint the test wrote there
        return make_model(), TRAIN, VAL, config(workdir / name), {"resume": True}
    if name == "bad":  # + a 1-image validation set (rank 1 validates nothing) and a DataLoader worker
        return make_model(), PartlyUnreadable(), VAL1, config(workdir / name, num_workers=1), {}
    raise ValueError(f"unknown scenario {name!r}")


WRITES = {"checkpoints": 0, "metrics": 0}


def count_writes() -> None:
    """Count the trainer's file writes in this process (it writes through these module-level helpers only)."""
    import wsol.trainer as tr

    save, text = tr.atomic_torch_save, tr.atomic_write_text

    def counted_save(obj: Any, path: Any) -> None:
        WRITES["checkpoints"] += 1
        save(obj, path)

    def counted_text(path: Any, data: str) -> None:
        WRITES["metrics"] += 1
        text(path, data)

    tr.atomic_torch_save, tr.atomic_write_text = counted_save, counted_text  # type: ignore[assignment]


class CrashOnRank1:
    """Mixin: rank 1 raises after its second step."""

    def on_batch_end(self, epoch: int, batch: int, loss: torch.Tensor) -> None:
        if self.env.rank == 1 and batch == 1:  # type: ignore[attr-defined]
            raise RuntimeError("injected failure for the test")


def run(name: str, workdir: Path) -> None:
    from wsol.distributed import DistributedTrainer, init_distributed, make_trainer

    env = init_distributed("gloo", timeout_s=60)  # make_trainer reuses this group
    assert env is not None
    if name == "crash":
        (workdir / f"crash_start_rank{env.rank}.txt").write_text(repr(time.time()))
        cls = type("CrashTrainer", (CrashOnRank1, DistributedTrainer), {})
        cls(make_model(), TRAIN, VAL, config(workdir / name), env=env).fit()
        return
    if name == "recipe":  # the `wsol train` driver on an image-folder dataset the test wrote
        import wsol.data.folder  # noqa: F401  (registers the "folder" reader; wsol.data may not import it yet)
        from wsol.recipes import load_run_config, train_from_config

        cfg = load_run_config(workdir / "run.yaml", [f"train.out_dir={workdir / name}"])
        torch.manual_seed(0)  # the model's initialization (train_from_config does not seed it)
        torch.save({"history": train_from_config(cfg)}, workdir / f"{name}_rank{env.rank}.pt")
        return
    if name == "cli":  # `wsol train --config ...` (what `torchrun -m wsol train` runs in each process)
        from wsol.cli import main as wsol_main

        torch.manual_seed(0)
        rc = wsol_main(["train", "--config", str(workdir / "run.yaml"), f"train.out_dir={workdir / name}"])
        torch.save({"rc": rc}, workdir / f"{name}_rank{env.rank}.pt")
        return
    model, train, val, cfg, fit_kw = scenario(name, workdir)
    trainer = make_trainer(model, train, val, cfg, metrics_fn=order_metrics if val is not None else None)
    WRITES.update(checkpoints=0, metrics=0)
    history = trainer.fit(**fit_kw)
    torch.save(
        {"history": history, "state": trainer.model.state_dict(), "writes": dict(WRITES), "world": env.world_size,
         "type": type(trainer).__name__},
        workdir / f"{name}_rank{env.rank}.pt",
    )


def main() -> None:
    from torch.distributed.elastic.multiprocessing.errors import record

    workdir, names = Path(sys.argv[1]), sys.argv[2].split(",")
    count_writes()
    record(lambda: [run(n, workdir) for n in names])()


if __name__ == "__main__":
    main()
