"""Progress and logs (issue 19, points 2 and 3): the epoch lines, the CLI's log setup, the lines kept with an
MLflow run, Prefect's run logs, and the third-party noise switched off (progress bars, the pyfunc warning).

Real components throughout: the real training loop on a linear model, a real MLflow sqlite store, a real
``mlflow.pyfunc.save_model`` / ``load_model``, child Python processes whose stderr is a pipe (not a TTY).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch

from tasks import logs
from tasks.loop import epoch_line, fit
from tasks.params_base import TrainLoopParams
from tests.conftest import REPO

EPOCH_LINE = re.compile(r"^(?P<label>.+) epoch (?P<i>\d+)/(?P<n>\d+): train_loss \d+\.\d{4}(?P<rest>.*), "
                        r"(?P<elapsed>[\d.]+ s|\d+ min \d\d s), ETA (?P<eta>[\d.]+ s|\d+ min \d\d s)$")


class Rows:
    """The loop's dataset contract on a table whose first column is the label (something to learn)."""

    def __init__(self, n: int, seed: int, classes: int = 2) -> None:
        rng = np.random.default_rng(seed)
        self.labels = rng.integers(0, classes, n).astype(np.int64)
        self.x = rng.random((n, 4)).astype(np.float32)
        self.x[:, 0] = self.labels + 0.3 * self.x[:, 0]

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx):
        return (torch.from_numpy(self.x[idx]),), torch.from_numpy(self.labels[idx])


def _fit(epochs: int, val: bool = True, **kw):
    torch.manual_seed(0)
    cfg = TrainLoopParams(epochs=epochs, steps_per_epoch=2, batch_size=16, patience=100, device="cpu")
    return fit(torch.nn.Linear(4, 1), Rows(64, 0), Rows(32, 1) if val else None, cfg, task="binary", **kw)


def test_fit_logs_one_line_per_epoch_with_loss_metric_elapsed_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="tasks.loop")
    result = _fit(3, name="tiny teacher")
    lines = [r.getMessage() for r in caplog.records if r.name == "tasks.loop"]
    assert len(lines) == 3 == result.epochs_run, lines
    for i, line in enumerate(lines, start=1):
        m = EPOCH_LINE.match(line)
        assert m, line
        assert (m["label"], int(m["i"]), int(m["n"])) == ("tiny teacher", i, 3)
        # the validation metric that picks the best epoch, with the best epoch so far
        assert re.search(r"val_balanced_accuracy \d\.\d{4} \(best: epoch [1-3]\)", m["rest"]), line
        want_loss = result.history[i - 1]["train_loss"]
        assert f"train_loss {want_loss:.4f}" in line
    assert lines[-1].endswith("ETA 0.0 s")  # nothing left after the last epoch


def test_fit_without_validation_names_the_model_and_reports_no_metric(caplog):
    caplog.set_level(logging.INFO, logger="tasks.loop")
    _fit(2, val=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "tasks.loop"]
    assert [EPOCH_LINE.match(x)["label"] for x in lines] == ["Linear", "Linear"], lines
    assert not any("val_" in x for x in lines), lines


