"""A real MLflow tracking server on PostgreSQL, its artifacts served from an S3 bucket, runs a domain's pipeline.

What a team does to leave the embedded sqlite store behind (README "Scale out"): ``python tools/mlflow_server.py
start`` (``make mlflow-server``) and ``MLFLOW_TRACKING_URI=http://...``. Here all of it runs for real: a throw-away
PostgreSQL cluster (``initdb`` in a temp folder, as the ``postgres`` system user when the tests run as root, as
CI does) on a free port, ``mlflow server --serve-artifacts`` whose artifact destination is a bucket on moto's
S3-compatible server (a process), and the netflow flow of a tiny project logging over HTTP. The client holds no
object-store credentials: every artifact goes through the server (``mlflow-artifacts:/`` locations).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_NETFLOW, setup_project
from tests.servers import free_port, moto_s3

pytestmark = [pytest.mark.slow, pytest.mark.scaleout]

TOOL = REPO / "tools" / "mlflow_server.py"
BUCKET = "formerflow-mlflow"


def tool(command: str, data: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), command, "--data", str(data), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an orphan that init has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def server(tmp_path):
    """moto's S3 server with a bucket, then PostgreSQL + ``mlflow server`` started by the tool; all stopped after."""
    with moto_s3(tmp_path / "moto") as s3env:
        import s3fs

        fs = s3fs.S3FileSystem(key=s3env["AWS_ACCESS_KEY_ID"], secret=s3env["AWS_SECRET_ACCESS_KEY"],
                               endpoint_url=s3env["AWS_ENDPOINT_URL"])
        fs.mkdir(BUCKET)
        data = tmp_path / "mlflow-server"
        # The cluster's folder must be reachable by the PostgreSQL user when we are root: pytest's temp folders
        # are private (0700), /tmp is open to every user (the tool refuses an unreachable folder, named).
        pgdata = Path(tempfile.mkdtemp(prefix="formerflow-pg-", dir="/tmp"))
        env = {**os.environ, **s3env}  # only the server gets the object store's credentials
        try:
            started = tool("start", data, "--pgdata", str(pgdata), "--port", str(free_port()), "--artifacts",
                           f"s3://{BUCKET}/mlflow", "--workers", "1", "--timeout", "240", env=env)
            log = data / "mlflow.log"
            assert started.returncode == 0, started.stdout + started.stderr + (
                log.read_text()[-3000:] if log.exists() else "")
            state = json.loads((data / "server.json").read_text())
            yield {"data": data, "state": state, "uri": f"http://127.0.0.1:{state['port']}", "fs": fs,
                   "secret": s3env["AWS_SECRET_ACCESS_KEY"], "start_output": started.stdout + started.stderr}
        finally:
            stopped = tool("stop", data, timeout=120)
            shutil.rmtree(pgdata, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        # Both servers are gone: the MLflow server's process and PostgreSQL's postmaster.
        assert not running(state["mlflow_pid"])
        assert not (pgdata / "cluster" / "postmaster.pid").exists()


def test_pipeline_logs_and_registers_on_a_postgres_mlflow_server_with_s3_artifacts(tmp_path, monkeypatch, server,
                                                                                  prefect_harness):
    import pandas as pd
    import polars as pl
    import psycopg

    from flows.pipeline import pipeline
    from tasks import serving, tracking

    root = setup_project(tmp_path / "proj", monkeypatch, TINY_NETFLOW)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server["uri"])
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)  # the client reaches the bucket through the server only

    reg = pipeline(domains=["netflow"])["netflow"]["register"]
    assert reg["version"] == "1" and reg["promoted"], reg

    # The champion loads back over HTTP, by alias, as a service would, and scores raw records.
    source = pl.read_csv(sorted((root / "data/raw/netflow/source").glob("*.csv"))[-1], infer_schema=False)
    model = tracking.load_pyfunc("models:/formerflow-netflow@champion")
    scored = model.predict(source.to_pandas())
    assert isinstance(scored, pd.DataFrame) and len(scored) == source.height
    assert scored["p_attack"].between(0, 1).all()
    # The verified path scoring uses: downloaded through the server and checked against the registry's digest.
    verified, ref = serving.load_registered("models:/formerflow-netflow@champion")
    assert ref is not None and ref.version == "1"
    pd.testing.assert_frame_equal(verified.predict(source.to_pandas()), scored)

    # Every artifact went through the server into the bucket: none in the project, no local store.
    c = tracking.client()
    run = c.get_run(reg_run := c.get_model_version("formerflow-netflow", "1").run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    keys = server["fs"].find(f"{BUCKET}/mlflow")
    names = {k.rsplit("/", 1)[-1] for k in keys}
    assert {"MLmodel", serving.MANIFEST, tracking.RESOLVED_PARAMS, "model.safetensors"} <= names, sorted(names)
    assert any(f"/{reg_run}/artifacts/" in k for k in keys), reg_run
    assert not (root / "mlartifacts").exists() and not (root / "mlflow.db").exists()

    # The runs and the registry are rows in PostgreSQL.
    state = server["state"]
    with psycopg.connect(host="127.0.0.1", port=state["pg_port"], user="mlflow", dbname="mlflow",
                         passfile=str(server["data"] / "pgpass"), connect_timeout=10) as con:
        stages = {row[0] for row in con.execute(
            "SELECT r.name FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
            "WHERE e.name = 'formerflow-netflow'")}
        aliases = dict(con.execute("SELECT alias, version FROM registered_model_aliases "
                                   "WHERE name = 'formerflow-netflow'").fetchall())
    assert {"pipeline", "ingest", "preprocess", "train", "compress", "evaluate", "register"} <= stages, stages
    assert aliases == {"champion": 1, "candidate": 1}

    # The same database without the server (a DB URI in MLFLOW_TRACKING_URI): the client writes the artifacts,
    # into the project's mlartifacts as with the sqlite default (MLflow's own default is ./mlruns of the cwd).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql+psycopg://mlflow@127.0.0.1:{state['pg_port']}/mlflow")
    monkeypatch.setenv("PGPASSFILE", str(server["data"] / "pgpass"))
    assert not tracking.server_store()
    exp = tracking.client().get_experiment(tracking.experiment_id("eeg"))
    assert exp.artifact_location == (root / "mlartifacts" / "eeg").resolve().as_uri()

    # Credentials never reach the logs: neither the object store's secret nor the database password.
    password = (server["data"] / "pgpass").read_text().strip().rsplit(":", 1)[-1]
    logged = (server["data"] / "mlflow.log").read_text() + server["start_output"]
    assert server["secret"] not in logged and password not in logged
