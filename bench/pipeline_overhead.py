"""Orchestration overhead: the Prefect pipeline flow and DVC against calling the stages directly.

What it measures
----------------
All on the tiny params of ``tests/conftest.py`` (``TINY``: 4,000 flows, 2 epochs of 6
steps) with only the ``logreg`` baseline (the HGB fit is slow OpenMP work that has
nothing to do with orchestration) plus any ``--set`` overrides, each in its own
throw-away project root and subprocess:

1. **direct**: the six stage functions called in one process,
   ``tasks.stages.run_stage(stage, "netflow", params)`` (with MLflow tracking, as the
   flow does), each timed.
2. **Prefect, fresh**: ``flows.pipeline.pipeline(domains=["netflow"], refresh_cache=True)``
   with the ephemeral Prefect server, timed in phases: imports, server start (started
   explicitly first, so it is not charged to the flow) and the flow call. The time each
   stage task spent running is read back from the Prefect API.
   **Prefect overhead = flow call - sum of the direct stage times** (the task runs' own
   sum is shown too, so the overhead can be split into "around the tasks" and "stages
   ran slower inside the flow"). The whole-process difference (flow process wall -
   direct process wall) is reported as well; it includes the server start.
3. **Prefect, cached**: the same flow again in a new process with ``refresh_cache=False``:
   every stage but ``register`` (never cached) is a cache hit.
4. **DVC** (``--no-dvc`` to skip): a copy of the repo's tracked pipeline files
   (dvc.yaml, params.yaml with the tiny params, profiles/, tasks/, models/, flows/,
   .dvc/config, pyproject.toml) in a fresh ``git init`` repo; ``dvc repro`` once (all
   six stages as ``python -m tasks <stage> netflow`` processes, timed), then a no-op
   ``dvc repro`` ``--dvc-repeat`` times (must say the pipeline is up to date).

Before timing, each worker creates its MLflow sqlite store and experiment (reported as
"mlflow init"), so neither side is charged the database migration. Prefect uses its
own ``PREFECT_HOME`` (default ``$TMPDIR/bench-prefect-home``, kept between runs like
the project's ``.prefect``): the first benchmark run on a machine pays the database
migration in "server start".

How to run
----------
``make bench`` (both benchmarks), or on its own::

    .venv/bin/python bench/pipeline_overhead.py
    .venv/bin/python bench/pipeline_overhead.py --no-dvc --set train.netflow.epochs=1

Offline. Prints one table; writes ``bench/results/pipeline_overhead.json``. The roots
are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

T_PROCESS = time.perf_counter()  # as early as possible: for the import phase of a worker

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, answer, bench_tmp, machine, make_root, quiet_env, run_worker, table, write_json  # noqa: E402

NAME = "pipeline_overhead"
DOMAIN = "netflow"
BENCH_PARAMS = {"train": {DOMAIN: {"baselines": ["logreg"]}}}
"""On top of TINY: the HGB baseline (OpenMP; tens of seconds on a busy 2-core VM) says nothing about
orchestration, so only the logistic-regression baseline is fitted. ``--set`` overrides this too."""
DVC_FILES = ("dvc.yaml", ".dvcignore", ".dvc/config", ".dvc/.gitignore", "pyproject.toml", "profiles", "tasks",
             "models", "flows")


# ============================================================================ workers (subprocesses)
def _mlflow_init() -> float:
    """Create the MLflow store and the domain's experiment (untimed by the comparisons)."""
    t0 = time.perf_counter()
    from tasks import tracking

    tracking.experiment_id(DOMAIN)
    return time.perf_counter() - t0


def work_direct(a: argparse.Namespace) -> dict[str, Any]:
    from tasks.params import STAGES, load_params
    from tasks.stages import run_stage

    t_import = time.perf_counter() - T_PROCESS
    mlflow_init = _mlflow_init()
    params = load_params()
    stages = {}
    for stage in STAGES:
        t0 = time.perf_counter()
        run_stage(stage, DOMAIN, params)
        stages[stage] = time.perf_counter() - t0
    return {"import_s": t_import, "mlflow_init_s": mlflow_init, "stages": stages, "sum_s": sum(stages.values())}


