"""``formerflow sweep`` end to end: a real Optuna study, trials as Prefect tasks, MLflow child runs, the profile.

A tiny netflow project (ingest + preprocess run for real), the session's Prefect API, three trials of two
short epochs on the default search space. Nothing is mocked: the study lives in its journal file, the
runs in the project's MLflow store.
"""

from __future__ import annotations

import pytest

from tasks import store, tracking
from tasks import sweep as sweeps
from tasks.params import load_params
from tasks.stages import run_stage
from tests.conftest import setup_project

pytestmark = [pytest.mark.slow, pytest.mark.scaleout]
optuna = pytest.importorskip("optuna")  # the scale extra (make test installs it)

D = "netflow"
TRIAL = {"train": {D: {"epochs": 2, "steps_per_epoch": 4, "batch_size": 64}}}


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """A netflow project with its processed splits (ingest + preprocess), entered for the module's tests."""
    with pytest.MonkeyPatch.context() as mp:
        root = setup_project(tmp_path_factory.mktemp("sweep") / "proj", mp, TRIAL)
        params = load_params()
        for stage in ("ingest", "preprocess"):
            run_stage(stage, D, params, track=False)
        yield root


def test_sweep_runs_three_trials_as_child_runs_and_writes_the_best_profile(processed, prefect_harness, capsys):
    from flows.sweep import sweep

    out = sweep(domain=D, trials=3, seed=0)

    # The study: three trials, all told to the study (no pruning before 5 completed trials, the default).
    ref = sweeps.StudyRef(name=out["study"], journal=out["journal"], direction="maximize")
    study = sweeps.open_study(ref)
    assert len(study.trials) == 3
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert out["metric"] == "val_balanced_accuracy"
    assert study.best_trial.number == out["best"]["number"]
    assert study.best_value == pytest.approx(out["best"]["value"])
    for t in study.trials:  # each trial reported its epochs to the journal
        assert sorted(t.intermediate_values) == [1, 2]
    # TPE drew different params for the trials (what they were all searched for).
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 3

    # MLflow: one parent 'sweep' run and three child runs under it, each with its params and per-epoch metrics.
    c = tracking.client()
    exp = c.get_experiment_by_name(tracking.experiment_name(D))
    runs = c.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("mlflow.runName") == "sweep"]
    assert len(parents) == 1 and parents[0].info.run_id == out["parent_run_id"]
    assert parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == out["parent_run_id"]]
    assert sorted(r.info.run_name for r in children) == ["trial-0", "trial-1", "trial-2"]
    for run in children:
        trial = study.trials[int(run.data.tags["sweep.trial"])]
        assert run.data.tags["sweep.state"] == "complete" and run.info.status == "FINISHED"
        assert set(trial.params) <= set(run.data.params)
        assert float(run.data.params[f"train.{D}.lr"]) == pytest.approx(trial.params[f"train.{D}.lr"])
        history = c.get_metric_history(run.info.run_id, "val_balanced_accuracy")
        assert sorted(m.step for m in history) == [1, 2]
        assert run.data.metrics["best_val_balanced_accuracy"] == pytest.approx(trial.value)
    assert parents[0].data.metrics["best_val_balanced_accuracy"] == pytest.approx(study.best_value)

    # The profile: a normal profile that loads and gives the best trial's values.
    profile = processed / "profiles" / "sweep-netflow.yaml"
    assert out["profile"] == str(profile) and profile.exists()
    text = profile.read_text()
    assert out["study"] in text and "val_balanced_accuracy" in text
    loaded = load_params(profiles=["sweep-netflow"]).model_dump(mode="json")
    for key, value in study.best_trial.params.items():
        got = loaded
        for part in key.split("."):
            got = got[part]
        assert got == pytest.approx(value), key
    assert "| trial | state | val_balanced_accuracy |" in capsys.readouterr().out

    # The sweep wrote none of the pipeline's artifacts: no teacher, no checkpoint.
    paths = store.domain_paths(D)
    assert not paths.teacher.exists()
    assert not paths.checkpoints.exists()


def test_a_trial_stops_when_its_report_prunes_it(processed):
    """run_trial's report path: a report that prunes after epoch 1 ends the trial there, as 'pruned'."""
    seen = []

    def report(epoch: int, value: float) -> None:
        seen.append((epoch, value))
        raise sweeps.TrialPruned(epoch, value)

    params = load_params()
    result = sweeps.run_trial(D, params, [sweeps.override(f"train.{D}.lr", 3e-3)], report)
    assert result.state == "pruned" and result.epochs == 1
    assert len(result.history) == 1 and len(seen) == 1
    assert result.value == pytest.approx(seen[0][1])
    assert not store.domain_paths(D).teacher.exists()
