"""``tasks.eeg_protocol``: Euclidean alignment, CO / CV / LOSO folds, metric summaries and plots.

The alignment tests check defining properties (whitened mean covariance, agreement with SciPy's matrix
power, a direct loop for the online recursion); the summary tests use prediction frames whose metrics are
known by construction and recompute the reference's std definition independently.
"""

from __future__ import annotations

import json
import math

import matplotlib.image as mpimg
import numpy as np
import polars as pl
import pytest
from scipy.linalg import fractional_matrix_power
from scipy.stats import binom

from tasks.domains.eeg.protocol import (
    Fold,
    align_offline,
    align_online,
    chance_level,
    co_split,
    ea_reference,
    fold_metrics,
    inv_sqrtm,
    kfold_splits,
    per_subject_table,
    plot_channel_topomap,
    plot_model_bars,
    protocol_folds,
    summarize,
    top_channels,
    trial_covariances,
)

BCI2A_CHANNELS = "Fz FC3 FC1 FCz FC2 FC4 C5 C3 C1 Cz C2 C4 C6 CP3 CP1 CPz CP2 CP4 P1 Pz P2 POz".split()


def _trials(n: int, C: int = 4, T: int = 64, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Stationary trials: white noise mixed by one fixed random matrix (a non-identity covariance)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(C, C)) * scale + np.eye(C)
    return (A @ rng.normal(size=(n, C, T))).astype(np.float32)  # (n, C, T)


def _spd(C: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(C, C))
    return M @ M.T + 0.1 * np.eye(C)


# ----------------------------------------------------------------------------- Euclidean alignment


def test_trial_covariances_match_np_cov():
    X = _trials(3, C=3, T=20)
    covs = trial_covariances(X)
    assert covs.shape == (3, 3, 3)
    for i in range(3):
        np.testing.assert_allclose(covs[i], np.cov(X[i].astype(np.float64)), rtol=1e-12)
    np.testing.assert_allclose(ea_reference(X), covs.mean(axis=0))


def test_inv_sqrtm_equals_scipy_fractional_power():
    R = _spd(6, seed=1)
    W = inv_sqrtm(R)
    np.testing.assert_allclose(W, np.real(fractional_matrix_power(R, -0.5)), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(W, W.T)
    np.testing.assert_allclose(W @ R @ W, np.eye(6), atol=1e-10)
    # A stack gives the same as one matrix at a time.
    R2 = _spd(6, seed=2)
    np.testing.assert_allclose(inv_sqrtm(np.stack([R, R2]))[1], inv_sqrtm(R2), rtol=1e-10)


def test_rank_deficient_covariance_stays_finite():
    X = _trials(10, C=5, T=50).astype(np.float64)
    X -= X.mean(axis=1, keepdims=True)  # average reference: channels sum to zero, rank C - 1
    R = ea_reference(X)
    assert np.linalg.matrix_rank(R, tol=1e-10 * np.abs(R).max()) == 4
    W = inv_sqrtm(R)
    assert np.all(np.isfinite(W))
    # The floored eigenvalue bounds the gain: at most 1 / sqrt(eps * max eigenvalue).
    assert np.linalg.eigvalsh(W).max() <= 1 / math.sqrt(1e-10 * np.linalg.eigvalsh(R).max()) * (1 + 1e-6)
    aligned = align_offline(X)
    assert np.all(np.isfinite(aligned))
    with pytest.raises(ValueError, match="no positive eigenvalue"):
        inv_sqrtm(np.zeros((3, 3)))


def test_align_offline_whitens_each_group():
    X = np.concatenate([_trials(12, seed=1, scale=3.0), _trials(8, seed=2, scale=0.2)])
    groups = np.array(["a"] * 12 + ["b"] * 8)
    out = align_offline(X, groups)
    assert out.dtype == np.float32 and out.shape == X.shape
    for g in ("a", "b"):
        np.testing.assert_allclose(ea_reference(out[groups == g]), np.eye(4), atol=1e-6)
    # One shared reference whitens the union but not each group.
    pooled = align_offline(X)
    np.testing.assert_allclose(ea_reference(pooled), np.eye(4), atol=1e-6)
    assert not np.allclose(ea_reference(pooled[groups == "a"]), np.eye(4), atol=1e-2)


def _online_loop(X: np.ndarray) -> np.ndarray:
    """The reference recursion written out trial by trial."""
    out = np.empty(X.shape)
    R = np.zeros((X.shape[1], X.shape[1]))
    for k in range(1, len(X) + 1):
        R = (R * (k - 1) + np.cov(X[k - 1].astype(np.float64))) / k
        out[k - 1] = np.real(fractional_matrix_power(R, -0.5)) @ X[k - 1]
    return out


def test_align_online_matches_direct_loop_and_restarts_per_group():
    Xa, Xb = _trials(6, seed=3), _trials(5, seed=4, scale=2.0)
    # Interleave the two groups: the running mean must follow each group's own chronology.
    X = np.empty((11, *Xa.shape[1:]), dtype=np.float32)
    groups = np.array(["a", "b", "a", "a", "b", "b", "a", "b", "a", "b", "a"])
    X[groups == "a"], X[groups == "b"] = Xa, Xb
    out = align_online(X, groups)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[groups == "a"], _online_loop(Xa), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[groups == "b"], _online_loop(Xb), rtol=1e-4, atol=1e-5)
    # The first trial of a group is whitened by its own covariance.
    np.testing.assert_allclose(np.cov(out[1].astype(np.float64)), np.eye(4), atol=1e-5)
    # Without groups the second group's first trial would use the first group's past.
    assert not np.allclose(align_online(X)[1], out[1], atol=1e-3)


