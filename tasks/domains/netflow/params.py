"""Params of the ``netflow`` domain: its sections of params.yaml (``ingest.netflow``, ``train.netflow``, ...).

Assembled with the other domains' into the one ``Params`` model by :mod:`tasks.params`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tasks.domains.netflow.synthetic import NF_V2_CATEGORICAL, NF_V2_NUMERIC
from tasks.params_base import (
    ClassificationEvaluate,
    ClassificationTrain,
    CompressSection,
    DomainParams,
    SourceSection,
    Strict,
)


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
    """Extra columns carried into data/raw as text when the source has them (e.g. IPV4_SRC_ADDR for analysis, a
    timestamp for ``preprocess.netflow.sort_by``, a host for ``group_by``); not model inputs. A keep column that
    no file has is left out; one that only some files of a glob have is empty ("") in the others."""
    required_columns: list[str] = Field(default_factory=list)
    """Columns every source file must have (besides the fields and the label), e.g. a keep column the split
    groups by: a file without one is refused, naming it. Keep columns are optional unless listed here."""

    @model_validator(mode="after")
    def _disjoint(self) -> FlowDatasetSpec:
        both = sorted(set(self.numeric_fields) & set(self.categorical_fields))
        if both:
            raise ValueError(f"fields listed as both numeric and categorical: {both}")
        if self.label_column in self.numeric_fields or self.label_column in self.categorical_fields:
            raise ValueError(f"label_column {self.label_column!r} is also listed as a feature")
        reserved = sorted({"source_file", "label", "is_attack"}
                          & {*self.numeric_fields, *self.categorical_fields, *self.keep_columns})
        if reserved:
            raise ValueError(f"column name(s) {reserved} are written by ingest itself (the source file, the class "
                             "name and the attack flag of every row); rename the source's column with `renames`")
        return self


class NetflowSynthetic(Strict):
    n_flows: int = Field(60_000, ge=1_000)
    seed: int = 0
    n_files: int = Field(2, ge=1)
    attack_fraction: float = Field(0.3, gt=0.0, lt=1.0)


class NetflowIngest(SourceSection):
    source: str = "synthetic"
    """``synthetic`` (the offline default generator) or an fsspec URL / glob of CSV, CSV.gz or Parquet files."""
    format: Literal["auto", "csv", "parquet"] = "auto"
    synthetic: NetflowSynthetic = Field(default_factory=NetflowSynthetic)
    spec: FlowDatasetSpec = Field(default_factory=FlowDatasetSpec)
    max_rows: int | None = Field(None, ge=1)
    """Keep only the first N rows (in file order), for quick looks at big sources."""
    max_extracted_bytes: int = Field(16 * 2**30, ge=1)
    """A ``.gz`` source that unpacks to more bytes than this is refused while it is unpacked (16 GiB)."""
    max_compression_ratio: float = Field(100.0, gt=1.0)
    """A ``.gz`` source that unpacks to more than this many times its size is refused as a decompression bomb
    (flow CSVs compress about 5-15:1); outputs up to 1 MiB are exempt."""
    test_source: str | None = None
    """A file, glob or fsspec URL that IS the test set (a dataset shipped as train and test files): read with the
    same spec, its columns must equal the training source's (else an error naming the columns that differ), and
    written apart (``data/raw/netflow/test_flows.parquet``). Preprocess then takes only the validation slice from
    ``source`` and scores every test row (``preprocess.netflow.test_fraction`` is not used). None: the test rows
    come out of ``source`` by ``preprocess.netflow.split``."""
    one_capture: bool = False
    """The files of a glob are consecutive parts of ONE capture in file-name order (a capture cut into chunks):
    windows may run from one file into the next. False (the default): each file is a capture of its own, and no
    window crosses from one file into another. The synthetic source is always one capture."""
    allow_missing_benign: bool = False
    """A source where no row has the spec's ``benign_value`` is an error (a case or spelling difference would
    silently make every row an attack); true accepts it (an all-attack capture) with a warning."""



class NetflowPreprocess(Strict):
    """How the flows become training windows and splits (:mod:`.preprocess` documents each strategy).

    Windows never cross a file (unless ``ingest.netflow.one_capture``), a group (``split: group``) or a
    stratified block; rows that only serve as context (the first W-1 of each such run) are counted in
    ``schema.json``. A separate test source (``ingest.netflow.test_source``) is scored in full: the first W-1 rows
    of each of its files get windows padded with copies of the file's first row, as ``score`` does.
    """

    n_categorical_levels: int = Field(32, ge=1)
    window: int = Field(8, ge=1)
    split: Literal["chronological", "stratified", "group"] = "chronological"
    """``chronological``: train | validation | test in row order (after ``sort_by``), the test rows last.
    ``stratified``: each file cut into contiguous blocks of ``block_rows`` rows, the blocks shuffled per class
    (``seed``) and dealt to the splits by the fractions, so every class with enough blocks is in every split
    (windows never span two blocks: no row is in a training window and a test window). ``group``: whole groups
    of ``group_by`` (a file, a host, a subject) shuffled (``seed``) and dealt to the splits by their rows."""
    group_by: str | None = None
    """The column whose values are the groups of ``split: group`` (``source_file``: the file each row came from,
    or a keep/categorical column of the spec)."""
    sort_by: str | None = None
    """A column the rows are sorted by (stable) before they are split and windowed, e.g. a timestamp kept with
    ``ingest.netflow.spec.keep_columns``: as numbers when every value is one, else as text (ISO dates sort)."""
    seed: int = 0
    """Seed of the stratified / group shuffles."""
    block_rows: int | None = Field(None, ge=1)
    """Rows per block of ``split: stratified`` (None: 1 for window 1, else 16 x window)."""
    test_fraction: float = Field(0.1, gt=0.0, lt=0.9)
    """The share of rows held out for evaluation (chronological: the last rows). Not used with
    ``ingest.netflow.test_source``."""
    val_fraction: float = Field(0.1, ge=0.0, lt=0.9)
    """The validation share (chronological: the rows just before the test rows; with a test source, the last
    rows of the training source)."""
    max_abs_value: float = Field(1e9, gt=0)
    """Numeric values beyond this magnitude (and non-finite ones) are set to 0, as the reference does."""
    unseen_classes: Literal["error", "warn"] = "error"
    """A class with windows in the validation or test split but none in training (the model cannot learn it), or a
    validation / test split without a benign window (its false-alarm rate cannot be measured; e.g. per-class files
    split chronologically): ``error`` names the classes and their windows per split; ``warn`` warns and goes on."""
    missing_classes: Literal["warn", "error"] = "warn"
    """An attack class that training has but the validation or test split lacks (its recall there is unknown):
    ``warn`` (the default: small captures often miss a rare class in a short slice) logs a warning naming the
    classes and their windows per split; ``error`` refuses."""

    @model_validator(mode="after")
    def _fractions(self) -> NetflowPreprocess:
        if self.test_fraction + self.val_fraction >= 0.9:
            raise ValueError("test_fraction + val_fraction must leave at least 10% of rows for training")
        if self.split == "group" and not self.group_by:
            raise ValueError("split 'group' needs group_by: the column whose values are the groups "
                             "(e.g. source_file, a host or subject column)")
        return self



class NetflowTrain(ClassificationTrain):
    """FlowTransformer through the shared loop (class-balanced batches, as the reference), plus single-flow
    scikit-learn baselines."""

    defaults = {"model": {"arch": "flowtransformer"}}
    baselines: list[Literal["logreg", "hgb"]] = Field(default_factory=lambda: ["logreg", "hgb"])
    baseline_max_rows: int = Field(200_000, ge=100)
    """Single-flow baselines are fitted on at most this many (most recent) training rows."""
    threshold: float | str = "f1_macro"
    """How the decision threshold on P(attack) is set, on the VALIDATION split's scores when the model folder is
    written, then stored in its ``config.json`` (evaluate, the registered pyfunc and scoring apply it):
    a number in (0, 1) (fixed, e.g. 0.5, the reference's), ``f1_macro`` (the macro-F1 over the task's classes),
    ``f1_benign`` (the benign class's F1), ``fpr:<rate>`` (the lowest threshold flagging at most that share of
    benign flows), or ``prior`` (no search: the shift from the class-balanced batches to the training split's
    class prior). A multi-class model applies it to its most probable attack family against Benign,
    P(family) / (P(Benign) + P(family)): below it a flow is benign, else that family (0.5 is the argmax)."""

    @field_validator("threshold")
    @classmethod
    def _threshold_rule(cls, v: float | str) -> float | str:
        if isinstance(v, str):
            try:  # "0.5" from --set or YAML quoting is the number
                v = float(v)
            except ValueError:
                pass
        if isinstance(v, float | int):
            if not 0.0 < v < 1.0:
                raise ValueError(f"train.netflow.threshold {v!r}: a fixed threshold must lie in (0, 1)")
            return float(v)
        if v in ("f1_macro", "f1_benign", "prior"):
            return v
        if v.startswith("fpr:"):
            try:
                rate = float(v[4:])
            except ValueError:
                rate = -1.0
            if 0.0 <= rate <= 1.0:
                return v
            raise ValueError(f"train.netflow.threshold {v!r}: the rate after 'fpr:' must be a number in [0, 1]")
        raise ValueError(f"train.netflow.threshold {v!r}: use a number in (0, 1), f1_macro, f1_benign, prior "
                         "or fpr:<rate>")


class NetflowCompress(CompressSection):
    """The student: one encoder block of half the width, a narrower MLP (the teacher: two blocks, 128, [128])."""

    defaults = {"distill": {"student": {"n_layers": 1, "internal_size": 64, "mlp_sizes": [64]}}}


PARAMS = DomainParams(ingest=NetflowIngest, preprocess=NetflowPreprocess, train=NetflowTrain,
                      compress=NetflowCompress, evaluate=ClassificationEvaluate)
