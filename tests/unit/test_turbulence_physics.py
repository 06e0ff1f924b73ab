"""Unit tests for the turbulence diagnostics (:mod:`tasks.domains.turbulence.physics`).

Analytic fields check the conventions (Parseval normalisation of the spectrum, shell
placement, derivative signs); a random field with a prescribed power law checks the
slope fit end to end; the real-data test fits the inertial range of a slice of a
forced isotropic-turbulence DNS when the shared file is present.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import netcdf_file

from tasks.domains.turbulence.physics import (
    divergence,
    energy_spectrum,
    enstrophy,
    inertial_slope,
    kinetic_energy,
    log_spectral_distance,
    pdf,
    rms,
    vorticity_2d,
)

TWO_PI = 2 * math.pi
HIT_SLICE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "turbulence" / "hit_slice.nc"


def _grid(n: int, length: float = TWO_PI, ndim: int = 2) -> list[np.ndarray]:
    x = np.arange(n) * length / n
    return np.meshgrid(*[x] * ndim, indexing="ij")


def _power_law_field(n: int, slope: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random solenoidal 2-D velocity whose shell spectrum follows ``k**slope`` (random phases)."""
    k = np.fft.fftfreq(n, 1.0 / n)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    kk = np.hypot(kx, ky)
    # 2-D shells hold ~2*pi*k modes, so a per-mode amplitude^2 of k**(slope-1) gives E(k) ~ k**slope.
    amp = np.where((kk >= 1) & (kk < n / 3), np.maximum(kk, 1.0) ** ((slope - 1) / 2), 0.0)
    psi_hat = amp / np.where(kk > 0, kk, 1.0) * np.exp(2j * np.pi * rng.random((n, n)))
    # The real part symmetrises the random phases (Hermitian), keeping the spectrum's shape.
    psi_hat = np.fft.fft2(np.fft.ifft2(psi_hat).real)
    u = np.fft.ifft2(1j * ky * psi_hat).real
    v = np.fft.ifft2(-1j * kx * psi_hat).real
    return u, v


# ----------------------------------------------------------------------------- spectrum


@pytest.mark.parametrize("lengths", [(TWO_PI, TWO_PI), (TWO_PI, 2 * TWO_PI), (TWO_PI,) * 3])
def test_spectrum_parseval_random_field(lengths):
    rng = np.random.default_rng(0)
    shape = (3, 2) + (16,) * len(lengths)  # two batch axes are kept
    comps = [rng.standard_normal(shape) + 0.3 for _ in range(len(lengths))]  # nonzero mean included
    k, E = energy_spectrum(*comps, lengths=lengths)
    assert E.shape == (3, 2, k.size)
    assert k[1] == pytest.approx(TWO_PI / max(lengths))
    mean_ke = 0.5 * sum(c**2 for c in comps).mean(axis=tuple(range(-len(lengths), 0)))
    np.testing.assert_allclose(E.sum(-1), mean_ke, rtol=1e-12)
    np.testing.assert_allclose(E.sum(-1), kinetic_energy(*comps, ndim=len(lengths)), rtol=1e-12)


def test_spectrum_single_mode_lands_in_its_shell():
    X, Y = _grid(32)
    u = np.cos(3 * X + 4 * Y)  # |k| = 5, energy 0.5 * <cos^2> = 0.25
    k, E = energy_spectrum(u, np.zeros_like(u))
    assert E[5] == pytest.approx(0.25, rel=1e-12)
    assert np.delete(E, 5).max() < 1e-25
    # On a 4*pi box cos(x) is mode 2 of the fundamental 0.5: shell 2, k = 1.
    X, Y = _grid(32, 2 * TWO_PI)
    k, E = energy_spectrum(np.zeros_like(X), np.cos(X), lengths=(2 * TWO_PI,) * 2)
    assert k[2] == pytest.approx(1.0) and E[2] == pytest.approx(0.25, rel=1e-12)


def test_spectrum_third_component_on_a_2d_grid_and_torch_input():
    rng = np.random.default_rng(1)
    u, v, w = (rng.standard_normal((24, 24)) for _ in range(3))
    k2, E2 = energy_spectrum(u, v)
    k3, E3 = energy_spectrum(torch.from_numpy(u), v, w)  # tensors are accepted
    np.testing.assert_allclose(E3 - E2, energy_spectrum(np.zeros_like(w), w)[1], atol=1e-15)
    assert E3.sum() == pytest.approx(0.5 * np.mean(u**2 + v**2 + w**2), rel=1e-12)


def test_spectrum_rejects_mismatched_components():
    with pytest.raises(ValueError, match="shape"):
        energy_spectrum(np.zeros((8, 8)), np.zeros((8, 4)))


# ----------------------------------------------------------------------------- slope and distance


def test_inertial_slope_of_exact_power_laws_and_batches():
    k = np.arange(40.0)
    E = np.zeros((2, 40))
    E[0, 1:] = 3.0 * k[1:] ** (-5 / 3)
    E[1, 1:] = k[1:] ** -3.0
    assert inertial_slope(k, E[0], 4, 30) == pytest.approx(-5 / 3, abs=1e-12)
    np.testing.assert_allclose(inertial_slope(k, E, 4, 30), [-5 / 3, -3.0], atol=1e-12)
    with pytest.raises(ValueError, match="two shells"):
        inertial_slope(k, E[0], 4.5, 4.9)
    with pytest.raises(ValueError, match="non-positive"):
        inertial_slope(k, np.where(k == 10, 0.0, E[0]), 4, 30)