def test_align_online_depends_on_order_and_converges_to_offline():
    X = _trials(40, T=200, seed=5, scale=2.0)
    online, offline = align_online(X), align_offline(X)
    # The last trial sees the whole set: its reference is the offline one.
    np.testing.assert_allclose(online[-1], offline[-1], rtol=1e-4, atol=1e-4)
    # Early trials see few covariances and differ more from offline EA than late trials.
    err = np.linalg.norm(online - offline, axis=(1, 2)) / np.linalg.norm(offline, axis=(1, 2))
    assert err[1:5].mean() > 3 * err[-10:-1].mean()
    # Order matters: aligning a permutation and undoing it gives different trials.
    perm = np.random.default_rng(0).permutation(len(X))
    undone = np.empty_like(online)
    undone[perm] = align_online(X[perm])
    assert not np.allclose(undone[:10], online[:10], atol=1e-2)
    np.testing.assert_allclose(undone[perm[-1]], offline[perm[-1]], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- protocols


def test_co_split_72_per_class_is_chronological():
    labels = np.tile([0, 1], 72)  # 144 alternating trials, as in BCI-IV-2a session T
    train, test = co_split(labels)
    for c in (0, 1):
        tr, te = train[labels[train] == c], test[labels[test] == c]
        assert (len(tr), len(te)) == (58, 14)
        assert tr.max() < te.min()  # every train trial precedes every test trial of the class
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 144
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    # 60 per class: 0.8 * 60 is exactly 48 and must not round up to 49.
    tr, te = co_split(np.repeat([0, 1], 60))
    assert len(tr) == 96 and len(te) == 24


def test_kfold_splits_are_contiguous_and_not_stratified():
    splits = kfold_splits(20, 5)
    assert len(splits) == 5
    for j, (tr, te) in enumerate(splits):
        np.testing.assert_array_equal(te, np.arange(4 * j, 4 * j + 4))
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(20))
    # Class-sorted labels: a stratified split would mix classes, this one does not.
    labels = np.repeat([0, 1], 10)
    assert len(np.unique(labels[splits[0][1]])) == 1


def _table(n_subjects: int = 3, per_class: int = 10):
    subjects = np.repeat([f"S{i + 1:02d}" for i in range(n_subjects)], 2 * per_class)
    labels = np.tile(np.tile([0, 1], per_class), n_subjects)
    return subjects, labels


@pytest.mark.parametrize("protocol", ["co", "cv", "loso"])
def test_protocol_folds_partition_trials(protocol):
    subjects, labels = _table()
    folds = protocol_folds(subjects, labels, protocol)
    assert all(isinstance(f, Fold) for f in folds)
    assert len(folds) == {"co": 3, "cv": 15, "loso": 3}[protocol]
    for f in folds:
        assert len(np.intersect1d(f.train, f.test)) == 0
        assert np.all(subjects[f.test] == f.test_subject)
        if protocol == "loso":
            assert f.name == f"LOSO-{f.test_subject}"
            np.testing.assert_array_equal(f.test, np.flatnonzero(subjects == f.test_subject))
            assert not np.any(subjects[f.train] == f.test_subject)
            assert len(f.train) + len(f.test) == len(labels)
        else:
            # Within-subject: train and test together are exactly that subject's trials.
            union = np.sort(np.concatenate([f.train, f.test]))
            np.testing.assert_array_equal(union, np.flatnonzero(subjects == f.test_subject))
    tested = np.sort(np.concatenate([f.test for f in folds]))
    if protocol == "co":  # each subject's last 20 % per class: 2 of 10 trials per class
        assert len(tested) == 3 * 2 * 2
        assert np.all(np.sort(np.concatenate([*(f.train for f in folds), tested])) == np.arange(len(labels)))
    else:  # every trial is tested exactly once
        np.testing.assert_array_equal(tested, np.arange(len(labels)))


