"""Measurements shared by the stages: latency and size on disk (compress, evaluate), and the metrics of a
classifier's scores (evaluate, register, ``score --sentences``: :func:`classification_metrics`)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def latency_ms(model, inputs: tuple, repeats: int = 50, warmup: int = 5, threads: int | None = 1) -> dict[str, float]:
    """Median and p90 wall time (ms) of ``model(*inputs)`` on CPU under ``inference_mode``.

    Latency is measured on one intra-op thread by default: that is how a scoring
    worker runs a small model, and on a shared 2-core machine multi-threaded
    timings of millisecond-scale calls are dominated by thread contention.

    Args:
        model: A module in eval mode.
        inputs: Its positional inputs (on CPU).
        repeats: Timed calls.
        warmup: Untimed calls first (allocator and kernel selection).
        threads: torch intra-op threads during the measurement (None: leave as is).

    Returns:
        ``{"median_ms", "p90_ms", "per_item_ms"}`` where per-item divides by the batch size.
    """
    model.eval()
    times = []
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                model(*inputs)
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(before)
    times.sort()
    batch = int(inputs[0].shape[0]) if inputs else 1
    med = statistics.median(times)
    return {"median_ms": med, "p90_ms": times[int(0.9 * (len(times) - 1))], "per_item_ms": med / batch}


def size_on_disk(path: str | Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def classification_metrics(
    y: np.ndarray,
    probs: np.ndarray,
    task: str,
    class_names: list[str],
    *,
    threshold: float = 0.5,
    families: np.ndarray | None = None,
    family_names: list[str] | None = None,
    pred: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics of one model's scores.

    Args:
        y: (N,) true labels (binary flag or class index).
        probs: Binary: (N,) P(positive). Multi-class: (N, K) class probabilities.
        task: ``binary`` or ``multiclass`` (class 0 is the negative class, any other positive).
        class_names: Names of the label values.
        threshold: Decision threshold of the binary task.
        families: (N,) finer class index of every sample (netflow: attack family), for per-family recall.
        family_names: Names of the family indices.
        pred: (N,) hard predictions to score instead of the default rule (binary: ``threshold``; multi-class:
            argmax), e.g. a multi-class model's predictions at a threshold (:func:`tasks.loop.hard_predictions`).

    Returns:
        A JSON-serialisable dict of scalar metrics, per-class tables and the confusion matrix.
    """
    from sklearn.metrics import (  # lazy: compress measures latency only and need not import scikit-learn
        balanced_accuracy_score,
        brier_score_loss,
        cohen_kappa_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    labels = list(range(len(class_names)))
    if task == "binary":
        pred = (probs >= threshold).astype(np.int64) if pred is None else pred
        pos_true, pos_pred, pos_score = y, pred, probs
    else:
        pred = probs.argmax(axis=1) if pred is None else pred
        pos_true, pos_pred, pos_score = (y != 0).astype(int), (pred != 0).astype(int), 1.0 - probs[:, 0]
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y, pred, labels=labels)
    negatives = pos_true == 0
    out: dict[str, Any] = {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "kappa": float(cohen_kappa_score(y, pred, labels=labels)) if len(y) else float("nan"),
        # Macro-F1 over the classes present in labels or predictions: a chronological test split
        # often lacks some classes (netflow: attack families), which would otherwise count as F1 = 0.
        "macro_f1": float(f1_score(y, pred, labels=np.union1d(y, pred), average="macro", zero_division=0)),
        "f1": float(f1_score(pos_true, pos_pred, pos_label=1, zero_division=0)),
        "precision": float(precision_score(pos_true, pos_pred, pos_label=1, zero_division=0)),
        "recall": float(recall_score(pos_true, pos_pred, pos_label=1, zero_division=0)),
        "fpr": float(pos_pred[negatives].mean()) if negatives.any() else float("nan"),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.tolist(),
    }
    out["roc_auc"] = (float(roc_auc_score(pos_true, pos_score))
                      if len(np.unique(pos_true)) == 2 else float("nan"))
    if task == "binary" or probs.shape[1] == 2:
        # Calibration of P(positive), as FinAI-BERT reports it (lower is better; 0.25 = always 0.5).
        out["brier"] = float(brier_score_loss(pos_true, np.clip(pos_score, 0.0, 1.0))) if len(y) else float("nan")
    if task == "multiclass" and probs.shape[1] > 2 and len(np.unique(y)) == probs.shape[1]:
        out["roc_auc_ovr_macro"] = float(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    if families is not None and family_names is not None:
        out["family_recall"] = {
            family_names[k]: float((pos_pred[families == k] == (0 if k == 0 else 1)).mean())
            for k in np.unique(families)
        }
    return out
