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


# ---------------------------------------------------------------------------- baselines of the candidate's report
ERR = "rollout_rel_l2_50"


def gate_err(candidate, champion=None, baselines=None, allow=False):
    """Turbulence's gate: an error (lower is better), the baselines of its own metrics.json."""
    return gate(candidate, champion, ERR, 0.0, 200.0, higher_is_better=False, baselines=baselines,
                allow_below_baseline=allow, switch="register.turbulence.allow_below_baseline")


TURB_BASELINES = {"persistence": {ERR: 1.0100}, "fno": {ERR: 1.2500}, "ifactformer_o": {ERR: math.nan}}


def test_candidate_worse_than_persistence_is_not_promoted_without_a_champion():
    """Finding 6: IFactFormer-m at 1.34 against persistence at 1.01 must not become the first champion."""
    ok, reason = gate_err({ERR: 1.34, "stable": 1.0}, None, TURB_BASELINES)
    assert not ok
    assert reason == ("rollout_rel_l2_50 1.3400 is worse than baseline persistence 1.0100 (lower is better); "
                      "register.turbulence.allow_below_baseline is false")


def test_candidate_worse_than_a_baseline_is_not_promoted_over_a_worse_champion():
    ok, reason = gate_err({ERR: 1.34}, {ERR: 1.50}, TURB_BASELINES)  # beats the champion, not persistence
    assert not ok and "persistence 1.0100" in reason


def test_the_switch_allows_it_and_the_reason_still_says_so():
    ok, reason = gate_err({ERR: 1.34}, None, TURB_BASELINES, allow=True)
    assert ok
    assert reason == ("no champion yet; rollout_rel_l2_50 1.3400 is worse than baseline persistence 1.0100 "
                      "(lower is better), allowed by register.turbulence.allow_below_baseline")
    ok, reason = gate_err({ERR: 1.34}, {ERR: 1.20}, TURB_BASELINES, allow=True)  # the champion still counts
    assert not ok and "> champion 1.2000" in reason and "allowed by" in reason


def test_candidate_at_or_better_than_the_best_baseline_passes_to_the_champion_check():
    for value in (1.01, 0.90):  # a tie with the best baseline is not worse
        ok, reason = gate_err({ERR: value}, None, TURB_BASELINES)
        assert ok and reason == "no champion yet"
    ok, reason = gate_err({ERR: 0.90}, {ERR: 0.80}, TURB_BASELINES)
    assert not ok and "champion 0.8000" in reason and "baseline" not in reason


def test_the_best_baseline_counts_higher_is_better():
    """Classification: the best baseline is the highest; non-finite or missing values do not count."""
    baselines = {"logreg": {PRIMARY: 0.70}, "hgb": {PRIMARY: 0.875}, "broken": {PRIMARY: math.nan}, "none": {}}
    ok, reason = gate({PRIMARY: 0.80, "latency_ms": 1.0}, None, PRIMARY, 0.0, 50.0, baselines=baselines)
    assert not ok and "baseline hgb 0.8750" in reason and "0.8000" in reason and "higher is better" in reason
    assert gate({PRIMARY: 0.875}, None, PRIMARY, 0.0, 50.0, baselines=baselines)[0]
    # only non-finite baselines: nothing to compare with
    assert gate({PRIMARY: 0.1}, None, PRIMARY, 0.0, 50.0, baselines={"broken": {PRIMARY: math.nan}})[0]


def test_best_baseline_and_comparable_baselines():
    from tasks.register import best_baseline, comparable_baselines

    assert best_baseline(TURB_BASELINES, ERR, higher_is_better=False) == ("persistence", 1.01)
    assert best_baseline(TURB_BASELINES, ERR, higher_is_better=True) == ("fno", 1.25)
    assert best_baseline({}, ERR) is None and best_baseline(None, ERR) is None
    metrics = {"models": {"teacher": {ERR: 1.3}, "int8": {ERR: 1.4}, "fno": {ERR: 1.2}, "persistence": {ERR: 1.0}}}
    assert set(comparable_baselines(metrics, {"teacher", "int8"})) == {"fno", "persistence"}
    # EEG's metrics.json holds only its own models (the protocol's baselines are on other folds): none
    assert comparable_baselines({"models": {"teacher": {}, "int8": {}}, "protocol": {"eegnet": {}}},
                                {"teacher", "int8"}) == {}


def test_unstable_by_small_scale_energy_is_named_in_the_reason():
    cand = {ERR: 0.5, "stable": 0.0, "small_scale_step": 15.0}
    ok, reason = gate_err(cand)
    assert not ok and reason == "the candidate's rollout is unstable: small-scale energy from step 15"


def test_every_failed_check_is_named():
    """The default run's teacher: unstable by the small-scale check and worse than persistence; both are said."""
    cand = {ERR: 1.3393, "stable": 0.0, "small_scale_step": 16.0, "latency_ms": 300.0}
    ok, reason = gate_err(cand, None, TURB_BASELINES)
    assert not ok
    assert reason == ("the candidate's rollout is unstable: small-scale energy from step 16; latency 300.000 ms > "
                      "budget 200.0 ms; rollout_rel_l2_50 1.3393 is worse than baseline persistence 1.0100 (lower "
                      "is better); register.turbulence.allow_below_baseline is false")
