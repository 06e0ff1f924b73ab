"""Prefect flows: one per domain (:func:`domain_flow`) and the pipeline over domains (:func:`pipeline`).

Each stage function of :mod:`tasks.stages` is wrapped as one Prefect task:

* retries with exponential backoff on the I/O stage (ingest), only for
  transient I/O errors (a missing file or a schema error is not retried);
* caching keyed on the stage's params, the content hashes of its inputs
  (upstream outputs), the hash of the code the stage runs
  (:func:`tasks.stages.stage_code_hash`) and, for ingest, the fingerprint of
  the source (:func:`source_fingerprints`), never on tensors: a re-run with
  nothing changed returns the cached manifests at once, an edited stage module
  or a source rewritten in place runs the stage again. Each run records the
  hashes of the outputs it wrote; a deleted or edited output bypasses the
  cache so the stage runs again. ``register`` is never cached (it changes the
  registry);
* the domains fan out through the flow's task runner (threads by default).

Each domain gets one MLflow parent run with a child run per stage (each run stores the resolved
params as artifact ``params.resolved.yaml`` and their hash as tag ``params.hash``), a Prefect
markdown artifact with the metrics and compression tables, and, after the run, ``dvc commit``
so that ``dvc repro`` sees the same outputs as up to date. Only stages that ran on params.yaml's
values are committed: dvc.lock records params.yaml, so a stage whose params a ``--set`` or a
profile changed (and every later stage of its domain) is left out and ``dvc status`` reports it
as changed (:func:`dvc_commit`).

One pipeline run at a time per project: the flow holds the project's ``pipeline`` lock
(:func:`tasks.store.lock`) for its whole run, and a second run (another ``python -m
flows.pipeline``, a deployment's scheduled run) is refused at once with a message naming the
running one; ``main`` exits :data:`LOCKED_EXIT` then.

A run whose stages all completed is a finished run: if the Prefect API goes away after that
(the ephemeral API process killed or starved under load), ``main`` warns and exits 0 rather
than turning the lost connection into the run's exit status (:func:`main`).

Run it: ``python -m flows.pipeline`` (all domains of ``pipeline.domains``),
``python -m flows.pipeline --domain netflow --set train.netflow.epochs=2``.
"""

from __future__ import annotations

if __name__ == "__main__":
    # Run as a program: Prefect's API server boots in its own process while the imports below take their
    # ~15 s (flows/_boot.py); main() waits for it before the flow starts.
    from flows import _boot

    _boot.start()

import argparse
import contextlib
import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from flows import _boot, runners
from tasks import lineage, logs, store, tracking
from tasks.params import DOMAINS, STAGES, Params, ParamsError, announce_profiles, load_params
from tasks.params_base import add_params_options, did_you_mean
from tasks.stages import run_stage, stage_code_hash, stage_outputs


class RunLogHandler(APILogHandler):
    """Prefect's API log handler for the project's loggers, only inside a flow or task run.

    Prefect attaches its own loggers' lines to the run they are written in; the stages log on the
    standard library's ``tasks.*`` loggers (``tasks`` may not import Prefect), so this handler, added
    to the package loggers (:func:`send_logs_to_prefect`), carries their lines (the epoch lines of a
    training, an ingest's summary) to the flow run's log page. A line written outside any run (``main``
    before the flow starts, a test calling a stage directly) has no run to go to and is left to the
    other handlers, instead of Prefect's "without a flow run id" warning.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return
        super().emit(record)


def send_logs_to_prefect() -> None:
    """Add :class:`RunLogHandler` to the project's loggers (:data:`tasks.logs.PACKAGES`), once per process.

    Done when this module is imported, so a deployment's run (a Prefect worker importing the flow) and a
    Dask worker (unpickling its tasks imports this module) send the lines too, not only ``main``.
    """
    for name in logs.PACKAGES:
        logger = logging.getLogger(name)
        if not any(isinstance(h, RunLogHandler) for h in logger.handlers):
            logger.addHandler(RunLogHandler())


send_logs_to_prefect()

SOURCE_KEYS = ("source", "labels", "metadata")
"""The keys of a domain's ``ingest`` params that name its inputs (a path, URL, glob or list of them)."""


