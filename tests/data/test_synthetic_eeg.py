"""Data tests for the synthetic EEG generator (:mod:`tasks.domains.eeg.synthetic`).

Besides the EDF+ round trip (channels, rate, annotations, amplitudes, determinism),
the behavioural tests check what the generator is for: event-related
desynchronisation over the contralateral hemisphere in every subject, Euclidean
alignment measurably helping a cross-subject decoder, and seizures standing out
from the interictal background.
"""

from __future__ import annotations

import mne
import numpy as np
import pytest
import scipy.linalg as sla
from scipy.signal import butter, sosfiltfilt
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

from tasks.domains.eeg.synthetic import (
    CLASSES,
    INFORMATIVE,
    MI_CHANNELS,
    SEIZURE,
    generate,
    main,
    synthesize_recording,
)

SFREQ = 250.0
N_SUB, N_SES, TPC = 4, 2, 40


def _read(path) -> mne.io.BaseRaw:
    return mne.io.read_raw_edf(path, preload=True, verbose="error")


def _bandpass(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return sosfiltfilt(butter(4, [lo, hi], btype="band", fs=SFREQ, output="sos"), x, axis=-1)


@pytest.fixture(scope="module")
def mi(tmp_path_factory):
    """Default-sized motor-imagery set read back from EDF, plus 8-30 Hz epochs 0.5-4 s after each cue."""
    paths = generate(
        tmp_path_factory.mktemp("mi"), n_subjects=N_SUB, n_sessions=N_SES, trials_per_class=TPC, seed=0
    )
    raws = [_read(p) for p in paths]
    X, y, subj = [], [], []
    for p, raw in zip(paths, raws, strict=True):
        band = _bandpass(raw.get_data(), 8.0, 30.0)
        for onset, desc in zip(raw.annotations.onset, raw.annotations.description, strict=True):
            i = int(round((onset + 0.5) * SFREQ))
            X.append(band[:, i : i + int(3.5 * SFREQ)])
            y.append(desc == "right_hand")
            subj.append(int(p.name[4:6]))
    return paths, raws, np.stack(X), np.array(y), np.array(subj)


# ----------------------------------------------------------------------------- files
def test_constants():
    assert len(MI_CHANNELS) == 22 and len(set(MI_CHANNELS)) == 22
    assert MI_CHANNELS[:3] == ("Fz", "FC3", "FC1") and MI_CHANNELS[-1] == "POz"
    assert INFORMATIVE == ("C3", "C4") and set(INFORMATIVE) <= set(MI_CHANNELS)
    assert CLASSES == ("left_hand", "right_hand")


def test_edf_round_trip(mi):
    paths, raws, *_ = mi
    assert [p.name for p in paths] == [f"sub-{s:02d}_ses-{k:02d}.edf" for s in (1, 2, 3, 4) for k in (1, 2)]
    for raw in raws:
        assert raw.ch_names == list(MI_CHANNELS)
        assert raw.info["sfreq"] == SFREQ
        assert set(raw.get_channel_types()) == {"eeg"}
        desc = list(raw.annotations.description)
        assert desc.count("left_hand") == TPC and desc.count("right_hand") == TPC and len(desc) == 2 * TPC
        assert np.allclose(raw.annotations.duration, 4.0)
        assert np.all(np.diff(raw.annotations.onset) >= 5.5)  # 4 s of imagery + at least 1.5 s of rest
        assert raw.annotations.onset[-1] + 4.0 < raw.times[-1]
        events, ids = mne.events_from_annotations(raw, verbose="error")
        assert set(ids) == set(CLASSES) and len(events) == 2 * TPC


def test_digitisation_keeps_the_signal(mi):
    """The EDF holds the simulated volts to within the 16-bit step of the +-800 uV range (0.025 uV)."""
    _, raws, *_ = mi
    data, events = synthesize_recording(0, 0, trials_per_class=TPC, seed=0)
    assert data.shape == raws[0].get_data().shape
    assert np.abs(raws[0].get_data() - data).max() < 0.02e-6
    assert [e[2] for e in events] == list(raws[0].annotations.description)


def test_amplitudes_are_realistic(mi):
    _, raws, *_ = mi
    for raw in raws:
        x = raw.get_data() * 1e6  # uV
        sd = x.std(axis=1)
        assert 4.0 < np.median(sd) < 40.0, np.median(sd)
        assert np.percentile(np.abs(x), 99.9) < 200.0
        front, back = MI_CHANNELS.index("Fz"), MI_CHANNELS.index("POz")
        low = _bandpass(x, 0.5, 3.0)  # blinks: frontal, slow
        assert np.abs(low[front]).max() > 2.0 * np.abs(low[back]).max()


def test_same_seed_gives_identical_bytes(tmp_path):
    a = generate(tmp_path / "a", n_subjects=2, n_sessions=1, trials_per_class=5, seed=3)
    b = generate(tmp_path / "b", n_subjects=2, n_sessions=1, trials_per_class=5, seed=3)
    c = generate(tmp_path / "c", n_subjects=2, n_sessions=1, trials_per_class=5, seed=4)
    d = generate(tmp_path / "d", n_subjects=1, n_sessions=1, trials_per_class=5, seed=3)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert a[0].read_bytes() != c[0].read_bytes()
    assert a[0].read_bytes() == d[0].read_bytes()  # a subject does not depend on how many there are
    assert a[0].read_bytes() != a[1].read_bytes()


def test_stale_files_cli_and_bad_arguments(tmp_path, capsys):
    generate(tmp_path, n_subjects=2, n_sessions=2, trials_per_class=2)
    main([str(tmp_path), "--n-subjects", "1", "--n-sessions", "1", "--trials-per-class", "2"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub-01_ses-01.edf"]
    assert "sub-01_ses-01.edf" in capsys.readouterr().out
    with pytest.raises(ValueError, match="mode"):
        generate(tmp_path, mode="ssvep")
    with pytest.raises(ValueError, match="trials_per_class"):
        generate(tmp_path, trials_per_class=0)
    with pytest.raises(ValueError, match="n_subjects"):
        generate(tmp_path, n_subjects=0)
    with pytest.raises(ValueError, match="recording_s"):
        generate(tmp_path, mode="seizure", recording_s=60.0)


# ----------------------------------------------------------------------------- motor imagery
def test_erd_is_contralateral_in_every_subject(mi):
    """8-30 Hz log power: C3 lower for right-hand imagery, C4 lower for left-hand imagery."""
    *_, X, y, subj = mi
    logp = np.log(X.var(axis=2))  # (n_trials, C)
    c3, c4 = MI_CHANNELS.index("C3"), MI_CHANNELS.index("C4")
    for s in np.unique(subj):
        m = subj == s
        d3 = logp[m & y, c3].mean() - logp[m & ~y, c3].mean()
        d4 = logp[m & y, c4].mean() - logp[m & ~y, c4].mean()
        assert d3 < -0.1 and d4 > 0.1, (s, d3, d4)


def _euclidean_alignment(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """X <- R^-1/2 X per group, R the group's mean trial covariance."""
    out = np.empty_like(X)
    for g in np.unique(groups):
        m = groups == g
        R = np.einsum("nct,ndt->cd", X[m], X[m]) / (m.sum() * X.shape[2])
        out[m] = np.einsum("ij,njt->nit", np.real(sla.fractional_matrix_power(R, -0.5)), X[m])
    return out


def _loso_csp(X: np.ndarray, y: np.ndarray, subj: np.ndarray, n_pairs: int = 3) -> list[float]:
    """Leave-one-subject-out CSP (fit on the training subjects) + log-variance + logistic regression."""
    C = np.einsum("nct,ndt->ncd", X, X) / X.shape[2]
    accs = []
    for s in np.unique(subj):
        tr, te = subj != s, subj == s
        a, b = C[tr & y].mean(0), C[tr & ~y].mean(0)
        _, V = sla.eigh(a, a + b)
        W = np.concatenate([V[:, :n_pairs], V[:, -n_pairs:]], axis=1)
        f = np.log(np.einsum("ci,ncd,di->ni", W, C, W))
        clf = LogisticRegression(max_iter=1000).fit(f[tr], y[tr])
        accs.append(balanced_accuracy_score(y[te], clf.predict(f[te])))
    return accs


def test_euclidean_alignment_helps_across_subjects(mi):
    """Measured (4 subjects x 2 sessions x 80 trials, seeds 0-5): without EA 0.54-0.81, with EA per subject
    0.73-0.87 (gain 0.01-0.33; seed 0: 0.64 -> 0.77); EA per recording 0.81-0.91."""
    *_, X, y, subj = mi
    raw_acc = np.mean(_loso_csp(X, y, subj))
    ea_acc = np.mean(_loso_csp(_euclidean_alignment(X, subj), y, subj))
    assert ea_acc >= 0.7, (raw_acc, ea_acc)
    assert ea_acc - raw_acc >= 0.08, (raw_acc, ea_acc)


# ----------------------------------------------------------------------------- seizures
def test_seizure_mode_annotates_ictal_segments(tmp_path):
    paths = generate(tmp_path, n_subjects=2, n_sessions=2, mode="seizure", seed=0)
    for p in paths:
        raw = _read(p)
        assert raw.ch_names == list(MI_CHANNELS) and raw.info["sfreq"] == SFREQ
        ann = raw.annotations
        assert set(ann.description) == {SEIZURE} and 2 <= len(ann) <= 3
        assert np.all((ann.duration >= 20.0) & (ann.duration <= 45.0))
        x = raw.get_data() * 1e6
        ictal = np.zeros(x.shape[1], dtype=bool)
        for onset, dur in zip(ann.onset, ann.duration, strict=True):
            ictal[int(onset * SFREQ) : int((onset + dur) * SFREQ)] = True
        low = _bandpass(x, 1.0, 20.0)
        power_ratio = (low[:, ictal] ** 2).mean() / (low[:, ~ictal] ** 2).mean()
        ll = np.abs(np.diff(_bandpass(x, 1.0, 30.0), axis=1)).mean(axis=0)
        ll_ratio = ll[ictal[1:]].mean() / ll[~ictal[1:]].mean()
        assert power_ratio > 4.0 and ll_ratio > 2.0, (p.name, power_ratio, ll_ratio)
        assert np.abs(x).max() < 800.0
