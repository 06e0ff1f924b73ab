"""The report's header (issue 19, point 5): when, from which code and params, and the registry's state; the
compact tables of the Prefect artifact and ``summary.json`` (what ``dvc metrics show`` prints).

Real files, a real git repository and the real params loader; no MLflow store is opened (the registry line of a
tracked run is covered end to end in tests/flows/test_dvc_reports.py).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tasks.domains import TaskInfo
from tasks.evaluate import (
    REGISTRY_LINE,
    ReportHeader,
    compact_columns,
    compact_table,
    git_state,
    registry_line,
    report_header,
    summary,
    update_registry_line,
    write_report,
)
from tests.conftest import setup_project

CLASSIFIER = TaskInfo(task="binary", class_names=["benign", "attack"], positive="attack", negative="benign",
                      item="window", split_note="windows")
FIELD = TaskInfo(task="regression", item="step",
                 table_columns=["one_step_rel_l2", "rollout_rel_l2_10", "spectrum_lsd", "stable", "ms_per_step",
                                "throughput_per_s", "speedup_vs_solver", "bytes", "parameters"])


def _row(kind: str, value: float, latency: float, size: int) -> dict:
    return {"kind": kind, "accuracy": value, "balanced_accuracy": value, "kappa": 0.5, "f1": value, "macro_f1": value,
            "fpr": 0.1, "roc_auc": 0.9, "latency_ms": latency, "throughput_per_s": 1000.0, "bytes": size,
            "parameters": 1000}


RESULT = {"n_test": 10, "task": "binary", "threshold": 0.5,
          "models": {"teacher": _row("transformer", 0.80, 2.0, 4000), "int8": _row("int8", 0.79, 1.0, 1000),
                     "logreg": {**_row("single-flow baseline", 0.70, 0.0, 0), "latency_ms": None, "bytes": None}},
          "compression": {"int8": {}}, "choice": {"variant": "int8"}}


def _header(registry: str) -> ReportHeader:
    return ReportHeader(written="2026-01-02 03:04:05 UTC", commit="a" * 40, dirty="no", params_hash="0123456789abcdef",
                        profiles="profiles `paper`",
                        differs=("train.netflow.epochs: params.yaml 8, this run 2",), registry=registry)


def test_report_starts_with_the_header_and_register_rewrites_its_registry_line(tmp_path):
    path = tmp_path / "report.md"
    before = registry_line("netflow", "3", "3", "as read by evaluate, before this run's register")
    write_report("netflow", RESULT, path, ["roc.png"], CLASSIFIER, header=_header(before))
    text = path.read_text()
    head = text.split("| model |")[0]  # the header comes before the metrics table
    assert "- **Written**: 2026-01-02 03:04:05 UTC" in head
    assert f"- **Code**: git `{'a' * 40}` (dirty: no)" in head
    assert "- **Params**: hash `0123456789abcdef`" in head
    assert "profiles `paper`" in head
    assert "differs from params.yaml in 1 key(s): `train.netflow.epochs: params.yaml 8, this run 2`" in head
    assert f"{REGISTRY_LINE} (`formerflow-netflow`): champion v3, candidate v3; as read by evaluate" in head
    assert "![roc](plots/roc.png)" in text

    after = registry_line("netflow", "4", "4", "after this run's register")
    assert update_registry_line(path, after)
    rewritten = path.read_text()
    assert after in rewritten and "champion v3" not in rewritten
    assert rewritten.replace(after, before) == text  # nothing else changed
    assert not update_registry_line(tmp_path / "missing.md", after)
    write_report("netflow", RESULT, path, [], CLASSIFIER)  # no header: nothing to rewrite
    assert not update_registry_line(path, after)


def test_header_of_a_project_names_its_params_differences_and_hash(tmp_path, monkeypatch):
    from tasks.params import load_params

    setup_project(tmp_path / "proj", monkeypatch)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # not inside the checkout that holds tmp_path
    plain = report_header("netflow", load_params(), tracked=False)
    assert "same as params.yaml" in "\n".join(plain.markdown()) and plain.differs == ()
    assert plain.commit == "unknown" and plain.dirty == "unknown"  # not a git work tree
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", plain.written)
    assert "not read (evaluate ran without MLflow tracking)" in plain.registry
    assert plain.profiles == "no profile"

    params = load_params(overrides=["train.netflow.lr=0.123"])
    monkeypatch.setenv("FORMERFLOW_PROFILE", "ci")  # what the header reads of the profiles (not loaded here)
    changed = report_header("netflow", params, tracked=False)
    assert "train.netflow.lr: params.yaml" in "; ".join(changed.differs) and "this run 0.123" in changed.differs[0]
    assert not any(".eeg." in d for d in changed.differs)  # only this domain's sections
    assert changed.params_hash != plain.params_hash and re.fullmatch(r"[0-9a-f]{16}", changed.params_hash)
    assert changed.profiles.startswith("profiles `ci`")


def test_the_command_lines_profiles_reach_the_stage(monkeypatch):
    """formerflow's --profile sets $FORMERFLOW_PROFILE for the stages it runs, so their headers name it."""
    from tasks.params import announce_profiles

    monkeypatch.delenv("FORMERFLOW_PROFILE", raising=False)
    with announce_profiles(None):
        assert "FORMERFLOW_PROFILE" not in os.environ  # nothing given: nothing set
    with announce_profiles(["finai", " finai-augment"]):
        assert os.environ["FORMERFLOW_PROFILE"] == "finai,finai-augment"
    assert "FORMERFLOW_PROFILE" not in os.environ  # restored: the next command of this process sees none
    monkeypatch.setenv("FORMERFLOW_PROFILE", "ci")
    with announce_profiles(["paper"]):
        assert os.environ["FORMERFLOW_PROFILE"] == "paper"
    assert os.environ["FORMERFLOW_PROFILE"] == "ci"


