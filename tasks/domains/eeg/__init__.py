"""The ``eeg`` domain: ingest, preprocess, the evaluation protocols and the hooks of the generic stages.

* **ingest** brings the recordings into ``data/raw/eeg/source/`` (synthetic EDF+ by
  default; any EDF/BDF/GDF/FIF/BrainVision/MAT/ASCII files, folders, globs, fsspec
  URLs or zip archives otherwise; readers in :mod:`tasks.domains.eeg.io`), reads every one
  to validate it (events present, channels consistent, sampling rates logged) and
  writes ``manifest.json``. A bad file fails the stage with its name; the previous
  ``data/raw/eeg`` stays untouched.
* **preprocess** picks channels, notches and band-passes (MNE FIR filters, zero
  phase), resamples, cuts epochs around events (or consecutive windows of continuous
  recordings), rejects flat or saturated epochs (counted in ``schema.json``) and
  writes ``data/processed/eeg/``: ``epochs.safetensors`` (unaligned, uV),
  ``meta.parquet`` (subject, session, run, recording, label, onset, group, split),
  ``train.safetensors`` / ``test.safetensors`` (the deployment split, Euclidean-aligned)
  and ``schema.json``.
* **train** (generic loop, :mod:`tasks.train`) fits the DBConformer teacher on the
  deployment split; :func:`extra_train` then runs the evaluation protocol (CO, k-fold
  or LOSO; every model x seed x fold; alignment per fold as the reference) and saves
  every test prediction to ``artifacts/eeg/baselines/protocol.parquet``.
* **evaluate** (generic) scores the teacher and its compressed versions on the
  deployment test split; :func:`extra_evaluate` adds the protocol summary (mean and
  std over subjects and seeds, chance level), the per-subject table, the bar plot, the
  EA ablation and the channel-attention topomap.

Euclidean alignment of the deployment split (a deliberate, documented choice): the
training trials of each subject are aligned offline with that subject's reference;
the held-out trials are aligned online (incremental, causal), as a new recording is
at scoring time. The protocols follow the reference instead (see :func:`align_fold`).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks import store
from tasks.domains.eeg import io as eeg_io
from tasks.domains.eeg import protocol as eeg_protocol
from tasks.params import EEGPreprocess, EEGSpec, Params

DOMAIN = "eeg"
UNITS = {"V": 1e6, "mV": 1e3, "uV": 1.0}  # source unit -> uV
CONTINUOUS = ("edf", "bdf", "gdf", "fif", "brainvision")


class EEGDataError(ValueError):
    """The recordings cannot be combined or epoched as configured; the message names file and field."""


# ============================================================================ ingest
def _synthetic(out: Path, params: Params) -> list[Path]:
    from tasks.domains.eeg.synthetic import generate

    s = params.ingest.eeg.synthetic
    return generate(out, n_subjects=s.n_subjects, n_sessions=s.n_sessions, trials_per_class=s.trials_per_class,
                    mode=s.mode, seed=s.seed, sfreq=s.sfreq, recording_s=s.recording_s)


def _read_continuous(path: Path, fmt: str, spec: EEGSpec) -> eeg_io.Recording:
    return eeg_io.read_recording(path, fmt, event_map=spec.event_map, stim_channel=spec.stim_channel,
                                 allow_empty=spec.background_class is not None)


def _read_mat(path: Path, spec: EEGSpec) -> eeg_io.EpochSet:
    m = spec.mat
    return eeg_io.read_mat(path, data_key=m.data_key, label_key=m.label_key, sfreq=m.sfreq, sfreq_key=m.sfreq_key,
                           layout=m.layout, ch_names_key=m.ch_names_key, label_map=spec.label_map or None)


def read_sources(folder: Path, spec: EEGSpec) -> list[tuple[eeg_io.SourceInfo, Any]]:
    """Read every recording under ``folder`` with ``spec``: ``[(info, Recording | EpochSet)]`` in subject order.

    ASCII segments are read together (one :class:`~tasks.eeg_io.EpochSet` per folder label
    set), since each file is one single-channel trial.
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file() and eeg_io.format_of(p) is not None)
    infos = [eeg_io.describe(p, folder, spec.name_pattern) for p in files]
    out: list[tuple[eeg_io.SourceInfo, Any]] = []
    ascii_infos = [i for i in infos if i.format == "ascii"]
    for info in infos:
        if info.format in CONTINUOUS:
            out.append((info, _read_continuous(info.path, info.format, spec)))
        elif info.format == "mat":
            out.append((info, _read_mat(info.path, spec)))
    if ascii_infos:
        es = eeg_io.read_ascii_segments([i.path for i in ascii_infos], folder, sfreq=spec.ascii_sfreq,
                                        label_map=spec.label_map or None)
        first = ascii_infos[0]
        out.append((eeg_io.SourceInfo(folder, "ascii", first.subject, "1", "1", None), es))
    if not out:
        raise eeg_io.EEGInputError(f"{folder}: no EEG recordings found")
    out.sort(key=lambda item: (item[0].subject, item[0].session, item[0].run, str(item[0].path)))
    return out


