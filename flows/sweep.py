"""Optuna sweeps as a Prefect flow: ``formerflow sweep <domain> --trials N`` (``python -m flows.sweep``).

One study per sweep (TPE sampler with a seed, median pruner on the per-epoch validation metric), driven
with Optuna's ask/tell interface from the flow: it asks for ``parallel`` trials at a time, submits each
as a Prefect task on the task runner of ``pipeline.task_runner`` (:mod:`flows.runners`: threads here,
or the workers of a Dask cluster), and tells the study how each ended. A trial is
:func:`tasks.sweep.tracked_trial`: the domain's teacher trained on the processed data with the
trial's params, in a child MLflow run of the sweep's parent run ``sweep``; it reports each epoch's
validation value to the study's journal file (``.sweeps/<domain>/<study>.journal``), which every
trial process opens, so the median pruner sees all trials wherever they run.

At the end the best trial's params are written as ``profiles/sweep-<domain>.yaml`` (apply with
``--profile sweep-<domain>``) and a table of the trials is printed (and kept as a Prefect artifact).
The sweep needs ingest and preprocess done for the domain, and writes no artifacts of the pipeline.

Run it: ``python -m flows.sweep netflow --trials 20``,
``python -m flows.sweep eeg --trials 8 --space my_space.yaml --set train.eeg.epochs=5 --timeout 1800``.
"""

from __future__ import annotations

if __name__ == "__main__":
    # As flows.pipeline: Prefect's API server boots in its own process while the imports below take their time.
    from flows import _boot

    _boot.start()

import argparse
import contextlib
import sys
import time
import uuid
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows import _boot, runners
from flows.pipeline import torch_threads_per_domain  # shares the cores between trials training at once
from tasks import domains, logs, store, tracking
from tasks import sweep as sweeps
from tasks.params import Params, ParamsError, load_params
from tasks.params_base import add_params_options, did_you_mean


@task(task_run_name="trial-{number}", cache_policy=NO_CACHE)
def trial_task(domain: str, params: dict[str, Any], overrides: list[str], study: sweeps.StudyRef, number: int,
               parent_run_id: str, flow_run_id: str) -> dict[str, Any]:
    """One trial (never cached: a trial is a random draw whose result goes to the study)."""
    return sweeps.tracked_trial(domain, Params.model_validate(params), overrides, study, number, parent_run_id,
                                tags={"prefect.flow_run_id": flow_run_id})


