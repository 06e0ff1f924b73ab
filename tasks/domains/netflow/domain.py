"""The ``netflow`` domain's side of the contract (:mod:`tasks.domains`): what the generic stages call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from tasks.domains import ClassificationDefaults, InputExample, LoadedModel, ScoringInput, TaskInfo
from tasks.domains.netflow import baselines, data, scoring, threshold
from tasks.domains.netflow.params import NetflowIngest
from tasks.domains.netflow.records import read_for_scoring
from tasks.loop import load_model

if TYPE_CHECKING:
    from tasks.params import Params


@dataclass(frozen=True)
class NetflowTaskInfo(TaskInfo):
    """TaskInfo plus the rule that sets the decision threshold (``train.netflow.threshold``).

    The train stage writes the TaskInfo into the teacher's ``config.json``; :meth:`NetflowDomain.save_assets`
    then reads the rule there and records the threshold it picks on validation (:mod:`.threshold`).
    """

    threshold_rule: float | str | None = None


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
        return NetflowTaskInfo(
            task=task, class_names=["Benign", "Attack"] if task == "binary" else list(schema["classes"]),
            family_names=list(schema["classes"]), positive="attack", negative="benign", item="window",
            split_note=schema.get("split", {}).get("note", "windows, the last rows in time order"), baseline_kind="single-flow baseline",
            threshold=params.evaluate.netflow.threshold, threshold_rule=params.train.netflow.threshold)

    def save_assets(self, folder: Path, schema: dict[str, Any]) -> None:
        """The teacher's decision threshold, chosen on the validation split (:func:`.threshold.calibrate`).

        The train stage calls this right after writing the weights and ``config.json``; the threshold is part of
        what the folder needs to be served (the pyfunc applies it), so it is recorded there.
        """
        model, _ = load_model(folder)
        threshold.calibrate(folder, model)

    def calibrate(self, folder: Path, model: Any) -> dict[str, Any] | None:
        """A compressed variant's own threshold, chosen on validation like the teacher's (the compress stage's
        hook, called with the variant it just wrote)."""
        return threshold.calibrate(folder, model)

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