def _channels_of(obj) -> list[str]:
    return list(obj.raw.ch_names) if isinstance(obj, eeg_io.Recording) else list(obj.ch_names)


def _sfreq_of(obj) -> float:
    return float(obj.raw.info["sfreq"]) if isinstance(obj, eeg_io.Recording) else float(obj.sfreq)


def common_channels(items: list[tuple[eeg_io.SourceInfo, Any]], policy: str, root: Path) -> list[str]:
    """The channels every recording has (in the first recording's order).

    Raises:
        EEGDataError: under ``policy="error"`` when recordings differ; names the files and the channels.
    """
    first_info, first = items[0]
    ref = _channels_of(first)
    ref_set = set(ref)
    common = ref_set.copy()
    problems = []
    for info, obj in items[1:]:
        chans = set(_channels_of(obj))
        common &= chans
        if chans != ref_set:
            missing, extra = sorted(ref_set - chans), sorted(chans - ref_set)
            problems.append(f"{info.path.relative_to(root)}: missing {missing}, extra {extra}")
    if problems and policy == "error":
        raise EEGDataError(
            f"channels differ between recordings (compared with {first_info.path.relative_to(root)}): "
            + "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            + ". Set ingest.eeg.spec.channel_policy=common to keep the shared channels, "
            "or preprocess.eeg.channels to choose them.")
    if not common:
        raise EEGDataError("the recordings share no channel")
    return [c for c in ref if c in common]


def ingest(params: Params, run=None) -> dict[str, Any]:
    """Fetch (or generate) the recordings, read each one to validate it, and write the manifest.

    Output folder ``data/raw/eeg/``: ``source/`` (the files, in their own format) and
    ``manifest.json`` (per file: format, subject, session, run, sampling rate, channels,
    events per class). Replaced atomically: a failure leaves the previous folder as it was.
    """
    p = params.ingest.eeg
    spec = p.spec
    paths = store.domain_paths(DOMAIN)
    with store.atomic_dir(paths.raw) as out:
        src = out / "source"
        src.mkdir()
        if p.source == "synthetic":
            _synthetic(src, params)
            fingerprint: Any = {"synthetic": p.synthetic.model_dump()}
        else:
            with tempfile.TemporaryDirectory(dir=out) as cache:
                eeg_io.fetch_sources(p.source, src, Path(cache), retries=p.retries, delay_s=p.retry_delay_s)
            sources = [p.source] if isinstance(p.source, str) else list(p.source)
            fingerprint = [store.source_fingerprint(u) for u in sources if "*" not in u and not store.is_remote(u)]
        items = read_sources(src, spec)
        channels = common_channels(items, spec.channel_policy, src)
        rates = sorted({_sfreq_of(obj) for _, obj in items})
        if len(rates) > 1:
            print(f"eeg ingest: sampling rates differ between recordings {rates}; preprocess resamples them "
                  f"to preprocess.eeg.sfreq")
        files, totals = [], dict.fromkeys(spec.classes, 0)
        for info, obj in items:
            labels = obj.labels
            counts = {c: int(sum(1 for lab in labels if lab == c)) for c in spec.classes}
            for c, n in counts.items():
                totals[c] += n
            files.append({
                "path": str(info.path.relative_to(out)), "format": info.format, "subject": info.subject,
                "session": info.session, "run": info.run, "sfreq": _sfreq_of(obj),
                "n_channels": len(_channels_of(obj)), "events": counts,
                **({"n_segments": int(len(obj.labels))} if isinstance(obj, eeg_io.EpochSet) else
                   {"duration_s": round(obj.raw.n_times / obj.raw.info["sfreq"], 3)}),
            })
        if not any(totals.values()) and spec.background_class is None:
            raise EEGDataError(f"{p.source}: no labelled events in any recording")
        manifest = {
            "stage": "ingest", "domain": DOMAIN, "source": p.source, "fingerprint": fingerprint, "spec": spec.name,
            "files": files, "channels": channels, "sfreqs": rates, "class_counts": totals,
            "subjects": sorted({f["subject"] for f in files}),
            "outputs": {"source": store.content_hash(src)},
        }
        store.atomic_write_json(out / "manifest.json", manifest)
    if run is not None:
        run.log_params({"source": str(p.source), "spec": spec.name, "files": len(files)})
        run.log_metrics({"recordings": len(files), **{f"events.{k}": v for k, v in totals.items()}})
    return manifest


