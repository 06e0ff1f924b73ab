"""What a captured pipeline run prints (issue 19, "Done when"): an epoch line for every epoch of the training,
and not one warning line.

``python -m flows.pipeline --domain netflow`` runs as ``make run`` runs it, in its own process with stdout
and stderr captured (not a terminal: no progress bars), with its own ephemeral Prefect API, on a tiny
project (tests/conftest.py). Its output must hold one ``epoch i/N`` line per epoch, in order, and no line
matching /warn/i (MLflow's pyfunc type-hint warning, download bars, Prefect's "without a flow run id"...).
The same epoch lines must reach the two other places a reader looks: the flow run's logs in Prefect's
database, and the train stage's MLflow run (its ``logs/train.log`` artifact).

The netflow split is stratified here (seed 1): the tiny default capture split chronologically
leaves an attack class out of the validation split, and the domain rightly warns about that.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import store
from tests.conftest import REPO, write_params

pytestmark = [pytest.mark.slow]

EPOCHS = 3
ARGS = ["--domain", "netflow", "--set", f"train.netflow.epochs={EPOCHS}", "--set", "train.netflow.steps_per_epoch=2",
        "--set", "train.netflow.patience=100", "--set", "train.netflow.baselines=[logreg]",
        "--set", "compress.netflow.methods=[int8]", "--set", "preprocess.netflow.split=stratified",
        "--set", "preprocess.netflow.seed=1"]
EPOCH_LINE = re.compile(r"\| INFO +\| tasks\.loop - (?P<label>.+?) epoch (?P<i>\d+)/(?P<n>\d+): train_loss [\d.]+, "
                        r"val_\w+ [\d.]+ \(best: epoch \d+\), [\d.]+ s, ETA [\d.]+ s$")


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}  # its own ephemeral API
    # what `make run` sets (Makefile's run target inherits the user's environment): nothing about bars or levels
    for key in ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "HF_HUB_DISABLE_PROGRESS_BARS", "FORMERFLOW_PARENT_RUN_ID",
                "FORMERFLOW_MLARTIFACTS", "FORMERFLOW_PROFILE", "PYTHONWARNINGS", store.FAULT_ENV):
        env.pop(key, None)
    env.update(FORMERFLOW_ROOT=str(root), MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
               PREFECT_HOME=str(root / ".prefect"), PYTHONPATH=str(REPO), PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="true")
    return env


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One captured run: (project root, stdout + stderr lines)."""
    root = tmp_path_factory.mktemp("runlog") / "proj"
    root.mkdir()
    write_params(root, {"pipeline": {"domains": ["netflow"]}})
    proc = subprocess.Popen([sys.executable, "-m", "flows.pipeline", *ARGS], cwd=root, env=_env(root),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-3000:]}\n{err[-5000:]}"
    return root, out.splitlines() + err.splitlines()


def test_one_epoch_line_per_epoch_in_order(run):
    _, lines = run
    epochs = [EPOCH_LINE.search(x) for x in lines if "tasks.loop" in x]
    assert all(epochs), [x for x in lines if "tasks.loop" in x]
    # the teacher: every epoch once, in order, of the N it runs (patience keeps early stopping out)
    assert [(int(m["i"]), int(m["n"])) for m in epochs] == [(i, EPOCHS) for i in range(1, EPOCHS + 1)], lines
    assert len({m["label"] for m in epochs}) == 1, lines


def test_no_warning_lines(run):
    _, lines = run
    warned = [x for x in lines if re.search(r"warn", x, re.IGNORECASE)]
    assert warned == [], "\n".join(warned)
    assert not [x for x in lines if "\r" in x or "it/s]" in x], "a progress bar drew into the captured output"


def test_the_epoch_lines_reach_prefect_and_mlflow(run, monkeypatch):
    root, lines = run
    printed = [EPOCH_LINE.search(x)[0].split(" - ", 1)[1] for x in lines if EPOCH_LINE.search(x)]
    assert len(printed) == EPOCHS
    # Prefect: the flow run's logs (the ephemeral API's database)
    with sqlite3.connect(root / ".prefect" / "prefect.db") as db:
        logged = [m for (m,) in db.execute("SELECT message FROM log WHERE name = 'tasks.loop' ORDER BY timestamp")]
        runs = {r for (r,) in db.execute("SELECT DISTINCT flow_run_id FROM log WHERE name = 'tasks.loop'")}
    assert logged == printed
    assert len(runs) == 1 and None not in runs  # attached to a flow run
    # MLflow: the train stage's run keeps them as its logs/train.log
    monkeypatch.setenv("FORMERFLOW_ROOT", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    from tasks import tracking

    c = tracking.client()
    exp = c.get_experiment_by_name(tracking.experiment_name("netflow"))
    (train,) = c.search_runs([exp.experiment_id], "tags.`mlflow.runName` = 'train'")
    text = Path(c.download_artifacts(train.info.run_id, "logs/train.log", str(root / "dl"))).read_text()
    assert [x.split(" - ", 1)[1] for x in text.splitlines() if "| tasks.loop - " in x] == printed
