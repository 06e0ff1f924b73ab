"""``formerflow``: the project's one command line.

Every command has the same params options (``--profile``, ``--set``, ``--params``) and log switches (``-q`` /
``-v``) where it takes them, and unknown names (commands, stages, domains, params keys, profiles) are answered
with the nearest known one. The commands are thin: each calls the function its module's own ``main`` calls, so
``python -m tasks <stage> <domain>`` (what dvc.yaml runs) and ``python -m flows.pipeline`` stay valid aliases.

Examples::

    formerflow run                                  # every domain of pipeline.domains (make run)
    formerflow run netflow eeg --set train.netflow.epochs=2
    formerflow stage train netflow                  # one stage (= python -m tasks train netflow)
    formerflow score netflow --input flows.csv --output preds.parquet
    formerflow score finance --sentences lines.txt --output preds.parquet
    formerflow status                               # per domain: stale DVC stages, champion, candidate
    formerflow lineage netflow@champion
    formerflow params --profile paper               # the merged, validated params
    formerflow sweep netflow --trials 20            # Optuna over Prefect tasks
    formerflow ui                                   # MLflow UI on the project's store
    formerflow serve                                # the Prefect deployments with their schedules
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from importlib import metadata

from flows import _boot
from tasks.domains import names as domain_names
from tasks.params_base import STAGES, did_you_mean

COMMANDS: dict[str, str] = {
    "run": "run the pipeline (ingest -> register) for some or all domains, as a Prefect flow",
    "stage": "run one stage of one domain (what dvc.yaml runs)",
    "score": "score new records (finance: documents or sentences) with the champion, a version or a baseline",
    "status": "per domain: stale DVC stages, the champion and the candidate",
    "lineage": "champion (or @alias, /version) -> run -> params -> data -> source -> git commit",
    "params": "print the merged, validated params (params.yaml + profiles + --set)",
    "sweep": "hyper-parameter sweep of one domain (Optuna; trials are Prefect tasks)",
    "ui": "the MLflow UI on this project's store",
    "serve": "serve the Prefect deployments with their cron schedules",
}
"""Every command, with its one-line help."""

HANDLERS: dict[str, tuple[str, dict]] = {
    "run": ("flows.pipeline", {}),
    "sweep": ("flows.sweep", {}),
    "serve": ("flows.deployments", {}),
    "stage": ("tasks.__main__", {"only_stages": True}),
    **{c: ("tasks.__main__", {"command": c}) for c in ("score", "status", "lineage", "params")},
}
"""The module whose ``main(argv, prog=..., **kwargs)`` runs each command (``ui`` is :func:`_ui`)."""


def version() -> str:
    """The installed package's version (the source tree's when it is not installed)."""
    try:
        return metadata.version("formerflow")
    except metadata.PackageNotFoundError:  # run from a checkout without `pip install -e .`
        return "0+unknown"


def usage() -> str:
    """The top-level help."""
    width = max(map(len, COMMANDS))
    lines = ["usage: formerflow [-h] [--version] COMMAND [ARGS ...]", "",
             "Train, compress, evaluate and register the papers' transformers, four domains, one command.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "options:", "  -h, --help  show this help (COMMAND --help: the command's options)",
              "  --version   show formerflow's version", "",
              "`formerflow COMMAND --help` lists a command's options; `formerflow <stage> <domain>` is short for",
              f"`formerflow stage <stage> <domain>` (stages: {', '.join(STAGES)})."]
    return "\n".join(lines)


def _ui(argv: list[str]) -> int:
    """``formerflow ui [--host H] [--port P]``: ``mlflow ui`` on the project's store (its artifacts relocated)."""
    ap = argparse.ArgumentParser(prog="formerflow ui", description=COMMANDS["ui"])
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    args = ap.parse_args(argv)
    tracking = importlib.import_module("tasks.tracking")  # MLflow loads for this command only

    tracking.relocate_store()  # a copied or moved project's store points at its own artifacts
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    cmd = [mlflow if os.path.exists(mlflow) else "mlflow", "ui", "--backend-store-uri", tracking.tracking_uri(),
           "--host", args.host, "--port", str(args.port)]
    print(f"MLflow UI on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


def _will_run(rest: list[str]) -> bool:
    """True when ``run`` / ``sweep`` arguments ask for a flow: no help, every positional a known domain."""
    if any(a in ("-h", "--help") for a in rest):
        return False
    valued = {"--profile", "--set", "--domain", "--trials", "--space", "--timeout", "--parallel", "--seed",
              "--prune-startup", "--prune-warmup"}
    positional = [a for i, a in enumerate(rest) if not a.startswith("-") and (i == 0 or rest[i - 1] not in valued)]
    named = [rest[i + 1] for i, a in enumerate(rest[:-1]) if a == "--domain"]
    return all(d in domain_names() for d in [*positional, *named])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"formerflow {version()}")
        return 0
    command, rest = argv[0], argv[1:]
    if command in STAGES:  # `formerflow train netflow`, the form before `stage` existed
        command, rest = "stage", argv
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}{did_you_mean(command, [*COMMANDS, *STAGES])}; "
              f"commands: {', '.join(COMMANDS)} (formerflow --help)", file=sys.stderr)
        return 2
    if command == "ui":
        return _ui(rest)
    # The command's module is loaded by name, once chosen: `formerflow status` never loads Prefect, `--help` and a
    # typo answer at once.
    module, kwargs = HANDLERS[command]
    if command in ("run", "sweep") and _will_run(rest):
        # Prefect's API server boots on the other core while the flow's imports take their ~15 s (flows/_boot.py);
        # not for --help or a mistyped domain, whose exit would wait for the boot.
        _boot.start()
    entry = importlib.import_module(module).main
    if module == "tasks.__main__":
        return entry(rest if command == "stage" else [command, *rest], prog=f"formerflow {command}", **kwargs)
    return entry(rest, prog=f"formerflow {command}", **kwargs)


if __name__ == "__main__":
    sys.exit(main())
