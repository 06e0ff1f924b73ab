"""Typed schema of ``params.yaml``: the single source of every knob.

The file has one section per stage (``ingest``, ``preprocess``, ``train``,
``compress``, ``evaluate``, ``register``, ``score``), each nested per domain
(``train.netflow.lr``), plus a ``pipeline`` section for the orchestration.
Every model here forbids unknown keys, so a typo fails at load time with the
dotted path of the key (``train.netflow.lrr: Extra inputs are not permitted``)
instead of being silently ignored.

Profiles are YAML files of overrides in ``profiles/`` (``paper.yaml`` holds the
reference's settings); they are deep-merged over ``params.yaml`` in the order
given, then ``key.path=value`` overrides are applied.

Example:
    >>> p = load_params(profiles=["paper"], overrides=["train.netflow.epochs=3"])
    >>> p.train.netflow.epochs
    3
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.synthetic.netflow import NF_V2_CATEGORICAL, NF_V2_NUMERIC

DOMAINS = ("netflow",)
"""Domains this build knows. A new domain adds its sections below and an entry here."""


class ParamsError(ValueError):
    """A params file, profile or override is invalid; the message names the dotted key path."""


class Strict(BaseModel):
    """Base for every params section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------- pipeline
class PipelineParams(Strict):
    domains: list[Literal["netflow"]] = Field(default_factory=lambda: ["netflow"], min_length=1)
    dvc_commit: bool = True
    """After a Prefect run, record the outputs with ``dvc commit`` so DVC and Prefect share one dvc.lock."""


# ----------------------------------------------------------------------------- ingest
class FlowDatasetSpec(Strict):
    """Describes a flow-record dataset so new formats need a spec, not code.

    ``renames`` maps source column names to the names used below, applied first,
    so a CICFlowMeter CSV (``Flow Duration``) or KDD record (``duration``) can be
    mapped onto the fields the model reads.
    """

    name: str = "nf-v2"
    numeric_fields: list[str] = Field(default_factory=lambda: list(NF_V2_NUMERIC), min_length=1)
    categorical_fields: list[str] = Field(default_factory=lambda: list(NF_V2_CATEGORICAL))
    label_column: str = "Attack"
    benign_value: str = "Benign"
    renames: dict[str, str] = Field(default_factory=dict)
    keep_columns: list[str] = Field(default_factory=list)
    """Extra columns carried into data/raw unchanged (e.g. IPV4_SRC_ADDR for analysis); not model inputs."""

    @model_validator(mode="after")
    def _disjoint(self) -> FlowDatasetSpec:
        both = sorted(set(self.numeric_fields) & set(self.categorical_fields))
        if both:
            raise ValueError(f"fields listed as both numeric and categorical: {both}")
        if self.label_column in self.numeric_fields or self.label_column in self.categorical_fields:
            raise ValueError(f"label_column {self.label_column!r} is also listed as a feature")
        return self


class NetflowSynthetic(Strict):
    n_flows: int = Field(60_000, ge=1_000)
    seed: int = 0
    n_files: int = Field(2, ge=1)
    attack_fraction: float = Field(0.3, gt=0.0, lt=1.0)


class NetflowIngest(Strict):
    source: str = "synthetic"
    """``synthetic`` (the offline default generator) or an fsspec URL / glob of CSV, CSV.gz or Parquet files."""
    format: Literal["auto", "csv", "parquet"] = "auto"
    synthetic: NetflowSynthetic = Field(default_factory=NetflowSynthetic)
    spec: FlowDatasetSpec = Field(default_factory=FlowDatasetSpec)
    max_rows: int | None = Field(None, ge=1)
    """Keep only the first N rows (in file order), for quick looks at big sources."""
    retries: int = Field(3, ge=0)
    retry_delay_s: float = Field(0.5, ge=0.0)


class IngestParams(Strict):
    netflow: NetflowIngest = Field(default_factory=NetflowIngest)


# ----------------------------------------------------------------------------- preprocess
class NetflowPreprocess(Strict):
    n_categorical_levels: int = Field(32, ge=1)
    window: int = Field(8, ge=1)
    test_fraction: float = Field(0.1, gt=0.0, lt=0.9)
    """The last rows (in time order) held out for evaluation."""
    val_fraction: float = Field(0.1, ge=0.0, lt=0.9)
    """A validation slice taken just before the test rows."""
    max_abs_value: float = Field(1e9, gt=0)
    """Numeric values beyond this magnitude (and non-finite ones) are set to 0, as the reference does."""

    @model_validator(mode="after")
    def _fractions(self) -> NetflowPreprocess:
        if self.test_fraction + self.val_fraction >= 0.9:
            raise ValueError("test_fraction + val_fraction must leave at least 10% of rows for training")
        return self


class PreprocessParams(Strict):
    netflow: NetflowPreprocess = Field(default_factory=NetflowPreprocess)


# ----------------------------------------------------------------------------- train
class ModelSpec(Strict):
    arch: str = "flowtransformer"
    """Registry name within the domain: ``models.build(f"{domain}/{arch}", config)``."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Constructor config of the architecture; data-dependent sizes (feature counts, window) are filled in."""


