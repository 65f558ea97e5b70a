"""Tests of wsol.distributed: DDP on gloo (CPU) launched with torchrun, against the one-process Trainer.

One torchrun launch (2 processes, tests/ddp_worker.py) runs every scenario in turn — startup dominates the cost
— and ends with the crash scenario; each test below checks one scenario's outputs.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import ddp_worker as w
from wsol.distributed import (
    ContiguousShardBatchSampler,
    DistEnv,
    DistributedTrainer,
    ShardedBatchSampler,
    init_distributed,
    make_trainer,
)
from wsol.trainer import SeededShuffleSampler, Trainer, derive_seed, load_checkpoint

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs gloo")

WORKER = Path(__file__).with_name("ddp_worker.py")
HAVE_TRAIN_COMMAND = (Path(__file__).parents[1] / "src/wsol/commands/train.py").is_file()
# crash last: it ends the job
SCENARIOS = ",".join(["equiv", "first", "resume", "bad", "recipe", *(["cli"] if HAVE_TRAIN_COMMAND else []), "crash"])
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")


def torchrun(args: list[str], timeout: float = 240.0) -> tuple[int, str, float]:
    """Run ``torchrun --standalone --nproc_per_node 2 ARGS``; (exit code, stdout + stderr, end time)."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=WORKER.parent.parent)
    return proc.returncode, proc.stdout + proc.stderr, time.time()


