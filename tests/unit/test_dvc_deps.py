"""dvc.yaml's code deps cannot drift: every project module a stage imports is a dependency of that stage.

For each stage and domain, the modules the stage runs are derived from the imports (grimp, the import
graph import-linter uses; imports inside functions count, ``if TYPE_CHECKING:`` ones do not): the
command line (``python -m tasks <stage> <domain>``), the stage's module as :mod:`tasks.stages` dispatches
it, the domain's params, and for the generic stages the domain's contract module (looked up by name at
run time). Each module's file must lie under one of the stage's ``deps`` in dvc.yaml, or changing it
would not re-run the stage.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
import yaml

from tasks import domains
from tasks.params_base import STAGES
from tasks.stages import stage_entry
from tests.conftest import REPO

CLI = "tasks.__main__"
MODEL_FILES = {f"models.{p.stem}" for p in (REPO / "models").glob("*.py") if p.stem != "__init__"}


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("tasks", "models", cache_dir=None, exclude_type_checking_imports=True)


@pytest.fixture(scope="module")
def dvc_stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def entries(stage: str, domain: str) -> set[str]:
    """The modules a stage's process starts from (see the module docstring)."""
    out = {CLI, stage_entry(stage, domain), f"tasks.domains.{domain}.params"}
    if stage not in ("ingest", "preprocess"):
        out.add(f"tasks.domains.{domain}.domain")  # domains.get(domain), by name
    if stage == "register":
        out.add("tasks.serving_entry")  # the pyfunc MLflow builds from the registered code
    if stage in ("train", "compress", "evaluate", "register"):
        out |= MODEL_FILES  # models.build fills the registry by importing every model file (by name)
    return out


def closure(graph, start: set[str]) -> set[str]:
    """Every module imported from ``start``, directly or not, with the packages whose ``__init__`` runs first."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo += graph.find_modules_directly_imported_by(mod)
        parts = mod.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
    return seen


def module_file(mod: str) -> str:
    path = REPO.joinpath(*mod.split("."))
    return str((path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).relative_to(REPO))


def covered(file: str, deps: list[str]) -> bool:
    return any(file == d or file.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("domain", domains.names())
@pytest.mark.parametrize("stage", STAGES)
def test_dvc_deps_cover_the_stage_code(graph, dvc_stages, stage, domain):
    spec = dvc_stages[stage]["do"]
    deps = [d.replace("${item}", domain) for d in spec["deps"] if isinstance(d, str)]
    modules = closure(graph, entries(stage, domain))
    files = sorted(module_file(m) for m in modules if m.split(".")[0] in ("tasks", "models"))
    missing = [f for f in files if not covered(f, deps)]
    assert not missing, f"dvc.yaml stage {stage} misses code it runs for {domain}: {missing}"


def test_stage_entries_are_real_modules():
    for domain in domains.names():
        for stage in STAGES:
            assert Path(REPO / module_file(stage_entry(stage, domain))).exists()


def test_a_missing_dep_is_caught(graph, dvc_stages):
    """The check bites: without tasks/loop.py in train's deps, train@netflow is reported."""
    deps = [d.replace("${item}", "netflow") for d in dvc_stages["train"]["do"]["deps"] if d != "tasks/loop.py"]
    files = [module_file(m) for m in closure(graph, entries("train", "netflow"))
             if m.split(".")[0] in ("tasks", "models")]
    assert "tasks/loop.py" in files and not covered("tasks/loop.py", deps)
