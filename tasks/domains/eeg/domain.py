"""The ``eeg`` domain's side of the contract (:mod:`tasks.domains`): what the generic stages call."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from safetensors.numpy import load_file

from tasks import store
from tasks.domains import ClassificationDefaults, InputExample, LoadedModel, ScoringInput, TaskInfo
from tasks.domains.eeg import data, scoring
from tasks.domains.eeg.params import EEGIngest
from tasks.domains.eeg.runner import protocol_report, run_protocol, save_protocol

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


class EEGDomain(ClassificationDefaults):
    """Motor-imagery and seizure decoding from EEG epochs (DBConformer), with the reference's evaluation protocols."""

    name = "eeg"
    score_per_input_row = False
    """One output row per epoch (not per input row): the scoring input is a table of recording paths."""
    score_input_expands_itself = True
    """The score input may be a file, folder, glob, fsspec URL or zip (:func:`.sources.fetch_sources` expands it)."""

    def load_split(self, name: str, task: str) -> data.Trials:
        return data.load_split(name, task)

    def model_config(self, params: Params, schema: dict[str, Any]) -> dict[str, Any]:
        return data.model_config(params, schema)

    def task_info(self, params: Params, schema: dict[str, Any]) -> TaskInfo:
        """Epoch classes (the last is the positive one of the binary metrics), the deployment split."""
        classes = list(schema["classes"])
        return TaskInfo(task="multiclass", class_names=classes, positive=classes[-1], negative=classes[0],
                        item="epoch",
                        split_note="epochs: per subject and class the last trials (deployment split"
                                   + (", online Euclidean alignment)" if schema.get("ea") else ", no alignment)"))

    def extra_train(self, params: Params, out: Path, run: StageRun | None,
                    baselines: dict[str, Any]) -> dict[str, Any]:
        """The evaluation protocol (:func:`.runner.run_protocol`) on ``data/processed/eeg``: every model x seed x
        fold, saved beside the baselines as ``protocol.parquet`` (every test prediction) and ``protocol.json``.
        EEG has no scikit-learn baselines (``baselines`` is empty): its baselines are the protocol's models."""
        pr = params.train.eeg.protocol
        if not pr.enabled:
            return {}
        paths = store.domain_paths(self.name)
        meta = pl.read_parquet(paths.processed / "meta.parquet")
        x = load_file(str(paths.processed / "epochs.safetensors"))["x"]
        columns, info = run_protocol(params, x, meta["subject"].to_numpy().astype(str), meta["label"].to_numpy(),
                                     meta["group"].to_numpy(), data.load_schema())
        save_protocol(columns, info, out)
        if run is not None:
            run.log_metrics({f"protocol.seconds.{k}": v for k, v in info["seconds"].items()})
        return {"protocol_fits": len(info["folds"]) * len(pr.seeds) * len(info["variants"]),
                "protocol_seconds": info["seconds"]}

    def extra_evaluate(self, params: Params, result: dict[str, Any], plots_dir: Path,
                       scores: dict[str, tuple[np.ndarray, np.ndarray]],
                       models: dict[str, LoadedModel]) -> tuple[str, list[str]]:
        """Protocol summary, per-subject table, bar plot, EA ablation and the channel-attention topomap
        (the protocol has its own predictions; ``scores`` and ``models`` are not needed). Adds
        ``result["protocol"]``."""
        return protocol_report(params, result, plots_dir)

    def read_scoring_input(self, urls: list[str], ip: EEGIngest, cache: Path) -> ScoringInput:
        return scoring.read_scoring_input(urls, ip, cache)

    def score_frame(self, loaded: LoadedModel, frame: pl.DataFrame) -> pl.DataFrame:
        return scoring.score_frame(loaded, frame)

    def input_example(self, loaded: LoadedModel) -> InputExample | None:
        return scoring.input_example(loaded)


DOMAIN = EEGDomain()
