"""The pure helpers of bench/external_inc.py (no INC needed): the budget as INC's loss, the trial summary, the table."""

from __future__ import annotations

import importlib
import sys

import pytest

from bench.external_inc import HEADERS, render, rows_of, summarize_trials, tolerable_loss, tuning_lines


def test_the_module_imports_without_inc(monkeypatch):
    # None in sys.modules makes any `import neural_compressor...` raise: the module and its helpers must not need it.
    import bench.external_inc as mod

    for name in ("neural_compressor", "neural_compressor.torch", "neural_compressor.torch.quantization"):
        monkeypatch.setitem(sys.modules, name, None)
    mod = importlib.reload(mod)
    assert mod.tolerable_loss(0.01, 0.5) == pytest.approx(0.02)


@pytest.mark.parametrize("baseline", [0.93, 0.5, 0.02])
def test_relative_loss_is_the_absolute_budget(baseline):
    budget = 0.01
    loss = tolerable_loss(budget, baseline)
    target = baseline * (1 - loss)  # INC's acceptance test
    assert target == pytest.approx(baseline - budget, abs=1e-12)
    assert baseline - budget + 1e-9 >= target
    assert not baseline - budget - 1e-6 >= target


def test_relative_loss_needs_a_positive_baseline():
    with pytest.raises(ValueError, match="positive"):
        tolerable_loss(0.01, 0.0)


STATIC = {"name": "static_quant", "params": {"act_sym": True, "act_algo": "kl"}}
STATIC2 = {"name": "static_quant", "params": {"act_sym": False, "act_algo": "kl"}}
DYNAMIC = {"name": "pt2e_dynamic_quant", "params": {"act_sym": True, "act_algo": "kl"}}


def test_summary_of_a_tuning_that_stopped_at_the_first_pass():
    trials = [{"result": 0.85, "config": STATIC}, {"result": 0.895, "config": STATIC2}]
    s = summarize_trials(trials, baseline=0.90, loss=tolerable_loss(0.01, 0.90), chosen=STATIC2)
    assert s["n_trials"] == 2 and s["passed"] == [2] and s["chosen_trial"] == 2
    assert s["stopped_at_first_pass"] is True
    assert s["target"] == pytest.approx(0.89)


def test_summary_when_nothing_passed_and_inc_returned_the_best():
    trials = [{"result": 0.80, "config": STATIC}, {"result": 0.85, "config": STATIC2},
              {"result": 0.84, "config": DYNAMIC}]
    s = summarize_trials(trials, baseline=0.90, loss=tolerable_loss(0.01, 0.90), chosen=STATIC2)
    assert s["passed"] == [] and s["first_pass"] is None and s["chosen_trial"] == 2
    assert s["stopped_at_first_pass"] is False


def result(inc_latency: float, inc_test: float) -> dict:
    return {
        "domain": "netflow", "primary": "balanced_accuracy", "budget": 0.01, "variant": "distill",
        "models": {
            "teacher": {"how": "float32", "test": 0.93, "val": 0.94, "bytes": 800 * 1024, "latency_ms": 0.40,
                        "seconds": 0.0},
            "formerflow: distill": {"how": "distill", "test": 0.931, "val": 0.94, "bytes": 200 * 1024,
                                    "latency_ms": 0.20, "seconds": 12.0},
            "INC autotune": {"how": "INC static_quant int8", "test": inc_test, "val": 0.935, "bytes": 1000 * 1024,
                             "latency_ms": inc_latency, "seconds": 30.0},
        },
        "inc": {"space": 8, "baseline": 0.94, "val_items": 2000, "config": STATIC,
                "tuning": summarize_trials([{"result": 0.935, "config": STATIC}], 0.94, tolerable_loss(0.01, 0.94),
                                           STATIC)},
    }


def test_rows_are_against_the_teacher_and_flag_a_slower_int8_model():
    rows = {r["model"]: r for r in rows_of(result(inc_latency=0.80, inc_test=0.91))}
    assert rows["formerflow: distill"]["faster"] == pytest.approx(2.0)
    assert rows["formerflow: distill"]["smaller"] == pytest.approx(4.0)
    assert rows["formerflow: distill"]["note"] == ""
    inc = rows["INC autotune"]
    assert inc["faster"] == pytest.approx(0.5) and inc["smaller"] == pytest.approx(0.8)
    assert inc["delta"] == pytest.approx(-0.02)
    assert "slower than the teacher at b=1" in inc["note"] and "outside the budget" in inc["note"]
    assert rows["teacher"]["note"] == "" and rows["teacher"]["faster"] == pytest.approx(1.0)


def test_a_faster_inc_model_within_the_budget_has_no_note():
    rows = {r["model"]: r for r in rows_of(result(inc_latency=0.10, inc_test=0.925))}
    assert rows["INC autotune"]["note"] == ""


def test_table_and_tuning_line():
    res = result(inc_latency=0.80, inc_test=0.91)
    text = render(rows_of(res))
    lines = text.splitlines()
    assert lines[0].startswith("| domain") and all(h in lines[0] for h in HEADERS)
    assert len(lines) == 2 + 3  # header, separator, three models
    assert "slower than the teacher at b=1" in text and "0.5000" not in text  # ratios in 2 digits: 0.50
    assert "0.50" in next(line for line in lines if "INC autotune" in line)
    line = tuning_lines(res)[0]
    assert "ran 1 of 8 configs" in line and "stopped at the first passing config" in line
    assert "static_quant" in line


def test_a_tuning_that_raised_is_reported():
    res = result(inc_latency=0.80, inc_test=0.91)
    res["models"]["INC autotune"] = {"how": "INC int8 (PT2E)", "test": None, "val": None, "bytes": None,
                                     "seconds": 14.0, "latency_ms": None, "notes": ["failed in trial 1: boom"]}
    res["inc"].update(config=None, tuning=summarize_trials([], 0.94, tolerable_loss(0.01, 0.94), None),
                      error={"trial": 1, "config": DYNAMIC, "error": "InternalError: boom"})
    inc = {r["model"]: r for r in rows_of(res)}["INC autotune"]
    assert inc["note"] == "failed in trial 1: boom" and inc["faster"] is None and inc["delta"] is None
    inc_line = next(line for line in render(rows_of(res)).splitlines() if "INC autotune" in line)
    cells = [c.strip() for c in inc_line.strip("|").split("|")]
    assert cells[4:11] == ["-"] * 7 and cells[-1] == "failed in trial 1: boom"  # test .. faster: nothing measured
    line = tuning_lines(res)[0]
    assert "ran 0 of 8" in line and "returned no model" in line
    assert "trial 1 raised (pt2e_dynamic_quant): InternalError: boom" in line
