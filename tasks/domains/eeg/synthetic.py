"""Synthetic EEG recordings: the offline default data source of the ``eeg`` domain.

:func:`generate` writes one EDF+ file per subject and session, ``sub-XX_ses-YY.edf``,
with the 22 channels of BCI Competition IV 2a (:data:`MI_CHANNELS`, 10-20 names, EEG
only, no EOG) at 250 Hz, values in volts on the MNE side (the EDF stores microvolts
with a fixed physical range of +-800 uV and 16-bit samples, i.e. a resolution of about
0.025 uV, so the signal survives digitisation). Events are EDF+ annotations. The
header's start date is fixed (2008-01-01 plus the session), so the same arguments give
byte-identical files. Two modes:

* ``motor_imagery``: cued left vs right hand imagery. Each trial is one annotation with
  the cue as onset, a 4 s duration and the description ``left_hand`` or ``right_hand``;
  ``trials_per_class`` of each class per session, in random order. Between trials the
  subject rests for 1.5-2.5 s (uniform; as the break in BCI-IV-2a); rest is not
  annotated, so ``mne.events_from_annotations`` yields exactly the two classes.
* ``seizure``: continuous recordings of ``recording_s`` seconds with 2-3 seizures,
  each annotated as ``seizure`` with its onset and duration (20-45 s); everything
  else is interictal.

Signal model
------------
All signals are built at the 22 electrode positions of MNE's ``standard_1020`` montage
(hard-coded in :data:`_POS_CM`, so simulating needs no MNE), as sums of the terms below;
spectral shapes are imposed on white Gaussian noise in the Fourier domain, which is
vectorised and exact for a seed.

**Background.** Pink noise (power ~ 1/f above 0.5 Hz, spectral exponent 0.9-1.3 per
subject), spatially correlated as volume conduction makes it: the channel covariance is
``0.7 * exp(-d**2 / (2 * (4 cm)**2)) + 0.3 * I`` (``d`` the electrode distance), about
8 uV RMS per channel, plus 1 uV of white sensor noise.

**Rhythms.** Narrow-band sources (Gaussian spectral peaks): a mu rhythm (peak 9-12 Hz,
width 1 Hz) and a beta rhythm (peak 17-24 Hz, width 2.5 Hz) at each of two sensorimotor
sources near C3 and C4 (jittered by up to 1 cm per subject), plus a posterior alpha
source at POz that the task does not modulate. Each source is projected with a smooth
Gaussian pattern (width 3 cm), so C3 (C4) and its neighbours carry the left (right)
sources. Mu amplitude is 5-9 uV at the peak electrode, beta about half of it; the
subject's hemispheric balance varies (left/right log-amplitude ratio N(0, 0.25)).

**Event-related desynchronisation.** During imagery of one hand, the mu and beta
amplitude of the contralateral source drops (right hand -> C3, left hand -> C4) by a
trial depth ``N(d_s, 0.2)`` clipped to [0, 0.9], with a subject strength ``d_s`` in
0.2-0.5; the ipsilateral source drops by a fifth of that. The drop starts 0.3 s after
the cue, reaches full depth 0.5 s later, lasts to the end of the 4 s and recovers in
0.5 s; contralateral beta then rebounds (x1.3 for 1 s, the post-movement beta
synchronisation). The class is therefore in the 8-30 Hz power of C3 relative to C4,
with trial-to-trial variability from the depth and from the waxing and waning of the
narrow-band sources, so single trials are not trivially separable.

**Subject.** All brain signals (background, rhythms, discharges) pass through a
subject-specific near-identity spatial mixing ``A_s = I + 0.15 * G * exp(-d / 5 cm)``
(``G`` standard normal: a different head, cap fit and conductivity), then a
subject-specific channel gain (log-normal, sigma 0.15) and a global gain (log-normal,
sigma 0.3).

**Session.** Each session adds its own covariance shift: channel gains (log-normal,
sigma 0.1; electrode impedances) and two correlated noise components, each a pink
source with a smooth pattern (width 5 cm) around a random electrode at 3-7 uV. Because
the subject and session terms change the covariance of every trial of a recording
alike while the class only modulates C3 against C4 within it, a decoder trained on
other subjects misplaces its boundary unless each subject's data are re-centred:
Euclidean alignment (``X <- R^-1/2 X`` with ``R`` the subject's mean trial covariance)
removes most of it. Measured with the decoder of ``tests/data/test_synthetic_eeg.py``
(8-30 Hz, 0.5-4 s after the cue, CSP + logistic regression, leave one subject out, 4
subjects x 2 sessions x 80 trials, seeds 0-5): balanced accuracy 0.54-0.81 without EA,
0.73-0.87 with EA per subject (seed 0: 0.64 -> 0.77; the gain ranges from 0.01 to 0.33
because some draws of four subjects happen to be alike), 0.81-0.91 with EA per
recording. Within a subject, trained on session 1 and tested on session 2: 0.75-0.87
without EA, 0.80-0.91 with EA per recording.

**Artefacts** (added after the mixing, class-independent). Eye blinks: a Poisson process
at 0.15-0.35 Hz per subject; each a 0.3-0.45 s smooth positive bump (a gamma-shaped
kernel) of 60-120 uV at Fz, decaying towards the back (``exp((y - y_Fz) / 3 cm)``, y the
anterior coordinate): Fz and the FC row get most, POz almost nothing. Muscle (EMG)
bursts: a Poisson process at 0.03-0.08 Hz; each 0.3-1.5 s of white noise high-passed
at 20 Hz with a Tukey envelope, 10-30 uV RMS on the lateral (temporal-side) electrodes
of one side or both (weight ``exp((|x| - 8.3 cm) / 2 cm)``: C5/C6 most, then
FC3/FC4, CP3/CP4, C3/C4).

**Seizures** (``seizure`` mode; the rhythms run without a task). Each subject has a
focus electrode. A seizure is a rhythmic spike-and-wave discharge whose frequency
evolves from 5-8 Hz at onset down to 2.5-4 Hz at the end (with a little phase jitter),
whose amplitude builds up over the first 30 % from 10 % to a peak of 100-250 uV at the
focus (so the first seconds are subtle), and whose field spreads from 4 cm around the
focus to 10 cm (secondary generalisation); it fades in the last 10 %. Afterwards the
background is suppressed (x0.3-0.6, recovering linearly over 10-30 s). Between seizures
the focus fires isolated interictal spikes (rate 0.05 Hz, 40-80 uV), so high amplitude
alone does not mark a seizure. Averaged over channels and over the whole seizure, 1-20 Hz
power is 10-60 times and 1-30 Hz line length 2.5-5.5 times the interictal level (seed 0,
4 subjects x 2 sessions).
The subject mixing, session shift and artefacts apply as above.

Usage::

    python -m tasks.domains.eeg.synthetic OUT_DIR [--mode motor_imagery|seizure] [--n-subjects 4]
        [--n-sessions 2] [--trials-per-class 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.store import atomic_path

MI_CHANNELS: tuple[str, ...] = (
    "Fz", "FC3", "FC1", "FCz", "FC2", "FC4", "C5", "C3", "C1", "Cz", "C2", "C4", "C6",
    "CP3", "CP1", "CPz", "CP2", "CP4", "P1", "Pz", "P2", "POz",
)  # fmt: skip
"""The 22 EEG channels of BCI Competition IV 2a (BNCI2014001), in its order."""

INFORMATIVE: tuple[str, ...] = ("C3", "C4")
"""Electrodes over the sources whose mu/beta power carries the class (C3: right hand, C4: left hand)."""

CLASSES: tuple[str, ...] = ("left_hand", "right_hand")
"""Annotation descriptions of the motor-imagery trials."""

SEIZURE = "seizure"
"""Annotation description of an ictal segment (``seizure`` mode)."""

MODES: tuple[str, ...] = ("motor_imagery", "seizure")
TRIAL_S = 4.0
"""Duration of one imagery trial (cue to end) in seconds."""

# (x right, y anterior, z up) in cm, from MNE's standard_1020 montage, rounded to 1 mm.
_POS_CM = np.array([
    [0.0, 5.9, 6.6], [-6.0, 2.3, 5.6], [-3.4, 2.6, 8.0], [0.0, 2.7, 8.9], [3.5, 2.6, 7.9], [6.2, 2.4, 5.6],
    [-8.0, -1.4, 2.9], [-6.5, -1.2, 6.4], [-3.6, -1.0, 9.0], [0.0, -0.9, 10.0], [3.8, -1.0, 8.8],
    [6.7, -1.1, 6.4], [8.3, -1.3, 2.9], [-6.4, -4.7, 6.6], [-3.6, -4.7, 9.1], [0.0, -4.7, 9.9],
    [3.8, -4.7, 9.1], [6.7, -4.7, 6.6], [-2.9, -8.1, 7.5], [0.0, -8.1, 8.3], [3.2, -8.0, 7.7],
    [0.0, -10.2, 5.1],
])  # fmt: skip
_IDX = {c: i for i, c in enumerate(MI_CHANNELS)}
_UV = 1e-6
_PHYS_RANGE_UV = (-800.0, 800.0)  # amplifier range written to the EDF header
_MEAS_DATE = dt.datetime(2008, 1, 1, 9, 0, 0, tzinfo=dt.UTC)
_LEAD_S = 2.0  # rest before the first and after the last event


# ----------------------------------------------------------------------------- helpers
def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise distances (cm) between rows of ``a`` and rows of ``b``."""
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)


