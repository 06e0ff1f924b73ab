"""Shared fixtures: a throw-away project folder with tiny params, its own MLflow store, one Prefect harness."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

# Small enough that every stage takes seconds on 2 cores, big enough for every split to hold windows.
TINY = {
    "ingest": {"netflow": {"synthetic": {"n_flows": 4000, "n_files": 2}},
               "eeg": {"synthetic": {"n_subjects": 2, "n_sessions": 1, "trials_per_class": 6}},
               "finance": {"synthetic": {"n_institutions": 2, "years": [2022, 2023]}},
               "turbulence": {"synthetic": {"n_trajectories": 3, "n_snapshots": 16, "fine_n": 64, "coarse_n": 16,
                                            "spinup": 4.0}}},
    "train": {"netflow": {"epochs": 2, "steps_per_epoch": 6, "batch_size": 64, "baseline_max_rows": 3000},
              # The EA ablation is off in the default run (time) and on here: the tests cover its path.
              "eeg": {"epochs": 2, "protocol": {"models": ["dbconformer", "eegnet"], "epochs": 1, "ea_ablation": True}},
              "finance": {"epochs": 2, "steps_per_epoch": 4, "baselines": ["tfidf_logreg", "keyword"]},
              "turbulence": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 4,
                             "model": {"config": {"dim": 16, "heads": 1, "dim_head": 8, "latent_dim": 8,
                                                  "n_layer": 2}},
                             "baseline_configs": {"fno": {"width": 8, "modes": [4, 4], "n_layers": 2}}}},
    # Every method and a full chain, on a fraction of the epochs (the tiny data is learnt in no time anyway).
    "compress": {d: {"latency_repeats": 3, "methods": ["distill", "prune", "int8", "prune+distill+int8_eager"],
                     "distill": {"epochs": 1}, "prune": {"max_val_items": 200}}
                 for d in ("netflow", "eeg", "finance", "turbulence")},
    "evaluate": {"netflow": {"latency_repeats": 3, "throughput_batch_size": 64},
                 "eeg": {"latency_repeats": 3, "throughput_batch_size": 8},
                 "finance": {"latency_repeats": 3, "throughput_batch_size": 8, "attribution_sentences": 2,
                             "attribution_steps": 4},
                 "turbulence": {"latency_repeats": 3, "rollout_steps": 12, "report_steps": [1, 10]}},
    # 16 snapshots per trajectory: the tiny rollout reaches step 10, not 50. Models trained for seconds need not
    # beat their baselines: the flows are tested for what they do with a promoted model (the gate against the
    # baselines: tests/unit/test_gate.py, test_register_baseline.py).
    "register": {"netflow": {"allow_below_baseline": True}, "eeg": {"allow_below_baseline": True},
                 "finance": {"allow_below_baseline": True},
                 "turbulence": {"primary_metric": "rollout_rel_l2_10", "allow_below_baseline": True}},
}


def deep_merge(a: dict, b: dict) -> dict:
    from tasks.params import deep_merge as merge

    return merge(a, b)


def write_params(root: Path, extra: dict | None = None) -> Path:
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    data = deep_merge(deep_merge(base, TINY), extra or {})
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def setup_project(root: Path, mp: pytest.MonkeyPatch, extra: dict | None = None) -> Path:
    """Make ``root`` a project (tiny params.yaml + ``extra``, profiles/, own MLflow sqlite) and enter it."""
    root.mkdir(parents=True, exist_ok=True)
    write_params(root, extra)
    shutil.copytree(REPO / "profiles", root / "profiles")
    mp.delenv("FORMERFLOW_PROFILE", raising=False)
    return enter(root, mp)


def enter(root: Path, mp: pytest.MonkeyPatch) -> Path:
    """Work in the project ``root``: its folder, its MLflow sqlite store, no parent run of another project."""
    mp.setenv("FORMERFLOW_ROOT", str(root))
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.delenv("FORMERFLOW_PARENT_RUN_ID", raising=False)
    mp.chdir(root)
    return root


# One netflow project small enough to run every stage in seconds, for the MLflow/registry tests that need a
# trained, evaluated model (test_mlflow_records, test_register_integrity, test_register_baseline,
# test_relocatable_store): the teacher is registered, so champion and candidate are the same folder.
TINY_NETFLOW = {
    "ingest": {"netflow": {"synthetic": {"n_flows": 1500}}},
    "train": {"netflow": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 32, "baselines": ["logreg"],
                          "baseline_max_rows": 500}},
    "compress": {"netflow": {"methods": ["int8"], "latency_repeats": 3}},
    "evaluate": {"netflow": {"latency_repeats": 3, "throughput_batch_size": 16}},
    "register": {"netflow": {"model": "teacher"}},
}


def enter_copy(src: Path, dst: Path, mp: pytest.MonkeyPatch) -> Path:
    """Copy the project ``src`` to ``dst`` and enter the copy (its own MLflow store and artifacts)."""
    shutil.copytree(src, dst)
    mp.delenv("FORMERFLOW_MLARTIFACTS", raising=False)  # the copy's artifacts live in the copy
    return enter(dst, mp)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project root in a temp folder: tiny params.yaml, profiles/, own MLflow sqlite + artifacts."""
    return setup_project(tmp_path / "proj", monkeypatch)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One ephemeral Prefect API for the whole session (starting one costs 10-20 s)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        try:
            ctx = temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
        except Exception:  # older settings without the heartbeat knob
            ctx = None
        if ctx is None:
            yield
        else:
            with ctx:
                yield


# ---------------------------------------------------------------------------- bad-input helpers (corpus, own data)
_LEFTOVER = re.compile(r"^\..+\.(.*\.tmp.*|tmp.*|old-.*)$")


def run_cli(argv: list[str], capfd) -> tuple[int, str]:
    """``python -m tasks`` in this process: its exit status and everything it printed (stdout + stderr, fd level);
    an exception escaping ``main`` (what would be a traceback on the terminal) fails the test."""
    import traceback

    from tasks.__main__ import main

    capfd.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    except BaseException:
        pytest.fail(f"{' '.join(argv)}: an exception escaped the command line:\n{traceback.format_exc()}")
    out = capfd.readouterr()
    return rc, out.out + out.err


def data_tree(project: Path, skip: tuple[str, ...] = ("incoming",)) -> dict[str, str]:
    """Every path under data/ (hidden ones too) with the md5 of each file, but those under ``data/<skip>``
    (the user's incoming files by default)."""
    from tasks import store

    data = project / "data"
    return {p.relative_to(project).as_posix(): (store.file_md5(p) if p.is_file() else "dir")
            for p in sorted(data.rglob("*")) if not p.relative_to(data).as_posix().startswith(skip)}


def leftovers(project: Path) -> list[str]:
    """Temporaries (``.<name>.<pid>-*.tmp*``) and displaced folders (``.<name>.old-*``) anywhere in the project."""
    return sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if _LEFTOVER.match(p.name))
