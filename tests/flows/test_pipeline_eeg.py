"""The eeg domain end to end: real Prefect flow run, real MLflow store and registry, scoring new EDF files."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from tasks import tracking

pytestmark = pytest.mark.slow


def test_eeg_pipeline_registers_and_scores_new_recordings(project, prefect_harness):
    from flows.pipeline import pipeline
    from flows.scoring import score_flow
    from tasks.domains.eeg.synthetic import generate

    result = pipeline(domains=["eeg"])["eeg"]
    reg = result["register"]
    assert reg["promoted"] and reg["version"] == "1"
    c = tracking.client()
    assert str(c.get_model_version_by_alias("formerflow-eeg", "champion").version) == "1"

    # Train ran the protocol (LOSO over 2 subjects, DBConformer + EEGNet + the no-EA ablation).
    pred = pl.read_parquet(project / "artifacts/eeg/baselines/protocol.parquet")
    assert set(pred["model"].unique()) == {"dbconformer", "eegnet", "dbconformer-noEA"}
    assert set(pred["fold"].unique()) == {"LOSO-01", "LOSO-02"}
    n_epochs = json.loads((project / "data/processed/eeg/schema.json").read_text())["n_epochs"]
    assert pred.filter(pl.col("model") == "dbconformer").height == n_epochs  # every trial tested once

    # Evaluate: teacher and int8 on the deployment split, the protocol summary, EA gain, plots.
    metrics = json.loads((project / "reports/eeg/metrics.json").read_text())
    assert {"teacher", "int8"} <= set(metrics["models"])
    t = metrics["models"]["teacher"]
    assert -1.0 <= t["kappa"] <= 1.0 and t["n"] == sum(t["confusion_matrix"][0]) + sum(t["confusion_matrix"][1])
    proto = metrics["protocol"]["summary"]
    assert set(proto) == {"dbconformer", "eegnet", "dbconformer-noEA"}
    for m in proto.values():
        assert 0.0 <= m["balanced_accuracy"]["mean"] <= 1.0 and m["n_subjects"] == 2
    assert "ea_gain" in metrics and len(metrics["attention"]["top_contrast"]) == 6  # ceil(22 / 4)
    report = (project / "reports/eeg/report.md").read_text()
    assert "## Protocol: LOSO" in report and "Euclidean alignment" in report and "| 01 |" in report
    for plot in ("protocol_bars.png", "channel_attention.png", "channel_attention_mean.png", "roc.png"):
        assert (project / "reports/eeg/plots" / plot).stat().st_size > 5000

    # The evaluate run logged the protocol means to MLflow.
    exp = c.get_experiment_by_name(tracking.experiment_name("eeg"))
    ev = next(r for r in c.search_runs([exp.experiment_id]) if r.info.run_name == "evaluate")
    assert ev.data.metrics["protocol.dbconformer.balanced_accuracy"] == pytest.approx(
        proto["dbconformer"]["balanced_accuracy"]["mean"])

    # The Prefect markdown artifact carries the protocol tables too.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as pc:
        arts = pc.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["eeg-report"])))
    assert arts and "| teacher |" in arts[0].data and "## Protocol: LOSO" in arts[0].data

    # Scoring: new EDF recordings (one with cues, one without) -> per-epoch predictions.
    files = generate(project / "new", n_subjects=1, n_sessions=2, trials_per_class=3, seed=5)
    import mne

    raw = mne.io.read_raw_edf(files[1], preload=True, verbose="error")
    raw.set_annotations(None)
    uncued = project / "new" / "uncued.edf"
    mne.export.export_raw(uncued, raw, fmt="edf", physical_range=(-800.0, 800.0), verbose="error")
    files[1].unlink()
    out = project / "preds" / "eeg.parquet"
    manifest = score_flow("eeg", str(project / "new"), str(out))
    scores = pl.read_parquet(out)
    cued = scores.filter(pl.col("recording") == files[0].name)
    assert cued.height == 6 and cued["event"].to_list().count("left_hand") == 3  # one row per cue
    windows = scores.filter(pl.col("recording") == "uncued.edf")
    assert windows.height > 10 and windows["event"].null_count() == windows.height  # consecutive windows
    assert np.allclose(scores["p_left_hand"] + scores["p_right_hand"], 1.0, atol=1e-5)
    assert manifest["rows"] == scores.height