@flow(name="formerflow-sweep-trials", log_prints=False)
def trials_flow(domain: str, params: dict[str, Any], space: dict[str, dict[str, Any]], trials: int, parallel: int,
                seed: int, startup_trials: int, warmup_epochs: int, timeout: float | None,
                sweep_args: dict[str, Any]) -> dict[str, Any]:
    """The study, its trials on the task runner this sub-flow is given, and the profile of the best one."""
    import optuna  # lazy: the scale extra

    pmodel = Params.model_validate(params)
    dims = {k: sweeps.Dimension.model_validate(v) for k, v in space.items()}
    metric, direction = sweeps.objective(pmodel, domain)
    # The time for people, a random tail so two sweeps started in the same second get studies of their own.
    name = f"sweep-{domain}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    ref = sweeps.StudyRef(name=name, journal=str(sweeps.study_journal(domain, name)), direction=direction,
                          startup_trials=startup_trials, warmup_epochs=warmup_epochs)
    study = sweeps.create_study(ref, seed)
    fr_id = str(flow_run.id) if flow_run.id else "none"
    deadline = time.monotonic() + timeout if timeout else None
    rows: list[dict[str, Any]] = []
    with tracking.start_run(domain, "sweep", tags={"prefect.flow_run_id": fr_id, "sweep.study": name}) as parent:
        parent.log_params({"sweep.trials": trials, "sweep.parallel": parallel, "sweep.metric": metric,
                           "sweep.direction": direction, "sweep.sampler": f"TPESampler(seed={seed})",
                           "sweep.pruner": f"MedianPruner(n_startup_trials={startup_trials}, "
                                           f"n_warmup_steps={warmup_epochs + 1}) on epochs 1, 2, ...",
                           "sweep.journal": ref.journal, "sweep.task_runner": pmodel.pipeline.task_runner,
                           **{f"sweep.args.{k}": v for k, v in sweep_args.items()},
                           **{f"space.{k}": d.describe() for k, d in dims.items()}})
        tracking.log_resolved_params(parent, params)
        while len(rows) < trials and (deadline is None or time.monotonic() < deadline):
            batch = [study.ask() for _ in range(min(parallel, trials - len(rows)))]
            overrides = [sweeps.suggest(t, dims) for t in batch]
            futures = [trial_task.submit(domain, params, ov, ref, t.number, parent.run_id, fr_id)
                       for t, ov in zip(batch, overrides, strict=True)]
            for t, ov, fut in zip(batch, overrides, futures, strict=True):
                out = fut.result(raise_on_failure=False)
                if isinstance(out, BaseException):  # a trial that raised: FAIL in the study, the sweep goes on
                    study.tell(t, state=optuna.trial.TrialState.FAIL)
                    rows.append({"number": t.number, "state": "failed", "overrides": ov, "value": None,
                                 "error": f"{type(out).__name__}: {out}"})
                elif out["state"] == "pruned":  # Optuna records the last reported value as a pruned trial's
                    study.tell(t, state=optuna.trial.TrialState.PRUNED)
                    rows.append(out)
                else:
                    study.tell(t, out["value"])
                    rows.append(out)
        complete = [r for r in rows if r["state"] == "complete"]
        if not complete:
            errors = "; ".join(f"trial {r['number']}: {r['error']}" for r in rows if r.get("error"))
            raise RuntimeError(f"sweep {name}: no trial completed ({len(rows)} run). " + (errors or
                               "All were pruned: raise --prune-startup or --prune-warmup."))
        best = study.best_trial
        best_row = next(r for r in rows if r["number"] == best.number)
        profile = sweeps.write_profile(domain, best_row["overrides"], {
            "study": f"{name} ({ref.journal})", "metric": f"{metric} ({direction})",
            "value": f"{best.value:.6g} (trial {best.number} of {len(rows)}: {len(complete)} complete, "
                     f"{sum(r['state'] == 'pruned' for r in rows)} pruned, "
                     f"{sum(r['state'] == 'failed' for r in rows)} failed)",
            "mlflow": f"experiment {tracking.experiment_name(domain)}, parent run {parent.run_id}, "
                      f"trial run {best_row['run_id']}",
            "ran on": "params.yaml" + "".join(f" + --profile {p}" for p in sweep_args.get("profiles") or [])
                      + "".join(f" + --set {s}" for s in sweep_args.get("overrides") or [])})
        parent.log_metrics({f"best_{metric}": best.value, "trials_complete": len(complete),
                            "trials_pruned": sum(r["state"] == "pruned" for r in rows)})
        parent.set_tags({"sweep.best_trial": str(best.number), "sweep.best_run_id": best_row["run_id"],
                         "sweep.profile": profile.relative_to(store.project_root()).as_posix()})
        parent.log_artifact(profile)
    table = sweeps.summary_table(rows, metric, dims)
    with contextlib.suppress(Exception):  # the Prefect artifact is a view of the table; losing it loses nothing
        create_markdown_artifact(key=f"sweep-{domain}", markdown=f"# formerflow sweep · {domain}\n\n{table}\n",
                                 description=f"formerflow sweep {name}")
    return {"study": name, "journal": ref.journal, "metric": metric, "direction": direction,
            "best": {"number": best.number, "value": best.value, "overrides": best_row["overrides"],
                     "run_id": best_row["run_id"]},
            "trials": rows, "profile": str(profile), "parent_run_id": parent.run_id, "table": table}


