"""The choice of the served variant (tasks/compress/choose.py): within the budget, never slower than the teacher."""

from __future__ import annotations

import pytest

from tasks.compress.choose import choose, dominated, within_budget


def row(metric: float, latency: float, size: int, throughput: float = 100.0) -> dict:
    return {"balanced_accuracy": metric, "latency_ms": latency, "bytes": size, "throughput_per_s": throughput}


ROWS = {
    "teacher": row(0.90, 1.00, 1000, 100),
    "small_fast": row(0.895, 0.50, 300, 150),       # within a 0.01 budget, fastest eligible
    "tiny_bad": row(0.80, 0.20, 100, 400),          # fastest, but far outside the budget
    "int8_slow": row(0.90, 1.30, 250, 90),          # smallest within budget, slower than the teacher
    "medium": row(0.899, 0.70, 600, 120),
}


def pick(rows=ROWS, **kw):
    args = {"primary": "balanced_accuracy", "higher_is_better": True, "budget": 0.01, "objective": "latency", **kw}
    return choose(rows, **args)


def test_best_latency_within_the_budget():
    c = pick()
    assert c["variant"] == "small_fast"
    assert "tiny_bad" in c["rejected"] and "budget" in c["rejected"]["tiny_bad"]
    assert "int8_slow" in c["rejected"] and "slower than the teacher" in c["rejected"]["int8_slow"]


def test_size_objective_still_refuses_a_variant_slower_than_the_teacher():
    assert pick(objective="size")["variant"] == "small_fast"  # int8_slow is smaller but slower at batch 1
    assert pick(objective="throughput")["variant"] == "small_fast"


def test_a_zero_budget_without_a_lossless_variant_keeps_the_teacher():
    rows = {k: v for k, v in ROWS.items() if k != "int8_slow"}
    c = pick(rows, budget=0.0)
    assert c["variant"] == "teacher" and "no variant" in c["reason"]


def test_never_outside_the_budget_or_slower_whatever_the_rows():
    import random

    rng = random.Random(0)
    for _ in range(200):
        rows = {"teacher": row(0.9, 1.0, 1000)}
        rows.update({f"v{i}": row(rng.uniform(0.8, 0.95), rng.uniform(0.2, 2.0), rng.randint(50, 2000),
                                  rng.uniform(10, 500)) for i in range(6)})
        budget = rng.choice([0.0, 0.01, 0.05])
        for objective in ("latency", "size", "throughput"):
            c = pick(rows, budget=budget, objective=objective)
            chosen = rows[c["variant"]]
            assert chosen["balanced_accuracy"] >= 0.9 - budget - 1e-12
            assert chosen["latency_ms"] <= 1.0


def test_lower_is_better_budget_is_relative():
    rows = {"teacher": {"err": 1.0, "latency_ms": 4.0, "bytes": 100},
            "a": {"err": 1.04, "latency_ms": 2.0, "bytes": 50},
            "b": {"err": 1.06, "latency_ms": 1.0, "bytes": 40}}
    c = choose(rows, primary="err", higher_is_better=False, budget=0.05, objective="latency")
    assert c["variant"] == "a" and "b" in c["rejected"]
    assert within_budget(1.05, 1.0, 0.05, False) and not within_budget(1.051, 1.0, 0.05, False)


def test_dominated_rows():
    assert dominated(ROWS, "balanced_accuracy", True) == set()  # each is best on one of metric, latency, size
    rows = {"teacher": row(0.9, 1.0, 1000), "better": row(0.91, 0.5, 500), "tie": row(0.9, 1.0, 1000)}
    assert dominated(rows, "balanced_accuracy", True) == {"teacher", "tie"}


def test_missing_objective_measurement_is_a_clear_error():
    rows = {"teacher": {"err": 1.0, "latency_ms": 4.0, "bytes": 100}}
    with pytest.raises(ValueError, match="throughput"):
        choose(rows, primary="err", higher_is_better=False, budget=0.05, objective="throughput")
