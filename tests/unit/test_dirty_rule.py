"""One "dirty" rule: a run's lineage tags (``git.commit`` / ``git.dirty``) and a report's header read the same
tree the same way (:func:`tasks.tracking.git_state`). A real git repository in a temporary folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tasks import evaluate, tracking

GIT = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]


def views(root: Path) -> tuple[str, str, str, str]:
    """``(git.commit tag, git.dirty tag, header commit, header dirty)`` of the project at ``root``."""
    tags = tracking.lineage_tags()  # the project root is $FORMERFLOW_ROOT (the fixture sets it)
    commit, dirty = evaluate.git_state(root)
    return tags["git.commit"], tags["git.dirty"], commit, dirty


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A committed project: code, params.yaml and a committed dvc.lock (as a project that versions its data)."""
    monkeypatch.setenv("FORMERFLOW_ROOT", str(tmp_path))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "params.yaml").write_text("a: 1\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    subprocess.run(["git", "add", "code.py", "params.yaml", "dvc.lock"], cwd=tmp_path, check=True)
    subprocess.run([*GIT, "commit", "-qm", "init"], cwd=tmp_path, check=True)
    return tmp_path


def head(root: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_tags_and_header_agree_on_one_tree(repo):
    sha = head(repo)
    assert views(repo) == (sha, "false", sha, "no")

    # A tracked file changed: both dirty.
    (repo / "code.py").write_text("x = 2\n")
    assert views(repo) == (f"{sha}-dirty", "true", sha, "yes (1 file(s): code.py)")
    (repo / "code.py").write_text("x = 1\n")
    assert views(repo) == (sha, "false", sha, "no")

    # An untracked file outside what a run writes (a new module): both dirty.
    (repo / "tasks").mkdir()
    (repo / "tasks" / "new_module.py").write_text("y = 1\n")
    assert views(repo) == (f"{sha}-dirty", "true", sha, "yes (1 file(s): tasks/)")
    (repo / "tasks" / "new_module.py").unlink()

    # What a run writes: data, reports, the MLflow store, and the dvc.lock `dvc commit` rewrites: both clean.
    for generated in ("data/raw/netflow/flows.parquet", "reports/netflow/report.md", "mlflow.db"):
        (repo / generated).parent.mkdir(parents=True, exist_ok=True)
        (repo / generated).write_text("run output\n")
    (repo / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    assert views(repo) == (sha, "false", sha, "no")

    # A renamed tracked file counts under its new name, in both.
    subprocess.run(["git", "mv", "params.yaml", "params2.yaml"], cwd=repo, check=True)
    assert views(repo) == (f"{sha}-dirty", "true", sha, "yes (1 file(s): params2.yaml)")


def test_outside_git_both_say_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("FORMERFLOW_ROOT", str(tmp_path))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above the folder
    assert views(tmp_path) == ("unknown", "unknown", "unknown", "unknown")
    assert tracking.git_state(tmp_path) == tracking.GitState("unknown", None)
