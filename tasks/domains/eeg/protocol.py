"""EEG evaluation protocol: Euclidean alignment, CO / CV / LOSO splits, metrics, summaries and plots.

Pure functions (numpy, scipy, scikit-learn, polars, matplotlib, MNE); no torch and no params.
They follow the DBConformer reference's data handling (``shared/reference/models.md`` §1.3, §1.5):

* **Euclidean alignment** (He & Wu 2019): per domain, ``R̄ = mean_i cov(X_i)`` and ``X_i <- R̄^{-1/2} X_i``
  (:func:`align_offline`); the LOSO test subject is aligned *online*, with the running mean of the
  covariances of the current and past trials only (:func:`align_online`).
* **CO**: per class, the first ⌈0.8·n_class⌉ trials (chronological) train, the rest test.
* **CV**: ``KFold(5, shuffle=False)`` over one subject's trials, chronological and *not* stratified.
* **LOSO**: one fold per subject, trained on all the other subjects.
* **Summary**: per subject, then mean over subjects and seeds; the reference's "std" is the std over seeds
  of the subject-mean (``np.std``, i.e. ddof = 0).

Which data get aligned how (e.g. the reference's double alignment of CO/CV test sets) is the caller's
choice; these functions only provide the pieces.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks.plotting import pyplot as _pyplot  # Agg backend, chosen in one place; matplotlib imported lazily
from tasks.plotting import wrap_title

if TYPE_CHECKING:
    import polars as pl

# Keeps ceil() from rounding an exact product up because of float noise (e.g. 0.1 * 30 = 3.0000000000000004).
_CEIL_TOL = 1e-9


# ----------------------------------------------------------------------------- Euclidean alignment


def trial_covariances(X: np.ndarray) -> np.ndarray:
    """Spatial covariance of every trial, with ``np.cov``'s convention.

    Args:
        X: (n, C, T) trials.

    Returns:
        (n, C, C) float64 covariances: the mean of each channel removed, normalised by T - 1.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"expected trials of shape (n, C, T), got {X.shape}")
    if X.shape[-1] < 2:
        raise ValueError("a covariance needs at least 2 time samples per trial")
    Xc = X - X.mean(axis=-1, keepdims=True)  # (n, C, T)
    return Xc @ Xc.transpose(0, 2, 1) / (X.shape[-1] - 1)  # (n, C, C)


