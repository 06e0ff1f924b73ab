"""Ingest throughput: rows/s of reading, validating, typing and writing a large NF-v2 CSV.

What it measures
----------------
One synthetic NetFlow v2 CSV of ``--rows`` rows (default 1,000,000, about 180 MB) is
written once with :func:`tasks.domains.netflow.synthetic.generate` (timed and reported on its
own). Then each implementation does the work of the ingest stage on it, each in its
own subprocess so that its peak memory is its own:

* ``polars`` (formerflow): ``tasks.domains.netflow.records.write_flows([csv], spec, out, cache=...)``,
  exactly what ``ingest`` does, in one streaming pass: required column check, a check
  for any non-numeric value in a numeric column (named by row and column if found), typing
  (numerics Float64, categoricals/keep columns/label strings, ``is_attack``) and Parquet.
* ``pandas`` (the FlowTransformer reference's library, idiomatic use): ``pd.read_csv``
  with the categorical, keep and label columns read as ``str`` and the numeric ones
  inferred; required-column check; ``pd.to_numeric(errors="coerce")`` on every numeric
  column, with a check that no non-empty value failed to parse (only a column that did
  not come back numeric can hold one); categoricals as ``str``; ``label`` +
  ``is_attack``; ``DataFrame.to_parquet``.
* ``pandas-str`` (opt-in, slow): the strict mirror of the polars semantics: every column
  read as ``str``, stripped, then ``pd.to_numeric(errors="coerce")`` + the check.

Reported per implementation: seconds (best of ``--repeat``, default 2, the runs of the
implementations interleaved), the phases, rows/s, MB/s of CSV, peak RSS above the
worker's post-import baseline (``VmHWM``), and polars' speed-up over it. Every
implementation's Parquet is checked afterwards (untimed): the row count, the number
of attacks, the column names, the sum of every numeric column, the label counts and
the number of distinct values of each categorical column must agree with polars'
(asserted, so a wrong implementation cannot report a speed).

How to run
----------
``make bench`` (both benchmarks), or on its own::

    .venv/bin/python bench/netflow_ingest.py                     # 1M rows, polars vs pandas
    .venv/bin/python bench/netflow_ingest.py --rows 200000 --repeat 3 --impl polars --impl pandas-str

Offline; everything happens in a throw-away project root under ``$TMPDIR`` (or
``.tmp/``), deleted afterwards unless ``--keep``. Prints one table; writes
``bench/results/netflow_ingest.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    answer,
    machine,
    make_root,
    peak_rss_mib,
    quiet_env,
    run_worker,
    table,
    write_json,
)

IMPLS = ("polars", "pandas", "pandas-str")
NAME = "netflow_ingest"


# ============================================================================ workers (subprocesses)
def _spec():
    from tasks.params import load_params

    return load_params().ingest.netflow.spec  # the throw-away root's params.yaml


def work_generate(a: argparse.Namespace) -> dict[str, Any]:
    from tasks.domains.netflow.synthetic import generate

    base = peak_rss_mib()
    t0 = time.perf_counter()
    files = generate(a.csv_dir, n_flows=a.rows, seed=a.seed, n_files=1, attack_fraction=a.attack_fraction)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "csv": str(files[0]), "bytes": files[0].stat().st_size,
            "peak_rss_mib": peak_rss_mib(), "rss_delta_mib": peak_rss_mib() - base}


def work_polars(a: argparse.Namespace) -> dict[str, Any]:
    import polars as pl  # noqa: F401  (imported before the baseline, as the stage has it loaded)

    from tasks.domains.netflow.records import write_flows

    spec = _spec()
    base = peak_rss_mib()
    with tempfile.TemporaryDirectory(dir=Path(a.out).parent) as cache:
        t0 = time.perf_counter()
        write_flows([a.csv], spec, Path(a.out), cache=Path(cache))
        t1 = time.perf_counter()
    return {"seconds": t1 - t0, "phases": {"write_flows (check+type+write, one pass)": t1 - t0},
            "peak_rss_mib": peak_rss_mib(), "rss_delta_mib": peak_rss_mib() - base}


def _pandas_ingest(path: str, out: str, spec, strict_str: bool) -> dict[str, float]:
    """The ingest work in pandas; raises ValueError like formerflow's SchemaError. Returns phase times."""
    import numpy as np
    import pandas as pd

    t0 = time.perf_counter()
    header = pd.read_csv(path, nrows=0).columns.tolist()
    renamed = {spec.renames.get(n, n): n for n in header}  # new name -> source name
    required = [*spec.numeric_fields, *spec.categorical_fields, *spec.keep_columns, spec.label_column]
    missing = [c for c in required if c not in renamed]
    if missing:
        raise ValueError(f"{path}: missing required columns {missing}")
    text_cols = [renamed[c] for c in (*spec.categorical_fields, *spec.keep_columns, spec.label_column)]
    dtype: Any = str if strict_str else {c: str for c in text_cols}
    df = pd.read_csv(path, dtype=dtype, keep_default_na=False, na_values=[""])
    df = df.rename(columns=spec.renames)
    if len(df) == 0:
        raise ValueError(f"{path}: header only, no data rows")
    t1 = time.perf_counter()

    out_cols: dict[str, Any] = {}
    problems = []
    for c in spec.numeric_fields:
        s = df[c]
        if strict_str or not pd.api.types.is_numeric_dtype(s):
            s = s.str.strip()
            v = pd.to_numeric(s, errors="coerce")
            failed = v.isna().to_numpy() & s.notna().to_numpy() & (s != "").to_numpy()
            if failed.any():
                i = int(np.flatnonzero(failed)[0])
                problems.append(f"row {i + 1}, column {c}: {s.iloc[i]!r} is not a number")
        else:
            v = pd.to_numeric(s, errors="coerce")  # already numeric: nothing can fail
        out_cols[c] = v.astype("float64")
    label = df[spec.label_column].str.strip()
    no_label = label.isna() | (label == "")
    if no_label.any():
        problems.append(f"row {int(np.flatnonzero(no_label.to_numpy())[0]) + 1}: empty label")
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems[:5]))
    for c in (*spec.categorical_fields, *spec.keep_columns):
        out_cols[c] = df[c].str.strip().fillna("")
    out_cols["label"] = label
    out_cols["is_attack"] = label != spec.benign_value
    frame = pd.DataFrame(out_cols)
    t2 = time.perf_counter()
    frame.to_parquet(out, index=False)
    t3 = time.perf_counter()
    return {"read_csv": t1 - t0, "checks+typing": t2 - t1, "to_parquet": t3 - t2}


