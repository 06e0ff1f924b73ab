"""Pseudo-spectral Navier-Stokes solver of the ``turbulence`` domain, with its filters.

The solver behind the synthetic data source (:func:`tasks.domains.turbulence.synthetic.generate`)
and the solver cost the evaluation compares the surrogates with (:func:`solver_cost`):

* **2-D (default): Kolmogorov flow.** Incompressible Navier-Stokes on the periodic
  square ``[0, 2*pi)^2`` in vorticity-streamfunction form,

      ``d(omega)/dt + u . grad(omega) = nu * lap(omega) - mu * omega + F``,
      ``lap(psi) = -omega``,  ``u = d(psi)/dy``,  ``v = -d(psi)/dx``,

  driven by the Kolmogorov body force ``f = (A sin(n_f y), 0)`` in the x-momentum
  equation, whose curl is the vorticity forcing ``F = -A n_f cos(n_f y)``; ``mu`` is
  a linear (Rayleigh) drag that removes the energy the inverse cascade carries to
  the largest scales. The mean velocity is zero (it is not represented by the
  streamfunction; with drag it would decay anyway).
* **3-D (the "paper" profile): forced homogeneous isotropic turbulence** on the
  periodic box ``[0, 2*pi)^3`` in velocity form, ``du/dt = P[u x omega] + nu lap(u) + f``
  with the Leray projection ``P`` standing in for the pressure, and a low-wavenumber
  linear forcing ``f_hat = eps / (2 E_f) u_hat`` on the shells ``0 < |k| <= k_f``
  (``E_f`` is the energy in them), which injects exactly the power ``eps``
  (Lundgren's linear forcing restricted to the large scales, as in Alvelius-type
  constant-power schemes).

Numerics (both): Fourier pseudo-spectral, ``torch.fft.rfft2`` / ``rfftn``; the
products are de-aliased by the **2/3 rule** (modes with any ``|k_i| >= n/3`` are
zeroed, so the state lives in the de-aliased subspace all the time). Time stepping is
the **integrating-factor fourth-order Runge-Kutta scheme** (Lawson's IF-RK4):
viscosity and drag are linear and diagonal in Fourier space, so they are integrated
*exactly* by the factor ``exp(-(nu k^2 + mu) dt)`` (no viscous stability limit; the
decay of a Taylor-Green vortex is exact to round-off), and the advection and forcing
terms get classical RK4, whose stability interval on the imaginary axis
(``2*sqrt(2)``) allows Courant numbers up to about 1.3 with this de-aliasing. The step
is CFL-limited: ``dt = courant / max(|u|/dx + |v|/dy [+ |w|/dz])``, capped by
``dt_max``.

This module holds the configs (:class:`SolverConfig`, :class:`HITConfig`), the solvers
(:class:`NavierStokes2D`, :class:`NavierStokes3D`, :func:`make_solver`) with their exact
reference solutions (:func:`taylor_green`, :func:`abc_flow`) and runs (:class:`Run`), the
filters that turn a fine field into an LES-like one (:func:`spectral_filter`: sharp
spectral cut-off, box or Gaussian, width in cells of the coarse grid; :func:`coarsen`:
spectral truncation to the coarse grid), and the cost measurement (:func:`solver_cost`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tqdm.auto import tqdm

TWO_PI = 2.0 * math.pi
FILTERS = ("spectral", "box", "gaussian")


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class SolverConfig:
    """2-D Kolmogorov flow on ``[0, 2*pi)^2``.

    The defaults give a chaotic, statistically steady flow a few time units after a
    random start of matching energy: mean kinetic energy 0.045-0.05 (a quarter of the
    laminar Kolmogorov profile's 0.186; 10 % fluctuations), ``max(|u| + |v|)`` about 1,
    so a CFL step of about 0.025 at 128^2. Half of the energy sits in the forcing shell
    ``k = 4``, a third at ``k = 1-3`` (inverse transfer); beyond ``k = 4`` the spectrum
    falls roughly as ``k^-5`` (the drag steepens the ``k^-3`` enstrophy range), about 8
    decades to the de-aliasing cut-off at 128^2, which is therefore well resolved.
    Stronger forcing gives more turbulent flow at a cost: ``forcing_amplitude=0.4``
    holds an energy of about 0.3 and needs about 2.5x the steps per unit time.

    Attributes:
        n: Grid points per side (even, >= 8).
        viscosity: Kinematic viscosity ``nu``.
        forcing_amplitude: ``A`` in the body force ``(A sin(n_f y), 0)``.
        forcing_wavenumber: ``n_f``.
        drag: Linear drag coefficient ``mu`` (0 turns it off).
        courant: Courant number of the CFL step, ``dt * max(|u|/dx + |v|/dy)``.
        dt_max: Upper bound on the step.
        dtype: ``"float64"`` (physics tests) or ``"float32"`` (faster).
        device: Torch device.
    """

    n: int = 128
    viscosity: float = 1e-3
    forcing_amplitude: float = 0.1
    forcing_wavenumber: int = 4
    drag: float = 0.1
    courant: float = 0.5
    dt_max: float = 0.05
    dtype: str = "float64"
    device: str = "cpu"


@dataclass(frozen=True)
class HITConfig:
    """3-D forced homogeneous isotropic turbulence on ``[0, 2*pi)^3``.

    Attributes:
        n: Grid points per side (even, >= 8).
        viscosity: Kinematic viscosity ``nu``.
        forcing_power: Injected power ``eps`` (per unit mass); in the steady state it
            equals the dissipation rate.
        forcing_kmax: The forcing acts on the shells ``0 < |k| <= forcing_kmax``.
        courant: Courant number, ``dt * max(|u|/dx + |v|/dy + |w|/dz)``.
        dt_max: Upper bound on the step.
        dtype: ``"float64"`` or ``"float32"``.
        device: Torch device.
    """

    n: int = 32
    viscosity: float = 0.02
    forcing_power: float = 0.1
    forcing_kmax: float = 2.5
    courant: float = 0.5
    dt_max: float = 0.05
    dtype: str = "float64"
    device: str = "cpu"


# --------------------------------------------------------------------------- helpers


def _real_dtype(name: str) -> torch.dtype:
    if name not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {name!r}")
    return getattr(torch, name)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads (``None``: leave as is), then restore the setting.

    The solver's FFTs at 128^2 are too small to split across threads: on a shared
    two-core machine two threads ran a step 10-20x slower than one (OpenMP threads
    spinning against other processes), so
    :func:`~tasks.domains.turbulence.synthetic.generate` and :func:`solver_cost` default
    to one.
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _check_n(n: int) -> None:
    if n < 8 or n % 2:
        raise ValueError(f"grid size must be even and >= 8, got {n}")


def _wavenumbers(n: int, ndim: int, dtype: torch.dtype, device) -> list[torch.Tensor]:
    """Integer wavenumbers of an ``rfftn`` layout on a ``2*pi`` box, each broadcastable to ``(n, .., n//2+1)``."""
    ks = []
    for i in range(ndim):
        last = i == ndim - 1
        k = (torch.fft.rfftfreq if last else torch.fft.fftfreq)(n, d=1.0 / n, dtype=dtype, device=device)
        view = [1] * ndim
        view[i] = k.numel()
        ks.append(k.reshape(view))
    return ks


def _dealias_mask(ks: list[torch.Tensor], n: int) -> torch.Tensor:
    # Orszag's 2/3 rule: |k_i| < n/3 on every axis leaves no aliased triad. The mean
    # (k = 0) is zeroed too, because no dynamics may change it (zero mean vorticity,
    # momentum conservation).
    keep = torch.ones((), dtype=torch.bool, device=ks[0].device)
    for k in ks:
        keep = keep & (k.abs() < n / 3.0)
    k2 = sum(k**2 for k in ks)
    return (keep & (k2 > 0)).to(ks[0].dtype)


def _rfft_weight(n: int, ndim: int, dtype, device) -> torch.Tensor:
    """How often each ``rfftn`` coefficient appears in the full spectrum (1 or 2), for Parseval sums."""
    w = torch.full((n // 2 + 1,), 2.0, dtype=dtype, device=device)
    w[0] = 1.0
    w[-1] = 1.0  # Nyquist column (n even)
    return w.reshape([1] * (ndim - 1) + [n // 2 + 1])


def _lawson_rk4(w, dt: float, linear: torch.Tensor, rhs):
    """One integrating-factor RK4 step of ``dw/dt = linear * w + rhs(w)`` (``linear`` diagonal).

    Written with ``exp(L dt/2)`` and ``exp(L dt)`` multiplying forward only, never
    dividing, so strongly damped modes underflow to 0 instead of overflowing.
    """
    e2 = torch.exp(linear * (0.5 * dt))
    e = e2 * e2
    a = rhs(w)
    b = rhs(e2 * (w + (0.5 * dt) * a))
    c = rhs(e2 * w + (0.5 * dt) * b)
    d = rhs(e * w + dt * (e2 * c))
    return e * w + (dt / 6.0) * (e * a + 2.0 * e2 * (b + c) + d)


def _steps_for(duration: float, dt_cfl: float) -> tuple[int, float]:
    """Smallest number of equal steps of at most ``dt_cfl`` that lands exactly on ``duration``."""
    n = max(1, math.ceil(duration / dt_cfl - 1e-9))
    return n, duration / n


# --------------------------------------------------------------------------- 2-D solver


def taylor_green(
    n: int, t: float, nu: float, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2-D Taylor-Green vortex at time ``t``, an exact Navier-Stokes solution on ``[0, 2*pi)^2``.

    ``u = sin x cos y exp(-2 nu t)``, ``v = -cos x sin y exp(-2 nu t)`` (wavenumber 1 in
    each direction, ``|k|^2 = 2``); its advection term is a pure pressure gradient, so
    without forcing and drag the kinetic energy decays as ``0.25 exp(-4 nu t)``.

    Returns:
        ``(u, v)``, each ``(n, n)`` indexed ``[x, y]``.
    """
    x = torch.arange(n, dtype=dtype) * (TWO_PI / n)
    X, Y = torch.meshgrid(x, x, indexing="ij")  # (n, n) each
    decay = math.exp(-2.0 * nu * t)
    return torch.sin(X) * torch.cos(Y) * decay, -torch.cos(X) * torch.sin(Y) * decay


class NavierStokes2D:
    """Pseudo-spectral solver of 2-D incompressible Navier-Stokes with Kolmogorov forcing.

    Vorticity-streamfunction form on ``[0, 2*pi)^2`` (see the module docstring), 2/3-rule
    de-aliasing, integrating-factor RK4 with a CFL step. The state is the vorticity's
    ``rfft2``, ``omega_hat`` shaped ``(..., n, n//2+1)`` (x on the full axis, y on the
    half axis; leading axes are independent flows that share each step), always kept in
    the de-aliased subspace.

    Args:
        config: Physics and numerics, :class:`SolverConfig`.
    """

    def __init__(self, config: SolverConfig = SolverConfig()):
        _check_n(config.n)
        self.config = config
        self.dtype = _real_dtype(config.dtype)
        self.device = torch.device(config.device)
        n = config.n
        self.n = n
        self.dx = TWO_PI / n
        kx, ky = _wavenumbers(n, 2, self.dtype, self.device)  # (n, 1), (1, n//2+1)
        self.ikx, self.iky = 1j * kx, 1j * ky
        k2 = kx**2 + ky**2  # (n, n//2+1)
        self.inv_k2 = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, 1.0), 0.0)
        self.mask = _dealias_mask([kx, ky], n)
        self.linear = -(config.viscosity * k2 + config.drag)
        y = torch.arange(n, dtype=self.dtype, device=self.device) * self.dx
        nf, amp = config.forcing_wavenumber, config.forcing_amplitude
        # curl of (A sin(nf y), 0) is -d/dy(A sin(nf y)); broadcast over x to a full (n, n) field.
        forcing = (-amp * nf * torch.cos(nf * y)).expand(n, n)
        self.forcing_hat = torch.fft.rfft2(forcing) * self.mask

    # -- transforms
    def to_spectral(self, field: torch.Tensor) -> torch.Tensor:
        """``rfft2`` of a real field ``(..., n, n)`` in the solver's dtype, de-aliased."""
        return torch.fft.rfft2(field.to(self.dtype)) * self.mask

    def vorticity_hat(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Spectral vorticity ``dv/dx - du/dy`` of a velocity field ``(..., n, n)`` (the solver's state)."""
        return self.ikx * self.to_spectral(v) - self.iky * self.to_spectral(u)

    def velocity_hat(self, omega_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u_hat, v_hat)`` from the streamfunction ``psi_hat = omega_hat / k^2``."""
        psi = omega_hat * self.inv_k2
        return self.iky * psi, -self.ikx * psi

    def velocity(self, omega_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Velocity ``(u, v)`` on the grid, each ``(..., n, n)`` indexed ``[x, y]``."""
        u_hat, v_hat = self.velocity_hat(omega_hat)
        uv = torch.fft.irfft2(torch.stack([u_hat, v_hat], dim=-3), s=(self.n, self.n))  # (..., 2, n, n)
        return uv[..., 0, :, :], uv[..., 1, :, :]

    def divergence(self, u_hat: torch.Tensor, v_hat: torch.Tensor) -> torch.Tensor:
        """Spectral divergence ``du/dx + dv/dy`` on the grid, ``(..., n, n)``."""
        return torch.fft.irfft2(self.ikx * u_hat + self.iky * v_hat, s=(self.n, self.n))

    def energy(self, omega_hat: torch.Tensor) -> torch.Tensor:
        """Mean kinetic energy ``0.5 <u^2 + v^2>``, shaped like the leading axes."""
        u, v = self.velocity(omega_hat)
        return 0.5 * (u**2 + v**2).mean(dim=(-2, -1))

    def enstrophy(self, omega_hat: torch.Tensor) -> torch.Tensor:
        """Mean enstrophy ``0.5 <omega^2>``, shaped like the leading axes."""
        w = torch.fft.irfft2(omega_hat, s=(self.n, self.n))
        return 0.5 * (w**2).mean(dim=(-2, -1))

    # -- dynamics
    def rhs(self, omega_hat: torch.Tensor) -> torch.Tensor:
        """Advection and forcing, ``-(u . grad omega)_hat + F_hat``, de-aliased (the explicit part)."""
        psi = omega_hat * self.inv_k2
        spectral = torch.stack(
            [self.iky * psi, -self.ikx * psi, self.ikx * omega_hat, self.iky * omega_hat], dim=-3
        )  # (..., 4, n, n//2+1): u, v, d(omega)/dx, d(omega)/dy
        u, v, wx, wy = torch.fft.irfft2(spectral, s=(self.n, self.n)).unbind(-3)  # (..., n, n) each
        return self.forcing_hat - torch.fft.rfft2(u * wx + v * wy) * self.mask

    def step(self, omega_hat: torch.Tensor, dt: float) -> torch.Tensor:
        """Advance by ``dt`` with integrating-factor RK4 (viscosity and drag exact)."""
        return _lawson_rk4(omega_hat, dt, self.linear, self.rhs)

    def cfl_dt(self, omega_hat: torch.Tensor) -> float:
        """Largest step with ``dt * max(|u|/dx + |v|/dy) <= courant``, capped by ``dt_max``."""
        u, v = self.velocity(omega_hat)
        rate = float((u.abs() + v.abs()).amax()) / self.dx
        return self.config.dt_max if rate == 0 else min(self.config.courant / rate, self.config.dt_max)

    def advance(self, omega_hat: torch.Tensor, duration: float) -> tuple[torch.Tensor, int, float]:
        """Integrate exactly ``duration`` in equal CFL-safe steps.

        The step is the CFL step at the start, shrunk so that a whole number of steps
        lands on ``duration``; it is not re-evaluated within the interval (the Courant
        number 0.5 leaves a factor of about 2.5 to RK4's stability limit for the
        velocity to grow in).

        Returns:
            ``(omega_hat, n_steps, dt)``.
        """
        n_steps, dt = _steps_for(duration, self.cfl_dt(omega_hat))
        for _ in range(n_steps):
            omega_hat = self.step(omega_hat, dt)
        return omega_hat, n_steps, dt

    def random_initial(self, seed, *, k_max: float = 8.0, energy: float = 0.05) -> torch.Tensor:
        """Band-limited random vorticity: white noise restricted to ``1 <= |k| <= k_max``, scaled to ``energy``.

        Args:
            seed: Anything :func:`numpy.random.default_rng` accepts (e.g. ``[seed, trajectory]``).
            k_max: Largest wavenumber of the initial field.
            energy: Mean kinetic energy of the initial field.

        Returns:
            ``omega_hat``, ``(n, n//2+1)``.
        """
        noise = np.random.default_rng(seed).standard_normal((self.n, self.n))
        w_hat = self.to_spectral(torch.from_numpy(noise))
        kx, ky = self.ikx.imag, self.iky.imag
        w_hat = w_hat * ((kx**2 + ky**2) <= k_max**2)
        return w_hat * math.sqrt(energy / float(self.energy(w_hat)))

    def run(
        self,
        omega_hat: torch.Tensor,
        *,
        n_snapshots: int,
        dt_snapshot: float,
        spinup: float = 0.0,
        progress: bool | None = False,
    ) -> Run:
        """Spin up, then record ``n_snapshots`` velocity snapshots ``dt_snapshot`` apart.

        The spin-up runs in equal chunks of at most ``dt_snapshot`` (the CFL step is
        re-evaluated at each, and the energy recorded). The first snapshot is the state at ``t = spinup``.
        Each interval between snapshots is an integer number of equal solver steps: the
        CFL step at the interval's start, shrunk so that it divides ``dt_snapshot``.

        Args:
            omega_hat: Initial state, ``(..., n, n//2+1)``.
            n_snapshots: Number of snapshots (>= 1).
            dt_snapshot: Physical time between snapshots.
            spinup: Physical time run before the first snapshot.
            progress: Show a tqdm bar (``None``: only on a terminal).

        Returns:
            A :class:`Run` with fine-grid velocities ``(n_snapshots, ..., 2, n, n)``.
        """
        if n_snapshots < 1 or dt_snapshot <= 0 or spinup < 0:
            raise ValueError("need n_snapshots >= 1, dt_snapshot > 0 and spinup >= 0")
        return _run(self, omega_hat, n_snapshots, dt_snapshot, spinup, progress)


# --------------------------------------------------------------------------- 3-D solver


def abc_flow(
    n: int,
    t: float,
    nu: float,
    a: float = 1.0,
    b: float = 1.0,
    c: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Arnold-Beltrami-Childress flow at time ``t``, an exact 3-D Navier-Stokes solution.

    ``u = (a sin z + c cos y, b sin x + a cos z, c sin y + b cos x) exp(-nu t)``. Its
    vorticity equals the velocity, so ``u x omega = 0`` and only viscosity acts: the
    kinetic energy decays as ``exp(-2 nu t)``.

    Returns:
        ``(u, v, w)``, each ``(n, n, n)`` indexed ``[x, y, z]``.
    """
    x = torch.arange(n, dtype=dtype) * (TWO_PI / n)
    X, Y, Z = torch.meshgrid(x, x, x, indexing="ij")
    d = math.exp(-nu * t)
    return (
        (a * torch.sin(Z) + c * torch.cos(Y)) * d,
        (b * torch.sin(X) + a * torch.cos(Z)) * d,
        (c * torch.sin(Y) + b * torch.cos(X)) * d,
    )


class NavierStokes3D:
    """Pseudo-spectral solver of 3-D incompressible Navier-Stokes: forced isotropic turbulence.

    Velocity form on ``[0, 2*pi)^3``, rotational nonlinear term ``u x omega``, Leray
    projection for the pressure, low-wavenumber constant-power linear forcing (see the
    module docstring), 2/3-rule de-aliasing, integrating-factor RK4 for viscosity with a
    CFL step. The state is ``u_hat`` shaped ``(..., 3, n, n, n//2+1)`` (components, then
    x, y on full axes and z on the half axis), divergence-free and de-aliased.

    Args:
        config: Physics and numerics, :class:`HITConfig`.
    """

    def __init__(self, config: HITConfig = HITConfig()):
        _check_n(config.n)
        self.config = config
        self.dtype = _real_dtype(config.dtype)
        self.device = torch.device(config.device)
        n = config.n
        self.n = n
        self.dx = TWO_PI / n
        ks = _wavenumbers(n, 3, self.dtype, self.device)  # (n,1,1), (1,n,1), (1,1,n//2+1)
        self.k = torch.stack(torch.broadcast_tensors(*ks))  # (3, n, n, n//2+1)
        self.ik = 1j * self.k
        k2 = (self.k**2).sum(0)
        self.inv_k2 = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, 1.0), 0.0)
        self.mask = _dealias_mask(list(ks), n)
        self.linear = -config.viscosity * k2
        self.forced = ((k2 > 0) & (k2 <= config.forcing_kmax**2)).to(self.dtype)
        self.weight = _rfft_weight(n, 3, self.dtype, self.device)

    def to_spectral(self, u: torch.Tensor) -> torch.Tensor:
        """Projected, de-aliased ``rfftn`` of a velocity ``(..., 3, n, n, n)``."""
        return self.project(torch.fft.rfftn(u.to(self.dtype), dim=(-3, -2, -1)) * self.mask)

    def project(self, a_hat: torch.Tensor) -> torch.Tensor:
        """Leray projection ``a - k (k . a) / k^2`` onto divergence-free fields, ``(..., 3, n, n, n//2+1)``."""
        return a_hat - self.k * ((self.k * a_hat).sum(-4, keepdim=True) * self.inv_k2)

    def velocity(self, u_hat: torch.Tensor) -> torch.Tensor:
        """Velocity on the grid, ``(..., 3, n, n, n)``."""
        return torch.fft.irfftn(u_hat, s=(self.n,) * 3, dim=(-3, -2, -1))

    def divergence(self, u_hat: torch.Tensor) -> torch.Tensor:
        """Spectral divergence on the grid, ``(..., n, n, n)``."""
        return torch.fft.irfftn((self.ik * u_hat).sum(-4), s=(self.n,) * 3, dim=(-3, -2, -1))

    def inner(
        self, a_hat: torch.Tensor, b_hat: torch.Tensor, where: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Grid mean of ``a . b`` from the spectra (Parseval), optionally over the modes in ``where`` only."""
        # Interior z-columns of the half spectrum stand for two modes each.
        p = (a_hat.conj() * b_hat).real.sum(-4) * self.weight  # (..., n, n, n//2+1)
        if where is not None:
            p = p * where
        return p.sum(dim=(-3, -2, -1)) / float(self.n**3) ** 2

    def energy(self, u_hat: torch.Tensor) -> torch.Tensor:
        """Mean kinetic energy ``0.5 <|u|^2>``, shaped like the leading axes."""
        return 0.5 * self.inner(u_hat, u_hat)

    def forcing(self, u_hat: torch.Tensor) -> torch.Tensor:
        """The forcing ``eps / (2 E_f) u_hat`` on the forced shells; its power ``<f . u>`` is ``eps``."""
        e_forced = 0.5 * self.inner(u_hat, u_hat, self.forced)  # (...)
        gain = self.config.forcing_power / (2.0 * e_forced.clamp_min(torch.finfo(self.dtype).tiny))
        gain = torch.where(e_forced > 0, gain, torch.zeros_like(gain))  # nothing to amplify: no forcing
        return gain[..., None, None, None, None] * self.forced * u_hat

    def rhs(self, u_hat: torch.Tensor) -> torch.Tensor:
        """``P[u x omega]_hat`` plus the forcing, de-aliased (the explicit part)."""
        ik = self.ik
        w_hat = torch.stack(
            [
                ik[1] * u_hat[..., 2, :, :, :] - ik[2] * u_hat[..., 1, :, :, :],
                ik[2] * u_hat[..., 0, :, :, :] - ik[0] * u_hat[..., 2, :, :, :],
                ik[0] * u_hat[..., 1, :, :, :] - ik[1] * u_hat[..., 0, :, :, :],
            ],
            dim=-4,
        )  # (..., 3, n, n, n//2+1): vorticity
        phys = torch.fft.irfftn(torch.cat([u_hat, w_hat], dim=-4), s=(self.n,) * 3, dim=(-3, -2, -1))
        u0, u1, u2, w0, w1, w2 = phys.unbind(-4)  # (..., n, n, n) each
        # Written out: torch.linalg.cross was the slowest op of the step on CPU.
        cross = torch.stack([u1 * w2 - u2 * w1, u2 * w0 - u0 * w2, u0 * w1 - u1 * w0], dim=-4)
        return self.project(torch.fft.rfftn(cross, dim=(-3, -2, -1)) * self.mask) + self.forcing(u_hat)

    def step(self, u_hat: torch.Tensor, dt: float) -> torch.Tensor:
        """Advance by ``dt`` with integrating-factor RK4 (viscosity exact)."""
        return _lawson_rk4(u_hat, dt, self.linear, self.rhs)

    def cfl_dt(self, u_hat: torch.Tensor) -> float:
        """Largest step with ``dt * max(|u|/dx + |v|/dy + |w|/dz) <= courant``, capped by ``dt_max``."""
        rate = float(self.velocity(u_hat).abs().sum(-4).amax()) / self.dx
        return self.config.dt_max if rate == 0 else min(self.config.courant / rate, self.config.dt_max)

    def advance(self, u_hat: torch.Tensor, duration: float) -> tuple[torch.Tensor, int, float]:
        """Integrate exactly ``duration`` in equal CFL-safe steps (see :meth:`NavierStokes2D.advance`)."""
        n_steps, dt = _steps_for(duration, self.cfl_dt(u_hat))
        for _ in range(n_steps):
            u_hat = self.step(u_hat, dt)
        return u_hat, n_steps, dt

    def random_initial(self, seed, *, k_max: float = 4.0, energy: float = 0.5) -> torch.Tensor:
        """Band-limited random solenoidal velocity (``1 <= |k| <= k_max``) scaled to ``energy``; ``(3, n, n, n//2+1)``."""
        noise = np.random.default_rng(seed).standard_normal((3, self.n, self.n, self.n))
        u_hat = self.to_spectral(torch.from_numpy(noise))
        u_hat = u_hat * ((self.k**2).sum(0) <= k_max**2)
        return u_hat * math.sqrt(energy / float(self.energy(u_hat)))

    def run(
        self,
        u_hat: torch.Tensor,
        *,
        n_snapshots: int,
        dt_snapshot: float,
        spinup: float = 0.0,
        progress: bool | None = False,
    ) -> Run:
        """Spin up and record snapshots, as :meth:`NavierStokes2D.run`; velocities ``(n_snapshots, ..., 3, n, n, n)``."""
        if n_snapshots < 1 or dt_snapshot <= 0 or spinup < 0:
            raise ValueError("need n_snapshots >= 1, dt_snapshot > 0 and spinup >= 0")
        return _run(self, u_hat, n_snapshots, dt_snapshot, spinup, progress)


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    """The result of a solver run.

    Attributes:
        t: Snapshot times, ``(S,)``.
        velocity: Fine-grid velocity, ``(S, ..., C, n, n[, n])`` (components before space).
        energy: Mean kinetic energy at each snapshot, ``(S, ...)``.
        spinup_t: Times of the spin-up energy record (end of each chunk), ``(P,)``.
        spinup_energy: Energy at those times, ``(P, ...)``.
        dts: Solver step used in each of the ``S - 1`` snapshot intervals.
        spinup_dts: Solver step used in each spin-up chunk.
        n_steps: Solver steps taken in all.
        state: The final spectral state (to continue the run).
    """

    t: np.ndarray
    velocity: torch.Tensor
    energy: torch.Tensor
    spinup_t: np.ndarray
    spinup_energy: torch.Tensor
    dts: list[float] = field(default_factory=list)
    spinup_dts: list[float] = field(default_factory=list)
    n_steps: int = 0
    state: torch.Tensor | None = None


def _velocity_of(solver, state) -> torch.Tensor:
    if isinstance(solver, NavierStokes2D):
        return torch.stack(solver.velocity(state), dim=-3)  # (..., 2, n, n)
    return solver.velocity(state)  # (..., 3, n, n, n)


def _run(solver, state, n_snapshots, dt_snapshot, spinup, progress) -> Run:
    n_chunks = math.ceil(spinup / dt_snapshot - 1e-9) if spinup > 0 else 0
    bar = tqdm(
        total=n_chunks + n_snapshots - 1,
        desc="turbulence",
        unit="interval",
        disable=(None if progress is None else not progress),
        leave=False,
    )
    dts, sp_dts, steps, sp_t, sp_e = [], [], 0, [], []
    for i in range(n_chunks):
        state, k, dt = solver.advance(state, spinup / n_chunks)
        sp_dts.append(dt)
        steps += k
        sp_t.append(spinup * (i + 1) / n_chunks)
        sp_e.append(solver.energy(state))
        bar.update()
    vel, energy = [_velocity_of(solver, state)], [solver.energy(state)]
    for _ in range(n_snapshots - 1):
        state, k, dt = solver.advance(state, dt_snapshot)
        dts.append(dt)
        steps += k
        vel.append(_velocity_of(solver, state))
        energy.append(solver.energy(state))
        bar.update()
    bar.close()
    empty = torch.zeros((0, *state.shape[: state.ndim - (2 if isinstance(solver, NavierStokes2D) else 4)]))
    return Run(
        t=spinup + dt_snapshot * np.arange(n_snapshots),
        velocity=torch.stack(vel),
        energy=torch.stack(energy),
        spinup_t=np.asarray(sp_t),
        spinup_energy=torch.stack(sp_e) if sp_e else empty,
        dts=dts,
        spinup_dts=sp_dts,
        n_steps=steps,
        state=state,
    )


# --------------------------------------------------------------------------- filters


def _as_tensor(field) -> tuple[torch.Tensor, bool]:
    if isinstance(field, torch.Tensor):
        return field, False
    return torch.as_tensor(np.asarray(field, dtype=np.float64)), True


def _grid_size(t: torch.Tensor, ndim: int) -> int:
    if ndim not in (2, 3) or t.ndim < ndim:
        raise ValueError(
            f"ndim must be 2 or 3 and the field at least that rank, got ndim={ndim}, shape={tuple(t.shape)}"
        )
    shape = tuple(t.shape[-ndim:])
    if len(set(shape)) != 1:
        raise ValueError(f"the last {ndim} axes must be a square/cubic grid, got {shape}")
    return shape[0]


def filter_transfer(
    kind: str,
    width: float,
    n: int,
    *,
    n_coarse: int | None = None,
    ndim: int = 2,
    length: float = TWO_PI,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Transfer function ``G(k)`` of a filter on the ``rfftn`` layout of an ``n``-point grid.

    With the filter width ``Delta = width * length / n_coarse`` (``width`` in cells of the
    coarse grid, ``n_coarse`` defaulting to ``n``):

    * ``"spectral"``: sharp cut-off, ``G = 1`` where every ``|k_i| < pi / Delta`` and 0
      elsewhere (a box in wavenumber space, matching what truncation to a grid keeps).
      With ``width = 1`` it keeps exactly the modes a grid of ``n_coarse`` points
      resolves below its Nyquist wavenumber.
    * ``"box"``: top-hat of width ``Delta`` along each axis, ``G = prod_i sinc(k_i Delta / 2)``
      (``sin(x) / x``).
    * ``"gaussian"``: ``G = exp(-|k|^2 Delta^2 / 24)``, the Gaussian with the same second
      moment as the top-hat (Pope, *Turbulent Flows*, table 13.2).

    Returns:
        ``G`` shaped ``(n,) * (ndim - 1) + (n//2+1,)``.
    """
    if kind not in FILTERS:
        raise ValueError(f"filter kind must be one of {FILTERS}, got {kind!r}")
    if width <= 0:
        raise ValueError(f"filter width must be > 0, got {width}")
    m = _wavenumbers(n, ndim, dtype, "cpu")  # integer mode numbers, k_i = m_i * 2*pi/length
    delta = width * length / (n_coarse or n)
    ks = [mi * (TWO_PI / length) for mi in m]
    if kind == "spectral":
        # Compare integer mode numbers with the cut in mode units (n_coarse / (2 width)),
        # with a hair of tolerance so that width = 1 cuts exactly at the coarse Nyquist.
        cut = length / (2.0 * delta) - 1e-9
        g = torch.ones((), dtype=dtype)
        for mi in m:
            g = g * (mi.abs() < cut)
        return g.to(dtype).expand(*[n] * (ndim - 1), n // 2 + 1)
    if kind == "box":
        g = torch.ones((), dtype=dtype)
        for k in ks:
            g = g * torch.sinc(k * delta / TWO_PI)  # torch.sinc(x) = sin(pi x) / (pi x)
        return g.expand(*[n] * (ndim - 1), n // 2 + 1)
    return torch.exp(-sum(k**2 for k in ks) * (delta**2 / 24.0))


def spectral_filter(
    field,
    kind: str = "spectral",
    width: float = 1.0,
    *,
    n_coarse: int | None = None,
    ndim: int = 2,
    length: float = TWO_PI,
):
    """Filter a periodic field on its last ``ndim`` axes by multiplying its Fourier transform.

    The box and Gaussian filters are applied through their transfer functions
    (:func:`filter_transfer`), i.e. exactly for the band-limited field the grid values
    represent. The filters are real, even and diagonal in Fourier space, so they commute
    with derivatives and keep a divergence-free field divergence-free.

    Args:
        field: ``(..., n, n[, n])``; a NumPy array (returned as float64 NumPy) or a tensor
            (returned as a tensor of the same dtype).
        kind: ``"spectral"``, ``"box"`` or ``"gaussian"``.
        width: Filter width in cells of the coarse grid (``Delta = width * length / n_coarse``).
        n_coarse: Points per side of the coarse grid the width refers to (default: the
            field's own grid).
        ndim: Number of spatial axes (2 or 3).
        length: Domain period.

    Returns:
        The filtered field, same shape.
    """
    t, to_numpy = _as_tensor(field)
    n = _grid_size(t, ndim)
    dims = tuple(range(-ndim, 0))
    g = filter_transfer(kind, width, n, n_coarse=n_coarse, ndim=ndim, length=length, dtype=t.dtype).to(
        t.device
    )
    out = torch.fft.irfftn(torch.fft.rfftn(t, dim=dims) * g, s=(n,) * ndim, dim=dims)
    return out.numpy() if to_numpy else out


def coarsen(field, n_coarse: int, *, ndim: int = 2):
    """Spectral truncation of a periodic field to ``n_coarse`` points per side on its last ``ndim`` axes.

    Keeps the Fourier coefficients with every ``|m_i| < n_coarse / 2`` unchanged and drops
    the rest, including the coarse Nyquist modes (their sign is ambiguous on the coarse
    grid). A field that holds only such modes is therefore reproduced exactly at the
    coarse grid points (``field[..., ::r, ::r]`` when ``r = n / n_coarse`` is an integer);
    any other field is first cut sharply at the coarse Nyquist wavenumber, so truncation
    after a box or Gaussian filter is "filter, then project on the coarse grid".

    Args:
        field: ``(..., n, n[, n])``, NumPy (returned as float64 NumPy) or a tensor.
        n_coarse: Coarse points per side (even, ``<= n``).
        ndim: Number of spatial axes (2 or 3).

    Returns:
        ``(..., n_coarse, n_coarse[, n_coarse])``.
    """
    t, to_numpy = _as_tensor(field)
    n = _grid_size(t, ndim)
    if n_coarse % 2 or not 2 <= n_coarse <= n:
        raise ValueError(f"n_coarse must be even and between 2 and {n}, got {n_coarse}")
    dims = tuple(range(-ndim, 0))
    h = n_coarse // 2
    # norm="forward" makes the coefficients grid-independent (the mean is the k=0 value),
    # so they move from the fine to the coarse array without rescaling.
    f_hat = torch.fft.rfftn(t, dim=dims, norm="forward")
    keep = torch.cat([torch.arange(0, h), torch.arange(n - h + 1, n)]).to(t.device)  # |m| < h on a full axis
    sub = f_hat[..., :h]  # half axis: m = 0 .. h-1
    for ax in range(-ndim, -1):
        sub = sub.index_select(ax, keep)
        # Re-insert a zero coarse-Nyquist plane at index h of this axis.
        shape = list(sub.shape)
        shape[ax] = 1
        zero = torch.zeros(shape, dtype=sub.dtype, device=sub.device)
        sub = torch.cat([sub.narrow(ax, 0, h), zero, sub.narrow(ax, h, h - 1)], dim=ax)
    sub = torch.cat([sub, torch.zeros((*sub.shape[:-1], 1), dtype=sub.dtype, device=sub.device)], dim=-1)
    out = torch.fft.irfftn(sub, s=(n_coarse,) * ndim, dim=dims, norm="forward")
    return out.numpy() if to_numpy else out


# --------------------------------------------------------------------------- cost


# Defaults of tasks.domains.turbulence.synthetic.generate() per dimension (see its docstring for
# the measured cost); here because solver_cost times the generator's snapshot interval.
DEFAULTS = {
    2: {"fine_n": 128, "coarse_n": 32, "dt_snapshot": 0.5, "spinup": 15.0},
    3: {"fine_n": 32, "coarse_n": 16, "dt_snapshot": 0.2, "spinup": 10.0},
}


def make_solver(dim: int, config: SolverConfig | HITConfig | None, fine_n: int | None):
    """The solver of dimension ``dim`` for ``config`` (default config when None), on a grid of ``fine_n``.

    Args:
        dim: 2 (:class:`NavierStokes2D`) or 3 (:class:`NavierStokes3D`).
        config: :class:`SolverConfig` in 2-D, :class:`HITConfig` in 3-D, or None for the default.
        fine_n: Grid points per side, overriding ``config.n`` (None keeps it).

    Raises:
        TypeError: A config of the other dimension.
        ValueError: ``dim`` is not 2 or 3.
    """
    if dim == 2:
        cfg = config if config is not None else SolverConfig()
        if not isinstance(cfg, SolverConfig):
            raise TypeError("dim=2 needs a SolverConfig")
        cls = NavierStokes2D
    elif dim == 3:
        cfg = config if config is not None else HITConfig()
        if not isinstance(cfg, HITConfig):
            raise TypeError("dim=3 needs a HITConfig")
        cls = NavierStokes3D
    else:
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    if fine_n is not None:
        cfg = replace(cfg, n=fine_n)
    return cls(cfg)


def solver_cost(
    config: SolverConfig | HITConfig | None = None,
    *,
    spinup: float = 10.0,
    duration: float = 2.0,
    dt_snapshot: float | None = None,
    seed: int = 0,
    threads: int | None = 1,
) -> dict:
    """Wall time of the fine-grid solver per unit of physical time, in its developed state.

    The surrogate's cost per predicted step is compared with ``wall_s_per_time_unit *
    dt_snapshot``. The solver first spins up (not timed), then integrates ``duration``
    in chunks of ``dt_snapshot`` as :func:`~tasks.domains.turbulence.synthetic.generate`
    does (timed; no snapshot extraction). Expect noise of tens of percent on a shared machine.

    Args:
        config: Solver to measure (default: ``SolverConfig()``, float64, 128^2).
        spinup: Untimed spin-up time.
        duration: Timed physical time (rounded to whole chunks).
        dt_snapshot: Chunk length (default: :data:`DEFAULTS`, the generator's for the dimension).
        seed: Seed of the initial field.
        threads: Torch intra-op threads (see :func:`torch_threads`).

    Returns:
        ``wall_s_per_time_unit``, ``wall_s_per_step``, ``steps_per_time_unit``, ``dt``
        (mean step), ``n``, ``dim``, ``dtype`` and ``threads`` (torch intra-op threads).
    """
    config = config if config is not None else SolverConfig()
    dim = 2 if isinstance(config, SolverConfig) else 3
    solver = make_solver(dim, config, None)
    chunk = DEFAULTS[dim]["dt_snapshot"] if dt_snapshot is None else dt_snapshot
    with torch_threads(threads):
        state = solver.random_initial([seed, 0])
        for _ in range(math.ceil(spinup / chunk - 1e-9)):  # re-evaluate the CFL step as generate does
            state, _, _ = solver.advance(state, chunk)
        n_chunks = max(1, round(duration / chunk))
        n_steps, dts = 0, []
        t0 = time.perf_counter()
        for _ in range(n_chunks):
            state, k, dt = solver.advance(state, chunk)
            n_steps += k
            dts.append(dt)
        wall = time.perf_counter() - t0
        duration = n_chunks * chunk
        n_threads = torch.get_num_threads()
    return {
        "wall_s_per_time_unit": wall / duration,
        "wall_s_per_step": wall / n_steps,
        "steps_per_time_unit": n_steps / duration,
        "dt": float(np.mean(dts)),
        "n": config.n,
        "dim": dim,
        "dtype": config.dtype,
        "threads": n_threads,
    }
