"""The domain contract: what a domain package provides, and how the generic stages find it.

A domain is a package ``tasks/domains/<name>/`` with four modules the generic code knows:

* ``params.py`` defines ``PARAMS``, a :class:`tasks.params_base.DomainParams` with the
  domain's params sections (assembled into params.yaml's schema by :mod:`tasks.params`);
* ``ingest.py`` and ``preprocess.py`` define the stages of those names, each a function
  ``(params, run) -> manifest`` (:mod:`tasks.stages` imports the module when the stage runs);
* ``domain.py`` defines ``DOMAIN``, an object satisfying :class:`ClassificationDomain`
  (labels per item: netflow, eeg, finance) or :class:`FieldDomain` (fields on a grid
  over time: turbulence), usually a subclass of :class:`ClassificationDefaults` or
  :class:`FieldDefaults`, which hold the defaults of the optional hooks. The generic
  stages (train, compress, evaluate, register, score) call only its hooks.

Everything else in the package (readers, synthetic source, reports) is the domain's own.
The generic stages branch on ``DOMAIN.kind`` and read what they need to know of the
labels from :class:`TaskInfo`. Domains are found by :func:`names` (every package here with a
``domain.py``) and loaded by :func:`get`; nothing outside this package names a domain
in code, so a new domain is a new package (docs/architecture.md, "Adding a domain").

Hooks every domain provides (:class:`Domain`)::

    load_schema() -> dict                           optional: what preprocess fitted (default: schema.json)
    load_split(name, task) -> Dataset               a processed split as the loop's Dataset
    model_config(params, schema) -> dict            registry config with the data-dependent sizes
    task_info(params, schema) -> TaskInfo           labels, words and columns of the report
    build_model(params, schema) -> nn.Module        optional: default models.build(key, model_config)
    extra_train(params, out, run, baselines) -> dict   optional: more training beside the teacher
    save_assets(folder, schema) -> None             optional: files a model folder needs besides weights
    input_example(loaded) -> InputExample           optional: a few pyfunc inputs from the project's data
                                                    (the registered model's signature and input example)

Classification domains add (:class:`ClassificationDomain`)::

    fit_baselines(params, train) -> {name: estimator}   optional: scikit-learn baselines
    baseline_features(split) -> array                the baselines' input rows
    extra_evaluate(params, result, plots_dir, scores, models) -> (markdown, plots)   optional
    read_scoring_input(urls, ip, cache) -> ScoringInput   records to score
    score_frame(loaded, frame) -> DataFrame          raw records -> predictions (the pyfunc)
    key_columns(ip) -> list[str]                     optional: input columns copied beside the predictions
    score_summary(out, notes, output) -> (dict, {file: bytes})   optional extra scoring outputs
    read_sentences(source, text_column, label_column, ip, cache) -> ScoringInput   optional: single sentences
                                                 (score --sentences: finance); frame line|row, sentence[, label]
    sentence_baselines() -> [name]                 optional: saved baselines score --sentences --model can use
    load_sentence_baseline(name) -> (predict_p, record)   optional: one of them, and what the manifest records

Field domains add (:class:`FieldDomain`)::

    evaluate_models(params, models, plots_dir) -> (result, markdown, plots)
    score_fields(params, model_uri, input_url, output, width=None) -> manifest
    predict_array(loaded, model_input) -> array      the pyfunc's array input
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from tasks import store

if TYPE_CHECKING:  # type names only: the contract imports no heavy library and no stage
    import numpy as np
    import polars as pl
    from torch import nn

    from tasks.loop import Dataset
    from tasks.params import Params
    from tasks.params_base import DomainParams
    from tasks.tracking import StageRun

Kind = Literal["classification", "field"]
Task = Literal["binary", "multiclass", "regression"]


class UnknownDomainError(ValueError):
    """A domain name that no package under tasks/domains/ provides; the message lists the known ones."""


# ============================================================================ what the generic stages read
@dataclass(frozen=True)
class TaskInfo:
    """What the generic stages need to know of a domain's labels and how its report speaks.

    Attributes:
        task: ``binary`` (one logit), ``multiclass`` (one logit per class) or ``regression``.
        class_names: Names of the label values (class 0 is the negative class); empty for a regression.
        family_names: Finer classes of the items (netflow: attack families), for per-family recall; None if
            none. When given, the test split's Dataset has ``classes``: each item's finer class index.
        positive: What the positive class is called in column labels (``attack``, ``AI``, ``right_hand``).
        negative: What the negative class is called (``benign``, ``non-AI``, ``left_hand``).
        item: What one scored item is (``window``, ``sentence``, ``epoch``): latency and throughput units.
        split_note: One line on how the test split was made, for the report's first line.
        baseline_kind: The ``kind`` column of the baselines' rows (``single-flow baseline``).
        threshold: Decision threshold of P(positive) for binary metrics (None: argmax / not a classifier).
        table_columns: Metrics in the report's table, in order (None: the classification default).
        column_labels: Header overrides, metric key -> label.
    """

    task: Task
    class_names: list[str] = field(default_factory=list)
    family_names: list[str] | None = None
    positive: str = "positive"
    negative: str = "negative"
    item: str = "item"
    split_note: str = "held-out test split"
    baseline_kind: str = "baseline"
    threshold: float | None = None
    table_columns: list[str] | None = None
    column_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoringInput:
    """What a classification domain's reader hands the score stage: the records, and notes for the summary
    (finance: the documents read and the ones skipped, with their reasons)."""

    frame: pl.DataFrame
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InputExample:
    """A few inputs of the registered pyfunc, taken from the project's data: the model version's MLflow input
    example, and what its signature is inferred from (the outputs are what the pyfunc returns on them).

    Attributes:
        data: The pyfunc input as stored with the model: a pandas DataFrame of records, or (field models) a
            dict of numpy arrays. Portable: paths in it are relative to the project folder.
        local: The same input as the register process can score it (absolute paths), when it differs.
        optional: Input columns the pyfunc reads when present but does not need (netflow: the label).
        any_type: Input columns the pyfunc takes as numbers or text alike (its reader parses them), so their type
            is not checked (MLflow's ``Any``).
        variable_dims: Dimensions of an array output whose size the input chooses (turbulence: the steps, 1).
    """

    data: Any
    local: Any = None
    optional: tuple[str, ...] = ()
    any_type: tuple[str, ...] = ()
    variable_dims: tuple[int, ...] = ()


@dataclass(frozen=True)
class LoadedModel:
    """A model folder loaded for evaluation or serving: the module, its ``config.json`` and the folder (which
    holds the domain's assets, e.g. finance's tokenizer)."""

    model: nn.Module
    meta: dict[str, Any]
    folder: Path


# ============================================================================ the contract
@runtime_checkable
class Domain(Protocol):
    """The hooks every domain provides (see the module docstring for the table)."""

    name: str
    kind: Kind

    def load_schema(self) -> dict[str, Any]: ...

    def load_split(self, name: str, task: str) -> Dataset: ...

    def model_config(self, params: Params, schema: dict[str, Any]) -> dict[str, Any]: ...

    def task_info(self, params: Params, schema: dict[str, Any]) -> TaskInfo: ...

    def build_model(self, params: Params, schema: dict[str, Any]) -> nn.Module: ...

    def extra_train(self, params: Params, out: Path, run: StageRun | None,
                    baselines: dict[str, Any]) -> dict[str, Any]: ...

    def save_assets(self, folder: Path, schema: dict[str, Any]) -> None: ...

    def calibrate(self, folder: Path, model: nn.Module) -> dict[str, Any] | None: ...

    def input_example(self, loaded: LoadedModel) -> InputExample | None: ...


@runtime_checkable
class ClassificationDomain(Domain, Protocol):
    """A domain whose items carry class labels (netflow, eeg, finance)."""

    score_per_input_row: bool
    """True: one prediction row per input row (key columns copied beside it); False: the predictions carry
    their own keys (EEG: one row per epoch of each recording)."""
    score_input_expands_itself: bool
    """True: the reader takes the score input as given (folders, globs, archives); False: the score stage
    expands it into file URLs first."""

    def fit_baselines(self, params: Params, train: Dataset) -> dict[str, Any]: ...

    def baseline_features(self, split: Dataset) -> np.ndarray: ...

    def extra_evaluate(self, params: Params, result: dict[str, Any], plots_dir: Path,
                       scores: dict[str, tuple[np.ndarray, np.ndarray]],
                       models: dict[str, LoadedModel]) -> tuple[str, list[str]]: ...

    def read_scoring_input(self, urls: list[str], ip: Any, cache: Path) -> ScoringInput: ...

    def score_frame(self, loaded: LoadedModel, frame: pl.DataFrame) -> pl.DataFrame: ...

    def key_columns(self, ip: Any) -> list[str]: ...

    def score_summary(self, out: pl.DataFrame, notes: dict[str, Any],
                      output: Path) -> tuple[dict[str, Any], dict[str, bytes]]: ...


@runtime_checkable
class FieldDomain(Domain, Protocol):
    """A domain whose items are fields on a grid over time, predicted step by step (turbulence)."""

    def evaluate_models(self, params: Params, models: dict[str, LoadedModel],
                        plots_dir: Path) -> tuple[dict[str, Any], str, list[str]]: ...

    def score_fields(self, params: Params, model_uri: str, input_url: str, output: str | Path,
                     width: float | None = None) -> dict[str, Any]: ...

    def predict_array(self, loaded: LoadedModel, model_input: Any) -> np.ndarray: ...


# ============================================================================ defaults of the optional hooks
class DomainDefaults(abc.ABC):
    """Defaults of the optional hooks every domain may override (the one place they live).

    Abstract: a subclass that forgets :meth:`model_config` (the one hook without a default) fails at
    construction, naming it, rather than at training time.
    """

    name: str
    kind: ClassVar[Kind]

    def load_schema(self) -> dict[str, Any]:
        """What preprocess fitted and recorded: ``data/processed/<domain>/schema.json``."""
        return store.read_json(store.domain_paths(self.name).processed / "schema.json")

    @abc.abstractmethod
    def model_config(self, params: Params, schema: dict[str, Any]) -> dict[str, Any]:
        """The teacher's architecture config from the params and the fitted schema (required)."""

    def build_model(self, params: Params, schema: dict[str, Any]) -> nn.Module:
        """The teacher, untrained: ``models.build("<domain>/<arch>", model_config(...))``."""
        import models  # lazy: models imports torch, and params loading imports this module

        return models.build(f"{self.name}/{params.section('train', self.name).model.arch}",
                            self.model_config(params, schema))

    def extra_train(self, params: Params, out: Path, run: StageRun | None,
                    baselines: dict[str, Any]) -> dict[str, Any]:
        """Nothing more to train beside the teacher and the baselines."""
        return {}

    def save_assets(self, folder: Path, schema: dict[str, Any]) -> None:
        """A model folder needs nothing besides its weights and config."""
        return  # deliberately nothing (an optional hook, not an abstract one)

    def calibrate(self, folder: Path, model: nn.Module) -> dict[str, Any] | None:
        """Nothing chosen on validation for a compressed variant's folder (netflow: its own decision threshold)."""
        return None

    def input_example(self, loaded: LoadedModel) -> InputExample | None:
        """No example: the registered model is logged without a signature (say which inputs it takes)."""
        return None


class ClassificationDefaults(DomainDefaults):
    """Defaults of a classification domain's optional hooks."""

    kind: ClassVar[Kind] = "classification"
    score_per_input_row: bool = True
    score_input_expands_itself: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The two baseline hooks come as a pair: a domain that fits baselines must say what they read, checked
        # when the domain class is defined rather than when its first baseline is scored.
        super().__init_subclass__(**kwargs)
        if (cls.fit_baselines is not ClassificationDefaults.fit_baselines
                and cls.baseline_features is ClassificationDefaults.baseline_features):
            raise TypeError(f"{cls.__name__} overrides fit_baselines but not baseline_features: the fitted "
                            "baselines need the features they read (one row per item of a split)")

    def fit_baselines(self, params: Params, train: Dataset) -> dict[str, Any]:
        """No scikit-learn baselines."""
        return {}

    def baseline_features(self, split: Dataset) -> np.ndarray:
        """No baselines, no features: ``(len(split), 0)`` (a domain that fits baselines overrides this)."""
        import numpy as np  # lazy: this module stays import-light (params loading imports it)

        return np.empty((len(split), 0), dtype=np.float32)

    def extra_evaluate(self, params: Params, result: dict[str, Any], plots_dir: Path,
                       scores: dict[str, tuple[np.ndarray, np.ndarray]],
                       models: dict[str, LoadedModel]) -> tuple[str, list[str]]:
        """No report section beyond the shared table, per-class results, ROC and confusion matrices."""
        return "", []

    def key_columns(self, ip: Any) -> list[str]:
        """No input column is copied beside the predictions."""
        return []

    def score_summary(self, out: pl.DataFrame, notes: dict[str, Any],
                      output: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
        """No file beside the predictions."""
        return {}, {}


class FieldDefaults(DomainDefaults):
    """Defaults of a field domain's optional hooks."""

    kind: ClassVar[Kind] = "field"


# ============================================================================ lookup
_ROOT = Path(__file__).resolve().parent


def names() -> tuple[str, ...]:
    """Every domain this build knows: the packages of tasks/domains/ with a ``domain.py``, sorted."""
    return tuple(sorted(p.parent.name for p in _ROOT.glob("*/domain.py")))


def check(name: str) -> None:
    """Raise :class:`UnknownDomainError` unless ``name`` is a domain (nothing of it is imported)."""
    if name not in names():
        raise UnknownDomainError(f"unknown domain {name!r}; known domains: {', '.join(names())}")


def params_of(name: str) -> DomainParams:
    """The params sections of one domain (``tasks/domains/<name>/params.py``'s ``PARAMS``)."""
    check(name)
    return importlib.import_module(f"tasks.domains.{name}.params").PARAMS


def get(name: str) -> ClassificationDomain | FieldDomain:
    """The domain object of ``name`` (``tasks/domains/<name>/domain.py``'s ``DOMAIN``).

    Raises:
        UnknownDomainError: names the known domains.
    """
    check(name)
    return importlib.import_module(f"tasks.domains.{name}.domain").DOMAIN