class TrainLoopParams(Strict):
    """Knobs of the one training loop (``tasks.train.fit``) shared by every model."""

    seed: int = 0
    epochs: int = Field(8, ge=1)
    steps_per_epoch: int | None = Field(64, ge=1)
    """Batches per epoch; None = one pass over the training windows."""
    batch_size: int = Field(128, ge=2)
    eval_batch_size: int = Field(1024, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    patience: int = Field(4, ge=1)
    """Early stopping: epochs without a better validation metric before stopping."""
    balanced_batches: bool = True
    """Class-balanced batches (equal share per class), as the reference trains."""
    resume: bool = True
    """Resume from the last epoch checkpoint of the same configuration if one exists."""
    device: Literal["auto", "cpu", "cuda"] = "auto"


class NetflowTrain(TrainLoopParams):
    task: Literal["binary", "multiclass"] = "binary"
    model: ModelSpec = Field(default_factory=ModelSpec)
    baselines: list[Literal["logreg", "hgb"]] = Field(default_factory=lambda: ["logreg", "hgb"])
    baseline_max_rows: int = Field(200_000, ge=100)
    """Single-flow baselines are fitted on at most this many (most recent) training rows."""


class TrainParams(Strict):
    netflow: NetflowTrain = Field(default_factory=NetflowTrain)


# ----------------------------------------------------------------------------- compress
class CompressDomain(Strict):
    methods: list[Literal["int8"]] = Field(default_factory=lambda: ["int8"])
    latency_batch_size: int = Field(1, ge=1)
    latency_repeats: int = Field(50, ge=1)


class CompressParams(Strict):
    netflow: CompressDomain = Field(default_factory=CompressDomain)


# ----------------------------------------------------------------------------- evaluate
class EvaluateDomain(Strict):
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    latency_batch_size: int = Field(1, ge=1)
    latency_repeats: int = Field(50, ge=1)
    throughput_batch_size: int = Field(256, ge=1)


class EvaluateParams(Strict):
    netflow: EvaluateDomain = Field(default_factory=EvaluateDomain)


# ----------------------------------------------------------------------------- register
class RegisterDomain(Strict):
    model: str = "teacher"
    """Which evaluated model becomes the registered version: ``teacher`` or a compression method (``int8``)."""
    primary_metric: str = "balanced_accuracy"
    min_delta: float = 0.0
    """The candidate is promoted when primary >= champion's primary + min_delta."""
    latency_budget_ms: float = Field(50.0, gt=0)
    """Upper bound on the candidate's per-window latency (batch of ``evaluate.latency_batch_size``)."""


class RegisterParams(Strict):
    netflow: RegisterDomain = Field(default_factory=RegisterDomain)


# ----------------------------------------------------------------------------- score
class ScoreDomain(Strict):
    model_uri: str | None = None
    """Defaults to ``models:/formerflow-<domain>@champion``."""
    batch_size: int = Field(2048, ge=1)


class ScoreParams(Strict):
    netflow: ScoreDomain = Field(default_factory=ScoreDomain)


# ----------------------------------------------------------------------------- root
# "register" is also ABCMeta.register on the class; instances read the field, so the warning is noise.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class Params(Strict):
    pipeline: PipelineParams = Field(default_factory=PipelineParams)
    ingest: IngestParams = Field(default_factory=IngestParams)
    preprocess: PreprocessParams = Field(default_factory=PreprocessParams)
    train: TrainParams = Field(default_factory=TrainParams)
    compress: CompressParams = Field(default_factory=CompressParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    register: RegisterParams = Field(default_factory=RegisterParams)
    score: ScoreParams = Field(default_factory=ScoreParams)

    def section(self, stage: str, domain: str) -> BaseModel:
        """The params of one stage for one domain, e.g. ``section("train", "netflow")``."""
        return getattr(getattr(self, stage), domain)


STAGES = ("ingest", "preprocess", "train", "compress", "evaluate", "register")
"""Pipeline stages in order; ``score`` is run on demand, not by the pipeline."""


def deep_merge(base: dict, override: dict) -> dict:
    """Return ``base`` with ``override`` merged in recursively (override wins; lists are replaced)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
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


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: ``<source>: train.netflow.lr: Input should be greater than 0 (got -1)``."""
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "<root>"
        got = f" (got {err['input']!r})" if err["type"] != "extra_forbidden" and "input" in err else ""
        if err["type"] == "extra_forbidden":
            got = ""
        lines.append(f"{source}: {path}: {err['msg']}{got}")
    return "\n".join(lines)


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
    from tasks.store import project_root

    root = project_root()
    path = Path(path) if path is not None else root / "params.yaml"
    data = _read_yaml(path)
    sources = [str(path)]
    if profiles is None:
        profiles = [p for p in os.environ.get("FORMERFLOW_PROFILE", "").split(",") if p.strip()]
    for name in profiles:
        ppath = profile_path(name.strip(), root)
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
    """Validate each ``train.<domain>.model`` against the model registry at load time.

    The model config is free-form in the schema (each architecture has its own
    dataclass), so it is checked by building that dataclass: an unknown
    architecture, field or value fails here, naming its dotted path.
    """
    from models.registry import get, make_config

    for domain in DOMAINS:
        spec = getattr(params.train, domain).model
        key = f"{domain}/{spec.arch}"
        path = f"train.{domain}.model"
        try:
            get(key)
        except KeyError as exc:
            raise ParamsError(f"{source}: {path}.arch: {exc.args[0]}") from None
        try:
            make_config(key, spec.config)
        except (TypeError, ValueError) as exc:
            raise ParamsError(f"{source}: {path}.config: {exc}") from None


def params_hash(section: BaseModel | dict) -> str:
    """Stable short hash of a params section (used in cache keys and checkpoint folders)."""
    import hashlib
    import json

    data = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