def inv_sqrtm(R: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """Inverse matrix square root ``R^{-1/2}`` of a symmetric positive (semi-)definite matrix.

    Computed from the eigen-decomposition (``eigh``), so the result is real and symmetric by construction.
    For an SPD matrix it equals ``scipy.linalg.fractional_matrix_power(R, -0.5)``, which the reference uses.

    The eigenvalues are floored at ``eps * (largest eigenvalue)`` before the inverse square root. A
    rank-deficient covariance (e.g. of an average-referenced recording, whose channels sum to zero, or of
    a trial shorter than its channel count) has a (near-)zero eigenvalue; without the floor its inverse
    square root would be infinite or dominated by round-off. With it, that direction is scaled by at most
    ``1 / sqrt(eps * max eigenvalue)``, and the data carry (almost) nothing in that direction anyway.

    Args:
        R: (C, C) symmetric matrix, or a stack (..., C, C) of them.
        eps: Relative eigenvalue floor.

    Returns:
        (..., C, C) float64 ``R^{-1/2}``.

    Raises:
        ValueError: if a matrix has no positive eigenvalue (e.g. the covariance of a flat signal).
    """
    R = np.asarray(R, dtype=np.float64)
    if R.ndim < 2 or R.shape[-1] != R.shape[-2]:
        raise ValueError(f"expected square matrices (..., C, C), got {R.shape}")
    R = (R + np.swapaxes(R, -1, -2)) / 2  # round-off can leave a covariance slightly asymmetric
    w, V = np.linalg.eigh(R)  # w (..., C) ascending, V (..., C, C)
    w_max = w[..., -1:]
    if np.any(~np.isfinite(w_max)) or np.any(w_max <= 0):
        raise ValueError("inv_sqrtm: matrix has no positive eigenvalue (flat or non-finite signal?)")
    w = np.maximum(w, eps * w_max)
    return (V * w[..., None, :] ** -0.5) @ np.swapaxes(V, -1, -2)


def ea_reference(X: np.ndarray) -> np.ndarray:
    """The Euclidean-alignment reference matrix: the mean trial covariance.

    Args:
        X: (n, C, T) trials of one domain (subject).

    Returns:
        (C, C) float64 mean covariance.
    """
    return trial_covariances(X).mean(axis=0)


def _group_indices(n: int, groups: np.ndarray | None) -> list[np.ndarray]:
    """Indices of each distinct group value (order of first appearance), each in array order."""
    if groups is None:
        return [np.arange(n)]
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {groups.shape}")
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    return [np.flatnonzero(inverse == g) for g in np.argsort(first)]


def align_offline(X: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Offline Euclidean alignment: whiten every trial by its group's mean covariance.

    After alignment the mean trial covariance of each group is the identity.

    Args:
        X: (n, C, T) trials.
        groups: (n,) domain of each trial (e.g. subject); one reference per distinct value. None: all trials
            share one reference.

    Returns:
        (n, C, T) float32 aligned copy.
    """
    X = np.asarray(X)
    out = np.empty(X.shape, dtype=np.float32)
    for idx in _group_indices(len(X), groups):
        W = inv_sqrtm(ea_reference(X[idx]))  # (C, C)
        out[idx] = W @ X[idx].astype(np.float64)  # (C, C) @ (m, C, T) -> (m, C, T)
    return out


def align_online(X: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Online (incremental) Euclidean alignment, in the given chronological order.

    For the k-th trial of a group (k = 1, 2, ...): ``R_k = (R_{k-1} (k - 1) + cov(X_k)) / k``, the mean
    covariance of the current and all past trials, and ``X_k <- R_k^{-1/2} X_k``. Future trials are never
    used, so this is what a deployed decoder can do; the running mean restarts for every group. The last
    trial of a group is aligned exactly as :func:`align_offline` would align it.

    Args:
        X: (n, C, T) trials, chronological within each group.
        groups: (n,) domain of each trial; None: one group.

    Returns:
        (n, C, T) float32 aligned copy.
    """
    X = np.asarray(X)
    out = np.empty(X.shape, dtype=np.float32)
    for idx in _group_indices(len(X), groups):
        covs = trial_covariances(X[idx])  # (m, C, C)
        running = np.cumsum(covs, axis=0) / np.arange(1, len(idx) + 1)[:, None, None]  # R_1 .. R_m
        W = inv_sqrtm(running)  # (m, C, C), one eigh per trial, batched
        out[idx] = W @ X[idx].astype(np.float64)  # (m, C, C) @ (m, C, T) -> (m, C, T)
    return out


# ----------------------------------------------------------------------------- protocols


@dataclass
class Fold:
    """One train/test split.

    Attributes:
        name: e.g. ``S01`` (CO), ``S01-fold1`` (CV), ``fold1`` (pooled CV), ``LOSO-S03``.
        test_subject: The subject whose trials are tested; None when the trials are pooled.
        train: int indices into the full trial table, ascending (= chronological).
        test: int indices into the full trial table, ascending.
    """

    name: str
    test_subject: str | None
    train: np.ndarray
    test: np.ndarray


def _ceil(x: float) -> int:
    return math.ceil(x - _CEIL_TOL)


def co_split(labels: np.ndarray, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Chronological-order (CO) split of one subject's trials.

    Per class, the first ``ceil(n_class * train_fraction)`` trials train and the rest test
    (72 trials per class -> 58 train, 14 test). The reference computes the count from the total number of
    trials divided by the number of classes; per-class counts give the same split for balanced sets.

    Args:
        labels: (n,) class of each trial, in chronological order.
        train_fraction: Fraction of each class used for training.

    Returns:
        (train, test) ascending int indices into ``labels``.
    """
    if not 0 < train_fraction <= 1:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    labels = np.asarray(labels)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_train = _ceil(len(idx) * train_fraction)
        train.append(idx[:n_train])
        test.append(idx[n_train:])
    empty = np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(train or [empty])), np.sort(np.concatenate(test or [empty]))


def co_split_grouped(labels: np.ndarray, groups: np.ndarray | None, train_fraction: float = 0.8
                     ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`co_split` over groups (windows cut from one segment): a group goes to train or test whole.

    Each group takes the label of its first trial; with ``groups`` None (or all distinct) this is
    :func:`co_split`.
    """
    labels = np.asarray(labels)
    if groups is None or len(np.unique(groups)) == len(labels):
        return co_split(labels, train_fraction)
    groups = np.asarray(groups)
    uniq, first = np.unique(groups, return_index=True)
    order = np.argsort(first)  # groups in order of first appearance (chronological)
    uniq, first = uniq[order], first[order]
    gtr, _ = co_split(labels[first], train_fraction)
    is_train = np.isin(groups, uniq[gtr])
    return np.flatnonzero(is_train), np.flatnonzero(~is_train)


def kfold_splits(n: int, k: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """``sklearn.model_selection.KFold(k, shuffle=False)`` over n chronological trials.

    Contiguous, *not* stratified test blocks, as in the reference code (its README says "stratified"; the
    code is not).

    Returns:
        k (train, test) pairs of ascending int indices.
    """
    from sklearn.model_selection import KFold  # lazy: scikit-learn is slow to import; only the folds need it

    return [(tr, te) for tr, te in KFold(n_splits=k, shuffle=False).split(np.zeros((n, 1)))]


def protocol_folds(
    subjects: np.ndarray,
    labels: np.ndarray,
    protocol: str,
    *,
    k: int = 5,
    train_fraction: float = 0.8,
    pooled: bool = False,
    groups: np.ndarray | None = None,
) -> list[Fold]:
    """The folds of an evaluation protocol over a trial table.

    Args:
        subjects: (n,) subject of each trial (any type; names are ``str(subject)``); may be None when
            ``pooled``. Within a subject, array order is chronological order.
        labels: (n,) class of each trial.
        protocol: ``co`` (one fold per subject, :func:`co_split`), ``cv`` (k folds per subject,
            :func:`kfold_splits`) or ``loso`` (one fold per subject, trained on all the others).
        k: Number of CV folds.
        train_fraction: CO train fraction per class.
        pooled: co / cv only: treat all trials as one pseudo-subject (``test_subject`` None), e.g. the Bonn
            seizure set, which has no subject ids.
        groups: (n,) pooled protocols only: trials of one group (windows cut from one segment) always fall
            in the same fold, so no fold tests on a neighbour of a training window.

    Returns:
        The folds, subjects in order of first appearance.

    Raises:
        ValueError: unknown protocol, LOSO with fewer than 2 subjects or pooled, or a fold whose training set
            lacks one of the classes present in ``labels``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if protocol not in ("co", "cv", "loso"):
        raise ValueError(f"unknown protocol {protocol!r}; expected one of 'co', 'cv', 'loso'")
    if protocol == "loso" and pooled:
        raise ValueError("protocol 'loso' needs subject ids; it cannot be pooled")

    folds: list[Fold] = []
    if pooled:
        everything = np.arange(n)
        if protocol == "co":
            tr, te = co_split_grouped(labels, groups, train_fraction)
            folds.append(Fold("pooled", None, tr, te))
        else:
            # Pooled sets (Bonn: sets A-E concatenated) are sorted by class, so contiguous KFold blocks would
            # hold out whole classes and train without them. Without a subject or time axis there is no
            # chronology to respect, hence stratified and shuffled folds with a fixed seed (grouped when
            # segments were cut into windows).
            from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold  # lazy: as KFold above

            if groups is not None and len(np.unique(groups)) < n:
                splits = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=0).split(
                    np.zeros((n, 1)), labels, np.asarray(groups))
            else:
                splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=0).split(np.zeros((n, 1)), labels)
            for j, (tr, te) in enumerate(splits):
                folds.append(Fold(f"fold{j + 1}", None, everything[tr], everything[te]))
    else:
        if subjects is None:
            raise ValueError("subjects is required unless pooled=True")
        subjects = np.asarray(subjects)
        if subjects.shape != labels.shape:
            raise ValueError(f"subjects {subjects.shape} and labels {labels.shape} differ in shape")
        per_subject = [(str(subjects[idx[0]]), idx) for idx in _group_indices(n, subjects)]
        if protocol == "loso":
            if len(per_subject) < 2:
                raise ValueError(f"protocol 'loso' needs at least 2 subjects, got {len(per_subject)}")
            for name, idx in per_subject:
                train = np.setdiff1d(np.arange(n), idx)
                folds.append(Fold(f"LOSO-{name}", name, train, idx))
        elif protocol == "co":
            for name, idx in per_subject:
                tr, te = co_split(labels[idx], train_fraction)
                folds.append(Fold(name, name, idx[tr], idx[te]))
        else:
            for name, idx in per_subject:
                for j, (tr, te) in enumerate(kfold_splits(len(idx), k)):
                    folds.append(Fold(f"{name}-fold{j + 1}", name, idx[tr], idx[te]))

    classes = np.unique(labels)
    for fold in folds:
        missing = np.setdiff1d(classes, labels[fold.train])
        if len(missing):
            raise ValueError(
                f"fold {fold.name!r} ({protocol}): the training set lacks class(es) {missing.tolist()}; "
                "too few trials per class for this protocol?"
            )
    return folds


# ----------------------------------------------------------------------------- metrics and summaries


def fold_metrics(y: np.ndarray, probs: np.ndarray, n_classes: int) -> dict[str, float]:
    """Classification metrics of one set of test predictions.

    Args:
        y: (n,) true class indices.
        probs: (n,) P(class 1) when ``n_classes == 2``, else (n, K) class probabilities.
        n_classes: K.

    Returns:
        ``accuracy``, ``balanced_accuracy``, ``kappa`` (Cohen's) and, for binary tasks, ``roc_auc`` (NaN when
        only one class is present). Plain floats.
    """
    from sklearn.metrics import (  # lazy: scikit-learn is slow to import; only the metrics need it
        accuracy_score,
        balanced_accuracy_score,
        cohen_kappa_score,
        roc_auc_score,
    )

    y = np.asarray(y).astype(np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if n_classes == 2:
        if probs.ndim == 2:  # (n, 2) also accepted
            probs = probs[:, 1]
        pred = (probs >= 0.5).astype(np.int64)
    else:
        if probs.ndim != 2 or probs.shape[1] != n_classes:
            raise ValueError(f"expected probs of shape (n, {n_classes}), got {probs.shape}")
        pred = probs.argmax(axis=1)
    with warnings.catch_warnings():
        # One-class test sets make sklearn warn (balanced accuracy, kappa 0/0); the values are still defined
        # or NaN, which is what we want to report.
        warnings.simplefilter("ignore")
        out = {
            "accuracy": float(accuracy_score(y, pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "kappa": float(cohen_kappa_score(y, pred, labels=list(range(n_classes)))),
        }
        if n_classes == 2:
            out["roc_auc"] = float(roc_auc_score(y, probs)) if len(np.unique(y)) == 2 else float("nan")
    return out


def chance_level(n_test: int, n_classes: int, alpha: float = 0.05) -> dict[str, float]:
    """Theoretical and statistically significant chance levels (Combrisson & Jerbi 2015).

    Args:
        n_test: Number of test trials.
        n_classes: K.
        alpha: Significance level.

    Returns:
        ``theoretical`` = 1/K and ``significant`` = the accuracy a classifier guessing at random exceeds with
        probability at most alpha (binomial inverse CDF, divided by n).
    """
    from scipy.stats import binom  # lazy: scipy.stats is slow to import; only the chance level needs it

    p = 1.0 / n_classes
    if n_test <= 0:
        return {"theoretical": p, "significant": float("nan")}
    return {"theoretical": p, "significant": float(binom.ppf(1 - alpha, n_test, p) / n_test)}


def _nanmean(values: np.ndarray, axis: int | None = None) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN, silently
        return np.nanmean(values, axis=axis)


def _nanstd(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.std(values)) if len(values) else float("nan")


def summarize(pred: pl.DataFrame, n_classes: int) -> dict:
    """Per-subject and per-model summary of test predictions, as the reference reports them.

    Per (model, seed, subject), :func:`fold_metrics` over all that subject's test trials (in CV the k folds
    of a subject are pooled). Per model and metric: ``mean`` over subjects and seeds; ``std_seeds``, the
    std over seeds of the subject-mean (the reference's "std"); ``std_subjects``, the std over subjects of
    the seed-mean. Both stds are population stds (ddof 0, ``np.std``) as in the reference. Metrics that are
    NaN for a subject (e.g. ROC-AUC on a one-class test set) are left out of its means.

    Args:
        pred: One row per test trial with columns ``model`` (str), ``seed`` (int), ``fold`` (str),
            ``subject`` (str), ``y`` (int), and ``p1`` (binary) or ``p0`` .. ``p{K-1}``.
        n_classes: K.

    Returns:
        JSON-serialisable dict (NaN possible)::

            {"n_classes": K, "metrics": [...], "subjects": [...], "models": [...],
             "summary": {model: {metric: {"mean", "std_seeds", "std_subjects"}, "n_subjects", "n_seeds",
                                 "n_test_median", "chance": {"theoretical", "significant"}}},
             "per_subject": {model: {subject: {metric: mean over seeds}}},
             "per_seed": {model: {seed (str): {metric: mean over subjects}}}}
    """
    prob_cols = ["p1"] if n_classes == 2 else [f"p{c}" for c in range(n_classes)]
    missing = [c for c in ["model", "seed", "subject", "y", *prob_cols] if c not in pred.columns]
    if missing:
        raise ValueError(f"prediction frame lacks column(s) {missing}")
    metric_names = ["accuracy", "balanced_accuracy", "kappa"] + (["roc_auc"] if n_classes == 2 else [])

    models = [str(m) for m in pred.get_column("model").unique(maintain_order=True).to_list()]
    subjects = [str(s) for s in pred.get_column("subject").unique(maintain_order=True).to_list()]
    out: dict[str, Any] = {
        "n_classes": int(n_classes),
        "metrics": metric_names,
        "subjects": subjects,
        "models": models,
        "summary": {},
        "per_subject": {},
        "per_seed": {},
    }
    for model, frame in pred.group_by("model", maintain_order=True):
        model = str(model[0])
        seeds = sorted(int(s) for s in frame.get_column("seed").unique().to_list())
        subj = [str(s) for s in frame.get_column("subject").unique(maintain_order=True).to_list()]
        grid = np.full((len(seeds), len(subj), len(metric_names)), np.nan)  # (seed, subject, metric)
        n_test = []
        for (seed, subject), part in frame.group_by(["seed", "subject"], maintain_order=True):
            y = part.get_column("y").to_numpy()
            probs = part.select(prob_cols).to_numpy()
            probs = probs[:, 0] if n_classes == 2 else probs
            m = fold_metrics(y, probs, n_classes)
            grid[seeds.index(int(seed)), subj.index(str(subject))] = [m[name] for name in metric_names]
            n_test.append(len(part))
        seed_means = _nanmean(grid, axis=1)  # (seed, metric): subject-mean of each seed
        subject_means = _nanmean(grid, axis=0)  # (subject, metric): seed-mean of each subject
        n_test_median = int(round(float(np.median(n_test))))
        entry: dict[str, Any] = {
            name: {
                "mean": float(_nanmean(grid[..., j])),
                "std_seeds": _nanstd(seed_means[:, j]),
                "std_subjects": _nanstd(subject_means[:, j]),
            }
            for j, name in enumerate(metric_names)
        }
        entry.update(
            n_subjects=len(subj),
            n_seeds=len(seeds),
            n_test_median=n_test_median,
            chance=chance_level(n_test_median, n_classes),
        )
        out["summary"][model] = entry
        out["per_subject"][model] = {
            s: {name: float(subject_means[i, j]) for j, name in enumerate(metric_names)}
            for i, s in enumerate(subj)
        }
        out["per_seed"][model] = {
            str(sd): {name: float(seed_means[i, j]) for j, name in enumerate(metric_names)}
            for i, sd in enumerate(seeds)
        }
    return out


def _chance_line(summary: dict) -> str:
    chances = {
        (e["chance"]["theoretical"], e["chance"]["significant"], e["n_test_median"])
        for e in summary["summary"].values()
    }
    parts = [
        f"{theo:.3f} theoretical, {sig:.3f} significant at p < 0.05 for n = {n} test trials"
        for theo, sig, n in sorted(chances, key=lambda c: c[2])
    ]
    return "Chance level (Combrisson & Jerbi 2015): " + "; ".join(parts) + "."


STD_LABELS = {"std_seeds": "std over seeds of the subject mean", "std_subjects": "std over subjects"}
"""What each std of :func:`summarize` is, as the table's caption and the bar chart's axis say it."""


def table_std_key(entry: dict) -> str:
    """The std that :func:`per_subject_table` prints after ``±`` for one model's summary entry.

    ``std_seeds`` (the reference's std) with several seeds; ``std_subjects`` with one seed, which
    has no spread over seeds. :func:`plot_model_bars` draws the same one, so bars and table agree.
    """
    return "std_seeds" if entry["n_seeds"] > 1 else "std_subjects"


def per_subject_table(summary: dict, metric: str = "balanced_accuracy") -> str:
    """Markdown table of one metric: a row per subject plus ``mean ± std``, a column per model.

    The ``±`` is ``std_seeds`` (the reference's std over seeds of the subject-mean), or ``std_subjects``
    when there is a single seed. Missing values show as
    ``–``. The chance level is the last line.
    """
    models = summary["models"]
    if metric not in summary["metrics"]:
        raise ValueError(f"unknown metric {metric!r}; summary has {summary['metrics']}")

    def fmt(x: float | None) -> str:
        return "–" if x is None or not math.isfinite(x) else f"{x:.3f}"

    lines = [
        f"| subject | {' | '.join(models)} |",
        "|---|" + "---:|" * len(models),
    ]
    for s in summary["subjects"]:
        cells = [fmt(summary["per_subject"][m].get(s, {}).get(metric)) for m in models]
        lines.append(f"| {s} | {' | '.join(cells)} |")
    cells = [
        f"{fmt(summary['summary'][m][metric]['mean'])} ± "
        f"{fmt(summary['summary'][m][metric][table_std_key(summary['summary'][m])])}"
        for m in models
    ]
    lines.append(f"| mean ± std | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n\n" + _chance_line(summary) + "\n"


def plot_model_bars(summary: dict, path: Path, metric: str = "balanced_accuracy", title: str = "") -> None:
    """Grouped bars of one metric: per subject one bar per model, then a ``mean`` group.

    The mean bars carry the ``± std`` that :func:`per_subject_table` prints beside them
    (:func:`table_std_key`: ``std_seeds`` with several seeds, else ``std_subjects``), and the
    y axis says which std it is. A dashed line marks the theoretical chance level and a dotted
    one the significant chance level.
    """
    plt = _pyplot()
    models, subjects = summary["models"], summary["subjects"]
    groups = [*subjects, "mean"]
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(groups) * max(len(models), 2) + 1.5), 4),
                           layout="constrained")
    try:
        keys = set()
        for i, m in enumerate(models):
            vals = [summary["per_subject"][m].get(s, {}).get(metric, np.nan) for s in subjects]
            vals.append(summary["summary"][m][metric]["mean"])
            pos = x + (i - (len(models) - 1) / 2) * width
            ax.bar(pos, vals, width, label=m)
            key = table_std_key(summary["summary"][m])
            keys.add(key)
            ax.errorbar(pos[-1], vals[-1], yerr=summary["summary"][m][metric][key], color="k", capsize=3)
        chance = next(iter(summary["summary"].values()))["chance"]
        ax.axhline(chance["theoretical"], color="k", linestyle="--", linewidth=1, label="chance")
        if math.isfinite(chance["significant"]):
            ax.axhline(
                chance["significant"], color="grey", linestyle=":", linewidth=1, label="chance, p < 0.05"
            )
        ax.set_xticks(x, groups, rotation=45 if len(groups) > 8 else 0)
        spread = " / ".join(STD_LABELS[k] for k in sorted(keys))
        ax.set_ylabel(f"{metric.replace('_', ' ')}\n(mean bars: ± {spread})" if spread else metric.replace("_", " "))
        if metric != "kappa":  # kappa can be negative
            ax.set_ylim(0, 1.05)
        ax.set_title(wrap_title(title, fig))
        # beside the axes: inside, it covered the tallest bars
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def top_channels(weights: np.ndarray, ch_names: list[str], fraction: float = 0.25) -> list[str]:
    """Names of the ``ceil(fraction * C)`` channels with the largest weights, largest first (ties: name order)."""
    weights = np.asarray(weights, dtype=np.float64).ravel()
    if len(weights) != len(ch_names):
        raise ValueError(f"{len(weights)} weights for {len(ch_names)} channel names")
    n_top = min(len(ch_names), max(1, _ceil(fraction * len(ch_names))))
    order = np.argsort(-weights, kind="stable")
    return [ch_names[i] for i in order[:n_top]]


def _montage():
    import mne  # lazy: MNE is slow to import; only the topomaps need it

    # MNE 1.13 renamed "standard_1020" to "colin27_1020" (same positions) and deprecates the old name.
    name = "colin27_1020" if "colin27_1020" in mne.channels.get_builtin_montages() else "standard_1020"
    return mne.channels.make_standard_montage(name)


def plot_channel_topomap(weights: np.ndarray, ch_names: list[str], path: Path, title: str = "") -> None:
    """Topomap of channel-attention weights on the standard 10-20 montage, top channels named.

    Channels without a standard position are dropped. With fewer than 3 positioned channels (e.g. the
    single-channel Bonn set) a bar chart of all weights is drawn instead.

    Args:
        weights: (C,) channel weights, or (n, C), averaged over the first axis.
        ch_names: C channel names (10-20 spelling, case-sensitive: ``FCz``, ``POz``).
        path: PNG file to write.
        title: Figure title.
    """
    import mne  # lazy: MNE is slow to import; only the topomaps need it

    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim == 2:
        weights = weights.mean(axis=0)
    if weights.shape != (len(ch_names),):
        raise ValueError(f"weights of shape {weights.shape} for {len(ch_names)} channel names")
    ranked = top_channels(weights, ch_names)
    top = set(ranked)  # named on the plot

    # Match 10-20 names regardless of case and of the trailing dots some EDF headers pad names with
    # (PhysioNet's "Fc4."), so "FC4", "Fc4." and "fc4" all find their position.
    info = mne.create_info([n.rstrip(".") for n in ch_names], sfreq=1.0, ch_types="eeg")
    info.set_montage(_montage(), on_missing="ignore", match_case=False, verbose="error")
    keep = [
        i
        for i, ch in enumerate(info["chs"])
        if np.all(np.isfinite(ch["loc"][:3])) and np.any(ch["loc"][:3] != 0)
    ]

    plt = _pyplot()
    if len(keep) >= 3:
        # constrained layout: the wrapped title, the "top:" line and the colour bar all get room
        fig, ax = plt.subplots(figsize=(4.5, 4), layout="constrained")
        try:
            sub = mne.pick_info(info, keep, verbose="error")
            names = [ch_names[i] if ch_names[i] in top else "" for i in keep]
            im, _ = mne.viz.plot_topomap(
                weights[keep],
                sub,
                axes=ax,
                names=names,
                contours=4,
                extrapolate="local",  # no colour beyond the (sparse) electrodes
                show=False,
            )
            fig.colorbar(im, ax=ax, shrink=0.8, label="weight")
            dropped = len(ch_names) - len(keep)
            ax.set_title(wrap_title(title, fig)
                         + (f"\n({dropped} channel(s) without position dropped)" if dropped else ""))
            ax.text(0.5, -0.08, wrap_title("top: " + ", ".join(ranked), fig, plt.rcParams["font.size"], 0.7),
                    transform=ax.transAxes, ha="center", va="top")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=120)
        finally:
            plt.close(fig)
        return

    fig, ax = plt.subplots(figsize=(max(3.0, 0.35 * len(ch_names) + 1.5), 3.5), layout="constrained")
    try:
        colors = ["tab:red" if name in top else "tab:blue" for name in ch_names]
        bars = ax.bar(np.arange(len(ch_names)), weights, color=colors)
        ax.set_xticks(np.arange(len(ch_names)), ch_names, rotation=90 if len(ch_names) > 8 else 0)
        for bar, name in zip(bars, ch_names, strict=True):
            if name in top:
                ax.annotate(
                    name,
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize="small",
                )
        ax.set_ylabel("weight")
        ax.set_title(wrap_title(title, fig))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
