"""A real Prefect server, a ``process`` work pool and a worker run formerflow's deployments from ``prefect.yaml``.

What a team does to leave the ephemeral API behind (README "Scale out"): ``prefect server start``,
``prefect work-pool create formerflow --type process``, ``prefect --no-prompt deploy --all`` and
``prefect worker start --pool formerflow``; then ``prefect deployment run formerflow-domain/netflow``.
Here all of it runs for real on a free local port, against a tiny project whose params.yaml makes
the netflow stages take seconds, and the scheduler is asked to look ahead so every deployment's cron
produces scheduled runs at once (instead of within the default minute).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, setup_project
from tests.servers import free_port, stop

pytestmark = [pytest.mark.slow, pytest.mark.scaleout]

PREFECT = str(Path(sys.executable).with_name("prefect"))


def prefect(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 180) -> str:
    """Run the ``prefect`` CLI; fail with its output when it fails."""
    proc = subprocess.run([PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"prefect {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A tiny project (code linked in, so the deployments' entrypoints resolve in it) and a Prefect server."""
    root = tmp_path_factory.mktemp("served") / "proj"
    with pytest.MonkeyPatch.context() as mp:
        setup_project(root, mp, {"train": {"netflow": {"epochs": 1, "steps_per_epoch": 2}}})
    for name in ("flows", "tasks", "models", "dvc.yaml", "pyproject.toml"):
        (root / name).symlink_to(REPO / name)
    shutil.copy(REPO / "prefect.yaml", root / "prefect.yaml")
    port = free_port()
    home = root / ".prefect-home"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true", "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2", "FORMERFLOW_ROOT": str(root),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    for key in ("FORMERFLOW_PARENT_RUN_ID", "FORMERFLOW_MLARTIFACTS", "FORMERFLOW_PROFILE"):
        env.pop(key, None)
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Prefect server did not answer in 120 s"
            time.sleep(0.5)
        prefect(["work-pool", "create", "formerflow", "--type", "process"], env, root)
        prefect(["--no-prompt", "deploy", "--all"], env, root)
        yield root, env
    finally:
        stop(proc)
        log.close()


def test_every_deployment_is_registered_with_its_cron_and_gets_scheduled_runs(server):
    from flows.deployments import DEPLOYMENTS

    root, env = server
    code = """
import asyncio, json
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
async def main():
    async with get_client() as c:
        out = {}
        for d in await c.read_deployments():
            runs = await c.read_flow_runs(flow_run_filter=FlowRunFilter(
                deployment_id={"any_": [d.id]}, state=FlowRunFilterState(type=FlowRunFilterStateType(any_=["SCHEDULED"]))))
            out[d.name] = {"crons": [s.schedule.cron for s in d.schedules], "pool": d.work_pool_name,
                           "scheduled": len(runs)}
        print(json.dumps(out))
asyncio.run(main())
"""
    import json

    deadline = time.monotonic() + 60
    while True:  # the scheduler service runs every 2 s here and schedules the next runs of each cron
        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        found = json.loads(proc.stdout.strip().splitlines()[-1])
        if all(found.get(name, {}).get("scheduled", 0) > 0 for name, *_ in DEPLOYMENTS):
            break
        assert time.monotonic() < deadline, f"no scheduled runs for some deployment after 60 s: {found}"
        time.sleep(2)
    for name, _, _, cron, _ in DEPLOYMENTS:
        assert found[name]["crons"] == [cron], name
        assert found[name]["pool"] == "formerflow", name


def test_a_worker_runs_a_domain_deployment_to_completion(server):
    root, env = server
    log = open(root / "worker.log", "w")  # noqa: SIM115 - closed below; a file, so a chatty run never blocks a pipe
    worker = subprocess.Popen([PREFECT, "worker", "start", "--pool", "formerflow", "--type", "process"],
                              env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        out = prefect(["deployment", "run", "formerflow-domain/netflow", "--watch", "--watch-timeout", "420"],
                      env, root, timeout=480)
    finally:
        stop(worker)
        log.close()
    assert "Completed" in out, out[-3000:] + (root / "worker.log").read_text()[-3000:]
    # The run wrote the tiny project's outputs and registered the model in its MLflow store.
    assert (root / "reports" / "netflow" / "registry.json").exists()
    assert (root / "artifacts" / "netflow" / "teacher" / "model.safetensors").exists()
