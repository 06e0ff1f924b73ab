"""Domain name -> the module holding that domain's ingest/preprocess and its hooks.

A domain module provides ``ingest(params, run)``, ``preprocess(params, run)``,
``load_schema()``, ``load_split(name, task)``, ``model_config(params, schema)`` and
``task_info(params, schema)``. Classification domains add ``fit_baselines(...)``,
``baseline_features(split)``, ``score_frame(model, meta, frame)``, ``scoring_input`` and
``key_columns``; a field domain (turbulence) adds ``evaluate_models`` and ``score_fields``
instead. The generic stages (train, compress, evaluate, register, score) call only these.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class UnknownDomainError(ValueError):
    pass


def get(domain: str) -> ModuleType:
    from tasks.params import DOMAINS

    if domain not in DOMAINS:
        raise UnknownDomainError(f"unknown domain {domain!r}; known domains: {', '.join(DOMAINS)}")
    return importlib.import_module(f"tasks.domains.{domain}")