def test_protocol_folds_pooled_cv_is_stratified_and_co_pooled():
    labels = np.repeat([0, 1], 50)  # class-sorted, as the Bonn sets are
    folds = protocol_folds(None, labels, "cv", pooled=True)
    assert [f.name for f in folds] == [f"fold{j}" for j in range(1, 6)]
    for f in folds:
        assert f.test_subject is None
        assert np.bincount(labels[f.test]).tolist() == [10, 10]
    np.testing.assert_array_equal(np.sort(np.concatenate([f.test for f in folds])), np.arange(100))
    (co,) = protocol_folds(np.zeros(100), labels, "co", pooled=True)
    assert co.test_subject is None and len(co.train) == 80


def test_protocol_folds_errors():
    subjects, labels = _table()
    with pytest.raises(ValueError, match="unknown protocol 'xval'"):
        protocol_folds(subjects, labels, "xval")
    with pytest.raises(ValueError, match="at least 2 subjects"):
        protocol_folds(np.array(["S01"] * 20), labels[:20], "loso")
    with pytest.raises(ValueError, match="cannot be pooled"):
        protocol_folds(subjects, labels, "loso", pooled=True)
    # Class-sorted within a subject: the first contiguous CV fold trains without class 1.
    with pytest.raises(
        ValueError, match=r"fold 'S01-fold5' \(cv\): the training set lacks class\(es\) \[1\]"
    ):
        protocol_folds(np.array(["S01"] * 10), np.array([0] * 8 + [1] * 2), "cv")


# ----------------------------------------------------------------------------- metrics and summaries


def test_fold_metrics_binary_and_multiclass():
    y = np.array([0, 0, 0, 1])
    m = fold_metrics(y, np.array([0.1, 0.2, 0.6, 0.8]), 2)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["roc_auc"] == pytest.approx(1.0)  # the one positive outranks every negative
    assert 0 < m["kappa"] < 1
    assert math.isnan(fold_metrics(np.zeros(3, int), np.array([0.2, 0.1, 0.7]), 2)["roc_auc"])
    probs = np.eye(3)[[0, 1, 2, 2]]  # predicts 0, 1, 2, 2
    m3 = fold_metrics(np.array([0, 1, 2, 1]), probs, 3)
    assert "roc_auc" not in m3 and m3["accuracy"] == pytest.approx(0.75)


def test_chance_level():
    c = chance_level(20, 2)
    assert c["theoretical"] == 0.5
    assert 0.5 < c["significant"] < 1
    # A binomial(20, 1/2) guesser reaches the threshold with probability <= 5 % (but more than 5 % one step
    # below it).
    k = round(c["significant"] * 20)
    assert binom.sf(k, 20, 0.5) <= 0.05 < binom.sf(k - 1, 20, 0.5)
    assert chance_level(1000, 2)["significant"] < c["significant"]  # more trials, tighter threshold


def _rows(model: str, seed: int, subject: str, n_right: int, n: int, fold: str = "f") -> list[dict]:
    """n balanced test trials of which the first n_right are classified right (p1 = 0.9 or 0.1)."""
    rows = []
    for i in range(n):
        y = i % 2
        right = i < n_right
        p1 = 0.9 if (y == 1) == right else 0.1
        rows.append({"model": model, "seed": seed, "fold": fold, "subject": subject, "y": y, "p1": p1})
    return rows


def _pred_frame() -> tuple[pl.DataFrame, dict]:
    # Accuracy of every (model, seed, subject), by construction.
    acc = {
        ("A", 1, "S1"): 1.0, ("A", 1, "S2"): 0.5, ("A", 2, "S1"): 1.0, ("A", 2, "S2"): 0.75,
        ("B", 1, "S1"): 0.5, ("B", 1, "S2"): 0.5, ("B", 2, "S1"): 0.75, ("B", 2, "S2"): 0.25,
    }  # fmt: skip
    rows = []
    for (model, seed, subject), a in acc.items():
        rows += _rows(model, seed, subject, int(a * 8), 8)
    return pl.DataFrame(rows), acc


