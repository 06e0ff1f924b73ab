"""Fine-grid solver against the coarse surrogates: steps/s and the speed-up per predicted snapshot.

The turbulence domain trains neural operators to predict the next filtered, coarsened
velocity snapshot, and the IFactFormer paper (Yang, Wang & Wang 2026) claims they are
"much faster than LES". This benchmark puts a number on that claim for this project's
synthetic data. It times, on the CPU (CUDA when present, as the other benchmarks):

* **the solver** that makes the data, ``tasks.domains.turbulence.solver.NavierStokes2D``:
  2-D Kolmogorov flow, pseudo-spectral, integrating-factor RK4 with a CFL step, at the
  generator's fine grid (``--fine-n``, 128^2) in float32 (the generator's default) and
  float64 (the physics tests'). Each solver starts from ``random_initial([seed, 0])`` and
  spins up for ``--spinup`` time units (untimed, as ``solver_cost`` does), so the CFL
  step is that of the developed flow. Then each timed call is ``solver.advance(state,
  dt_snapshot)``, one snapshot interval of the generator (``dt_snapshot`` = 0.5 by
  default; the CFL step is re-evaluated at each, as in ``generate``). Reported: solver
  steps/s and ms/step, wall time per unit of physical time, and the wall time to advance
  one snapshot interval (the physical time one surrogate step covers).
* **the surrogates** at batch 1 (one predicted snapshot per call), in eval mode under
  ``torch.inference_mode()``, on the coarse grid 32 x 32 with 2 velocity components (the
  registered models' defaults, matching the generator's ``coarse_n``):
  ``models.build("turbulence/ifactformer", {})`` (IFactFormer-m, small 2-D setting:
  dim 32, 2 heads of 16, 4 applications of the shared block), the same with
  ``variant="o"`` (chained axis kernels, FactFormer's product kernel), and
  ``models.build("turbulence/fno", {})`` (width 32, 12 x 12 modes, 4 layers). The input
  is ``model.example_inputs(1)``; the weights are untrained (speed does not depend on them).
  ``--paper`` adds the paper's 3-D IFactFormer setting (``models.ifactformer.PAPER``,
  32 x 33 x 16 x 3, dim 96, 10 block applications): ``--paper-passes`` (2) forward
  passes of several seconds each, the fastest reported; it has no solver to compare with.
* **the speed-up** = solver wall time to advance one snapshot interval at the fine grid
  / surrogate wall time per predicted snapshot, per model, against the float32 solver
  (the float64 one is in the JSON). Note that this compares the **fine** solver (128^2)
  with the **coarse** surrogate (32^2), as the paper compares LES with the surrogate: the
  surrogate also saves the resolution, not only the time stepping. It says nothing about
  accuracy (the weights are untrained); a trained surrogate of the same size costs the same.

Timings take turns: each of ``--rounds`` rounds advances both solvers one snapshot
interval, then makes ``--calls`` forward calls of each surrogate (in a rotating order),
so load from another process hits all of them alike; every figure is a median (per
interval for the solvers, per call for the surrogates), after ``--warmup`` untimed
calls per surrogate.

Run it: ``python bench/turbulence.py`` (``--threads 1 --spinup 10 --rounds 12 --calls 5
--warmup 3`` by default; ``--threads 0`` = torch's default thread count, which spin-waits
badly on a busy 2-core machine; ``--paper`` adds about 12 s on a 2-core VM). Prints one
table and writes ``bench/results/turbulence.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import torch  # noqa: E402
from _common import machine, table, write_json  # noqa: E402
from finance_infer import busy_cpus  # noqa: E402

import models  # noqa: E402
from models.ifactformer import PAPER  # noqa: E402
from tasks.domains.turbulence import solver as tb  # noqa: E402

DTYPES = ("float32", "float64")
REFERENCE_DTYPE = "float32"  # the generator's default solver precision
SURROGATES = {
    "turbulence/ifactformer (m)": ("turbulence/ifactformer", {}),
    "turbulence/ifactformer variant=o": ("turbulence/ifactformer", {"variant": "o"}),
    "turbulence/fno": ("turbulence/fno", {}),
}


def grid_label(shape) -> str:
    return " x ".join(str(n) for n in shape)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0 = torch's default)")
    ap.add_argument("--fine-n", type=int, default=None, help="solver grid per side (default: generate's, 128)")
    ap.add_argument("--dt-snapshot", type=float, default=None,
                    help="physical time per surrogate step (default: generate's, 0.5)")
    ap.add_argument("--spinup", type=float, default=10.0, help="untimed solver spin-up (time units)")
    ap.add_argument("--rounds", type=int, default=12, help="timed rounds (one snapshot interval per solver each)")
    ap.add_argument("--calls", type=int, default=5, help="timed forward calls per surrogate per round")
    ap.add_argument("--warmup", type=int, default=3, help="untimed forward calls per surrogate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--paper", action="store_true", help="also time the paper's 3-D IFactFormer setting")
    ap.add_argument("--paper-passes", type=int, default=2)
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    busy = busy_cpus()
    if threads > 1 and busy > 0.5:
        print(f"[turbulence] warning: {busy:.1f} CPUs busy before the run, {threads} torch threads; a busy core "
              "makes torch's OpenMP team spin-wait: use --threads 1", file=sys.stderr, flush=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    defaults = tb.DEFAULTS[2]
    fine_n = args.fine_n or defaults["fine_n"]
    dt_snap = args.dt_snapshot if args.dt_snapshot is not None else defaults["dt_snapshot"]

    # ---------------------------------------------------------------- solvers: spin-up (untimed)
    solvers, states, spinup_s = {}, {}, {}
    for dtype in DTYPES:
        print(f"[turbulence] solver {fine_n}^2 {dtype}: spin-up {args.spinup:g} ...", file=sys.stderr, flush=True)
        solver = tb.NavierStokes2D(tb.SolverConfig(n=fine_n, dtype=dtype, device=device))
        state = solver.random_initial([args.seed, 0])
        t0 = time.perf_counter()
        for _ in range(max(1, round(args.spinup / dt_snap))):  # re-evaluating the CFL step, as generate does
            state, _, _ = solver.advance(state, dt_snap)
        sync()
        spinup_s[dtype] = time.perf_counter() - t0
        solvers[dtype], states[dtype] = solver, state

    # ---------------------------------------------------------------- surrogates
    nets, inputs, info = {}, {}, {}
    for name, (key, cfg) in SURROGATES.items():
        torch.manual_seed(args.seed)
        net = models.build(key, cfg).to(device).eval()
        (x,) = net.example_inputs(1)
        nets[name], inputs[name] = net, x
        info[name] = {"key": key, "config": cfg, "parameters": sum(p.numel() for p in net.parameters()),
                      "input_shape": list(x.shape), "grid": list(net.config.grid),
                      "n_channels": net.config.n_channels}

    def forward(name: str) -> float:
        t0 = time.perf_counter()
        nets[name](inputs[name])
        sync()
        return time.perf_counter() - t0

    print(f"[turbulence] {args.rounds} rounds: solvers + {len(nets)} surrogates ...", file=sys.stderr, flush=True)
    solver_runs: dict[str, list[tuple[float, int, float]]] = {d: [] for d in DTYPES}  # (wall, steps, dt)
    calls: dict[str, list[float]] = {name: [] for name in nets}
    names = list(nets)
    with torch.inference_mode():
        for name in names:
            for _ in range(args.warmup):
                forward(name)
        for r in range(args.rounds):
            order = DTYPES if r % 2 == 0 else DTYPES[::-1]
            for dtype in order:
                t0 = time.perf_counter()
                states[dtype], k, dt = solvers[dtype].advance(states[dtype], dt_snap)
                sync()
                solver_runs[dtype].append((time.perf_counter() - t0, k, dt))
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                calls[name] += [forward(name) for _ in range(args.calls)]

    solver_rows = {}
    for dtype in DTYPES:
        runs = solver_runs[dtype]
        interval_s = statistics.median(w for w, _, _ in runs)
        step_s = statistics.median(w / k for w, k, _ in runs)
        energy = float(solvers[dtype].energy(states[dtype]))
        solver_rows[dtype] = {
            "dtype": dtype, "n": fine_n, "dt_snapshot": dt_snap, "intervals": len(runs),
            "steps_total": sum(k for _, k, _ in runs), "mean_dt": statistics.mean(dt for _, _, dt in runs),
            "steps_per_interval": statistics.mean(k for _, k, _ in runs),
            "steps_per_time_unit": sum(k for _, k, _ in runs) / (len(runs) * dt_snap),
            "ms_per_step": step_s * 1e3, "steps_per_s": 1.0 / step_s,
            "interval_s": interval_s, "wall_s_per_time_unit": interval_s / dt_snap,
            "timed_s": sum(w for w, _, _ in runs), "spinup_wall_s": spinup_s[dtype], "final_energy": energy,
        }
    ref_s = solver_rows[REFERENCE_DTYPE]["interval_s"]

    surrogate_rows = []
    for name in names:
        sec = statistics.median(calls[name])
        surrogate_rows.append(info[name] | {
            "what": name, "calls": len(calls[name]), "ms_per_step": sec * 1e3, "steps_per_s": 1.0 / sec,
            "speedup_vs_solver": {d: solver_rows[d]["interval_s"] / sec for d in DTYPES},
        })

    paper_row = None
    if args.paper:
        print(f"[turbulence] paper IFactFormer (3-D), {args.paper_passes} passes ...", file=sys.stderr, flush=True)
        torch.manual_seed(args.seed)
        net = models.build("turbulence/ifactformer", PAPER).to(device).eval()
        (x,) = net.example_inputs(1)
        passes = []
        with torch.inference_mode():
            for _ in range(args.paper_passes):
                t0 = time.perf_counter()
                net(x)
                sync()
                passes.append(time.perf_counter() - t0)
        sec = min(passes)
        paper_row = {"what": "turbulence/ifactformer PAPER (3-D)", "key": "turbulence/ifactformer", "config": PAPER,
                     "parameters": sum(p.numel() for p in net.parameters()), "input_shape": list(x.shape),
                     "grid": list(net.config.grid), "n_channels": net.config.n_channels, "passes_s": passes,
                     "ms_per_step": sec * 1e3, "steps_per_s": 1.0 / sec}
        del net

    # ---------------------------------------------------------------- report
    fine = f"{fine_n} x {fine_n}"
    body = []
    for dtype in DTYPES:
        s = solver_rows[dtype]
        body.append([f"solver {dtype}: one step (mean dt {s['mean_dt']:.4f})", fine, s["steps_per_s"],
                     s["ms_per_step"], "-"])
    for dtype in DTYPES:
        s = solver_rows[dtype]
        body.append([f"solver {dtype}: one snapshot interval (dt {dt_snap:g}, {s['steps_per_interval']:.1f} steps)",
                     fine, 1.0 / s["interval_s"], s["interval_s"] * 1e3, f"{ref_s / s['interval_s']:.2f}x"])
    for r in surrogate_rows:
        body.append([f"{r['what']} ({r['parameters']:,} params)", f"{grid_label(r['grid'])} x {r['n_channels']}",
                     r["steps_per_s"], r["ms_per_step"], f"{r['speedup_vs_solver'][REFERENCE_DTYPE]:,.1f}x"])
    if paper_row:
        body.append([f"{paper_row['what']} ({paper_row['parameters']:,} params)",
                     f"{grid_label(paper_row['grid'])} x {paper_row['n_channels']}", paper_row["steps_per_s"],
                     paper_row["ms_per_step"], "- (no 3-D solver at this grid)"])
    headers = ["what", "grid", "steps/s", "ms/step", f"speed-up vs solver ({REFERENCE_DTYPE}, one interval)"]
    title = (f"## Turbulence: solver {fine} vs surrogates at batch 1, {device}, {threads} thread(s); "
             f"{args.rounds} rounds, median")
    print(f"\n{title}\n\n{table(headers, body, align='llrrr')}\n")
    for dtype in DTYPES:
        s = solver_rows[dtype]
        print(f"solver {dtype}: {s['wall_s_per_time_unit']:.3f} s wall per unit of physical time "
              f"({s['steps_per_time_unit']:.1f} steps of mean dt {s['mean_dt']:.4f}); one snapshot interval "
              f"(dt {dt_snap:g}) {s['interval_s'] * 1e3:.1f} ms; energy at the end {s['final_energy']:.4f}")
    for r in surrogate_rows:
        sp = r["speedup_vs_solver"]
        print(f"{r['what']}: {sp['float32']:,.1f}x faster than the float32 solver, {sp['float64']:,.1f}x "
              f"than float64, per predicted snapshot")
    total_s = time.perf_counter() - t_start
    path = write_json("turbulence", {
        "machine": machine(), "args": vars(args), "device": device, "threads": threads,
        "busy_cpus_at_start": busy, "torch": torch.__version__,
        "solver": {"fine_n": fine_n, "dt_snapshot": dt_snap, "spinup": args.spinup,
                   "config": {d: dataclasses.asdict(solvers[d].config) for d in DTYPES}, "rows": solver_rows},
        "surrogates": surrogate_rows, "paper": paper_row, "reference_dtype": REFERENCE_DTYPE,
        "note": "speed-up = fine-grid solver wall time per snapshot interval / coarse surrogate time per step",
        "total_s": total_s,
    })
    print(f"[turbulence] {total_s:.0f} s; wrote "
          f"{path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