def test_a_multiclass_fit_warns_nothing():
    """The validation F1 of more than two classes is macro-averaged without sklearn's pos_label warning."""
    torch.manual_seed(0)
    cfg = TrainLoopParams(epochs=1, steps_per_epoch=1, batch_size=12, patience=100, device="cpu", select_metric="f1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(torch.nn.Linear(4, 3), Rows(60, 0, 3), Rows(30, 1, 3), cfg, task="multiclass")
    assert 0.0 <= result.history[0]["val_f1"] <= 1.0
    assert [str(w.message) for w in caught] == []


def test_epoch_line_eta_and_metric_choice():
    line = epoch_line("turbulence teacher", 2, 10, {"train_loss": 0.5, "val_rel_l2": 0.25, "val_loss": 0.25},
                      elapsed=130.0, done=2, select="rel_l2", best_epoch=2)
    # 65 s per epoch, 8 epochs to go: 520 s
    assert line == ("turbulence teacher epoch 2/10: train_loss 0.5000, val_rel_l2 0.2500 (best: epoch 2), "
                    "2 min 10 s, ETA 8 min 40 s")
    resumed = epoch_line("x", 6, 6, {"train_loss": 1.0, "val_f1": 0.5, "val_balanced_accuracy": 0.75},
                         elapsed=3.0, done=1, select="f1")
    assert resumed == "x epoch 6/6: train_loss 1.0000, val_f1 0.5000, 3.0 s, ETA 0.0 s"
    long = epoch_line("x", 1, 100, {"train_loss": 1.0}, elapsed=3600.0, done=1)
    assert long.endswith("1 h 00 min, ETA 99 h 00 min")


def test_quiet_and_verbose_flags():
    assert logs.level_from_flags() == logging.INFO
    assert logs.level_from_flags(quiet=True) == logging.WARNING
    assert logs.level_from_flags(verbose=True) == logging.DEBUG
    with pytest.raises(ValueError, match="--quiet and --verbose"):
        logs.level_from_flags(True, True)
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.setup_logging("loud")


def test_ingest_reports_a_summary(caplog):
    log = logging.getLogger("tasks.domains.x.ingest")
    caplog.set_level(logging.DEBUG, logger="tasks")
    logs.report_read(log, "x ingest", {"data/a.csv": 3 * 2**30, "data/small.csv": 2048, "s3://b/c.csv": None},
                     rows=2_390_275, seconds=41.24)
    logs.report_read(log, "y ingest", {"data/one.h5": 10 * 2**20})
    got = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert got == [
        ("INFO", "x ingest: read 3 files, 3.00 GB (+1 of unknown size), 2,390,275 rows in 41.2 s"),
        ("INFO", "y ingest: read 1 file, 10.0 MB"),
    ]
    assert logs.human_bytes(512) == "512 B" and logs.human_bytes(2048) == "2.0 KB"


def _python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python (stdout/stderr pipes: not a terminal), failing with its output."""
    base = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
                                                              "HF_HUB_DISABLE_PROGRESS_BARS")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


_CLI_LOGGING = r"""
import logging, sys
from tasks import logs
logs.setup_logging(logs.level_from_flags(quiet="-q" in sys.argv, verbose="-v" in sys.argv))
logs.setup_logging(logs.level_from_flags(quiet="-q" in sys.argv, verbose="-v" in sys.argv))  # twice: one handler
log = logging.getLogger("tasks.domains.x.ingest")
log.debug("detail")
log.info("read 3 files")
log.warning("odd column")
logging.getLogger("somelib").info("a library's info line")
"""


@pytest.mark.parametrize(("flag", "want"), [("", ["INFO", "WARNING"]), ("-q", ["WARNING"]),
                                            ("-v", ["DEBUG", "INFO", "WARNING"])])
def test_setup_logging_prints_the_project_lines_with_time_level_and_logger(flag, want):
    err = _python(_CLI_LOGGING.replace("sys.argv", f"{[flag]!r}")).stderr
    lines = err.splitlines()
    assert [re.match(r"^\d\d:\d\d:\d\d \| (\w+) +\| tasks\.domains\.x\.ingest - ", x)[1] for x in lines] == want, err
    assert "a library's info line" not in err  # other libraries keep their own level (WARNING)


def test_capture_keeps_only_its_own_context_lines_and_nests():
    log = logging.getLogger("tasks.test_logs")
    started, release = threading.Event(), threading.Event()

    def other_stage():
        started.set()
        release.wait(10)
        log.info("from the other stage")

    thread = threading.Thread(target=other_stage)
    with logs.capture() as outer:
        log.info("before")
        thread.start()
        started.wait(10)
        with logs.capture() as inner:
            log.info("inside")
            release.set()
            thread.join(10)
        log.debug("a debug line is not kept")
        log.warning("after")
    log.info("outside")
    assert [x.rsplit(" - ", 1)[1] for x in inner] == ["inside"]
    assert [x.rsplit(" - ", 1)[1] for x in outer] == ["before", "inside", "after"]  # the inner block's, in order
    assert re.match(r"^\d\d:\d\d:\d\d \| WARNING \| tasks\.test_logs - after$", outer[2]), outer


def test_a_stage_run_keeps_its_log_lines_as_an_mlflow_artifact(project):
    from tasks import tracking

    log = logging.getLogger("tasks.test_logs")
    with tracking.start_run("netflow", "train") as run:
        log.info("epoch 1/1 from https://user:secret@example.org/data.csv")
    with pytest.raises(RuntimeError), tracking.start_run("netflow", "evaluate") as failed:
        log.warning("went wrong")
        raise RuntimeError("boom")
    with tracking.start_run("netflow", "quiet") as silent:
        pass
    c = tracking.client()
    text = c.download_artifacts(run.run_id, "logs/train.log", str(project / "dl1"))
    kept = open(text).read()
    assert "INFO    | tasks.test_logs - epoch 1/1 from https://example.org/data.csv" in kept
    assert "secret" not in kept  # redacted like every other value logged to MLflow
    failed_text = open(c.download_artifacts(failed.run_id, "logs/evaluate.log", str(project / "dl2"))).read()
    assert "went wrong" in failed_text and c.get_run(failed.run_id).info.status == "FAILED"
    assert [a.path for a in c.list_artifacts(silent.run_id)] == []  # no lines, no empty file


def test_prefect_run_log_handler_is_on_the_package_loggers_and_quiet_outside_a_run(recwarn):
    from flows.pipeline import RunLogHandler, send_logs_to_prefect

    send_logs_to_prefect()  # again: still one handler per logger
    for name in logs.PACKAGES:
        assert sum(isinstance(h, RunLogHandler) for h in logging.getLogger(name).handlers) == 1, name
    logging.getLogger("tasks.test_logs").info("no run here")  # Prefect would warn "without a flow run id"
    assert not [w for w in recwarn if "flow run" in str(w.message)], [str(w.message) for w in recwarn]


_DOWNLOAD = r"""
import pathlib, tempfile
import mlflow
from tasks import tracking  # noqa: F401 - what every stage imports
d = pathlib.Path(tempfile.mkdtemp())
c = mlflow.tracking.MlflowClient(f"sqlite:///{d}/mlflow.db")
run = c.create_run(c.create_experiment("bars", artifact_location=str(d / "art")))
for i in range(3):
    (d / f"f{i}.txt").write_text("x")
    c.log_artifact(run.info.run_id, str(d / f"f{i}.txt"))
c.download_artifacts(run.info.run_id, "", str(d / "out"))
print(sorted(p.name for p in (d / "out").iterdir()))
"""


def test_no_artifact_download_bar_when_stderr_is_not_a_terminal():
    proc = _python(_DOWNLOAD)
    assert proc.stdout.strip() == "['f0.txt', 'f1.txt', 'f2.txt']"
    assert "Downloading artifacts" not in proc.stderr, proc.stderr
    # the check can fail: the same download with the bar asked for draws it
    shown = _python(_DOWNLOAD, env={"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "true"})
    assert "Downloading artifacts" in shown.stderr, shown.stderr


def test_hugging_face_bars_off_when_stderr_is_not_a_terminal():
    code = ("import tasks.tracking, huggingface_hub.utils as u, transformers.utils.logging as t; "
            "print(u.are_progress_bars_disabled(), t.is_progress_bar_enabled())")
    assert _python(code).stdout.split() == ["True", "False"]
    # imported before the switch: told directly
    late = ("import transformers.utils.logging as t; from tasks import logs; logs.silence_progress_bars(); "
            "print(t.is_progress_bar_enabled())")
    assert _python(late).stdout.split() == ["False"]


_PYFUNC = r"""
import json, sys, warnings
from pathlib import Path
import torch
import mlflow.pyfunc
import models
from tasks.loop import save_model
from tasks.register import package
root = Path(sys.argv[1])
folder = root / "model"
folder.mkdir()
torch.manual_seed(0)
cfg = {"n_numeric": 4, "categorical_levels": [4, 3], "window": 4, "embed_dim": 8, "internal_size": 8,
       "n_heads": 1, "n_layers": 1, "mlp_sizes": [8], "n_outputs": 1}
save_model(folder, models.build("netflow/flowtransformer", cfg), "netflow/flowtransformer", {"task": "binary"})
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")  # every warning, also one a library shows once per process
    target, _ = package(folder, root / "package")  # what register does: mlflow.pyfunc.save_model
    loaded = mlflow.pyfunc.load_model(str(target))  # what scoring does
print(type(loaded.unwrap_python_model()).__name__)
print(json.dumps([str(f[1].pattern) for f in warnings.filters if f[1] is not None and "hint" in f[1].pattern]))
print(json.dumps([f"{w.category.__name__}: {w.message}" for w in caught]))
"""


def test_the_pyfunc_predict_has_type_hints_and_packaging_it_warns_nothing(tmp_path):
    """MLflow's "Add type hints to the `predict` method" must not appear; nothing filters it any more."""
    import typing

    import pandas as pd

    from tasks import serving

    hints = typing.get_type_hints(serving.FormerflowModel.predict)
    assert hints["model_input"] == pd.DataFrame | serving.pl.DataFrame | dict[str, np.ndarray]
    assert hints["return"] == pd.DataFrame | np.ndarray
    proc = _python(_PYFUNC.replace("sys.argv[1]", repr(str(tmp_path))), timeout=180)
    name, filters, caught = proc.stdout.strip().splitlines()[-3:]
    assert name == "FormerflowModel"
    assert json.loads(filters) == []  # nobody hides the warning: it is not raised
    caught = json.loads(caught)
    assert not [w for w in caught if "type hint" in w.lower()], caught
    assert "type hint" not in proc.stderr.lower(), proc.stderr