def test_summarize_means_and_reference_std():
    pred, acc = _pred_frame()
    summary = summarize(pred, 2)
    json.dumps(summary)  # plain Python types only
    assert summary["models"] == ["A", "B"] and summary["subjects"] == ["S1", "S2"]
    assert summary["per_subject"]["A"]["S1"]["accuracy"] == 1.0  # perfect on S1 in both seeds
    for model in ("A", "B"):
        grid = np.array([[acc[(model, seed, s)] for s in ("S1", "S2")] for seed in (1, 2)])  # (seed, subject)
        got = summary["summary"][model]["accuracy"]
        assert got["mean"] == pytest.approx(grid.mean())
        # Reference std: over seeds of the mean over subjects (np.std, ddof 0).
        assert got["std_seeds"] == pytest.approx(np.std(grid.mean(axis=1)))
        assert got["std_subjects"] == pytest.approx(np.std(grid.mean(axis=0)))
        assert summary["summary"][model]["n_subjects"] == 2 and summary["summary"][model]["n_seeds"] == 2
        for s in ("S1", "S2"):
            assert summary["per_subject"][model][s]["accuracy"] == pytest.approx(
                np.mean([acc[(model, 1, s)], acc[(model, 2, s)]])
            )
    # Model A: seed means 0.75 and 0.875 -> std 0.0625; subject means 1.0 and 0.625 -> std 0.1875.
    assert summary["summary"]["A"]["accuracy"]["std_seeds"] == pytest.approx(0.0625)
    assert summary["summary"]["A"]["accuracy"]["std_subjects"] == pytest.approx(0.1875)
    # Balanced trials with every trial "sure": balanced accuracy equals accuracy.
    assert summary["summary"]["A"]["balanced_accuracy"]["mean"] == pytest.approx(0.8125)
    assert summary["summary"]["A"]["chance"] == chance_level(8, 2)


def test_summarize_pools_a_subjects_cv_folds():
    # Fold 1: 2 trials, both right; fold 2: 6 trials, 3 right. Pooled 5/8, not the fold mean 0.75.
    rows = _rows("A", 1, "S1", 2, 2, fold="S1-fold1") + _rows("A", 1, "S1", 3, 6, fold="S1-fold2")
    summary = summarize(pl.DataFrame(rows), 2)
    assert summary["per_subject"]["A"]["S1"]["accuracy"] == pytest.approx(5 / 8)
    assert summary["summary"]["A"]["n_test_median"] == 8


def test_per_subject_table_and_bars(tmp_path):
    pred, _ = _pred_frame()
    summary = summarize(pred, 2)
    table = per_subject_table(summary, "accuracy")
    lines = table.splitlines()
    assert lines[0] == "| subject | A | B |"
    assert "| S1 | 1.000 | 0.625 |" in lines
    assert "| mean ± std | 0.812 ± 0.062 | 0.500 ± 0.000 |" in lines
    assert lines[-1].startswith("Chance level") and "0.500 theoretical" in lines[-1]
    with pytest.raises(ValueError, match="unknown metric"):
        per_subject_table(summary, "f1")

    path = tmp_path / "plots" / "bars.png"
    plot_model_bars(summary, path, metric="balanced_accuracy", title="test")
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100 and img.shape[2] in (3, 4)


# ----------------------------------------------------------------------------- channels


def test_top_channels_ordering():
    names = ["a", "b", "c", "d", "e"]
    w = np.array([0.1, 0.5, 0.05, 0.3, 0.05])
    assert top_channels(w, names) == ["b", "d"]  # ceil(0.25 * 5) = 2
    assert top_channels(w, names, fraction=0.6) == ["b", "d", "a"]
    assert top_channels(w, names, fraction=1.0) == ["b", "d", "a", "c", "e"]  # ties keep name order
    with pytest.raises(ValueError):
        top_channels(w[:3], names)


def test_channel_topomap_22_channels_and_fallback(tmp_path):
    w = np.random.default_rng(0).dirichlet(np.ones(22))
    topo = tmp_path / "topo.png"
    plot_channel_topomap(w, BCI2A_CHANNELS, topo, title="BCI-IV-2a")
    img = mpimg.imread(topo)
    assert img.ndim == 3 and min(img.shape[:2]) > 100

    # A name without a 10-20 position is dropped, not fatal; (n, C) weights are averaged.
    names = [*BCI2A_CHANNELS[:5], "EOG1"]
    plot_channel_topomap(np.ones((3, 6)) / 6, names, tmp_path / "partial.png")
    assert mpimg.imread(tmp_path / "partial.png").ndim == 3

    single = tmp_path / "single.png"
    plot_channel_topomap(np.array([1.0]), ["EEG"], single, title="Bonn")
    img1 = mpimg.imread(single)
    assert img1.ndim == 3 and min(img1.shape[:2]) > 100


def test_per_subject_table_with_one_seed_shows_the_spread_over_subjects():
    y = np.array([0, 1, 0, 1])
    pred = pl.DataFrame({
        "model": ["A"] * 8, "seed": [1] * 8, "fold": ["f1"] * 4 + ["f2"] * 4,
        "subject": ["S1"] * 4 + ["S2"] * 4, "y": np.concatenate([y, y]),
        # S1 perfect (balanced accuracy 1.0); S2 always says class 1 (0.5)
        "p1": [0.1, 0.9, 0.2, 0.8] + [0.9] * 4,
    })
    table = per_subject_table(summarize(pred, 2))
    assert "| mean ± std | 0.750 ± 0.250 |" in table  # std over the two subjects, not 0.000 over one seed
