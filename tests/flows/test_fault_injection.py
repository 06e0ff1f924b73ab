"""kill -9 of a real stage process at chosen points, then a re-run: the outputs an uninterrupted run writes.

The stages run as DVC runs them (``python -m tasks <stage> netflow``, tiny params) with
``$FORMERFLOW_FAULT`` naming the point where the process kills itself with SIGKILL
(:func:`tasks.store.fault_point`): half-way through writing a file, with the new folder
written but not swapped in, between the two renames of :func:`tasks.store.atomic_dir`,
after the swap, and during a training checkpoint. Each kill must leave what the next run
recovers from (:func:`tasks.store.recover`, under the domain lock), and the run after must
write exactly what an uninterrupted run writes, with no temporary or old folder left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import store
from tests.conftest import write_params

pytestmark = pytest.mark.slow

# Two epochs of three steps and one baseline: a train process in a few seconds that still checkpoints twice.
FAST_TRAIN = ["--set", "train.netflow.steps_per_epoch=3", "--set", "train.netflow.baselines=[logreg]"]
KILLED = -signal.SIGKILL


def _project(root: Path) -> Path:
    root.mkdir(parents=True)
    write_params(root)
    return root


def _reference(project: Path, *stages: str) -> None:
    """Uninterrupted runs of ``stages`` in the ``project`` fixture's folder, in this process (no start-up cost)."""
    from tasks.params import load_params
    from tasks.stages import run_stage

    for stage in stages:
        run_stage(stage, "netflow", load_params(), track=False)


def _cli(root: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "FORMERFLOW_ROOT": str(root), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    env.pop(store.FAULT_ENV, None)
    if fault:
        env[store.FAULT_ENV] = fault
    return subprocess.run([sys.executable, "-m", "tasks", *args, "--no-track"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def _leftovers(root: Path) -> list[str]:
    """Temporary and old folders / files a writer left anywhere in the project's outputs."""
    found = []
    for top in ("data", "artifacts", "reports", "checkpoints"):
        for path in (root / top).rglob(".*"):
            if ".tmp" in path.name or ".old-" in path.name:
                found.append(str(path.relative_to(root)))
    return sorted(found)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == KILLED, f"expected a SIGKILL, got {proc.returncode}: {proc.stderr[-3000:]}"


def test_ingest_killed_at_each_point_recovers_to_the_uninterrupted_output(project, tmp_path):
    ref = project
    _reference(ref, "ingest")
    expected = store.content_hash(ref / "data/raw/netflow")
    assert expected != "missing" and _leftovers(ref) == []

    root = _project(tmp_path / "killed")
    raw = root / "data/raw/netflow"

    # 1. Killed half-way through writing the manifest, in the first ingest: only the temporary folder exists.
    _killed(_cli(root, "ingest", "netflow", fault="atomic_write.partial@manifest.json"))
    assert not raw.exists()
    tmps = [p for p in raw.parent.iterdir() if p.name.startswith(".netflow.") and p.name.endswith(".tmp")]
    assert len(tmps) == 1 and list(tmps[0].glob(".manifest.json.*.tmp"))  # the half-written file is in it

    # 2. The next run removes it and writes what an uninterrupted run writes.
    out = _ok(_cli(root, "ingest", "netflow"))
    assert "recovered after an interrupted run: removed" in out.stdout
    assert store.content_hash(raw) == expected and _leftovers(root) == []

    # 3. Killed between the two renames of the swap: the output is gone, the previous one is under an old name.
    _killed(_cli(root, "ingest", "netflow", fault="atomic_dir.between_renames@netflow"))
    assert not raw.exists()
    assert [p.name.split("-")[0] for p in raw.parent.iterdir() if ".old-" in p.name] == [".netflow.old"]

    # 4. The next run renames the previous output back before it starts (checked by killing it before its
    #    own swap: the restored folder is in place, only this run's new temporary folder beside it).
    _killed(_cli(root, "ingest", "netflow", fault="atomic_dir.before_swap@netflow"))
    assert store.content_hash(raw) == expected
    left = _leftovers(root)
    assert len(left) == 1 and ".old-" not in left[0] and left[0].endswith(".tmp"), left

    # 5. Killed after the swap, before the old folder is removed: the new output is in place.
    _killed(_cli(root, "ingest", "netflow", fault="atomic_dir.after_swap@netflow"))
    assert store.content_hash(raw) == expected
    assert [p for p in _leftovers(root) if ".old-" in p] and not [p for p in _leftovers(root) if ".tmp" in p]

    # 6. A clean run: the uninterrupted output, nothing left over.
    _ok(_cli(root, "ingest", "netflow"))
    assert store.content_hash(raw) == expected and _leftovers(root) == []


def test_train_killed_during_a_checkpoint_resumes_to_the_uninterrupted_model(project, tmp_path):
    ref = project
    _reference(ref, "ingest", "preprocess")
    _ok(_cli(ref, "train", "netflow", *FAST_TRAIN))  # in its own process, like the runs it is compared with
    expected = store.file_md5(ref / "artifacts/netflow/teacher/model.safetensors")

    root = _project(tmp_path / "killed")
    shutil.copytree(ref / "data", root / "data")  # the same inputs, without running the stages again

    # Killed while writing the second epoch's checkpoint: epoch 1's is complete, epoch 2's half-way.
    _killed(_cli(root, "train", "netflow", *FAST_TRAIN, fault="checkpoint#2"))
    assert not (root / "artifacts/netflow/teacher").exists()
    ckpts = list((root / "checkpoints/netflow").rglob("last.pt"))
    assert len(ckpts) == 1
    assert list(ckpts[0].parent.glob(".last.pt.*.tmp.pt"))  # the interrupted write

    out = _ok(_cli(root, "train", "netflow", *FAST_TRAIN))
    assert '"resumed_from_epoch": 1' in out.stdout  # it continued from the complete checkpoint
    assert store.file_md5(root / "artifacts/netflow/teacher/model.safetensors") == expected
    assert _leftovers(root) == []