def work_pandas(a: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd  # noqa: F401
    import pyarrow  # noqa: F401

    spec = _spec()
    base = peak_rss_mib()
    t0 = time.perf_counter()
    phases = _pandas_ingest(a.csv, a.out, spec, strict_str=a.worker == "pandas-str")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "phases": phases, "peak_rss_mib": peak_rss_mib(),
            "rss_delta_mib": peak_rss_mib() - base, "pandas": pd.__version__}


def work_check(a: argparse.Namespace) -> dict[str, Any]:
    """Untimed: what the written Parquet holds, to compare implementations."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    spec = _spec()
    t = pq.read_table(a.out)
    label_counts = {str(k): int(v) for k, v in
                    ((r["values"], r["counts"]) for r in pc.value_counts(t["label"]).to_pylist())}
    return {
        "rows": t.num_rows,
        "attacks": int(pc.sum(t["is_attack"]).as_py() or 0),
        "columns": sorted(t.column_names),
        "numeric_sums": {c: float(pc.sum(pc.cast(t[c], "float64")).as_py() or 0.0) for c in spec.numeric_fields},
        "label_counts": dict(sorted(label_counts.items())),
        "distinct": {c: int(pc.count_distinct(t[c]).as_py()) for c in (*spec.categorical_fields, *spec.keep_columns)},
        "parquet_bytes": Path(a.out).stat().st_size,
    }


def worker_main(a: argparse.Namespace) -> None:
    fn = {"generate": work_generate, "polars": work_polars, "pandas": work_pandas, "pandas-str": work_pandas,
          "check": work_check}[a.worker]
    answer(fn(a))


# ============================================================================ driver
def _same(ref: dict[str, Any], other: dict[str, Any], impl: str) -> None:
    """Assert that ``impl`` wrote the same data as polars."""
    for key in ("rows", "attacks", "columns", "label_counts", "distinct"):
        assert other[key] == ref[key], f"{impl} differs from polars in {key}: {other[key]} != {ref[key]}"
    for c, v in ref["numeric_sums"].items():
        w = other["numeric_sums"][c]
        assert abs(v - w) <= 1e-9 * max(1.0, abs(v)), f"{impl}: sum of {c} is {w}, polars has {v}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic CSV (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attack-fraction", type=float, default=0.3)
    ap.add_argument("--impl", action="append", choices=IMPLS, default=None,
                    help="implementation to time (repeatable; default: polars and pandas; polars always runs)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="runs per implementation, interleaved; the best is reported (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the throw-away root (CSV and Parquet files)")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds allowed per worker process")
    ap.add_argument("--worker", choices=("generate", "check", *IMPLS), help=argparse.SUPPRESS)
    ap.add_argument("--csv", help=argparse.SUPPRESS)
    ap.add_argument("--csv-dir", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker_main(a)
        return 0
    if a.rows < 1000 or a.repeat < 1:
        ap.error("--rows must be at least 1000 and --repeat at least 1")
    impls = ["polars", *[i for i in dict.fromkeys(a.impl or ["pandas"]) if i != "polars"]]

    t_start = time.perf_counter()
    load_before = os.getloadavg()[0]
    root = make_root("ingest")
    env = quiet_env(root)
    script = Path(__file__).resolve()
    print(f"[{NAME}] root {root}; generating {a.rows:,} rows ...", file=sys.stderr, flush=True)
    try:
        common = ["--seed", str(a.seed), "--attack-fraction", str(a.attack_fraction), "--rows", str(a.rows)]
        gen, _ = run_worker(script, ["--worker", "generate", "--csv-dir", str(root / "source"), *common],
                            env, root, a.timeout, "generate")
        csv, mb = gen["csv"], gen["bytes"] / 1e6
        runs: dict[str, list[dict[str, Any]]] = {}
        checks: dict[str, dict[str, Any]] = {}
        for r in range(a.repeat):  # interleaved, so a change in the machine's load hits every implementation
            for impl in impls:
                print(f"[{NAME}] {impl} run {r + 1}/{a.repeat} ...", file=sys.stderr, flush=True)
                out = root / f"{impl}.parquet"
                res, wall = run_worker(script, ["--worker", impl, "--csv", csv, "--out", str(out)],
                                       env, root, a.timeout, impl)
                res["process_wall_s"] = wall
                runs.setdefault(impl, []).append(res)
        for impl in impls:
            out = root / f"{impl}.parquet"
            checks[impl], _ = run_worker(script, ["--worker", "check", "--out", str(out)], env, root, a.timeout,
                                         f"check of {impl}")
            out.unlink()

        ref = checks["polars"]
        assert ref["rows"] == a.rows, f"polars wrote {ref['rows']} rows, the CSV has {a.rows}"
        assert 0 < ref["attacks"] < a.rows, f"implausible attack count {ref['attacks']}"
        for impl in impls[1:]:
            _same(ref, checks[impl], impl)

        best = {impl: min(rs, key=lambda r: r["seconds"]) for impl, rs in runs.items()}
        rows_out = [["generate CSV (synthetic)", gen["seconds"], "-", a.rows / gen["seconds"], mb / gen["seconds"],
                     gen["rss_delta_mib"], "-"]]
        for impl in impls:
            b = best[impl]
            phases = " + ".join(f"{k} {v:.1f}" for k, v in b["phases"].items())
            speedup = "1.00x" if impl == "polars" else f"{b['seconds'] / best['polars']['seconds']:.2f}x"
            label = "polars (formerflow write_flows)" if impl == "polars" else f"{impl}"
            rows_out.append([label, b["seconds"], phases, a.rows / b["seconds"], mb / b["seconds"],
                             b["rss_delta_mib"], speedup])
        headers = ["step", "seconds", "phases (s)", "rows/s", "CSV MB/s", "peak RSS Δ MiB",
                   "polars speed-up"]
        text = table(headers, [[r[0], r[1], r[2], int(r[3]), r[4], r[5], r[6]] for r in rows_out],
                     align="lrlrrrr")
        total = time.perf_counter() - t_start
        print(f"\n## Ingest + validation of {a.rows:,} NF-v2 rows ({mb:.0f} MB CSV, "
              f"{ref['attacks']:,} attacks; best of {a.repeat})\n")
        print(text)
        print("\n'polars speed-up' = that implementation's seconds / polars' seconds (>1: polars is faster). "
              "Outputs checked equal: rows, attacks, columns, numeric sums, label counts, distinct categoricals. "
              f"Load average before/after {load_before:.1f}/{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.")
        path = write_json(NAME, {
            "benchmark": NAME, "machine": machine(), "args": {k: v for k, v in vars(a).items()
                                                              if k not in ("worker", "csv", "csv_dir", "out")},
            "csv_mb": mb, "generate": gen, "runs": runs,
            "best": {i: {"seconds": b["seconds"], "rows_per_s": a.rows / b["seconds"],
                         "rss_delta_mib": b["rss_delta_mib"], "phases": b["phases"]} for i, b in best.items()},
            "median_seconds": {i: statistics.median(r["seconds"] for r in rs) for i, rs in runs.items()},
            "speedup_vs_polars": {i: best[i]["seconds"] / best["polars"]["seconds"] for i in impls},
            "checks": checks, "table": text, "script_seconds": total,
        })
        print(f"\n[{NAME}] {total:.0f} s in all; wrote {path.relative_to(path.parents[2])}", file=sys.stderr)
    finally:
        if a.keep:
            print(f"[{NAME}] kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
