"""The shared parts of the params schema: what every domain's sections are built from.

``params.yaml`` has one section per stage, nested per domain (``train.netflow.lr``).
Each domain package declares its own sections in ``tasks/domains/<domain>/params.py``
(a :class:`DomainParams`), built from the bases here; :mod:`tasks.params` assembles
them into the one validated ``Params`` model. The bases hold what the generic code
reads: the training loop's knobs (:class:`TrainLoopParams`, :class:`ClassificationTrain`, :class:`RegressionTrain`),
the promotion gate (:class:`RegisterSection`), the compression and evaluation settings
(:class:`CompressSection`, :class:`EvaluateSection`), scoring (:class:`ScoreSection`)
and the retry settings of a source (:class:`SourceSection`).

A domain that wants other defaults for the loop does not restate the fields: it names
them in ``defaults`` (a class variable), validated by the same field constraints::

    class FinanceTrain(TrainLoopParams):
        defaults = {"epochs": 3, "batch_size": 8, "lr": 5e-5}

This module imports no domain.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

STAGES = ("ingest", "preprocess", "train", "compress", "evaluate", "register")
"""Pipeline stages in order; ``score`` is run on demand, not by the pipeline."""
SECTIONS = (*STAGES, "score")
"""The stage sections of params.yaml, each nested per domain."""


def add_params_options(ap: argparse.ArgumentParser, params_file: bool = True) -> None:
    """The params options every command that reads params takes (the same in ``formerflow run`` and ``sweep``).

    ``params_file``: also ``--params FILE`` (a stage's; the flows always read the project's params.yaml, which
    their cache keys and dvc.lock describe).
    """
    if params_file:
        ap.add_argument("--params", default=None, help="params file (default: params.yaml in the project root)")
    ap.add_argument("--profile", action="append", default=None,
                    help="profile from profiles/<name>.yaml merged over params (repeatable; "
                         "default: $FORMERFLOW_PROFILE)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one param, e.g. --set train.netflow.epochs=2 (repeatable)")


def did_you_mean(word: str, options: Any) -> str:
    """`` (did you mean 'epochs'?)`` when ``word`` is close to one of ``options`` (difflib), else ``""``.

    For every "unknown name" error: params keys, domains, stages, commands, columns.
    """
    import difflib  # lazy: only an error needs it

    names = [str(o) for o in options]
    close = difflib.get_close_matches(str(word), names, n=2, cutoff=0.6)
    if not close:  # a case slip (in_bytes for IN_BYTES) is not "close" to difflib
        close = [n for n in names if n.lower() == str(word).lower()][:1]
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def model_keys_at(model: Any, loc: tuple[Any, ...]) -> list[str] | None:
    """The keys a pydantic model accepts at the dotted location ``loc`` (None when it is not a model there).

    Walks field annotations through ``X | None``, ``Annotated`` and ``dict[str, X]`` (a dict's key is a part of
    ``loc`` too), so ``train.netflow.epoch`` finds the fields of the netflow train section.
    """
    def unwrap(tp: Any) -> Any:
        while True:
            origin = typing.get_origin(tp)
            if origin is typing.Annotated:
                tp = typing.get_args(tp)[0]
            elif origin in (typing.Union, types.UnionType):
                models = [a for a in typing.get_args(tp) if a is not type(None)]
                if len(models) != 1:
                    return tp
                tp = models[0]
            else:
                return tp

    cur, parts = unwrap(model), list(loc)
    while parts:
        part = parts.pop(0)
        if isinstance(cur, type) and issubclass(cur, BaseModel):
            field = cur.model_fields.get(str(part))
            if field is None:
                return None
            cur = unwrap(field.annotation)
        elif typing.get_origin(cur) is dict:
            cur = unwrap(typing.get_args(cur)[1])
        else:
            return None
    return list(cur.model_fields) if isinstance(cur, type) and issubclass(cur, BaseModel) else None


class Strict(BaseModel):
    """Base for every params section: unknown keys are errors, values are validated on assignment.

    ``defaults`` (a class variable) overrides the defaults of inherited fields for a subclass;
    a value given in params.yaml wins over it, and both are checked by the field's constraints.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    defaults: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _class_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        merged: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):  # a subclass's defaults win over its bases'
            merged = _merge(merged, vars(klass).get("defaults", {}))
        return _merge(merged, data) if merged else data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``, nested mappings key by key (a default nested section keeps its other keys)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# ----------------------------------------------------------------------------- ingest
