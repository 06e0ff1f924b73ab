"""The ``finance`` domain's side of the contract (:mod:`tasks.domains`): what the generic stages call."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from torch import nn

import models
from tasks import store
from tasks.domains import ClassificationDefaults, InputExample, LoadedModel, ScoringInput, TaskInfo
from tasks.domains.finance import baselines, data, encoder, report, scoring, sentences
from tasks.domains.finance import baselines as saved_baselines  # extra_train's argument is named baselines
from tasks.domains.finance.edge_cases import EDGE_CASES
from tasks.domains.finance.params import FinanceIngest
from tasks.domains.finance.sources import KEY_COLUMNS

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


class FinanceDomain(ClassificationDefaults):
    """AI-disclosure detection in annual-report sentences (FinAI-BERT): a fine-tuned BERT-family encoder."""

    name = "finance"
    score_input_expands_itself = True
    """The score input may be a file, folder, glob or fsspec URL of documents (:func:`.sources.expand_documents`)."""

    def load_split(self, name: str, task: str) -> data.Sentences:
        return data.load_split(name, task)

    def model_config(self, params: Params, schema: dict[str, Any]) -> dict[str, Any]:
        """Registry config: params' config plus the encoder's architecture and the tokenizer's length."""
        return {**params.train.finance.model.config, "encoder": encoder.encoder_config(schema["encoder_dir"]),
                "max_length": int(schema["max_length"]), "n_outputs": len(data.CLASSES)}

    def build_model(self, params: Params, schema: dict[str, Any]) -> nn.Module:
        """The encoder classifier, with the pre-trained encoder weights handed to it (unless ``pretrained: false``)."""
        p = params.train.finance
        model = models.build(f"{self.name}/{p.model.arch}", self.model_config(params, schema))
        if p.pretrained:
            model.load_encoder_state(encoder.pretrained_state(schema["encoder_dir"]))
        return model

    def save_assets(self, folder: Path, schema: dict[str, Any]) -> None:
        """The tokenizer travels with the model folder, so a registered model scores raw sentences on its own."""
        encoder.save_tokenizer(schema["encoder_dir"], folder)

    def task_info(self, params: Params, schema: dict[str, Any]) -> TaskInfo:
        pp = params.preprocess.finance
        return TaskInfo(
            task="multiclass", class_names=list(data.CLASSES), positive="AI", negative="non-AI", item="sentence",
            split_note=f"sentences: stratified {pp.test_fraction:.0%} hold-out (seed {pp.seed}), "
                       "no sentence on both sides",
            baseline_kind="TF-IDF / lexicon baseline", threshold=params.evaluate.finance.threshold,
            table_columns=["accuracy", "precision", "recall", "f1", "roc_auc", "brier", "latency_ms",
                           "throughput_per_s", "bytes", "parameters"])

    def fit_baselines(self, params: Params, train: data.Sentences) -> dict[str, Any]:
        """TF-IDF + LR / NB / RF and the keyword rule on the training sentences (:mod:`.baselines`)."""
        p = params.train.finance
        return baselines.fit_baselines(p.baselines, train.text, train.labels, p.seed)

    def baseline_features(self, split: data.Sentences) -> np.ndarray:
        """The baselines read raw sentences: (N,) object array of str."""
        return split.text

    def extra_train(self, params: Params, out: Path, run: StageRun | None,
                    baselines: dict[str, Any]) -> dict[str, Any]:
        """Score the edge-case set with the fitted baselines (evaluate adds the encoders): ``edge_cases.parquet``;
        keep the fitted baselines for ``score --sentences --model <name>``: ``models/`` (:func:`.baselines.save_fitted`)."""
        saved_baselines.save_fitted(baselines, out)
        cols: dict[str, Any] = {"group": [e.group for e in EDGE_CASES], "sentence": [e.sentence for e in EDGE_CASES],
                                "label": [e.label for e in EDGE_CASES]}
        for name, est in baselines.items():
            cols[name] = est.predict_proba(np.asarray(cols["sentence"], dtype=object))[:, 1]
        pl.DataFrame(cols).write_parquet(out / "edge_cases.parquet")
        return {}

    def extra_evaluate(self, params: Params, result: dict[str, Any], plots_dir: Path,
                       scores: dict[str, tuple[np.ndarray, np.ndarray]],
                       models: dict[str, LoadedModel]) -> tuple[str, list[str]]:
        """FinAI-BERT's checks (models.md 3.5-3.6): calibration, per-year slices, length bias, edge cases,
        attributions. Adds ``result["finance"]``."""
        return report.evaluate_extras(params, result, plots_dir, scores, models)

    def read_scoring_input(self, urls: list[str], ip: FinanceIngest, cache: Path) -> ScoringInput:
        return scoring.read_scoring_input(urls, ip, cache)

    def read_sentences(self, source: str, text_column: str | None, label_column: str | None, ip: FinanceIngest,
                       cache: Path) -> ScoringInput:
        """Single sentences to score (``score --sentences``): a TXT file, one a line, or a CSV/TSV/Parquet column
        (:func:`.sentences.read_sentences`)."""
        return sentences.read_sentences(source, text_column, label_column, cache, retries=ip.retries,
                                        delay_s=ip.retry_delay_s)

    def sentence_baselines(self) -> list[str]:
        """The baselines the train stage saved (``artifacts/finance/baselines/models/``): ``score --model`` names."""
        return baselines.saved_names(store.domain_paths(self.name).baselines)

    def load_sentence_baseline(self, name: str) -> tuple[Any, dict[str, Any]]:
        """A saved baseline by name as ``(predict_p, record)``: ``predict_p(sentences) -> (N,) P(AI)``, and what
        the manifest records of it (its file and SHA-256).

        Raises:
            baselines.UnknownBaselineError: no such saved baseline (lists the saved ones).
        """
        folder = store.domain_paths(self.name).baselines
        est, digest = baselines.load_fitted(name, folder)
        file = folder / baselines.SAVED_DIR / ("keyword.json" if name == "keyword" else f"{name}.skops")

        def predict_p(texts: list[str]) -> np.ndarray:
            return est.predict_proba(np.asarray(texts, dtype=object))[:, 1]

        return predict_p, {"baseline": name, "baseline_file": str(file), "baseline_sha256": digest}

    def key_columns(self, ip: FinanceIngest) -> list[str]:
        return list(KEY_COLUMNS)

    def score_frame(self, loaded: LoadedModel, frame: pl.DataFrame) -> pl.DataFrame:
        return scoring.score_frame(loaded, frame)

    def input_example(self, loaded: LoadedModel) -> InputExample:
        return scoring.input_example(loaded)

    def score_summary(self, out: pl.DataFrame, notes: dict[str, Any],
                      output: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Per-document table (``<stem>.documents.csv``), AI-disclosure intensity plot and a short report."""
        return report.scoring_summary(out, notes, output)


DOMAIN = FinanceDomain()
