"""A finished run is a finished run: the ephemeral Prefect API lost after the last stage does not fail it.

Under heavy load a pipeline whose stages had all completed and whose model was registered
exited 1, because the ephemeral Prefect API (a uvicorn process Prefect starts beside the
flow when no ``PREFECT_API_URL`` is set) went away and the flow engine's last calls to it
(the flow run's final state, the markdown artifacts, the event worker) failed with
``ConnectError('[Errno 111] Connection refused')``.

The run here is ``python -m flows.pipeline`` in its own process, with its own ephemeral API
(not the test harness's server), tiny params, and a hook that kills the API process with
SIGKILL as soon as the last stage (register) has returned. The exit status must be 0, with
a warning that names the lost API, and everything the stages wrote must be there. While it
runs, a second pipeline on the same project is refused at once by the whole-run lock,
naming the running one (the only real concurrent-runs case of the suite: one pipeline run
serves both checks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks import store
from tests.conftest import REPO, write_params

pytestmark = pytest.mark.slow

# Runs the pipeline's own main(), with the ephemeral API killed once the last stage has returned.
_KILL_API_AFTER_LAST_STAGE = r"""
import sys

import flows.pipeline as pipeline
from prefect.server.api.server import SubprocessASGIServer

run = pipeline._run


def _run(stage, domain, params, parent_run_id):
    manifest = run(stage, domain, params, parent_run_id)
    if stage == "register":  # the last stage: the ephemeral API goes away, as it did under heavy load
        servers = [s for s in SubprocessASGIServer._instances.values() if s.server_process is not None]
        assert servers, "no ephemeral Prefect API process to kill"
        for server in servers:
            server.server_process.kill()
            server.server_process.wait()
        print("test hook: killed the ephemeral Prefect API", flush=True)
    return manifest


pipeline._run = _run
sys.exit(pipeline.main(sys.argv[1:]))
"""

# The smallest netflow run that still goes through every stage.
FAST = ["--set", "train.netflow.epochs=1", "--set", "train.netflow.steps_per_epoch=3",
        "--set", "train.netflow.baselines=[logreg]", "--set", "compress.netflow.methods=[int8]"]


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}  # its own ephemeral API
    env.update(FORMERFLOW_ROOT=str(root), MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
               PREFECT_HOME=str(root / ".prefect"), PYTHONPATH=str(REPO),
               PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="true",
               PREFECT_CLIENT_MAX_RETRIES="1")  # the client retries a lost connection; once keeps the test short
    env.pop("FORMERFLOW_PARENT_RUN_ID", None)
    env.pop(store.FAULT_ENV, None)
    return env


def _held_by(root: Path, pid: int) -> bool:
    path = store.lock_path("pipeline", root)
    try:
        return json.loads(path.read_text() or "{}").get("pid") == pid
    except (OSError, ValueError):
        return False


def test_api_lost_after_the_last_stage_exits_0_with_a_warning(tmp_path, monkeypatch, capsys):
    root = tmp_path / "proj"
    root.mkdir()
    write_params(root, {"pipeline": {"domains": ["netflow"]}})
    proc = subprocess.Popen([sys.executable, "-c", _KILL_API_AFTER_LAST_STAGE, "--domain", "netflow", *FAST],
                            cwd=root, env=_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # While its stages run (its raw data written: the flow body has started), a second run is refused.
        deadline = time.monotonic() + 240
        while not ((root / "data/raw/netflow").is_dir() and _held_by(root, proc.pid)):
            assert proc.poll() is None and time.monotonic() < deadline, "the pipeline never reached ingest"
            time.sleep(0.2)
        monkeypatch.setenv("FORMERFLOW_ROOT", str(root))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        from flows.pipeline import LOCKED_EXIT, main

        assert main(["--domain", "netflow"]) == LOCKED_EXIT
        refusal = capsys.readouterr().err
        assert f"held by pid {proc.pid}" in refusal and "cannot run the pipeline" in refusal, refusal
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "test hook: killed the ephemeral Prefect API" in out, err[-3000:]
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err[-5000:]}"
    assert "WARNING: the Prefect API" in err and "every stage completed" in err, err[-3000:]
    # What the stages wrote is all there: the evaluate table printed, the report, the registered champion.
    assert "== netflow ==" in out and "| teacher |" in out
    assert (root / "reports/netflow/report.md").is_file()

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    from tasks import tracking

    champion = tracking.client().get_model_version_by_alias("formerflow-netflow", "champion")
    assert str(champion.version) == "1"
