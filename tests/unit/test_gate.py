"""The promotion gate of the register stage (``tasks.register.gate``): pure decisions, no MLflow."""

from __future__ import annotations

import math

import pytest

from tasks.register import gate

PRIMARY = "balanced_accuracy"


def decide(candidate, champion=None, min_delta=0.0, budget=50.0):
    return gate(candidate, champion, PRIMARY, min_delta, budget)


def test_no_champion_promotes():
    promote, reason = decide({PRIMARY: 0.6, "latency_ms": 1.0})
    assert promote and "no champion" in reason


@pytest.mark.parametrize("value", [0.75, 0.875])
def test_better_or_equal_primary_promotes(value):
    promote, reason = decide({PRIMARY: value, "latency_ms": 1.0}, {PRIMARY: 0.75})
    assert promote
    assert PRIMARY in reason


def test_worse_primary_keeps_the_champion_and_names_the_metric():
    promote, reason = decide({PRIMARY: 0.5, "latency_ms": 1.0}, {PRIMARY: 0.75})
    assert not promote
    assert PRIMARY in reason and "0.5000" in reason and "0.7500" in reason


def test_other_primary_metric_is_used():
    promote, reason = gate({"f1": 0.25, PRIMARY: 0.99}, {"f1": 0.5, PRIMARY: 0.1}, "f1", 0.0, 50.0)
    assert not promote and "f1" in reason


def test_latency_over_budget_keeps():
    promote, reason = decide({PRIMARY: 0.99, "latency_ms": 60.0}, {PRIMARY: 0.5}, budget=50.0)
    assert not promote and "latency" in reason and "50.0" in reason
    # also when there is no champion yet: the budget is a hard limit
    promote, _ = decide({PRIMARY: 0.99, "latency_ms": 60.0}, None, budget=50.0)
    assert not promote


def test_latency_at_budget_or_unknown_passes():
    assert decide({PRIMARY: 0.8, "latency_ms": 50.0}, {PRIMARY: 0.5}, budget=50.0)[0]
    assert decide({PRIMARY: 0.8}, {PRIMARY: 0.5}, budget=50.0)[0]  # no latency measured (e.g. baseline)


def test_min_delta_is_respected():
    champion = {PRIMARY: 0.5}
    # 0.5 + 0.25 = 0.75 exactly (binary fractions, no rounding noise)
    assert not decide({PRIMARY: 0.625}, champion, min_delta=0.25)[0]
    promote, reason = decide({PRIMARY: 0.75}, champion, min_delta=0.25)
    assert promote and "0.25" in reason
    assert decide({PRIMARY: 0.875}, champion, min_delta=0.25)[0]
    # equal is not enough once a margin is asked for
    assert not decide({PRIMARY: 0.5}, champion, min_delta=0.25)[0]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), None])
def test_non_finite_or_missing_candidate_metric_keeps(value):
    cand = {"latency_ms": 1.0} if value is None else {PRIMARY: value, "latency_ms": 1.0}
    for champion in (None, {PRIMARY: 0.5}):
        promote, reason = decide(cand, champion)
        assert not promote
        assert PRIMARY in reason and "finite" in reason


def test_champion_without_a_finite_metric_is_replaced():
    promote, reason = decide({PRIMARY: 0.6}, {PRIMARY: math.nan})
    assert promote and PRIMARY in reason
    assert decide({PRIMARY: 0.6}, {"f1": 0.9})[0]  # champion never measured the primary metric


def test_lower_is_better_for_errors():
    """Turbulence gates on a rollout error: lower wins, min_delta is an improvement to demand."""
    champ = {"rollout_rel_l2_50": 0.50}
    ok, reason = gate({"rollout_rel_l2_50": 0.40}, champ, "rollout_rel_l2_50", 0.05, 50.0, higher_is_better=False)
    assert ok and "0.4000 <= champion 0.5000 - 0.05" in reason
    ok, reason = gate({"rollout_rel_l2_50": 0.47}, champ, "rollout_rel_l2_50", 0.05, 50.0, higher_is_better=False)
    assert not ok and "0.4700 > champion 0.5000 - 0.05" in reason
    ok, _ = gate({"rollout_rel_l2_50": 0.9}, champ, "rollout_rel_l2_50", 0.0, 50.0)  # higher-is-better default
    assert ok


def test_blown_up_rollout_is_never_promoted():
    cand = {"rollout_rel_l2_10": 0.2, "stable": 0.0, "blowup_step": 7.0}
    ok, reason = gate(cand, None, "rollout_rel_l2_10", 0.0, 50.0, higher_is_better=False)
    assert not ok and reason == "the candidate's rollout blew up at step 7"
    ok, _ = gate({**cand, "stable": 1.0}, None, "rollout_rel_l2_10", 0.0, 50.0, higher_is_better=False)
    assert ok
    ok, reason = gate({"rollout_rel_l2_50": math.nan}, None, "rollout_rel_l2_50", 0.0, 50.0, higher_is_better=False)
    assert not ok and "no finite rollout_rel_l2_50" in reason
