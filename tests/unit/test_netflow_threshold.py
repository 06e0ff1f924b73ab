"""Netflow decision thresholds (issue 17, point 2): chosen on the validation split, stored in the model folder,
applied by evaluate and by the pyfunc that scoring and the registry run.

The rule's search is checked against a brute force over every candidate; the stages run for real on a tiny
synthetic project (ingest, preprocess, train, compress, evaluate).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import f1_score

from tasks.loop import choose_threshold, hard_predictions, positive_scores
from tests.conftest import TINY_NETFLOW, deep_merge, enter, setup_project

D = "netflow"


# ----------------------------------------------------------------------------- the search
def _brute(y, probs, task, objective):
    """The best threshold among the distinct scores (highest among ties), by scoring each one."""
    score = positive_scores(probs, task)
    best, best_v = None, -np.inf
    for t in np.unique(score)[::-1]:
        pred = (score >= t).astype(int) if task == "binary" else hard_predictions(probs, task, negative_threshold=t)
        v = objective(y, pred)
        if v > best_v + 1e-12:
            best, best_v = t, v
    return best, best_v


def _f1(y, pred, c):
    tp, n = np.sum((y == c) & (pred == c)), np.sum(y == c) + np.sum(pred == c)
    return 2 * tp / n if n else 0.0


def _macro(y, pred):
    """Macro-F1 over the classes present (numpy: sklearn's is too slow for a brute force over every score)."""
    return float(np.mean([_f1(y, pred, c) for c in np.union1d(y, pred)]))


def _f1_neg(y, pred):
    return _f1(y, pred, 0)


def test_the_fast_f1_is_sklearns():
    rng = np.random.default_rng(9)
    y, pred = rng.integers(0, 4, 200), rng.integers(0, 3, 200)
    assert _macro(y, pred) == pytest.approx(f1_score(y, pred, labels=np.union1d(y, pred), average="macro"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_rules_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(300) < 0.9).astype(int)  # benign the minority, as on NF-BoT-IoT-v2
    p = np.round(np.clip(rng.normal(0.35 + 0.4 * y, 0.2), 0, 1), 3)  # rounded: ties among scores
    for rule, objective in (("f1_macro", _macro), ("f1_negative", _f1_neg)):
        c = choose_threshold(y, p, "binary", rule)
        best, best_v = _brute(y, p, "binary", objective)
        assert c["objective"] == pytest.approx(best_v)
        assert objective(y, (p >= c["threshold"]).astype(int)) == pytest.approx(best_v)
        assert (p >= c["threshold"]).tolist() == (p >= best).tolist()  # the same cut, between two scores
    # fpr:<rate>: the most flagged with at most that share of benign flagged
    c = choose_threshold(y, p, "binary", "fpr:0.1")
    flagged = p >= c["threshold"]
    assert flagged[y == 0].mean() <= 0.1
    lower = p[p < c["threshold"]].max()  # one candidate further would break the budget
    assert (p[y == 0] >= lower).mean() > 0.1


def test_multiclass_rule_matches_brute_force():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([2, 1, 1, 0.5], size=500)
    y = probs.argmax(axis=1)
    y[rng.random(500) < 0.15] = 0
    c = choose_threshold(y, probs, "multiclass", "f1_macro")
    best, best_v = _brute(y, probs, "multiclass", _macro)
    assert c["objective"] == pytest.approx(best_v)
    pred = hard_predictions(probs, "multiclass", negative_threshold=c["threshold"])
    assert _macro(y, pred) == pytest.approx(best_v)
    assert _macro(y, probs.argmax(axis=1)) <= best_v + 1e-12


def test_prior_rule_and_errors():
    y, p = np.array([0, 1, 1, 1]), np.array([0.1, 0.4, 0.8, 0.9])
    # binary, trained 50/50, 1 % benign in deployment: attack unless P(attack) < 0.01
    assert choose_threshold(y, p, "binary", "prior", train_negative_fraction=0.01)["threshold"] == pytest.approx(0.01)
    assert choose_threshold(y, p, "binary", 0.3)["threshold"] == 0.3
    with pytest.raises(ValueError, match="unknown threshold rule 'f1'"):
        choose_threshold(y, p, "binary", "f1")
    with pytest.raises(ValueError, match="fpr:"):
        choose_threshold(y, p, "binary", "fpr:2")
    with pytest.raises(ValueError, match="prior"):
        choose_threshold(y, p, "binary", "prior")


@pytest.mark.parametrize("bad", ["f1", "fpr:x", 1.5, "0"])
def test_params_refuse_unknown_rules(project, bad):
    from tasks.params import load_params

    with pytest.raises(ValueError, match="train.netflow.threshold"):
        load_params(overrides=[f"train.netflow.threshold={bad}"])
    assert load_params(overrides=["train.netflow.threshold=fpr:0.01"]).train.netflow.threshold == "fpr:0.01"


# ----------------------------------------------------------------------------- the stages
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny synthetic netflow project: ingest, preprocess, train, compress (int8), evaluate; rule f1_macro."""
    from tasks.params import load_params
    from tasks.stages import run_stage

    extra = deep_merge(TINY_NETFLOW, {"train": {D: {"threshold": "f1_macro", "epochs": 2, "steps_per_epoch": 4}}})
    with pytest.MonkeyPatch.context() as mp:
        root = setup_project(tmp_path_factory.mktemp("threshold") / "proj", mp, extra)
        params = load_params()
        for stage in ("ingest", "preprocess", "train", "compress", "evaluate"):
            run_stage(stage, D, params, track=False)
    return root


def _scores(folder: Path, split: str):
    from tasks.compress import load_any
    from tasks.domains.netflow.data import load_split
    from tasks.loop import predict, probabilities

    model, meta = load_any(folder)
    data = load_split(split, meta["task"])
    return data.labels, probabilities(predict(model, data, 1024), meta["task"])


def test_threshold_is_chosen_on_validation_and_saved(trained, monkeypatch):
    enter(trained, monkeypatch)
    teacher = trained / "artifacts" / D / "teacher"
    meta = json.loads((teacher / "config.json").read_text())
    choice = meta["threshold_choice"]
    y_val, p_val = _scores(teacher, "val")
    y_test, p_test = _scores(teacher, "test")
    assert choice["rule"] == "f1_macro" and choice["split"] == "val" and choice["n"] == len(y_val)
    on_val = choose_threshold(y_val, p_val, "binary", "f1_macro")
    on_test = choose_threshold(y_test, p_test, "binary", "f1_macro")
    assert meta["threshold"] == pytest.approx(on_val["threshold"])
    assert choice["objective"] == pytest.approx(on_val["objective"])
    # What test data would have picked is another threshold (else this test could not tell the splits apart).
    assert on_test["threshold"] != pytest.approx(on_val["threshold"])
    assert meta["threshold"] != 0.5
    # The compressed variant carries a threshold too, saying which model it was chosen for.
    variant = json.loads((trained / "artifacts" / D / "compressed" / "int8" / "config.json").read_text())
    assert variant["threshold_choice"]["chosen_for"] in ("teacher", "int8")
    if variant["threshold_choice"]["chosen_for"] == "int8":  # compress's calibrate hook ran for it
        y, p = _scores(trained / "artifacts" / D / "compressed" / "int8", "val")
        assert variant["threshold"] == pytest.approx(choose_threshold(y, p, "binary", "f1_macro")["threshold"])


def test_evaluate_applies_and_reports_the_threshold(trained, monkeypatch):
    from tasks.evaluate import classification_metrics

    enter(trained, monkeypatch)
    teacher = trained / "artifacts" / D / "teacher"
    thr = json.loads((teacher / "config.json").read_text())["threshold"]
    m = json.loads((trained / "reports" / D / "metrics.json").read_text())["models"]["teacher"]
    y, p = _scores(teacher, "test")
    at_thr = classification_metrics(y, p, "binary", ["Benign", "Attack"], threshold=thr)
    at_half = classification_metrics(y, p, "binary", ["Benign", "Attack"], threshold=0.5)
    assert m["threshold"] == pytest.approx(thr)
    assert m["confusion_matrix"] == at_thr["confusion_matrix"]
    assert m["macro_f1"] == pytest.approx(at_thr["macro_f1"])
    assert m["at_default"]["macro_f1"] == pytest.approx(at_half["macro_f1"])
    assert m["at_default"]["balanced_accuracy"] == pytest.approx(at_half["balanced_accuracy"])
    report = (trained / "reports" / D / "report.md").read_text()
    assert "## Decision thresholds (chosen on the validation split)" in report
    assert f"| teacher | f1_macro | val (n={m['threshold_choice']['n']}) | {thr:.6g} |" in report


def test_the_pyfunc_applies_the_stored_threshold(trained, tmp_path, monkeypatch):
    from tasks.serving import FormerflowModel

    enter(trained, monkeypatch)
    raw = pl.read_parquet(trained / "data" / "raw" / D / "flows.parquet").tail(300)
    teacher = trained / "artifacts" / D / "teacher"
    thr = json.loads((teacher / "config.json").read_text())["threshold"]
    out = FormerflowModel(teacher).predict(raw.to_pandas())
    assert (out["prediction"].to_numpy() == (out["p_attack"].to_numpy() >= thr)).all()
    # Another stored threshold (the median score: half the flows either side) changes the predictions with it.
    copy = tmp_path / "teacher"
    shutil.copytree(teacher, copy)
    cfg = json.loads((copy / "config.json").read_text())
    median = float(np.median(out["p_attack"]))
    (copy / "config.json").write_text(json.dumps({**cfg, "threshold": median}))
    moved = FormerflowModel(copy).predict(raw.to_pandas())
    assert moved["p_attack"].tolist() == pytest.approx(out["p_attack"].tolist())
    assert (moved["prediction"].to_numpy() == (moved["p_attack"].to_numpy() >= median)).all()
    assert 0.3 < moved["prediction"].mean() < 0.7
    assert (moved["prediction"] != out["prediction"]).any()
