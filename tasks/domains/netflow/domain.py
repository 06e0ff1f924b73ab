"""The ``netflow`` domain's side of the contract (:mod:`tasks.domains`): what the generic stages call."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from tasks.domains import ClassificationDefaults, InputExample, LoadedModel, ScoringInput, TaskInfo
from tasks.domains.netflow import baselines, data, scoring
from tasks.domains.netflow.params import NetflowIngest
from tasks.domains.netflow.records import read_for_scoring

if TYPE_CHECKING:
    from tasks.params import Params


class NetflowDomain(ClassificationDefaults):
    """Flow-based intrusion detection: windows of consecutive flows, labelled by the last (FlowTransformer)."""

    name = "netflow"

    def load_split(self, name: str, task: str) -> data.FlowWindows:
        return data.load_split(name, task)

    def model_config(self, params: Params, schema: dict[str, Any]) -> dict[str, Any]:
        """The registry config of the model: params' config plus the data-dependent sizes."""
        p = params.train.netflow
        return {**p.model.config, "n_numeric": len(schema["numeric_fields"]),
                "categorical_levels": list(schema["categorical_levels"]), "window": schema["window"],
                "n_outputs": 1 if p.task == "binary" else len(schema["classes"])}

    def task_info(self, params: Params, schema: dict[str, Any]) -> TaskInfo:
        """Binary attack vs benign (or the attack family), windows in time order; families for per-family recall."""
        task = params.train.netflow.task
        return TaskInfo(
            task=task, class_names=["Benign", "Attack"] if task == "binary" else list(schema["classes"]),
            family_names=list(schema["classes"]), positive="attack", negative="benign", item="window",
            split_note="windows, the last rows in time order", baseline_kind="single-flow baseline",
            threshold=params.evaluate.netflow.threshold)

    def fit_baselines(self, params: Params, train: data.FlowWindows) -> dict[str, Any]:
        p = params.train.netflow
        schema = self.load_schema()
        return baselines.fit_baselines(p.baselines, train, len(schema["categorical_fields"]), p.baseline_max_rows,
                                       p.seed)

    def baseline_features(self, split: data.FlowWindows) -> np.ndarray:
        return baselines.baseline_features(split)

    def read_scoring_input(self, urls: list[str], ip: NetflowIngest, cache: Path) -> ScoringInput:
        """The records of ``urls`` read with the ingest spec ``ip.spec`` (same validation as ingest)."""
        return ScoringInput(read_for_scoring(urls, ip.spec, cache=cache, fmt=ip.format))

    def key_columns(self, ip: NetflowIngest) -> list[str]:
        """Input columns copied beside the predictions (``ingest.netflow.spec.keep_columns``)."""
        return list(ip.spec.keep_columns)

    def score_frame(self, loaded: LoadedModel, frame: pl.DataFrame) -> pl.DataFrame:
        return scoring.score_frame(loaded, frame)

    def input_example(self, loaded: LoadedModel) -> InputExample:
        return scoring.input_example(loaded)


DOMAIN = NetflowDomain()
