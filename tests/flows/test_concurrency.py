"""Processes that start together on one project: the MLflow store is created once, whole runs queue on a lock.

* Processes opening a project that has no ``mlflow.db`` yet (a stage CLI while a
  flow starts) each create the store: MLflow runs its alembic migrations in each, and two
  at once failed with ``table _alembic_tmp_... already exists``. They are released together
  from a barrier file, after their imports, so that they reach the store in the same few
  milliseconds on every run; all must succeed, under the ``mlflow-store`` lock
  (:func:`tasks.tracking.client`).
* A second whole pipeline run on a project while one runs is refused at once, by
  ``python -m flows.pipeline`` and by the flow itself (a deployment's run), with a message
  naming the running one. The refusal while a real pipeline runs is checked in
  tests/flows/test_finished_run.py, which has a real run to refuse against.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks import store
from tests.conftest import REPO

# Imports first (mlflow's store modules included), then wait for the barrier: only the store creation races.
_OPEN_STORE = r"""
import sys, time
from pathlib import Path

import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
from mlflow.tracking import MlflowClient  # noqa: F401

from tasks import tracking

barrier, domain = Path(sys.argv[1]), sys.argv[2]
print("ready", flush=True)
while not barrier.exists():
    time.sleep(0.001)
print("experiment", tracking.experiment_id(domain), flush=True)
"""

DOMAINS = ["netflow", "eeg", "netflow"]


def _env(root: Path) -> dict[str, str]:
    env = {**os.environ, "FORMERFLOW_ROOT": str(root), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
           "PYTHONPATH": str(REPO)}
    env.pop("FORMERFLOW_PARENT_RUN_ID", None)
    return env


def test_processes_creating_a_fresh_store_at_once_all_succeed(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    barrier = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_STORE, str(barrier), domain], cwd=root, env=_env(root),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for domain in DOMAINS]
    try:
        for p in procs:  # every process imported everything and waits
            assert p.stdout.readline().strip() == "ready", p.communicate()[1][-3000:]
        assert not (root / "mlflow.db").exists()
        barrier.touch()
        outcomes = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for domain, (rc, out, err) in zip(DOMAINS, outcomes, strict=True):
        assert rc == 0, f"{domain}: exit {rc}\n{err[-3000:]}"
        assert out.startswith("experiment "), out
    # Both netflow processes got the one experiment; one store with each domain's experiment once.
    ids = {domain: out.split()[-1] for domain, (_, out, _) in zip(DOMAINS, outcomes, strict=True)}
    with sqlite3.connect(root / "mlflow.db") as db:
        names = sorted(n for (n,) in db.execute("select name from experiments where name like 'formerflow-%'"))
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
    assert names == sorted(f"formerflow-{d}" for d in set(DOMAINS)), names
    assert len(set(ids.values())) == len(set(DOMAINS))
    assert store.lock_path("mlflow-store", root).is_file()  # the lock beside the database was used


# Stands for a pipeline run in another process: it holds the project's whole-run lock.
_HOLD_PIPELINE = r"""
import sys, time
from pathlib import Path
from tasks import store
with store.lock("pipeline", what="run the pipeline (netflow)", root=Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def running_pipeline(project):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_PIPELINE, str(project)], stdout=subprocess.PIPE,
                              text=True, cwd=REPO, env=_env(project))
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()  # kill -9: the OS releases the lock with the process
        holder.wait()


def test_a_second_pipeline_run_is_refused_at_once_naming_the_first(running_pipeline, project, capsys):
    from flows.pipeline import LOCKED_EXIT, main

    started = time.monotonic()
    assert main(["--domain", "netflow"]) == LOCKED_EXIT
    assert time.monotonic() - started < 10  # refused before Prefect or any stage starts
    err = capsys.readouterr().err
    assert "cannot run the pipeline" in err and f"held by pid {running_pipeline.pid}" in err, err
    assert "(run the pipeline (netflow), since" in err
    assert not (project / "data").exists() and not (project / "mlflow.db").exists()  # nothing was touched


@pytest.mark.slow
def test_the_flow_itself_refuses_while_another_run_holds_the_project(running_pipeline, project, prefect_harness):
    from flows.pipeline import domain_flow, pipeline

    with pytest.raises(store.LockHeldError, match=f"held by pid {running_pipeline.pid}"):
        pipeline(domains=["netflow"])  # as a deployment runs it: no main() in front
    with pytest.raises(store.LockHeldError, match="cannot run the pipeline"):
        domain_flow(domain="netflow")
    assert not (project / "data").exists()
