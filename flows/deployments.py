"""Deployments with cron schedules: one per domain plus the whole pipeline (``prefect.yaml`` mirrors them).

``make serve`` (``python -m flows.deployments``) serves them with ``prefect.serve``
from this process. Schedules only fire against a real Prefect server (the
ephemeral one registers deployments but creates no scheduled runs), so start
one first: ``prefect server start --host 127.0.0.1`` and
``export PREFECT_API_URL=http://127.0.0.1:4200/api``. With a work pool
instead: ``prefect work-pool create formerflow --type process``,
``prefect --no-prompt deploy --all``, ``prefect worker start --pool formerflow``.
"""

from __future__ import annotations

import argparse
import sys

from prefect import serve
from prefect.schedules import Cron

from flows.pipeline import domain_flow, pipeline

TIMEZONE = "UTC"
# (deployment name, flow, parameters, cron, schedule slug)
DEPLOYMENTS = [
    ("netflow", "formerflow-domain", {"domain": "netflow"}, "0 2 * * *", "netflow-nightly"),
    ("eeg", "formerflow-domain", {"domain": "eeg"}, "30 2 * * *", "eeg-nightly"),
    ("finance", "formerflow-domain", {"domain": "finance"}, "0 3 * * *", "finance-nightly"),
    ("turbulence", "formerflow-domain", {"domain": "turbulence"}, "30 3 * * *", "turbulence-nightly"),
    ("all-domains", "formerflow-pipeline", {}, "0 4 * * 0", "pipeline-weekly"),
]


def deployments() -> list:
    """The RunnerDeployments of :data:`DEPLOYMENTS`."""
    flows = {"formerflow-domain": domain_flow, "formerflow-pipeline": pipeline}
    return [
        flows[flow_name].to_deployment(
            name=name, parameters=parameters, schedules=[Cron(cron, timezone=TIMEZONE, slug=slug)],
            tags=["formerflow"],
        )
        for name, flow_name, parameters, cron, slug in DEPLOYMENTS
    ]


def main(argv: list[str] | None = None, prog: str = "python -m flows.deployments") -> int:
    """``formerflow serve``: serve :data:`DEPLOYMENTS` from this process until Ctrl-C."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                 epilog="deployments: " + ", ".join(f"{d[0]} ({d[3]} {TIMEZONE})" for d in DEPLOYMENTS))
    ap.parse_args(sys.argv[1:] if argv is None else argv)
    serve(*deployments())
    return 0


if __name__ == "__main__":
    sys.exit(main())