def source_urls(ingest_params: dict[str, Any] | None) -> list[str]:
    """The inputs one domain's ``ingest`` params name (``synthetic`` and unset ones left out)."""
    urls: list[str] = []
    for key in SOURCE_KEYS:
        value = (ingest_params or {}).get(key)
        for url in value if isinstance(value, list) else [value]:
            if isinstance(url, str) and url != "synthetic":
                urls.append(url)
    return urls


def source_fingerprints(domain: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """What the ingest of ``domain`` reads, as :func:`tasks.store.sources_fingerprint` identifies it.

    Local files by size, modification time and content hash, remote ones by size and ETag:
    a source rewritten in place at the same path changes it. Empty for a synthetic source
    (its params are in the key already).
    """
    return store.sources_fingerprint(source_urls(params.get("ingest", {}).get(domain)))


def stage_cache_key(context, parameters: dict[str, Any]) -> str:
    """Cache key of a stage task.

    Stage, domain, params of this and earlier stages, upstream output hashes, the hash of the
    code the stage runs (its module, the domain package and what they import:
    :func:`tasks.stages.stage_code_hash`) and, for ingest, the source's fingerprint
    (:func:`source_fingerprints`).
    """
    stage, domain = parameters["stage"], parameters["domain"]
    params = parameters["params"]
    upto = STAGES[: STAGES.index(stage) + 1]
    sections = {s: params.get(s, {}).get(domain) for s in upto}
    upstream = (parameters.get("upstream") or {}).get("outputs")
    wrapper = context.task.fn.__code__.co_code if context is not None else b""
    blob = json.dumps({"stage": stage, "domain": domain, "params": sections, "upstream": upstream,
                       "root": str(store.project_root()), "code": stage_code_hash(stage, domain),
                       "sources": source_fingerprints(domain, params) if stage == "ingest" else None},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode() + wrapper).hexdigest()


def _output_record(stage: str, domain: str) -> Path:
    return store.project_root() / ".prefect" / "outputs" / domain / f"{stage}.json"


def _output_hashes(stage: str, domain: str) -> dict[str, str]:
    return {str(p): store.content_hash(p) for p in stage_outputs(stage, domain)}


def _params_key(stage: str, domain: str, params: dict[str, Any]) -> str:
    """Hash of the params sections a stage's outputs depend on (this and the earlier stages of the domain)."""
    sections = {s: params.get(s, {}).get(domain) for s in STAGES[: STAGES.index(stage) + 1]}
    return hashlib.sha256(json.dumps(sections, sort_keys=True, default=str).encode()).hexdigest()


def outputs_changed(stage: str, domain: str, params: dict[str, Any] | None = None) -> bool:
    """True when a stage's outputs on disk are not what its cached result describes.

    That is when they differ from what its last run wrote (deleted or edited), or when that run had
    other params than ``params``: after default -> ``--set train.netflow.epochs=1`` -> default, the
    third run's cache key is the first run's, but the outputs on disk are the second run's. The cache
    key cannot include the outputs themselves (they do not exist before the first run), so a stale
    cache entry is bypassed with ``refresh_cache``.
    """
    record = _output_record(stage, domain)
    if not record.exists():
        return False
    was = store.read_json(record)
    if not isinstance(was, dict) or "outputs" not in was:  # written by an older version: run again
        return True
    if params is not None and was.get("params") != _params_key(stage, domain, params):
        return True
    return was["outputs"] != _output_hashes(stage, domain)


def _transient(task_, task_run, state) -> bool:
    """Retry only transient I/O failures: a missing file, bad schema or bad value fails at once."""
    try:
        state.result()
    except (FileNotFoundError, IsADirectoryError, PermissionError, ValueError):
        return False
    except OSError:
        return True
    except Exception:
        return False
    return False


def _run(stage: str, domain: str, params: dict[str, Any], parent_run_id: str | None) -> dict[str, Any]:
    flow_run_id = str(flow_run.id) if flow_run.id else "none"
    # worker: the machine and process that ran the stage (the flow's own, or a Dask worker's: pipeline.task_runner)
    manifest = run_stage(stage, domain, Params.model_validate(params), parent_run_id=parent_run_id,
                         tags={"prefect.flow_run_id": flow_run_id, "worker": f"{socket.gethostname()}:{os.getpid()}"})
    if stage != "register":
        store.atomic_write_json(_output_record(stage, domain), {"params": _params_key(stage, domain, params),
                                                                "outputs": _output_hashes(stage, domain)})
    return manifest


@task(task_run_name="{stage}-{domain}", persist_result=True, result_serializer="json",
      cache_key_fn=stage_cache_key)
def stage_task(stage: str, domain: str, params: dict[str, Any], parent_run_id: str | None,
               upstream: dict[str, Any] | None = None) -> dict[str, Any]:
    """One cached stage of one domain, in a child MLflow run of the domain's pipeline run."""
    return _run(stage, domain, params, parent_run_id)


@task(task_run_name="{stage}-{domain}", cache_policy=NO_CACHE)
def register_task(stage: str, domain: str, params: dict[str, Any], parent_run_id: str | None,
                  upstream: dict[str, Any] | None = None) -> dict[str, Any]:
    """The register stage: never cached, since it changes the model registry."""
    return _run(stage, domain, params, parent_run_id)


def _task_for(stage: str, domain: str, refresh: bool, params: dict[str, Any] | None = None):
    if stage == "register":
        return register_task
    opts: dict[str, Any] = {"result_storage": Path(store.project_root() / ".prefect" / "results"),
                            "refresh_cache": refresh or outputs_changed(stage, domain, params)}
    if stage == "ingest":
        opts.update(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2),
                    retry_condition_fn=_transient)
    return stage_task.with_options(**opts)


