"""Turbulence diagnostics for evaluation: spectra, vorticity, divergence and one-point statistics.

Conventions (every function here):

* **Layout.** One array per velocity component, shaped ``(..., X, Y)`` on a 2-D grid or
  ``(..., X, Y, Z)`` on a 3-D grid: the last axes are space in the order x, y(, z); any
  leading axes (trajectory, time, ...) are a batch, and results keep them. A dataset
  stored with the components last (``(..., X, Y, C)``, as :mod:`tasks.domains.turbulence.synthetic`
  writes it) is passed as ``u=a[..., 0], v=a[..., 1]``.
* **Domain.** Periodic in every spatial direction, with uniform grids; ``lengths`` gives
  the period of each spatial axis (``2*pi`` by default), so wavenumbers are in physical
  units, ``k_i = 2*pi*m / L_i`` for integer ``m``. A grid that is not periodic (PIV) passes
  ``window="hann"`` to :func:`energy_spectrum` (``lengths`` is then ``n * dx``).
* **Derivatives** are spectral (FFT, multiply by ``i k``, inverse FFT); the Nyquist mode of
  an even grid has no defined derivative sign and is dropped from derivatives, which is
  what keeps them real.
* **Inputs** are NumPy arrays or torch tensors (moved to the CPU); outputs are NumPy
  float64 arrays, or Python floats where the result is a scalar.

The functions are pure: no state, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

TWO_PI = 2.0 * math.pi


def _np(x) -> np.ndarray:
    # torch tensors (possibly on a GPU, possibly requiring grad) and array-likes alike.
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _components(u, v, w) -> list[np.ndarray]:
    comps = [_np(c) for c in (u, v, w) if c is not None]
    if any(c.shape != comps[0].shape for c in comps):
        raise ValueError(f"components differ in shape: {[c.shape for c in comps]}")
    return comps


def _space_axes(ndim: int) -> tuple[int, ...]:
    return tuple(range(-ndim, 0))


def _wavevector(shape: Sequence[int], lengths: Sequence[float], *, drop_nyquist: bool) -> list[np.ndarray]:
    """Per-axis wavenumbers ``2*pi*m/L``, each shaped to broadcast over the spatial axes."""
    ks = []
    for i, (n, length) in enumerate(zip(shape, lengths, strict=True)):
        k = TWO_PI / length * np.fft.fftfreq(n, d=1.0 / n)
        if drop_nyquist and n % 2 == 0:
            k[n // 2] = 0.0
        view = [1] * len(shape)
        view[i] = n
        ks.append(k.reshape(view))
    return ks


def _derivative(f: np.ndarray, axis: int, lengths: Sequence[float]) -> np.ndarray:
    """Spectral derivative of ``f`` along spatial axis ``axis`` (0 = x) of a ``len(lengths)``-D grid."""
    d = len(lengths)
    axes = _space_axes(d)
    k = _wavevector(f.shape[-d:], lengths, drop_nyquist=True)[axis]
    return np.fft.ifftn(1j * k * np.fft.fftn(f, axes=axes), axes=axes).real


def hann(shape: Sequence[int]) -> np.ndarray:
    """The separable Hann window over a grid of ``shape``, scaled to unit mean square (energy kept on average)."""
    w = np.ones(tuple(shape))
    for i, n in enumerate(shape):
        view = [1] * len(shape)
        view[i] = n
        # the symmetric window, zero at both ends of a grid that includes its boundaries
        w = w * (np.hanning(n) if n > 1 else np.ones(1)).reshape(view)
    return w / np.sqrt(np.mean(w**2))


def energy_spectrum(
    u, v, w=None, lengths: Sequence[float] = (TWO_PI, TWO_PI), window: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic, shell-summed kinetic-energy spectrum of a periodic velocity field.

    The grid has ``len(lengths)`` spatial dimensions (2 or 3); the components given are the
    velocity components on it, so a 2-D slice of a 3-D flow passes ``u, v, w`` with two
    lengths. Every Fourier mode's energy ``0.5 * sum_c |c_hat(k)|^2`` (with ``c_hat`` the
    DFT divided by the number of points) goes to the shell ``round(|k| / dk)``, with
    ``dk = min_i 2*pi/L_i``, the smallest nonzero wavenumber. Nothing is dropped (shell 0
    holds the mean flow, the corner modes beyond the Nyquist circle get their own
    shells), so by Parseval

        ``E.sum(-1) == 0.5 * mean(u**2 + v**2 [+ w**2])``  (the mean kinetic energy).

    ``E`` is the energy per shell; the spectral density is ``E / dk`` (the same numbers
    on a ``2*pi`` box, where ``dk = 1``).

    Args:
        u: x-velocity, ``(..., X, Y[, Z])``.
        v: y-velocity, same shape.
        w: Optional third component, same shape.
        lengths: Period of each spatial axis; its length sets the grid's dimension.
        window: None for a periodic field, or ``"hann"`` for one that is not (PIV, a wall-bounded
            grid): the spatial mean of each component goes to shell 0 as it is, the fluctuation
            about it is multiplied by :func:`hann` before the FFT, so the jump between opposite
            edges does not leak energy into every shell. Parseval then holds on average, not
            exactly.

    Returns:
        ``(k, E)``: shell wavenumbers ``k = dk * arange(n_shells)`` and the energy per
        shell, shaped ``(..., n_shells)`` (the leading axes of the inputs are kept).
    """
    comps = _components(u, v, w)
    d = len(lengths)
    if d not in (2, 3) or comps[0].ndim < d:
        raise ValueError(f"need a 2-D or 3-D grid with inputs of at least that rank, got lengths={lengths}")
    shape = comps[0].shape[-d:]
    n_points = math.prod(shape)
    axes = _space_axes(d)
    if window is None:
        e = sum(0.5 * np.abs(np.fft.fftn(c, axes=axes) / n_points) ** 2 for c in comps)  # (..., *shape)
    elif window == "hann":
        win = hann(shape)
        e = 0.0
        for c in comps:
            mean = c.mean(axis=axes, keepdims=True)
            e = e + 0.5 * np.abs(np.fft.fftn((c - mean) * win, axes=axes) / n_points) ** 2
            e[(..., *([0] * d))] += 0.5 * mean.reshape(mean.shape[:-d]) ** 2  # the mean flow, unwindowed
    else:
        raise ValueError(f"window {window!r}: use None or 'hann'")
    ks = _wavevector(shape, lengths, drop_nyquist=False)
    kmag = np.sqrt(sum(k**2 for k in ks))  # broadcasts to shape
    dk = min(TWO_PI / length for length in lengths)
    shell = np.rint(np.broadcast_to(kmag, shape) / dk).astype(np.int64).ravel()  # (M,)
    n_shells = int(shell.max()) + 1
    lead = e.shape[:-d]
    rows = e.reshape(-1, n_points)  # (B, M)
    # One bincount over all rows: offset each row's shell indices by row * n_shells.
    idx = (np.arange(rows.shape[0])[:, None] * n_shells + shell[None, :]).ravel()
    spec = np.bincount(idx, weights=rows.ravel(), minlength=rows.shape[0] * n_shells)
    return dk * np.arange(n_shells, dtype=np.float64), spec.reshape(*lead, n_shells)


