"""The stage table: one plain function per stage, the single implementation every entry point calls.

``ingest`` and ``preprocess`` are the domain's own: ``tasks/domains/<domain>/ingest.py``
and ``preprocess.py`` (the :mod:`tasks.domains` contract). ``train``, ``compress``,
``evaluate`` and ``register`` are generic modules that look the domain up. Each stage's
module is imported by name when the stage runs, so ``python -m tasks ingest netflow``
(what ``dvc repro`` calls) loads the code of that stage and what it imports, nothing
else; tests/unit/test_dvc_deps.py derives those modules from the imports and checks
that dvc.yaml lists each as a dependency of the stage.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks import domains, store, tracking
from tasks.params_base import STAGES

if TYPE_CHECKING:
    from tasks.params import Params

StageFunction = Callable[[str, "Params", Any], dict[str, Any]]

STAGE_MODULES: dict[str, str] = {"train": "tasks.train", "compress": "tasks.compress",
                                 "evaluate": "tasks.evaluate", "register": "tasks.register", "score": "tasks.score"}
"""The generic stages: stage name -> module holding a function of that name ``(domain, params, run)``
(``score``, run on demand and not by the pipeline, takes its input and output besides)."""
DOMAIN_STAGES = ("ingest", "preprocess")
"""The stages each domain implements itself, as ``tasks.domains.<domain>.<stage>.<stage>(params, run)``."""


class UnknownStageError(ValueError):
    pass


def stage_entry(stage: str, domain: str) -> str:
    """The module whose function of the stage's name runs ``stage`` for ``domain``."""
    if stage in DOMAIN_STAGES:
        return f"tasks.domains.{domain}.{stage}"
    return STAGE_MODULES[stage]


def stage_function(stage: str, domain: str) -> StageFunction:
    """The function of ``stage`` for ``domain``, called as ``fn(domain, params, run)``.

    Raises:
        UnknownStageError: names the stages.
    """
    if stage in DOMAIN_STAGES:
        fn = getattr(importlib.import_module(stage_entry(stage, domain)), stage)
        return lambda domain, params, run: fn(params, run)
    if stage not in STAGE_MODULES:
        raise UnknownStageError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    # Imported by name when the stage runs: a stage's process loads its own code only (fast CLI,
    # and the dvc.yaml deps of a stage are the modules it imports).
    return getattr(importlib.import_module(stage_entry(stage, domain)), stage)


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
    if stage not in STAGES:
        raise UnknownStageError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    domains.check(domain)  # validates the domain name before anything is opened
    fn = stage_function(stage, domain)
    if not track:
        return fn(domain, params, None)
    inputs = {name: store.content_hash(path) for name, path in stage_inputs(stage, domain).items()}
    lineage = tracking.lineage_tags(inputs, (tags or {}).get("prefect.flow_run_id"))
    with tracking.start_run(domain, stage, parent_run_id=parent_run_id, tags={**lineage, **(tags or {})}) as run:
        manifest = fn(domain, params, run)
        run.set_tags({f"output.{k}.md5": v for k, v in manifest.get("outputs", {}).items()})
        return manifest
