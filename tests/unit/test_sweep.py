"""tasks/sweep.py without training: the search space, trial overrides, the profile, and pruning through the journal.

The pruning tests drive a real Optuna study in a journal file through :func:`tasks.sweep.journal_reporter`,
the callback a trial reports its per-epoch values with, once in another process as a Dask worker would.
"""

from __future__ import annotations

import multiprocessing

import pytest

from tasks import sweep as sweeps
from tasks.params import ParamsError, load_params
from tests.conftest import setup_project

optuna = pytest.importorskip("optuna")  # the scale extra (make test installs it)


def _study(tmp_path, startup: int = 2, warmup: int = 0) -> tuple[sweeps.StudyRef, object]:
    ref = sweeps.StudyRef(name="s", journal=str(tmp_path / "s.journal"), direction="maximize",
                          startup_trials=startup, warmup_epochs=warmup)
    return ref, sweeps.create_study(ref, seed=0)


def _complete(study, ref: sweeps.StudyRef, values: list[float]) -> None:
    """One trial that reports ``values`` (epochs 1..n) through the reporter and completes with the last."""
    trial = study.ask()
    report = sweeps.journal_reporter(ref, trial.number)
    for epoch, value in enumerate(values, 1):
        report(epoch, value)
    study.tell(trial, values[-1])


def test_median_pruner_prunes_a_clearly_bad_trial_through_the_reporter(tmp_path):
    ref, study = _study(tmp_path)
    _complete(study, ref, [0.80, 0.85, 0.90])
    _complete(study, ref, [0.82, 0.88, 0.91])

    good = study.ask()
    report = sweeps.journal_reporter(ref, good.number)
    report(1, 0.95)  # above the median of the completed trials at epoch 1: goes on
    report(2, 0.93)

    bad = study.ask()
    report = sweeps.journal_reporter(ref, bad.number)
    with pytest.raises(sweeps.TrialPruned) as info:
        report(1, 0.10)
    assert info.value.epoch == 1 and info.value.value == pytest.approx(0.10)
    # The report reached the study's storage (what other processes' medians are taken over).
    assert sweeps.open_study(ref).trials[bad.number].intermediate_values == {1: pytest.approx(0.10)}


def test_no_pruning_before_the_startup_trials_or_during_warmup(tmp_path):
    ref, study = _study(tmp_path, startup=2, warmup=1)
    _complete(study, ref, [0.9, 0.9])
    trial = study.ask()
    report = sweeps.journal_reporter(ref, trial.number)
    report(1, 0.0)  # only one trial completed: below the startup count
    report(2, 0.0)
    study.tell(trial, 0.0)
    _complete(study, ref, [0.9, 0.9])
    late = sweeps.journal_reporter(ref, study.ask().number)
    late(1, 0.0)  # epoch 1 is warm-up
    with pytest.raises(sweeps.TrialPruned):
        late(2, 0.0)


def test_a_diverged_trial_is_stopped(tmp_path):
    ref, study = _study(tmp_path, startup=100)
    report = sweeps.journal_reporter(ref, study.ask().number)
    with pytest.raises(sweeps.TrialPruned):
        report(1, float("nan"))


def _report_in_child(ref: sweeps.StudyRef, reports: list[tuple[int, float]], out) -> None:
    """In a fresh process: epoch 1 of each (trial number, value) through the reporter; 'pruned' or 'continued'."""
    for number, value in reports:
        try:
            sweeps.journal_reporter(ref, number)(1, value)
            out.put("continued")
        except sweeps.TrialPruned:
            out.put("pruned")


def test_the_pruner_in_another_process_sees_the_trials_of_this_one(tmp_path):
    ref, study = _study(tmp_path)
    _complete(study, ref, [0.8])
    _complete(study, ref, [0.9])
    reports = [(study.ask().number, 0.1), (study.ask().number, 0.95)]
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter, as a Dask worker process
    out = ctx.Queue()
    proc = ctx.Process(target=_report_in_child, args=(ref, reports, out))
    proc.start()
    try:
        results = [out.get(timeout=120) for _ in reports]
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert results == ["pruned", "continued"]
    # What the child reported is in the journal this process reads.
    assert sweeps.open_study(ref).trials[reports[0][0]].intermediate_values == {1: pytest.approx(0.1)}