@flow(name="formerflow-sweep", log_prints=False)
def sweep(domain: str = "netflow", trials: int = 20, profiles: list[str] | None = None,
          overrides: list[str] | None = None, space: str | None = None, timeout: float | None = None,
          parallel: int | None = None, seed: int = 0, startup_trials: int = 5,
          warmup_epochs: int = 1) -> dict[str, Any]:
    """Search ``domain``'s train params with ``trials`` Optuna trials; write the best as a profile.

    Args:
        domain: The domain (ingest and preprocess done).
        trials: How many trials to run (fewer if ``timeout`` passes first).
        profiles: Profiles the sweep's base params load with (as ``--profile``).
        overrides: ``key=value`` applied to the base params (as ``--set``), e.g. fewer epochs per trial.
        space: A YAML search space file (:func:`tasks.sweep.load_space`); default
            :func:`tasks.sweep.default_space`.
        timeout: Seconds after which no new trial is started (running ones finish).
        parallel: Trials at a time; default 1 on threads (two trainings in one process share its cores),
            ``pipeline.workers`` on Dask.
        seed: The TPE sampler's seed.
        startup_trials: Median pruner: trials that complete before any is pruned.
        warmup_epochs: Median pruner: epochs of a trial that are never pruned.

    Returns:
        The study, the best trial, every trial's row, the profile's path, the parent run id and the table.

    Raises:
        FileNotFoundError: the domain's processed data is missing (names the commands).
        ParamsError: the params, a profile, an override or the space is invalid.
    """
    if trials < 1:
        raise ValueError(f"--trials must be at least 1 (got {trials})")
    domains.check(domain)
    params = load_params(profiles=profiles, overrides=overrides or [])
    sweeps.require_processed(domain)
    dims = sweeps.load_space(space) if space else sweeps.default_space(domain, params)
    sweeps.check_space(dims, domain, params, source=space or f"the default search space of {domain}")
    threads = params.pipeline.task_runner == "threads"
    parallel = parallel or (1 if threads else params.pipeline.workers)
    if parallel < 1:
        raise ValueError(f"--parallel must be at least 1 (got {parallel})")
    runner = runners.task_runner(params.pipeline, parallel)
    args = {"profiles": profiles or [], "overrides": overrides or [], "space": space or "default", "seed": seed}
    with torch_threads_per_domain(parallel if threads else 1):
        out = trials_flow.with_options(task_runner=runner)(
            domain, params.model_dump(mode="json"), {k: d.model_dump() for k, d in dims.items()}, trials, parallel,
            seed, startup_trials, warmup_epochs, timeout, args)
    print(out["table"])  # plain stdout (log_prints is off)
    best = out["best"]
    print(f"\nbest: trial {best['number']} {out['metric']} = {best['value']:.4f} -> {out['profile']}\n"
          f"apply it: python -m flows.pipeline --domain {domain} --profile {sweeps.profile_name(domain)}")
    return out


def main(argv: list[str] | None = None, prog: str = "python -m flows.sweep") -> int:
    """``formerflow sweep <domain> --trials N [--profile P] [--set k=v] [--space f.yaml] [--timeout s]``."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("domain", help="domain to sweep (ingest and preprocess done)")
    ap.add_argument("--trials", type=int, default=20, help="trials to run (default 20)")
    add_params_options(ap, params_file=False)
    ap.add_argument("--space", help="search space YAML (dotted key: {type: float|int|categorical, ...}); "
                                    "default: the domain's lr, weight decay, batch size and a model knob")
    ap.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    ap.add_argument("--parallel", type=int, help="trials at a time (default 1 on threads, pipeline.workers on dask)")
    ap.add_argument("--seed", type=int, default=0, help="TPE sampler seed")
    ap.add_argument("--prune-startup", type=int, default=5, help="trials completed before the pruner acts")
    ap.add_argument("--prune-warmup", type=int, default=1, help="epochs of a trial that are never pruned")
    logs.add_log_options(ap)
    args = ap.parse_args(argv)
    logs.setup_logging(logs.level_from_flags(args.quiet, args.verbose))
    if args.domain not in domains.names():  # one line before Prefect or Optuna start
        print(f"error: unknown domain {args.domain!r}{did_you_mean(args.domain, domains.names())}; choose from: "
              f"{', '.join(domains.names())}", file=sys.stderr)
        return 2
    _boot.wait()  # the API server booting in the background (flows/_boot.py), if this program started it
    try:
        sweep(domain=args.domain, trials=args.trials, profiles=args.profile, overrides=args.overrides,
              space=args.space, timeout=args.timeout, parallel=args.parallel, seed=args.seed,
              startup_trials=args.prune_startup, warmup_epochs=args.prune_warmup)
    except (ParamsError, FileNotFoundError, ValueError, domains.UnknownDomainError) as exc:
        print(f"formerflow sweep: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
