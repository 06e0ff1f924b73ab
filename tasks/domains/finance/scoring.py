"""Scoring annual reports with a trained ``finance`` model: every sentence's P(AI disclosure).

:func:`read_scoring_input` reads the documents (bad ones, and ones over a cap of
``ingest.finance.limits``, skipped and named) into sentences; :func:`score_frame` is what
the registered pyfunc runs on them; :func:`sentence_probs` is the one place sentences become
P(AI) (the evaluate stage's edge cases use it too).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import polars as pl
from torch import nn

from tasks import store
from tasks.domains import InputExample, LoadedModel, ScoringInput
from tasks.domains.finance import text
from tasks.domains.finance.data import NAME, Sentences
from tasks.domains.finance.encoder import TOKENIZER_DIR, folder_tokenizer
from tasks.domains.finance.params import FinanceIngest, FinancePreprocess
from tasks.domains.finance.preprocess import tokenize
from tasks.domains.finance.sources import (
    LabelsError,
    NoDocumentsError,
    expand_documents,
    read_documents,
    read_metadata,
)
from tasks.loop import predict, probabilities


def read_scoring_input(urls: list[str], ip: FinanceIngest, cache: Path) -> ScoringInput:
    """Sentences of the documents to score, plus notes for the summary.

    Untrusted documents get ingest's protections (:func:`read_documents` with ``ip.limits``):
    a document that cannot be read or is over a cap is skipped and listed in ``notes["skipped"]``
    with the reason, whatever ``on_bad_document`` says, and the others are scored.

    Raises:
        NoDocumentsError: no document yields a sentence to score (the reasons are listed).
    """
    pp_filter = FinancePreprocess()
    doc_urls, sidecars = expand_documents(urls[0] if len(urls) == 1 else urls, retries=ip.retries,
                                          delay_s=ip.retry_delay_s)
    sidecar: dict = {}
    for m in sidecars:
        sidecar.update(read_metadata(store.fetch_to_cache(m, cache, retries=ip.retries, delay_s=ip.retry_delay_s), m))
    frame, skipped = read_documents(doc_urls, ip.model_copy(update={"on_bad_document": "skip"}), cache=cache,
                                    sidecar=sidecar)
    # Headings, table rows and fragments are not sentences to classify: the reference's filter.
    keep = [text.keep_sentence(s, pp_filter.min_words, pp_filter.min_letter_ratio) for s in frame["sentence"]]
    frame = frame.filter(pl.Series(keep, dtype=pl.Boolean))
    if frame.height == 0:
        raise NoDocumentsError(f"{urls[0] if len(urls) == 1 else urls}: no readable sentence in "
                               f"{len(doc_urls)} document(s)" + (": " + "; ".join(s["reason"] for s in skipped)
                                                                 if skipped else ""))
    return ScoringInput(frame, {"documents": doc_urls, "skipped": skipped})


@functools.lru_cache(maxsize=8)
def _cached_tokenizer(folder: str, stamp: tuple):
    return folder_tokenizer(Path(folder))


def _tokenizer(folder: str):
    """The model folder's tokenizer, loaded once per folder and version of its files (a retrained folder reloads)."""
    files = sorted((Path(folder) / TOKENIZER_DIR).glob("*"))
    return _cached_tokenizer(folder, tuple((f.name, f.stat().st_mtime_ns) for f in files))


CHARS_PER_TOKEN = 101
"""Characters one token of a cleaned sentence can span at most: a word (up to 100 characters; a longer one is one
unknown token) and the space after it."""


def scoring_text(sentence: str, max_length: int) -> str:
    """``sentence`` cleaned and cut to what truncation to ``max_length`` tokens can keep.

    A "sentence" of an untrusted document can be millions of characters without a full stop;
    the tokenizer would split all of it before truncating (seconds and hundreds of MB per
    sentence). Cut at ``max_length * CHARS_PER_TOKEN`` characters, the kept tokens are the
    same unless the sentence's words run over 100 characters.
    """
    return text.clean(sentence or "")[:max_length * CHARS_PER_TOKEN]


def sentence_probs(model: nn.Module, tokenizer, sentences: list[str], max_length: int) -> np.ndarray:
    """P(AI) of each sentence (cleaned, cut to what truncation keeps, tokenized, scored in batches of similar
    length). (N,) float64."""
    sentences = [scoring_text(s, max_length) for s in sentences]
    if not sentences:
        return np.zeros(0)
    enc = tokenize(tokenizer, sentences, max_length)
    # Sort by length so each batch is cut to similar lengths, then restore the order.
    order = np.argsort(enc["attention_mask"].sum(1), kind="stable")
    sorted_data = Sentences(enc["input_ids"][order], enc["attention_mask"][order],
                            np.zeros(len(sentences), np.int64), sentences)
    probs = np.empty(len(sentences))
    probs[order] = probabilities(predict(model, sorted_data, 64), "multiclass")[:, 1]
    return probs


def score_frame(loaded: LoadedModel, frame: pl.DataFrame) -> pl.DataFrame:
    """P(AI disclosure) of every sentence in ``frame["sentence"]``, with the tokenizer the model folder carries.

    Returns:
        polars DataFrame: ``p_ai`` and ``prediction`` (1 = AI disclosure at 0.5), one row per input row.
    """
    if "sentence" not in frame.columns:
        raise LabelsError(f"input to score: needs a 'sentence' column, got {frame.columns}")
    probs = sentence_probs(loaded.model, _tokenizer(str(loaded.folder)), frame["sentence"].to_list(),
                           int(loaded.meta["config"]["max_length"]))
    return pl.DataFrame({"p_ai": probs, "prediction": (probs >= 0.5).astype(np.int64)})


def input_example(loaded: LoadedModel, rows: int = 4) -> InputExample:
    """The first ``rows`` sentences of the test split (``data/processed/finance/test.parquet``)."""
    path = store.domain_paths(NAME).processed / "test.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: the registered model's input example is read from it; "
                                "run preprocess first (python -m tasks preprocess finance)")
    return InputExample(pl.read_parquet(path, columns=["sentence"]).head(rows).to_pandas())
