"""The typed schema of ``params.yaml``, assembled from the domains' sections, and how it is loaded.

``params.yaml`` has a ``pipeline`` section and one section per stage (``ingest``,
``preprocess``, ``train``, ``compress``, ``evaluate``, ``register``, ``score``), each
nested per domain (``train.netflow.lr``). Each domain declares its own sections in
``tasks/domains/<domain>/params.py`` from the shared bases of :mod:`tasks.params_base`;
this module only assembles them (one field per domain under each stage) and loads the
file. Every section forbids unknown keys, so a typo fails at load time with the dotted
path of the key (``train.netflow.lrr: Extra inputs are not permitted``) instead of being
silently ignored.

Profiles are YAML files of overrides in ``profiles/`` (``paper.yaml`` holds the
references' settings); they are deep-merged over ``params.yaml`` in the order given,
then ``key.path=value`` overrides are applied.

Example:
    >>> p = load_params(profiles=["paper"], overrides=["train.netflow.epochs=3"])
    >>> p.train.netflow.epochs
    3
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model

from models.registry import get as get_model
from models.registry import make_config
from tasks import domains
from tasks.params_base import SECTIONS, STAGES, Strict, did_you_mean, model_keys_at, params_hash
from tasks.store import project_root

__all__ = ["DOMAINS", "STAGES", "Params", "ParamsError", "load_params", "params_hash"]

DOMAINS: tuple[str, ...] = domains.names()
"""Every domain package under tasks/domains/ (the schema has one section per domain and stage)."""


class ParamsError(ValueError):
    """A params file, profile or override is invalid; the message names the dotted key path."""


class PipelineParams(Strict):
    domains: list[Literal[DOMAINS]] = Field(default_factory=lambda: list(DOMAINS), min_length=1)  # type: ignore[valid-type]
    """Domains the pipeline runs, in this order (``python -m flows.pipeline``, ``dvc repro``'s foreach)."""
    dvc_commit: bool = True
    """After a Prefect run, record the outputs with ``dvc commit`` so DVC and Prefect share one dvc.lock."""
    parallel_domains: bool = False
    """Run the domains' chains at the same time on the flow's thread pool. Faster on a machine with cores to
    spare, but the domains then share torch's global random generator and thread pool in one process, so the
    numbers are no longer bit-for-bit repeatable; off by default (one domain after another)."""
    task_runner: Literal["threads", "dask"] = "threads"
    """Where the flow's tasks run (docs/operations.md, "Scale out"). ``threads``: this process (the default: no cluster).
    ``dask``: a Dask cluster through prefect-dask (the ``scale`` extra): the domains' stages as Dask tasks, and
    inside a stage the independent fits (the EEG protocol's models x seeds x folds, the compression variants)
    as Dask tasks of the same cluster. Each task runs the same stage or fit function as with threads."""
    address: str | None = None
    """``dask``: the scheduler of a running cluster to join (``tcp://host:8786``); None starts a local cluster
    of :attr:`workers` processes for the run and stops it after."""
    workers: int = Field(2, ge=1)
    """``dask`` without an address: worker processes of the local cluster (one task at a time each; torch
    threads per worker = cores // workers)."""


class ParamsRoot(Strict):
    """Base of the assembled :data:`Params` model."""

    def section(self, stage: str, domain: str) -> BaseModel:
        """The params of one stage for one domain, e.g. ``section("train", "netflow")``."""
        return getattr(getattr(self, stage), domain)


def _stage_schema(stage: str) -> type[Strict]:
    """``<Stage>Params``: one field per domain, typed by that domain's section class."""
    fields: dict[str, Any] = {}
    for name in DOMAINS:
        cls = domains.params_of(name).section(stage)
        fields[name] = (cls, Field(default_factory=cls))
    return create_model(f"{stage.capitalize()}Params", __base__=Strict, **fields)


# "register" is also ABCMeta.register on the class; instances read the field, so the warning is noise.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)
_stages = {stage: _stage_schema(stage) for stage in SECTIONS}
# Named in the module, so pickle finds the generated classes by name: params travel to Dask workers (the
# fan-out of pipeline.task_runner: dask) and to spawned processes as they are.
globals().update({schema.__name__: schema for schema in _stages.values()})
Params = create_model(
    "Params", __base__=ParamsRoot,
    pipeline=(PipelineParams, Field(default_factory=PipelineParams)),
    **{stage: (schema, Field(default_factory=schema)) for stage, schema in _stages.items()},
)
"""The whole params schema: ``pipeline`` + one section per stage, each with one field per domain."""


def deep_merge(base: dict, override: dict) -> dict:
    """Return ``base`` with ``override`` merged in recursively (override wins; lists are replaced).

    Mappings whose key ends in ``_map`` (``event_map``, ``label_map``) are lookup tables, not
    settings: they are replaced whole, so a profile's table does not inherit the default's entries.
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not str(key).endswith("_map"):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict:
    """Turn ``"train.netflow.lr=3e-4"`` into ``{"train": {"netflow": {"lr": 0.0003}}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ParamsError(f"override {text!r} is not of the form key.path=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ParamsError(f"override {text!r} has an empty key")
    value: Any = yaml.safe_load(raw) if raw.strip() else ""
    for part in reversed(parts):
        value = {part: value}
    return value


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def profile_path(name: str, root: Path) -> Path:
    """A profile is ``profiles/<name>.yaml`` under the project root, or a path to a YAML file."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate
    return root / "profiles" / f"{name}.yaml"


def format_validation_error(exc: ValidationError, source: str, model: Any = None) -> str:
    """One line per problem: ``<source>: train.netflow.lr: Input should be greater than 0 (got -1)``.

    An unknown key names the nearest known one when ``model`` (the validated class; default :class:`Params`)
    has one close to it: ``train.netflow.epoch: Extra inputs are not permitted (did you mean 'epochs'?)``.
    """
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "<root>"
        got = f" (got {err['input']!r})" if err["type"] != "extra_forbidden" and "input" in err else ""
        if err["type"] == "extra_forbidden" and err["loc"]:
            keys = model_keys_at(model if model is not None else Params, tuple(err["loc"][:-1]))
            got = did_you_mean(err["loc"][-1], keys) if keys else ""
        lines.append(f"{source}: {path}: {err['msg']}{got}")
    return "\n".join(lines)


@contextlib.contextmanager
def announce_profiles(profiles: list[str] | None) -> Iterator[None]:
    """While the block runs, a command line's ``--profile`` names are ``$FORMERFLOW_PROFILE`` of this process (and
    of the stages it runs), so a report header names them; the variable is restored afterwards. Nothing changes
    when none is given (an exported value stays)."""
    if not profiles:
        yield
        return
    before = os.environ.get("FORMERFLOW_PROFILE")
    os.environ["FORMERFLOW_PROFILE"] = ",".join(p.strip() for p in profiles)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FORMERFLOW_PROFILE", None)
        else:
            os.environ["FORMERFLOW_PROFILE"] = before


def load_params(
    path: str | Path | None = None,
    profiles: list[str] | tuple[str, ...] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Params:
    """Load, merge and validate the params.

    Args:
        path: The params file; defaults to ``<project root>/params.yaml``.
        profiles: Profile names or YAML paths merged in order; defaults to the
            comma-separated ``FORMERFLOW_PROFILE`` environment variable.
        overrides: ``key.path=value`` strings applied last.

    Returns:
        The validated params.

    Raises:
        ParamsError: A file is missing or invalid, or a key/value fails
            validation; the message names each dotted key path.
    """
    root = project_root()
    path = Path(path) if path is not None else root / "params.yaml"
    data = _read_yaml(path)
    sources = [str(path)]
    if profiles is None:
        profiles = [p for p in os.environ.get("FORMERFLOW_PROFILE", "").split(",") if p.strip()]
    for name in profiles:
        ppath = profile_path(name.strip(), root)
        if not ppath.exists():
            known = sorted(str(p.relative_to(root / "profiles").with_suffix(""))
                           for p in (root / "profiles").rglob("*.yaml"))
            raise ParamsError(f"profile {name.strip()!r} not found: no {ppath}{did_you_mean(name.strip(), known)}; "
                              f"profiles: {', '.join(known) or 'none'}")
        data = deep_merge(data, _read_yaml(ppath))
        sources.append(str(ppath))
    for text in overrides:
        data = deep_merge(data, parse_override(text))
    if overrides:
        sources.append("overrides")
    try:
        params = Params.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(format_validation_error(exc, " + ".join(sources))) from None
    check_model_configs(params, " + ".join(sources))
    return params


def check_model_configs(params: Params, source: str = "params") -> None:
    """Validate every model config of ``train.<domain>`` against the model registry at load time.

    A model config is free-form in the schema (each architecture has its own dataclass), so it
    is checked by building that dataclass: an unknown architecture, field or value fails here,
    naming its dotted path. The train section says which configs it holds (``model_specs``).
    """
    for domain in DOMAINS:
        for where, (arch, config) in params.section("train", domain).model_specs().items():
            key, path = f"{domain}/{arch}", f"train.{domain}.{where}"
            try:
                get_model(key)
            except KeyError as exc:
                raise ParamsError(f"{source}: {path}{'.arch' if where == 'model' else ''}: {exc.args[0]}") from None
            try:
                make_config(key, config)
            except (TypeError, ValueError) as exc:
                raise ParamsError(f"{source}: {path}{'.config' if where == 'model' else ''}: {exc}") from None


# ----------------------------------------------------------------------------- what dvc.lock records
def tracked_params(stage: str, domain: str, root: Path | None = None) -> list[str]:
    """The params.yaml keys dvc.yaml lists for ``stage@domain`` (``${item}`` replaced by the domain).

    Without a dvc.yaml (or a stage in it), the stage's own section ``<stage>.<domain>``. dvc.lock
    records params.yaml's values of these keys; a run on other values (a ``--set``, a profile) must not
    be committed under them (:func:`tasks.lineage.uncommitted_stages`, ``python -m tasks`` under
    ``dvc repro``).
    """
    path = (root or project_root()) / "dvc.yaml"
    entries: list[Any] = []
    if path.exists():
        spec = (yaml.safe_load(path.read_text()) or {}).get("stages", {}).get(stage) or {}
        entries = (spec.get("do") or spec).get("params") or []
    keys: list[str] = []
    for entry in entries:
        if isinstance(entry, str):
            keys.append(entry)
        elif isinstance(entry, dict):  # {file: [keys]}: only params.yaml is what the flow's params come from
            keys += [k for file, ks in entry.items() if file == "params.yaml" for k in (ks or [])]
    keys = [k.replace("${item}", domain) for k in keys]
    return keys or [f"{stage}.{domain}"]


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_leaves(v, f"{prefix}.{k}"))
        return out or {prefix: {}}
    return {prefix: value}


def _get(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def params_diff(effective: dict[str, Any], base: dict[str, Any], keys: list[str]) -> list[str]:
    """``key: params.yaml X, this run Y`` for each leaf under ``keys`` whose value differs."""
    out = []
    for key in keys:
        now, was = _leaves(_get(effective, key), key), _leaves(_get(base, key), key)
        for leaf in sorted(set(now) | set(was)):
            if now.get(leaf) != was.get(leaf):
                out.append(f"{leaf}: params.yaml {was.get(leaf)!r}, this run {now.get(leaf)!r}")
    return out
