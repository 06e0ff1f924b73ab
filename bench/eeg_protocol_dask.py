"""The EEG evaluation protocol (every model x seed x fold) in this process vs on a local Dask cluster.

``pipeline.task_runner: threads`` runs the protocol's fits one after another in the train stage's
process, each fit using torch's threads; ``dask`` sends them to the workers of a Dask cluster
(:mod:`tasks.fanout`), one fit per worker at a time with ``cores // workers`` torch threads each.
This benchmark makes the default synthetic EEG data (ingest + preprocess of the default params in a
throw-away project), then times :func:`tasks.domains.eeg.runner.run_protocol` on the default
protocol both ways, and reports whether the predictions agree.

Run it: ``python bench/eeg_protocol_dask.py`` (``--workers 2``; ``--set KEY=VALUE`` overrides a
param, e.g. ``--set train.eeg.protocol.seeds=[0,1,2]``). The cluster's start-up is timed apart from
the fits. Prints one table and writes ``bench/results/eeg_protocol_dask.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from _common import machine, make_root, quiet_env, table, write_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)

    root = make_root("eeg-dask")
    env = quiet_env(root)
    for stage in ("ingest", "preprocess"):
        print(f"[eeg_protocol_dask] {stage} eeg ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "tasks", stage, "eeg", "--no-track",
                        *[a for o in args.overrides for a in ("--set", o)]], env=env, cwd=root, check=True,
                       capture_output=True)
    os.environ.update(env)
    os.chdir(root)

    import numpy as np
    import polars as pl
    import torch
    from distributed import LocalCluster
    from safetensors.torch import load_file

    from flows.runners import local_cluster_kwargs
    from tasks.domains.eeg.data import load_schema
    from tasks.domains.eeg.runner import run_protocol
    from tasks.params import load_params

    params = load_params(overrides=args.overrides)
    meta = pl.read_parquet(root / "data/processed/eeg/meta.parquet")
    x = load_file(str(root / "data/processed/eeg/epochs.safetensors"))["x"]
    inputs = (x, meta["subject"].to_numpy().astype(str), meta["label"].to_numpy(), meta["group"].to_numpy(),
              load_schema())
    pr = params.train.eeg.protocol
    print(f"[eeg_protocol_dask] protocol {pr.name}: models {pr.models}, seeds {pr.seeds}, x {tuple(x.shape)}",
          file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    here, info = run_protocol(params, *inputs, progress=False)
    threads_s = time.perf_counter() - t0
    n_fits = len(info["folds"]) * len(pr.seeds) * len(info["variants"])

    t0 = time.perf_counter()
    with LocalCluster(**local_cluster_kwargs(args.workers)) as cluster:
        startup_s = time.perf_counter() - t0
        on_dask = params.model_copy(update={"pipeline": params.pipeline.model_copy(
            update={"task_runner": "dask", "address": cluster.scheduler_address})})
        t0 = time.perf_counter()
        there, _ = run_protocol(on_dask, *inputs, progress=False)
        dask_s = time.perf_counter() - t0
    probs = [c for c in here if c.startswith("p") and c[1:].isdigit()]
    diff = max(float(np.abs(np.asarray(here[c]) - np.asarray(there[c])).max()) for c in probs)

    def accuracy(cols: dict) -> dict[str, float]:
        """Balanced accuracy per protocol model over all its test predictions (the report's table: per fold)."""
        from sklearn.metrics import balanced_accuracy_score

        pred = np.stack([cols[c] for c in probs], 1).argmax(1)
        return {m: round(float(balanced_accuracy_score(cols["y"][cols["model"] == m], pred[cols["model"] == m])), 4)
                for m in sorted(set(cols["model"]))}

    rows = [{"runner": f"threads (1 process, {torch.get_num_threads()} torch threads)", "fits": n_fits,
             "seconds": threads_s, "startup_s": 0.0, "speedup": 1.0, "balanced_accuracy": accuracy(here)},
            {"runner": f"dask ({args.workers} workers, {local_cluster_kwargs(args.workers)['env']['OMP_NUM_THREADS']}"
                       " torch thread(s) each)", "fits": n_fits, "seconds": dask_s, "startup_s": startup_s,
             "speedup": threads_s / dask_s, "balanced_accuracy": accuracy(there)}]
    headers = ["runner", "fits", "protocol s", "cluster start s", "speedup (fits only)", "balanced accuracy"]
    body = [[r["runner"], r["fits"], r["seconds"], r["startup_s"], f"{r['speedup']:.2f}x",
             ", ".join(f"{m} {v:.3f}" for m, v in r["balanced_accuracy"].items())] for r in rows]
    title = (f"## EEG protocol {pr.name} ({', '.join(pr.models)}; seeds {pr.seeds}; {len(info['folds'])} folds), "
             f"{os.cpu_count()} cores; max |p threads - p dask| = {diff:.2e} (round-off of another thread count, "
             "grown over the epochs)")
    print(f"\n{title}\n\n{table(headers, body)}\n")
    path = write_json("eeg_protocol_dask", {"machine": machine(), "args": vars(args), "rows": rows,
                                            "max_prob_diff": diff, "protocol": pr.model_dump(mode="json")})
    print(f"[eeg_protocol_dask] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