def inertial_slope(k, E, kmin: float, kmax: float):
    """Least-squares slope of ``log E`` against ``log k`` over ``kmin <= k <= kmax``.

    Args:
        k: Shell wavenumbers, ``(K,)``.
        E: Spectrum, ``(K,)`` or ``(..., K)`` (one fit per leading index).
        kmin: Lower end of the fit range (inclusive; ``k = 0`` is never used).
        kmax: Upper end of the fit range (inclusive).

    Returns:
        The slope (``-5/3`` for a Kolmogorov inertial range, ``-3`` for the 2-D enstrophy
        cascade); a float for 1-D ``E``, else an array of the leading shape.

    Raises:
        ValueError: Fewer than two shells in range, or a non-positive energy in range.
    """
    k, E = _np(k), _np(E)
    # A relative slack of 1e-6 at the ends: a domain length from printed coordinates (a text table) is off in
    # the 9th digit, which would move the shell k = kmax just outside an inclusive range.
    sel = (k >= kmin * (1 - 1e-6)) & (k <= kmax * (1 + 1e-6)) & (k > 0)
    if sel.sum() < 2:
        raise ValueError(f"need at least two shells in [{kmin}, {kmax}], got {int(sel.sum())}")
    Es = E[..., sel]  # (..., m)
    if np.any(Es <= 0):
        raise ValueError("non-positive energy in the fit range; the log-log fit is undefined")
    ys = np.log(Es).reshape(-1, int(sel.sum())).T  # (m, B): polyfit fits each column
    slope = np.polyfit(np.log(k[sel]), ys, 1)[0]
    return float(slope[0]) if E.ndim == 1 else slope.reshape(E.shape[:-1])


