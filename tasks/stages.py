"""The stage table: one plain function per stage, the single implementation every entry point calls."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks import domains, store, tracking
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


def stage_inputs(stage: str, domain: str) -> dict[str, Path]:
    """The files a stage reads (upstream outputs), whose content hashes tag its MLflow run."""
    p = store.domain_paths(domain)
    return {
        "ingest": {},
        "preprocess": {"raw": p.raw},
        "train": {"processed": p.processed},
        "compress": {"teacher": p.teacher},
        "evaluate": {"processed": p.processed, "teacher": p.teacher, "baselines": p.baselines,
                     "compressed": p.compressed},
        "register": {"metrics": p.reports / "metrics.json", "teacher": p.teacher, "compressed": p.compressed},
    }[stage]


def stage_outputs(stage: str, domain: str) -> list[Path]:
    """The files a stage writes (what DVC tracks as its outs; register writes the registry)."""
    p = store.domain_paths(domain)
    return {
        "ingest": [p.raw],
        "preprocess": [p.processed],
        "train": [p.teacher, p.baselines],
        "compress": [p.compressed, p.reports / "compress.json"],
        "evaluate": [p.reports / "metrics.json", p.reports / "report.md", p.reports / "plots"],
        "register": [p.reports / "registry.json"],
    }[stage]


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
    inputs = {name: store.content_hash(path) for name, path in stage_inputs(stage, domain).items()}
    lineage = tracking.lineage_tags(inputs, (tags or {}).get("prefect.flow_run_id"))
    with tracking.start_run(domain, stage, parent_run_id=parent_run_id, tags={**lineage, **(tags or {})}) as run:
        manifest = fn(domain, params, run)
        run.set_tags({f"output.{k}.md5": v for k, v in manifest.get("outputs", {}).items()})
        return manifest
