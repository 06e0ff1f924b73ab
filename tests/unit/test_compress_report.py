"""The Pareto report's method sections (tasks/compress/choose.py): nested vs independent, low-rank before/after."""

from __future__ import annotations

import pytest

from tasks.compress.choose import method_sections, nested_plot


def _rows(nested_f1: float, indep_f1: float) -> dict[str, dict]:
    base = {"latency_ms": 1.0, "bytes": 1000, "parameters": 100}
    return {"teacher": {**base, "f1": 0.9},
            "nested-w1": {**base, "f1": 0.9},
            "nested-w0.5": {**base, "f1": nested_f1, "parameters": 60},
            "indep-w0.5": {**base, "f1": indep_f1, "parameters": 60},
            "nested-mix1": {**base, "f1": 0.85, "parameters": 80},
            "lowrank": {**base, "f1": 0.88}}


@pytest.mark.parametrize(("nested_f1", "indep_f1", "verdict", "wins"), [(0.86, 0.84, "yes", 1), (0.80, 0.84, "no", 0)])
def test_nested_beside_independent(nested_f1: float, indep_f1: float, verdict: str, wins: int) -> None:
    md = method_sections(_rows(nested_f1, indep_f1), "f1", True, {"nested-mix1": {"nested_blocks": "0.5,1"}})
    row = next(line for line in md.splitlines() if line.startswith("| 0.5 |"))
    assert f"| {nested_f1:.4f} | {indep_f1:.4f} | {nested_f1 - indep_f1:+.4f} | {verdict} |" in row
    assert f"at {wins} of 1 widths" in md  # w1 has no independent student: not counted
    assert "| mix 0.5,1 |" in md


def test_lower_is_better_flips_the_verdict() -> None:
    rows = _rows(0.10, 0.20)  # a relative L2 error: nested lower = better
    md = method_sections(rows, "f1", False, {})
    assert "| yes |" in next(line for line in md.splitlines() if line.startswith("| 0.5 |"))


def test_lowrank_before_and_after_fine_tuning() -> None:
    stats = {"lowrank": {"lowrank_val_loss": [0.30, 0.55, 0.32], "lowrank_layers": [4, 6],
                         "lowrank_params": [1000, 600]}}
    md = method_sections(_rows(0.86, 0.84), "f1", True, stats)
    row = next(line for line in md.splitlines() if line.startswith("| lowrank |"))
    assert "4 of 6" in row and "1,000 → 600" in row and "| 0.3000 | 0.5500 | 0.3200 | 0.8800 |" in row


def test_no_sections_without_the_methods(tmp_path) -> None:
    rows = {"teacher": {"f1": 0.9, "latency_ms": 1.0, "bytes": 10}, "distill": {"f1": 0.9, "latency_ms": 0.5, "bytes": 5}}
    assert method_sections(rows, "f1", True, {}) == ""
    assert nested_plot(rows, {}, "f1", True, tmp_path, "netflow") == []


def test_nested_plot_written(tmp_path) -> None:
    assert nested_plot(_rows(0.86, 0.84), {}, "f1", True, tmp_path, "netflow") == ["compress_nested.png"]
    assert (tmp_path / "compress_nested.png").stat().st_size > 1000
