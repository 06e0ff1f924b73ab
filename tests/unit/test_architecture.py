"""The house rules (../shared/DESIGN.md) as checks: the import-linter contracts of pyproject.toml, imports at
the top of files, and models/ free of file I/O.

A failing contract fails the suite: fix the design, not the contract.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("tasks", "models", "flows")
LINT = str(Path(sys.executable).with_name("lint-imports"))


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--no-logo", "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300)


def _sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (REPO / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def test_import_contracts_hold():
    proc = _lint(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 kept, 0 broken" in proc.stdout, proc.stdout  # every contract of pyproject.toml was checked


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("tasks/store.py", "import prefect", "tasks/ never imports flows/ or prefect"),
    ("tasks/loop.py", "import tasks.domains.netflow.data", "shared modules and flows never import a domain"),
    ("tasks/domains/eeg/data.py", "import tasks.domains.finance.data", "domain packages do not import each other"),
    ("models/eegnet.py", "import tasks.store", "models/ is torch modules only"),
])
def test_a_broken_rule_fails_the_contracts(tmp_path, module, line, broken):
    """The contracts bite: one forbidden import in a copy of the sources breaks the named contract."""
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    proc = subprocess.run([LINT, "--no-logo", "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={"PATH": str(Path(LINT).parent), "PYTHONPATH": str(tmp_path)})
    assert proc.returncode != 0
    assert f"{broken}" in proc.stdout and "BROKEN" in proc.stdout, proc.stdout


def _function_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, imported module, source line) of every import inside a function body."""
    src = path.read_text()
    lines = src.splitlines()
    out = []
    for fn in ast.walk(ast.parse(src)):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    mod = node.module or "." if isinstance(node, ast.ImportFrom) else node.names[0].name
                    out.append((node.lineno, mod, lines[node.lineno - 1]))
    return out


def test_project_modules_are_imported_at_the_top():
    """An import of tasks/models/flows inside a function is there only to keep torch off the command line's
    ``--help`` path (marked ``# lazy``), never to dodge an import cycle: at most these few."""
    inner = [f"{p.relative_to(REPO)}: {text.strip()}" for p in _sources(*PACKAGES)
             for _, mod, text in _function_imports(p) if mod.split(".")[0] in (*PACKAGES, "")]
    assert len(inner) <= 3, "\n".join(inner)
    assert all("# lazy" in line for line in inner), "\n".join(inner)


def test_every_lazy_import_says_why():
    """An import inside a function keeps a heavy dependency lazy, and its line says so (``# lazy: ...``)."""
    silent = [f"{p.relative_to(REPO)}:{n}: {text.strip()}" for p in _sources(*PACKAGES)
              for n, _, text in _function_imports(p) if "# lazy" not in text]
    assert not silent, "\n".join(silent)


IO_CALLS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "from_pretrained", "save_pretrained",
            "load", "save", "load_file", "save_file", "mkdir", "glob", "iterdir"}
IO_MODULES = {"os", "pathlib", "json", "pickle", "shutil", "io", "safetensors", "h5py", "fsspec"}


@pytest.mark.parametrize("path", _sources("models"), ids=lambda p: p.name)
def test_models_do_no_file_io(path):
    """Rule 1 of the house: models/ builds torch modules from configs; reading files is the callers' job."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found += [f"import {n}" for n in names if n.split(".")[0] in IO_MODULES]
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            if name in IO_CALLS:
                found.append(f"line {node.lineno}: {name}(...)")
    assert not found, f"{path.relative_to(REPO)}: {found}"
