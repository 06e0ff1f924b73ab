"""The CLI that dvc.yaml calls: bad stage / domain names fail with exit 2 and the valid choices."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "tasks", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_unknown_domain_and_stage(project):
    out = _cli("train", "weather", cwd=project)
    assert out.returncode == 2
    assert "unknown domain 'weather'" in out.stderr and "netflow" in out.stderr
    out = _cli("fly", "netflow", cwd=project)
    assert out.returncode == 2
    assert "unknown stage 'fly'" in out.stderr and "preprocess" in out.stderr


def test_bad_override_is_a_clear_error(project):
    out = _cli("ingest", "netflow", "--set", "ingest.netflow.synthetic.n_flows=ten", cwd=project)
    assert out.returncode == 2
    assert "ingest.netflow.synthetic.n_flows" in out.stderr


def test_params_command_prints_merged_profile(project):
    out = _cli("params", "--profile", "paper", cwd=project)
    assert out.returncode == 0, out.stderr
    assert "test_fraction: 0.025" in out.stdout


def test_register_refusing_stale_metrics_is_a_clear_error(project, capsys):
    """register's refusals are RuntimeErrors of tasks (StaleMetricsError): exit 1 and the reason, no traceback."""
    from tasks.__main__ import main

    (project / "reports/netflow").mkdir(parents=True)
    (project / "reports/netflow/metrics.json").write_text(
        '{"models": {"teacher": {"balanced_accuracy": 0.9}}, "choice": {"variant": "teacher"}}')
    (project / "artifacts/netflow/teacher").mkdir(parents=True)
    (project / "artifacts/netflow/teacher/config.json").write_text("{}")
    assert main(["register", "netflow"]) == 1
    err = capsys.readouterr().err
    assert "error in register netflow: reports/netflow/metrics.json records no content hashes" in err
