"""Synthetic turbulence: filtered, coarsened DNS snapshots, the offline data source of the ``turbulence`` domain.

The real targets of this domain (filtered DNS of channel flow, models.md section 4)
are DNS fields that were **filtered and coarsened** to an LES-like grid, stored as
trajectories of velocity snapshots. This module produces data of the same kind
from a solver small enough to run on a laptop, the pseudo-spectral Navier-Stokes solver
of :mod:`tasks.domains.turbulence.solver` (2-D Kolmogorov flow by default, 3-D forced
isotropic turbulence for the "paper" profile; the physics and numerics are described there).

Data (:func:`generate`): each trajectory starts from its own band-limited random
field (seeded by ``(seed, trajectory)``, so a trajectory does not depend on how many
are generated), runs past a spin-up time, then records ``n_snapshots`` snapshots
``dt_snapshot`` apart. The fine velocity is filtered
(:func:`~tasks.domains.turbulence.solver.spectral_filter`: sharp spectral cut-off, box or
Gaussian, width in cells of the coarse grid) and truncated to the coarse grid
(:func:`~tasks.domains.turbulence.solver.coarsen`), and written as one HDF5 file (through
:func:`tasks.store.atomic_path`) with the dataset ``velocity`` shaped ``(trajectory, time,
x, y[, z], component)`` (:data:`LAYOUT`).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from tasks import store
from tasks.domains.turbulence.solver import (
    DEFAULTS,
    FILTERS,
    TWO_PI,
    HITConfig,
    SolverConfig,
    coarsen,
    make_solver,
    solver_cost,
    spectral_filter,
    torch_threads,
)

LAYOUT = {2: "trajectory,time,x,y,component", 3: "trajectory,time,x,y,z,component"}


# --------------------------------------------------------------------------- data set


def _atomic_h5(path: Path, write) -> None:
    """Write an HDF5 file with ``write(f)`` under a temporary name, renamed onto ``path`` on success."""
    with store.atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        write(f)


def generate(
    out_path: str | Path,
    *,
    n_trajectories: int = 4,
    n_snapshots: int = 60,
    dim: int = 2,
    fine_n: int | None = None,
    coarse_n: int | None = None,
    dt_snapshot: float | None = None,
    spinup: float | None = None,
    filter_kind: str = "gaussian",
    filter_width: float = 2.0,
    config: SolverConfig | HITConfig | None = None,
    seed: int = 0,
    progress: bool | None = None,
    threads: int | None = 1,
    workers: int | None = None,
) -> dict:
    """Simulate, filter and coarsen turbulent trajectories and write them as one HDF5 file.

    Trajectory ``i`` starts from the random field seeded by ``[seed, i]``, spins up for
    ``spinup``, then records ``n_snapshots`` snapshots ``dt_snapshot`` apart. Each fine
    velocity snapshot is filtered (``filter_kind``, width ``filter_width`` coarse cells)
    and truncated to ``coarse_n`` points per side. The file is written under a temporary
    name and renamed; the same arguments give the same arrays and attributes.

    File layout:

    * ``velocity``: float32 ``(trajectory, time, x, y[, z], component)``, components
      ``u, v[, w]``;
    * ``x``, ``y`` (``z``): coarse-grid coordinates ``arange(coarse_n) * 2*pi / coarse_n``;
      ``t``: snapshot times (from the start of the run, so ``t[0] == spinup``);
    * attributes: ``layout``, ``dim``, ``dt`` (between snapshots), ``spinup``,
      ``viscosity``, the forcing (2-D: ``forcing_amplitude``, ``forcing_wavenumber``,
      ``drag``; 3-D: ``forcing_power``, ``forcing_kmax``), ``fine_n``, ``coarse_n``,
      ``domain_length``, ``filter_kind``, ``filter_width`` (coarse cells), ``courant``,
      ``solver_dt`` (mean step over the recorded intervals) with ``solver_dt_min`` /
      ``solver_dt_max``, ``solver_dtype``, ``seed``, ``config`` (JSON of the solver config).

    Default cost (2-D, 128^2 -> 32^2, 4 trajectories x 60 snapshots 0.5 apart after a
    spin-up of 15, float32, one thread): about 6,900 solver steps, 23 s of CPU time,
    32 s wall-clock on a shared two-core machine (load average 4.5). The 3-D default
    (32^3 -> 16^3, 4 x 60 snapshots 0.2 apart after a spin-up of 10, float32) took
    about 3,100 steps and 50 s; it is a low-Reynolds-number flow (``Re_lambda`` about 25,
    ``k_max eta`` about 1) whose energy is still drifting up slowly (0.40-0.45) after
    that spin-up.

    Args:
        out_path: The ``.h5`` file to write (its folder is created).
        n_trajectories: Independent trajectories.
        n_snapshots: Snapshots per trajectory.
        dim: 2 (Kolmogorov flow) or 3 (forced isotropic turbulence).
        fine_n: Solver grid (default 128 in 2-D, 32 in 3-D; overrides ``config.n``).
        coarse_n: Stored grid (default 32 in 2-D, 16 in 3-D).
        dt_snapshot: Time between snapshots (default 0.5 in 2-D, 0.2 in 3-D).
        spinup: Time run before the first snapshot (default 40 in 2-D, 10 in 3-D).
        filter_kind: ``"spectral"``, ``"box"`` or ``"gaussian"``.
        filter_width: Filter width in coarse-grid cells.
        config: Solver physics (:class:`SolverConfig` / :class:`HITConfig`); the default in
            2-D is ``SolverConfig(dtype="float32")``, in 3-D ``HITConfig(dtype="float32")``.
        seed: Random seed.
        progress: tqdm bar over the intervals (``None``: only on a terminal).
        threads: Torch intra-op threads while simulating (restored afterwards; see
            :func:`torch_threads`); ``None`` keeps the current setting.
        workers: Trajectories simulated at once, each in its own Python thread (``None``: one per
            core, at most two; the arrays do not depend on it).

    Returns:
        A manifest: ``path``, ``shape``, ``layout``, ``attrs``, ``energy`` (mean fine-grid
        kinetic energy per trajectory over the snapshots), ``n_steps`` and ``wall_s``.
    """
    if dim not in DEFAULTS:
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    d = DEFAULTS[dim]
    fine_n = fine_n or (config.n if config is not None else d["fine_n"])
    coarse_n = coarse_n or d["coarse_n"]
    dt_snapshot = d["dt_snapshot"] if dt_snapshot is None else dt_snapshot
    spinup = d["spinup"] if spinup is None else spinup
    if n_trajectories < 1 or n_snapshots < 1:
        raise ValueError("need n_trajectories >= 1 and n_snapshots >= 1")
    if coarse_n > fine_n:
        raise ValueError(f"coarse_n ({coarse_n}) must not exceed fine_n ({fine_n})")
    if filter_kind not in FILTERS:
        raise ValueError(f"filter_kind must be one of {FILTERS}, got {filter_kind!r}")
    if config is None:
        config = SolverConfig(dtype="float32") if dim == 2 else HITConfig(dtype="float32")
    solver = make_solver(dim, config, fine_n)
    t0 = time.perf_counter()
    velocity = np.empty((n_trajectories, n_snapshots, *(coarse_n,) * dim, dim), dtype=np.float32)
    energies, dts, steps, times = [], [], 0, None
    bar = tqdm(
        total=n_trajectories, desc="trajectories", disable=(None if progress is None else not progress)
    )
    def simulate(i: int):
        run = solver.run(
            solver.random_initial([seed, i]),
            n_snapshots=n_snapshots,
            dt_snapshot=dt_snapshot,
            spinup=spinup,
            progress=progress if workers == 1 else False,  # one bar per trajectory only when sequential
        )
        # Filter in float64 whatever the solver's precision: the filter is not what float32 is for.
        filt = spectral_filter(run.velocity.double(), filter_kind, filter_width, n_coarse=coarse_n, ndim=dim)
        coarse = coarsen(filt, coarse_n, ndim=dim)  # (S, C, nc, nc[, nc])
        return run, coarse.movedim(1, -1).numpy().astype(np.float32)  # (S, nc, nc[, nc], C)

    # Trajectories are independent (own seed, own adaptive steps) and each runs on one intra-op thread, so
    # ``workers`` Python threads simulate them side by side on as many cores with the same arrays as one
    # after the other (torch's kernels release the GIL); the results are gathered in trajectory order.
    workers = max(1, min(workers or min(2, os.cpu_count() or 1), n_trajectories))
    with torch_threads(threads), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="solver") as pool:
        for i, (run, coarse) in enumerate(pool.map(simulate, range(n_trajectories))):
            velocity[i] = coarse
            energies.append(float(run.energy.mean()))
            dts += run.dts
            steps += run.n_steps
            times = run.t
            bar.update()
    bar.close()
    wall = time.perf_counter() - t0
    cfg = solver.config
    attrs = {
        "layout": LAYOUT[dim],
        "dim": dim,
        "dt": float(dt_snapshot),
        "spinup": float(spinup),
        "viscosity": float(cfg.viscosity),
        "fine_n": int(fine_n),
        "coarse_n": int(coarse_n),
        "domain_length": TWO_PI,
        "filter_kind": filter_kind,
        "filter_width": float(filter_width),
        "courant": float(cfg.courant),
        "solver_dt": float(np.mean(dts)) if dts else float("nan"),
        "solver_dt_min": float(np.min(dts)) if dts else float("nan"),
        "solver_dt_max": float(np.max(dts)) if dts else float("nan"),
        "solver_dtype": cfg.dtype,
        "seed": int(seed),
        "config": json.dumps(asdict(cfg), sort_keys=True),
    }
    if dim == 2:
        attrs |= {
            "forcing_amplitude": float(cfg.forcing_amplitude),
            "forcing_wavenumber": int(cfg.forcing_wavenumber),
            "drag": float(cfg.drag),
        }
    else:
        attrs |= {"forcing_power": float(cfg.forcing_power), "forcing_kmax": float(cfg.forcing_kmax)}
    coords = np.arange(coarse_n) * (TWO_PI / coarse_n)

    def write(f: h5py.File) -> None:
        # track_times=False: no modification stamps, so equal arguments give equal bytes.
        f.create_dataset("velocity", data=velocity, track_times=False)
        for name in "xyz"[:dim]:
            f.create_dataset(name, data=coords, track_times=False)
        f.create_dataset("t", data=np.asarray(times, dtype=np.float64), track_times=False)
        for k, v in attrs.items():
            f.attrs[k] = v

    path = Path(out_path)
    _atomic_h5(path, write)
    return {
        "path": str(path),
        "shape": list(velocity.shape),
        "layout": LAYOUT[dim],
        "attrs": attrs,
        "energy": energies,
        "n_steps": steps,
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m tasks.domains.turbulence.synthetic OUT.h5 [--dim 2] [--n-trajectories 4] ...``."""
    ap = argparse.ArgumentParser(description="Write filtered, coarsened synthetic turbulence (HDF5).")
    ap.add_argument("out_path")
    ap.add_argument("--dim", type=int, choices=(2, 3), default=2)
    ap.add_argument("--n-trajectories", type=int, default=4)
    ap.add_argument("--n-snapshots", type=int, default=60)
    ap.add_argument("--fine-n", type=int, default=None)
    ap.add_argument("--coarse-n", type=int, default=None)
    ap.add_argument("--dt-snapshot", type=float, default=None)
    ap.add_argument("--spinup", type=float, default=None)
    ap.add_argument("--filter-kind", choices=FILTERS, default="gaussian")
    ap.add_argument("--filter-width", type=float, default=2.0)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cost", action="store_true", help="also measure the solver's wall time per unit time")
    a = ap.parse_args(argv)
    config = SolverConfig(dtype=a.dtype) if a.dim == 2 else HITConfig(dtype=a.dtype)
    m = generate(
        a.out_path,
        n_trajectories=a.n_trajectories,
        n_snapshots=a.n_snapshots,
        dim=a.dim,
        fine_n=a.fine_n,
        coarse_n=a.coarse_n,
        dt_snapshot=a.dt_snapshot,
        spinup=a.spinup,
        filter_kind=a.filter_kind,
        filter_width=a.filter_width,
        config=config,
        seed=a.seed,
    )
    print(
        f"{m['path']}: velocity {m['shape']} ({m['layout']}), {m['n_steps']} solver steps, {m['wall_s']:.1f} s"
    )
    if a.cost:
        print(json.dumps(solver_cost(replace(config, n=m["attrs"]["fine_n"])), indent=1))


if __name__ == "__main__":
    main()
