"""Evaluation of the turbulence surrogates: one step ahead and by autoregressive rollout.

A surrogate maps the last ``t_in`` velocity snapshots ``(B, T_in, *grid, C)`` (physical
units) to the next one ``(B, *grid, C)``. :func:`evaluate_fields` scores every model
against the solver's held-out trajectories:

* **accuracy**: relative L2 error one step ahead (every window of the test set) and
  along a rollout that feeds each prediction back (:func:`rollout`);
* **physics**: the time-averaged kinetic-energy spectrum, the one-point PDFs of velocity
  and vorticity, and the rms velocity and enstrophy over the rollout window, each
  against the truth over the same steps;
* **stability**: two checks, the first to fire names the step. *energy*: the first step at
  which a rollout turns non-finite or its kinetic energy leaves the truth's band by more
  than ``blowup_factor``; *small-scale energy*: the first step at which the energy in the
  shells above ``small_scale_k_fraction`` of the Nyquist wavenumber exceeds the truth's there
  by more than ``small_scale_factor`` (grid-scale noise that leaves the total energy
  in its band, as a checkerboard does);
* **speed**: wall time per step at batch 1, and the speed-up over the solver.

:func:`hit_slice_check` is the sanity check of the spectrum code on real data: the
inertial-range slope of a slice of forced isotropic turbulence should be near -5/3.

Fields are ``(..., *grid, C)`` arrays with space in the order x, y(, z) (the layout of
:mod:`tasks.domains.turbulence.layout`); :mod:`tasks.domains.turbulence.physics` takes one array per
component, so ``a[..., 0], a[..., 1]`` are passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from tasks import store
from tasks.domains import LoadedModel
from tasks.domains.turbulence import physics
from tasks.domains.turbulence.data import load_fields, load_schema
from tasks.domains.turbulence.layout import FieldLayout
from tasks.domains.turbulence.readers import read_fields
from tasks.domains.turbulence.solver import HITConfig, SolverConfig, solver_cost
from tasks.loop import count_parameters
from tasks.measure import latency_ms, size_on_disk
from tasks.plotting import curve_style, pyplot, wrap_title

if TYPE_CHECKING:
    from tasks.params import Params

_PDF_SAMPLES = 200_000  # values per Wasserstein distance: enough for 3 digits, cheap on big grids
_PDF_BINS = 80
_SHELL_FLOOR = 1e-12  # shells with less of the peak energy are round-off, not flow
_GIF_FRAMES = 40
_GIF_PANEL_PX = 128  # each GIF panel is at most this many pixels a side, so the file stays small
_NAN = float("nan")
STAT_KEYS = (
    "spectrum_lsd",
    "spurious_energy_frac",
    "velocity_pdf_w1",
    "vorticity_pdf_w1",
    "rms_rel_err",
    "enstrophy_rel_err",
)
"""The long-run statistics of a model against the truth (NaN for a rollout that blows up at step 1)."""

METRIC_LINES = {
    "one-step rel-L2": "mean over every (t_in snapshots -> next) pair of ||pred - true||_2 / ||true||_2 "
    "(over grid and components).",
    "rel-L2 @s": "the same error s steps into the rollout, averaged over trajectories (NaN once a "
    "trajectory is non-finite).",
    "spectrum LSD": "RMS of log10(E_pred(k) / E_true(k)) of the time-averaged spectra over the resolved "
    "shells (1 <= k <= Nyquist, truth above 1e-12 of its peak); 0.1 is about +-26 % per shell.",
    "spurious energy (metrics only)": "fraction of the model's energy (k >= 1) in shells where the truth has "
    "none, e.g. beyond a sharp filter's cut-off; the LSD leaves those shells out.",
    "velocity / vorticity PDF W1": "1-D Wasserstein distance between the value distributions of model and "
    "truth over the rollout, divided by the truth's standard deviation.",
    "stable (check)": "whether the rollout stayed finite, within the energy band and without excess "
    "small-scale energy; else the check that fired first (energy, small-scale energy) and its step.",
    "ms/step (b=1)": "median wall time of one model step at batch 1 (CPU, one thread).",
    "speed-up vs solver": "solver wall time per model step divided by ms/step.",
}


# ============================================================================ helpers


def _components(a: np.ndarray) -> list[np.ndarray]:
    """``(..., C)`` -> one array per velocity component (physics' calling convention)."""
    if a.shape[-1] not in (2, 3):
        raise ValueError(f"need 2 or 3 velocity components on the last axis, got shape {a.shape}")
    return [a[..., i] for i in range(a.shape[-1])]


def _vorticity(a: np.ndarray, lengths: Sequence[float], periodic: bool = True) -> np.ndarray:
    """Vorticity of ``(..., *grid, C)``: the scalar ``dv/dx - du/dy`` in 2-D, ``|curl u|`` in 3-D.

    Spectral derivatives on a periodic grid; on one that is not (PIV), second-order finite differences
    (one-sided at the edges), since a spectral derivative would ring at the jump between opposite edges.
    """
    nd = len(lengths)
    if not periodic:
        grid = a.shape[-1 - nd:-1]

        def d(f, axis):
            return np.gradient(f, lengths[axis] / grid[axis], axis=f.ndim - nd + axis)
    elif nd == 2:
        return physics.vorticity_2d(a[..., 0], a[..., 1], lengths)
    else:
        def d(f, axis):  # physics' spectral derivative, so 2-D and 3-D share one convention
            return physics._derivative(f, axis, lengths)
    if nd == 2:
        u, v = (np.asarray(c, dtype=np.float64) for c in _components(a)[:2])
        return d(v, 0) - d(u, 1)
    u, v, w = (np.asarray(c, dtype=np.float64) for c in _components(a))

    wx, wy, wz = d(w, 1) - d(v, 2), d(u, 2) - d(w, 0), d(v, 0) - d(u, 1)
    return np.sqrt(wx**2 + wy**2 + wz**2)


def _rel_l2(pred: np.ndarray, true: np.ndarray, lead: int) -> np.ndarray:
    """Relative L2 error over all but the first ``lead`` axes."""
    p = pred.reshape(*pred.shape[:lead], -1).astype(np.float64)
    t = true.reshape(*true.shape[:lead], -1).astype(np.float64)
    return np.linalg.norm(p - t, axis=-1) / np.linalg.norm(t, axis=-1)


def _sample(x: np.ndarray, n: int = _PDF_SAMPLES) -> np.ndarray:
    # A fixed seed and equal shapes give truth and model the same grid points.
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size <= n:
        return x
    return x[np.random.default_rng(0).choice(x.size, n, replace=False)]


def _w1(true: np.ndarray, pred: np.ndarray) -> float:
    from scipy.stats import wasserstein_distance  # lazy: scipy.stats takes seconds to import

    t, p = _sample(true), _sample(pred)
    if t.size == 0 or not np.isfinite(p).all():
        return _NAN
    return float(wasserstein_distance(t, p) / t.std())


def _float(x) -> float | None:
    return None if x is None else float(x)


def _fmt(x) -> str:
    return "-" if x is None else "nan" if math.isnan(x) else f"{x:.3g}"


# ============================================================================ rollout


def rollout(model, initial: np.ndarray, steps: int, *, device: str = "cpu") -> np.ndarray:
    """Advance ``model`` autoregressively from the last ``T_in`` true snapshots.

    Each prediction is appended to the input window and the oldest snapshot dropped. A
    sample whose prediction turns non-finite is taken out of the batch; its remaining
    steps are NaN (blow-up is judged afterwards by :func:`evaluate_fields`).

    Args:
        model: Module mapping ``(B, T_in, *grid, C)`` to ``(B, *grid, C)``, physical units,
            already on ``device``.
        initial: ``(B, T_in, *grid, C)`` float32, physical units.
        steps: Number of steps to predict.
        device: Where the inputs go.

    Returns:
        ``(B, steps, *grid, C)`` float32 predictions.
    """
    x0 = np.asarray(initial, dtype=np.float32)
    if x0.ndim < 4:
        raise ValueError(f"initial must be (B, T_in, *grid, C), got shape {x0.shape}")
    out = np.full((x0.shape[0], steps, *x0.shape[2:]), np.nan, dtype=np.float32)  # (B, S, *grid, C)
    alive = np.arange(x0.shape[0])  # batch rows still finite -> their trajectory index
    model.eval()
    with torch.inference_mode():
        window = torch.from_numpy(x0.copy()).to(device)  # (b, T_in, *grid, C)
        for s in range(steps):
            if alive.size == 0:
                break
            y = model(window).float()  # (b, *grid, C)
            ok = torch.isfinite(y).flatten(1).all(1)  # (b,)
            ok_np = ok.cpu().numpy()
            out[alive[ok_np], s] = y[ok].cpu().numpy()
            alive = alive[ok_np]
            window = torch.cat([window[ok, 1:], y[ok].unsqueeze(1).to(window.dtype)], dim=1)
    return out


def _one_step_rel_l2(model, test: np.ndarray, t_in: int, batch_size: int, device: str) -> float:
    """Mean relative L2 error over every (window -> next snapshot) pair of the test set."""
    pairs = [(i, j) for i in range(test.shape[0]) for j in range(test.shape[1] - t_in)]
    errs = []
    model.eval()
    with torch.inference_mode():
        for c in range(0, len(pairs), batch_size):
            chunk = pairs[c : c + batch_size]
            x = np.stack([test[i, j : j + t_in] for i, j in chunk])  # (b, T_in, *grid, C)
            y = np.stack([test[i, j + t_in] for i, j in chunk])  # (b, *grid, C)
            pred = model(torch.from_numpy(x).to(device)).float().cpu().numpy()
            errs.append(_rel_l2(pred, y, 1))
    return float(np.mean(np.concatenate(errs)))


# ============================================================================ statistics


def _stats(fields: np.ndarray, lengths: Sequence[float], periodic: bool = True) -> dict[str, np.ndarray]:
    """Per-step diagnostics of ``(B, S, *grid, C)``, averaged over trajectories (spectra windowed if not periodic)."""
    d = len(lengths)
    comps = _components(fields)
    k, spec = physics.energy_spectrum(*comps, lengths=lengths, window=None if periodic else "hann")  # (B, S, K)
    omega = _vorticity(fields, lengths, periodic)  # (B, S, *grid)
    return {
        "k": k,
        "spectrum": spec.mean(0),  # (S, K)
        "spectrum_traj": spec,  # (B, S, K): the small-scale check is per trajectory, as the energy band
        "energy": physics.kinetic_energy(*comps, ndim=d),  # (B, S)
        "rms": physics.rms(fields, ndim=d + 1).mean(0),  # (S,)
        "enstrophy": physics.enstrophy(omega, ndim=d).mean(0),  # (S,)
        "vorticity": omega.astype(np.float32),
    }


def _blowup_step(pred: np.ndarray, e_pred: np.ndarray, e_true: np.ndarray, factor: float) -> int | None:
    """First step (1-based) where any trajectory is non-finite or leaves the energy band.

    The band is ``[min E_true / factor, factor * max E_true]`` per trajectory over the
    window: an energy that collapses is as much a failed rollout as one that explodes.
    """
    hi = factor * e_true.max(1, keepdims=True)  # (B, 1)
    lo = e_true.min(1, keepdims=True) / factor
    finite = np.isfinite(pred.reshape(*pred.shape[:2], -1)).all(-1)  # (B, S)
    bad = ~finite | ~(e_pred <= hi) | ~(e_pred >= lo)  # NaN energies compare False: bad
    steps = np.flatnonzero(bad.any(0))
    return int(steps[0]) + 1 if steps.size else None


def small_scale_check(
    k: np.ndarray,
    spec_pred: np.ndarray,
    spec_true: np.ndarray,
    k_nyquist: float,
    *,
    k_fraction: float,
    factor: float,
    floor: float,
) -> tuple[int | None, np.ndarray]:
    """First step (1-based) at which a rollout holds too much energy at small scales.

    The small scales are the shells with ``k > k_fraction * k_nyquist`` (the corner shells beyond the
    Nyquist circle included: a grid-scale checkerboard lives there). A trajectory fails at step ``s``
    when its small-scale energy exceeds ``factor`` times the truth's at that step, the truth's counted as at
    least ``floor`` times the truth's total energy (a filtered truth has next to none up there, so any
    round-off would otherwise be an infinite excess).

    Args:
        k: ``(K,)`` shell wavenumbers.
        spec_pred: ``(B, S, K)`` shell energies of the rollout (NaN after a blow-up: not judged).
        spec_true: ``(B, S, K)`` shell energies of the truth at the same steps.
        k_nyquist: The smallest Nyquist wavenumber of the grid's axes.
        k_fraction: Where the small scales start, as a fraction of ``k_nyquist``.
        factor: Allowed excess over the truth, > 1.
        floor: The truth's small-scale energy is taken as at least this fraction of its total energy.

    Returns:
        ``(step, curve)``: the first failing step (None if none) and, per step, the largest ratio over the
        trajectories of the rollout's small-scale energy to the (floored) truth's, ``(S,)`` (NaN where none is
        finite).
    """
    high = k > k_fraction * k_nyquist + 1e-9
    e_pred = spec_pred[..., high].sum(-1)  # (B, S)
    e_true = spec_true[..., high].sum(-1)
    ref = np.maximum(e_true, floor * spec_true.sum(-1))
    with np.errstate(all="ignore"):
        ratio = e_pred / ref  # (B, S); NaN after a blow-up compares False
    steps = np.flatnonzero((ratio > factor).any(0))
    curve = np.where(np.isfinite(ratio), ratio, -np.inf).max(0) if ratio.size else np.zeros(ratio.shape[1:])
    return (int(steps[0]) + 1 if steps.size else None), np.where(np.isfinite(curve), curve, np.nan)


def _k_nyquist(grid: Sequence[int], lengths: Sequence[float]) -> float:
    """The smallest Nyquist wavenumber ``pi * n / L`` over the grid's axes."""
    return min(math.pi * n / length for n, length in zip(grid, lengths, strict=True))


def _resolved(k: np.ndarray, e_true: np.ndarray, grid: Sequence[int], lengths: Sequence[float]) -> np.ndarray:
    """Shells that count in the spectrum distance.

    ``1 <= k <= k_Nyquist`` (inside the Nyquist circle, so every shell is complete) and
    holding more than ``1e-12`` of the truth's peak shell energy: below that a shell holds
    float32 round-off, whose log ratio would swamp the distance of a band-limited field.
    """
    k_nyq = _k_nyquist(grid, lengths)
    return (k > 0) & (k <= k_nyq + 1e-9) & (e_true > _SHELL_FLOOR * e_true.max())


def _compare(
    truth: np.ndarray, ts: dict, pred: np.ndarray, ps: dict, n: int, resolved: np.ndarray, empty: np.ndarray
) -> dict:
    """Long-run statistics of the model against the truth over the first ``n`` rollout steps."""
    if n == 0:
        return dict.fromkeys(STAT_KEYS, _NAN)
    e_t, e_p = ts["spectrum"][:n].mean(0), ps["spectrum"][:n].mean(0)  # (K,)

    def rel(key):
        t = float(ts[key][:n].mean())
        return abs(float(ps[key][:n].mean()) - t) / t

    return {
        "spectrum_lsd": float(physics.log_spectral_distance(e_t, e_p, where=resolved)),
        # What the distance cannot see: energy put where the (filtered) truth has none.
        "spurious_energy_frac": float(e_p[empty].sum() / e_p[1:].sum()),
        "velocity_pdf_w1": _w1(truth[:, :n], pred[:, :n]),
        "vorticity_pdf_w1": _w1(ts["vorticity"][:, :n], ps["vorticity"][:, :n]),
        "rms_rel_err": rel("rms"),
        "enstrophy_rel_err": rel("enstrophy"),
    }


# ============================================================================ evaluate


def evaluate_fields(
    models: Mapping[str, Any],
    test: np.ndarray,
    *,
    t_in: int,
    lengths: Sequence[float],
    dt_model: float,
    rollout_steps: int,
    report_steps: Sequence[int],
    blowup_factor: float,
    plots_dir: str | Path | None,
    small_scale_k_fraction: float = 0.5,
    small_scale_factor: float = 10.0,
    small_scale_floor: float = 1e-3,
    kinds: Mapping[str, str] | None = None,
    solver_seconds_per_step: float | None = None,
    latency_repeats: int = 20,
    throughput_batch_size: int = 0,
    n_snapshot_cols: int = 3,
    gif: bool = True,
    batch_size: int = 16,
    device: str = "cpu",
    periodic: bool = True,
) -> tuple[dict[str, dict], str, list[str]]:
    """Score every surrogate one step ahead and by rollout against the held-out truth.

    The rollout starts from the first ``t_in`` snapshots of every test trajectory and runs
    ``min(rollout_steps, n_time - t_in)`` steps. A model is unstable from the first step
    at which any trajectory turns non-finite or its mean kinetic energy leaves
    ``[min E_true / blowup_factor, blowup_factor * max E_true]`` (the true energy of that
    trajectory over the window); its spectrum, PDF, rms and enstrophy statistics are then
    taken over the steps before blow-up, against the truth over the same steps (NaN when
    it blows up at step 1). A model is also unstable from the first step at which a trajectory's
    energy above ``small_scale_k_fraction`` of the Nyquist wavenumber exceeds ``small_scale_factor``
    times the truth's (:func:`small_scale_check`); its statistics still cover the whole rollout, since
    the field is finite. ``stable_check`` names the check that fired first (``energy`` or
    ``small-scale energy``), ``unstable_step`` its step. In 3-D the vorticity is the magnitude of the curl.

    Args:
        models: Name -> module, ``(B, T_in, *grid, C)`` -> ``(B, *grid, C)``, physical units.
        test: ``(n_traj, n_time, *grid, C)`` float32 held-out trajectories, one model step
            (``dt_model``) between consecutive snapshots.
        t_in: Input snapshots per prediction.
        lengths: Domain period per spatial axis.
        dt_model: Physical time of one model step.
        rollout_steps: Requested rollout length (shortened to what the test data allow).
        report_steps: Steps ``s`` reported as ``rollout_rel_l2_<s>``; those beyond the
            effective rollout are left out (the markdown says so).
        blowup_factor: Width of the energy band, a factor > 1.
        plots_dir: Folder for the plots (created), or None for no plots.
        small_scale_k_fraction: The small-scale check's shells: ``k >`` this fraction of the Nyquist
            wavenumber.
        small_scale_factor: Allowed excess of the rollout's small-scale energy over the truth's, > 1.
        small_scale_floor: The truth's small-scale energy counts as at least this fraction of its total.
        kinds: Name -> short description for the table (default: the name).
        solver_seconds_per_step: Solver wall time per model step, for the speed-up.
        latency_repeats: Timed calls per model (0: no timing, ``ms_per_step`` None).
        throughput_batch_size: Windows per call for ``throughput_per_s`` (steps/s at that batch; 0: not measured).
        n_snapshot_cols: Rollout steps shown in ``snapshots.png``.
        gif: Also write ``rollout.gif``.
        batch_size: Windows per forward pass of the one-step evaluation and the rollout.
        device: Where the inputs go (the models must already be there).
        periodic: False for a grid that is not periodic: the spectra are windowed (Hann,
            :func:`tasks.domains.turbulence.physics.energy_spectrum`), the vorticity is taken by finite
            differences, and the report says so.

    Returns:
        ``(metrics, markdown, plot_names)``: metrics per model name (JSON-serialisable
        scalars plus ``rollout_curve`` and ``kind``), the report section, and the plot file
        names in display order.
    """
    test = np.asarray(test, dtype=np.float32)
    lengths = [float(v) for v in lengths]
    d = len(lengths)
    if test.ndim != d + 3:
        raise ValueError(f"test must be (n_traj, n_time, *grid ({d} axes), C), got shape {test.shape}")
    n_traj, n_time, grid = test.shape[0], test.shape[1], test.shape[2:-1]
    n_roll = min(int(rollout_steps), n_time - t_in)
    if n_roll < 1:
        raise ValueError(f"test trajectories of {n_time} snapshots leave no rollout step after t_in={t_in}")
    reached = [int(s) for s in report_steps if 1 <= s <= n_roll]
    kinds = dict(kinds or {})

    truth = test[:, t_in : t_in + n_roll]  # (B, S, *grid, C)
    ts = _stats(truth, lengths, periodic)
    e_true = ts["spectrum"].mean(0)  # (K,)
    resolved = _resolved(ts["k"], e_true, grid, lengths)
    empty = (ts["k"] > 0) & (e_true <= _SHELL_FLOOR * e_true.max())
    metrics: dict[str, dict] = {}
    series: dict[str, dict] = {}  # per model: what the plots need
    for name, model in models.items():
        chunks = range(0, n_traj, batch_size)
        pred = np.concatenate(
            [rollout(model, test[i : i + batch_size, :t_in], n_roll, device=device) for i in chunks]
        )
        with np.errstate(all="ignore"):  # blown-up values overflow on purpose
            ps = _stats(pred, lengths, periodic)
            curve = _rel_l2(pred, truth, 2).mean(0)  # (S,)
        blowup = _blowup_step(pred, ps["energy"], ts["energy"], blowup_factor)
        n_ok = n_roll if blowup is None else blowup - 1
        small, small_curve = small_scale_check(
            ts["k"], ps["spectrum_traj"][:, :n_ok], ts["spectrum_traj"][:, :n_ok], _k_nyquist(grid, lengths),
            k_fraction=small_scale_k_fraction, factor=small_scale_factor, floor=small_scale_floor)
        # The check that fired first names the failure (energy wins a tie: it includes non-finite values).
        check = ("energy" if blowup is not None else "small-scale energy" if small is not None else None)
        unstable_step = blowup if blowup is not None else small
        m: dict[str, Any] = {"kind": kinds.get(name, name)}
        m["one_step_rel_l2"] = _one_step_rel_l2(model, test, t_in, batch_size, device)
        m |= {f"rollout_rel_l2_{s}": float(curve[s - 1]) for s in reached}
        m |= {"rollout_steps": n_roll, "rollout_curve": [float(v) for v in curve]}
        with np.errstate(all="ignore"):
            m |= _compare(truth, ts, pred, ps, n_ok, resolved, empty)
        m |= {"stable": check is None, "stable_check": check, "unstable_step": unstable_step,
              "blowup_step": blowup, "small_scale_step": small,
              "small_scale_ratio_max": float(np.nanmax(small_curve)) if np.isfinite(small_curve).any() else _NAN,
              "small_scale_curve": [float(v) for v in small_curve],
              "stats_steps": n_ok}
        ms = per_s = None
        if latency_repeats > 0:
            x1 = torch.from_numpy(test[:1, :t_in].copy()).to(device)  # (1, T_in, *grid, C)
            ms = latency_ms(model, (x1,), repeats=latency_repeats)["per_item_ms"]
            if throughput_batch_size > 0:
                # The first window repeated: the test split may hold fewer trajectories than a batch, and the
                # cost of a step does not depend on the values. One warm-up call suffices for a batch.
                xb = x1.expand(throughput_batch_size, *x1.shape[1:]).contiguous()  # (B, T_in, *grid, C)
                per_s = 1e3 / latency_ms(model, (xb,), repeats=max(3, latency_repeats // 10),
                                         warmup=1)["per_item_ms"]
        m["ms_per_step"] = _float(ms)
        m["throughput_per_s"] = _float(per_s)
        solver_ms = None if solver_seconds_per_step is None else solver_seconds_per_step * 1e3
        speedup = None if ms is None or solver_ms is None else solver_ms / ms
        m["speedup_vs_solver"] = _float(speedup)
        metrics[name] = m
        series[name] = {"pred": pred, "stats": ps, "n_ok": n_ok, "curve": curve, "blowup": blowup}

    markdown = _markdown(metrics, reached, report_steps, n_traj, n_roll, t_in, dt_model, blowup_factor,
                         (small_scale_k_fraction, small_scale_factor, small_scale_floor))
    if not periodic:
        markdown += WINDOW_NOTE + "\n"
    plots: list[str] = []
    if plots_dir is not None:
        plots = _plots(Path(plots_dir), truth, ts, series, lengths, dt_model, n_snapshot_cols, gif)
    return metrics, markdown, plots


WINDOW_NOTE = ("Spectra windowed (Hann): the grid is not periodic (the ingest manifest's `periodic: false`); each "
               "component's spatial mean goes to shell 0 and its fluctuation is windowed before the FFT, and the "
               "vorticity is taken by finite differences.")
"""The line the report carries under the rollout table (and the spectrum check) for a grid that is not periodic."""


def _stable_cell(m: dict) -> str:
    """``yes``, or ``no: <check> at step <s>``."""
    return "yes" if m["stable"] else f"no: {m['stable_check']} at step {m['unstable_step']}"


def _markdown(metrics, reached, requested, n_traj, n_roll, t_in, dt_model, factor, small) -> str:
    stats = ("spectrum_lsd", "velocity_pdf_w1", "vorticity_pdf_w1")
    head = ["model", "kind", "one-step rel-L2", *(f"rel-L2 @{s}" for s in reached), "spectrum LSD"]
    head += [
        "velocity PDF W1",
        "vorticity PDF W1",
        "stable (check)",
        "small-scale excess",
        "ms/step (b=1)",
        "speed-up vs solver",
    ]
    lines = ["## Rollout evaluation", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in metrics.items():
        cells = [
            name,
            m["kind"],
            _fmt(m["one_step_rel_l2"]),
            *(_fmt(m[f"rollout_rel_l2_{s}"]) for s in reached),
        ]
        cells += [_fmt(m[k]) for k in stats] + [_stable_cell(m), _fmt(m["small_scale_ratio_max"])]
        speed = m["speedup_vs_solver"]
        cells += [_fmt(m["ms_per_step"]), "-" if speed is None else f"{speed:.3g}x"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"{n_traj} held-out test trajectories; each rollout starts from its first {t_in} true snapshot(s) and "
        f"runs {n_roll} steps of dt_model = {dt_model:g} ({n_roll * dt_model:.4g} time units). A rollout is "
        f"unstable from the first step at which any trajectory is non-finite or its mean kinetic energy leaves "
        f"[min / {factor:g}, {factor:g} x max] of the true energy over the window; the spectrum, PDF, rms and "
        f"enstrophy statistics of an unstable model cover only the steps before blow-up (against the truth over "
        f"the same steps), NaN if it blows up at the first step. It is also unstable (check: small-scale energy) "
        f"from the first step at which a trajectory's energy in the shells above {small[0]:g} x the Nyquist "
        f"wavenumber exceeds {small[1]:g} x the truth's there (counted as at least {small[2]:g} of the truth's total "
        f"energy): grid-scale noise such as a checkerboard, which leaves the total energy in its band. "
        f"*small-scale excess* is the largest such ratio over trajectories and steps.",
    ]
    skipped = [int(s) for s in requested if int(s) not in reached]
    if skipped:
        lines.append(
            f"Not reported: rel-L2 @{', @'.join(map(str, skipped))} (beyond the {n_roll}-step rollout)."
        )
    lines += ["", *(f"- **{k}**: {v}" for k, v in METRIC_LINES.items()), ""]
    return "\n".join(lines)


# ============================================================================ plots

TRUTH_STYLE = {"color": "k", "linestyle": "-", "linewidth": 4.5, "alpha": 0.35, "zorder": 1.5}
"""The truth's curve: wide, pale and underneath, so a model that matches it lies on it without hiding it."""


def _plots(out: Path, truth, ts, series, lengths, dt_model, n_cols, gif) -> list[str]:
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    names = list(series)
    n_roll = truth.shape[1]
    three_d = len(lengths) == 3

    def save(fig, name):
        if fig.get_layout_engine() is None:  # the image grids lay themselves out (constrained, colour bars)
            fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        return name

    def image(omega):  # (*grid) vorticity -> the 2-D image shown (mid-z plane in 3-D), y up
        return (omega[..., omega.shape[-1] // 2] if three_d else omega).T

    files = []
    # ---- spectra
    k, sel = ts["k"], ts["k"] > 0
    fig, ax = plt.subplots(figsize=(5, 4))
    e_true = ts["spectrum"].mean(0)
    ax.loglog(k[sel], e_true[sel], label="truth", **TRUTH_STYLE)
    for i, name in enumerate(names):
        s = series[name]
        if s["n_ok"]:
            tag = "" if s["blowup"] is None else " (pre-blow-up)"
            ax.loglog(k[sel], s["stats"]["spectrum"][: s["n_ok"]].mean(0)[sel], label=name + tag,
                      **curve_style(i, int(sel.sum())))
    k0 = k[sel][min(1, sel.sum() - 1)]  # anchor the guides on the truth at the second shell
    e0 = e_true[sel][min(1, sel.sum() - 1)]
    for p, lab in ((-3.0, "$k^{-3}$"), (-5 / 3, "$k^{-5/3}$")):
        ax.loglog(k[sel], e0 * (k[sel] / k0) ** p, ":", color="grey", label=lab)
    ax.set(xlabel="k", ylabel="E(k)", title="Time-averaged energy spectrum")
    ax.set_ylim(bottom=max(e_true[sel].min() * 1e-2, 1e-300))
    ax.legend(fontsize=7)
    files.append(save(fig, "spectra.png"))

    # ---- error vs time
    steps = np.arange(1, n_roll + 1)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, name in enumerate(names):
        s = series[name]
        (line,) = ax.plot(steps, s["curve"], label=name, **curve_style(i, n_roll))
        if s["blowup"] is not None:
            finite = np.isfinite(s["curve"][: s["blowup"]])
            y = s["curve"][: s["blowup"]][finite][-1] if finite.any() else 1.0
            ax.plot([s["blowup"]], [y], "X", ms=9, color=line.get_color())
    allv = np.concatenate([series[n]["curve"] for n in names])
    allv = allv[np.isfinite(allv)]
    if allv.size and (allv > 0).all():
        ax.set_yscale("log")
    ax.set(xlabel="rollout step", ylabel="relative L2 error", title="Rollout error (X: blow-up)")
    ax.secondary_xaxis("top", functions=(lambda x: x * dt_model, lambda t: t / dt_model)).set_xlabel("time")
    ax.legend(fontsize=7)
    files.append(save(fig, "error_vs_time.png"))

    # ---- vorticity snapshots: rows truth + models, columns steps; one colour scale per column
    cols = sorted({int(round(v)) for v in np.geomspace(1, n_roll, max(1, min(n_cols, n_roll)))})
    rows = [("truth", ts["vorticity"][0])] + [(n, series[n]["stats"]["vorticity"][0]) for n in names]
    vmax = [float(np.nanmax(np.abs(ts["vorticity"][0, c - 1]))) or 1.0 for c in cols]
    fig = _image_grid(plt, rows, cols, vmax, image, three_d, "step {}", 2.2)
    fig.suptitle("|vorticity|, mid-z plane" if three_d else "vorticity", fontsize=10)
    files.append(save(fig, "snapshots.png"))

    # ---- PDFs
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.3))
    for ax, label, key in ((axes[0], "velocity", None), (axes[1], "vorticity", "vorticity")):
        t_vals = _sample(truth if key is None else ts[key])
        lo, hi = t_vals.min(), t_vals.max()
        rng = (lo - 0.25 * (hi - lo), hi + 0.25 * (hi - lo))
        c, dens = physics.pdf(t_vals, _PDF_BINS, range=rng)
        ax.semilogy(c, np.where(dens > 0, dens, np.nan), label="truth", **TRUTH_STYLE)
        for i, name in enumerate(names):
            s = series[name]
            if s["n_ok"]:
                vals = s["pred"][:, : s["n_ok"]] if key is None else s["stats"][key][:, : s["n_ok"]]
                c, dens = physics.pdf(_sample(vals), _PDF_BINS, range=rng)
                ax.semilogy(c, np.where(dens > 0, dens, np.nan), label=name, **curve_style(i, len(c)))
        ax.set(xlabel=label + (" magnitude" if three_d and key else ""), ylabel="PDF")
    axes[0].legend(fontsize=7)
    files.append(save(fig, "pdfs.png"))

    # ---- rms and enstrophy over time
    t = steps * dt_model
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.3))
    for ax, key, label in ((axes[0], "rms", "rms velocity"), (axes[1], "enstrophy", "enstrophy")):
        ax.plot(t, ts[key], label="truth", **TRUTH_STYLE)
        for i, name in enumerate(names):
            ax.plot(t, series[name]["stats"][key], label=name, **curve_style(i, len(t)))
        ax.set(xlabel="time", ylabel=label)
        ax.set_ylim(0, 2.5 * float(np.max(ts[key])))  # a blown-up model must not flatten the truth
    axes[0].legend(fontsize=7)
    files.append(save(fig, "rms_enstrophy.png"))

    # ---- strip and GIF: truth vs the first model, one colour scale
    first = names[0]
    pair = rows[:2]
    vmax = float(np.nanpercentile(np.abs(ts["vorticity"][0]), 99.5)) or 1.0
    strip = sorted({int(v) for v in np.linspace(1, n_roll, min(8, n_roll)).round()})
    fig = _image_grid(plt, pair, strip, [vmax] * len(strip), image, three_d, "{}", 1.6)
    fig.suptitle(wrap_title(f"vorticity, truth vs {first}, by rollout step", fig, 9), fontsize=9)
    files.append(save(fig, "rollout_strip.png"))
    if gif:
        stacks = [np.stack([image(o) for o in omega]) for _, omega in pair]  # (S, H, W) each
        files.append(_gif(out / "rollout.gif", stacks, "viridis" if three_d else "RdBu_r", vmax, three_d))
    return files


def _image_grid(plt, rows, steps, vmax, image, three_d: bool, title: str, size: float):
    """Images of ``(S, *grid)`` vorticity per row at the (1-based) ``steps``, ``vmax`` per column.

    With a colour bar: one for the whole grid when every column shares its scale, else one under
    each column (the scale a reader reads that column's colours off).
    """
    shared = len(set(vmax)) == 1
    fig, axes = plt.subplots(
        len(rows), len(steps), figsize=(size * len(steps) + (0.9 if shared else 0), size * len(rows) + 0.6),
        squeeze=False, layout="constrained",
    )
    cmap = "viridis" if three_d else "RdBu_r"  # a magnitude in 3-D, a signed scalar in 2-D
    label = "|vorticity|" if three_d else "vorticity"
    for j, step in enumerate(steps):
        for i, (name, omega) in enumerate(rows):
            ax = axes[i, j]
            lo = 0.0 if three_d else -vmax[j]
            im = ax.imshow(image(omega[step - 1]), origin="lower", cmap=cmap, vmin=lo, vmax=vmax[j])
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(title.format(step), fontsize=8)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
        if not shared:
            bar = fig.colorbar(im, ax=axes[:, j], orientation="horizontal", shrink=0.9, aspect=15)
            bar.set_label(label, fontsize=7)
            bar.ax.tick_params(labelsize=6)
            bar.ax.xaxis.get_major_locator().set_params(nbins=3)  # a narrow column holds three ticks
    if shared:
        bar = fig.colorbar(im, ax=axes, shrink=0.9)
        bar.set_label(label, fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return fig


def _gif(path: Path, panels: list[np.ndarray], cmap: str, vmax: float, three_d: bool) -> str:
    """Side-by-side animated GIF of ``(S, H, W)`` panels: at most 40 frames, panels <= 128 px."""
    import matplotlib  # lazy: only the plots need it, and it is slow to import

    n, h, w = panels[0].shape
    frames = np.unique(np.linspace(0, n - 1, min(n, _GIF_FRAMES)).round().astype(int))
    stride = max(1, math.ceil(max(h, w) / _GIF_PANEL_PX))  # subsample large grids
    zoom = max(1, _GIF_PANEL_PX // math.ceil(max(h, w) / stride))  # and enlarge small ones
    vmin = 0.0 if three_d else -vmax
    colormap = matplotlib.colormaps[cmap]
    images = []
    for f in frames:
        tiles = []
        for p in panels:
            a = np.nan_to_num(p[f, ::-1][::stride, ::stride], nan=vmin)  # (h, w); row 0 on top: y flipped
            rgb = (colormap(np.clip((a - vmin) / (vmax - vmin), 0, 1))[..., :3] * 255).astype(np.uint8)
            tiles += [
                rgb.repeat(zoom, 0).repeat(zoom, 1),
                np.full((rgb.shape[0] * zoom, 4, 3), 255, np.uint8),
            ]
        frame = Image.fromarray(np.concatenate(tiles[:-1], axis=1))  # (H, 2W + 4, 3)
        images.append(frame.quantize(colors=32, method=Image.Quantize.MEDIANCUT))  # few colours: small file
    images[0].save(path, save_all=True, append_images=images[1:], duration=120, loop=0, optimize=True)
    return path.name


# ============================================================================ hit_slice check


HIT_SLICE_LAYOUT = FieldLayout(variables=["velocity_x", "velocity_y", "velocity_z"], axes="z,y,x")
"""The layout of ``hit_slice.nc``: one variable per component, stored ``(z, y, x)`` with ``z`` of length 1."""


def hit_slice_check(
    path: str | Path, plots_dir: str | Path, *, k_range: tuple[float, float] = (3, 10), layout=None,
    format: str = "auto", display: str | None = None,
) -> tuple[dict, str, list[str]]:
    """Inertial-range slope of a real turbulence slice: the spectrum code's check on real data.

    Args:
        path: A field file such as ``hit_slice.nc`` (one snapshot; every component is used,
            so a 2-D slice of a 3-D flow counts all three).
        plots_dir: Folder for ``hit_slice_spectrum.png`` (created).
        k_range: ``(kmin, kmax)`` of the least-squares fit of ``log E`` on ``log k``.
        layout: :class:`~tasks.domains.turbulence.layout.FieldLayout` of the file, as ingest takes it
            (``evaluate.turbulence.hit_slice_spec``; default :data:`HIT_SLICE_LAYOUT`). A text table or
            Tecplot file (a glob or folder too) is read as ingest reads it; a grid that is not periodic
            gets a windowed spectrum, and the section says so.
        format: The file's format, as ``ingest.turbulence.format`` (``auto``: detected).
        display: How messages and the report name the file (default: ``path``).

    Returns:
        ``(metrics, markdown, plot_names)``; ``({}, <skipped line>, [])`` when the file is absent.
    """
    path = Path(path)
    title = f"## Spectrum check on {path.name}"
    if not any(ch in str(path) for ch in "*?[") and not path.exists():
        return {}, f"{title}\n\nSkipped: {display or path} is absent.\n", []
    f = read_fields(path, layout or HIT_SLICE_LAYOUT, format=format, display=display)
    a = f.data[0, 0]  # (*grid, C), space x, y(, z)
    periodic = bool(f.attrs.get("periodic", True))
    # Every snapshot of every trajectory: one averaged spectrum (hit_slice.nc holds one).
    k, E = physics.energy_spectrum(*_components(f.data), lengths=f.lengths,
                                   window=None if periodic else "hann")  # (K,), (traj, time, K)
    E = E.reshape(-1, E.shape[-1]).mean(0)
    kmin, kmax = k_range
    slope = physics.inertial_slope(k, E, kmin, kmax)
    expected = -5 / 3
    metrics = {
        "slope": float(slope),
        "k_range": [float(kmin), float(kmax)],
        "expected": expected,
        "abs_error": abs(float(slope) - expected),
        "n": int(a.shape[0]),
        "grid": [int(v) for v in a.shape[:-1]],
        "components": list(f.components),
        "energy": float(E.sum()),
        "snapshots": int(f.data.shape[0] * f.data.shape[1]),
        "periodic": periodic,
        "window": None if periodic else "hann",
    }
    plt = pyplot()
    out = Path(plots_dir)
    out.mkdir(parents=True, exist_ok=True)
    sel = k > 0
    fit = (k >= kmin) & (k <= kmax)
    intercept = float(np.mean(np.log(E[fit]) - slope * np.log(k[fit])))
    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    ax.loglog(k[sel], E[sel], "k-", label="E(k)")
    ax.loglog(k[fit], np.exp(intercept) * k[fit] ** slope, "r-", lw=2, label=f"fit, slope {slope:.2f}")
    ax.loglog(k[sel], np.exp(intercept) * k[sel] ** expected * 0.3, ":", color="grey", label="$k^{-5/3}$")
    ax.set(xlabel="k", ylabel="E(k)", title=wrap_title(f"{path.name}: energy spectrum", fig))
    ax.legend(fontsize=8)
    fig.savefig(out / "hit_slice_spectrum.png", dpi=100)
    plt.close(fig)
    md = (
        f"{title}\n\nShell-summed energy spectrum of all {a.shape[-1]} velocity components on the "
        f"{' x '.join(map(str, a.shape[:-1]))} slice; the least-squares slope of log E(k) over "
        f"{kmin:g} <= k <= {kmax:g} is **{slope:.2f}**, beside Kolmogorov's -5/3 = {expected:.2f} "
        f"(difference {metrics['abs_error']:.2f}).\n"
    )
    if metrics["snapshots"] > 1:
        md += f"The spectrum is the mean over the file's {metrics['snapshots']} snapshots.\n"
    if not periodic:
        md += "Spectra windowed (Hann): the grid is not periodic.\n"
    return metrics, md, ["hit_slice_spectrum.png"]


# ============================================================================ the evaluate hook
KINDS = {"teacher": "IFactFormer-m", "int8": "IFactFormer-m, int8", "fno": "FNO baseline",
         "ifactformer_o": "IFactFormer-o baseline", "persistence": "u(t+1) = u(t)"}


def _solver_seconds_per_step(schema: dict, enabled: bool) -> float | None:
    """Wall time of the synthetic source's fine-grid solver to advance one model step (None for real data).

    The solver is rebuilt from the attributes the generator wrote (grid, physics, precision), spun up as
    the generator did, then timed over four model steps (:func:`tasks.domains.turbulence.solver.solver_cost`).
    """
    if not enabled or not schema.get("synthetic") or not schema.get("dt_model"):
        return None
    a = schema.get("source_attrs", {})
    common = {"n": int(a["fine_n"]), "viscosity": float(a["viscosity"]), "courant": float(a["courant"]),
              "dtype": str(a.get("solver_dtype", "float32"))}
    if schema.get("ndim") == 2:
        cfg: SolverConfig | HITConfig = SolverConfig(
            **common, forcing_amplitude=float(a["forcing_amplitude"]), forcing_wavenumber=int(a["forcing_wavenumber"]),
            drag=float(a["drag"]))
    else:
        cfg = HITConfig(**common, forcing_power=float(a["forcing_power"]), forcing_kmax=float(a["forcing_kmax"]))
    dt = float(schema["dt_model"])
    cost = solver_cost(cfg, spinup=float(a.get("spinup", 10.0)), duration=4 * dt, dt_snapshot=dt)
    return float(cost["wall_s_per_time_unit"]) * dt


def evaluate_models(params: Params, models: dict[str, LoadedModel],
                    plots_dir: Path) -> tuple[dict[str, Any], str, list[str]]:
    """Roll every model (teacher, compressed, neural baselines) and persistence out on the test trajectories.

    Returns:
        ``(result, markdown, plot files)``; ``result["models"]`` maps model name to its metrics.
    """
    p = params.evaluate.turbulence
    schema = load_schema()
    test = load_fields("test")["fields"]
    loaded, kinds, sizes, counts = {}, {}, {}, {}
    for name, lm in models.items():
        loaded[name] = lm.model
        kinds[name] = KINDS.get(name, lm.meta.get("compression", name))
        sizes[name] = size_on_disk(lm.folder / "model.safetensors")
        counts[name] = count_parameters(lm.model) if "compression" not in lm.meta else None
    loaded["persistence"] = Persistence()
    kinds["persistence"] = KINDS["persistence"]
    with torch.no_grad():
        solver_s = _solver_seconds_per_step(schema, p.solver_speed)
    metrics, md, plots = evaluate_fields(
        loaded, test, t_in=schema["t_in"], lengths=schema["lengths"], dt_model=schema["dt_model"] or 1.0,
        rollout_steps=p.rollout_steps, report_steps=p.report_steps, blowup_factor=p.blowup_factor,
        small_scale_k_fraction=p.small_scale_k_fraction, small_scale_factor=p.small_scale_factor,
        small_scale_floor=p.small_scale_floor,
        plots_dir=plots_dir, kinds=kinds, solver_seconds_per_step=solver_s, latency_repeats=p.latency_repeats,
        throughput_batch_size=p.throughput_batch_size, gif=p.gif, periodic=bool(schema.get("periodic", True)))
    # no model to time
    metrics["persistence"].update(ms_per_step=None, speedup_vs_solver=None, throughput_per_s=None)
    for name, m in metrics.items():
        m.update(bytes=sizes.get(name), parameters=counts.get(name))
        # The registry's latency budget reads latency_ms; here it is one predicted step at batch 1.
        m["latency_ms"] = m.get("ms_per_step")
    check_md, check_plots = "", []
    if p.hit_slice:
        path = Path(p.hit_slice)
        path = path if path.is_absolute() else store.project_root() / path
        check, check_md, check_plots = hit_slice_check(path, plots_dir, k_range=tuple(p.hit_slice_k_range),
                                                       layout=p.hit_slice_spec.to_layout(), format=p.hit_slice_format,
                                                       display=p.hit_slice)
    else:
        check = {}
    md += persistence_note(metrics)
    result = {"models": metrics, "n_test": int(test.shape[0]), "solver_seconds_per_step": solver_s,
              "periodic": bool(schema.get("periodic", True)),
              "hit_slice": check, "dt_model": schema["dt_model"], "grid": schema["grid"]}
    return result, md + ("\n\n" + check_md if check_md else ""), [*plots, *check_plots]


def persistence_note(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """A line under the rollout table: the models whose error at the longest reported step is above persistence's.

    Persistence (``u(t+1) = u(t)``) is the floor a surrogate must beat; the register gate does not promote a
    model worse than the best baseline (``register.turbulence.allow_below_baseline``), so this line says in the
    report why a model was not promoted. Empty when persistence was not rolled out.
    """
    base = metrics.get("persistence")
    steps = sorted(int(k.rsplit("_", 1)[1]) for k in (base or {}) if k.startswith("rollout_rel_l2_"))
    if not steps:
        return ""
    key = f"rollout_rel_l2_{steps[-1]}"
    ref = base[key]
    worse = [f"{name} {m[key]:.3g}" for name, m in metrics.items()
             if name != "persistence" and not (m.get(key) is not None and m[key] <= ref)]  # NaN counts as worse
    if not worse:
        return f"\n\nAt step {steps[-1]} every model beats persistence (rel-L2 {ref:.3g}).\n"
    return (f"\n\n**Worse than persistence** (rel-L2 {ref:.3g} at step {steps[-1]}): {', '.join(worse)}. The "
            "register gate does not promote a model worse than the best baseline of this report unless "
            "`register.turbulence.allow_below_baseline` is true.\n")


def Persistence():  # noqa: N802 - reads as the class it builds
    """The trivial forecast ``u(t+1) = u(t)`` (an ``nn.Module``): the floor a surrogate must beat at one step."""
    class _Persistence(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, -1]  # (B, T_in, *grid, C) -> (B, *grid, C)

    return _Persistence()
