"""Real `dvc repro` on a copy of the repository: full run, no-op re-run, a train param change re-runs
train and what follows only, and a Prefect run + `dvc commit` shares the same dvc.lock."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, write_params

pytestmark = pytest.mark.slow
STAGES = ["ingest", "preprocess", "train", "compress", "evaluate", "register"]
DOWNSTREAM = ["train@netflow", "compress@netflow", "evaluate@netflow", "register@netflow"]


@pytest.fixture
def dvc_repo(tmp_path, monkeypatch) -> Path:
    """A git + DVC repository holding the tracked files of this one, with tiny params."""
    root = tmp_path / "repo"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for rel in tracked:
        src = REPO / rel
        if src.is_file() and not rel.startswith("tests/"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    for rel in ("tasks", "models", "flows"):  # files not yet committed in a working checkout
        shutil.copytree(REPO / rel, root / rel, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "dvc.yaml", root / "dvc.yaml")
    write_params(root)
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", venv_bin + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("FORMERFLOW_ROOT", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.chdir(root)
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=root, check=True)
    _dvc(root, "config", "--local", "core.analytics", "false")
    return root


def _dvc(root: Path, *args: str) -> str:
    dvc = str(Path(sys.executable).with_name("dvc"))
    # A hang guard, not a speed target: `dvc repro` runs 24 stages, each a new process importing torch, MLflow
    # and Prefect, while the other xdist worker runs its own end-to-end tests (the Prefect server and worker
    # among them); on a clean clone it once took over 600 s that way.
    proc = subprocess.run([dvc, *args], cwd=root, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _ran(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def test_dvc_repro_noop_and_partial_rerun(dvc_repo):
    out = _dvc(dvc_repo, "repro")
    ran = _ran(out)
    assert sorted(ran) == sorted(f"{s}@{d}" for s in STAGES for d in ("netflow", "eeg", "finance", "turbulence"))
    for d in ("netflow", "eeg", "finance", "turbulence"):  # each domain's stages in pipeline order
        assert [r for r in ran if r.endswith(f"@{d}")] == [f"{s}@{d}" for s in STAGES]
    assert (dvc_repo / "dvc.lock").exists()
    assert "up to date" in _dvc(dvc_repo, "repro").lower()
    assert _ran(_dvc(dvc_repo, "repro")) == []

    params = yaml.safe_load((dvc_repo / "params.yaml").read_text())
    params["train"]["netflow"]["lr"] = 0.002
    (dvc_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _dvc(dvc_repo, "repro")
    assert _ran(out) == DOWNSTREAM, out
    assert "Stage 'ingest@netflow' didn't change" in out and "Stage 'preprocess@netflow' didn't change" in out
    assert "Stage 'train@eeg' didn't change" in out  # the other domains are left alone
    assert "Stage 'train@finance' didn't change" in out
    assert "Stage 'train@turbulence' didn't change" in out
    metrics = _dvc(dvc_repo, "metrics", "show")
    assert all(f"reports/{d}/summary.json" in metrics for d in ("netflow", "eeg", "finance", "turbulence"))


def test_prefect_run_then_dvc_commit_shares_the_lock(dvc_repo, prefect_harness):
    from flows.pipeline import pipeline

    # One domain is enough to show the shared lock (and keeps the suite short): params.yaml lists
    # only netflow, so dvc.yaml's foreach has only its stages.
    write_params(dvc_repo, {"pipeline": {"domains": ["netflow"]}})
    pipeline(refresh_cache=True)  # every domain of params.yaml, as dvc.yaml's foreach
    status = _dvc(dvc_repo, "status")
    assert "up to date" in status.lower(), status
    assert _ran(_dvc(dvc_repo, "repro")) == []
