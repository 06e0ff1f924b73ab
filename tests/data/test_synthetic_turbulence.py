"""Data tests for the synthetic turbulence source and its solver.

The modules under test are :mod:`tasks.domains.turbulence.solver` (the solver, filters and
cost) and :mod:`tasks.domains.turbulence.synthetic` (the generator and its HDF5 file).

The solver is checked against exact solutions (Taylor-Green in 2-D, ABC flow in 3-D:
energy decays at the analytic rate to round-off), for its fourth-order time accuracy,
for incompressibility and the energy budget of a forced turbulent run, and for
reaching the same statistically steady state from very different initial energies.
The filters and the coarsening are checked mode by mode; the HDF5 writer for its
layout, attributes and determinism. Everything runs single-threaded on small grids
(32^2-64^2, 16^3) so that the file stays well under a minute on a shared machine.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from tasks.domains.turbulence.physics import (
    divergence,
    energy_spectrum,
    enstrophy,
    inertial_slope,
    vorticity_2d,
)
from tasks.domains.turbulence.solver import (
    DEFAULTS,
    HITConfig,
    NavierStokes2D,
    NavierStokes3D,
    SolverConfig,
    abc_flow,
    coarsen,
    filter_transfer,
    solver_cost,
    spectral_filter,
    taylor_green,
    torch_threads,
)
from tasks.domains.turbulence.synthetic import LAYOUT, generate, main

TWO_PI = 2 * math.pi


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Two OpenMP threads on a shared two-core machine are 10-20x slower than one here.
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def turbulent():
    """A developed 64^2 float64 Kolmogorov flow: 30 time units of spin-up, then 30 recorded."""
    solver = NavierStokes2D(SolverConfig(n=64))
    run = solver.run(solver.random_initial([0, 0]), n_snapshots=61, dt_snapshot=0.5, spinup=30.0)
    return solver, run


def _random_field(n: int, k_max: int, seed: int, ndim: int = 2) -> np.ndarray:
    """Real random field holding only modes with every |m_i| <= k_max."""
    rng = np.random.default_rng(seed)
    f_hat = np.fft.fftn(rng.standard_normal((n,) * ndim))
    m = np.fft.fftfreq(n, 1.0 / n)
    keep = np.ones((n,) * ndim, dtype=bool)
    for ax in range(ndim):
        shape = [1] * ndim
        shape[ax] = n
        keep &= (np.abs(m) <= k_max).reshape(shape)
    return np.fft.ifftn(f_hat * keep).real


# ----------------------------------------------------------------------------- exact solutions


@pytest.mark.parametrize("drag", [0.0, 0.3])
def test_taylor_green_decays_at_the_analytic_rate(drag):
    nu, t_end = 0.05, 4.0
    solver = NavierStokes2D(SolverConfig(n=32, viscosity=nu, forcing_amplitude=0.0, drag=drag))
    w = solver.vorticity_hat(*taylor_green(32, 0.0, nu))
    e0 = float(solver.energy(w))
    assert e0 == pytest.approx(0.25, rel=1e-14)
    w, n_steps, dt = solver.advance(w, t_end)
    assert n_steps * dt == pytest.approx(t_end, rel=1e-14) and n_steps >= 80  # dt_max = 0.05
    expected = 0.25 * math.exp(-(4 * nu + 2 * drag) * t_end)  # velocity decays at nu |k|^2 + drag
    assert abs(float(solver.energy(w)) / expected - 1) < 1e-10
    if drag == 0.0:
        u, v = solver.velocity(w)
        u_ref, v_ref = taylor_green(32, t_end, nu)
        assert float((u - u_ref).abs().max()) < 1e-12 and float((v - v_ref).abs().max()) < 1e-12


def test_abc_flow_decays_at_the_analytic_rate():
    nu, t_end = 0.05, 2.0
    solver = NavierStokes3D(HITConfig(n=16, viscosity=nu, forcing_power=0.0))
    u = solver.to_spectral(torch.stack(abc_flow(16, 0.0, nu, 1.0, 0.7, 0.4)))
    e0 = float(solver.energy(u))
    assert e0 == pytest.approx(0.5 * (1.0 + 0.49 + 0.16), rel=1e-13)
    u, n_steps, _ = solver.advance(u, t_end)
    assert abs(float(solver.energy(u)) / (e0 * math.exp(-2 * nu * t_end)) - 1) < 1e-10
    ref = torch.stack(abc_flow(16, t_end, nu, 1.0, 0.7, 0.4))
    assert float((solver.velocity(u) - ref).abs().max()) < 1e-12


def test_time_integration_is_fourth_order():
    """Errors of a chaotic forced run against a fine-step reference shrink ~16x per halving."""
    solver = NavierStokes2D(SolverConfig(n=32, viscosity=0.01, forcing_amplitude=0.5))
    w0, _, _ = solver.advance(solver.random_initial([7, 0], energy=0.5), 2.0)

    def integrate(dt: float, t_end: float = 0.48):  # a whole number of every step below
        w = w0
        for _ in range(round(t_end / dt)):
            w = solver.step(w, dt)
        return w

    assert all(abs(0.48 / dt - round(0.48 / dt)) < 1e-9 for dt in (0.03, 0.03 / 16))
    assert solver.cfl_dt(w0) > 0.03  # the coarsest step below is within the Courant number 0.5
    ref = integrate(0.03 / 16)
    errs = [float((integrate(dt) - ref).abs().max()) for dt in (0.03, 0.015, 0.0075)]
    orders = [math.log2(a / b) for a, b in zip(errs, errs[1:], strict=False)]
    assert all(3.5 < p < 4.6 for p in orders), (errs, orders)


# ----------------------------------------------------------------------------- forced turbulence


def test_cfl_step_divides_the_interval_and_respects_the_courant_number():
    solver = NavierStokes2D(SolverConfig(n=32, courant=0.4, dt_max=1.0))
    w = solver.random_initial([1, 0], energy=2.0)
    u, v = solver.velocity(w)
    dt_cfl = solver.cfl_dt(w)
    assert dt_cfl * float((u.abs() + v.abs()).max()) / solver.dx == pytest.approx(0.4)
    _, n_steps, dt = solver.advance(w, 0.3)
    assert dt <= dt_cfl and n_steps * dt == pytest.approx(0.3, rel=1e-14) and (n_steps - 1) * dt_cfl < 0.3
    capped = NavierStokes2D(SolverConfig(n=32, dt_max=1e-3))
    assert capped.cfl_dt(w) == 1e-3


def test_forced_run_stays_divergence_free(turbulent):
    solver, run = turbulent
    w = run.state
    u_hat, v_hat = solver.velocity_hat(w)
    assert float(solver.divergence(u_hat, v_hat).abs().max()) < 1e-10
    u, v = run.velocity[:, 0].numpy(), run.velocity[:, 1].numpy()  # (S, 64, 64) fine grid
    assert np.abs(divergence(u, v)).max() < 1e-10
    # Filtering and coarsening commute with derivatives: the LES-grid field is solenoidal too.
    for kind in ("spectral", "box", "gaussian"):
        cu, cv = (coarsen(spectral_filter(f, kind, 2.0, n_coarse=16), 16) for f in (u, v))
        assert np.abs(divergence(cu, cv)).max() < 1e-10, kind


def test_spinup_reaches_a_developed_state_independent_of_the_initial_energy(turbulent):
    solver, run = turbulent
    cfg = solver.config
    e = run.energy.numpy()  # (61,) over t in [30, 60]
    laminar = (cfg.forcing_amplitude / (cfg.viscosity * cfg.forcing_wavenumber**2 + cfg.drag)) ** 2 / 4
    # Turbulent, not the laminar Kolmogorov profile the forcing alone would hold up.
    assert e.mean() < 0.5 * laminar
    assert e.std() / e.mean() < 0.3
    # Start far from it (4 % and 6x of the steady energy): the same plateau after the spin-up.
    # 30-unit means wander by up to ~25 % (three seeds measured), a broken solver by far more
    # (laminar: 4x; no advection: the laminar profile; unstable: blow-up).
    levels = []
    for e0 in (0.002, 0.3):
        other = solver.run(
            solver.random_initial([0, 1], energy=e0), n_snapshots=61, dt_snapshot=0.5, spinup=30.0
        )
        levels.append(float(other.energy.mean()))
    assert all(abs(lv / e.mean() - 1) < 0.35 for lv in levels), (e.mean(), levels)
    # Energy spreads from the forcing shell over decades of scales.
    k, E = energy_spectrum(run.velocity[:, 0].numpy(), run.velocity[:, 1].numpy())
    E = E.mean(0)
    f = cfg.forcing_wavenumber
    assert E[f] / E.sum() < 0.8 and E[1:f].sum() / E.sum() > 0.1  # inverse transfer to k < 4
    assert E[f] / E[20] > 10**3.5  # measured 4.3 decades from the forcing to k = 20 (3 seeds)
    assert -7.0 < inertial_slope(k, E, 6, 18) < -3.0  # enstrophy range, steepened by the drag


def test_energy_budget_closes(turbulent):
    """<f.u> - 2 nu Z - 2 mu E averaged over the run equals (E(T) - E(0)) / T."""
    solver, run = turbulent
    cfg = solver.config
    u, v = run.velocity[:, 0].numpy(), run.velocity[:, 1].numpy()
    y = np.arange(cfg.n) * TWO_PI / cfg.n
    power = (cfg.forcing_amplitude * np.sin(cfg.forcing_wavenumber * y) * u).mean((-2, -1))
    e = run.energy.numpy()
    dissipation = 2 * cfg.viscosity * enstrophy(vorticity_2d(u, v)) + 2 * cfg.drag * e
    net = power - dissipation
    mean_rate = np.sum(0.5 * (net[1:] + net[:-1])) * 0.5 / 30.0  # trapezoid over the snapshots
    assert abs(mean_rate - (e[-1] - e[0]) / 30.0) < 0.02 * power.mean(), (mean_rate, power.mean())


def test_forced_hit_3d_is_solenoidal_and_injects_the_set_power():
    cfg = HITConfig(n=16, viscosity=0.05, forcing_power=0.1, forcing_kmax=2.5)
    solver = NavierStokes3D(cfg)
    run = solver.run(solver.random_initial([0, 0]), n_snapshots=11, dt_snapshot=0.1, spinup=2.0)
    assert float(solver.divergence(run.state).abs().max()) < 1e-10
    vel = run.velocity.numpy()  # (11, 3, 16, 16, 16)
    assert np.abs(divergence(vel[:, 0], vel[:, 1], vel[:, 2])).max() < 1e-10
    # The forcing's power <f . u> is eps at any state, and the energy budget closes:
    # dE/dt = eps - nu <|omega|^2> (advection and pressure do no net work).
    assert float(solver.inner(run.state, solver.forcing(run.state))) == pytest.approx(0.1, rel=1e-12)
    u_hat = run.state
    omega_hat = torch.linalg.cross(solver.ik.expand_as(u_hat), u_hat, dim=0)
    rate = cfg.forcing_power - cfg.viscosity * float(solver.inner(omega_hat, omega_hat))
    dt = 1e-4
    de = float(solver.energy(solver.step(u_hat, dt)) - solver.energy(solver.step(u_hat, -dt))) / (2 * dt)
    assert de == pytest.approx(rate, rel=1e-5)


# ----------------------------------------------------------------------------- filters


def test_spectral_cutoff_removes_exactly_the_modes_above_the_cut():
    f = _random_field(64, 31, 0)
    g = spectral_filter(f, "spectral", 1.0, n_coarse=16)  # cut at the coarse Nyquist, |m| < 8
    f_hat, g_hat = np.fft.fft2(f), np.fft.fft2(g)
    m = np.abs(np.fft.fftfreq(64, 1 / 64))
    kept = (m[:, None] < 8) & (m[None, :] < 8)
    assert np.abs(g_hat[~kept]).max() < 1e-10
    np.testing.assert_allclose(g_hat[kept], f_hat[kept], atol=1e-10)
    # Width 2 on a 32-point coarse grid is the same cut.
    np.testing.assert_allclose(spectral_filter(f, "spectral", 2.0, n_coarse=32), g, atol=1e-13)


def test_coarsening_preserves_the_resolved_modes():
    f = _random_field(64, 7, 1)  # only |m| < 8: all resolved on a 16-point grid
    np.testing.assert_allclose(coarsen(f, 16), f[::4, ::4], atol=1e-13)
    g = _random_field(64, 31, 2)
    c = coarsen(g, 16)
    c_hat = np.fft.fft2(c) / 16**2
    g_hat = np.fft.fft2(g) / 64**2
    m = np.r_[0:8, -7:0]  # the resolved modes, |m| < 8, in FFT order
    np.testing.assert_allclose(c_hat[np.ix_(m, m)], g_hat[np.ix_(m, m)], atol=1e-13)
    assert np.abs(c_hat[8, :]).max() < 1e-13 and np.abs(c_hat[:, 8]).max() < 1e-13  # coarse Nyquist dropped
    np.testing.assert_allclose(coarsen(spectral_filter(g, "spectral", 1.0, n_coarse=16), 16), c, atol=1e-13)
    # 3-D and batches, tensors in and out.
    h = torch.from_numpy(np.stack([_random_field(16, 3, s, ndim=3) for s in range(2)]))
    out = coarsen(h, 8, ndim=3)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 8, 8, 8)
    torch.testing.assert_close(out, h[:, ::2, ::2, ::2], atol=1e-13, rtol=0)


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_box_and_gaussian_transfer_functions(kind):
    n, n_coarse, width = 64, 16, 2.0
    delta = width * TWO_PI / n_coarse
    x = np.arange(n) * TWO_PI / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    for kx, ky in [(1, 0), (3, 2), (0, 7), (12, 5)]:
        f = np.cos(kx * X + ky * Y)
        if kind == "box":
            gain = np.sinc(kx * delta / TWO_PI) * np.sinc(
                ky * delta / TWO_PI
            )  # sin(k D/2) / (k D/2) per axis
        else:
            gain = math.exp(-(kx**2 + ky**2) * delta**2 / 24)
        np.testing.assert_allclose(spectral_filter(f, kind, width, n_coarse=n_coarse), gain * f, atol=1e-12)
    if kind == "box":
        # The physical-space definition: the mean of cos(3 s) over [x - D/2, x + D/2], integrated by hand.
        top_hat = (np.sin(3 * (X + delta / 2)) - np.sin(3 * (X - delta / 2))) / (3 * delta)
        np.testing.assert_allclose(
            spectral_filter(np.cos(3 * X), "box", width, n_coarse=n_coarse), top_hat, atol=1e-12
        )
    # Same second moment: G = 1 - k^2 Delta^2 / 24 + O(k^4) for both.
    g = filter_transfer(kind, 0.01, n, n_coarse=n_coarse)
    assert float(g[1, 0]) == pytest.approx(1 - (0.01 * TWO_PI / n_coarse) ** 2 / 24, rel=1e-9)
    g3 = filter_transfer(kind, width, 8, n_coarse=4, ndim=3)
    assert g3.shape == (8, 8, 5) and float(g3[0, 0, 0]) == 1.0


def test_filter_arguments_are_checked():
    with pytest.raises(ValueError, match="kind"):
        spectral_filter(np.zeros((8, 8)), "median")
    with pytest.raises(ValueError, match="grid"):
        spectral_filter(np.zeros((8, 4)))
    with pytest.raises(ValueError, match="n_coarse"):
        coarsen(np.zeros((8, 8)), 5)


# ----------------------------------------------------------------------------- generate


TINY = dict(
    n_trajectories=2,
    n_snapshots=3,
    fine_n=32,
    coarse_n=16,
    dt_snapshot=0.25,
    spinup=1.0,
    config=SolverConfig(dtype="float64"),
    progress=False,
)


def test_generate_writes_the_documented_file(tmp_path):
    m = generate(tmp_path / "sub" / "turb.h5", seed=3, **TINY)
    assert m["shape"] == [2, 3, 16, 16, 2] and m["layout"] == LAYOUT[2]
    assert not [p for p in (tmp_path / "sub").iterdir() if p.name != "turb.h5"]  # no temp files left
    with h5py.File(m["path"]) as f:
        vel = f["velocity"]
        assert vel.shape == (2, 3, 16, 16, 2) and vel.dtype == np.float32
        np.testing.assert_allclose(f["x"][:], np.arange(16) * TWO_PI / 16)
        np.testing.assert_allclose(f["y"][:], f["x"][:])
        np.testing.assert_allclose(f["t"][:], [1.0, 1.25, 1.5])
        a = dict(f.attrs)
        data = vel[:]
    assert a["layout"] == "trajectory,time,x,y,component"
    assert a["dt"] == 0.25 and a["fine_n"] == 32 and a["coarse_n"] == 16 and a["seed"] == 3
    assert a["viscosity"] == 1e-3 and a["forcing_amplitude"] == 0.1 and a["forcing_wavenumber"] == 4
    assert a["filter_kind"] == "gaussian" and a["filter_width"] == 2.0 and a["drag"] == 0.1
    assert 0 < a["solver_dt_min"] <= a["solver_dt"] <= a["solver_dt_max"] <= 0.25
    # Each snapshot interval is a whole number of steps.
    assert abs(0.25 / a["solver_dt_max"] - round(0.25 / a["solver_dt_max"])) < 1e-9
    assert np.isfinite(data).all() and data.std() > 0.01
    assert np.abs(divergence(data[..., 0].astype(np.float64), data[..., 1].astype(np.float64))).max() < 1e-4


def test_generate_is_deterministic_and_trajectories_are_independent(tmp_path):
    a = generate(tmp_path / "a.h5", seed=5, workers=2, **TINY)  # two trajectories side by side
    b = generate(tmp_path / "b.h5", seed=5, workers=1, **TINY)  # one after the other
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    one = generate(tmp_path / "one.h5", seed=5, **(TINY | {"n_trajectories": 1}))
    other = generate(tmp_path / "c.h5", seed=6, **TINY)
    with h5py.File(a["path"]) as fa, h5py.File(one["path"]) as fo, h5py.File(other["path"]) as fc:
        np.testing.assert_array_equal(fa["velocity"][0], fo["velocity"][0])
        assert not np.allclose(fa["velocity"][:], fc["velocity"][:])
        assert not np.allclose(fa["velocity"][0], fa["velocity"][1])
    assert b["n_steps"] == a["n_steps"]


def test_generate_3d_and_cli(tmp_path, capsys):
    m = generate(
        tmp_path / "hit.h5",
        n_trajectories=1,
        n_snapshots=2,
        dim=3,
        fine_n=16,
        coarse_n=8,
        dt_snapshot=0.1,
        spinup=0.2,
        filter_kind="box",
        config=HITConfig(),
        progress=False,
    )
    with h5py.File(m["path"]) as f:
        assert f["velocity"].shape == (1, 2, 8, 8, 8, 3)
        assert f.attrs["layout"] == "trajectory,time,x,y,z,component" and "z" in f
        assert f.attrs["forcing_power"] == HITConfig().forcing_power
    main(
        [
            str(tmp_path / "cli.h5"),
            "--n-trajectories",
            "1",
            "--n-snapshots",
            "2",
            "--fine-n",
            "32",
            "--coarse-n",
            "16",
            "--spinup",
            "0.5",
            "--dt-snapshot",
            "0.25",
        ]
    )
    assert "velocity [1, 2, 16, 16, 2]" in capsys.readouterr().out
    with pytest.raises(ValueError, match="coarse_n"):
        generate(tmp_path / "x.h5", fine_n=16, coarse_n=32)


def test_solver_cost_reports_time_per_unit_time():
    c = solver_cost(SolverConfig(n=32), spinup=0.5, duration=0.5)
    assert c["wall_s_per_time_unit"] > 0 and c["steps_per_time_unit"] > 0 and c["threads"] == 1
    assert c["wall_s_per_time_unit"] == pytest.approx(c["wall_s_per_step"] * c["steps_per_time_unit"])
    assert (c["n"], c["dim"], c["dtype"]) == (32, 2, "float64")
    assert DEFAULTS[2]["fine_n"] == SolverConfig().n and DEFAULTS[3]["fine_n"] == HITConfig().n
