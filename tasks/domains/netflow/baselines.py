"""Single-flow scikit-learn baselines of the ``netflow`` domain (the target flow of each window, no context)."""

from __future__ import annotations

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import threadpool_limits

from tasks.domains.netflow.data import FlowWindows


def baseline_features(split: FlowWindows) -> np.ndarray:
    """Single-flow features of each window's target flow: numerics then categorical codes. (N, Fn + Fc)."""
    return np.concatenate([split.x_num.numpy()[split.ends], split.x_cat.numpy()[split.ends]], axis=1)


def fit_baselines(names: list[str], train: FlowWindows, n_categorical: int, max_rows: int, seed: int):
    """Fit the single-flow scikit-learn baselines on the most recent ``max_rows`` training flows.

    * ``logreg``: logistic regression on the scaled numerics + one-hot categorical codes.
    * ``hgb``: histogram gradient boosting with the categorical codes as native categories.

    Returns:
        ``{name: fitted estimator}``; each has ``predict_proba`` on :func:`baseline_features` rows.
    """
    x = baseline_features(train)[-max_rows:]
    y = train.labels[-max_rows:]
    n_num = x.shape[1] - n_categorical
    cat_idx = list(range(n_num, x.shape[1]))
    fitted = {}
    for name in names:
        if name == "logreg":
            pre = ColumnTransformer(
                [("cat", OneHotEncoder(handle_unknown="ignore"), cat_idx)], remainder="passthrough"
            )
            est = make_pipeline(pre, LogisticRegression(max_iter=300, class_weight="balanced"))
        elif name == "hgb":
            est = HistGradientBoostingClassifier(
                categorical_features=cat_idx, class_weight="balanced", max_iter=200, random_state=seed
            )
        else:  # params validation makes this unreachable
            raise ValueError(f"unknown baseline {name!r}")
        # One OpenMP thread: HGB's threads spin while they wait, and beside another busy process on a small
        # machine (a second test worker, a training in another domain) its fit took 8.9 s instead of 0.7 s;
        # on one thread it costs at most the second core. The fitted model does not depend on the threads.
        with threadpool_limits(limits=1, user_api="openmp"):
            fitted[name] = est.fit(x, y)
    return fitted
