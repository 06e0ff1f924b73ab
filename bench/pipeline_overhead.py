"""Orchestration overhead: the Prefect pipeline flow and DVC against calling the stages directly.

What it measures
----------------
All on the tiny params of ``tests/conftest.py`` (``TINY``: 4,000 flows, 2 epochs of 6
steps) with only the ``logreg`` baseline (the HGB fit is OpenMP work that takes tens of
seconds on a busy 2-core VM and has nothing to do with orchestration), plus any
``--set`` overrides. Each part runs in its own throw-away project root and subprocess:

1. **direct**: the six stage functions called in one process,
   ``tasks.stages.run_stage(stage, "netflow", params)`` (with MLflow tracking, as the
   flow has), each timed; their sum is the baseline. They run on the main thread, as
   ``python -m tasks`` and DVC run them; ``--direct-thread`` runs them on a worker
   thread as the flow's ``ThreadPoolTaskRunner`` does.
2. **Prefect**: in a copy of the repo's pipeline files (dvc.yaml, tiny params.yaml,
   profiles/, tasks/, models/, flows/, .dvc/config, pyproject.toml; ``git init``), so
   the flow's closing ``dvc commit`` runs as in the project. One process imports,
   starts the ephemeral Prefect server explicitly (timed on its own, so it is not
   charged to the flow), then calls ``flows.pipeline.pipeline(domains=["netflow"])``
   twice: with ``refresh_cache=True`` (every stage runs), then with
   ``refresh_cache=False`` (stages 1-5 should be cache hits; ``register`` always runs).
   Each task run's running time and state are read back from the Prefect API.
   **Prefect overhead = fresh flow call - sum of the direct stage times**; the table
   splits it into time outside the task runs (orchestration, MLflow parent run,
   artifact, ``dvc commit``) and stages running slower inside the flow.
3. **DVC** (``--no-dvc`` to skip): ``dvc repro`` in that copy after the flows (the
   flow's ``dvc commit`` should leave nothing to do), then ``--dvc-repeat`` no-op
   ``dvc repro`` runs, each asserted to report the pipeline up to date. ``--dvc-full``
   also times ``dvc repro --force`` (six ``python -m tasks`` stage processes, 1-2
   minutes here, so off by default).

Every stage process gets ``OMP_NUM_THREADS=1`` (``--threads``): with torch's and
scikit-learn's default two OpenMP threads, the training time on a busy shared 2-core VM
varied 3-4x between identical runs (a contended OpenMP team spin-waits), which swamped
the few seconds being measured.

Fixed costs are kept out of the comparisons and shown on their own: interpreter and
imports, the MLflow experiment (every root gets a copy of an empty, migrated MLflow
store made once per MLflow version in ``$TMPDIR``), ``load_params`` (it imports torch
to validate the model config; done before timing in both workers) and the Prefect
server start. Prefect uses its own ``PREFECT_HOME`` (default
``$TMPDIR/bench-prefect-home``, kept between runs as the project's ``.prefect`` is):
the first run on a machine pays the database migrations in "server start".

How to run
----------
``make bench`` (both benchmarks), or on its own::

    .venv/bin/python bench/pipeline_overhead.py
    .venv/bin/python bench/pipeline_overhead.py --dvc-full --set train.netflow.epochs=1

Offline. Prints one table; writes ``bench/results/pipeline_overhead.json``. The roots
are deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
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
STAGE_NAMES = ("ingest", "preprocess", "train", "compress", "evaluate", "register")
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
    t0 = time.perf_counter()
    params = load_params()  # validates the model config: imports models/ and torch
    t_params = time.perf_counter() - t0
    stages = {}

    def call(stage: str) -> float:
        t0 = time.perf_counter()
        run_stage(stage, DOMAIN, params)
        return time.perf_counter() - t0

    if a.direct_thread:  # the thread the flow's task runner would use (see --direct-thread)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:
            for stage in STAGES:
                stages[stage] = pool.submit(call, stage).result()
    else:
        for stage in STAGES:
            stages[stage] = call(stage)
    return {"import_s": t_import, "mlflow_init_s": mlflow_init, "params_s": t_params, "stages": stages,
            "sum_s": sum(stages.values())}


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

    import flows.pipeline as fp
    from tasks.params import load_params

    t_import = time.perf_counter() - T_PROCESS
    mlflow_init = _mlflow_init()
    t0 = time.perf_counter()
    load_params()  # as in the direct worker: the flow's own load_params then finds models/ and torch imported
    t_params = time.perf_counter() - t0
    commit: dict[str, Any] = {}
    dvc_commit = fp.dvc_commit

    def timed_commit(domains: list[str], *args: Any) -> str:  # the flow's `dvc commit`, timed on its own
        t0 = time.perf_counter()
        commit["message"] = dvc_commit(domains, *args)
        commit["seconds"] = time.perf_counter() - t0
        return commit["message"]

    fp.dvc_commit = timed_commit
    t0 = time.perf_counter()
    SubprocessASGIServer().start()  # the singleton every Prefect client of this process then uses
    t_server = time.perf_counter() - t0
    runs = []
    for refresh in (True, False):  # a fresh run, then the same flow again: stages 1-5 should be cache hits
        commit.clear()
        t0 = time.perf_counter()
        state = fp.pipeline(domains=[DOMAIN], refresh_cache=refresh, return_state=True)
        t_flow = time.perf_counter() - t0
        results = state.result()  # raises if the flow failed
        tasks = _task_times(str(state.state_details.flow_run_id))
        if commit:  # not called with --set pipeline.dvc_commit=false
            assert commit["message"].startswith("committed"), f"the flow's dvc commit: {commit}"
        runs.append({"refresh_cache": refresh, "flow_s": t_flow, "dvc_commit_s": commit.get("seconds", 0.0),
                     "dvc_commit": commit.get("message"), "tasks": tasks,
                     "task_run_sum_s": sum(t["run_s"] for t in tasks.values()),
                     "cache_hits": sorted(s for s, t in tasks.items() if t["state"] == "Cached"),
                     "registered_version": results[DOMAIN]["register"]["version"]})
    return {"import_s": t_import, "mlflow_init_s": mlflow_init, "params_s": t_params, "server_start_s": t_server,
            "runs": runs}


def work_mlflow_template(a: argparse.Namespace) -> dict[str, Any]:
    """An empty, migrated MLflow sqlite store, copied into each root so none pays the migration."""
    from mlflow.tracking import MlflowClient

    t0 = time.perf_counter()
    MlflowClient(tracking_uri=f"sqlite:///{a.db}").search_experiments()
    return {"seconds": time.perf_counter() - t0}


# ============================================================================ DVC
def _dvc_copy(root: Path) -> None:
    """Copy the pipeline's files (tracked, or new and not ignored) into ``root``; ``git init`` it."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *DVC_FILES],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        if (REPO / rel).is_file():  # a tracked file deleted in the working tree is skipped
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