def test_space_file_errors_name_file_and_key(tmp_path, monkeypatch):
    setup_project(tmp_path / "proj", monkeypatch)
    params = load_params()
    bad = tmp_path / "space.yaml"
    bad.write_text("train.netflow.lr: {type: float, low: 0.1, high: 0.01}\n")
    with pytest.raises(ParamsError, match=r"space\.yaml: train\.netflow\.lr.*low"):
        sweeps.load_space(bad)
    bad.write_text("train.netflow.batch_size: {type: categorical}\n")
    with pytest.raises(ParamsError, match="choices"):
        sweeps.load_space(bad)
    with pytest.raises(ParamsError, match="not found"):
        sweeps.load_space(tmp_path / "missing.yaml")
    unknown = {"train.netflow.lrr": sweeps.Dimension(type="float", low=0.1, high=1.0)}
    with pytest.raises(ParamsError, match=r"train\.netflow\.lrr"):
        sweeps.check_space(unknown, "netflow", params, source="space.yaml")
    out_of_range = {"train.netflow.batch_size": sweeps.Dimension(type="categorical", choices=[1, 64])}
    with pytest.raises(ParamsError, match=r"batch_size=1"):
        sweeps.check_space(out_of_range, "netflow", params, source="space.yaml")
    other_stage = {"preprocess.netflow.window": sweeps.Dimension(type="int", low=2, high=8)}
    with pytest.raises(ParamsError, match=r"train\.netflow\.\* keys only"):
        sweeps.check_space(other_stage, "netflow", params)
    for domain in ("netflow", "eeg", "finance", "turbulence"):  # the defaults load for every domain
        sweeps.check_space(sweeps.default_space(domain, params), domain, params)


def test_suggested_values_round_trip_to_params_and_profile(tmp_path, monkeypatch):
    setup_project(tmp_path / "proj", monkeypatch)
    params = load_params()
    space = sweeps.load_space(_write(tmp_path / "space.yaml",
                                     "train.netflow.lr: {type: float, low: 1.0e-6, high: 1.0e-5, log: true}\n"
                                     "train.netflow.model.config.n_layers: {type: int, low: 1, high: 3}\n"
                                     "train.netflow.balanced_batches: {type: categorical, choices: [false]}\n"))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    trial = study.ask()
    overrides = sweeps.suggest(trial, space)
    applied = sweeps.apply_overrides(params, overrides)
    p = applied.train.netflow
    # 1e-06-ish floats are floats after the YAML round trip (PyYAML reads a bare "1e-06" as a string).
    assert isinstance(p.lr, float) and p.lr == trial.params["train.netflow.lr"]
    assert p.model.config["n_layers"] == trial.params["train.netflow.model.config.n_layers"]
    assert p.balanced_batches is False
    path = sweeps.write_profile("netflow", overrides, {"study": "s", "metric": "val_f1"})
    assert path == tmp_path / "proj" / "profiles" / "sweep-netflow.yaml"
    assert path.read_text().startswith("# Written by `formerflow sweep netflow`")
    loaded = load_params(profiles=["sweep-netflow"]).train.netflow
    assert (loaded.lr, loaded.model.config["n_layers"], loaded.balanced_batches) == (
        p.lr, p.model.config["n_layers"], False)


def _write(path, text):
    path.write_text(text)
    return path


def test_a_sweep_without_processed_data_names_the_commands(tmp_path, monkeypatch):
    setup_project(tmp_path / "proj", monkeypatch)
    with pytest.raises(FileNotFoundError, match=r"python -m tasks ingest netflow.*python -m tasks preprocess netflow"):
        sweeps.require_processed("netflow")
