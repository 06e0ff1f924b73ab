"""Epoching of the ``eeg`` domain: filtering, resampling, cutting into epochs or windows, rejection.

The preprocess stage (:func:`tasks.domains.eeg.preprocess`) and scoring
(:func:`tasks.domains.eeg.scoring.score_frame`) turn every recording into :class:`Epochs`:
:func:`epoch_recording` for a continuous recording (epochs around its events, or
consecutive windows labelled by the annotations covering them), :func:`epoch_set` for
already-epoched data (MAT files, ASCII segments; optionally cut into windows). Both
notch, band-pass and resample with MNE's filters (:func:`_filter_array`) and drop flat
or saturated epochs (:func:`_reject`), counting what they dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tasks.domains.eeg.data import EEGDataError
from tasks.domains.eeg.params import EEGPreprocess, EEGSpec
from tasks.domains.eeg.readers import EpochSet, Recording

UNITS = {"V": 1e6, "mV": 1e3, "uV": 1.0}  # source unit -> uV


@dataclass
class Epochs:
    """Epochs of one recording after filtering, resampling and rejection."""

    x: np.ndarray  # (n, C, T) float32 uV
    labels: np.ndarray  # (n,) int class index
    onsets_s: np.ndarray  # (n,) epoch start (s) in the recording
    groups: np.ndarray  # (n,) int: epochs of one source segment share a group (never split across folds)
    rejected: dict[str, int]


def _reject(x_filtered: np.ndarray, x_unfiltered: np.ndarray | None, pp: EEGPreprocess) -> tuple[np.ndarray, dict]:
    """Keep-mask and counts: flat (any channel's peak-to-peak < flat_uv) or saturated (|x| >= saturation_uv)."""
    ptp = x_filtered.max(axis=-1) - x_filtered.min(axis=-1)  # (n, C)
    flat = (ptp < pp.flat_uv).any(axis=1)
    if pp.saturation_uv is not None and x_unfiltered is not None:
        saturated = (np.abs(x_unfiltered) >= pp.saturation_uv).any(axis=(1, 2)) & ~flat
    else:
        saturated = np.zeros(len(x_filtered), bool)
    return ~(flat | saturated), {"flat": int(flat.sum()), "saturated": int(saturated.sum())}


def _filter_array(x: np.ndarray, sfreq: float, pp: EEGPreprocess) -> tuple[np.ndarray, float]:
    """Notch, band-pass and resample an array along its last axis (MNE's FIR filters and FFT resampling)."""
    import mne  # lazy: MNE is slow to import; only filtering needs it

    x = x.astype(np.float64)
    if pp.notch_hz is not None and pp.notch_hz < sfreq / 2:
        freqs = np.arange(pp.notch_hz, sfreq / 2, pp.notch_hz)
        x = mne.filter.notch_filter(x, sfreq, freqs, verbose="error")
    if pp.l_freq is not None or pp.h_freq is not None:
        h = pp.h_freq if pp.h_freq is None or pp.h_freq < sfreq / 2 else None
        x = mne.filter.filter_data(x, sfreq, pp.l_freq, h, verbose="error")
    if pp.sfreq is not None and not math.isclose(pp.sfreq, sfreq):
        x = mne.filter.resample(x, up=pp.sfreq, down=sfreq, verbose="error")
        sfreq = float(pp.sfreq)
    return x, sfreq


def epoch_recording(rec: Recording, channels: list[str], pp: EEGPreprocess, spec: EEGSpec) -> Epochs:
    """Filter, resample and cut one continuous recording into epochs (events) or windows."""
    raw = rec.raw
    missing = [c for c in channels if c not in raw.ch_names]
    if missing:
        raise EEGDataError(f"{rec.source}: channels {missing} not in the recording (it has {raw.ch_names})")
    sf0 = float(raw.info["sfreq"])
    data0 = raw.get_data(picks=channels) * 1e6  # (C, N) uV, before filtering (for the saturation check)
    data, sf = _filter_array(data0, sf0, pp)
    classes = spec.classes
    if pp.paradigm == "events":
        starts_s = rec.onsets / sf0 + pp.tmin
        labels = np.array([classes.index(lab) for lab in rec.labels], dtype=np.int64)
        n_t = int(round((pp.tmax - pp.tmin) * sf)) + 1
    else:
        step = pp.window_step_s or pp.window_s
        n_t = int(round(pp.window_s * sf))
        dur = data.shape[1] / sf
        starts_s = np.arange(0.0, dur - pp.window_s + 1e-9, step)
        labels = _window_labels(raw, starts_s, pp.window_s, spec, rec.source)
    i0 = np.round(starts_s * sf).astype(np.int64)
    j0 = np.round(starts_s * sf0).astype(np.int64)
    n_t0 = int(round(n_t * sf0 / sf))
    inside = (i0 >= 0) & (i0 + n_t <= data.shape[1]) & (j0 >= 0) & (j0 + n_t0 <= data0.shape[1])
    i0, j0, labels, starts_s = i0[inside], j0[inside], labels[inside], starts_s[inside]
    x = np.stack([data[:, i : i + n_t] for i in i0]) if len(i0) else np.zeros((0, len(channels), n_t))
    x0 = np.stack([data0[:, j : j + n_t0] for j in j0]) if len(j0) else None
    keep, counts = _reject(x, x0, pp)
    counts["out_of_bounds"] = int((~inside).sum())
    return Epochs(x[keep].astype(np.float32), labels[keep], starts_s[keep], np.arange(int(keep.sum())), counts)


def _window_labels(raw, starts_s: np.ndarray, width: float, spec: EEGSpec, source: str) -> np.ndarray:
    """Class of each window: the mapped annotation covering most of it (> half), else the background class."""
    ann = [(a["onset"] - raw.first_time if raw.first_time else a["onset"], a["duration"],
            spec.event_map.get(a["description"])) for a in raw.annotations]
    ann = [(o, d, c) for o, d, c in ann if c is not None]
    labels = np.full(len(starts_s), -1, dtype=np.int64)
    if spec.background_class is not None:
        labels[:] = spec.classes.index(spec.background_class)
    cover = np.zeros(len(starts_s))
    for onset, duration, cls in ann:
        overlap = np.clip(np.minimum(starts_s + width, onset + max(duration, 1e-9)) - np.maximum(starts_s, onset),
                          0, None)
        better = (overlap > width / 2) & (overlap > cover)
        labels[better] = spec.classes.index(cls)
        cover = np.maximum(cover, overlap)
    if (labels < 0).any() and spec.background_class is None:
        # Windows no event covers have no class without a background class: drop them, loudly.
        print(f"eeg preprocess: {source}: {(labels < 0).sum()} windows not covered by an event were dropped "
              "(set ingest.eeg.spec.background_class to keep them)")
    return labels


def epoch_set(es: EpochSet, channels: list[str], pp: EEGPreprocess, spec: EEGSpec,
              group_offset: int) -> Epochs:
    """Filter, resample and (optionally) cut already-epoched segments (MAT, ASCII) into windows."""
    idx = [es.ch_names.index(c) for c in channels if c in es.ch_names]
    if len(idx) != len(channels):
        raise EEGDataError(f"{es.source}: channels {[c for c in channels if c not in es.ch_names]} missing "
                           f"(it has {es.ch_names})")
    x0 = es.data[:, idx, :] * UNITS[spec.epoch_units]  # (n, C, T) uV
    x, sf = _filter_array(x0, es.sfreq, pp)
    labels = np.array([spec.classes.index(lab) for lab in es.labels], dtype=np.int64)
    groups = np.arange(len(x)) + group_offset
    onsets = np.zeros(len(x))
    if pp.split_segments:
        w = int(round(pp.window_s * sf))
        step = int(round((pp.window_step_s or pp.window_s) * sf))
        starts = np.arange(0, x.shape[-1] - w + 1, step)
        if len(starts) == 0:
            raise EEGDataError(f"{es.source}: segments of {x.shape[-1] / sf:.2f} s are shorter than "
                               f"preprocess.eeg.window_s={pp.window_s}")
        w0 = int(round(w * es.sfreq / sf))
        x = np.concatenate([x[:, None, :, s : s + w] for s in starts], axis=1).reshape(-1, x.shape[1], w)
        s0 = np.round(starts * es.sfreq / sf).astype(int)
        x0 = np.concatenate([x0[:, None, :, s : s + w0] for s in s0], axis=1).reshape(-1, x0.shape[1], w0)
        labels, groups = np.repeat(labels, len(starts)), np.repeat(groups, len(starts))
        onsets = np.tile(starts / sf, len(es.labels))
    keep, counts = _reject(x, x0, pp)
    counts["out_of_bounds"] = 0
    return Epochs(x[keep].astype(np.float32), labels[keep], onsets[keep], groups[keep], counts)
