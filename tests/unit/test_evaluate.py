"""``tasks.evaluate.classification_metrics`` on arrays small enough to work out by hand.

Every expected value is derived in the comments from the confusion matrix; scikit-learn
is used only as a cross-check of those derivations.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from tasks.domains import TaskInfo
from tasks.evaluate import classification_metrics, metrics_table

# ----------------------------------------------------------------------------- binary
# 6 benign (label 0), 4 attacks (label 1); threshold 0.5 (>= is an attack).
Y_BIN = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
P_BIN = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.5, 0.8, 0.9, 0.35])
# predictions:     0    0    0    0    1    1    1    1    1    0
# TN = 4, FP = 2, TP = 3 (0.5 counts: >= threshold), FN = 1
# attack family of each sample: 0 = benign, 1 = DoS, 2 = Scan
FAM_BIN = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
FAMILY_NAMES = ["Benign", "DoS", "Scan"]


def test_binary_metrics_by_hand():
    m = classification_metrics(Y_BIN, P_BIN, "binary", ["Benign", "Attack"], families=FAM_BIN,
                               family_names=FAMILY_NAMES)
    assert m["n"] == 10
    assert m["confusion_matrix"] == [[4, 2], [1, 3]]  # rows true, columns predicted
    assert m["accuracy"] == pytest.approx(7 / 10)
    # recall benign 4/6, recall attack 3/4 -> balanced accuracy (2/3 + 3/4) / 2 = 17/24
    assert m["balanced_accuracy"] == pytest.approx(17 / 24)
    # F1 attack = 2TP / (2TP + FP + FN) = 6 / 9
    assert m["f1"] == pytest.approx(2 / 3)
    # F1 benign = 2TN / (2TN + FN + FP) = 8 / 11 -> macro-F1 = (2/3 + 8/11) / 2 = 23/33
    assert m["macro_f1"] == pytest.approx(23 / 33)
    # benign FPR = FP / (FP + TN) = 2 / 6
    assert m["fpr"] == pytest.approx(1 / 3)
    # ROC-AUC = share of (attack, benign) pairs ranked correctly:
    # 0.5 beats 4 benign, 0.8 and 0.9 beat all 6, 0.35 beats 3 -> 19 / 24
    assert m["roc_auc"] == pytest.approx(19 / 24)
    pc = m["per_class"]
    assert pc["Benign"] == pytest.approx({"precision": 4 / 5, "recall": 4 / 6, "f1": 8 / 11, "support": 6})
    assert pc["Attack"] == pytest.approx({"precision": 3 / 5, "recall": 3 / 4, "f1": 2 / 3, "support": 4})
    # per family: DoS (0.5, 0.8) both caught, Scan (0.9 caught, 0.35 missed),
    # "recall" of the benign family = share left unflagged = 4/6
    assert m["family_recall"] == pytest.approx({"Benign": 4 / 6, "DoS": 1.0, "Scan": 0.5})
    json.dumps(m)  # a JSON-serialisable dict


def test_binary_metrics_agree_with_sklearn():
    m = classification_metrics(Y_BIN, P_BIN, "binary", ["Benign", "Attack"])
    pred = (P_BIN >= 0.5).astype(int)
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(Y_BIN, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(Y_BIN, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(Y_BIN, pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_BIN, P_BIN))
    assert m["confusion_matrix"] == skm.confusion_matrix(Y_BIN, pred).tolist()
    assert "family_recall" not in m  # no families given


def test_binary_threshold():
    # threshold 0.75: only 0.8 and 0.9 are attacks -> TN 6, FP 0, TP 2, FN 2
    m = classification_metrics(Y_BIN, P_BIN, "binary", ["Benign", "Attack"], threshold=0.75)
    assert m["confusion_matrix"] == [[6, 0], [2, 2]]
    assert m["fpr"] == 0.0
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5) / 2)
    assert m["f1"] == pytest.approx(4 / 6)  # 2TP / (2TP + FP + FN)
    assert m["roc_auc"] == pytest.approx(19 / 24)  # threshold-free


# ----------------------------------------------------------------------------- multi-class
# classes 0 = Benign, 1 = DoS, 2 = Scan
Y_MC = np.array([0, 0, 0, 1, 1, 2, 0])
P_MC = np.array([
    [0.7, 0.2, 0.1],   # benign -> 0
    [0.8, 0.1, 0.1],   # benign -> 0
    [0.3, 0.1, 0.6],   # benign -> 2 (false alarm)
    [0.2, 0.7, 0.1],   # DoS    -> 1
    [0.1, 0.3, 0.6],   # DoS    -> 2 (wrong family, but detected)
    [0.6, 0.1, 0.3],   # Scan   -> 0 (missed)
    [0.9, 0.05, 0.05],  # benign -> 0
])
NAMES_MC = ["Benign", "DoS", "Scan"]


def test_multiclass_metrics_by_hand():
    m = classification_metrics(Y_MC, P_MC, "multiclass", NAMES_MC, families=Y_MC, family_names=NAMES_MC)
    # argmax predictions: [0, 0, 2, 1, 2, 0, 0]
    assert m["confusion_matrix"] == [[3, 0, 1], [0, 1, 1], [1, 0, 0]]
    assert m["accuracy"] == pytest.approx(4 / 7)
    # recalls 3/4, 1/2, 0 -> balanced accuracy 5/12
    assert m["balanced_accuracy"] == pytest.approx(5 / 12)
    # precisions (columns): 3/4, 1/1, 0/2 -> F1 3/4, 2/3, 0 -> macro (3/4 + 2/3) / 3 = 17/36
    assert m["macro_f1"] == pytest.approx(17 / 36)
    assert m["per_class"]["DoS"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["per_class"]["Scan"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    # attack = class != 0: true [0,0,0,1,1,1,0], predicted [0,0,1,1,1,0,0] -> TP 2, FP 1, FN 1, TN 3
    assert m["f1"] == pytest.approx(4 / 6)
    assert m["fpr"] == pytest.approx(1 / 4)
    # attack score 1 - p[benign]: benign {0.3, 0.2, 0.7, 0.1}, attacks {0.8, 0.9, 0.4}
    # 0.8 and 0.9 beat all 4, 0.4 beats 3 -> 11/12
    assert m["roc_auc"] == pytest.approx(11 / 12)
    # one-vs-rest AUCs: Benign 11/12, DoS 10/10, Scan 4/6 -> macro 31/36
    assert m["roc_auc_ovr_macro"] == pytest.approx(31 / 36)
    # family recall: benign left unflagged 3/4; DoS both detected (even the one called Scan); Scan missed
    assert m["family_recall"] == pytest.approx({"Benign": 3 / 4, "DoS": 1.0, "Scan": 0.0})
    json.dumps(m)


def test_multiclass_metrics_agree_with_sklearn():
    m = classification_metrics(Y_MC, P_MC, "multiclass", NAMES_MC)
    pred = P_MC.argmax(axis=1)
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(Y_MC, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(Y_MC, pred, average="macro", zero_division=0))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_MC != 0, 1 - P_MC[:, 0]))
    assert m["roc_auc_ovr_macro"] == pytest.approx(skm.roc_auc_score(Y_MC, P_MC, multi_class="ovr"))


def test_multiclass_without_every_class_has_no_ovr_auc():
    keep = Y_MC != 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn: "y_pred contains classes not in y_true"
        m = classification_metrics(Y_MC[keep], P_MC[keep], "multiclass", NAMES_MC)
    assert "roc_auc_ovr_macro" not in m
    assert m["per_class"]["Scan"]["support"] == 0
    assert len(m["confusion_matrix"]) == 3  # the matrix keeps every class


def test_macro_f1_ignores_classes_absent_from_labels_and_predictions():
    """A chronological test split often lacks some attack families entirely (the tiny default run's
    test split holds 2 of 6 classes). A class that is neither in ``y`` nor predicted has no F1 at
    all; counting it as 0 would deflate macro-F1 by the number of missing families, and would be
    inconsistent with balanced accuracy, which averages over the classes present."""
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    m = classification_metrics(y, probs, "multiclass", NAMES_MC)
    # predictions [0, 1, 1, 1]: F1 Benign = 2/(2+1) = 2/3, F1 DoS = 4/(4+1) = 4/5; Scan absent everywhere
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)  # over the classes present
    assert m["macro_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, probs.argmax(axis=1), average="macro"))
    assert m["per_class"]["Scan"]["support"] == 0  # still listed in the per-class table


# ----------------------------------------------------------------------------- degenerate inputs
def test_roc_auc_is_nan_with_one_class():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about a single class in y_true
        only_benign = classification_metrics(np.zeros(4, int), np.array([0.1, 0.6, 0.2, 0.3]), "binary",
                                             ["Benign", "Attack"])
        only_attack = classification_metrics(np.ones(3, int), np.array([0.9, 0.4, 0.8]), "binary",
                                             ["Benign", "Attack"])
    assert math.isnan(only_benign["roc_auc"])
    assert only_benign["fpr"] == pytest.approx(1 / 4)
    assert only_benign["f1"] == 0.0  # no attack to find, one false alarm
    assert math.isnan(only_attack["roc_auc"])
    assert math.isnan(only_attack["fpr"])  # no benign flows to flag
    assert only_attack["f1"] == pytest.approx(4 / 5)  # TP 2, FN 1
    json.dumps(only_benign)  # NaN still serialises (as NaN)


def test_metrics_table_formats_missing_values():
    table = metrics_table({"a": {"kind": "transformer", "accuracy": 0.75, "balanced_accuracy": 0.5,
                                 "roc_auc": float("nan"), "bytes": 2048, "latency_ms": None}}, TaskInfo(task="binary"))
    head, sep, row = table.splitlines()
    # Plain accuracy beside balanced accuracy in every classification table (many papers quote accuracy).
    assert head.startswith("| model | kind | accuracy | bal. acc |")
    assert row.startswith("| a | transformer | 0.7500 | 0.5000 |")
    assert "–" in row and "| 2 |" in row  # NaN / None shown as a dash, 2048 bytes as 2 KB
    assert head.count("|") == sep.count("|") == row.count("|")


def test_brier_precision_recall_and_chosen_table_columns():
    y = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.1, 0.6, 0.8, 0.4, 1.0])
    m = classification_metrics(y, np.stack([1 - p1, p1], axis=1), "multiclass", ["non-AI", "AI"])
    assert m["brier"] == pytest.approx(np.mean((p1 - y) ** 2))
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(3 / 5)
    binary = classification_metrics(y, p1, "binary", ["no", "yes"])
    assert binary["brier"] == pytest.approx(m["brier"])
    three = classification_metrics(np.array([0, 1, 2]), np.eye(3), "multiclass", ["a", "b", "c"])
    assert "brier" not in three  # P(positive) is not one number with three classes
    # The table's columns and the positive class's word come from the domain's TaskInfo (finance: "AI"),
    # so the positive-class metrics are labelled with it: "precision (AI)", "F1 (AI)".
    info = TaskInfo(task="multiclass", class_names=["non-AI", "AI"], positive="AI", negative="non-AI",
                    table_columns=["accuracy", "precision", "f1", "brier"])
    table = metrics_table({"teacher": {**m, "kind": "transformer"}}, info)
    head, _, row = table.splitlines()
    assert head == "| model | kind | accuracy | precision (AI) | F1 (AI) | Brier |"
    assert row.startswith("| teacher | transformer | 0.6000 | 0.6667 |")