def _ran(out: str) -> list[str]:
    return [s for s in STAGE_NAMES if f"Running stage '{s}@{DOMAIN}'" in out]


def _noop(out: str) -> bool:
    return "up to date" in out.lower() and not _ran(out)


def bench_dvc(root: Path, env: dict[str, str], repeat: int, full: bool, timeout: float) -> dict[str, Any]:
    """``dvc repro`` in ``root`` after the Prefect runs: once (timed), then ``repeat`` no-op runs.

    With ``full``, also ``dvc repro --force`` (all six stages as processes) and one more no-op.
    """
    res: dict[str, Any] = {}
    first, out = _dvc(root, env, "repro", timeout=timeout)
    res["first_s"], res["first_ran"], res["first_output"] = first, _ran(out), out.strip()[-2000:]
    if full:
        res["full_s"], out = _dvc(root, env, "repro", "--force", timeout=timeout)
        ran = _ran(out)
        assert len(ran) == 6, f"dvc repro --force ran {ran}, not all six stages:\n{out[-3000:]}"
    noop = []
    for _ in range(repeat):
        seconds, out = _dvc(root, env, "repro", timeout=timeout)
        assert _noop(out), f"the second dvc repro was not a no-op (it should find everything up to date):\n{out}"
        noop.append(seconds)
    res.update(noop_s=noop, noop_min_s=min(noop), noop_median_s=statistics.median(noop),
               noop_output=out.strip())
    return res


