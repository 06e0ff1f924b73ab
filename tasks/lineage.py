"""Where a model came from and where each domain stands: ``formerflow lineage`` and ``formerflow status``.

Pure functions that gather the facts from the MLflow store, dvc.lock and ``dvc status`` and
return them as data (:func:`lineage`, :func:`status`, :func:`uncommitted_stages`), and
formatters that turn them into text (:func:`format_lineage`, :func:`format_status`); the
command line (:mod:`tasks.__main__`) only prints them.

The chain of a model version::

    formerflow-netflow v3 -> register run (and its pipeline run) -> resolved params (hash + artifact)
      -> processed data (DVC md5) -> raw data (DVC md5) and source URL -> git commit (dirty or not)

Every data hash is DVC's (:func:`tasks.tracking.dvc_md5`): the ``md5`` dvc.lock records for the
output and the name of its object in the DVC cache, so ``dvc`` finds the exact data of a version.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tasks import store, tracking
from tasks.params import params_diff, tracked_params
from tasks.params_base import STAGES

if TYPE_CHECKING:
    from tasks.params import Params

ALIASES = ("champion", "candidate")


# ----------------------------------------------------------------------------- params DVC does not know
def uncommitted_stages(effective: dict[str, Any], base: dict[str, Any], domains: list[str],
                       root: Path | None = None) -> dict[str, str]:
    """The stages a run with ``effective`` params must not ``dvc commit``, each with the reason.

    ``base`` is params.yaml alone (validated, as dict). DVC records params.yaml's values for a committed
    stage; a stage whose tracked keys (:func:`tracked_params`) differ between the two was produced by other
    params, and so were the later stages of its domain (they read its outputs). A domain that
    ``pipeline.domains`` of params.yaml does not list has no stages in dvc.yaml's foreach.

    Returns:
        ``{"train@netflow": "train.netflow.epochs: params.yaml 2, this run 1", "compress@netflow": "after
        train@netflow", ...}``, in pipeline order; empty when every stage ran on params.yaml's values.
    """
    out: dict[str, str] = {}
    listed = (base.get("pipeline") or {}).get("domains") or []
    for domain in domains:
        if domain not in listed:
            for stage in STAGES:
                out[f"{stage}@{domain}"] = "not a stage of dvc.yaml: pipeline.domains of params.yaml does not list it"
            continue
        first = None
        for stage in STAGES:
            target = f"{stage}@{domain}"
            if first is not None:
                out[target] = f"after {first}"
                continue
            diff = params_diff(effective, base, tracked_params(stage, domain, root))
            if diff:
                first = target
                out[target] = "; ".join(diff[:5]) + (f"; and {len(diff) - 5} more" if len(diff) > 5 else "")
    return out


# ----------------------------------------------------------------------------- dvc.lock and dvc status
def lock_outs(root: Path | None = None) -> dict[str, str]:
    """``{output path: md5}`` of every output dvc.lock records (empty without a dvc.lock)."""
    path = (root or store.project_root()) / "dvc.lock"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return {out["path"]: out.get("md5", "") for stage in (data.get("stages") or {}).values()
            for out in stage.get("outs") or [] if "path" in out}


def dvc_executable() -> str | None:
    """The ``dvc`` command: on PATH, or beside this Python (the project's venv)."""
    found = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    return found if Path(found).exists() else None


def dvc_status(root: Path | None = None) -> dict[str, list[str]] | str:
    """What ``dvc status`` reports, as ``{stage: [what changed, ...]}`` (empty: up to date).

    Returns a string saying why instead when there is no DVC repository, no dvc or ``dvc status`` fails.
    """
    root = root or store.project_root()
    dvc = dvc_executable()
    if not (root / ".dvc").is_dir() or not (root / "dvc.yaml").exists() or dvc is None:
        return "no DVC repository (or dvc not installed)"
    proc = subprocess.run([dvc, "status", "--json"], cwd=root, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return f"dvc status failed: {proc.stderr.strip()[-300:]}"
    text = proc.stdout.strip()
    data = json.loads(text[text.index("{"):]) if "{" in text else {}
    locked = set(((yaml.safe_load((root / "dvc.lock").read_text()) or {}).get("stages") or {})
                 if (root / "dvc.lock").exists() else set())
    # A stage dvc.lock does not record has every dep "modified": that it was never recorded is the news.
    return {stage: [_describe(item) for item in items] if stage in locked else ["not recorded in dvc.lock"]
            for stage, items in data.items()}


def _describe(item: Any, most: int = 4) -> str:
    """One entry of ``dvc status --json`` as text: ``changed outs: artifacts/netflow/teacher (modified)``."""
    if not isinstance(item, dict):
        return str(item)
    parts = []
    for kind, what in item.items():
        if isinstance(what, dict):
            flat = []
            for path, state in what.items():
                if isinstance(state, dict):  # params: {params.yaml: {key: modified}}
                    flat += [f"{k} ({v})" for k, v in state.items()]
                else:
                    flat.append(f"{path} ({state})")
            more = f", and {len(flat) - most} more" if len(flat) > most else ""
            parts.append(f"{kind}: {', '.join(flat[:most])}{more}")
        else:
            parts.append(f"{kind}: {what}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- lineage of a version
@dataclass
class DataLink:
    """One data folder of the chain: its DVC md5, what dvc.lock records for it, and whether DVC's cache has it."""

    path: str
    md5: str | None
    lock_md5: str | None
    in_cache: bool


@dataclass
class Lineage:
    """Where one model version came from (see the module docstring for the chain)."""

    registered_model: str
    version: str
    aliases: list[str]
    model: str | None
    metric: tuple[str, float | None] | None
    run_id: str
    run_name: str | None
    run_status: str | None
    run_start: str | None
    parent_run_id: str | None
    params_hash: str | None
    params_artifact: str | None
    processed: DataLink
    raw: DataLink
    sources: dict[str, str]
    git_commit: str | None
    git_dirty: str | None
    tags: dict[str, str] = field(repr=False, default_factory=dict)


def parse_target(target: str) -> tuple[str, str | None, str | None]:
    """``netflow`` / ``netflow@candidate`` / ``netflow/3`` -> (domain, alias, version); alias champion by default.

    Raises:
        ValueError: not of those forms.
    """
    m = re.fullmatch(r"([A-Za-z0-9_]+)(?:@([A-Za-z0-9_-]+)|/(\d+))?", target)
    if m is None:
        raise ValueError(f"{target!r}: expected <domain>, <domain>@<alias> or <domain>/<version>")
    domain, alias, version = m.groups()
    return domain, alias if alias or version else "champion", version


def _time(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def version_metric(tags: dict[str, str], run: Any, primary: str | None) -> tuple[str, float | None] | None:
    """The version's value of ``primary``: its tag ``metric.<primary>``, else its run's metric."""
    if not primary:
        return None
    if f"metric.{primary}" in tags:
        return primary, float(tags[f"metric.{primary}"])
    metrics = run.data.metrics if run is not None else {}
    for key in (f"candidate.{primary}", primary):
        if key in metrics:
            return primary, float(metrics[key])
    return primary, None


def lineage(target: str, primary_metric: str | None = None, root: Path | None = None) -> Lineage:
    """The chain of the model version ``target`` names (:func:`parse_target`).

    Raises:
        LookupError: no such registered model, alias or version (the message names it).
    """
    from mlflow.exceptions import MlflowException  # lazy: mlflow is slow to import

    root = root or store.project_root()
    domain, alias, version = parse_target(target)
    name = tracking.registered_model_name(domain)
    c = tracking.client()
    try:
        mv = c.get_model_version(name, version) if version else c.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        what = f"version {version}" if version else f"alias @{alias}"
        raise LookupError(f"{name} has no {what} in {store.redact_url(tracking.tracking_uri())} "
                          f"({exc.error_code}): run the pipeline first") from None
    tags = dict(mv.tags or {})
    run = None
    try:
        run = c.get_run(mv.run_id) if mv.run_id else None
    except MlflowException:
        pass
    rtags = dict(run.data.tags) if run is not None else {}

    def tag(key: str) -> str | None:
        return tags.get(key) or rtags.get(key)

    locked = lock_outs(root)
    paths = store.domain_paths(domain, root)

    def link(folder: Path, key: str) -> DataLink:
        rel = folder.relative_to(paths.root).as_posix()
        md5 = tag(key)
        return DataLink(rel, md5, locked.get(rel), bool(md5) and tracking.dvc_cache_path(md5, root).exists())

    params_hash = tag("params.hash")
    commit = tag("git.commit")
    dirty = tag("git.dirty") or (None if commit is None else str(commit.endswith("-dirty")).lower())
    return Lineage(
        registered_model=name, version=str(mv.version), aliases=sorted(getattr(mv, "aliases", []) or []),
        model=tags.get("model"), metric=version_metric(tags, run, primary_metric), run_id=mv.run_id,
        run_name=run.info.run_name if run else None, run_status=run.info.status if run else None,
        run_start=_time(run.info.start_time) if run else None, parent_run_id=rtags.get("mlflow.parentRunId"),
        params_hash=params_hash,
        params_artifact=f"{run.info.artifact_uri}/{tracking.RESOLVED_PARAMS}" if run and params_hash else None,
        processed=link(paths.processed, "data.processed.md5"), raw=link(paths.raw, "data.raw.md5"),
        sources={k.removeprefix("data."): store.redact(v) for k, v in tags.items()
                 if k in ("data.source", "data.labels", "data.metadata")},
        git_commit=commit.removesuffix("-dirty") if commit else None, git_dirty=dirty, tags=tags)


def _data_line(label: str, d: DataLink) -> str:
    if not d.md5:
        return f"{label:<10} {d.path}: no hash recorded (registered before lineage tags were DVC's)"
    if d.lock_md5 is None:
        lock = "not in dvc.lock"
    elif d.lock_md5 == d.md5:
        lock = "dvc.lock: same"
    else:
        lock = f"dvc.lock now records {d.lock_md5}"
    return f"{label:<10} {d.path} md5 {d.md5} ({lock}; DVC cache: {'has it' if d.in_cache else 'does not have it'})"


def format_lineage(li: Lineage) -> str:
    """The chain as text, one link a line."""
    aliases = f" @{', @'.join(li.aliases)}" if li.aliases else ""
    metric = ""
    if li.metric is not None:
        value = "n/a" if li.metric[1] is None else f"{li.metric[1]:.4f}"
        metric = f", {li.metric[0]} {value}"
    run = f"{li.run_id} ({li.run_name or '?'}, {li.run_status or '?'}, started {li.run_start or '?'})"
    if li.parent_run_id:
        run += f", in pipeline run {li.parent_run_id}"
    params = (f"hash {li.params_hash}, artifact {li.params_artifact}" if li.params_hash
              else "not recorded (registered before runs stored their resolved params)")
    sources = ", ".join(f"{k} {v}" for k, v in li.sources.items()) or "not recorded"
    dirty = {"true": "yes", "false": "no"}.get(li.git_dirty or "", li.git_dirty or "unknown")
    return "\n".join([
        f"model      {li.registered_model} v{li.version}{aliases} ({li.model or '?'}{metric})",
        f"run        {run}",
        f"params     {params}",
        _data_line("processed", li.processed),
        _data_line("raw", li.raw),
        f"source     {sources}",
        f"code       git {li.git_commit or 'unknown'} (dirty: {dirty})",
    ])


# ----------------------------------------------------------------------------- status of the domains
@dataclass
class VersionSummary:
    version: str
    model: str | None
    metric: tuple[str, float | None] | None
    created: str | None


@dataclass
class DomainStatus:
    """Where one domain stands: stale DVC stages, champion and candidate, the last MLflow run."""

    domain: str
    stale: dict[str, list[str]] | None
    dvc_note: str | None
    versions: dict[str, VersionSummary | None]
    last_run: str | None


def _version_summary(c: Any, name: str, alias: str, primary: str | None) -> VersionSummary | None:
    from mlflow.exceptions import MlflowException  # lazy: mlflow is slow to import

    try:
        mv = c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    tags = dict(mv.tags or {})
    run = None
    if f"metric.{primary}" not in tags and mv.run_id:
        try:
            run = c.get_run(mv.run_id)
        except MlflowException:
            pass
    return VersionSummary(str(mv.version), tags.get("model"), version_metric(tags, run, primary),
                          _time(mv.creation_timestamp))


def _last_run(c: Any, domain: str) -> str | None:
    exp = c.get_experiment_by_name(tracking.experiment_name(domain))
    if exp is None:
        return None
    runs = c.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None
    r = runs[0]
    return f"{_time(r.info.start_time)} ({r.info.run_name}, {r.info.status})"


def status(params: Params, domains: list[str] | None = None, root: Path | None = None) -> list[DomainStatus]:
    """Per domain (default ``pipeline.domains``): stale stages as ``dvc status`` sees them, the champion and
    candidate with their primary metric (``register.<domain>.primary_metric``), the last run's start time."""
    root = root or store.project_root()
    domains = domains or list(params.pipeline.domains)
    dvc = dvc_status(root)
    c = tracking.client()
    out = []
    for domain in domains:
        primary = params.section("register", domain).primary_metric
        name = tracking.registered_model_name(domain)
        stale = None if isinstance(dvc, str) else {s: w for s, w in dvc.items() if s.endswith(f"@{domain}")}
        out.append(DomainStatus(domain, stale, dvc if isinstance(dvc, str) else None,
                                {a: _version_summary(c, name, a, primary) for a in ALIASES}, _last_run(c, domain)))
    return out


def format_status(statuses: list[DomainStatus]) -> str:
    """One block per domain."""
    blocks = []
    for st in statuses:
        lines = [st.domain]
        if st.stale is None:
            lines.append(f"  dvc        {st.dvc_note}")
        elif not st.stale:
            lines.append("  dvc        up to date")
        else:
            lines.append(f"  dvc        {len(st.stale)} stale: " + ", ".join(st.stale))
            lines += [f"               {s}: {'; '.join(w)}" for s, w in st.stale.items()]
        for alias, v in st.versions.items():
            if v is None:
                lines.append(f"  {alias:<10} none")
                continue
            metric = ""
            if v.metric is not None:
                metric = f" {v.metric[0]} {'n/a' if v.metric[1] is None else f'{v.metric[1]:.4f}'}"
            lines.append(f"  {alias:<10} v{v.version} ({v.model or '?'}){metric}, registered {v.created}")
        lines.append(f"  last run   {st.last_run or 'none'}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
