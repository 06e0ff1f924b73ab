"""The ``preprocess`` stage of the ``eeg`` domain: filter, resample, epoch, reject, split and align.

Picks channels, notches and band-passes (MNE FIR filters, zero phase), resamples, cuts
epochs around events (or consecutive windows of continuous recordings; :mod:`.epochs`),
rejects flat or saturated epochs (counted in ``schema.json``) and writes
``data/processed/eeg/``: ``epochs.safetensors`` (unaligned, uV), ``meta.parquet``
(subject, session, run, recording, label, onset, group, split), ``train.safetensors`` /
``test.safetensors`` (the deployment split, Euclidean-aligned) and ``schema.json``.

Euclidean alignment of the deployment split (a deliberate, documented choice): the
training trials of each subject are aligned offline with that subject's reference;
the held-out trials are aligned online (incremental, causal), as a new recording is
at scoring time. The protocols follow the reference instead (:func:`.runner.align_fold`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from tasks import store
from tasks.domains.eeg import protocol as eeg_protocol
from tasks.domains.eeg.data import NAME, EEGDataError
from tasks.domains.eeg.epochs import epoch_recording, epoch_set
from tasks.domains.eeg.ingest import read_sources, sfreq_of
from tasks.domains.eeg.readers import Recording

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


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


def preprocess(params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """Epoch, filter, reject and align every recording of ``data/raw/eeg``; write ``data/processed/eeg``."""
    import polars as pl  # lazy: polars is slow to import; ingest and the model hooks never need it

    pp = params.preprocess.eeg
    spec = params.ingest.eeg.spec
    paths = store.domain_paths(NAME)
    manifest_path = paths.raw / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} does not exist: run ingest first (python -m tasks ingest eeg)")
    manifest = store.read_json(manifest_path)
    items = read_sources(paths.raw / "source", spec)
    channels = list(pp.channels) if pp.channels else list(manifest["channels"])
    rates = sorted({sfreq_of(obj) for _, obj in items})
    if pp.sfreq is None and len(rates) > 1:
        raise EEGDataError(f"recordings have different sampling rates {rates}; set preprocess.eeg.sfreq to "
                           "resample them to one")
    if len(rates) > 1 or (pp.sfreq is not None and rates != [pp.sfreq]):
        print(f"eeg preprocess: resampling {rates} Hz -> {pp.sfreq} Hz")
    xs, rows, rejected = [], [], {"flat": 0, "saturated": 0, "out_of_bounds": 0}
    group_offset = 0
    for info, obj in tqdm(items, desc="eeg preprocess", unit="recording", disable=None, leave=False):
        if isinstance(obj, Recording):
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
        "domain": NAME, "channels": channels, "sfreq": sf, "n_times": int(x.shape[-1]), "classes": spec.classes,
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
    return {"stage": "preprocess", "domain": NAME, "epochs": int(len(meta)), "class_counts": counts,
            "rejected": rejected, "outputs": {"processed": store.content_hash(paths.processed)}}
