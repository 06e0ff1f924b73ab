"""Reports a reader and DVC can use (issue 19, point 5), on one tiny netflow + finance project in a git + DVC
repository, every stage run for real and tracked in its own MLflow store:

* ``dvc metrics show`` prints short lines (the flat ``summary.json`` of each domain, not ``metrics.json``);
* ``dvc plots show`` writes its page with every plot an embedded image and nothing loaded from the web, and no
  page sits in a plots folder (finance's attributions are beside its report);
* each report's header names the clean commit, the params hash its MLflow runs carry, and, after register,
  the champion and candidate register set.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_NETFLOW, deep_merge, setup_project

pytestmark = pytest.mark.slow
DOMAINS = ("netflow", "finance")
EXTRA = deep_merge(TINY_NETFLOW, {
    "pipeline": {"domains": list(DOMAINS)},  # dvc.yaml's foreach: only the domains that ran
    "train": {"finance": {"epochs": 1, "steps_per_epoch": 2}},
    "compress": {d: {"methods": ["int8"], "latency_repeats": 3} for d in DOMAINS},
    "register": {"netflow": {"model": "chosen"}},
})


def _run(root: Path, *cmd: str) -> str:
    proc = subprocess.run(list(cmd), cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Path:
    """Every stage of netflow and finance, tracked, in a committed git + DVC repository."""
    from tasks.params import load_params
    from tasks.stages import run_stage

    dvc = str(Path(sys.executable).with_name("dvc"))
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    with pytest.MonkeyPatch.context() as mp:
        root = setup_project(tmp_path_factory.mktemp("dvc-reports") / "proj", mp, EXTRA)
        shutil.copy2(REPO / "dvc.yaml", root / "dvc.yaml")
        _run(root, "git", "init", "-q")
        _run(root, dvc, "init", "-q")
        _run(root, dvc, "config", "--local", "core.analytics", "false")
        _run(root, "git", "add", "-A")
        _run(root, *git, "commit", "-qm", "init")
        params = load_params()
        for domain in DOMAINS:
            for stage in ("ingest", "preprocess", "train", "compress", "evaluate", "register"):
                run_stage(stage, domain, params)
        yield root


def test_dvc_metrics_show_is_a_short_table(ran):
    dvc = str(Path(sys.executable).with_name("dvc"))
    out = _run(ran, dvc, "metrics", "show")
    lines = [line for line in out.splitlines() if line.strip()]
    assert max(map(len, lines)) < 200, out
    assert [line.split()[0] for line in lines[1:]] == [f"reports/{d}/summary.json" for d in DOMAINS], out
    for domain in DOMAINS:
        s = json.loads((ran / "reports" / domain / "summary.json").read_text())
        assert set(s) == {"metric", "teacher", "variant", "served", "best_baseline", "speedup", "size_ratio"}
        assert all(v is None or isinstance(v, str | float) for v in s.values())  # flat
        metrics = json.loads((ran / "reports" / domain / "metrics.json").read_text())
        assert s["teacher"] == metrics["models"]["teacher"][s["metric"]]
        assert s["variant"] == metrics["choice"]["variant"]


def test_dvc_plots_show_needs_no_network_and_plots_folders_hold_images(ran):
    dvc = str(Path(sys.executable).with_name("dvc"))
    out = _run(ran, dvc, "plots", "show", "-o", "dvc_plots")
    assert "failed" not in out.lower() and "error" not in out.lower(), out
    page = (ran / "dvc_plots" / "index.html").read_text()
    assert not re.findall(r"""(?:src|href)\s*=\s*["']https?://""", page), "the page loads something from the web"
    assert "vega" not in page.lower()  # no vega-lite plot left (it loads vega from a CDN)
    for domain in DOMAINS:
        assert f"reports/{domain}/train_curve.png" in page
        assert (ran / "reports" / domain / "train_curve.png").stat().st_size > 5000
        plots = ran / "reports" / domain / "plots"
        assert sorted({p.suffix for p in plots.iterdir()}) == [".png"], sorted(p.name for p in plots.iterdir())
    page_html = ran / "reports" / "finance" / "attributions.html"
    assert page_html.read_text().count('class="line"') == 2
    assert "[attributions.html](attributions.html)" in (ran / "reports" / "finance" / "report.md").read_text()


def test_report_header_after_register(ran):
    from tasks import tracking

    c = tracking.client()
    for domain in DOMAINS:
        report = (ran / "reports" / domain / "report.md").read_text()
        head = report.split("Test split:")[0]
        sha = _run(ran, "git", "rev-parse", "HEAD").strip()
        assert f"- **Code**: git `{sha}` (dirty: no)" in head, head  # the runs' own outputs do not count
        evaluate_run = next(r for r in c.search_runs([tracking.experiment_id(domain)])
                            if r.info.run_name == "evaluate")
        assert f"hash `{evaluate_run.data.tags['params.hash']}`" in head, head
        registry = json.loads((ran / "reports" / domain / "registry.json").read_text())
        version = registry["version"]
        champion = c.get_model_version_by_alias(f"formerflow-{domain}", "champion").version
        assert (f"- **Registry** (`formerflow-{domain}`): champion v{champion}, candidate v{version}; after this "
                f"run's register, which made v{version} candidate") in head, head
        assert "before this run's register" not in head
