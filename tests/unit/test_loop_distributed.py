"""The data-parallel parts of the loop (tasks.ddp, fit(distributed=True)) and the CLI's refusals.

The end-to-end run under a real torchrun is tests/flows/test_ddp.py; here a 2-process gloo group made
with torch.multiprocessing checks the part that run does not reach: early stopping decided on rank 0
and taken by both ranks at the same epoch, as one process takes it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tasks import ddp
from tasks.__main__ import main
from tasks.loop import fit
from tasks.params_base import TrainLoopParams
from tests.servers import free_port

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True)
def _no_torchrun(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)


def test_shards_partition_every_batch():
    idx = np.arange(100, 133)  # 33 items on 2 and on 4 ranks: unequal shards too
    for world in (1, 2, 4):
        parts = [ddp.shard(idx, r, world) for r in range(world)]
        assert sorted(np.concatenate(parts).tolist()) == idx.tolist()
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_a_plain_process_has_no_group(monkeypatch):
    assert ddp.launched() == ddp.World()
    assert not ddp.is_launched() and not ddp.active()
    assert ddp.is_main() and ddp.rank() == 0 and ddp.world_size() == 1
    assert ddp.broadcast({"a": 1}) == {"a": 1} and ddp.all_sum([1.0, 2.0]) == [1.0, 2.0]
    with ddp.session("cpu") as world:
        assert world.size == 1 and not ddp.active()


@pytest.mark.parametrize(("env", "named"), [({"WORLD_SIZE": "two"}, "$WORLD_SIZE"),
                                            ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2")])
def test_a_malformed_launch_is_named(monkeypatch, env, named):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ddp.DistributedError, match=named.replace("$", r"\$")):
        ddp.launched()


def test_distributed_fit_outside_torchrun_is_refused():
    with pytest.raises(ddp.DistributedError, match="torchrun"):
        fit(None, None, None, TrainLoopParams(), task="binary", distributed=True)


def test_cli_refuses_distributed_without_torchrun(capsys):
    assert main(["train", "netflow", "--distributed"]) == 2
    err = capsys.readouterr().err
    assert "not started by torchrun" in err and "torchrun --standalone --nproc_per_node 2 -m tasks train" in err


def test_cli_refuses_other_stages_under_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["evaluate", "netflow"]) == 2
    assert "only train does" in capsys.readouterr().err


# ----------------------------------------------------------------------------- a real 2-process group
class Noisy:
    """Separable points with a quarter of the labels flipped: validation stalls early (patience 1 stops)."""

    def __init__(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(n, 8)).astype(np.float32)
        y = (self.x[:, 0] > 0).astype(np.int64)
        flip = rng.random(n) < 0.25
        self.labels = np.where(flip, 1 - y, y)
        self.seen: list[list[int]] = []  # the indices of every batch asked for, in order

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx):
        self.seen.append(sorted(idx.tolist()))
        return (torch.from_numpy(self.x[idx]),), torch.from_numpy(self.labels[idx])


CFG = dict(epochs=12, steps_per_epoch=4, batch_size=16, patience=1, lr=0.05, device="cpu", resume=False)


def _fit_once(checkpoint_dir: Path | None = None, on_epoch=None) -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    train = Noisy(400, 1)
    result = fit(model, train, Noisy(120, 2), TrainLoopParams(**CFG), task="binary",
                 checkpoint_dir=checkpoint_dir, on_epoch=on_epoch, progress=False,
                 distributed=ddp.active())
    return {"epochs_run": result.epochs_run, "stopped_early": result.stopped_early, "best_epoch": result.best_epoch,
            "history": result.history, "weights": [float(v.sum()) for v in model.state_dict().values()],
            "batches": train.seen}


def _rank_main(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    calls = []
    with ddp.session("cpu"):
        res = _fit_once(Path(out) / f"ckpt{rank}", on_epoch=lambda e, m: calls.append(e))
    res["on_epoch_calls"] = calls
    res["wrote_checkpoint"] = (Path(out) / f"ckpt{rank}" / "last.pt").exists()
    (Path(out) / f"{rank}.json").write_text(json.dumps(res))


@pytest.mark.slow
@pytest.mark.scaleout
def test_two_ranks_stop_early_together_as_one_process(tmp_path):
    import torch.multiprocessing as mp

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = _fit_once()
    finally:
        torch.set_num_threads(threads)
    assert one["stopped_early"] and one["epochs_run"] < CFG["epochs"], "the case must stop early in one process"

    ctx = mp.start_processes(_rank_main, args=(free_port(), str(tmp_path)), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 180
    try:
        while not ctx.join(timeout=1):  # raises, naming the rank, when one fails
            assert time.monotonic() < deadline, "the 2-process group did not finish in 180 s (a rank waits?)"
    finally:
        for proc in ctx.processes:  # a failed or timed-out run leaves no rank behind
            if proc.is_alive():
                proc.kill()
                proc.join()
    ranks = [json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)]
    for res in ranks:
        assert (res["epochs_run"], res["stopped_early"], res["best_epoch"]) == (
            one["epochs_run"], one["stopped_early"], one["best_epoch"])
        assert res["weights"] == pytest.approx(one["weights"], rel=1e-4, abs=1e-5)
        for h1, h2 in zip(one["history"], res["history"], strict=True):
            assert h2["val_loss"] == pytest.approx(h1["val_loss"], rel=1e-4)
            assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-4)
    assert ranks[0]["weights"] == ranks[1]["weights"]  # the same model on both ranks, exactly
    # The distributed sampler: each rank trains on its half of every batch one process draws, the halves disjoint.
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) == len(one["batches"])
    for b1, r0, r1 in zip(one["batches"], ranks[0]["batches"], ranks[1]["batches"], strict=True):
        assert len(r0) == len(r1) == len(b1) // 2 and sorted(r0 + r1) == b1
    # Rank 0 alone checkpoints and reports each epoch.
    assert ranks[0]["wrote_checkpoint"] and not ranks[1]["wrote_checkpoint"]
    assert ranks[0]["on_epoch_calls"] == list(range(1, one["epochs_run"] + 1)) and ranks[1]["on_epoch_calls"] == []
