"""Data-parallel training under a real ``torchrun`` (2 CPU processes, gloo): README "Scale out".

One tiny netflow project is ingested and preprocessed, copied, and trained twice on the same data and
params: in one process (the default) and with ``torchrun --standalone --nproc_per_node 2 -m tasks train
netflow``, the command a user types. The DDP run must complete, rank 0 alone must write (one MLflow
run, one checkpoint, the same output files as the single process; an audit hook in every worker
records each write under the project and rank 1's record must hold none), and the validation metrics
must match the single process's.

Tolerance: with dropout off (deterministic settings) both runs draw the same global batches and the
averaged gradient is the whole batch's gradient, so they differ by float summation order alone; we
allow a relative 1e-4 on the validation loss and 0.02 on balanced accuracy (a window or two on the
decision threshold), and require the same best epoch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, enter, setup_project

pytestmark = [pytest.mark.slow, pytest.mark.scaleout]

TORCHRUN = Path(sys.executable).with_name("torchrun")
PARAMS = {
    "ingest": {"netflow": {"synthetic": {"n_flows": 1500}}},
    "train": {"netflow": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 32, "baselines": ["logreg"],
                          "baseline_max_rows": 500,
                          # Deterministic settings: no dropout, whose masks each rank draws for itself.
                          "model": {"config": {"dropout": 0.0, "mlp_dropout": 0.0}}}},
}
VAL_LOSS_RTOL = 1e-4
BALANCED_ACCURACY_ATOL = 0.02

# Started in every Python process of the run through $PYTHONPATH: records each write under the project
# (files opened for writing, folders made, renames, removals, sqlite opened) to audit/<rank>.log.
AUDIT_HOOK = '''
import os, sys, threading
_root = os.path.realpath(os.environ["FORMERFLOW_ROOT"])
_log = os.path.join(os.environ["DDP_AUDIT_DIR"], os.environ.get("RANK", "launcher") + ".log")
_busy = threading.local()
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def _under_root(p):
    try:
        p = os.fsdecode(os.fspath(p))
    except TypeError:
        return None
    p = os.path.realpath(p)
    return p if p == _root or p.startswith(_root + os.sep) else None

def _hook(event, args):
    if getattr(_busy, "on", False):
        return
    paths = []
    if event == "open" and len(args) >= 3:
        mode, flags = args[1], args[2]
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _WRITE):
            paths = [args[0]]
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
        paths = [args[0]]
    elif event in ("os.rename", "os.replace", "os.link", "os.symlink", "shutil.copyfile", "shutil.move"):
        paths = [args[1]]
    elif event == "sqlite3.connect":
        paths = [args[0]]
    hits = [h for h in (_under_root(p) for p in paths) if h]
    if hits:
        _busy.on = True
        try:
            with open(_log, "a") as f:
                f.write(event + " " + " ".join(hits) + "\\n")
        finally:
            _busy.on = False

open(_log, "a").close()  # the record exists even when nothing is written: the hook ran in this process
sys.addaudithook(_hook)
'''


def _tree(root: Path) -> set[str]:
    """The files of a project's outputs (not its MLflow store): what a stage's writes leave behind."""
    skip = {"mlflow.db", "mlartifacts", "torchrun.log", "params.yaml", "profiles"}
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] not in skip and p.name != "mlflow-store.lock"}


def _run_torchrun(root: Path, audit: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun ... -m tasks train netflow`` in ``root``; its whole process group is killed on timeout."""
    env = {**os.environ, "DDP_AUDIT_DIR": str(audit), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(audit), str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m", "tasks", "train", "netflow"]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own group: the workers die with it on a timeout
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout:.0f} s:\n{out[-4000:]}")
    finally:
        if proc.poll() is None:  # an error in the test itself: leave no worker behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    (root / "torchrun.log").write_text(out)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def test_torchrun_two_processes_match_one_and_only_rank0_writes(tmp_path, monkeypatch):
    import torch
    from mlflow.tracking import MlflowClient

    from tasks.params import load_params
    from tasks.stages import run_stage

    single = setup_project(tmp_path / "single", monkeypatch, PARAMS)
    for stage in ("ingest", "preprocess"):
        run_stage(stage, "netflow", load_params(), track=False)
    ddp = tmp_path / "ddp"
    shutil.copytree(single, ddp)  # the same data and params, before either trains

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's workers (OMP_NUM_THREADS=1): same kernels, and fast on 2 busy cores
    try:
        run_stage("train", "netflow", load_params(), track=False)
    finally:
        torch.set_num_threads(threads)
    one = json.loads((single / "artifacts/netflow/teacher/metrics.json").read_text())

    enter(ddp, monkeypatch)
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "sitecustomize.py").write_text(AUDIT_HOOK)
    done = _run_torchrun(ddp, audit)
    assert done.returncode == 0, done.stdout[-6000:]
    assert done.stdout.count('"stage": "train"') == 1, "rank 0 alone prints the summary:\n" + done.stdout[-4000:]

    # Rank 0 alone writes: the hook saw rank 0 write the teacher, the checkpoint and the MLflow store, and
    # saw rank 1 (which ran it: its record exists) write nothing under the project.
    rank0 = (audit / "0.log").read_text()
    assert "artifacts/netflow/teacher" in rank0 and "last.pt" in rank0 and "mlflow.db" in rank0, rank0[-3000:]
    assert (audit / "1.log").exists(), "the audit hook did not run in rank 1"
    assert (audit / "1.log").read_text() == "", "rank 1 wrote under the project:\n" + (audit / "1.log").read_text()
    assert _tree(ddp) == _tree(single), "the DDP run's outputs differ from one process's"
    assert len(list((ddp / "checkpoints" / "netflow").rglob("last.pt"))) == 1

    two = json.loads((ddp / "artifacts/netflow/teacher/metrics.json").read_text())
    assert two["processes"] == 2 and "processes" not in one
    assert (two["best_epoch"], two["epochs_run"], two["stopped_early"]) == (
        one["best_epoch"], one["epochs_run"], one["stopped_early"])
    assert len(two["history"]) == len(one["history"]) == 2
    for h1, h2 in zip(one["history"], two["history"], strict=True):
        assert h2["val_loss"] == pytest.approx(h1["val_loss"], rel=VAL_LOSS_RTOL), (h1, h2)
        assert h2["val_balanced_accuracy"] == pytest.approx(h1["val_balanced_accuracy"], abs=BALANCED_ACCURACY_ATOL)
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=VAL_LOSS_RTOL), (h1, h2)
    assert two["best_val_balanced_accuracy"] == pytest.approx(one["best_val_balanced_accuracy"],
                                                              abs=BALANCED_ACCURACY_ATOL)

    # One MLflow run (rank 0's), its per-epoch metrics logged once per epoch.
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("formerflow-netflow")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.data.tags for r in runs]
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "val_balanced_accuracy")]
    assert sorted(steps) == [1, 2]
