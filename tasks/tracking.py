"""MLflow tracking and registry, always through ``MlflowClient`` with explicit run ids.

The fluent ``mlflow.start_run`` API keeps the active run in thread-local state,
which is unsafe across Prefect's worker threads; every call here names its run.

Defaults: tracking store ``sqlite:///<project>/mlflow.db`` and artifacts in
``<project>/mlartifacts`` (``FORMERFLOW_MLARTIFACTS`` moves them). ``MLFLOW_TRACKING_URI`` points everything
at a server instead, with no code change: with ``http://<host>:<port>`` (``tools/mlflow_server.py``: PostgreSQL
behind ``mlflow server --serve-artifacts``) the server places every artifact (``mlflow-artifacts:/`` locations,
stored where its ``--artifacts-destination`` says, an S3 bucket for instance) and this process reads and writes
them over HTTP; it needs no database driver and no object-store credentials. A database URI without a server
(``postgresql+psycopg://...``) keeps the artifacts in ``<project>/mlartifacts`` like the sqlite default.

The local store moves with the project: MLflow records absolute artifact locations (it
resolves a relative one when it stores it), so when this project's ``mlflow.db`` was copied
or moved here from another folder, :func:`relocate_store` rewrites the locations that point
into the old project folder to this one before the store is used (:func:`client`). A copy
then loads its own models and writes its own runs, never the original's.

Run layout: one experiment per domain (``formerflow-<domain>``), one parent run
per pipeline run and one child run per stage. A stage called on its own (by DVC
through the CLI) opens a top-level run unless ``FORMERFLOW_PARENT_RUN_ID`` names
a parent. Every run carries the lineage tags of :func:`lineage_tags`; their data hashes are the
ones DVC records in dvc.lock (:func:`dvc_md5`), and every run stores its resolved params as an
artifact with their hash as a tag (:func:`log_resolved_params`).

Every param and tag value is logged with its URLs redacted (:func:`tasks.store.redact`):
credentials in a source URL (``user:password@``, ``?X-Amz-Signature=...``) never reach the
tracking store.

mlflow is imported inside the functions that use it (``# lazy``): importing it costs about
1.5 s, and the command line imports this module to answer ``--help``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tasks import logs
from tasks.params_base import params_hash
from tasks.store import lock, project_root, redact

_log = logging.getLogger(__name__)
# Artifact downloads (a registered model loaded for scoring or evaluation) draw a bar per download; not in logs.
logs.silence_progress_bars()

PARENT_ENV = "FORMERFLOW_PARENT_RUN_ID"
FLOW_RUN_ENV = "FORMERFLOW_FLOW_RUN_ID"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def artifact_root() -> Path:
    return Path(os.environ.get("FORMERFLOW_MLARTIFACTS") or project_root() / "mlartifacts")


def experiment_name(domain: str) -> str:
    return f"formerflow-{domain}"


def registered_model_name(domain: str) -> str:
    return f"formerflow-{domain}"


STORE_LOCK = "mlflow-store"
STORE_LOCK_TIMEOUT_S = 300.0
"""How long a process waits for another one creating the sqlite store (a migration takes seconds, more under load)."""
_opened: set[str] = set()  # sqlite stores this process has opened (created and migrated) under the lock


def client():
    """An ``MlflowClient`` on the configured tracking and registry URI.

    The first time a process opens a sqlite store, it does so holding the ``mlflow-store``
    lock (:func:`tasks.store.lock`, beside the database file): MLflow creates a missing
    database by running its alembic migrations, and two processes doing that at once (a
    stage CLI while a flow starts) fail with ``table _alembic_tmp_... already exists``. Under
    the lock the first process creates and migrates the store, the others wait and find it
    made. MLflow keeps the opened stores for the life of the process, so later calls skip it.
    A project's own store that was copied or moved is relocated first (:func:`relocate_store`), under
    the same lock, so two processes never rewrite it at once.
    """
    from mlflow.tracking import MlflowClient  # lazy: mlflow is slow to import

    uri = tracking_uri()
    db = _sqlite_file(uri)
    if db is None or uri in _opened:
        relocate_store()  # a no-op for a server store, and once per process for the project's own
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    with lock(STORE_LOCK, what=f"open the MLflow store {db}", root=db.parent, timeout_s=STORE_LOCK_TIMEOUT_S):
        relocate_store()
        c = MlflowClient(tracking_uri=uri, registry_uri=uri)  # opens (creates, migrates) the tracking store
        c.search_registered_models(max_results=1)  # and the registry's, which checks the same tables
        _opened.add(uri)
    return c


def _sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` URI (None for another store or an in-memory database)."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url  # lazy: only a sqlite store needs it

    database = make_url(uri).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).resolve()


# ----------------------------------------------------------------------------- a store that moved
LOCATION_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                    ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
                    ("model_versions", "source"))
"""The columns of MLflow's sqlite schema that hold absolute artifact locations."""
_relocated: set[tuple[str, str]] = set()