def log_spectral_distance(E_true, E_pred, *, where=None):
    """RMS over shells of ``log10(E_pred / E_true)``: 0 for equal spectra, 0.1 for about +-26 %.

    Only shells where ``E_true > 0`` (and ``where``, if given) count; a non-positive
    predicted energy is floored at the smallest normal float, which makes the distance
    large rather than undefined.

    Args:
        E_true: Reference spectrum, ``(..., K)``.
        E_pred: Predicted spectrum, same shape.
        where: Optional boolean mask over the ``K`` shells (e.g. ``k <= k_cut``).

    Returns:
        The distance, a float for 1-D spectra, else an array of the leading shape.
    """
    t, p = _np(E_true), _np(E_pred)
    if t.shape != p.shape:
        raise ValueError(f"spectra differ in shape: {t.shape} vs {p.shape}")
    mask = t > 0
    if where is not None:
        mask = mask & np.broadcast_to(np.asarray(where, dtype=bool), t.shape)
    tiny = np.finfo(np.float64).tiny
    d2 = np.where(mask, np.log10(np.maximum(p, tiny) / np.where(mask, t, 1.0)) ** 2, 0.0)
    n = mask.sum(-1)
    if np.any(n == 0):
        raise ValueError("no shell with positive reference energy")
    out = np.sqrt(d2.sum(-1) / n)
    return float(out) if out.ndim == 0 else out


def vorticity_2d(u, v, lengths: Sequence[float] = (TWO_PI, TWO_PI)) -> np.ndarray:
    """Vorticity ``dv/dx - du/dy`` of a 2-D periodic velocity field, ``(..., X, Y)``."""
    u, v = _components(u, v, None)
    if len(lengths) != 2:
        raise ValueError("vorticity_2d needs two lengths")
    return _derivative(v, 0, lengths) - _derivative(u, 1, lengths)


def divergence(u, v, w=None, lengths: Sequence[float] | None = None) -> np.ndarray:
    """Spectral divergence ``du/dx + dv/dy [+ dw/dz]``; the grid dimension is the number of components.

    Args:
        u: x-velocity, ``(..., X, Y)`` or ``(..., X, Y, Z)``.
        v: y-velocity.
        w: z-velocity (3-D grids only).
        lengths: Periods, ``2*pi`` on every axis by default.

    Returns:
        The divergence field, same shape as ``u``.
    """
    comps = _components(u, v, w)
    lengths = tuple(lengths) if lengths is not None else (TWO_PI,) * len(comps)
    if len(lengths) != len(comps):
        raise ValueError(f"{len(comps)} components need {len(comps)} lengths, got {len(lengths)}")
    return sum(_derivative(c, i, lengths) for i, c in enumerate(comps))


def kinetic_energy(u, v, w=None, ndim: int = 2):
    """Mean kinetic energy ``0.5 * <|u|^2>`` over the last ``ndim`` (spatial) axes."""
    comps = _components(u, v, w)
    out = 0.5 * sum(c**2 for c in comps).mean(axis=_space_axes(ndim))
    return float(out) if np.ndim(out) == 0 else out


def enstrophy(omega, ndim: int = 2):
    """Mean enstrophy ``0.5 * <|omega|^2>`` over the last ``ndim`` axes.

    Args:
        omega: The 2-D vorticity ``(..., X, Y)``, or a sequence of vorticity components
            (3-D: ``(wx, wy, wz)``, each ``(..., X, Y, Z)`` with ``ndim=3``).
        ndim: Number of spatial axes.

    Returns:
        A float, or an array of the leading shape.
    """
    comps = [_np(c) for c in omega] if isinstance(omega, (list, tuple)) else [_np(omega)]
    out = 0.5 * sum(c**2 for c in comps).mean(axis=_space_axes(ndim))
    return float(out) if np.ndim(out) == 0 else out


def rms(values, ndim: int | None = None, *, subtract_mean: bool = False):
    """Root mean square over the last ``ndim`` axes (all axes when ``None``).

    Args:
        values: Any array.
        ndim: Number of trailing axes to average over.
        subtract_mean: Take the rms of the fluctuation about the mean over those axes
            (``u'`` rather than ``u``).

    Returns:
        A float, or an array of the leading shape.
    """
    x = _np(values)
    axes = None if ndim is None else _space_axes(ndim)
    if subtract_mean:
        x = x - x.mean(axis=axes, keepdims=True)
    out = np.sqrt((x**2).mean(axis=axes))
    return float(out) if np.ndim(out) == 0 else out


def pdf(
    values,
    bins: int | Sequence[float] = 64,
    *,
    range: tuple[float, float] | None = None,
    standardize: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Probability density of all entries of ``values`` (a histogram normalised to unit area).

    Args:
        values: Any array; it is flattened.
        bins: Number of bins or their edges.
        range: ``(lo, hi)`` of the bins; the data's range by default.
        standardize: Subtract the mean and divide by the standard deviation first (to
            compare shapes, e.g. velocity-gradient tails, across flows).

    Returns:
        ``(centers, density)`` with ``sum(density * diff(edges)) == 1``.
    """
    x = _np(values).ravel()
    if standardize:
        x = (x - x.mean()) / x.std()
    density, edges = np.histogram(x, bins=bins, range=range, density=True)
    return 0.5 * (edges[:-1] + edges[1:]), density
