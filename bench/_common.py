"""Shared helpers of the benchmarks in ``bench/``: throw-away project roots, quiet offline
environment, worker subprocesses that report JSON, peak memory, tables and result files.

Not a benchmark itself. Everything here uses the standard library only, so the parent
process of a benchmark stays small and its workers' memory is their own.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
RESULT_MARK = "@@BENCH-RESULT@@ "
"""Prefix of the one stdout line a worker subprocess answers with (JSON after it)."""


# ----------------------------------------------------------------------------- environment
def bench_tmp() -> Path:
    """Parent folder of the throw-away roots: ``$TMPDIR`` when it is set (``make`` sets ``.tmp/``), else ``.tmp/``."""
    base = Path(os.environ.get("TMPDIR") or REPO / ".tmp")
    base.mkdir(parents=True, exist_ok=True)
    return base


def make_root(prefix: str) -> Path:
    """A fresh project root under :func:`bench_tmp` with ``params.yaml`` and ``profiles/`` copied in."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-", dir=bench_tmp()))
    shutil.copy2(REPO / "params.yaml", root / "params.yaml")
    shutil.copytree(REPO / "profiles", root / "profiles")
    return root


def quiet_env(root: Path, prefect_home: Path | None = None) -> dict[str, str]:
    """The environment of a worker: quiet, offline and pointed at ``root`` (see shared/STACK.md).

    ``FORMERFLOW_ROOT`` and ``MLFLOW_TRACKING_URI`` point into ``root``, so nothing
    touches the user's data/, artifacts/ or mlflow.db. ``PREFECT_HOME`` is
    ``prefect_home`` if given, else ``<root>/.prefect``.
    """
    env = dict(os.environ)
    env.update(
        DO_NOT_TRACK="true",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        DVC_NO_ANALYTICS="1",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90",
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_HOME=str(prefect_home or root / ".prefect"),
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        FORMERFLOW_ROOT=str(root),
        TMPDIR=str(bench_tmp()),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    for var in ("FORMERFLOW_PROFILE", "FORMERFLOW_PARENT_RUN_ID", "FORMERFLOW_FLOW_RUN_ID", "PREFECT_API_URL"):
        env.pop(var, None)
    return env


# ----------------------------------------------------------------------------- workers
def run_worker(script: Path, args: list[str], env: dict[str, str], cwd: Path, timeout: float,
               what: str) -> tuple[dict[str, Any], float]:
    """Run ``python script args`` and return (its result JSON, wall seconds of the whole process).

    The worker prints its result as one ``RESULT_MARK`` line (:func:`answer`); any
    failure raises with the tail of its output.
    """
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stdout[-3000:] + "\n" + proc.stderr[-3000:]).strip()
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT_MARK):]), wall


def answer(result: dict[str, Any]) -> None:
    """Print a worker's result for :func:`run_worker`."""
    print(RESULT_MARK + json.dumps(result, default=str), flush=True)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (``VmHWM``; ``ru_maxrss`` where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


# ----------------------------------------------------------------------------- reporting
def machine() -> dict[str, Any]:
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def table(headers: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """A Markdown table (pasteable into bench/README.md); ``align`` is one of l/r per column."""
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(vals: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) if a == "l" else v.rjust(w)
                                 for v, w, a in zip(vals, widths, align, strict=True)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1))
                         for w, a in zip(widths, align, strict=True)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def write_json(name: str, data: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` (the folder is git-ignored)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
