"""Batch scoring flow: score new records with the registry's champion and write Parquet.

Run it: ``python -m flows.scoring netflow --input new_flows.csv.gz --output predictions.parquet``, the options
of ``formerflow score`` (any fsspec URL or glob as input; ``--model-uri`` to pick another version; ``--width 0.5``
runs a nested (MatFormer) version at another of its extracted widths); ``formerflow score`` is the same scoring
without a Prefect flow run around it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.tasks import exponential_backoff

from tasks import logs
from tasks.params import DOMAINS, Params, load_params
from tasks.params_base import add_params_options, did_you_mean
from tasks.score import score


@task(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2), task_run_name="score-{domain}")
def score_task(domain: str, input_url: str, output: str, model_uri: str | None, params: dict,
               width: float | None = None) -> dict[str, Any]:
    return score(domain, Params.model_validate(params), input_url, output, model_uri, width=width)


@flow(name="formerflow-score", log_prints=True)
def score_flow(domain: str, input_url: str, output: str, model_uri: str | None = None,
               profiles: list[str] | None = None, width: float | None = None,
               overrides: list[str] | None = None) -> dict[str, Any]:
    """Score ``input_url`` with ``models:/formerflow-<domain>@champion`` (or ``model_uri``; at FFN ``width`` for a
    nested version).

    The manifest and the Prefect artifact name the version number that scored (``model_version``).
    """
    params = load_params(profiles=profiles, overrides=overrides or [])
    manifest = score_task(domain, input_url, output, model_uri, params.model_dump(mode="json"), width)
    skipped = manifest.get("skipped", [])
    if "steps" in manifest:  # a field domain (turbulence): a predicted trajectory, not flagged records
        what = (f"rolled out {manifest['trajectories']:,} trajectory(ies) x {manifest['steps']} steps from "
                f"`{input_url}` ({'finite' if manifest['finite'] else 'NOT finite: the rollout blew up'})")
    else:
        what = (f"scored {manifest['rows']:,} records from `{input_url}`; {manifest['flagged']:,} predicted "
                "positive (attack, seizure, AI disclosure, ...)")
    # The version that scored, by number: an alias (@champion) may point elsewhere by the time this is read.
    model = f"`{manifest['model_uri']}`"
    if manifest.get("model_version") is not None and manifest.get("model_requested") != manifest["model_uri"]:
        model += f" (version {manifest['model_version']}, asked for as `{manifest['model_requested']}`)"
    create_markdown_artifact(
        key=f"{domain}-scoring",
        markdown=(f"# Scoring · {domain}\n\nModel {model} {what}. Output: `{output}`."
                  + "".join(f"\n\nAlso written: `{f}`" for f in manifest.get("extra_outputs", []))
                  + (f"\n\n## Skipped inputs ({len(skipped)})\n\n" + "\n".join(
                      f"- `{s['file']}`: {s['reason']}" for s in skipped) if skipped else "")),
    )
    if skipped:
        print(f"skipped {len(skipped)} input(s): " + "; ".join(s["file"] for s in skipped))
    print(f"{what.replace('`', '')} with {manifest['model_uri']}; wrote {output}")
    return manifest


def main(argv: list[str] | None = None, prog: str = "python -m flows.scoring") -> int:
    """The scoring flow with ``formerflow score``'s options (records or documents; ``--sentences`` is not a flow)."""
    ap = argparse.ArgumentParser(prog=prog, description="Score new records with the champion, as a Prefect flow run.")
    ap.add_argument("domain", help=f"one of {', '.join(DOMAINS)}")
    ap.add_argument("--input", required=True, help="file, glob or fsspec URL of records (finance: annual reports)")
    ap.add_argument("--output", required=True, help="Parquet file to write")
    ap.add_argument("--model-uri", default=None, help="MLflow model URI (default models:/formerflow-<domain>@champion)")
    ap.add_argument("--width", type=float, default=None,
                    help="a nested (MatFormer) version's FFN width to run (1, 0.5, 0.25, ...; default: the registered)")
    add_params_options(ap, params_file=False)
    logs.add_log_options(ap)
    args = ap.parse_args(argv)
    logs.setup_logging(logs.level_from_flags(args.quiet, args.verbose))
    if args.domain not in DOMAINS:
        print(f"error: unknown domain {args.domain!r}{did_you_mean(args.domain, DOMAINS)}; choose from: "
              f"{', '.join(DOMAINS)}", file=sys.stderr)
        return 2
    print(json.dumps(score_flow(args.domain, args.input, args.output, args.model_uri, args.profile, args.width,
                                args.overrides), indent=2))
    return 0

if __name__ == "__main__":
    sys.exit(main())
