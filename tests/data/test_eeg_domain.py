"""The eeg domain's ingest and preprocess stages on real files: synthetic EDF+, bad inputs, real data.

Every bad-input case asserts the error names the file / field / value and that nothing
partial is left behind (``data/raw/eeg`` or ``data/processed/eeg`` unchanged).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import mne
import numpy as np
import polars as pl
import pytest
from scipy.io import savemat

from tasks import store
from tasks.domains.eeg import protocol as eeg_protocol
from tasks.domains.eeg.data import EEGDataError, load_schema, load_split
from tasks.domains.eeg.ingest import ingest
from tasks.domains.eeg.preprocess import preprocess
from tasks.domains.eeg.sources import EEGInputError
from tasks.params import load_params
from tests.conftest import SHARED_DATA, setup_project

EEGMMIDB = SHARED_DATA / "eeg" / "eegmmidb_S001"
BONN = SHARED_DATA / "eeg" / "bonn_eeg.zip"


def _edf(path: Path, *, ch_names=("C3", "Cz", "C4"), sfreq=250.0, seconds=40.0, events=None, seed=0,
         flat_from: float | None = None, spike_at: float | None = None) -> Path:
    """An EDF+ written by MNE's exporter: noise with a mu rhythm, annotations ``events`` [(onset, desc)]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sfreq)
    t = np.arange(n) / sfreq
    data = rng.normal(0, 10e-6, (len(ch_names), n)) + 5e-6 * np.sin(2 * np.pi * 10 * t)
    if flat_from is not None:
        data[0, int(flat_from * sfreq):] = 0.0
    if spike_at is not None:
        data[1, int(spike_at * sfreq)] = 790e-6
    raw = mne.io.RawArray(data, mne.create_info(list(ch_names), sfreq, "eeg"), verbose="error")
    if events:
        raw.set_annotations(mne.Annotations([o for o, _ in events], [4.0] * len(events), [d for _, d in events]))
    path.parent.mkdir(parents=True, exist_ok=True)
    mne.export.export_raw(path, raw, fmt="edf", physical_range=(-800.0, 800.0), overwrite=True, verbose="error")
    return path


def _cued(n: int = 6, start: float = 2.0, every: float = 5.0):
    return [(start + i * every, "left_hand" if i % 2 == 0 else "right_hand") for i in range(n)]


def _params(extra: list[str] | None = None):
    return load_params(overrides=extra or [])


def _raw_hash(project: Path) -> str | None:
    p = project / "data/raw/eeg"
    return store.content_hash(p) if p.exists() else None


# ----------------------------------------------------------------------------- the synthetic default
def test_synthetic_ingest_and_preprocess(project):
    params = _params()
    man = ingest(params)
    s = params.ingest.eeg.synthetic
    assert len(man["files"]) == s.n_subjects * s.n_sessions
    assert man["class_counts"] == {"left_hand": s.n_subjects * s.n_sessions * s.trials_per_class,
                                   "right_hand": s.n_subjects * s.n_sessions * s.trials_per_class}
    assert len(man["channels"]) == 22 and man["sfreqs"] == [250.0]

    out = preprocess(params)
    paths = store.domain_paths("eeg")
    schema = load_schema()
    pp = params.preprocess.eeg
    assert schema["n_times"] == int(round((pp.tmax - pp.tmin) * pp.sfreq)) + 1  # inclusive end, MOABB style
    assert out["epochs"] + sum(out["rejected"].values()) == sum(man["class_counts"].values())
    meta = pl.read_parquet(paths.processed / "meta.parquet")
    assert set(meta.columns) >= {"subject", "session", "run", "recording", "label", "onset_s", "split", "trial"}
    assert meta["subject"].n_unique() == s.n_subjects
    # The deployment split holds out the last trials of every subject and class.
    for _key, g in meta.group_by(["subject", "label"]):
        assert g.filter(pl.col("split") == "test")["trial"].min() > g.filter(pl.col("split") == "train")["trial"].max()
    # Offline EA: every subject's aligned training trials have the identity as mean covariance.
    train = load_split("train")
    subj = meta.filter(pl.col("split") == "train")["subject"].to_numpy()
    for sname in np.unique(subj):
        r = eeg_protocol.trial_covariances(train.x.numpy()[subj == sname].astype(np.float64)).mean(0)
        np.testing.assert_allclose(r, np.eye(r.shape[0]), atol=1e-3)
    assert len(load_split("test")) == int((meta["split"] == "test").sum())


