"""Params of the ``eeg`` domain: its sections of params.yaml (``ingest.eeg``, ``train.eeg``, ...).

Assembled with the other domains' into the one ``Params`` model by :mod:`tasks.params`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from tasks.params_base import ClassificationTrain, CompressSection, DomainParams, SourceSection, Strict


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
    """The variable holding the data: a name (struct fields with dots, ``eeg.X``); ``*``, the one variable of
    the file that no other key names (MATLAB's ``__header__``-style metadata ignored); a glob over the file's
    variable names (``seg_*``); or ``re:<regex>`` (full match). A pattern must match exactly one variable."""
    label_key: str | None = "y"
    """The variable holding one label per trial; null: every segment of a file takes the class of its path,
    the parent folder's name (``Z/Z001.mat``) or ``label_regex``, mapped through ``spec.label_map``."""
    label_regex: str | None = None
    """With ``label_key: null``: a regex searched in each file's path relative to the source (``Z/Z001.mat``);
    its one group (or the group named ``label``) is the label. None: the parent folder's name."""
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
        if not self.data_key.strip():
            raise ValueError("data_key is empty; name the data variable, or '*' for the only one in the file")
        if self.data_key.startswith("re:"):
            try:
                re.compile(self.data_key[3:])
            except re.error as exc:
                raise ValueError(f"data_key {self.data_key!r} is not a valid regular expression: {exc}") from None
        if self.label_regex is not None:
            if self.label_key is not None:
                raise ValueError(f"label_regex {self.label_regex!r} applies only with label_key: null (labels from "
                                 f"the path), but label_key is {self.label_key!r}")
            try:
                rx = re.compile(self.label_regex)
            except re.error as exc:
                raise ValueError(f"label_regex {self.label_regex!r} is not a valid regular expression: {exc}") \
                    from None
            if rx.groups != 1 and "label" not in rx.groupindex:
                raise ValueError(f"label_regex {self.label_regex!r} must have one group (or a group named "
                                 f"'label'), it has {rx.groups}")
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
    """MAT label values / ASCII folder names (MAT folder names or ``mat.label_regex`` labels under
    ``mat.label_key: null``) -> class (epoched sources). A label from a file is an error when not in it; an
    ASCII or path-labelled MAT file whose folder (label) is not in it is skipped (a subset of the classes)."""
    mat: MatLayout = Field(default_factory=MatLayout)
    ascii_sfreq: float = Field(173.61, gt=0)
    """Sampling rate of single-channel ASCII segments (the Bonn set: 173.61 Hz)."""
    epoch_units: Literal["V", "mV", "uV"] = "uV"
    """Units of the numbers in MAT / ASCII files (EDF-family files carry their own units); integer MAT data
    (int16 ADC counts, ...) are taken as numbers in these units too, with no scale factor."""
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


class EEGIngest(SourceSection):
    source: str | list[str] = "synthetic"
    """``synthetic``, or files / folders / globs / fsspec URLs / .zip archives of EDF, BDF, GDF, FIF,
    BrainVision, MAT or ASCII-segment recordings."""
    synthetic: EEGSynthetic = Field(default_factory=EEGSynthetic)
    spec: EEGSpec = Field(default_factory=EEGSpec)
    max_extracted_bytes: int = Field(16 * 2**30, ge=1)
    """A ``.zip`` source whose entries unpack to more bytes than this (declared or counted) is refused (16 GiB)."""
    max_compression_ratio: float = Field(100.0, gt=1.0)
    """A zip entry that unpacks to more than this many times its compressed size is refused as a decompression
    bomb (EEG compresses about 2-5:1); entries up to 1 MiB are exempt."""
    max_array_bytes: int = Field(8 * 2**30, ge=1)
    """A MATLAB v7.3 (HDF5) variable whose declared shape x item size is larger is refused before it is read,
    as is one larger than the memory available (8 GiB)."""



class EEGPreprocess(Strict):
    """Filtering, resampling, epoching, rejection and alignment (MNE filters; tasks/domains/eeg/preprocess.py, epochs.py)."""

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



class EEGTrain(ClassificationTrain):
    """DBConformer (the teacher) through the shared loop, and the evaluation protocol (its baselines are the
    neural networks of ``protocol.models``, compared fold by fold)."""

    defaults = {"model": {"arch": "dbconformer"}, "keep": "last", "balanced_batches": False}
    # keep: the reference reports the last epoch (no validation split, no early stopping);
    # balanced_batches: the reference draws shuffled batches (class-balanced ones are an option).
    task: Literal["multiclass"] = "multiclass"
    """Cross-entropy over one logit per class, as the reference (two logits for the binary tasks)."""
    protocol: EEGProtocol = Field(default_factory=EEGProtocol)

    def model_specs(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """The teacher's config and every protocol model override (``protocol.configs.<arch>``)."""
        return {**super().model_specs(), **{f"protocol.configs.{arch}": (arch, cfg)
                                            for arch, cfg in self.protocol.configs.items()}}


class EEGCompress(CompressSection):
    """The student: one transformer block per branch, half the width (the teacher: two and two, 40 wide)."""

    defaults = {"latency_repeats": 30,
                "distill": {"student": {"tem_depth": 1, "chn_depth": 1, "emb_size": 20, "n_heads": 5}}}


PARAMS = DomainParams(ingest=EEGIngest, preprocess=EEGPreprocess, train=EEGTrain, compress=EEGCompress)