def _task_times(flow_run_id: str) -> dict[str, dict[str, Any]]:
    """Running time and final state of each task run of the flow run, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    out = {}
    for r in runs:
        stage = r.name.rsplit(f"-{DOMAIN}", 1)[0]
        wall = (r.end_time - r.start_time).total_seconds() if r.start_time and r.end_time else None
        out[stage] = {"run_s": r.total_run_time.total_seconds(), "wall_s": wall,
                      "state": r.state_name, "runs": r.run_count}
    return out


def work_flow(a: argparse.Namespace) -> dict[str, Any]:
    from prefect.server.api.server import SubprocessASGIServer

    from flows.pipeline import pipeline

    t_import = time.perf_counter() - T_PROCESS
    mlflow_init = _mlflow_init()
    t0 = time.perf_counter()
    SubprocessASGIServer().start()  # the singleton every Prefect client of this process then uses
    t_server = time.perf_counter() - t0
    t0 = time.perf_counter()
    state = pipeline(domains=[DOMAIN], refresh_cache=a.refresh, return_state=True)
    t_flow = time.perf_counter() - t0
    results = state.result()  # raises if the flow failed
    tasks = _task_times(str(state.state_details.flow_run_id))
    return {"import_s": t_import, "mlflow_init_s": mlflow_init, "server_start_s": t_server, "flow_s": t_flow,
            "tasks": tasks, "task_run_sum_s": sum(t["run_s"] for t in tasks.values()),
            "registered_version": results[DOMAIN]["register"]["version"], "refresh_cache": a.refresh}


# ============================================================================ DVC
def _dvc_copy(root: Path) -> None:
    """Copy the tracked pipeline files into ``root`` and make it a git + DVC repo with analytics off."""
    tracked = subprocess.run(["git", "ls-files", "-z", "--", *DVC_FILES], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split("\0")
    for rel in filter(None, tracked):
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)


def _dvc(root: Path, env: dict[str, str], *args: str, timeout: float) -> tuple[float, str]:
    dvc = str(Path(sys.executable).with_name("dvc"))
    t0 = time.perf_counter()
    proc = subprocess.run([dvc, *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout + proc.stderr


def bench_dvc(root: Path, write_params, repeat: int, timeout: float) -> dict[str, Any]:
    _dvc_copy(root)
    write_params(root)
    env = quiet_env(root, prefect_home=root / ".prefect")
    env.pop("PYTHONPATH")  # stages must import the copy's tasks/ (python -m puts the cwd first)
    where = subprocess.run([sys.executable, "-c", "import tasks; print(tasks.__file__)"], cwd=root, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).resolve().is_relative_to(root.resolve()), f"stages would import {where}, not the copy"
    _dvc(root, env, "config", "--local", "core.analytics", "false", timeout=timeout)
    _dvc(root, env, "config", "--local", "core.check_update", "false", timeout=timeout)
    first, out = _dvc(root, env, "repro", timeout=timeout)
    ran = sum(f"Running stage '{s}@{DOMAIN}'" in out for s in ("ingest", "preprocess", "train", "compress",
                                                               "evaluate", "register"))
    assert ran == 6, f"the first dvc repro ran {ran} of 6 stages:\n{out[-3000:]}"
    noop = []
    for _ in range(repeat):
        seconds, out = _dvc(root, env, "repro", timeout=timeout)
        assert "up to date" in out.lower() and "Running stage" not in out, f"dvc repro was not a no-op:\n{out}"
        noop.append(seconds)
    return {"first_s": first, "noop_s": noop, "noop_min_s": min(noop), "noop_median_s": statistics.median(noop),
            "noop_output": out.strip()}


# ============================================================================ driver
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="param override on top of the tiny test params (repeatable)")
    ap.add_argument("--no-dvc", dest="dvc", action="store_false", help="skip the dvc repro timings")
    ap.add_argument("--dvc-repeat", type=int, default=3, help="no-op dvc repro runs (the median is reported)")
    ap.add_argument("--prefect-home", type=Path, default=None,
                    help="PREFECT_HOME of the flow runs (default $TMPDIR/bench-prefect-home, reused)")
    ap.add_argument("--keep", action="store_true", help="keep the throw-away roots")
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed per subprocess")
    ap.add_argument("--worker", choices=("direct", "flow"), help=argparse.SUPPRESS)
    ap.add_argument("--refresh", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        answer({"direct": work_direct, "flow": work_flow}[a.worker](a))
        return 0

    sys.path.insert(0, str(REPO))
    from tasks.params import parse_override
    from tests.conftest import TINY, deep_merge
    from tests.conftest import write_params as _write

    extra: dict[str, Any] = deep_merge({}, BENCH_PARAMS)
    for text in a.overrides:
        extra = deep_merge(extra, parse_override(text))

    def write_params(root: Path) -> None:
        _write(root, extra)

    t_start = time.perf_counter()
    script = Path(__file__).resolve()
    prefect_home = (a.prefect_home or bench_tmp() / "bench-prefect-home").resolve()
    prefect_cold = not (prefect_home / "prefect.db").exists()
    roots = []
    try:
        log = lambda msg: print(f"[{NAME}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
        # 1. the stages called directly
        root = make_root("direct")
        roots.append(root)
        write_params(root)
        log(f"direct stages in {root} ...")
        direct, direct_wall = run_worker(script, ["--worker", "direct"], quiet_env(root), root, a.timeout, "direct")

        # 2-3. the Prefect flow, fresh then cached, in one root
        root = make_root("flow")
        roots.append(root)
        write_params(root)
        env = quiet_env(root, prefect_home=prefect_home)
        log(f"Prefect flow (refresh_cache) in {root}, PREFECT_HOME {prefect_home} ...")
        fresh, fresh_wall = run_worker(script, ["--worker", "flow", "--refresh"], env, root, a.timeout, "flow")
        bad = {s: t["state"] for s, t in fresh["tasks"].items() if t["state"] != "Completed"}
        assert len(fresh["tasks"]) == 6 and not bad, f"fresh run: tasks not all Completed: {fresh['tasks']}"
        log("Prefect flow again (cached) ...")
        cached, cached_wall = run_worker(script, ["--worker", "flow"], env, root, a.timeout, "cached flow")
        hits = sorted(s for s, t in cached["tasks"].items() if t["state"] == "Cached")
        assert hits == sorted(["ingest", "preprocess", "train", "compress", "evaluate"]), \
            f"cached run: expected 5 cache hits (all but register), got {cached['tasks']}"

        # 4. DVC
        dvc = None
        if a.dvc:
            log("dvc repro (full, then no-op) ...")
            root = make_root("dvc")
            roots.append(root)
            dvc = bench_dvc(root, write_params, a.dvc_repeat, a.timeout)

        stage_sum = direct["sum_s"]
        overhead = fresh["flow_s"] - stage_sum
        rows: list[list[Any]] = []
        for stage, s in direct["stages"].items():
            rows.append([f"direct: {stage}", s, fresh["tasks"][stage]["run_s"], ""])
        rows += [
            ["direct: sum of the six stages", stage_sum, fresh["task_run_sum_s"],
             "right column: the same stages' run time inside the fresh flow"],
            ["direct: whole process", direct_wall, None,
             f"imports {direct['import_s']:.1f} s, mlflow init {direct['mlflow_init_s']:.1f} s"],
            ["Prefect fresh: server start", fresh["server_start_s"], None,
             "ephemeral API" + (" (cold: new PREFECT_HOME, migrations)" if prefect_cold else " (warm PREFECT_HOME)")],
            ["Prefect fresh: flow call", fresh["flow_s"], None, "pipeline(refresh_cache=True)"],
            ["**Prefect overhead** = flow call - direct sum", overhead, None,
             f"{100 * overhead / stage_sum:.0f} % of the stages; around the tasks "
             f"{fresh['flow_s'] - fresh['task_run_sum_s']:.1f} s"],
            ["Prefect fresh: whole process", fresh_wall, None,
             f"imports {fresh['import_s']:.1f} s; minus direct process: {fresh_wall - direct_wall:+.1f} s"],
            ["Prefect cached: flow call", cached["flow_s"], cached["task_run_sum_s"],
             f"5 cache hits + register; server start {cached['server_start_s']:.1f} s"],
            ["Prefect cached: whole process", cached_wall, None, ""],
        ]
        if dvc:
            rows += [
                ["dvc repro: first (6 stage processes)", dvc["first_s"], None,
                 f"minus direct process: {dvc['first_s'] - direct_wall:+.1f} s"],
                ["**dvc repro: no-op**", dvc["noop_median_s"], None,
                 f"median of {len(dvc['noop_s'])} (min {dvc['noop_min_s']:.2f} s); 'up to date'"],
            ]
        text = table(["measurement", "seconds", "task run s", "note"], rows, align="lrrl")
        total = time.perf_counter() - t_start
        print(f"\n## Pipeline overhead on the tiny params (tests/conftest.py TINY, baselines [logreg]"
              f"{' + ' + ', '.join(a.overrides) if a.overrides else ''})\n")
        print(text)
        print("\n'task run s': the stage's running time as Prefect recorded it for that flow run (task run "
              "total_run_time). Each measurement is one run on a noisy shared machine.")
        path = write_json(NAME, {
            "benchmark": NAME, "machine": machine(), "args": {k: str(v) for k, v in vars(a).items()
                                                              if k not in ("worker", "refresh")},
            "params_extra": {"tiny": TINY, "overrides": extra}, "prefect_home": str(prefect_home),
            "prefect_home_cold": prefect_cold,
            "direct": {**direct, "process_wall_s": direct_wall},
            "prefect_fresh": {**fresh, "process_wall_s": fresh_wall},
            "prefect_cached": {**cached, "process_wall_s": cached_wall},
            "prefect_overhead_s": overhead, "prefect_overhead_fraction": overhead / stage_sum,
            "dvc": dvc, "table": text, "script_seconds": total,
        })
        print(f"\n[{NAME}] {total:.0f} s in all; wrote {path.relative_to(REPO)}", file=sys.stderr)
    finally:
        for root in roots:
            if a.keep:
                print(f"[{NAME}] kept {root}", file=sys.stderr)
            else:
                shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
