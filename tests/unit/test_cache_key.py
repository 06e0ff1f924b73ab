"""Prefect's cache key of a stage changes with the source's content and with the code the stage runs."""

from __future__ import annotations

import os
import shutil

import pytest

from flows.pipeline import stage_cache_key
from tasks import domains, stages
from tasks.params_base import STAGES
from tests.conftest import REPO


def _key(stage: str, params: dict, domain: str = "netflow") -> str:
    return stage_cache_key(None, {"stage": stage, "domain": domain, "params": params})


@pytest.fixture
def local_source(project):
    """Params whose netflow ingest reads one local CSV at a fixed path (what a nightly deployment does)."""
    from tasks.params import load_params

    src = project / "incoming" / "flows.csv"
    src.parent.mkdir()
    src.write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(200)))
    return src, load_params(overrides=[f"ingest.netflow.source={src}"]).model_dump(mode="json")


def test_truncating_the_source_in_place_changes_the_ingest_key(local_source):
    src, params = local_source
    first = _key("ingest", params)
    assert _key("ingest", params) == first  # stable while nothing changes
    later = {s: _key(s, params) for s in STAGES[1:]}
    os.truncate(src, src.stat().st_size // 2)  # same path, fewer rows
    assert _key("ingest", params) != first
    assert {s: _key(s, params) for s in STAGES[1:]} == later  # only ingest reads the source; later stages key on its outputs


def test_a_same_size_rewrite_with_the_old_mtime_changes_the_key(local_source):
    """Size and time can lie (``cp -p``, rsync --times); the content hash cannot."""
    src, params = local_source
    st = src.stat()
    first = _key("ingest", params)
    data = bytearray(src.read_bytes())
    data[-2] = ord("9") if data[-2] != ord("9") else ord("8")
    src.write_bytes(bytes(data))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert src.stat().st_size == st.st_size and src.stat().st_mtime_ns == st.st_mtime_ns
    assert _key("ingest", params) != first


def test_source_urls_reads_every_input_key():
    from flows.pipeline import source_urls

    assert source_urls({"source": "synthetic", "labels": "l.csv", "metadata": None}) == ["l.csv"]
    assert source_urls({"source": ["a.edf", "b/*.edf"]}) == ["a.edf", "b/*.edf"]
    assert source_urls(None) == []


@pytest.fixture
def code_copy(tmp_path, monkeypatch):
    """A copy of the project's code that the stage-code hash reads instead of the checkout's."""
    root = tmp_path / "code"
    for pkg in ("tasks", "models"):
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(stages, "CODE_ROOT", root)
    return root


def test_editing_a_stage_module_changes_its_key_and_only_where_it_runs(project, code_copy):
    from tasks.params import load_params

    params = load_params().model_dump(mode="json")
    before = {(s, d): _key(s, params, d) for s in ("ingest", "train", "evaluate") for d in ("netflow", "eeg")}
    with open(code_copy / "tasks" / "domains" / "netflow" / "ingest.py", "a") as fh:
        fh.write("\n# an edit to the ingest code\n")
    after = {k: _key(k[0], params, k[1]) for k in before}
    assert after[("ingest", "netflow")] != before[("ingest", "netflow")]
    assert after[("ingest", "eeg")] == before[("ingest", "eeg")]  # eeg does not run netflow's code
    # A module the stage reaches only through imports (tasks/evaluate.py imports tasks/measure.py).
    with open(code_copy / "tasks" / "measure.py", "a") as fh:
        fh.write("\n# an edit to a module evaluate imports\n")
    again = {k: _key(k[0], params, k[1]) for k in before}
    assert again[("evaluate", "netflow")] != after[("evaluate", "netflow")]
    assert again[("evaluate", "eeg")] != after[("evaluate", "eeg")]
    assert again[("ingest", "netflow")] == after[("ingest", "netflow")]


@pytest.mark.parametrize("domain", domains.names())
@pytest.mark.parametrize("stage", STAGES)
def test_stage_code_files_cover_every_module_the_stage_imports(stage, domain):
    """The hashed files hold every project module the stage runs, as grimp's import graph finds them."""
    import grimp

    from tests.unit.test_dvc_deps import CLI, closure, entries, module_file

    graph = _graph(grimp)
    modules = closure(graph, entries(stage, domain) - {CLI})
    needed = {module_file(m) for m in modules if m.split(".")[0] in ("tasks", "models")}
    hashed = {str(f.relative_to(stages.CODE_ROOT)) for f in stages.stage_code_files(stage, domain)}
    assert needed - hashed == set()


_GRAPH = []


def _graph(grimp):
    if not _GRAPH:
        _GRAPH.append(grimp.build_graph("tasks", "models", cache_dir=None, exclude_type_checking_imports=True))
    return _GRAPH[0]
