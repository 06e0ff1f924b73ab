"""Command line: ``python -m tasks <stage> <domain>`` (what dvc.yaml calls), plus ``score``, ``params``,
``lineage`` and ``status``; also installed as the ``formerflow`` command.

Examples::

    python -m tasks ingest netflow
    python -m tasks train netflow --set train.netflow.epochs=2
    python -m tasks score netflow --input new_flows.csv --output preds.parquet
    python -m tasks score finance --sentences sentences.txt --output preds.parquet   # one sentence a line
    python -m tasks score finance --sentences labelled.csv --text-column text --model tfidf_logreg --output p.parquet
    python -m tasks params --profile paper          # print the merged, validated params
    torchrun --standalone --nproc_per_node 2 -m tasks train netflow   # data-parallel (DDP) training
    formerflow lineage netflow                      # champion -> run -> params -> data -> source -> git
    formerflow lineage netflow@candidate            # or netflow/3: a version by number
    formerflow status                               # per domain: stale DVC stages, champion, candidate

Under ``dvc repro`` (``$DVC_STAGE`` set) a stage refuses to run with params that are not
params.yaml's (``$FORMERFLOW_PROFILE``): dvc.lock would record params.yaml's values for outputs
that other params produced.

Under ``torchrun`` (``$WORLD_SIZE`` > 1) ``train`` trains data-parallel, one process group for the
stage (:mod:`tasks.ddp`; rank 0 alone writes and prints); ``--distributed`` insists on it
and refuses to train in one process. The other stages and commands refuse to run under torchrun.

Exit status: 0 done, 2 a bad stage, domain or param, 1 a stage that failed with a clear error,
including a stage refused because another stage of its domain holds the domain's lock (the
message names the holder's pid and stage) and register refusing metrics measured on other
files, and ``lineage`` of a version that does not exist. URLs in what it prints are redacted
(:func:`tasks.store.redact`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

import yaml

from tasks import ddp, domains, logs, store
from tasks.domains import UnknownDomainError
from tasks.params_base import STAGES, add_params_options, did_you_mean
from tasks.stages import UnknownStageError, run_stage, stage_function

DOMAINS = domains.names()
COMMANDS = ("score", "params", "lineage", "status")
EPILOG = ("stages: " + ", ".join(STAGES) + "; domains: " + ", ".join(DOMAINS)
          + "; also `formerflow sweep <domain> --trials N` (Optuna, flows/sweep.py)")


def _stage_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--no-track", action="store_true", help="do not log to MLflow (register always logs)")
    ap.add_argument("--distributed", action="store_true",
                    help="train: data-parallel over torchrun's processes; refused when torchrun did not start "
                         "this one (under torchrun train is data-parallel with or without it)")


def _score_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--input", help="file, glob or fsspec URL of records (finance: annual reports) to score")
    ap.add_argument("--output", help="Parquet file to write (finance --sentences: .parquet or .csv)")
    ap.add_argument("--model-uri", help="MLflow model URI (default models:/formerflow-<domain>@champion)")
    ap.add_argument("--width", type=float, default=None,
                    help="run a nested (MatFormer) version at another extracted FFN width (1, 0.5, 0.25, ...)")
    ap.add_argument("--sentences", metavar="FILE",
                    help="finance: single sentences instead of documents: a TXT file (one sentence per line) "
                         "or a CSV/TSV/Parquet file with a text column; with labels, metrics too")
    ap.add_argument("--text-column", default=None,
                    help="--sentences: the table's text column (default: sentence)")
    ap.add_argument("--label-column", default=None,
                    help="--sentences: the table's label column, 0/1 or non-AI/AI (default: label, when present)")
    ap.add_argument("--model", default=None,
                    help="--sentences: champion (default: the registered model) or a baseline saved by the "
                         "train stage (keyword, tfidf_logreg, tfidf_nb, tfidf_rf: those train.finance.baselines fit)")


COMMAND_HELP = {
    "score": "Score new records (finance: documents or single sentences) with the champion, a version or a baseline.",
    "status": "Per domain: stale DVC stages, the champion and the candidate.",
    "lineage": "Champion (or @alias, /version) -> run -> params -> data -> source -> git commit.",
    "params": "Print the merged, validated params (params.yaml + profiles + --set).",
}


def _parser(prog: str = "python -m tasks", command: str | None = None,
            only_stages: bool = False) -> argparse.ArgumentParser:
    """The parser of ``python -m tasks`` (any stage or command), or of one ``formerflow`` command."""
    if command is not None:  # formerflow score / status / lineage / params: that command's options only
        ap = argparse.ArgumentParser(prog=prog, description=COMMAND_HELP[command])
        if command == "score":
            ap.add_argument("domain", help=f"one of {', '.join(DOMAINS)}")
            _score_options(ap)
        elif command == "lineage":
            ap.add_argument("domain", metavar="TARGET",
                            help="<domain>[@alias|/version], e.g. netflow, netflow@candidate, netflow/3 "
                                 "(default @champion)")
        elif command == "status":
            ap.add_argument("domain", nargs="?", help=f"one of {', '.join(DOMAINS)} (default: all)")
        add_params_options(ap)
        logs.add_log_options(ap)
        ap.set_defaults(stage=command, domain=None, no_track=False, distributed=False)
        if command != "score":
            ap.set_defaults(**{k: None for k in ("input", "output", "model_uri", "width", "sentences", "text_column",
                                                  "label_column", "model")})
        return ap
    ap = argparse.ArgumentParser(prog=prog, description="Run one formerflow stage.", epilog=EPILOG)
    ap.add_argument("stage", help=f"one of {', '.join(STAGES if only_stages else (*STAGES, *COMMANDS))}")
    ap.add_argument("domain", nargs="?", help=f"one of {', '.join(DOMAINS)}" + (
        "" if only_stages else "; lineage: <domain>[@alias|/version] (default @champion); status: a domain or "
                               "none (all)"))
    add_params_options(ap)
    _stage_options(ap)
    logs.add_log_options(ap)
    if not only_stages:
        _score_options(ap)
    return ap


def main(argv: list[str] | None = None, prog: str = "python -m tasks", command: str | None = None,
         only_stages: bool = False) -> int:
    """Run a stage or command; ``prog`` / ``command`` / ``only_stages`` shape it as a ``formerflow`` command.

    Args:
        argv: The arguments (default ``sys.argv[1:]``).
        prog: The name in usage lines and help.
        command: ``score`` / ``status`` / ``lineage`` / ``params``: that command alone (``argv`` still starts with
            it); None: ``python -m tasks``'s "any stage or command" form.
        only_stages: ``formerflow stage``: the first argument must be a stage.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(prog, command, only_stages).parse_args(argv[1:] if command is not None else argv)
    logs.setup_logging(logs.level_from_flags(args.quiet, args.verbose))
    # lazy: the schema imports the model registry (torch); --help and a mistyped stage or domain answer without it
    from tasks.params import (  # lazy: see above
        ParamsError,
        announce_profiles,
        load_params,
        params_diff,
        tracked_params,
    )

    valid = STAGES if only_stages else (*STAGES, *COMMANDS)
    if args.stage not in valid:
        print(f"error: unknown stage {args.stage!r}{did_you_mean(args.stage, valid)}; choose one of: "
              f"{', '.join(valid)}", file=sys.stderr)
        return 2
    domain = (args.domain or "").split("@")[0].split("/")[0] if args.stage == "lineage" else args.domain
    if (args.stage not in ("params", "status") or domain is not None) and domain not in DOMAINS:
        print(f"error: unknown domain {domain!r}{did_you_mean(domain or '', DOMAINS)}; choose one of: "
              f"{', '.join(DOMAINS)}", file=sys.stderr)
        return 2
    try:
        launched = ddp.is_launched()
        if args.distributed and args.stage != "train":
            raise ddp.DistributedError(f"--distributed is a train option, not {args.stage}'s")
        if launched and args.stage != "train":
            # Every rank would run it: N copies of one stage fighting over its outputs.
            raise ddp.DistributedError(f"{args.stage} does not run under torchrun; only train does "
                                               "(data-parallel): run it as a plain command")
        if args.distributed:
            ddp.require_launch(f"train {args.domain} --distributed")
    except ddp.DistributedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        params = load_params(args.params, args.profile, args.overrides)
        if args.stage == "params":
            print(store.redact(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)), end="")
            return 0
        if args.stage in ("lineage", "status"):
            return _report(args.stage, args.domain, params)
        if args.stage in STAGES and os.environ.get("DVC_STAGE"):
            # Under dvc repro, dvc.lock records params.yaml's values of what dvc.yaml lists for the stage; a
            # $FORMERFLOW_PROFILE that changed them would make it describe outputs that other params produced.
            base = load_params(args.params, [], []).model_dump(mode="json")
            diff = params_diff(params.model_dump(mode="json"), base, tracked_params(args.stage, args.domain))
            if diff:
                raise ParamsError(
                    f"dvc repro runs {args.stage}@{args.domain} but dvc.lock would record params.yaml's values, "
                    f"not this run's ({'; '.join(diff[:5])}): unset FORMERFLOW_PROFILE, put the values in "
                    "params.yaml (or dvc exp run --set-param), or run the Prefect flow, which does not dvc commit "
                    "such stages")
        if args.stage == "score":
            sentence_opts = [o for o, v in (("--text-column", args.text_column), ("--label-column", args.label_column),
                                            ("--model", args.model)) if v is not None]
            if bool(args.input) == bool(args.sentences) or not args.output:
                print("error: score needs --output and one of --input (records, documents) or --sentences "
                      "(single sentences)", file=sys.stderr)
                return 2
            if sentence_opts and not args.sentences:
                print(f"error: {', '.join(sentence_opts)}: options of score --sentences", file=sys.stderr)
                return 2
            if args.sentences:
                # The same module as the score stage (tasks.stages loads it by name); its sentence entry point.
                score_sentences = importlib.import_module("tasks.score").score_sentences
                manifest = score_sentences(args.domain, params, args.sentences, args.output, model=args.model,
                                           model_uri=args.model_uri, text_column=args.text_column,
                                           label_column=args.label_column, width=args.width)
                print(store.redact(manifest["table"]))
            else:
                score = stage_function("score", args.domain)  # loaded by name, like every stage (tasks.stages)
                manifest = score(args.domain, params, args.input, args.output, args.model_uri, width=args.width)
        elif launched:
            # One process group for the stage, left also when it fails (tasks.ddp.session).
            with ddp.session(params.section("train", args.domain).device):
                manifest = run_stage(args.stage, args.domain, params, track=not args.no_track)
                if not ddp.is_main():
                    return 0  # rank 0 prints the stage's summary
        else:
            with announce_profiles(args.profile):  # the report header names them
                manifest = run_stage(args.stage, args.domain, params, track=not args.no_track)
    except (ParamsError, UnknownStageError, UnknownDomainError) as exc:
        print(store.redact(f"error: {exc}"), file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not type(exc).__module__.startswith("tasks."):
            raise  # a library's RuntimeError (torch, MLflow) is a bug to see whole, not a refusal
        # RuntimeErrors of our own are refusals with a clear message: a held lock, register's stale metrics
        print(store.redact(f"error in {args.stage} {args.domain}: {exc}"), file=sys.stderr)
        return 1
    summary = {k: v for k, v in manifest.items() if k not in ("table",)}
    print(store.redact(json.dumps(summary, indent=2, default=str)[:4000]))
    return 0


def _report(command: str, target: str | None, params) -> int:
    """``lineage`` / ``status``: the logic is tasks.lineage's; this prints it."""
    # Loaded by name, like a stage's module (tasks.stages): the process of a stage, whose code dvc.yaml lists
    # as its deps (tests/unit/test_dvc_deps.py), never runs the reports.
    lineage = importlib.import_module("tasks.lineage")

    if command == "status":
        print(lineage.format_status(lineage.status(params, [target] if target else None)))
        return 0
    domain = lineage.parse_target(target)[0]
    try:
        chain = lineage.lineage(target, params.section("register", domain).primary_metric)
    except LookupError as exc:
        print(store.redact(f"error: {exc}"), file=sys.stderr)
        return 1
    print(lineage.format_lineage(chain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