@pytest.mark.parametrize("slope", [-5 / 3, -3.0])
def test_inertial_slope_recovers_the_law_of_a_random_field(slope):
    u, v = _power_law_field(128, slope, np.random.default_rng(2))
    k, E = energy_spectrum(u, v)
    assert inertial_slope(k, E, 3, 35) == pytest.approx(slope, abs=0.1)


def test_log_spectral_distance():
    E = np.array([0.0, 1.0, 0.5, 0.25, 0.125])
    assert log_spectral_distance(E, E) == 0.0
    assert log_spectral_distance(E, 10 * E) == pytest.approx(1.0)  # the k = 0 shell (0) is skipped
    assert log_spectral_distance(E, E * np.array([1, 1, 1, 1, 100]), where=np.arange(5) < 4) == 0.0
    batch = log_spectral_distance(np.stack([E, E]), np.stack([E, E / 10]))
    np.testing.assert_allclose(batch, [0.0, 1.0])
    assert log_spectral_distance(E, np.zeros_like(E)) > 100  # a missing spectrum is far, not undefined


# ----------------------------------------------------------------------------- fields


def test_taylor_green_vorticity_enstrophy_divergence():
    X, Y = _grid(32)
    u, v = np.sin(X) * np.cos(Y), -np.cos(X) * np.sin(Y)
    omega = vorticity_2d(u, v)
    np.testing.assert_allclose(omega, 2 * np.sin(X) * np.sin(Y), atol=1e-13)
    assert enstrophy(omega) == pytest.approx(0.5, rel=1e-12)  # = |k|^2 E for a single shell
    assert kinetic_energy(u, v) == pytest.approx(0.25, rel=1e-12)
    assert np.abs(divergence(u, v)).max() < 1e-13
    np.testing.assert_allclose(divergence(np.sin(X), np.zeros_like(X)), np.cos(X), atol=1e-13)


def test_divergence_3d_and_lengths():
    X, Y, Z = _grid(16, ndim=3)
    w = np.sin(2 * Z)
    np.testing.assert_allclose(divergence(0 * X, 0 * Y, w), 2 * np.cos(2 * Z), atol=1e-12)
    X, Y = _grid(16, 2 * TWO_PI)
    np.testing.assert_allclose(divergence(np.sin(X), 0 * X, lengths=(2 * TWO_PI,) * 2), np.cos(X), atol=1e-12)
    with pytest.raises(ValueError, match="lengths"):
        divergence(X, Y, lengths=(TWO_PI,) * 3)


def test_enstrophy_of_vector_vorticity_and_rms():
    rng = np.random.default_rng(3)
    a, b, c = (rng.standard_normal((2, 8, 8, 8)) for _ in range(3))
    np.testing.assert_allclose(enstrophy((a, b, c), ndim=3), 0.5 * (a**2 + b**2 + c**2).mean((1, 2, 3)))
    x = np.array([[3.0, 4.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(rms(x, 1), [np.sqrt(12.5), 1.0])
    np.testing.assert_allclose(rms(x, 1, subtract_mean=True), [0.5, 0.0])
    assert rms(x) == pytest.approx(np.sqrt((9 + 16 + 9 + 16 + 4) / 8))


def test_pdf_is_a_density():
    x = np.random.default_rng(4).normal(5.0, 2.0, 200_000)
    centers, dens = pdf(x, 80)
    assert np.sum(dens) * (centers[1] - centers[0]) == pytest.approx(1.0)
    c, d = pdf(x, 81, range=(-4, 4), standardize=True)
    assert d[40] == pytest.approx(1 / math.sqrt(2 * math.pi), rel=0.03)  # standard normal peak


# ----------------------------------------------------------------------------- real data


@pytest.mark.skipif(not HIT_SLICE.exists(), reason=f"{HIT_SLICE} not available")
def test_hit_slice_has_a_kolmogorov_inertial_range():
    """A 256^2 slice of forced isotropic turbulence: Parseval holds, the slope is near -5/3.

    The file stores ``velocity_x/y/z`` shaped ``(1, 256, 256)`` over the dimensions
    ``(resolution_z, resolution_y, resolution_x)``: one z-plane, float32 big-endian,
    periodic in x and y (a [0, 2*pi) period is assumed; it only scales k). Measured: the
    2-D shell spectrum of (u, v, w) is compensated-flat over k ~ 3-10, where the fit gives
    -1.67; neighbouring ranges give -1.58 (3-8) to -1.98 (4-10) and -1.83 (2-8), one
    snapshot being noisy, hence the 0.3 tolerance. The range beyond (k 15-40) falls much
    faster (about -3.7): the dissipation range.
    """
    with netcdf_file(HIT_SLICE, "r", mmap=False) as f:
        # (z, y, x) -> (x, y): the layout of tasks.domains.turbulence.physics.
        u, v, w = (np.array(f.variables[f"velocity_{c}"].data[0], dtype=np.float64).T for c in "xyz")
    assert u.shape == (256, 256)
    k, E = energy_spectrum(u, v, w)
    assert E.sum() == pytest.approx(0.5 * np.mean(u**2 + v**2 + w**2), rel=1e-10)  # Parseval
    slope = inertial_slope(k, E, 3, 10)
    assert abs(slope + 5 / 3) < 0.3, slope
    assert inertial_slope(k, E, 15, 40) < slope - 1.0  # steeper dissipation range after it
