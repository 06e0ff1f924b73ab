"""The stage table: one plain function per stage, the single implementation every entry point calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks import domains, tracking
from tasks.params import STAGES, Params


class UnknownStageError(ValueError):
    pass


def _ingest(domain: str, params: Params, run) -> dict[str, Any]:
    return domains.get(domain).ingest(params, run)


def _preprocess(domain: str, params: Params, run) -> dict[str, Any]:
    return domains.get(domain).preprocess(params, run)


def _train(domain: str, params: Params, run) -> dict[str, Any]:
    from tasks.train import train

    return train(domain, params, run)


def _compress(domain: str, params: Params, run) -> dict[str, Any]:
    from tasks.compress import compress

    return compress(domain, params, run)


def _evaluate(domain: str, params: Params, run) -> dict[str, Any]:
    from tasks.evaluate import evaluate

    return evaluate(domain, params, run)


def _register(domain: str, params: Params, run) -> dict[str, Any]:
    from tasks.register import register

    return register(domain, params, run)


STAGE_FUNCTIONS: dict[str, Callable[[str, Params, Any], dict[str, Any]]] = {
    "ingest": _ingest, "preprocess": _preprocess, "train": _train,
    "compress": _compress, "evaluate": _evaluate, "register": _register,
}
assert tuple(STAGE_FUNCTIONS) == STAGES


def run_stage(stage: str, domain: str, params: Params, *, parent_run_id: str | None = None,
              tags: dict[str, str] | None = None, track: bool = True) -> dict[str, Any]:
    """Run one stage of one domain, inside its own MLflow run (a child of ``parent_run_id`` if given).

    Raises:
        UnknownStageError / tasks.domains.UnknownDomainError: names the valid choices.
    """
    if stage not in STAGE_FUNCTIONS:
        raise UnknownStageError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    domains.get(domain)  # validates the domain name before anything is opened
    fn = STAGE_FUNCTIONS[stage]
    if not track:
        return fn(domain, params, None)
    with tracking.start_run(domain, stage, parent_run_id=parent_run_id, tags=tags) as run:
        manifest = fn(domain, params, run)
        run.set_tags({f"output.{k}.md5": v for k, v in manifest.get("outputs", {}).items()})
        return manifest
