"""``score --sentences``' metrics are evaluate's (one helper, :func:`tasks.measure.classification_metrics`), at
evaluate's threshold (:func:`tasks.score.sentence_threshold`). Small arrays, worked out by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tasks import evaluate, measure
from tasks.score import _label_metrics, sentence_threshold

Y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
P = np.array([0.1, 0.6, 0.3, 0.8, 0.55, 0.4, 0.9, 0.2])


def test_evaluate_and_score_share_one_metric_helper():
    assert evaluate.classification_metrics is measure.classification_metrics
    pred = (P >= 0.5).astype(int)  # TP 3 (0.8, 0.55, 0.9), FP 1 (0.6), FN 1 (0.4), TN 3
    m = _label_metrics(Y, P, pred)
    assert m == {"n": 8, "positives": 4, "accuracy": 0.75, "balanced_accuracy": 0.75, "f1": 0.75,
                 "precision": 0.75, "recall": 0.75, "roc_auc": pytest.approx(14 / 16)}
    full = measure.classification_metrics(Y, P, "binary", ["no", "yes"], pred=pred)
    assert {k: full[k] for k in ("accuracy", "f1", "precision", "recall", "roc_auc")} == \
        {k: m[k] for k in ("accuracy", "f1", "precision", "recall", "roc_auc")}
    # Cut at 0.7 instead: 0.6 and 0.55 turn negative (TP 2, FP 0, FN 2).
    at_07 = _label_metrics(Y, P, (P >= 0.7).astype(int))
    assert at_07["precision"] == 1.0 and at_07["recall"] == 0.5 and at_07["roc_auc"] == m["roc_auc"]


def test_one_class_leaves_the_undefined_metrics_out_without_warnings():
    y = np.zeros(4, int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = _label_metrics(y, np.array([0.1, 0.7, 0.2, 0.3]), np.array([0, 1, 0, 0]))
    assert m["balanced_accuracy"] is None and m["roc_auc"] is None
    assert m["accuracy"] == 0.75 and m["positives"] == 0 and m["precision"] == 0.0


def test_the_threshold_is_evaluates(project):
    from tasks.params import load_params

    assert sentence_threshold(load_params(), "finance") == (0.5, "evaluate.finance.threshold")
    params = load_params(overrides=["evaluate.finance.threshold=0.7"])
    assert sentence_threshold(params, "finance") == (0.7, "evaluate.finance.threshold")
    assert sentence_threshold(params, "eeg") == (0.5, "no evaluate.eeg.threshold")
