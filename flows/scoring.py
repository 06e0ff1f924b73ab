"""Batch scoring flow: score new records with the registry's champion and write Parquet.

Run it: ``python -m flows.scoring netflow new_flows.csv.gz predictions.parquet``
(any fsspec URL or glob as input; ``--model-uri`` to pick another version; ``--width 0.5`` runs a nested
(MatFormer) version at another of its extracted widths).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.tasks import exponential_backoff

from tasks.params import Params, load_params
from tasks.score import score


@task(retries=2, retry_delay_seconds=exponential_backoff(backoff_factor=2), task_run_name="score-{domain}")
def score_task(domain: str, input_url: str, output: str, model_uri: str | None, params: dict,
               width: float | None = None) -> dict[str, Any]:
    return score(domain, Params.model_validate(params), input_url, output, model_uri, width=width)


@flow(name="formerflow-score", log_prints=True)
def score_flow(domain: str, input_url: str, output: str, model_uri: str | None = None,
               profiles: list[str] | None = None, width: float | None = None) -> dict[str, Any]:
    """Score ``input_url`` with ``models:/formerflow-<domain>@champion`` (or ``model_uri``; at FFN ``width`` for a
    nested version).

    The manifest and the Prefect artifact name the version number that scored (``model_version``).
    """
    params = load_params(profiles=profiles)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.scoring", description="Score new records with the champion.")
    ap.add_argument("domain")
    ap.add_argument("input", help="file, glob or fsspec URL of records")
    ap.add_argument("output", help="Parquet file to write")
    ap.add_argument("--model-uri", default=None)
    ap.add_argument("--profile", action="append", default=None)
    ap.add_argument("--width", type=float, default=None,
                    help="a nested (MatFormer) version's FFN width to run (1, 0.5, 0.25, ...; default: the registered)")
    args = ap.parse_args(argv)
    print(json.dumps(score_flow(args.domain, args.input, args.output, args.model_uri, args.profile, args.width),
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