# ============================================================================ preprocess
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
    import mne

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


def epoch_recording(rec: eeg_io.Recording, channels: list[str], pp: EEGPreprocess, spec: EEGSpec) -> Epochs:
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


def epoch_set(es: eeg_io.EpochSet, channels: list[str], pp: EEGPreprocess, spec: EEGSpec,
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


def deployment_split(subjects: np.ndarray, labels: np.ndarray, groups: np.ndarray, test_fraction: float
                     ) -> np.ndarray:
    """Per subject, the CO rule: the first ceil((1 - f) n_class) trials of each class train, the rest test.

    Windows cut from one segment (same ``groups`` value) stay on one side.

    Returns:
        (n,) bool, True for test trials.
    """
    test = np.zeros(len(labels), bool)
    for s in np.unique(subjects):
        idx = np.flatnonzero(subjects == s)
        _, te = eeg_protocol.co_split_grouped(labels[idx], groups[idx], 1.0 - test_fraction)
        test[idx[te]] = True
    return test


def preprocess(params: Params, run=None) -> dict[str, Any]:
    """Epoch, filter, reject and align every recording of ``data/raw/eeg``; write ``data/processed/eeg``."""
    import polars as pl
    from safetensors.numpy import save_file

    pp = params.preprocess.eeg
    spec = params.ingest.eeg.spec
    paths = store.domain_paths(DOMAIN)
    manifest_path = paths.raw / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} does not exist: run ingest first (python -m tasks ingest eeg)")
    manifest = store.read_json(manifest_path)
    items = read_sources(paths.raw / "source", spec)
    channels = list(pp.channels) if pp.channels else list(manifest["channels"])
    rates = sorted({_sfreq_of(obj) for _, obj in items})
    if pp.sfreq is None and len(rates) > 1:
        raise EEGDataError(f"recordings have different sampling rates {rates}; set preprocess.eeg.sfreq to "
                           "resample them to one")
    if len(rates) > 1 or (pp.sfreq is not None and rates != [pp.sfreq]):
        print(f"eeg preprocess: resampling {rates} Hz -> {pp.sfreq} Hz")
    xs, rows, rejected = [], [], {"flat": 0, "saturated": 0, "out_of_bounds": 0}
    group_offset = 0
    from tqdm.auto import tqdm

    for info, obj in tqdm(items, desc="eeg preprocess", unit="recording", disable=None, leave=False):
        if isinstance(obj, eeg_io.Recording):
            ep = epoch_recording(obj, channels, pp, spec)
            ep.groups = ep.groups + group_offset
        else:
            ep = epoch_set(obj, channels, pp, spec, group_offset)
        group_offset = int(ep.groups.max()) + 1 if len(ep.groups) else group_offset
        for k, v in ep.rejected.items():
            rejected[k] += v
        xs.append(ep.x)
        n = len(ep.labels)
        rows.append(pl.DataFrame({
            "subject": [info.subject] * n, "session": [info.session] * n, "run": [info.run] * n,
            "recording": [str(info.path.relative_to(paths.raw / "source")) if info.path.is_file() else "."] * n,
            "label": ep.labels, "onset_s": ep.onsets_s, "group": ep.groups,
        }))
    x = np.concatenate(xs) if xs else np.zeros((0, len(channels), 1), np.float32)
    meta = pl.concat(rows)
    if len(meta) == 0:
        raise EEGDataError(f"no epochs left after rejection ({rejected}); check preprocess.eeg.tmin/tmax and the "
                           "flat/saturation thresholds")
    sf = float(pp.sfreq) if pp.sfreq is not None else rates[0]
    subjects = meta["subject"].to_numpy()
    labels = meta["label"].to_numpy()
    meta = meta.with_columns(pl.int_range(pl.len()).over("subject").alias("trial"))
    is_test = deployment_split(subjects, labels, meta["group"].to_numpy(), pp.test_fraction)
    meta = meta.with_columns(pl.Series("split", np.where(is_test, "test", "train")))
    # Deployment split: offline EA per subject on its training trials, online EA on held-out trials.
    if pp.ea:
        x_train = eeg_protocol.align_offline(x[~is_test], subjects[~is_test])
        x_test = eeg_protocol.align_online(x[is_test], subjects[is_test])
    else:
        x_train, x_test = x[~is_test], x[is_test]
    counts = {c: int((labels == i).sum()) for i, c in enumerate(spec.classes)}
    schema = {
        "domain": DOMAIN, "channels": channels, "sfreq": sf, "n_times": int(x.shape[-1]), "classes": spec.classes,
        "paradigm": pp.paradigm, "tmin": pp.tmin, "tmax": pp.tmax, "window_s": pp.window_s,
        "window_step_s": pp.window_step_s, "l_freq": pp.l_freq, "h_freq": pp.h_freq, "notch_hz": pp.notch_hz,
        "flat_uv": pp.flat_uv, "saturation_uv": pp.saturation_uv, "units": "uV", "ea": pp.ea,
        "event_map": spec.event_map, "stim_channel": spec.stim_channel, "background_class": spec.background_class,
        "n_epochs": int(len(meta)), "class_counts": counts, "rejected": rejected,
        "subjects": sorted(set(subjects.tolist())), "n_train": int((~is_test).sum()), "n_test": int(is_test.sum()),
        "source_sfreqs": rates,
    }
    with store.atomic_dir(paths.processed) as out:
        save_file({"x": np.ascontiguousarray(x)}, str(out / "epochs.safetensors"))
        save_file({"x": x_train, "y": labels[~is_test]}, str(out / "train.safetensors"))
        save_file({"x": x_test, "y": labels[is_test]}, str(out / "test.safetensors"))
        meta.write_parquet(out / "meta.parquet")
        store.atomic_write_json(out / "schema.json", schema)
    print(f"eeg preprocess: {len(meta)} epochs of {len(channels)} x {x.shape[-1]} at {sf:g} Hz from "
          f"{len(items)} recordings; rejected {rejected}")
    if run is not None:
        run.log_params({"channels": len(channels), "sfreq": sf, "n_times": int(x.shape[-1]), "paradigm": pp.paradigm})
        run.log_metrics({"epochs": len(meta), **{f"rejected.{k}": v for k, v in rejected.items()},
                         **{f"class.{k}": v for k, v in counts.items()}})
    return {"stage": "preprocess", "domain": DOMAIN, "epochs": int(len(meta)), "class_counts": counts,
            "rejected": rejected, "outputs": {"processed": store.content_hash(paths.processed)}}