def test_git_state_ignores_what_a_run_writes(tmp_path):
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    subprocess.run(["git", "add", "code.py", "dvc.lock"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=tmp_path, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    for generated in ("reports/netflow/report.md", "mlflow.db", "data/raw/x.csv"):
        (tmp_path / generated).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / generated).write_text("run output\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    assert git_state(tmp_path) == (sha, "no")
    (tmp_path / "code.py").write_text("x = 2\n")
    (tmp_path / "new_module.py").write_text("y = 1\n")
    commit, dirty = git_state(tmp_path)
    assert commit == sha and dirty == "yes (2 file(s): code.py, new_module.py)"


@pytest.mark.parametrize(("info", "primary", "latency"), [(CLASSIFIER, "balanced_accuracy", "latency_ms"),
                                                          (FIELD, "rollout_rel_l2_10", "ms_per_step")])
def test_compact_table_fits(info, primary, latency):
    cols = compact_columns(info, primary)
    assert cols[0] == primary and cols[-2:] == [latency, "bytes"] and len(cols) == 5
    assert len(set(cols)) == len(cols)
    table = compact_table(RESULT["models"], info, primary)
    assert all(line.count("|") - 1 == 2 + len(cols) for line in table.splitlines())


def test_prefect_artifact_table_has_few_columns_and_points_at_the_report():
    from flows.pipeline import _report_markdown

    ev = {"table": "| wide |", "compact_table": compact_table(RESULT["models"], CLASSIFIER, "balanced_accuracy"),
          "served": "int8", "report": "reports/netflow/report.md", "extra": ""}
    md = _report_markdown("netflow", {"evaluate": ev})
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert rows and max(line.count("|") - 1 for line in rows) <= 8
    assert "| wide |" not in md and "reports/netflow/report.md`" in md and "Served variant: **int8**" in md


def test_summary_is_flat_and_small():
    s = summary(RESULT, "balanced_accuracy", higher_is_better=True)
    assert s == {"metric": "balanced_accuracy", "teacher": 0.80, "variant": "int8", "served": 0.79,
                 "best_baseline": 0.70, "speedup": 2.0, "size_ratio": 0.25}
    lower = summary({**RESULT, "models": {**RESULT["models"], "fno": _row("FNO", 0.5, 1.0, 10)}}, "balanced_accuracy",
                    higher_is_better=False)
    assert lower["best_baseline"] == 0.5  # an error metric: the lowest baseline is the best
    assert summary({**RESULT, "choice": {}}, "f1", True)["speedup"] == 1.0  # no choice: the teacher is served


def test_evaluate_refuses_pages_in_the_plots_folder(tmp_path):
    from tasks.evaluate import check_images

    plots = tmp_path / "finance" / "plots"
    plots.mkdir(parents=True)
    (plots / "roc.png").write_bytes(b"png")
    (plots / "rollout.gif").write_bytes(b"gif")
    check_images(plots)
    (plots / "attributions.html").write_text("<html></html>")
    with pytest.raises(ValueError, match=r"reports/finance/plots/ may hold images only .* attributions.html"):
        check_images(plots)


def test_dvc_yaml_metrics_are_the_summary_and_plots_are_images():
    import yaml

    from tests.conftest import REPO

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]

    def entries(kind: str) -> list[str]:
        return [next(iter(e)) if isinstance(e, dict) else e
                for spec in stages.values() for e in (spec.get("do") or spec).get(kind, [])]

    assert entries("metrics") == ["reports/${item}/summary.json"]
    for plot in entries("plots"):
        assert Path(plot).suffix in (".png", ".gif", ".jpg", ".svg") or plot == "reports/${item}/plots", plot
    # report.md is register's output (it rewrites the registry line), kept by DVC until register runs.
    evaluate_outs = [next(iter(e)) if isinstance(e, dict) else e for e in stages["evaluate"]["do"]["outs"]]
    assert "reports/${item}/report.md" not in evaluate_outs and "reports/${item}/metrics.json" in evaluate_outs
    assert {"reports/${item}/report.md": {"cache": False, "persist": True}} in stages["register"]["do"]["outs"]