def test_rejection_counts_flat_and_saturated(project):
    src = project / "rec"
    _edf(src / "sub-01_ses-01.edf", events=_cued(6), flat_from=17.0, seed=1)  # trials from 17 s on: flat C3
    _edf(src / "sub-02_ses-01.edf", events=_cued(6), spike_at=8.0, seed=2)  # trial 2 (7-11 s) saturates
    params = _params([f"ingest.eeg.source={src}", "preprocess.eeg.sfreq=125"])
    ingest(params)
    out = preprocess(params)
    assert out["rejected"]["flat"] == 3  # onsets 17, 22, 27 s of subject 1
    assert out["rejected"]["saturated"] == 1
    assert out["epochs"] == 12 - 4
    assert load_schema()["rejected"] == out["rejected"]


# ----------------------------------------------------------------------------- bad input
def test_recording_without_events_is_named(project):
    src = project / "rec"
    _edf(src / "sub-01_ses-01.edf", events=_cued(4))
    _edf(src / "sub-02_ses-01.edf", events=None)
    params = _params([f"ingest.eeg.source={src}"])
    with pytest.raises(EEGInputError, match=r"sub-02_ses-01\.edf.*no events"):
        ingest(params)
    assert _raw_hash(project) is None


def test_recording_with_only_unmapped_events_is_named(project):
    src = project / "rec"
    _edf(src / "S001R04.edf", events=[(2.0, "T0"), (7.0, "T0")])
    params = _params([f"ingest.eeg.source={src}"])
    with pytest.raises(EEGInputError, match=r"S001R04\.edf: no events among .*found: \['T0'\]"):
        ingest(params)


def test_differing_channels_error_names_them_or_common_policy(project):
    src = project / "rec"
    _edf(src / "sub-01_ses-01.edf", events=_cued(4))
    _edf(src / "sub-02_ses-01.edf", events=_cued(4), ch_names=("C3", "Cz", "Pz"))
    params = _params([f"ingest.eeg.source={src}"])
    with pytest.raises(EEGDataError, match=r"sub-02_ses-01\.edf: missing \['C4'\], extra \['Pz'\]"):
        ingest(params)
    assert _raw_hash(project) is None
    params = _params([f"ingest.eeg.source={src}", "ingest.eeg.spec.channel_policy=common"])
    man = ingest(params)
    assert man["channels"] == ["C3", "Cz"]
    preprocess(params)
    assert load_schema()["channels"] == ["C3", "Cz"]


def test_different_sampling_rates_are_resampled_and_logged(project, capsys):
    src = project / "rec"
    _edf(src / "sub-01_ses-01.edf", events=_cued(4), sfreq=250.0)
    _edf(src / "sub-02_ses-01.edf", events=_cued(4), sfreq=200.0)
    params = _params([f"ingest.eeg.source={src}", "preprocess.eeg.sfreq=100"])
    man = ingest(params)
    assert man["sfreqs"] == [200.0, 250.0]
    preprocess(params)
    log = capsys.readouterr().out
    assert "sampling rates differ" in log and "resampling [200.0, 250.0] Hz -> 100.0 Hz" in log
    schema = load_schema()
    assert schema["sfreq"] == 100.0 and schema["n_times"] == 301 and schema["source_sfreqs"] == [200.0, 250.0]
    # Without a target rate the mix is an error that names both rates.
    before = store.content_hash(project / "data/processed/eeg")
    with pytest.raises(EEGDataError, match=r"different sampling rates \[200.0, 250.0\]"):
        preprocess(_params([f"ingest.eeg.source={src}", "preprocess.eeg.sfreq=null",
                                "preprocess.eeg.h_freq=30"]))
    assert store.content_hash(project / "data/processed/eeg") == before