def _pattern(center_cm: np.ndarray, width_cm: float) -> np.ndarray:
    """Smooth spatial pattern (C,): Gaussian in the distance from ``center_cm``, 1 at the nearest point."""
    d = np.linalg.norm(_POS_CM - center_cm, axis=1)
    p = np.exp(-0.5 * (d / width_cm) ** 2)
    return p / p.max()


def _shaped_noise(rng: np.random.Generator, n_series: int, n_times: int, sfreq: float, amp_fn) -> np.ndarray:
    """Gaussian noise (n_series, n_times) with amplitude spectrum ``amp_fn(f)``, unit std per series."""
    white = rng.standard_normal((n_series, n_times))
    f = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    x = np.fft.irfft(np.fft.rfft(white, axis=1) * amp_fn(f), n=n_times, axis=1)
    x -= x.mean(axis=1, keepdims=True)
    return x / (x.std(axis=1, keepdims=True) + 1e-12)


def _pink(rng, n_series, n_times, sfreq, exponent=1.0):
    return _shaped_noise(
        rng,
        n_series,
        n_times,
        sfreq,
        lambda f: np.where(f >= 0.5, np.maximum(f, 0.5) ** (-exponent / 2), 0.0),
    )


def _narrow(rng, n_series, n_times, sfreq, peak, width):
    peak, width = np.atleast_1d(peak)[:, None], np.atleast_1d(width)[:, None]
    return _shaped_noise(
        rng, n_series, n_times, sfreq, lambda f: np.exp(-0.5 * ((f[None] - peak) / width) ** 2)
    )