# ============================================================================ driver
def _mlflow_template(script: Path, timeout: float) -> Path:
    """A migrated, empty MLflow store, kept in $TMPDIR per MLflow version (created once)."""
    from importlib.metadata import version

    db = bench_tmp() / f"bench-mlflow-{version('mlflow')}.db"
    if not db.exists():
        work = make_root("mlflow")
        try:
            tmp = work / "mlflow.db"
            run_worker(script, ["--worker", "mlflow-template", "--db", str(tmp)], quiet_env(work), work, timeout,
                       "creating the MLflow store")
            shutil.move(tmp, db.with_suffix(".tmp"))
            db.with_suffix(".tmp").replace(db)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return db


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="param override on top of the tiny test params (repeatable)")
    ap.add_argument("--no-dvc", dest="dvc", action="store_false", help="skip the dvc repro timings")
    ap.add_argument("--dvc-full", action="store_true",
                    help="also time a full `dvc repro --force` (six stage processes; 1-2 minutes on 2 cores)")
    ap.add_argument("--direct-thread", action="store_true",
                    help="call the direct stages in a worker thread, as the flow's ThreadPoolTaskRunner does "
                         "(torch's CPU threading behaves differently off the main thread)")
    ap.add_argument("--threads", type=int, default=1,
                    help="OMP_NUM_THREADS (torch, scikit-learn) and OPENBLAS_NUM_THREADS of every stage process "
                         "(default 1: on a busy 2-core VM more threads make the training time vary 3-4x from "
                         "run to run, which would swamp the overhead measured; 0 leaves them unset)")
    ap.add_argument("--dvc-repeat", type=int, default=3, help="no-op dvc repro runs (the median is reported)")
    ap.add_argument("--prefect-home", type=Path, default=None,
                    help="PREFECT_HOME of the flow runs (default $TMPDIR/bench-prefect-home, reused)")
    ap.add_argument("--keep", action="store_true", help="keep the throw-away roots")
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed per subprocess")
    ap.add_argument("--worker", choices=("direct", "flow", "mlflow-template"), help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        answer({"direct": work_direct, "flow": work_flow, "mlflow-template": work_mlflow_template}[a.worker](a))
        return 0

    if a.dvc_repeat < 1:
        ap.error("--dvc-repeat must be at least 1")
    sys.path.insert(0, str(REPO))
    from tasks.params import parse_override
    from tests.conftest import TINY, deep_merge
    from tests.conftest import write_params as _write

    extra: dict[str, Any] = deep_merge({}, BENCH_PARAMS)
    for text in a.overrides:
        extra = deep_merge(extra, parse_override(text))

    t_start = time.perf_counter()
    load_before = os.getloadavg()
    script = Path(__file__).resolve()
    prefect_home = (a.prefect_home or bench_tmp() / "bench-prefect-home").resolve()
    prefect_cold = not (prefect_home / "prefect.db").exists()
    roots: list[Path] = []

    def worker_env(root: Path, **kw: Any) -> dict[str, str]:
        env = quiet_env(root, **kw)
        if a.threads > 0:
            env.update(OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads),
                       MKL_NUM_THREADS=str(a.threads))
        return env

    def new_root(kind: str, template: Path) -> Path:
        root = make_root(kind)
        roots.append(root)
        if kind == "flow":
            _dvc_copy(root)
        _write(root, extra)
        shutil.copy2(template, root / "mlflow.db")
        return root

    log = lambda msg: print(f"[{NAME}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        template = _mlflow_template(script, a.timeout)
        # 1. the stages called directly
        root = new_root("direct", template)
        log(f"direct stages in {root} ...")
        flags = ["--direct-thread"] if a.direct_thread else []
        direct, direct_wall = run_worker(script, ["--worker", "direct", *flags], worker_env(root), root, a.timeout,
                                         "direct")

        # 2-3. the Prefect flow, fresh then again, in a git + DVC copy of the repo (so its `dvc commit` runs)
        root = new_root("flow", template)
        env = worker_env(root, prefect_home=prefect_home)
        dvc_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # DVC's stages import the copy's tasks/
        where = subprocess.run([sys.executable, "-c", "import tasks; print(tasks.__file__)"], cwd=root, env=dvc_env,
                               capture_output=True, text=True, check=True).stdout.strip()
        assert Path(where).resolve().is_relative_to(root.resolve()), f"dvc stages would import {where}"
        _dvc(root, dvc_env, "config", "--local", "core.analytics", "false", timeout=a.timeout)
        _dvc(root, dvc_env, "config", "--local", "core.check_update", "false", timeout=a.timeout)
        log(f"Prefect flow twice (refresh_cache=True, then False) in {root}, PREFECT_HOME {prefect_home} ...")
        flow, flow_wall = run_worker(script, ["--worker", "flow"], env, root, a.timeout, "flow")
        fresh, cached = flow["runs"]
        bad = {s: t["state"] for s, t in fresh["tasks"].items() if t["state"] != "Completed"}
        assert len(fresh["tasks"]) == 6 and not bad, f"fresh run: tasks not all Completed: {fresh['tasks']}"

        # 4. DVC on the outputs the flows wrote and committed
        dvc = None
        if a.dvc:
            log("dvc repro (after the flows), then no-op repros ...")
            dvc = bench_dvc(root, dvc_env, a.dvc_repeat, a.dvc_full, a.timeout)

        stage_sum = direct["sum_s"]
        overhead = fresh["flow_s"] - stage_sum
        around = fresh["flow_s"] - fresh["task_run_sum_s"]
        hits = cached["cache_hits"]
        rows: list[list[Any]] = []
        for stage, s in direct["stages"].items():
            rows.append([f"direct: {stage}", s, fresh["tasks"][stage]["run_s"],
                         "in a worker thread (--direct-thread)" if a.direct_thread and stage == "ingest" else ""])
        setup = "imports {:.1f} s, MLflow experiment {:.1f} s, load_params (imports torch) {:.1f} s"
        rows += [
            ["direct: sum of the six stages", stage_sum, fresh["task_run_sum_s"],
             "right column: the same stages' run time inside the fresh flow"],
            ["direct: whole process", direct_wall, None,
             setup.format(direct["import_s"], direct["mlflow_init_s"], direct["params_s"])],
            ["Prefect: ephemeral server start", flow["server_start_s"], None,
             "cold (new PREFECT_HOME: migrations)" if prefect_cold else "warm PREFECT_HOME"],
            ["Prefect fresh run: flow call", fresh["flow_s"], fresh["task_run_sum_s"],
             "pipeline(refresh_cache=True); right: the sum of its six task runs"],
            ["**Prefect overhead** = flow call - direct sum", overhead, None,
             f"{100 * overhead / stage_sum:+.0f} % of the stages; includes the stages' run-to-run noise "
             f"(inside the flow they took {fresh['task_run_sum_s'] - stage_sum:+.1f} s vs direct)"],
            ["of which outside the task runs", around, None,
             f"flow call - its task runs: orchestration, MLflow parent run, artifact, "
             f"dvc commit {fresh['dvc_commit_s']:.1f} s"],
            ["**Prefect second run**: flow call", cached["flow_s"], cached["task_run_sum_s"],
             f"cache hits {len(hits)}/5 ({', '.join(hits) or 'none'}); register always runs; "
             f"dvc commit {cached['dvc_commit_s']:.1f} s"],
            ["Prefect: whole process (both runs)", flow_wall, None,
             setup.format(flow["import_s"], flow["mlflow_init_s"], flow["params_s"])
             + "; server start; the two flow calls"],
        ]
        if dvc:
            ran = dvc["first_ran"]
            rows.append(["dvc repro after the flows", dvc["first_s"], None,
                         f"ran {', '.join(ran)}" if ran else "nothing to do: the flow's dvc commit is enough"])
            if "full_s" in dvc:
                rows.append(["dvc repro --force (6 stage processes)", dvc["full_s"], None,
                             f"{dvc['full_s'] - direct_wall:+.1f} s vs the direct process"])
            rows.append(["**dvc repro: no-op**", dvc["noop_median_s"], None,
                         f"median of {len(dvc['noop_s'])} (min {dvc['noop_min_s']:.2f} s): 'up to date'"])
        text = table(["measurement", "seconds", "task run s", "note"], rows, align="lrrl")
        total = time.perf_counter() - t_start
        load_after = os.getloadavg()
        threads = f"OMP_NUM_THREADS={a.threads}" if a.threads > 0 else "default threads"
        print(f"\n## Pipeline overhead on the tiny params (tests/conftest.py TINY, baselines [logreg]"
              f"{' + ' + ', '.join(a.overrides) if a.overrides else ''}; {threads})\n")
        print(text)
        print("\n'task run s': the stage's running time as Prefect recorded it in that flow run (task run "
              "total_run_time). One run each; load average before/after "
              f"{load_before[0]:.1f}/{load_after[0]:.1f} on {os.cpu_count()} CPUs.")
        if len(hits) < 5:
            print(f"WARNING: the second flow run had {len(hits)} of 5 cache hits, so its time is not that of a "
                  "cached run: Prefect's cache did not recognise unchanged stages (flows/pipeline.py "
                  "stage_cache_key / result storage).")
        path = write_json(NAME, {
            "benchmark": NAME, "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": load_after},
            "args": {k: str(v) for k, v in vars(a).items() if k not in ("worker", "db")},
            "direct_in_worker_thread": a.direct_thread, "omp_num_threads": a.threads or None,
            "params_extra": {"tiny": TINY, "bench": extra}, "prefect_home": str(prefect_home),
            "prefect_home_cold": prefect_cold,
            "direct": {**direct, "process_wall_s": direct_wall},
            "prefect": {**flow, "process_wall_s": flow_wall},
            "prefect_overhead_s": overhead, "prefect_overhead_fraction": overhead / stage_sum,
            "dvc": dvc, "table": text, "script_seconds": total,
        })
        log(f"{total:.0f} s in all; wrote {path.relative_to(REPO)}")
    finally:
        for root in roots:
            if a.keep:
                log(f"kept {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