def _report_markdown(domain: str, manifests: dict[str, dict[str, Any]]) -> str:
    """The domain's Prefect markdown artifact: a compact metrics table that fits the UI's width (model, kind, the
    primary and two key metrics, latency, size), the sections after it, the registry, and where the full report is.
    """
    ev, reg = manifests.get("evaluate", {}), manifests.get("register", {})
    # An evaluate manifest cached before the compact table existed has only the full one.
    table = ev.get("compact_table") or ev.get("table", "(not evaluated)")
    lines = [f"# formerflow · {domain}", "", "## Test metrics", "", table, ""]
    if ev:
        report = store.project_root() / ev.get("report", f"reports/{domain}/report.md")
        served = f"Served variant: **{ev['served']}**. " if ev.get("served") else ""
        lines += [f"{served}Every metric, per-class results and plots: `{report}`.", ""]
    if ev.get("extra"):  # domain-specific sections (EEG: the protocol tables)
        lines += [ev["extra"], ""]
    if reg:
        lines += ["## Registry", "",
                  f"`{reg['registered_model']}` version {reg['version']} ({reg['model']}) is `candidate`; "
                  f"promoted to `champion`: **{reg['promoted']}** ({reg['reason']}).", ""]
    return "\n".join(lines)


def dvc_commit(domains: list[str], params: Params | None = None) -> str:
    """Record the outputs a Prefect run wrote in dvc.lock, so ``dvc repro`` finds them up to date.

    dvc.lock records the values of params.yaml for each stage it commits, so only the stages that ran on
    those values are committed. A stage whose effective ``params`` differ from params.yaml's in a key
    dvc.yaml lists for it (a ``--set``, a ``--profile`` or ``$FORMERFLOW_PROFILE``), and every later stage
    of its domain (their inputs are its outputs), is left out: ``dvc status`` then reports it as changed
    instead of "up to date" for outputs that other params produced (:func:`tasks.lineage.uncommitted_stages`).

    Returns:
        What was committed and what was not, and why (printed in the flow's summary).
    """
    root = store.project_root()
    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    if not (root / ".dvc").is_dir() or not (root / "dvc.yaml").exists() or not Path(dvc).exists():
        return "skipped (no DVC repository or dvc not installed)"
    skipped: dict[str, str] = {}
    try:
        base = load_params(profiles=[], overrides=[]).model_dump(mode="json")
    except ParamsError as exc:
        return f"not committed: params.yaml alone does not load, so dvc.lock could not record it ({exc})"
    if params is not None:
        skipped = lineage.uncommitted_stages(params.model_dump(mode="json"), base, domains, root)
    targets = [f"{s}@{d}" for d in domains for s in STAGES if f"{s}@{d}" not in skipped]
    every_stage = {f"{s}@{d}" for d in base["pipeline"]["domains"] for s in STAGES}  # dvc.yaml's foreach
    message = ""
    if targets:
        # `dvc commit t1 t2 ...` commits target by target and re-parses and rewrites dvc.lock for each (ruamel,
        # about 2 s a time with 24 stages: 50 s of make run's 8 minutes); without targets it commits every stage
        # of dvc.yaml and writes dvc.lock once (12 s). So the whole set goes without naming it.
        named = [] if set(targets) == every_stage else targets
        proc = subprocess.run([dvc, "commit", "--force", "--quiet", *named], cwd=root, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            return f"dvc commit failed: {proc.stderr.strip()[-500:]}"
        message = "committed " + ", ".join(targets)
    if skipped:
        message += ("; " if message else "") + (
            "NOT committed (dvc.lock would record params.yaml's values, not this run's; dvc status reports "
            "them as changed): " + "; ".join(f"{t} ({why})" for t, why in skipped.items()))
    return message


def _run_domains(domains: list[str], params: Params, refresh: bool) -> dict[str, dict[str, Any]]:
    pdict = params.model_dump(mode="json")
    flow_run_id = str(flow_run.id) if flow_run.id else "none"
    with contextlib.ExitStack() as stack:  # one MLflow parent run per domain, closed FAILED on error
        parents = {d: stack.enter_context(tracking.start_run(d, "pipeline", tags={"prefect.flow_run_id": flow_run_id}))
                   for d in domains}
        futures: dict[str, dict[str, Any]] = {d: {} for d in domains}
        results: dict[str, dict[str, Any]] = {}
        for domain in domains:
            parents[domain].log_params({"stages": ",".join(STAGES)})
            tracking.log_resolved_params(parents[domain], pdict)
            upstream = None
            for stage in STAGES:
                upstream = _task_for(stage, domain, refresh, pdict).submit(stage, domain, pdict,
                                                                           parents[domain].run_id, upstream)
                futures[domain][stage] = upstream
            # On threads, one domain after the other unless asked (they would share torch's generator and thread
            # pool); on a cluster each stage is a process of its own, so the domains always fan out.
            if not params.pipeline.parallel_domains and params.pipeline.task_runner == "threads":
                results[domain] = {s: f.result() for s, f in futures[domain].items()}
        results.update({d: {s: f.result() for s, f in fs.items()} for d, fs in futures.items() if d not in results})
        for domain, run in parents.items():
            run.set_tags({"registered.version": results[domain]["register"]["version"]})
    for domain in domains:
        try:
            create_markdown_artifact(key=f"{domain}-report", markdown=_report_markdown(domain, results[domain]),
                                     description=f"formerflow {domain}: metrics, compression, registry")
        except Exception as exc:  # the stages are done; a lost API costs the Prefect artifact, not the run
            if not prefect_api_lost(exc):
                raise
            print(f"WARNING: {domain}: the Prefect API is gone ({_cause(exc)}); its report artifact is not in "
                  f"Prefect (reports/{domain}/report.md has it)", file=sys.stderr)
    return results


PIPELINE_LOCK = "pipeline"
"""The project's whole-run lock (``.locks/pipeline.lock``): one pipeline run at a time."""
LOCKED_EXIT = 75
"""``main``'s exit status when another run holds the project (EX_TEMPFAIL: try again later)."""
_finished: dict[str, Any] = {}
"""What the last pipeline run of this process returned, once every stage of it completed (see :func:`main`)."""


def one_run_at_a_time(fn):
    """Run the pipeline flow's body holding the project's :data:`PIPELINE_LOCK` (refused at once if held).

    Two whole runs on one project would race for the same outputs (a domain's stages lock
    its folders one stage at a time, not the run), register twice and commit one
    ``dvc.lock`` over the other; the second run is refused rather than queued, since a
    queued re-run usually finds everything cached and the refusal names the run to wait for.
    The lock is taken inside the flow, so every way of starting it (``main``, a deployment,
    a test, :func:`domain_flow`) is covered; the operating system releases it with the process.
    Records the body's result in :data:`_finished` when it returns: every stage completed.
    """

    @functools.wraps(fn)
    def locked(*args: Any, **kwargs: Any) -> Any:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        domains = bound.arguments.get("domains")
        what = "run the pipeline" + (f" ({', '.join(domains)})" if domains else "")
        with store.lock(PIPELINE_LOCK, what=what):
            results = fn(*args, **kwargs)
        _finished["results"] = results
        return results

    return locked


@flow(name="formerflow-domain", log_prints=False)
def domain_flow(domain: str = "netflow", profiles: list[str] | None = None, overrides: list[str] | None = None,
                refresh_cache: bool = False) -> dict[str, Any]:
    """ingest -> preprocess -> train -> compress -> evaluate -> register for one domain."""
    return pipeline.fn(domains=[domain], profiles=profiles, overrides=overrides, refresh_cache=refresh_cache)


# Every stage of every domain is submitted up front, and a submitted stage waits in its worker thread for its
# upstream: with fewer workers than (domain, stage) pairs the first domain's waiting stages fill the pool and
# the domains run one after another.
MAX_WORKERS = len(DOMAINS) * len(STAGES)


@contextlib.contextmanager
def torch_threads_per_domain(n_domains: int):
    """Share the cores between domains that run at once (torch intra-op threads = cores // domains, >= 1).

    Each Python thread that calls into torch gets its own OpenMP team; two domains training at once with a
    team as large as the machine each put twice as many busy threads as cores, and their spin-waiting slows
    both far more than sharing does.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, (os.cpu_count() or 1) // max(1, n_domains))))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@flow(name="formerflow-stages", log_prints=False)
def stages_flow(domains: list[str], params: dict[str, Any], refresh_cache: bool = False) -> dict[str, Any]:
    """Every stage of ``domains`` on the task runner it is given (``pipeline.task_runner`` other than threads)."""
    return _run_domains(domains, Params.model_validate(params), refresh_cache)


@flow(name="formerflow-pipeline", log_prints=False, task_runner=ThreadPoolTaskRunner(max_workers=MAX_WORKERS))
@one_run_at_a_time
def pipeline(domains: list[str] | None = None, profiles: list[str] | None = None,
             overrides: list[str] | None = None, refresh_cache: bool = False) -> dict[str, Any]:
    """Every stage of every domain in ``domains`` (default: ``pipeline.domains`` of the params)."""
    params = load_params(profiles=profiles, overrides=overrides or [])
    domains = domains or list(params.pipeline.domains)
    if params.pipeline.task_runner == "threads":
        with torch_threads_per_domain(len(domains) if params.pipeline.parallel_domains else 1):
            results = _run_domains(domains, params, refresh_cache)
    else:  # the stages as tasks of a cluster: a sub-flow run on that task runner (flows/runners.py)
        runner = runners.task_runner(params.pipeline, MAX_WORKERS)
        results = stages_flow.with_options(task_runner=runner)(domains, params.model_dump(mode="json"), refresh_cache)
    summary = []
    for domain in domains:
        reg = results[domain]["register"]
        champ = "none" if reg["champion_version"] is None else f"v{reg['champion_version']}"
        summary.append(f"{domain}: {reg['registered_model']} v{reg['version']} is candidate; champion is "
                       f"{champ} ({reg['reason']})")
    if params.pipeline.dvc_commit:
        summary.append("dvc: " + dvc_commit(domains, params))
    for line in summary:
        print(line)  # plain stdout (log_prints is off): Prefect logs at WARNING in make run
    return results


def main(argv: list[str] | None = None, prog: str = "python -m flows.pipeline") -> int:
    """``formerflow run [DOMAIN ...]`` (= ``python -m flows.pipeline [--domain D ...]``): the pipeline flow."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("domains", nargs="*", metavar="DOMAIN",
                    help=f"domains to run (default: pipeline.domains); one of {', '.join(DOMAINS)}")
    ap.add_argument("--domain", action="append", default=[], help="a domain to run (repeatable; the same as DOMAIN)")
    add_params_options(ap, params_file=False)
    ap.add_argument("--refresh-cache", action="store_true", help="ignore Prefect's cache and run every stage")
    logs.add_log_options(ap)
    args = ap.parse_args(argv)
    logs.setup_logging(logs.level_from_flags(args.quiet, args.verbose))
    wanted = [*args.domains, *args.domain] or None
    unknown = [d for d in wanted or [] if d not in DOMAINS]
    if unknown:  # one line, before any lock, flow or API: a typo costs nothing
        print(f"error: unknown domain {unknown[0]!r}{did_you_mean(unknown[0], DOMAINS)}; choose from: "
              f"{', '.join(DOMAINS)}", file=sys.stderr)
        return 2
    try:  # refuse at once, before Prefect starts its API, when another run holds the project
        with store.lock(PIPELINE_LOCK, what="run the pipeline"):
            pass
    except store.LockHeldError as exc:
        print(f"formerflow: {exc}", file=sys.stderr)
        return LOCKED_EXIT
    _finished.clear()
    _boot.wait()  # the API server booting in the background (flows/_boot.py), if this program started it
    try:
        with announce_profiles(args.profile):  # the stages' report headers name them
            results = pipeline(domains=wanted, profiles=args.profile, overrides=args.overrides,
                               refresh_cache=args.refresh_cache)
    except store.LockHeldError as exc:  # another run took the project between the check and the flow
        print(f"formerflow: {exc}", file=sys.stderr)
        return LOCKED_EXIT
    except Exception as exc:
        # Every stage completed (the flow's body returned) and only Prefect's bookkeeping after it failed
        # because its API is gone: the stages' outputs, MLflow runs and registry versions are all written,
        # so the exit status says so; the warning says what Prefect is missing.
        results = _finished.get("results")
        if results is None or not prefect_api_lost(exc):
            raise
        print(f"WARNING: the Prefect API went away after every stage completed ({_cause(exc)}). The stages' "
              "outputs, reports, MLflow runs and model versions are all written; Prefect did not record the flow run's "
              "final state (its UI may show it Running or Crashed). With Prefect's ephemeral API this happens when "
              "its process dies or is starved under heavy load; set PREFECT_API_URL to a server "
              "(`prefect server start`) to keep the record. Exit status 0: the stages succeeded.", file=sys.stderr)
    for domain, manifests in results.items():
        print(f"\n== {domain} ==\n{manifests['evaluate']['table']}")
    print("\nreports: reports/<domain>/report.md; MLflow UI: formerflow ui")
    return 0


def prefect_api_lost(exc: BaseException) -> bool:
    """True when the error is a lost connection to the Prefect API (refused, reset, timed out, DNS)."""
    import httpx  # lazy: only the failure path needs it (Prefect's client is built on it)

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    sys.exit(main())