def _poisson_times(rng: np.random.Generator, rate_hz: float, t_end: float) -> np.ndarray:
    n = rng.poisson(rate_hz * t_end)
    return np.sort(rng.uniform(0.0, t_end, n))


def _ramp(t: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """0 before ``t0``, 1 after ``t1``, raised-cosine in between."""
    u = np.clip((t - t0) / max(t1 - t0, 1e-9), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)


# ----------------------------------------------------------------------------- subject / session
@dataclass(frozen=True)
class _Subject:
    mix: np.ndarray  # (C, C) near-identity spatial mixing
    gain: np.ndarray  # (C,) channel gains incl. the global gain
    pink_exp: float
    mu_f: float
    beta_f: float
    alpha_f: float
    src_pos: np.ndarray  # (2, 3) left / right sensorimotor source positions
    mu_amp: np.ndarray  # (2,) uV, left / right
    alpha_amp: float
    erd: float  # mean ERD depth
    blink_rate: float
    emg_rate: float
    focus: int  # seizure focus electrode


def _subject(seed: int, subject: int) -> _Subject:
    rng = np.random.default_rng([seed, subject, 101])
    n = len(MI_CHANNELS)
    d = _dist(_POS_CM, _POS_CM)
    mix = np.eye(n) + 0.15 * rng.standard_normal((n, n)) * np.exp(-d / 5.0)
    gain = np.exp(0.15 * rng.standard_normal(n) + 0.3 * rng.standard_normal())
    src_pos = _POS_CM[[_IDX["C3"], _IDX["C4"]]] + rng.uniform(-1.0, 1.0, (2, 3)) * [1.0, 1.0, 0.3]
    mu = rng.uniform(5.0, 9.0)
    asym = np.exp(0.5 * rng.normal(0.0, 0.25))
    return _Subject(
        mix=mix,
        gain=gain,
        pink_exp=float(rng.uniform(0.9, 1.3)),
        mu_f=float(rng.uniform(9.0, 12.0)),
        beta_f=float(rng.uniform(17.0, 24.0)),
        alpha_f=float(rng.uniform(8.5, 11.5)),
        src_pos=src_pos,
        mu_amp=np.array([mu * asym, mu / asym]),
        alpha_amp=float(rng.uniform(4.0, 9.0)),
        erd=float(rng.uniform(0.2, 0.5)),
        blink_rate=float(rng.uniform(0.15, 0.35)),
        emg_rate=float(rng.uniform(0.03, 0.08)),
        focus=int(rng.integers(n)),
    )


# ----------------------------------------------------------------------------- events
def _mi_events(rng: np.random.Generator, trials_per_class: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Cue onsets (s), class indices (0 left, 1 right) and total duration (whole seconds)."""
    y = rng.permutation(np.repeat(np.arange(2), trials_per_class))
    gaps = rng.uniform(1.5, 2.5, len(y))
    onsets = _LEAD_S + np.concatenate([[0.0], np.cumsum(TRIAL_S + gaps[:-1])])
    total = float(np.ceil(onsets[-1] + TRIAL_S + _LEAD_S))
    return onsets, y, total


def _seizure_events(rng: np.random.Generator, recording_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Seizure onsets and durations (s): 2-3 seizures, 20-45 s, at least 20 s apart and 10 s from the edges."""
    n = int(rng.integers(2, 4))
    dur = rng.uniform(20.0, 45.0, n)
    free = recording_s - 20.0 - dur.sum() - 20.0 * (n - 1)
    if free <= 0:
        raise ValueError(f"recording_s={recording_s} is too short for {n} seizures; use >= 200 s")
    cuts = np.sort(rng.uniform(0.0, free, n))
    onsets = 10.0 + cuts + np.concatenate([[0.0], np.cumsum(dur[:-1] + 20.0)])
    return np.round(onsets, 2), np.round(dur, 2)


# ----------------------------------------------------------------------------- signal terms
def _erd_envelopes(t: np.ndarray, onsets: np.ndarray, y: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Amplitude modulation (4, T) of left mu, right mu, left beta, right beta."""
    mod = np.ones((4, len(t)))
    sfreq = 1.0 / (t[1] - t[0])
    for o, c, dp in zip(onsets, y, depth, strict=True):
        i0, i1 = int(o * sfreq), min(int((o + TRIAL_S + 1.6) * sfreq), len(t))
        tt = t[i0:i1]
        drop = _ramp(tt, o + 0.3, o + 0.8) * (1.0 - _ramp(tt, o + TRIAL_S, o + TRIAL_S + 0.5))
        contra = 0 if c == 1 else 1  # right hand -> left hemisphere (C3)
        rebound = (
            0.3
            * _ramp(tt, o + TRIAL_S, o + TRIAL_S + 0.3)
            * (1.0 - _ramp(tt, o + TRIAL_S + 1.0, o + TRIAL_S + 1.5))
        )
        for band in (0, 2):
            mod[band + contra, i0:i1] *= 1.0 - dp * drop
            mod[band + 1 - contra, i0:i1] *= 1.0 - 0.2 * dp * drop
        mod[2 + contra, i0:i1] *= 1.0 + rebound
    return mod


def _spike_wave(phase: np.ndarray) -> np.ndarray:
    """Spike-and-wave waveform of a phase (rad): a sharp negative spike, then a slow positive wave."""
    u = np.mod(phase, 2 * np.pi)
    spike = -np.exp(-0.5 * ((u - 0.6) / 0.3) ** 2)
    wave = 0.6 * np.exp(-0.5 * ((u - 3.3) / 0.9) ** 2)
    return spike + wave


def _seizures(rng, subj: _Subject, onsets, durs, n_times: int, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """Ictal discharges (C, T) in uV and the background suppression factor (T,)."""
    t = np.arange(n_times) / sfreq
    out = np.zeros((len(MI_CHANNELS), n_times))
    suppress = np.ones(n_times)
    focus = _POS_CM[subj.focus]
    dfoc = np.linalg.norm(_POS_CM - focus, axis=1)[:, None]
    for o, dur in zip(onsets, durs, strict=True):
        i0, i1 = int(round(o * sfreq)), int(round((o + dur) * sfreq))
        u = (t[i0:i1] - o) / dur  # 0 -> 1 through the seizure
        f0, f1 = rng.uniform(5.0, 8.0), rng.uniform(2.5, 4.0)
        f = f0 + (f1 - f0) * u
        phase = 2 * np.pi * np.cumsum(f) / sfreq + np.cumsum(rng.normal(0.0, 0.02, len(u)))
        amp = rng.uniform(100.0, 250.0) * (0.1 + 0.9 * _ramp(u, 0.0, 0.3)) * (1.0 - _ramp(u, 0.9, 1.0))
        width = 4.0 + 6.0 * _ramp(u, 0.1, 0.7)
        field = np.exp(-0.5 * (dfoc / width[None]) ** 2)  # (C, L)
        out[:, i0:i1] += field * (amp * _spike_wave(phase))[None]
        rec = rng.uniform(10.0, 30.0)
        j1 = min(n_times, i1 + int(rec * sfreq))
        depth = rng.uniform(0.3, 0.6)
        suppress[i1:j1] = depth + (1.0 - depth) * (t[i1:j1] - t[i1]) / rec
    # isolated interictal spikes, outside seizures
    spikes = _poisson_times(rng, 0.05, t[-1])
    ictal = np.zeros(n_times, dtype=bool)
    for o, dur in zip(onsets, durs, strict=True):
        ictal[int(o * sfreq) : int((o + dur) * sfreq)] = True
    spikes = spikes[~ictal[(spikes * sfreq).astype(int)]]
    k = np.arange(int(0.4 * sfreq)) / sfreq
    kern = _spike_wave(2 * np.pi * k / 0.4)
    field = np.exp(-0.5 * (dfoc[:, 0] / 3.5) ** 2)
    for s, a in zip(spikes, rng.uniform(40.0, 80.0, len(spikes)), strict=True):
        i0 = int(s * sfreq)
        L = min(len(kern), n_times - i0)
        out[:, i0 : i0 + L] += a * field[:, None] * kern[None, :L]
    return out, suppress


def _artefacts(rng: np.random.Generator, subj: _Subject, n_times: int, sfreq: float) -> np.ndarray:
    """Eye blinks and muscle bursts (C, T) in uV."""
    t_end = n_times / sfreq
    out = np.zeros((len(MI_CHANNELS), n_times))
    # blinks: impulse train convolved with a gamma-shaped bump, frontal field
    blinks = _poisson_times(rng, subj.blink_rate, t_end - 0.5)
    train = np.zeros(n_times)
    np.add.at(train, (blinks * sfreq).astype(int), rng.uniform(60.0, 120.0, len(blinks)))
    tk = np.arange(int(0.45 * sfreq)) / sfreq
    tau = 0.05
    kern = (tk / tau) ** 2 * np.exp(-tk / tau)
    kern /= kern.max()
    y_fz = _POS_CM[_IDX["Fz"], 1]
    out += np.exp((_POS_CM[:, 1] - y_fz) / 3.0)[:, None] * np.convolve(train, kern)[:n_times][None]
    # muscle: high-passed white noise under Tukey envelopes, lateral field
    bursts = _poisson_times(rng, subj.emg_rate, t_end - 1.5)
    if len(bursts):
        emg = _shaped_noise(rng, 2, n_times, sfreq, lambda f: (f >= 20.0).astype(float))
        env = np.zeros((2, n_times))
        for s, d, a, side in zip(
            bursts,
            rng.uniform(0.3, 1.5, len(bursts)),
            rng.uniform(10.0, 30.0, len(bursts)),
            rng.integers(0, 3, len(bursts)),
            strict=True,
        ):
            i0, L = int(s * sfreq), int(d * sfreq)
            w = np.sin(np.pi * np.clip(np.arange(L) / (0.2 * L), 0, 1) / 2) ** 2
            w = w * w[::-1]
            for k in (0, 1):
                if side == 2 or side == k:
                    env[k, i0 : i0 + L] += a * w
        lateral = np.exp((np.abs(_POS_CM[:, 0]) - 8.3) / 2.0)
        sides = np.stack([lateral * (_POS_CM[:, 0] < 0), lateral * (_POS_CM[:, 0] > 0)])  # (2, C)
        out += sides.T @ (env * emg)
    return out


def synthesize_recording(
    subject: int,
    session: int,
    *,
    mode: str = "motor_imagery",
    trials_per_class: int = 40,
    seed: int = 0,
    sfreq: float = 250.0,
    recording_s: float = 240.0,
) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Simulate one recording without writing it.

    Args:
        subject: Subject index (0-based); fixes the subject's head, rhythms and artefact rates.
        session: Session index (0-based); fixes the covariance shift and the event sequence.
        mode: ``"motor_imagery"`` or ``"seizure"``.
        trials_per_class: Trials of each class (motor imagery).
        seed: Random seed; the same arguments give the same data.
        sfreq: Sampling rate in Hz.
        recording_s: Duration of a seizure-mode recording in seconds.

    Returns:
        ``(data, events)``: data ``(22, T)`` in volts, events as ``(onset_s, duration_s, description)``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if trials_per_class < 1:
        raise ValueError(f"trials_per_class must be >= 1, got {trials_per_class}")
    if sfreq < 100:
        raise ValueError(f"sfreq must be >= 100 Hz, got {sfreq}")
    subj = _subject(seed, subject)
    rng = np.random.default_rng([seed, subject, session, MODES.index(mode)])
    n_ch = len(MI_CHANNELS)
    if mode == "motor_imagery":
        onsets, y, total = _mi_events(rng, trials_per_class)
        events = [(float(o), TRIAL_S, CLASSES[c]) for o, c in zip(np.round(onsets, 3), y, strict=True)]
    else:
        total = float(np.ceil(recording_s))
        sz_on, sz_dur = _seizure_events(rng, total)
        events = [(float(o), float(d), SEIZURE) for o, d in zip(sz_on, sz_dur, strict=True)]
    n = int(round(total * sfreq))
    t = np.arange(n) / sfreq

    # background: spatially correlated pink noise
    d = _dist(_POS_CM, _POS_CM)
    chol = np.linalg.cholesky(0.7 * np.exp(-0.5 * (d / 4.0) ** 2) + 0.3 * np.eye(n_ch))
    brain = 8.0 * chol @ _pink(rng, n_ch, n, sfreq, subj.pink_exp)

    # rhythms: left/right mu, left/right beta, posterior alpha
    osc = _narrow(
        rng,
        5,
        n,
        sfreq,
        [subj.mu_f, subj.mu_f, subj.beta_f, subj.beta_f, subj.alpha_f],
        [1.0, 1.0, 2.5, 2.5, 1.0],
    )
    amp = np.concatenate([subj.mu_amp, 0.5 * subj.mu_amp, [subj.alpha_amp]])
    if mode == "motor_imagery":
        depth = np.clip(rng.normal(subj.erd, 0.2, len(y)), 0.0, 0.9)
        osc[:4] *= _erd_envelopes(t, onsets, y, depth)
    patterns = np.stack(
        [
            _pattern(subj.src_pos[0], 3.0),
            _pattern(subj.src_pos[1], 3.0),
            _pattern(subj.src_pos[0], 3.0),
            _pattern(subj.src_pos[1], 3.0),
            _pattern(_POS_CM[_IDX["POz"]], 3.5),
        ],
        axis=1,
    )  # (C, 5)
    brain += patterns @ (amp[:, None] * osc)

    if mode == "seizure":
        ictal, suppress = _seizures(rng, subj, sz_on, sz_dur, n, sfreq)
        brain = brain * suppress[None] + ictal

    # subject mixing and gains, then the session's covariance shift
    x = subj.gain[:, None] * (subj.mix @ brain)
    x *= np.exp(0.1 * rng.standard_normal(n_ch))[:, None]
    centres = _POS_CM[rng.integers(n_ch, size=2)]
    sess_pat = np.stack([_pattern(c, 5.0) for c in centres], axis=1)  # (C, 2)
    x += sess_pat @ (rng.uniform(3.0, 7.0, 2)[:, None] * _pink(rng, 2, n, sfreq))
    x += _artefacts(rng, subj, n, sfreq)
    x += rng.standard_normal((n_ch, n))  # 1 uV sensor noise
    lo, hi = _PHYS_RANGE_UV
    return np.clip(x, lo + 1e-3, hi - 1e-3) * _UV, events


# ----------------------------------------------------------------------------- writing
def _write_edf(path: Path, data: np.ndarray, events, sfreq: float, session: int) -> None:
    import mne  # lazy: MNE is slow to import and only writing the files needs it

    info = mne.create_info(list(MI_CHANNELS), sfreq, ch_types="eeg", verbose="error")
    raw = mne.io.RawArray(data, info, verbose="error")
    raw.set_meas_date(_MEAS_DATE + dt.timedelta(days=7 * session))
    if events:
        on, du, de = zip(*events, strict=True)
        raw.set_annotations(mne.Annotations(list(on), list(du), list(de)))
    with atomic_path(path) as tmp:
        mne.export.export_raw(
            tmp, raw, fmt="edf", physical_range=_PHYS_RANGE_UV, overwrite=True, verbose="error"
        )


def generate(
    out_dir: str | Path,
    *,
    n_subjects: int = 4,
    n_sessions: int = 2,
    trials_per_class: int = 40,
    mode: str = "motor_imagery",
    seed: int = 0,
    sfreq: float = 250.0,
    recording_s: float = 240.0,
) -> list[Path]:
    """Write synthetic EEG recordings as EDF+ files ``sub-XX_ses-YY.edf`` in ``out_dir``.

    Each file is written under a temporary name and renamed; ``sub-*_ses-*.edf`` files
    left by an earlier run with more subjects or sessions are removed (so write the two
    modes to separate folders). The same arguments give byte-identical files, and a
    subject's data do not depend on ``n_subjects`` or ``n_sessions``.

    Args:
        out_dir: Folder to write into (created if missing).
        n_subjects: Number of subjects (``sub-01`` ...).
        n_sessions: Sessions per subject (``ses-01`` ...); sessions differ by a covariance shift.
        trials_per_class: Motor imagery: trials of each class per session.
        mode: ``"motor_imagery"`` (annotations ``left_hand`` / ``right_hand``, 4 s each) or
            ``"seizure"`` (annotations ``seizure`` over the ictal segments).
        seed: Random seed.
        sfreq: Sampling rate in Hz (an integer rate keeps EDF records exact).
        recording_s: Seizure mode: duration of each recording in seconds (>= 200).

    Returns:
        The paths written, ordered by subject then session.
    """
    if n_subjects < 1 or n_sessions < 1:
        raise ValueError(f"n_subjects and n_sessions must be >= 1, got {n_subjects}, {n_sessions}")
    if n_subjects > 99 or n_sessions > 99:
        raise ValueError("at most 99 subjects and 99 sessions")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(n_subjects):
        for k in range(n_sessions):
            data, events = synthesize_recording(
                s,
                k,
                mode=mode,
                trials_per_class=trials_per_class,
                seed=seed,
                sfreq=sfreq,
                recording_s=recording_s,
            )
            path = out / f"sub-{s + 1:02d}_ses-{k + 1:02d}.edf"
            _write_edf(path, data, events, sfreq, k)
            paths.append(path)
    for stale in sorted(set(out.glob("sub-[0-9][0-9]_ses-[0-9][0-9].edf")) - set(paths)):
        stale.unlink()
    return paths


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m tasks.domains.eeg.synthetic OUT_DIR --mode motor_imagery --seed S``."""
    ap = argparse.ArgumentParser(description="Write synthetic EEG recordings as EDF+ files.")
    ap.add_argument("out_dir")
    ap.add_argument("--mode", choices=MODES, default="motor_imagery")
    ap.add_argument("--n-subjects", type=int, default=4)
    ap.add_argument("--n-sessions", type=int, default=2)
    ap.add_argument("--trials-per-class", type=int, default=40)
    ap.add_argument("--recording-s", type=float, default=240.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sfreq", type=float, default=250.0)
    a = ap.parse_args(argv)
    for p in generate(
        a.out_dir,
        n_subjects=a.n_subjects,
        n_sessions=a.n_sessions,
        trials_per_class=a.trials_per_class,
        mode=a.mode,
        seed=a.seed,
        sfreq=a.sfreq,
        recording_s=a.recording_s,
    ):
        print(p)


if __name__ == "__main__":
    main()
