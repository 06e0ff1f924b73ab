"""bench/eeg_bonn_ensemble.py's readings: seed ensembles average per window, segments average their windows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from bench.eeg_bonn_ensemble import views


def _pred(p1_by_seed: dict[int, list[float]], y: list[int]) -> pl.DataFrame:
    n = len(y)
    return pl.concat([pl.DataFrame({"model": ["m"] * n, "seed": [s] * n, "index": np.arange(n), "y": y, "p1": p})
                      for s, p in p1_by_seed.items()])


def test_segment_and_seed_ensembles_average_the_right_rows():
    # Two segments (groups 0, 1) of three windows; seizure segment 1. Seed 1 misses one window of each segment,
    # seed 2 misses a different one: per window both seeds are wrong on 2 of 6, but each segment's mean and each
    # window's seed mean are right.
    y = [0, 0, 0, 1, 1, 1]
    groups = np.array([0, 0, 0, 1, 1, 1])
    pred = _pred({1: [0.9, 0.1, 0.1, 0.1, 0.9, 0.9], 2: [0.1, 0.6, 0.1, 0.9, 0.4, 0.9]}, y)
    v = views(pred, groups)["m"]
    assert v["window"]["accuracy"] == pytest.approx(4 / 6)
    assert v["window"]["seeds"] == 2 and v["window"]["n"] == 6
    assert v["window, seed ensemble"]["accuracy"] == pytest.approx(5 / 6)  # window 1: (0.1 + 0.6) / 2 = 0.35 < 0.5
    assert v["window, seed ensemble"]["n"] == 6
    assert v["segment"]["n"] == 2 and v["segment"]["accuracy"] == 1.0
    assert v["segment, seed ensemble"]["n"] == 2 and v["segment, seed ensemble"]["balanced_accuracy"] == 1.0


def test_a_segment_whose_windows_disagree_follows_their_mean():
    y = [1, 1, 1, 0, 0, 0]
    groups = np.array([5, 5, 5, 7, 7, 7])
    pred = _pred({1: [0.2, 0.3, 0.9, 0.1, 0.1, 0.1]}, y)  # mean 0.467: the seizure segment is missed
    v = views(pred, groups)["m"]
    assert v["segment"]["accuracy"] == 0.5 and v["segment"]["balanced_accuracy"] == 0.5
    assert v["window"]["accuracy"] == pytest.approx(4 / 6)