def local_store_file() -> Path | None:
    """The sqlite file of the tracking URI when it is this project's own store (``<project>/mlflow.db``), else None."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(urllib.parse.unquote(uri.removeprefix("sqlite:///")).split("?", 1)[0])
    path = path.resolve()  # a relative sqlite path is relative to the working directory, as for SQLAlchemy
    return path if path == project_root() / "mlflow.db" else None


def _path_of(location: str) -> str:
    """The local path of an artifact location (a ``file://`` URI or a plain absolute path)."""
    if location.startswith("file:"):
        return urllib.parse.unquote(urllib.parse.urlparse(location).path)
    return location


def relocate_store() -> dict[str, int]:
    """Point the artifact locations of a copied or moved project store at this project folder.

    MLflow stores each experiment's, run's, logged model's and model version's artifact location as an
    absolute path (it resolves relative ones); a project folder copied elsewhere would load its models from
    the original folder and write its new runs there. When this project's own store (``<project>/mlflow.db``
    with artifacts in ``<project>/mlartifacts``, the default) holds a formerflow experiment whose location is
    ``<other folder>/mlartifacts/<domain>``, the store was made in ``<other folder>``: every location under
    that folder (``file://`` URI or plain path) is rewritten to the same place under this project, in one
    sqlite transaction. A store elsewhere (a server, ``MLFLOW_TRACKING_URI`` naming another file) or artifacts
    elsewhere (``FORMERFLOW_MLARTIFACTS``) are left as they are. Checked once per process and project.

    Returns:
        The old project folders found, each with the number of locations rewritten ({} when nothing moved).
    """
    db = local_store_file()
    root = project_root()
    key = (str(db), str(root))
    if db is None or key in _relocated or not db.is_file() or os.environ.get("FORMERFLOW_MLARTIFACTS"):
        return {}
    moved: dict[str, int] = {}
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as con:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables:  # a store MLflow has not created yet
            return {}
        old_roots = set()
        for name, location in con.execute("SELECT name, artifact_location FROM experiments WHERE name LIKE 'formerflow-%'"):
            parts = Path(_path_of(location or ""))
            if parts.is_absolute() and parts.parent.name == "mlartifacts" and parts.name == name.removeprefix("formerflow-"):
                old = parts.parent.parent
                if old != root:
                    old_roots.add(old)
        with con:  # one transaction: a reader sees the store before or after, never half of it
            for old in sorted(old_roots):
                count = 0
                for old_prefix, new_prefix in ((old.as_uri() + "/", root.as_uri() + "/"), (f"{old}/", f"{root}/")):
                    for table, column in LOCATION_COLUMNS:
                        if table in tables:
                            count += con.execute(
                                f"UPDATE {table} SET {column} = ? || substr({column}, ?) "  # noqa: S608 (names above)
                                f"WHERE substr({column}, 1, ?) = ?",
                                (new_prefix, len(old_prefix) + 1, len(old_prefix), old_prefix)).rowcount
                moved[str(old)] = count
    _relocated.add(key)
    for old, count in moved.items():
        print(f"{db}: this MLflow store was made in {old}; {count} artifact locations now point into {root}",
              file=sys.stderr)
    return moved


def server_store(uri: str | None = None) -> bool:
    """Whether the tracking URI (default :func:`tracking_uri`) is a tracking server, which places artifacts itself.

    An ``http(s)://`` server (``mlflow server``, ``tools/mlflow_server.py``) or a Databricks workspace decides
    where a new experiment's artifacts go (``mlflow-artifacts:/<id>`` when it serves them), and clients
    read and write them through it. Any other store is a database the client opens itself (sqlite, or
    ``postgresql+psycopg://...`` without a server), whose artifacts the client writes where the experiment says.
    """
    scheme = urllib.parse.urlparse(uri or tracking_uri()).scheme.lower()
    return scheme in ("http", "https") or scheme.startswith("databricks")


def experiment_id(domain: str) -> str:
    """Get or create the domain's experiment.

    For a store the client writes itself (sqlite, a database URI), its artifacts go to
    ``<artifact_root>/<domain>`` (MLflow's own default would be ``./mlruns`` in whatever folder the process
    runs in); a tracking server (:func:`server_store`) chooses their location.
    """
    c = client()
    name = experiment_name(domain)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None if server_store() else (artifact_root() / domain).resolve().as_uri()
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another stage
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


GENERATED = ("data/", "artifacts/", "reports/", "checkpoints/", "mlruns/", "mlartifacts/", "mlflow.db", ".tmp/",
             ".prefect/", ".locks/", ".sweeps/", "dvc.lock", "dvc_plots/")
"""Paths a run writes itself: changes there do not make the project's code "dirty" (:func:`git_state`).

``dvc.lock`` is one of them: every ``dvc repro`` and Prefect run rewrites it (``make run`` ends with ``dvc
commit``), so counting it would call the tree dirty after every run of a project that commits its dvc.lock,
and the next run's lineage would say so for code that did not change. What it records (the data's hashes) each
run tags itself (``input.*.md5``, :func:`dvc_md5`)."""


@dataclass(frozen=True)
class GitState:
    """The project's git commit and the files that make its work tree differ from it.

    Attributes:
        commit: ``git rev-parse HEAD``, or ``unknown`` (not a git work tree, no git, no commit yet).
        changed: Tracked files changed and untracked files git does not ignore, outside :data:`GENERATED`
            (a folder of untracked files as one ``folder/`` entry, as ``git status`` lists it), in git's
            order; None when unknown.
    """

    commit: str
    changed: tuple[str, ...] | None

    @property
    def dirty(self) -> bool | None:
        """Whether the tree differs from the commit (None: unknown)."""
        return None if self.changed is None else bool(self.changed)

    def describe(self, most: int = 3) -> str:
        """``no``, ``yes (<n> file(s): a, b, c, ...)`` (the first ``most`` named) or ``unknown``."""
        if self.changed is None:
            return "unknown"
        if not self.changed:
            return "no"
        more = ", ..." if len(self.changed) > most else ""
        return f"yes ({len(self.changed)} file(s): {', '.join(self.changed[:most])}{more})"


def git_state(root: Path | None = None) -> GitState:
    """The commit of the project at ``root`` (default: the project root) and what differs from it.

    The one "dirty" rule of formerflow: the lineage tags of every MLflow run (:func:`git_commit`,
    ``git.dirty``) and the header of every report (:func:`tasks.evaluate.git_state`) both read it, so they
    agree on one tree. Changes to tracked files and untracked files that git does not ignore count; what
    a run writes (:data:`GENERATED`) does not.
    """
    root = root or project_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "-z", "--untracked-files=normal"], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return GitState("unknown", None)
    # Porcelain v1 with -z: "XY <path>" entries separated by NULs, paths unquoted; a rename or copy
    # ("R"/"C" in the index column) is followed by one more entry, the path it came from.
    changed, entries = [], iter(status.split("\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        if entry[0] in "RC":
            next(entries, None)
        if not entry[3:].startswith(GENERATED):
            changed.append(entry[3:])
    return GitState(commit, tuple(changed))


def git_commit(root: Path | None = None) -> str:
    """The current git commit (with ``-dirty`` when :func:`git_state` finds changes), or ``unknown``."""
    state = git_state(root)
    if state.dirty is None:
        return "unknown"
    return f"{state.commit}-dirty" if state.dirty else state.commit


def lineage_tags(input_hashes: Mapping[str, str] | None = None, flow_run_id: str | None = None) -> dict[str, str]:
    """Tags every run carries: git commit and whether the tree was dirty, input hashes, Prefect flow-run id.

    ``input_hashes`` should be :func:`dvc_md5` values, the hashes dvc.lock records.
    """
    commit = git_commit()
    tags = {
        "git.commit": commit,
        "git.dirty": "unknown" if commit == "unknown" else str(commit.endswith("-dirty")).lower(),
        "prefect.flow_run_id": flow_run_id or os.environ.get(FLOW_RUN_ENV) or "none",
    }
    for name, value in (input_hashes or {}).items():
        tags[f"input.{name}.md5"] = value
    return tags


def dvc_md5(path: str | Path) -> str:
    """The hash DVC records in dvc.lock for ``path``, computed by DVC's own code (``dvc_data``), DVC not run.

    A file's md5, or a folder's ``<md5>.dir`` (the md5 of DVC's JSON listing of the folder's files
    and their md5s), with the project's ``.dvcignore`` applied as DVC applies it. This is the value
    every lineage tag holds (``input.*.md5``, ``output.*.md5``, a version's ``data.processed.md5``
    and ``data.raw.md5``), so ``dvc`` finds the exact data of a run or model version: it is the
    ``md5`` of the output in dvc.lock and the name of the object in the DVC cache
    (:func:`dvc_cache_path`). Returns ``"missing"`` when ``path`` does not exist.
    """
    path = Path(path).resolve()
    if not path.exists():
        return "missing"
    from dvc.fs import LocalFileSystem  # lazy: DVC is slow to import
    from dvc_data.hashfile.build import build  # lazy
    from dvc_data.hashfile.db import HashFileDB  # lazy

    root = project_root()
    fs = LocalFileSystem()
    ignore = None
    if (root / ".dvc").is_dir() and path.is_relative_to(root):
        from dvc.ignore import DvcIgnoreFilter  # lazy

        ignore = DvcIgnoreFilter(fs, str(root))  # what Repo.dvcignore is for DVC's outputs
    # dry_run: hash only; the odb is never written (it names the in-memory staging area DVC builds in).
    odb = HashFileDB(fs, str(root / ".dvc" / "cache" / "files" / "md5"))
    _, _, obj = build(odb, str(path), fs, "md5", ignore=ignore, dry_run=True)
    return str(obj.hash_info.value)


def dvc_cache_path(md5: str, root: Path | None = None) -> Path:
    """Where DVC 3 keeps the object ``md5`` (a :func:`dvc_md5` value) in the project's local cache."""
    return (root or project_root()) / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


@dataclass
class StageRun:
    """A handle on one MLflow run; every call is explicit about the run id."""

    run_id: str
    experiment_id: str
    _client: Any = field(repr=False)

    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        flat = _flatten(params, prefix)
        from mlflow.entities import Param  # lazy: mlflow is slow to import

        items = [Param(k[:250], redact(str(v))[:6000]) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None, model_id: str | None = None) -> None:
        """Log the finite numbers of ``metrics`` (nested keys joined by ``.``); with ``model_id`` they are the
        metrics of that logged model too (MLflow 3: shown, sorted and compared on the experiment's Models tab)."""
        from mlflow.entities import Metric  # lazy: mlflow is slow to import

        now = int(time.time() * 1000)
        items = [
            Metric(metric_name(k), float(v), now, step or 0, model_id=model_id)
            for k, v in _flatten(metrics).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        for i in range(0, len(items), 500):
            self._client.log_batch(self.run_id, metrics=items[i : i + 500])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag  # lazy: mlflow is slow to import

        items = [RunTag(k, redact(str(v))) for k, v in tags.items()]
        if items:
            self._client.log_batch(self.run_id, tags=items)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self._client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.exists():
            self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_datasets(self, datasets: Mapping[str, tuple[Path, str]], context: str) -> None:
        """Record data folders as the run's dataset inputs (``mlflow.log_input``; the run's Datasets column).

        Args:
            datasets: Input name (``processed``) -> (the folder, its content hash). The dataset is named
                ``<domain>-<input name>``, its source is the folder's path relative to the project (portable
                with the project; redacted) and its digest the hash lineage tags and DVC record.
            context: What the run does with the data (``training``, ``evaluation``), MLflow's input context.
        """
        from mlflow.entities import Dataset, DatasetInput, InputTag  # lazy: mlflow is slow to import

        domain = self._client.get_run(self.run_id).data.tags.get("formerflow.domain", "formerflow")
        root = project_root()
        inputs = []
        for name, (path, digest) in datasets.items():
            path = Path(path)
            try:
                shown = path.resolve().relative_to(root).as_posix()
            except ValueError:  # data outside the project: its own path
                shown = str(path)
            files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path] if path.is_file() else []
            profile = {"files": len(files), "bytes": sum(f.stat().st_size for f in files)}
            ds = Dataset(name=f"{domain}-{name}", digest=digest[:36], source_type="local",
                         source=json.dumps({"uri": redact(shown)}), profile=json.dumps(profile))
            inputs.append(DatasetInput(ds, [InputTag("mlflow.data.context", context),
                                            InputTag("formerflow.dvc_md5", digest)]))
        if inputs:
            self._client.log_inputs(self.run_id, datasets=inputs)

    @property
    def artifact_uri(self) -> str:
        return self._client.get_run(self.run_id).info.artifact_uri


def metric_name(key: str) -> str:
    """An MLflow-safe metric name: characters MLflow refuses (``+`` of a method chain) become ``-``."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "-", key)[:250]


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


@contextlib.contextmanager
def start_run(
    domain: str,
    name: str,
    *,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[StageRun]:
    """Open an MLflow run (a child of ``parent_run_id`` or ``$FORMERFLOW_PARENT_RUN_ID`` if given).

    The run ends FINISHED on success and FAILED (re-raising) on an exception. The project's log lines
    (INFO and above) written inside the block, by this thread's code, are stored with it as the text
    artifact ``logs/<name>.log`` (:func:`tasks.logs.capture`): the epoch lines of a training, for instance.
    """
    from mlflow.utils.mlflow_tags import (  # lazy: mlflow is slow to import
        MLFLOW_PARENT_RUN_ID,
        MLFLOW_RUN_NAME,
    )

    c = client()
    exp = experiment_id(domain)
    parent = parent_run_id or os.environ.get(PARENT_ENV)
    all_tags = {MLFLOW_RUN_NAME: name, "formerflow.domain": domain, **lineage_tags(), **(tags or {})}
    if parent:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent
    run = c.create_run(exp, run_name=name, tags={k: redact(str(v)) for k, v in all_tags.items()})
    handle = StageRun(run.info.run_id, exp, c)
    with logs.capture() as lines:
        try:
            yield handle
        except BaseException:
            _log_lines(c, run.info.run_id, name, lines)  # the lines up to the failure: what a reader needs
            c.set_terminated(run.info.run_id, status="FAILED")
            raise
    _log_lines(c, run.info.run_id, name, lines)
    c.set_terminated(run.info.run_id, status="FINISHED")


LOG_ARTIFACT_DIR = "logs"
"""Where a run keeps the log lines its stage wrote (``logs/<run name>.log``, :func:`start_run`)."""


def _log_lines(c, run_id: str, name: str, lines: list[str]) -> None:
    """Store a run's captured log lines as its text artifact (nothing when there are none).

    Redacted like every other value this module logs: a line may quote a source URL.
    """
    if not lines:
        return
    file = re.sub(r"[^A-Za-z0-9_.-]", "-", name) or "run"
    try:
        c.log_text(run_id, redact("\n".join(lines)) + "\n", f"{LOG_ARTIFACT_DIR}/{file}.log")
    except Exception as exc:  # noqa: BLE001 - losing the copy of the log must not fail (or mask) the stage
        _log.warning("could not store the log lines of MLflow run %s: %s", run_id, exc)


RESOLVED_PARAMS = "params.resolved.yaml"
"""The artifact of every run holding its resolved params (params.yaml + profiles + ``--set``, validated)."""


def log_resolved_params(run: StageRun, params: Mapping[str, Any]) -> str:
    """Store the resolved params as the run's artifact :data:`RESOLVED_PARAMS` and their hash as tag ``params.hash``.

    URLs are redacted first (:func:`tasks.store.redact`); the hash is of what the artifact holds
    (:func:`tasks.params_base.params_hash` of it), so it can be checked against the artifact.

    Returns:
        The hash.
    """
    data = redact(dict(params))
    digest = params_hash(data)
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / RESOLVED_PARAMS
        file.write_text(f"# params.hash {digest}\n" + yaml.safe_dump(data, sort_keys=True))
        run.log_artifact(file)
    run.set_tags({"params.hash": digest})
    return digest


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    run_id: str
    metrics: dict[str, float]


def get_alias(name: str, alias: str) -> VersionInfo | None:
    """The version behind ``name@alias`` with its recorded metrics, or None if the alias is not set."""
    from mlflow.exceptions import MlflowException  # lazy: mlflow is slow to import

    c = client()
    try:
        mv = c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return VersionInfo(name, str(mv.version), mv.run_id, version_metrics(mv, c))


def version_model_id(mv) -> str | None:
    """The MLflow 3 logged model a model version was registered from (its source ``models:/<model_id>``), or None."""
    model_id = getattr(mv, "model_id", None)  # the sqlite registry does not keep it; the source does
    if model_id:
        return model_id
    m = re.fullmatch(r"models:/(m-[0-9a-f]+)", mv.source or "")
    return m.group(1) if m else None


def version_metrics(mv, c=None) -> dict[str, float]:
    """A model version's metrics, as register logs them: the metrics of its logged model, each at its latest value.

    The values are read from the version's run (the same metrics, logged once for both): MLflow's logged-model
    metric table keeps a NaN as 0.0, which would read as a perfect error. Versions registered before formerflow
    logged metrics kept them as ``metric.<name>`` tags; those are read when the version has no logged model.
    """
    model_id = version_model_id(mv)
    if model_id is None:
        return {k.removeprefix("metric."): float(v) for k, v in (mv.tags or {}).items() if k.startswith("metric.")}
    c = c or client()
    keys = {m.key for m in c.get_logged_model(model_id).metrics or []}
    latest = c.get_run(mv.run_id).data.metrics
    return {k: float(latest[k]) for k in sorted(keys) if k in latest}


@contextlib.contextmanager
def project_uris() -> Iterator[None]:
    """Point MLflow's process-global tracking and registry URIs at this project's store, restoring them after.

    For the few MLflow calls that resolve through global state instead of a client (loading a ``models:/``
    URI, registering a ``models:/<model_id>`` source). ``set_tracking_uri`` / ``set_registry_uri`` also
    export ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI``, where this project reads its store from; the
    variables are put back exactly as they were.
    """
    import mlflow  # lazy: mlflow is slow to import

    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    env_before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_registry_uri(tracking_uri())
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_pyfunc(model_uri: str):
    """``mlflow.pyfunc.load_model`` against this project's store, restoring MLflow's global URIs after.

    ``models:/`` URIs are resolved through the fluent API's process-global
    tracking and registry URIs; setting them only for the duration of the load
    keeps two projects (or two tests) in one process from seeing each other.
    """
    import mlflow.pyfunc  # lazy: mlflow is slow to import

    # A registry URI is resolved with this project's client to the version's artifact location first:
    # MLflow's own resolution goes through process-global state (and the MLFLOW_REGISTRY_URI variable
    # that set_registry_uri exports), which another project or test in the same process may have moved.
    m = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", model_uri)
    if m is not None:
        c = client()
        name, alias, version = m.groups()
        version = version or c.get_model_version_by_alias(name, alias).version
        model_uri = c.get_model_version_download_uri(name, str(version))
    with project_uris():
        return mlflow.pyfunc.load_model(model_uri)
