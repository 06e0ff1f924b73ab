"""Install formerflow into the running interpreter's environment (``.venv``), with uv when it can, pip otherwise.

``make setup`` runs ``.venv/bin/python tools/install.py '.[dev]'``. uv resolves and installs the ~200 packages
in about 15 s where pip takes about 2 minutes on our 2-core VM (measured on a fresh clone, 2026-12-06), which
is a quarter of ``make run``'s 8-minute budget. uv does not read pip's configuration, so the index, extra
indexes, find-links, constraints and certificate that pip is configured with (``pip config list``: files and
``PIP_*`` variables, whatever this machine has) are handed to uv as options; with several indexes uv considers
every version on every index, as pip does (``--index-strategy unsafe-best-match``). Anything going wrong on the
uv path (uv not installable, a resolution error) falls back to pip, which installs what pip always installed.

Usage::

    python tools/install.py '.[dev]'            # editable install of this project with its extras
    python tools/install.py '.[dev,bench]'
    FORMERFLOW_INSTALLER=pip python tools/install.py '.[dev]'   # skip uv
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

UV = "uv==0.13.9"  # the version this was checked with (resolves the same pins as pip, ~15 s cold)
# pip option (as ``pip config list`` names it, after the section) -> uv's option; values may be several.
OPTIONS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
           "constraint": "--constraint"}


def pip_config() -> dict[str, list[str]]:
    """pip's effective settings that uv needs, from ``pip config list`` (files and ``PIP_*`` variables)."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                         check=False).stdout
    found: dict[str, list[str]] = {}
    # PIP_* variables (listed as ``:env:.name``) override the files, as pip applies them: read them last.
    for line in sorted(out.splitlines(), key=lambda ln: ln.startswith(":env:")):
        key, sep, value = line.partition("=")
        if not sep:
            continue
        name = key.rsplit(".", 1)[-1]  # global.find-links, :env:.find-links, install.constraint ...
        if name in OPTIONS or name == "cert":
            found[name] = shlex.split(value.strip().strip("'\""))
    return found


def uv_install(spec: str) -> bool:
    """Install ``spec`` editable with uv; False (after saying why) where anything fails."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if subprocess.run([*pip, UV], check=False).returncode != 0:
        print("install: uv could not be installed; using pip", file=sys.stderr)
        return False
    config = pip_config()
    cmd = [str(Path(sys.executable).with_name("uv")), "pip", "install", "-q", "--python", sys.executable,
           "--index-strategy", "unsafe-best-match"]
    for name, flag in OPTIONS.items():
        for value in config.get(name, []):
            cmd += [flag, value]
    env = dict(os.environ)
    if config.get("cert"):
        env.setdefault("SSL_CERT_FILE", config["cert"][0])  # uv reads the system's, or this file
    if subprocess.run([*cmd, "-e", spec], env=env, check=False).returncode != 0:
        print("install: uv failed (above); using pip", file=sys.stderr)
        return False
    return True


def pip_install(spec: str) -> None:
    """Install ``spec`` editable with pip (a current pip; no byte-compiling: Python compiles what it imports)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-U", "pip"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-compile", "-e", spec], check=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    spec = argv[0]
    if os.environ.get("FORMERFLOW_INSTALLER", "uv") == "pip" or not uv_install(spec):
        pip_install(spec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