def write_folder_dataset(root: Path) -> None:
    """Image-folder dataset: class ``a`` = dark noise, class ``b`` = noise with a bright square."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for cls in ("a", "b"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
                if cls == "b":
                    r, c = rng.integers(0, 24, 2)
                    img[r : r + 16, c : c + 16] = 255
                Image.fromarray(img).save(folder / f"{i}.png")


def run_config(root: Path, out_dir: Path) -> dict[str, Any]:
    return {
        "model": {"name": "lenet5", "head": "cam", "pooling": "gap", "in_chans": 3},
        "data": {"dataset": "folder", "root": str(root), "train_split": "train", "val_split": "val",
                 "test_split": None, "recipe": "none", "image_size": [32, 32]},
        "train": {"epochs": 2, "batch_size": 4, "optimizer": "sgd", "lr": 0.05, "seed": 1, "device": "cpu",
                  "progress": False, "log_format": "none", "out_dir": str(out_dir)},
        "log": {"tensorboard": False},
    }


@dataclass
class Launch:
    workdir: Path
    returncode: int
    output: str
    end_time: float  # time.time() when torchrun returned

    def report(self, name: str, rank: int) -> dict[str, Any]:
        path = self.workdir / f"{name}_rank{rank}.pt"
        assert path.is_file(), f"{path.name} missing; torchrun output:\n{self.output[-4000:]}"
        return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def launch() -> Iterator[Launch]:
    # Not tmp_path_factory: pytest deletes all but the 3 newest base temp folders, also those of concurrent
    # pytest processes, and this folder must survive until the module is done.
    with tempfile.TemporaryDirectory(prefix="wsol-ddp-") as tmp:
        yield _launch(Path(tmp))


def _launch(workdir: Path) -> Launch:
    # "resume": epoch 1 by one process here, epoch 2 by two processes there.
    model, train, val, cfg, _ = w.scenario("resume", workdir)
    Trainer(model, train, val, dataclasses.replace(cfg, epochs=1), metrics_fn=w.order_metrics).fit()
    write_folder_dataset(workdir / "images")
    (workdir / "run.yaml").write_text(yaml.safe_dump(run_config(workdir / "images", workdir / "unused")))
    rc, out, end = torchrun([str(WORKER), str(workdir), SCENARIOS])
    return Launch(workdir, rc, out, end)


def one_process(name: str, out_dir: Path, **cfg_kw: Any) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    model, train, val, cfg, _ = w.scenario(name, out_dir)
    cfg = dataclasses.replace(cfg, out_dir=str(out_dir), **cfg_kw)
    trainer = Trainer(model, train, val, cfg, metrics_fn=w.order_metrics if val is not None else None)
    return trainer.fit(), trainer.model.state_dict()


def assert_same_weights(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    assert got.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-5, msg=k)


def assert_same_history(got: list[dict[str, Any]], ref: list[dict[str, Any]]) -> None:
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        assert g.keys() == r.keys()
        for k in r:
            if k != "time_s":
                assert g[k] == pytest.approx(r[k], rel=1e-5, abs=1e-6), k


# ----------------------------------------------------------------------------------------------------------
# Samplers (no process group needed)
# ----------------------------------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 60), per_rank=st.integers(1, 5), world=st.integers(1, 4), seed=st.integers(0, 99))
def test_sharded_batches_union_is_the_global_batch(n: int, per_rank: int, world: int, seed: int) -> None:
    base = SeededShuffleSampler(n, seed)
    batch = per_rank * world
    order = list(base)
    shards = [list(ShardedBatchSampler(base, batch, r, world)) for r in range(world)]
    steps = -(-n // batch)
    assert all(len(s) == steps for s in shards)  # every rank takes the same number of steps
    assert all(len(ShardedBatchSampler(base, batch, r, world)) == steps for r in range(world))
    for s in range(steps):
        union = sorted(i for r in range(world) for i in shards[r][s])
        assert union == sorted(order[s * batch : (s + 1) * batch])  # nothing padded, nothing dropped
        sizes = [len(shards[r][s]) for r in range(world)]
        assert max(sizes) - min(sizes) <= 1


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 40), batch=st.integers(1, 6), world=st.integers(1, 5))
def test_contiguous_shards_concatenate_to_the_order(n: int, batch: int, world: int) -> None:
    order = list(range(100, 100 + n))
    blocks = [[i for b in ContiguousShardBatchSampler(order, batch, r, world) for i in b] for r in range(world)]
    assert [i for blk in blocks for i in blk] == order
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    assert all(len(b) <= batch for r in range(world) for b in ContiguousShardBatchSampler(order, batch, r, world))


def test_sharded_batches_by_hand() -> None:
    base = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 10]  # 11 items, global batch 4, 2 ranks
    assert list(ShardedBatchSampler(base, 4, 0, 2)) == [[9, 7], [5, 3], [1, 10]]
    assert list(ShardedBatchSampler(base, 4, 1, 2)) == [[8, 6], [4, 2], [0]]
    assert list(ShardedBatchSampler([1, 2, 3, 4, 5], 4, 1, 2)) == [[2, 4], []]  # no share of the last step
    with pytest.raises(ValueError, match="rank=2"):
        ShardedBatchSampler(base, 4, 2, 2)


# ----------------------------------------------------------------------------------------------------------
# Set-up errors and the one-process fallback (no process group needed)
# ----------------------------------------------------------------------------------------------------------
def test_without_torchrun_make_trainer_gives_a_plain_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    assert init_distributed() is None
    trainer = make_trainer(w.make_model(), w.TRAIN, None, w.config(tmp_path), sync_bn=True, timeout_s=5)
    assert type(trainer) is Trainer


def test_incomplete_torchrun_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'"):
        init_distributed("gloo")
    for var, value in (("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "1")):
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"RANK=2 must lie in \[0, WORLD_SIZE=2\)"):
        init_distributed("gloo")
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK='x' must be an integer"):
        init_distributed("gloo")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="timeout_s"):
        init_distributed("gloo", timeout_s=float("inf"))
    with pytest.raises(ValueError, match="backend must be"):
        init_distributed("mpi")


def test_global_batch_must_divide_among_processes(tmp_path: Path) -> None:
    env = DistEnv(rank=0, local_rank=0, world_size=3, backend="gloo", device=torch.device("cpu"))
    with pytest.raises(ValueError, match=r"batch_size=8 is the global batch .* divisible .* \(3\); e.g. 9"):
        DistributedTrainer(w.make_model(), w.TRAIN, None, w.config(tmp_path), env=env)
    env2 = dataclasses.replace(env, world_size=2)
    with pytest.raises(ValueError, match="sync_bn=True needs CUDA"):
        DistributedTrainer(w.make_model(), w.TRAIN, None, w.config(tmp_path), env=env2, sync_bn=True)
    with pytest.raises(ValueError, match=r"device='cuda' with the gloo backend"):
        DistributedTrainer(w.make_model(), w.TRAIN, None, w.config(tmp_path, device="cuda"), env=env2)
    assert not any(tmp_path.iterdir())  # refused before anything was written


# ----------------------------------------------------------------------------------------------------------
# torchrun, 2 gloo processes
# ----------------------------------------------------------------------------------------------------------
def test_two_processes_equal_one_process_with_the_same_global_batch(launch: Launch, tmp_path: Path) -> None:
    """41 samples, global batch 8 (the last step has 1 sample: rank 1 runs a zero-sample step), backbone
    frozen in epoch 1 (DDP rebuilt when it thaws), L1 activity regularizer, order-sensitive metrics_fn."""
    r0, r1 = launch.report("equiv", 0), launch.report("equiv", 1)
    assert r0["type"] == "DistributedTrainer" and r0["world"] == 2
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k  # the replicas stay identical
    history, state = one_process("equiv", tmp_path)
    assert_same_weights(r0["state"], state)
    assert_same_history(r0["history"], history)
    assert r0["history"][1]["val_n_val"] == 21.0  # every validation sample once, gathered in dataset order
    assert r0["history"][1]["val_weighted_target"] == sum((i + 1) * (i % 2) for i in range(21))
    assert state["backbone.0.weight"].ne(w.make_model().backbone[0].weight).all()  # the backbone did train


def test_only_rank_0_writes(launch: Launch) -> None:
    r0, r1 = launch.report("equiv", 0), launch.report("equiv", 1)
    assert r1["writes"] == {"checkpoints": 0, "metrics": 0}
    assert r0["writes"]["checkpoints"] >= 2 and r0["writes"]["metrics"] == 2  # last.pt per epoch, metrics.csv
    out = launch.workdir / "equiv"
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "metrics.csv", "metrics.json"]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"]["batch_size"] == w.BATCH  # the global batch is recorded
    for k, v in r0["state"].items():
        assert torch.equal(ckpt["model"][k], v), k  # the un-wrapped model's keys (no "module." prefix)
    assert len((out / "metrics.csv").read_text().strip().splitlines()) == 3


def test_resume_from_two_processes_with_one(launch: Launch, tmp_path: Path) -> None:
    launch.report("first", 0)
    first = launch.workdir / "first"
    assert load_checkpoint(first / "last.pt")["epoch"] == 1
    model, train, val, cfg, _ = w.scenario("first", first)
    resumed = Trainer(model, train, val, dataclasses.replace(cfg, epochs=2), metrics_fn=w.order_metrics)
    history = resumed.fit(resume=True)
    ref_history, ref_state = one_process("first", tmp_path, epochs=2)
    assert_same_weights(resumed.model.state_dict(), ref_state)
    assert_same_history(history, ref_history)


def test_resume_from_one_process_with_two(launch: Launch, tmp_path: Path) -> None:
    r0 = launch.report("resume", 0)
    ref_history, ref_state = one_process("resume", tmp_path)
    assert_same_weights(r0["state"], ref_state)
    assert_same_weights(launch.report("resume", 1)["state"], ref_state)
    assert_same_history(r0["history"], ref_history)


def test_unreadable_batches_do_not_hang(launch: Launch, tmp_path: Path) -> None:
    """Epoch 1: rank 1's whole share of step 0 is unreadable (zero-sample step), all of step 1 (every rank
    skips); epoch 2: scattered unreadable items. Same weights as one process dropping the same items. Also:
    one validation image (rank 1 has none to validate), one DataLoader worker process per rank."""
    data = w.PartlyUnreadable()
    base = SeededShuffleSampler(len(data), derive_seed(w.SEED, 0, 0))
    share0, share1 = (list(ShardedBatchSampler(base, w.BATCH, r, 2)) for r in (0, 1))
    assert set(share1[0]) <= data.bad and not set(share0[0]) & data.bad  # the scenario is what it claims
    assert set(share0[1] + share1[1]) <= data.bad
    r0 = launch.report("bad", 0)
    history, state = one_process("bad", tmp_path)
    assert_same_weights(r0["state"], state)
    assert_same_history(r0["history"], history)
    assert r0["history"][0]["val_n_val"] == 1.0


def test_wsol_train_driver_under_torchrun(launch: Launch, tmp_path: Path) -> None:
    """``wsol.recipes.train_from_config`` (what ``wsol train`` runs) with 2 processes: RecordDataset,
    ``collate_skip_bad``, LeNet-5 CAM; same checkpoint as one process."""
    import wsol.data.folder  # noqa: F401  (registers the "folder" reader; wsol.data may not import it yet)
    from wsol.recipes import load_run_config, train_from_config

    hist2 = launch.report("recipe", 0)["history"]
    out = launch.workdir / "recipe"
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "metrics.csv", "metrics.json",
                                                     "run_config.yaml"]
    cfg = load_run_config(launch.workdir / "run.yaml", [f"train.out_dir={tmp_path}"])
    torch.manual_seed(0)  # the model's initialization, as in the worker
    hist1 = train_from_config(cfg)
    assert_same_history(hist2, hist1)
    got, ref = load_checkpoint(out / "last.pt"), load_checkpoint(tmp_path / "last.pt")
    assert_same_weights(got["model"], ref["model"])
    assert got["extras"]["class_names"] == ["a", "b"]


def test_a_crashing_rank_stops_the_job_with_its_name(launch: Launch) -> None:
    assert launch.returncode != 0
    assert "wsol: training failed on rank 1 of 2" in launch.output
    assert "RuntimeError: injected failure for the test" in launch.output
    assert not list(launch.workdir.glob("crash_rank*.pt"))  # nobody finished
    start = float((launch.workdir / "crash_start_rank0.txt").read_text())
    # The worker's process-group timeout is 60 s: faster means nobody waited for a collective to time out.
    assert launch.end_time - start < 45


@pytest.mark.skipif(not HAVE_TRAIN_COMMAND, reason="wsol train (src/wsol/commands/train.py) does not exist yet")
def test_wsol_train_command_under_torchrun(launch: Launch) -> None:
    """``wsol train --config run.yaml`` in each process of the job (= ``torchrun -m wsol train ...``)."""
    assert launch.report("cli", 0)["rc"] == 0 and launch.report("cli", 1)["rc"] == 0
    out = launch.workdir / "cli"
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "metrics.csv", "metrics.json",
                                                     "run_config.yaml"]
    got, ref = load_checkpoint(out / "last.pt"), load_checkpoint(launch.workdir / "recipe" / "last.pt")
    assert got["epoch"] == 2 and got["config"]["batch_size"] == 4
    assert_same_weights(got["model"], ref["model"])  # same seed → same run as train_from_config
