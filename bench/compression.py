"""Compression benchmark: every method x domain, with the metric, size, batch-1 latency, throughput and make time.

For each domain this runs ingest -> preprocess -> train -> compress -> evaluate (the stage
functions, without MLflow) in a throw-away project root with ``params.yaml`` (the
``make run`` defaults; ``--set`` overrides, ``--profile`` for another profile), then reads
what the evaluate stage measured in one process for the teacher and every variant
(``reports/<domain>/metrics.json``) and what the compress stage recorded (seconds to make,
``compress.json``). One Markdown table; JSON in ``bench/results/compression.json``.

    .venv/bin/python bench/compression.py                      # all four domains, about 6 minutes here
    .venv/bin/python bench/compression.py --domain netflow --domain eeg
    .venv/bin/python bench/compression.py --root .             # read an existing project's reports only

Speed-ups and size ratios are against the teacher measured in the same process; the AxFormer
anchor (up to 2.5x faster, 3.2x smaller at no accuracy loss) is the column ``anchor``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import fmt, make_root, quiet_env, run_worker, table, write_json  # noqa: E402

DOMAINS = ("netflow", "eeg", "finance", "turbulence")
STAGES = ("ingest", "preprocess", "train", "compress", "evaluate")
WORKER = '''
import sys
from bench._common import answer
from tasks.params import load_params
from tasks.stages import run_stage
params = load_params(profiles=[p for p in sys.argv[2:3] if p], overrides=sys.argv[3:])
for stage in {stages!r}:
    run_stage(stage, sys.argv[1], params, track=False)
answer({{"domain": sys.argv[1]}})
'''


def rows_of(root: Path, domain: str) -> list[dict[str, Any]]:
    """The teacher and every variant of one domain, from its reports."""
    reports = root / "reports" / domain
    metrics = json.loads((reports / "metrics.json").read_text())
    made = json.loads((reports / "compress.json").read_text())["methods"]
    params_reg = metrics.get("choice", {})
    primary = params_reg.get("primary", "balanced_accuracy")
    teacher = metrics["models"]["teacher"]
    out = []
    for name, m in metrics["models"].items():
        if name != "teacher" and name not in made:
            continue  # baselines
        faster = teacher["latency_ms"] / m["latency_ms"] if m.get("latency_ms") else None
        smaller = teacher["bytes"] / m["bytes"] if m.get("bytes") else None
        out.append({"domain": domain, "variant": name, "primary": primary, "metric": m.get(primary),
                    "delta": (m[primary] - teacher[primary]) if m.get(primary) is not None else None,
                    "bytes": m.get("bytes"), "smaller": smaller, "latency_ms": m.get("latency_ms"), "faster": faster,
                    "throughput_per_s": m.get("throughput_per_s"),
                    "parameters": m.get("parameters") or made.get(name, {}).get("parameters"),
                    "seconds": made.get(name, {}).get("seconds"),
                    "chosen": name == params_reg.get("variant"),
                    "anchor": bool(faster and smaller and faster >= 2.5 and smaller >= 3.0)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--domain", action="append", choices=DOMAINS, help="domain (repeatable; default all four)")
    ap.add_argument("--profile", default="", help="params profile")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--root", type=Path, help="read this project's reports instead of running the stages")
    ap.add_argument("--keep", action="store_true", help="keep the throw-away root")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args(argv)
    domains = args.domain or list(DOMAINS)
    root = args.root.resolve() if args.root else make_root("compression")
    rows: list[dict[str, Any]] = []
    try:
        for domain in domains:
            if args.root is None:
                script = root / "worker.py"
                script.write_text(WORKER.format(stages=STAGES))
                _, wall = run_worker(script, [domain, args.profile, *args.overrides], quiet_env(root), root,
                                     args.timeout, f"{domain} stages")
                print(f"{domain}: ingest .. evaluate in {wall:.0f} s", flush=True)
            rows += rows_of(root, domain)
    finally:
        if args.root is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    headers = ["domain", "variant", "metric", "value", "Δ teacher", "size KB", "smaller", "latency ms (b=1)",
               "faster", "throughput/s", "params", "make s", "chosen", "≥ anchor"]
    print(table(headers, [[r["domain"], r["variant"], r["primary"], fmt(r["metric"], 4), fmt(r["delta"], 4),
                           fmt((r["bytes"] or 0) / 1024, 0), fmt(r["smaller"]), fmt(r["latency_ms"], 3),
                           fmt(r["faster"]), fmt(r["throughput_per_s"], 0), fmt(r["parameters"], 0),
                           fmt(r["seconds"], 1), "yes" if r["chosen"] else "", "yes" if r["anchor"] else ""]
                          for r in rows]))
    path = write_json("compression", {"rows": rows, "profile": args.profile, "overrides": args.overrides})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