# ============================================================================ datasets
class Trials:
    """EEG trials as the training loop wants them: ``labels`` and ``batch(idx) -> ((x,), y)``."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        import torch

        self.x = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))  # (N, C, T)
        self.labels = np.asarray(y, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: np.ndarray):
        import torch

        return (self.x[torch.as_tensor(idx)],), torch.as_tensor(self.labels[idx])


def load_schema(root: Path | None = None) -> dict:
    return store.read_json(store.domain_paths(DOMAIN, root).processed / "schema.json")


def load_split(name: str, task: str = "multiclass", root: Path | None = None) -> Trials:
    """The deployment split ``train`` or ``test`` (aligned), as :class:`Trials`."""
    from safetensors.numpy import load_file

    path = store.domain_paths(DOMAIN, root).processed / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run preprocess first (python -m tasks preprocess eeg)")
    t = load_file(str(path))
    return Trials(t["x"], t["y"])


# ============================================================================ hooks for the generic stages
def model_config(params: Params, schema: dict, arch: str | None = None, extra: dict | None = None) -> dict[str, Any]:
    """Registry config: params' config (or ``extra`` for a protocol model) plus the data's shape."""
    p = params.train.eeg
    cfg = dict(p.model.config) if arch is None or arch == p.model.arch else {}
    cfg.update(extra or {})
    cfg.update(n_chans=len(schema["channels"]), n_times=int(schema["n_times"]), sfreq=float(schema["sfreq"]),
               n_outputs=len(schema["classes"]))
    return cfg


def task_info(params: Params, schema: dict) -> dict[str, Any]:
    return {"task": "multiclass", "class_names": list(schema["classes"]), "negative_class": 0, "family_names": None,
            "column_labels": {"f1": f"F1 ({schema['classes'][-1]})", "benign_fpr": f"FPR ({schema['classes'][0]})"},
            "roc_label": f"{schema['classes'][-1]} vs {schema['classes'][0]}",
            "test_note": "epochs: per subject and class the last trials (deployment split"
                         + (", online Euclidean alignment)" if schema.get("ea") else ", no alignment)")}


# ============================================================================ protocols (train stage)
def align_fold(x: np.ndarray, subjects: np.ndarray, fold: eeg_protocol.Fold, protocol: str,
               ea: bool) -> tuple[np.ndarray, np.ndarray]:
    """Training and test arrays of one fold, aligned as the DBConformer reference does (models.md 1.5).

    * LOSO: offline EA per training subject; the test subject online (incremental).
    * CO / CV: offline EA on the training and on the test trials separately, then the
      online EA again on the already aligned test trials (the reference's double alignment).
    """
    xtr, xte = x[fold.train], x[fold.test]
    if not ea:
        return xtr, xte
    xtr = eeg_protocol.align_offline(xtr, subjects[fold.train])
    if protocol == "loso":
        return xtr, eeg_protocol.align_online(xte, subjects[fold.test])
    xte = eeg_protocol.align_offline(xte, subjects[fold.test])
    return xtr, eeg_protocol.align_online(xte, subjects[fold.test])


def protocol_variants(params: Params) -> list[tuple[str, str, bool]]:
    """(variant name, architecture, aligned) of every model the protocol fits."""
    pr = params.train.eeg.protocol
    out = [(m, m, pr.ea) for m in pr.models]
    if pr.ea_ablation and "dbconformer" in pr.models:
        out.append(("dbconformer-noEA" if pr.ea else "dbconformer-EA", "dbconformer", not pr.ea))
    return out


def run_protocol(params: Params, x: np.ndarray, subjects: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                 schema: dict, *, progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every variant x seed x fold of ``train.eeg.protocol`` on unaligned epochs ``x`` (N, C, T).

    Each fit is the generic loop (:func:`tasks.train.fit`) with the stage's settings
    (``protocol.epochs`` / ``lr`` / per-model ``loops`` override), no validation split and
    the last epoch kept, as the reference. Pure numpy/torch (no I/O), so the same function
    runs on any machine with the data in memory.

    Returns:
        ``(columns, info)``: the test predictions as columns (model, seed, fold, subject,
        index, y, p0..p{K-1}) and the run's description: folds, variants, seconds, and
        DBConformer's channel-attention weights on the test trials (mean over folds and
        seeds, overall and per class) for the topomap.
    """
    import torch
    from tqdm.auto import tqdm

    import models
    from tasks.train import fit, predict, probabilities

    p = params.train.eeg
    pr = p.protocol
    folds = eeg_protocol.protocol_folds(subjects, labels, pr.name, k=pr.k, pooled=pr.pooled, groups=groups)
    loop = p.model_copy(update={"epochs": pr.epochs or p.epochs, "lr": pr.lr or p.lr, "resume": False,
                                "keep": "last"})
    variants = protocol_variants(params)
    n_classes = len(schema["classes"])
    parts: list[dict[str, np.ndarray]] = []
    attention: dict[str, dict[str, list]] = {}
    seconds: dict[str, float] = {}
    bar = tqdm(total=len(variants) * len(pr.seeds) * len(folds), desc=f"eeg protocol {pr.name}", unit="fit",
               disable=None if progress else True, leave=False)
    aligned = {ea: [align_fold(x, subjects, f, pr.name, ea) for f in folds] for ea in {v[2] for v in variants}}
    for name, arch, ea in variants:
        t0 = time.perf_counter()
        over = {k: (int(v) if k in ("epochs", "batch_size") else v) for k, v in pr.loops.get(arch, {}).items()}
        for seed in pr.seeds:
            for fold, (xtr, xte) in zip(folds, aligned[ea], strict=True):
                cfg = model_config(params, schema, arch, pr.configs.get(arch, {}))
                torch.manual_seed(seed)
                model = models.build(f"{DOMAIN}/{arch}", cfg)
                fit(model, Trials(xtr, labels[fold.train]), None, loop.model_copy(update={"seed": seed, **over}),
                    task="multiclass", progress=False)
                probs = probabilities(predict(model, Trials(xte, labels[fold.test]), p.eval_batch_size),
                                      "multiclass")
                n = len(fold.test)
                cols = {"model": np.full(n, name, dtype=object), "seed": np.full(n, seed),
                        "fold": np.full(n, fold.name, dtype=object), "subject": subjects[fold.test].astype(object),
                        "index": fold.test, "y": labels[fold.test]}
                cols.update({f"p{k}": probs[:, k] for k in range(n_classes)})
                parts.append(cols)
                if arch == "dbconformer":
                    model.eval()
                    with torch.inference_mode():
                        model(torch.as_tensor(xte))
                    w = model.last_channel_weights.numpy()  # (n_test, C)
                    yt = labels[fold.test]
                    a = attention.setdefault(name, {"mean": [], "by_class": []})
                    a["mean"].append(w.mean(0))
                    if all((yt == k).any() for k in range(n_classes)):
                        a["by_class"].append(np.stack([w[yt == k].mean(0) for k in range(n_classes)]))
                bar.update(1)
                bar.set_postfix(model=name, seed=seed, fold=fold.name)
        seconds[name] = round(time.perf_counter() - t0, 2)
    bar.close()
    columns = {k: np.concatenate([c[k] for c in parts]) for k in parts[0]}
    info = {"protocol": pr.model_dump(mode="json"), "folds": [f.name for f in folds],
            "variants": [{"name": n, "arch": a, "ea": e} for n, a, e in variants],
            "seconds": seconds, "channels": schema["channels"], "classes": schema["classes"],
            # DBConformer's channel-attention weights on the test trials, mean over folds and seeds:
            # overall (C,) and per class (K, C), per variant (with / without EA).
            "attention": {v: {"ea": dict((n, e) for n, _, e in variants)[v],
                              "mean": np.mean(a["mean"], axis=0).tolist(),
                              "by_class": np.mean(a["by_class"], axis=0).tolist() if a["by_class"] else None}
                          for v, a in attention.items()}}
    return columns, info


def extra_train(params: Params, out: Path, run=None, baselines: dict | None = None) -> dict[str, Any]:
    """The train stage's protocol step: :func:`run_protocol` on ``data/processed/eeg``, saved beside the baselines.

    ``baselines`` (the stage's fitted scikit-learn baselines) is unused: EEG has none.

    Writes ``protocol.parquet`` (every test prediction) and ``protocol.json`` into ``out``.
    """
    import polars as pl
    from safetensors.numpy import load_file

    pr = params.train.eeg.protocol
    if not pr.enabled:
        return {}
    paths = store.domain_paths(DOMAIN)
    meta = pl.read_parquet(paths.processed / "meta.parquet")
    x = load_file(str(paths.processed / "epochs.safetensors"))["x"]
    columns, info = run_protocol(params, x, meta["subject"].to_numpy().astype(str), meta["label"].to_numpy(),
                                 meta["group"].to_numpy(), load_schema())
    save_protocol(columns, info, out)
    if run is not None:
        run.log_metrics({f"protocol.seconds.{k}": v for k, v in info["seconds"].items()})
    return {"protocol_fits": len(info["folds"]) * len(pr.seeds) * len(info["variants"]),
            "protocol_seconds": info["seconds"]}


def save_protocol(columns: dict[str, np.ndarray], info: dict[str, Any], out: Path) -> None:
    """Write :func:`run_protocol`'s result as ``protocol.parquet`` + ``protocol.json`` in ``out``."""
    import polars as pl

    pl.DataFrame({k: (v.tolist() if v.dtype == object else v) for k, v in columns.items()}).write_parquet(
        out / "protocol.parquet")
    store.atomic_write_json(out / "protocol.json", info)


# ============================================================================ protocol report (evaluate stage)
def extra_evaluate(params: Params, result: dict[str, Any], plots_dir: Path,
                   scores: dict | None = None) -> tuple[str, list[str]]:
    """Protocol summary, per-subject table, bar plot, EA ablation and the channel-attention topomap.

    ``scores`` (each model's test scores, from the stage) is unused here: the protocol has its own.

    Adds ``result["protocol"]`` (the summary) and returns the report's markdown section
    and the plot file names.
    """
    import polars as pl

    paths = store.domain_paths(DOMAIN)
    f = paths.baselines / "protocol.parquet"
    if not f.exists():
        return "", []
    pred = pl.read_parquet(f)
    info = store.read_json(paths.baselines / "protocol.json")
    schema = load_schema()
    summary = eeg_protocol.summarize(pred, len(schema["classes"]))
    result["protocol"] = summary
    pr = info["protocol"]
    metrics = ["accuracy", "balanced_accuracy", "kappa"] + (["roc_auc"] if len(schema["classes"]) == 2 else [])
    n_seeds = len(pr["seeds"])
    pooled = pr["pooled"] or len(summary["subjects"]) == 1
    if pooled:
        spread = "± std over seeds" if n_seeds > 1 else "(one seed, one pooled subject: no spread)"
    else:
        spread = ("± std over subjects (of the seed means); [± std over seeds of the subject mean, the reference's "
                  "std]" if n_seeds > 1 else "± std over subjects (one seed)")
    lines = [f"## Protocol: {pr['name'].upper()}"
             + (f" ({pr['k']}-fold)" if pr["name"] == "cv" else "")
             + (" over all trials pooled" if pr["pooled"] else ""),
             "",
             f"Seeds {pr['seeds']}; {len(info['folds'])} folds; mean over subjects and seeds {spread}. "
             "Each model trained per fold exactly as configured in `train.eeg.protocol`.",
             "",
             "| model | " + " | ".join(metrics) + " | fit time (s) |",
             "|---|" + "---:|" * (len(metrics) + 1)]
    for model, m in summary["summary"].items():
        if pooled:
            cells = [f"{m[k]['mean']:.3f}" + (f" ± {m[k]['std_seeds']:.3f}" if n_seeds > 1 else "") for k in metrics]
        else:
            cells = [f"{m[k]['mean']:.3f} ± {m[k]['std_subjects']:.3f}"
                     + (f" [± {m[k]['std_seeds']:.3f}]" if n_seeds > 1 else "") for k in metrics]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {info['seconds'].get(model, float('nan')):.0f} |")
    ea_rows = [v for v in info["variants"] if v["arch"] == "dbconformer"]
    if len(ea_rows) == 2:
        with_ea = next(v["name"] for v in ea_rows if v["ea"])
        without = next(v["name"] for v in ea_rows if not v["ea"])
        a = summary["summary"][with_ea]["balanced_accuracy"]["mean"]
        b = summary["summary"][without]["balanced_accuracy"]["mean"]
        result["ea_gain"] = a - b
        lines += ["", f"**Euclidean alignment**: DBConformer balanced accuracy {a:.3f} with EA vs {b:.3f} without "
                      f"({a - b:+.3f})."]
    lines += ["", "### Per subject (balanced accuracy, mean over seeds)", "",
              eeg_protocol.per_subject_table(summary, "balanced_accuracy"), ""]
    plots = []
    eeg_protocol.plot_model_bars(summary, plots_dir / "protocol_bars.png", "balanced_accuracy",
                                 f"eeg {pr['name'].upper()}: balanced accuracy per subject")
    plots.append("protocol_bars.png")
    attention = info.get("attention") or {}
    if attention:
        lines += attention_section(attention, info["channels"], schema["classes"], plots_dir, plots, result)
    return "\n".join(lines), plots


def class_contrast(by_class: np.ndarray) -> np.ndarray:
    """How much a channel's attention weight changes with the class: |w_1 - w_0| (binary), else std over classes."""
    by_class = np.asarray(by_class)  # (K, C)
    return np.abs(by_class[1] - by_class[0]) if len(by_class) == 2 else by_class.std(axis=0)


def attention_section(attention: dict, channels: list[str], classes: list[str], plots_dir: Path, plots: list[str],
                      result: dict[str, Any]) -> list[str]:
    """Topomaps of DBConformer's channel attention: the mean weights and their class contrast.

    The class contrast (how much a channel's weight moves between classes) is what
    localises: on the synthetic motor imagery it peaks at C3/C4, where the generator
    put the desynchronisation, while the mean weights do not (measured in README,
    "Channel attention"). The variant without Euclidean alignment is preferred for the
    picture when it ran, because EA whitens across channels, so an aligned channel is a
    mixture of electrodes.
    """
    name = next((v for v, a in attention.items() if not a["ea"]), next(iter(attention)))
    a = attention[name]
    lines = [f"### Channel attention ({name})", ""]
    w = np.asarray(a["mean"])
    eeg_protocol.plot_channel_topomap(w, channels, plots_dir / "channel_attention_mean.png",
                                      f"DBConformer ({name}): mean channel attention")
    plots.append("channel_attention_mean.png")
    top_mean = eeg_protocol.top_channels(w, channels)
    result["attention"] = {"variant": name, "top_mean": top_mean}
    lines.append(f"Mean attention weight is highest on: {', '.join(top_mean)}.")
    if a.get("by_class") is not None:
        contrast = class_contrast(a["by_class"])
        eeg_protocol.plot_channel_topomap(contrast, channels, plots_dir / "channel_attention.png",
                                          f"DBConformer ({name}): attention change {' vs '.join(classes)}")
        plots.append("channel_attention.png")
        top = eeg_protocol.top_channels(contrast, channels)
        result["attention"]["top_contrast"] = top
        lines.append(f"Attention changes most between {' and '.join(classes)} on: {', '.join(top)}.")
    return lines + [""]


# ============================================================================ scoring
SCORE_PER_INPUT_ROW = False
"""One output row per epoch (not per input row): the scoring input is a table of recording paths."""
SCORE_INPUT_EXPANDS_ITSELF = True
"""The score input may be a file, folder, glob, fsspec URL or zip: :func:`tasks.domains.eeg.io.fetch_sources` expands it."""


def scoring_input(urls: list[str], ip, *, cache: Path):
    """Bring the recordings to score to local files; the pyfunc input is a table of their paths."""
    import polars as pl

    files = eeg_io.fetch_sources(urls, cache / "score", cache / "download", retries=ip.retries, delay_s=ip.retry_delay_s)
    return pl.DataFrame({"path": [str(f) for f in files]})


def key_columns(ip) -> list[str]:
    return []


def score_frame(model, meta: dict, frame) -> Any:
    """Score recordings with a trained EEG model: one row per epoch (events) or window.

    Each file in ``frame["path"]`` is read, filtered, resampled and epoched with the
    model's own preprocessing (its ``schema``). Epochs come from the recording's
    mapped events when it has them, else from consecutive windows of the epoch
    length. Trials are aligned online (incremental Euclidean alignment, causal) per
    recording, as the deployment test split was.

    Returns:
        polars DataFrame: recording, epoch, onset_s, event (the annotated class or null),
        predicted_class, prediction (class index), p_<class> per class.
    """
    import polars as pl

    from tasks.train import predict, probabilities

    schema = meta["schema"]
    classes = schema["classes"]
    spec = EEGSpec(classes=classes, event_map=schema["event_map"], stim_channel=schema["stim_channel"],
                   background_class=schema.get("background_class"))
    pp = EEGPreprocess(paradigm=schema["paradigm"], l_freq=schema["l_freq"], h_freq=schema["h_freq"],
                       notch_hz=schema["notch_hz"], sfreq=schema["sfreq"], tmin=schema["tmin"], tmax=schema["tmax"],
                       window_s=schema["window_s"], window_step_s=schema["window_step_s"], flat_uv=0.0,
                       saturation_uv=None)
    out = []
    for path in frame["path"].to_list():
        path = Path(path)
        fmt = eeg_io.format_of(path)
        if fmt not in CONTINUOUS:
            raise eeg_io.EEGInputError(f"{path}: scoring reads continuous recordings ({', '.join(CONTINUOUS)}), "
                                       f"not {fmt}")
        rec = eeg_io.read_recording(path, fmt, event_map=spec.event_map, stim_channel=spec.stim_channel,
                                    allow_empty=True)
        if len(rec.onsets) == 0 and pp.paradigm == "events":
            # No cue to epoch around: consecutive windows of the model's input length.
            ppw = pp.model_copy(update={"paradigm": "windows", "window_s": int(schema["n_times"]) / schema["sfreq"],
                                        "window_step_s": None})
            ep = epoch_recording(rec, schema["channels"], ppw, spec.model_copy(update={"background_class": classes[0]}))
            events: list[str | None] = [None] * len(ep.labels)
        else:
            ep = epoch_recording(rec, schema["channels"], pp, spec)
            events = [classes[i] if i >= 0 else None for i in ep.labels]
        x = ep.x
        if len(x) == 0:
            continue
        x = eeg_protocol.align_online(x) if schema.get("ea") else x
        probs = probabilities(predict(model, Trials(x, np.zeros(len(x), np.int64)), 256), "multiclass")
        cols = {"recording": [path.name] * len(x), "epoch": np.arange(len(x)), "onset_s": ep.onsets_s,
                "event": events, "predicted_class": [classes[i] for i in probs.argmax(1)],
                "prediction": probs.argmax(1).astype(np.int64)}
        cols.update({f"p_{c}": probs[:, j] for j, c in enumerate(classes)})
        out.append(pl.DataFrame(cols, schema_overrides={"event": pl.String}))
    if not out:
        return pl.DataFrame({"recording": [], "epoch": [], "onset_s": [], "event": [], "predicted_class": [],
                             "prediction": []}, schema={"recording": pl.String, "epoch": pl.Int64,
                                                        "onset_s": pl.Float64, "event": pl.String,
                                                        "predicted_class": pl.String, "prediction": pl.Int64})
    return pl.concat(out)
