"""Scoring EEG recordings with a trained ``eeg`` model (what the registered pyfunc runs): one row per epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from tasks import store
from tasks.domains import InputExample, LoadedModel, ScoringInput
from tasks.domains.eeg import protocol as eeg_protocol
from tasks.domains.eeg.data import NAME, Trials
from tasks.domains.eeg.epochs import epoch_recording
from tasks.domains.eeg.ingest import CONTINUOUS
from tasks.domains.eeg.params import EEGIngest, EEGPreprocess, EEGSpec
from tasks.domains.eeg.readers import read_recording
from tasks.domains.eeg.sources import EEGInputError, fetch_sources, format_of
from tasks.loop import predict, probabilities


def read_scoring_input(urls: list[str], ip: EEGIngest, cache: Path) -> ScoringInput:
    """Bring the recordings to score to local files; the pyfunc input is a table of their paths."""
    files = fetch_sources(urls, cache / "score", cache / "download", retries=ip.retries, delay_s=ip.retry_delay_s)
    return ScoringInput(pl.DataFrame({"path": [str(f) for f in files]}))


def score_frame(loaded: LoadedModel, frame: pl.DataFrame) -> pl.DataFrame:
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
    model, schema = loaded.model, loaded.meta["schema"]
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
        fmt = format_of(path)
        if fmt not in CONTINUOUS:
            raise EEGInputError(f"{path}: scoring reads continuous recordings ({', '.join(CONTINUOUS)}), "
                                f"not {fmt}")
        rec = read_recording(path, fmt, event_map=spec.event_map, stim_channel=spec.stim_channel,
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


def input_example(loaded: LoadedModel) -> InputExample | None:
    """One continuous recording of the project's raw data (``data/raw/eeg/source/``), by its path relative to the
    project folder (portable with the project; a service passes its own paths). None when the raw data holds only
    epoched sources (MAT, ASCII), which the pyfunc does not score.
    """
    paths = store.domain_paths(NAME)
    files = sorted(f for f in (paths.raw / "source").rglob("*") if f.is_file() and format_of(f) in CONTINUOUS)
    if not files:
        return None
    return InputExample(pd.DataFrame({"path": [files[0].relative_to(paths.root).as_posix()]}),
                        local=pd.DataFrame({"path": [str(files[0])]}))