class SourceSection(Strict):
    """Retry settings shared by every ingest section (remote sources are retried on transient errors only)."""

    retries: int = Field(3, ge=0)
    retry_delay_s: float = Field(0.5, ge=0.0)


# ----------------------------------------------------------------------------- train
class ModelSpec(Strict):
    arch: str
    """Registry name within the domain: ``models.build(f"{domain}/{arch}", config)``."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Constructor config of the architecture; data-dependent sizes (feature counts, window) are filled in."""


class TrainLoopParams(Strict):
    """Knobs of the one training loop (:func:`tasks.loop.fit`) shared by every model."""

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
    """Class-balanced batches (equal share per class), as the FlowTransformer reference trains."""
    resume: bool = True
    """Resume from the last epoch checkpoint of the same configuration if one exists."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    keep: Literal["best", "last"] = "best"
    """Weights kept after training: the best validation epoch, or the last epoch (the EEG reference's choice)."""
    select_metric: Literal["balanced_accuracy", "f1", "rel_l2"] = "balanced_accuracy"
    """Validation metric that picks the best epoch (``f1``: of the positive / last class; FinAI-BERT's choice;
    ``rel_l2``: relative L2 error of a regression, lower is better)."""
    lr_schedule: Literal["constant", "linear", "step"] = "constant"
    """``linear``: decay from ``lr`` to 0 over all steps, no warm-up (the Hugging Face Trainer default);
    ``step``: multiply by ``lr_gamma`` every ``lr_step_epochs`` epochs (torch's StepLR, IFactFormer's recipe)."""
    lr_step_epochs: int = Field(5, ge=1)
    lr_gamma: float = Field(0.7, gt=0.0, le=1.0)


class TrainSection(TrainLoopParams):
    """A domain's train section: the loop's knobs and the model it trains."""

    model: ModelSpec
    """The architecture trained (each domain's ``defaults`` name its own) and its constructor config."""

    def model_specs(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every model config this section names, ``{dotted path: (arch, config)}``, checked against the model
        registry when params load (a domain that names more, like EEG's protocol models, adds them)."""
        return {"model": (self.model.arch, self.model.config)}


class ClassificationTrain(TrainSection):
    """The train section of a classification domain."""

    task: Literal["binary", "multiclass"] = "binary"

    @field_validator("select_metric")
    @classmethod
    def _classification_metric(cls, value: str) -> str:
        if value == "rel_l2":
            raise ValueError("rel_l2 is a regression's metric; choose balanced_accuracy or f1")
        return value


class RegressionTrain(TrainSection):
    """The train section of a field domain: relative L2 loss, best epoch by the lowest validation error."""

    defaults = {"balanced_batches": False, "select_metric": "rel_l2", "patience": 1000}
    task: Literal["regression"] = "regression"
    """Next-snapshot regression; the loss is the per-sample relative L2 ||y_hat - y|| / ||y||."""
    pushforward_steps: int = Field(1, ge=1)
    """Multi-step training: > 1 adds the pushforward loss (roll the model out K-1 steps without gradient,
    then learn the K-th step from its own prediction), so training sees the inputs a rollout produces."""
    input_noise: float = Field(0.0, ge=0.0, le=1.0)
    """Training noise (:func:`tasks.loop.regression_loss`): Gaussian noise of this std, relative to each sample's
    rms, on the training inputs only (targets, validation and evaluation stay clean); 0 = off (the paper)."""

    @field_validator("balanced_batches")
    @classmethod
    def _no_classes(cls, value: bool) -> bool:
        if value:
            raise ValueError("must be false: a regression has no classes")
        return value

    @field_validator("select_metric")
    @classmethod
    def _regression_metric(cls, value: str) -> str:
        if value != "rel_l2":
            raise ValueError("must be rel_l2 (the only regression metric)")
        return value


# ----------------------------------------------------------------------------- compress / evaluate
COMPRESSION_METHODS = ("distill", "prune", "lowrank", "nested", "int8", "int8_eager")
"""The compress stage's methods (tasks/compress/): chained with ``+``, a quantization last."""
QUANTIZATIONS = ("int8", "int8_eager")
NESTED_TOKEN = re.compile(r"^(nested-w(?P<width>[0-9]+(?:\.[0-9]+)?)|nested-mix(?P<mix>[0-9]+)"
                          r"|indep-w(?P<indep>[0-9]+(?:\.[0-9]+)?))$")
"""Variant tokens of MatFormer (tasks/compress/nested.py): a uniform width ``nested-w0.5``, a Mix'n'Match pick
``nested-mix1`` and a student distilled independently at a width ``indep-w0.5``; plain ``nested`` expands to all."""
AFTER_ONLY = {"lowrank": ("distill", *QUANTIZATIONS), "nested": ("distill", *QUANTIZATIONS)}
"""What may follow a method that restructures the FFN / the Linears: pruning cuts by the original layout."""


def method_of(token: str) -> str:
    """The method a chain token belongs to: ``nested-w0.5`` -> ``nested``; ``prune`` -> ``prune``."""
    m = NESTED_TOKEN.match(token)
    return "nested" if m else token


class DistillSettings(Strict):
    """Knowledge distillation (tasks/compress/distill.py): the student and its loss."""

    student: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the teacher's model config that make the student (fewer blocks, narrower); nested dicts merge."""
    init_from_teacher: bool = True
    """Start the student's layers from every other layer of the teacher where shapes match (DistilBERT)."""
    temperature: float = Field(2.0, ge=1.0)
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    """Weight of the teacher term: ``alpha * T^2 * KL + (1 - alpha) * hard-label loss`` (fields: relative L2s)."""
    hidden_weight: float = Field(0.0, ge=0.0)
    """Text encoder: weight of the cosine loss between mean last hidden states (0: off)."""
    epochs: int | None = Field(None, ge=1)
    """Epochs of student training; None = the teacher's (train.<domain>.epochs)."""
    finetune_epochs: int | None = Field(1, ge=1)
    """Epochs of distillation fine-tuning when distill follows another method in a chain (prune+distill: the pruned
    model starts trained, so one epoch recovers most of what a cut lost); None = ``epochs``."""
    lr_factor: float = Field(1.0, gt=0.0)
    """The student's learning rate as a multiple of the teacher's."""


class PruneSettings(Strict):
    """Accuracy-driven structured pruning (tasks/compress/prune.py, AxFormer's search)."""

    tolerance: float = Field(0.0, ge=0.0)
    """Relative rise of the validation loss a cut may cause; 0 = the paper's rule (the loss must not rise)."""
    close: float = Field(1.1, ge=1.0)
    """A rejected branch whose loss is below close x the best is tried head by head / unit group by group."""
    ffn_groups: int = Field(4, ge=1)
    """FFN hidden units are tried in this many groups (the paper: 12 groups of 256)."""
    heads: bool = True
    max_val_items: int = Field(2000, ge=10)
    """Validation items of the search (evenly spread when there are more): every trial is one pass over them."""
    finetune_epochs: int = Field(1, ge=0)
    """Epochs of fine-tuning on the labels after the cuts (0: none)."""
    lr_factor: float = Field(0.5, gt=0.0)


class LowRankSettings(Strict):
    """Low-rank factorisation (tasks/compress/lowrank.py, Greenformers' LED with SVD init, then distillation)."""

    fractions: list[float] = Field(default_factory=lambda: [0.25, 0.5, 0.75])
    """Ranks tried per layer, as fractions of its break-even rank in*out/(in+out), smallest (most compression) first."""
    tolerance: float = Field(0.05, ge=0.0)
    """Relative rise of the validation loss (after SVD, before fine-tuning) a layer's factorisation may cause,
    against the loss with the layers already factorised: the rises compound (netflow, 11 layers: +14 %)."""
    max_val_items: int = Field(500, ge=10)
    """Validation items of the rank search (evenly spread): every trial is one pass over them."""
    finetune_epochs: int = Field(1, ge=0)
    """Epochs of distillation fine-tuning against the teacher after the factorisation (0: SVD only)."""
    steps_per_epoch: int | None = Field(None, ge=1)
    """Batches per fine-tuning epoch; None = the domain's train loop's (a cap keeps ``make run`` in its budget)."""
    lr_factor: float = Field(0.5, gt=0.0)

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if not value or any(not 0.0 < f < 1.0 for f in value):
            raise ValueError(f"fractions of the break-even rank must lie in (0, 1): {value}")
        return sorted(value)


class NestedSettings(Strict):
    """Nested FFN widths (tasks/compress/nested.py, MatFormer): one fine-tune, every granularity extractable."""

    granularities: list[int] = Field(default_factory=lambda: [1, 2, 4, 8])
    """Factors f: a sub-model keeps the first n/f hidden units of every FFN (f = 1 is the full model)."""
    epochs: int = Field(1, ge=1)
    """Epochs of the MatFormer fine-tune (every granularity on every batch), and of each independent student."""
    steps_per_epoch: int | None = Field(None, ge=1)
    """Batches per epoch of the fine-tune and of each independent student; None = the domain's train loop's
    (a step of the fine-tune costs about one forward-backward per granularity)."""
    lr_factor: float = Field(0.5, gt=0.0)
    mix: bool = True
    """Mix'n'Match: also extract per-block mixes of neighbouring granularities (widths non-decreasing with depth)."""
    compare_independent: bool = True
    """Also distil a student independently at each width f > 1 (the paper's comparison: nested vs separate)."""
    importance_items: int = Field(256, ge=0)
    """Training items whose mean |activation| x ||W_out column|| orders each FFN's hidden units before the
    fine-tune (most important first, so prefixes keep them); 0: weight norms only."""

    @field_validator("granularities")
    @classmethod
    def _granularities(cls, value: list[int]) -> list[int]:
        if 1 not in value or any(f < 1 for f in value):
            raise ValueError(f"granularities must be factors >= 1 and include 1 (the full model): {value}")
        return sorted(set(value))


class CompressSection(Strict):
    """The compress stage of one domain: the variants it makes, and how the evaluate stage picks one to serve."""

    methods: list[str] = Field(default_factory=lambda: [
        "distill", "prune", "int8", "int8_eager", "prune+int8_eager", "distill+int8_eager",
        "prune+distill+int8_eager"])
    """Variants, each a method or a chain of them joined by ``+`` (a quantization only last)."""
    latency_batch_size: int = Field(1, ge=1)
    latency_repeats: int = Field(50, ge=1)
    budget: float = Field(0.01, ge=0.0)
    """Largest allowed loss of the primary metric for a variant to be chosen: an absolute drop when higher is
    better (0.01 = one point of balanced accuracy / F1), a relative rise when lower is better (0.05 = 5 %)."""
    objective: Literal["latency", "throughput", "size"] = "latency"
    """What the chosen variant is best at among those within the budget: batch-1 latency, throughput or size."""
    compile: bool = False
    """``torch.compile`` a loaded ``int8`` (torchao) model: it then beats fp32, but compiling costs tens of seconds
    per process and new shape (docs/compression.md). Off by default."""
    distill: DistillSettings = Field(default_factory=DistillSettings)
    prune: PruneSettings = Field(default_factory=PruneSettings)
    lowrank: LowRankSettings = Field(default_factory=LowRankSettings)
    nested: NestedSettings = Field(default_factory=NestedSettings)

    @field_validator("methods")
    @classmethod
    def _chains(cls, value: list[str]) -> list[str]:
        for variant in value:
            chain = [method_of(t) for t in variant.split("+")]
            unknown = [t for t, m in zip(variant.split("+"), chain, strict=True) if m not in COMPRESSION_METHODS]
            if unknown:
                raise ValueError(f"{variant!r}: unknown method(s) {unknown}; methods: {', '.join(COMPRESSION_METHODS)} "
                                 f"(nested also as nested-w<width>, nested-mix<k>, indep-w<width>)")
            if any(m in QUANTIZATIONS for m in chain[:-1]):
                raise ValueError(f"{variant!r}: a quantization ({', '.join(QUANTIZATIONS)}) can only come last")
            if "nested" in chain[1:]:
                raise ValueError(f"{variant!r}: nested starts a chain (it fine-tunes the teacher itself)")
            if chain[0] == "nested" and variant.split("+")[0] == "nested" and len(chain) > 1:
                raise ValueError(f"{variant!r}: name the width a chain continues from (nested-w0.5+...)")
            for i, m in enumerate(chain[:-1]):
                if m in AFTER_ONLY and chain[i + 1] not in AFTER_ONLY[m]:
                    raise ValueError(f"{variant!r}: {chain[i + 1]} cannot follow {m} (only "
                                     f"{', '.join(AFTER_ONLY[m])}: {m} changes the layers it would cut)")
        if len(set(value)) != len(value):
            raise ValueError(f"a variant is listed twice: {value}")
        return value


class EvaluateSection(Strict):
    latency_batch_size: int = Field(1, ge=1)
    latency_repeats: int = Field(50, ge=1)
    throughput_batch_size: int = Field(256, ge=1)


class ClassificationEvaluate(EvaluateSection):
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    """Decision threshold of P(positive) for the binary metrics."""


# ----------------------------------------------------------------------------- register / score
class RegisterSection(Strict):
    """The promotion gate of one domain's registered model."""

    model: str = "chosen"
    """Which evaluated model becomes the registered version: ``chosen`` (the variant the evaluate stage picked
    within ``compress.<domain>.budget``), ``teacher``, or a variant by name (``distill+int8_eager``)."""
    primary_metric: str = "balanced_accuracy"
    min_delta: float = Field(0.0, ge=0)
    """The candidate is promoted when primary >= champion's primary + min_delta (never negative: a negative
    margin would promote a worse model)."""
    latency_budget_ms: float = Field(50.0, gt=0)
    """Upper bound on the candidate's per-item latency (batch of ``evaluate.latency_batch_size``)."""
    higher_is_better: bool = True
    """False for an error (turbulence's rollout relative L2): promote when primary <= champion - min_delta."""
    allow_below_baseline: bool = False
    """Promote a candidate whose primary metric is worse than the best baseline scored on its test split
    (``reports/<domain>/metrics.json``: netflow's and finance's scikit-learn baselines, turbulence's FNO,
    IFactFormer-o and persistence; EEG has none there). Off: such a candidate is registered but not promoted."""


class ScoreSection(Strict):
    model_uri: str | None = None
    """Defaults to ``models:/formerflow-<domain>@champion``."""


# ----------------------------------------------------------------------------- one domain's sections
@dataclass(frozen=True)
class DomainParams:
    """The params sections of one domain, one schema class per stage section.

    ``tasks/domains/<domain>/params.py`` defines ``PARAMS = DomainParams(...)``;
    :mod:`tasks.params` nests each class under its stage (``train.<domain>``).
    """

    ingest: type[Strict]
    preprocess: type[Strict]
    train: type[TrainSection]
    compress: type[CompressSection] = CompressSection
    evaluate: type[EvaluateSection] = EvaluateSection
    register: type[RegisterSection] = RegisterSection
    score: type[ScoreSection] = ScoreSection

    def section(self, name: str) -> type[Strict]:
        return getattr(self, name)


def params_hash(section: BaseModel | dict) -> str:
    """Stable short hash of a params section (used in cache keys and checkpoint folders)."""
    data = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