@pytest.mark.parametrize("damage", ["truncated", "header"])
def test_corrupt_edf_is_named_and_nothing_is_replaced(project, damage):
    good = project / "good"
    _edf(good / "sub-01_ses-01.edf", events=_cued(4))
    ingest(_params([f"ingest.eeg.source={good}"]))
    before = _raw_hash(project)
    src = project / "rec"
    _edf(src / "sub-01_ses-01.edf", events=_cued(4))
    bad = _edf(src / "sub-02_ses-01.edf", events=_cued(4))
    data = bad.read_bytes()
    bad.write_bytes(data[:1000] if damage == "truncated" else data[:184] + b"garbage!" + data[192:])
    with pytest.raises(EEGInputError, match=r"sub-02_ses-01\.edf: not a readable EDF file"):
        ingest(_params([f"ingest.eeg.source={src}"]))
    assert _raw_hash(project) == before  # the previous ingest output is untouched


def test_mat_missing_key_is_named(project):
    src = project / "rec"
    src.mkdir()
    savemat(src / "sub-01.mat", {"data": np.zeros((4, 3, 100)), "y": np.array([1, 2, 1, 2])})
    params = _params([f"ingest.eeg.source={src}", "ingest.eeg.spec.mat.sfreq=100",
                      "ingest.eeg.spec.label_map={'1': left_hand, '2': right_hand}"])
    with pytest.raises(EEGInputError, match=r"sub-01\.mat.*'X'.*data"):
        ingest(params)
    assert _raw_hash(project) is None
    params = _params([f"ingest.eeg.source={src}", "ingest.eeg.spec.mat.sfreq=100", "ingest.eeg.spec.mat.data_key=data",
                      "ingest.eeg.spec.label_map={'1': left_hand, '2': right_hand}"])
    man = ingest(params)
    assert man["class_counts"] == {"left_hand": 2, "right_hand": 2}


def test_zip_entry_escaping_the_folder_is_refused(project):
    src = project / "upload.zip"
    rec = _edf(project / "tmp" / "sub-01_ses-01.edf", events=_cued(4))
    with zipfile.ZipFile(src, "w") as zf:
        zf.write(rec, "sub-01_ses-01.edf")
        zf.writestr("../../escaped.txt", "1\n2\n")
    with pytest.raises(EEGInputError, match=r"upload\.zip.*\.\./\.\./escaped\.txt"):
        ingest(_params([f"ingest.eeg.source={src}"]))
    assert not (project / "escaped.txt").exists() and not (project.parent / "escaped.txt").exists()
    assert _raw_hash(project) is None


# ----------------------------------------------------------------------------- real data (when present)
@pytest.mark.skipif(not EEGMMIDB.exists(), reason="../shared/data/eeg/eegmmidb_S001 not present")
def test_eegmmidb_runs_ingest_with_t1_t2_events(tmp_path, monkeypatch):
    setup_project(tmp_path / "proj", monkeypatch)
    params = load_params(profiles=["eegmmidb"], overrides=[f"ingest.eeg.source={EEGMMIDB}"])
    man = ingest(params)
    assert sorted(f["run"] for f in man["files"]) == ["04", "08", "12"]
    assert {f["subject"] for f in man["files"]} == {"001"}
    assert man["class_counts"] == {"left_hand": 23, "right_hand": 22}
    assert len(man["channels"]) == 64 and man["sfreqs"] == [160.0]
    assert {"C3", "C4", "Fc4", "Cz"} <= set(man["channels"])  # PhysioNet's dot padding ("Fc4.") removed
    out = preprocess(params)
    assert out["epochs"] + sum(out["rejected"].values()) == 45
    assert load_schema()["n_times"] == 641  # 4 s at 160 Hz, inclusive end


@pytest.mark.skipif(not BONN.exists(), reason="../shared/data/eeg/bonn_eeg.zip not present")
def test_bonn_zip_ingests_with_folder_labels_and_grouped_windows(tmp_path, monkeypatch):
    setup_project(tmp_path / "proj", monkeypatch)
    params = load_params(profiles=["bonn"], overrides=[f"ingest.eeg.source={BONN}"])
    man = ingest(params)
    assert man["class_counts"] == {"non_seizure": 400, "seizure": 100}
    out = preprocess(params)
    meta = pl.read_parquet(store.domain_paths("eeg").processed / "meta.parquet")
    assert out["epochs"] == 2500  # 5 windows of 4 s from each 23.6 s segment
    assert meta["group"].n_unique() == 500
    # A segment's windows never straddle the deployment split.
    assert meta.group_by("group").agg(pl.col("split").n_unique())["split"].max() == 1
