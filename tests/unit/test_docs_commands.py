"""The README and docs/ say what runs: their runnable commands run, their links resolve (issue 19).

A fenced block whose info string is ``bash runnable`` promises that every command in it is cheap and runs as
written in a project after ``make run``; each such command is run here, in a tiny project made by
``tests/conftest.py``'s ``setup_project``, and must exit 0. Commands that need a trained model or real data
stay in plain ``bash`` blocks. Every relative link (and ``#anchor``) must point at a file (and heading) that
exists, and nothing may refer to files outside the repository that a user of it does not have.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(.*)$")
# Only the data samples live outside the repository (named once per page, as the real-data folder); the
# design notes and reference summaries do not ship with it.
FORBIDDEN = ("../shared/reference", "../shared/DESIGN.md", "../shared/STACK.md", "models.md", "DESIGN.md",
             "STACK.md")
REAL_DATA = ("the real-data folder (`../shared/data`, outside the repository: a checkout without it skips "
             "those runs)")


def _rel(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def blocks(page: Path) -> list[tuple[str, int, list[str]]]:
    """Fenced blocks of ``page``: (info string, line of the opening fence, lines)."""
    out, info, start, body = [], None, 0, []
    for n, line in enumerate(page.read_text().split("\n"), 1):
        m = FENCE.match(line)
        if m and info is None:
            info, start, body = m.group(1).strip(), n, []
        elif line.startswith("```") and info is not None:
            out.append((info, start, body))
            info = None
        elif info is not None:
            body.append(line)
    assert info is None, f"{_rel(page)}: the fence opened at line {start} is never closed"
    return out


def commands(lines: list[str]) -> list[str]:
    """The commands of a shell block: comments and blank lines dropped, ``\\`` continuations joined."""
    cmds, cur = [], ""
    for line in lines:
        line = line.rstrip()
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            cur += line[:-1].strip() + " "
            continue
        cmds.append((cur + line.strip()).strip())
        cur = ""
    if cur.strip():
        cmds.append(cur.strip())
    return cmds


def runnable() -> list[tuple[str, int, str]]:
    return [(_rel(p), start, cmd) for p in PAGES for info, start, body in blocks(p)
            if info == "bash runnable" for cmd in commands(body)]


def prose(page: Path) -> str:
    """The page without its fenced blocks and inline code (links there are examples, not links)."""
    text, keep, fenced = page.read_text(), [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            keep.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(keep)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in page.read_text().split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"^#{1,6} (.*)$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_the_pages_exist():
    names = {p.name for p in PAGES}
    assert {"README.md", "netflow.md", "eeg.md", "finance.md", "turbulence.md", "compression.md",
            "operations.md", "architecture.md"} <= names, names


def _has_shell(page: Path) -> bool:
    return any(info.split()[:1] == ["bash"] for info, _, _ in blocks(page))


@pytest.mark.parametrize("page", [p for p in PAGES if _has_shell(p)], ids=_rel)
def test_every_page_with_commands_has_a_runnable_block(page):
    infos = [info for info, _, _ in blocks(page)]
    assert "bash runnable" in infos, f"{_rel(page)} has shell blocks but none marked ```bash runnable"


def test_most_pages_have_commands():
    # The filter above must not hide the check: every page but the architecture notes shows commands.
    assert {p.name for p in PAGES if not _has_shell(p)} <= {"architecture.md"}


@pytest.mark.slow
@pytest.mark.parametrize(("page", "line", "cmd"), runnable(), ids=lambda v: str(v))
def test_runnable_command_runs_as_written(page, line, cmd, project):
    """Each command of a ``bash runnable`` block exits 0 in a tiny project (the venv's bin first on PATH)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.Popen(shlex.split(cmd), cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # timed out (or interrupted): the whole process group goes
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, f"{page}:{line}: `{cmd}` exited {proc.returncode}:\n{out[-3000:]}"


def test_runnable_blocks_parse():
    """The extraction itself: continuation lines join, comments drop, and there is something to run."""
    assert commands(["# c", "a \\", "  --b", "", "c  # d"]) == ["a --b", "c  # d"]
    cmds = runnable()
    assert len(cmds) >= 8, cmds
    assert all(c.split()[0] == "formerflow" for _, _, c in cmds), cmds


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page)):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target} (no file {dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not bad, f"{_rel(page)}: broken links: {bad}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_no_references_outside_the_repository(page):
    text = page.read_text()
    found = [f for f in FORBIDDEN if f in text]
    assert not found, f"{_rel(page)} refers to {found}: a user of the repository does not have them"
    outside = re.findall(r"\.\./shared/[^\s`)]*", text)
    if outside:
        assert outside == ["../shared/data"], f"{_rel(page)}: {outside}"
        assert REAL_DATA in text, f"{_rel(page)} names ../shared/data without saying what it is"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_commands_use_the_one_cli(page):
    """The old entry points appear in no shell block (prose names them once, as aliases, in operations)."""
    old = [(start, line) for info, start, body in blocks(page) if info.split()[:1] == ["bash"] for line in body
           if "python -m tasks" in line or "python -m flows" in line]
    assert not old, f"{_rel(page)}: old entry points in shell blocks: {old}"


def test_operations_names_the_aliases():
    text = (REPO / "docs/operations.md").read_text()
    assert "`python -m flows.pipeline [--domain D]` and `python -m tasks STAGE DOMAIN`" in text
