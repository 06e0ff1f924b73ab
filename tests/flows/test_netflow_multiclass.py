"""Multi-class netflow (attack family) end to end on synthetic flows (issue 17, point 2).

``train.netflow.task: multiclass`` through the real stages (ingest, preprocess, train, compress, evaluate,
register into a real MLflow registry) and the score stage on new records (what the flows run, without a Prefect
API, which costs 10-60 s to start): one logit per family, per-family F1 in the report, the binary view
(benign vs attack) beside it, the threshold chosen on validation stored with the model and applied when scoring.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from tasks.domains.netflow.synthetic import generate
from tests.conftest import TINY_NETFLOW, deep_merge, setup_project

pytestmark = pytest.mark.slow

D = "netflow"
MULTI = deep_merge(TINY_NETFLOW, {"train": {D: {"task": "multiclass", "epochs": 2, "steps_per_epoch": 4,
                                                "threshold": "f1_macro"}}})


def test_multiclass_netflow_end_to_end(tmp_path, monkeypatch):
    from tasks.loop import hard_predictions, positive_scores
    from tasks.params import load_params
    from tasks.register import register
    from tasks.score import score
    from tasks.stages import run_stage

    root = setup_project(tmp_path / "proj", monkeypatch, MULTI)
    params = load_params()
    for stage in ("ingest", "preprocess", "train", "compress", "evaluate"):
        run_stage(stage, D, params, track=False)
    reg = register(D, params)
    assert reg["version"] == "1"

    schema = json.loads((root / "data/processed" / D / "schema.json").read_text())
    classes = schema["classes"]
    assert classes[0] == "Benign" and len(classes) >= 3  # benign and at least two attack families

    teacher = json.loads((root / "artifacts" / D / "teacher" / "config.json").read_text())
    assert teacher["task"] == "multiclass" and teacher["config"]["n_outputs"] == len(classes)
    assert teacher["threshold_choice"]["split"] == "val" and 0.0 < teacher["threshold"] < 1.0

    metrics = json.loads((root / "reports" / D / "metrics.json").read_text())
    assert metrics["task"] == "multiclass"
    m = metrics["models"]["teacher"]
    assert list(m["per_class"]) == classes  # per-family precision / recall / F1
    assert all(0.0 <= v["f1"] <= 1.0 for v in m["per_class"].values())
    assert len(m["confusion_matrix"]) == len(classes)
    assert {"balanced_accuracy", "macro_f1"} <= set(m["binary"]) and "binary" in m["at_default"]
    assert m["threshold"] == pytest.approx(teacher["threshold"])
    report = (root / "reports" / D / "report.md").read_text()
    assert "binary macro-F1 @chosen" in report
    assert all(f"{c}: P " in report for c in classes)

    # Scoring new flows with the registered model: family probabilities, and the stored threshold applied.
    new = generate(root / "new", n_flows=1500, seed=11)[0]
    out = root / "preds" / "scores.parquet"
    manifest = score(D, params, str(new), out)
    preds = pl.read_parquet(out)
    assert preds.height == 1500 == manifest["rows"]
    probs = preds.select([f"p_{c}" for c in classes]).to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    registered = json.loads((root / "artifacts" / D / ("teacher" if reg["model"] == "teacher" else
                                                       f"compressed/{reg['model']}") / "config.json").read_text())
    expected = hard_predictions(probs, "multiclass", negative_threshold=registered["threshold"])
    assert preds["predicted_class"].to_list() == [classes[i] for i in expected]
    assert (preds["prediction"].to_numpy() == (expected != 0)).all()
    assert (preds["prediction"].to_numpy() == (positive_scores(probs, "multiclass") >= registered["threshold"])).all()
    assert set(preds["predicted_class"].unique().to_list()) <= set(classes)
