"""The ``preprocess`` stage of the ``finance`` domain: annotation candidates; cleaned, split and tokenized labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from safetensors.numpy import save_file
from sklearn.model_selection import train_test_split

from tasks import store
from tasks.domains.finance import augment, lexicon, text
from tasks.domains.finance.data import CLASSES, NAME
from tasks.domains.finance.encoder import load_tokenizer
from tasks.domains.finance.params import FinancePreprocess

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


def dedup_key(sentence: str) -> str:
    """What makes two sentences "the same": cleaned text, case-folded."""
    return text.clean(sentence).casefold()


def prepare_labels(labelled, pp: FinancePreprocess) -> tuple[Any, dict[str, int]]:
    """Cleaned, de-duplicated labelled sentences and what was dropped.

    Repeats are collapsed to their first occurrence; a sentence whose copies carry
    different labels is dropped altogether (counted as ``conflicting``), since either
    label would put a contradiction into training or test.
    """

    frame = labelled.with_columns(pl.col("sentence").map_elements(text.clean, return_dtype=pl.String))
    frame = frame.filter(pl.col("sentence") != "")
    stats = {"labelled": labelled.height, "empty_after_cleaning": labelled.height - frame.height}
    if not pp.dedup:
        return frame, {**stats, "duplicates": 0, "conflicting": 0}
    frame = frame.with_columns(pl.col("sentence").map_elements(dedup_key, return_dtype=pl.String).alias("_key"))
    per_key = frame.group_by("_key").agg(pl.col("label").n_unique().alias("_labels"))
    conflicting = per_key.filter(pl.col("_labels") > 1)["_key"]
    n_conf_rows = int(frame["_key"].is_in(conflicting.implode()).sum())
    kept = frame.filter(~pl.col("_key").is_in(conflicting.implode())).unique("_key", keep="first", maintain_order=True)
    return kept.drop("_key"), {**stats, "duplicates": frame.height - n_conf_rows - kept.height,
                               "conflicting": n_conf_rows}


def stratified_split(y: np.ndarray, test_fraction: float, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Row indices of ``train`` / ``val`` / ``test``: scikit-learn's stratified ``train_test_split`` twice.

    The first split is the paper's (``test_size`` 0.2, ``random_state`` 42, stratified);
    the validation set is then carved from the training part the same way.
    """

    counts = np.bincount(y, minlength=2)
    if (counts < 2).any():
        raise ValueError(f"the labelled sentences need at least 2 of each label for a stratified split; "
                         f"got {counts[0]} non-AI and {counts[1]} AI")
    idx = np.arange(len(y))
    try:
        train, test = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
        out = {"train": train, "test": test}
        if val_fraction > 0:
            out["train"], out["val"] = train_test_split(train, test_size=val_fraction, stratify=y[train],
                                                        random_state=seed)
    except ValueError as exc:  # too few sentences for the fractions: say which numbers
        raise ValueError(f"cannot split {len(y)} labelled sentences ({counts[0]} non-AI, {counts[1]} AI) with "
                         f"preprocess.finance.test_fraction={test_fraction} and val_fraction={val_fraction}: "
                         f"{exc}") from None
    return {k: np.sort(v) for k, v in out.items()}

def augment_part(part, pp: FinancePreprocess, held_out: list[str]) -> tuple[Any, dict[str, Any]]:
    """The training split with ``pp.augment``'s sentences appended and an ``origin`` column; the counts.

    Added rows hold only ``sentence``, ``label`` and ``origin`` (their other columns are null). The
    edge cases and ``held_out`` (validation and test sentences) are kept out, also a real training
    sentence equal to one of them in normalised text (see :mod:`.augment`).
    """
    sentences, labels, counts = augment.augment_training(part["sentence"].to_list(), part["label"].to_numpy(),
                                                         pp.augment, held_out)
    origin, real_kept = counts.pop("origin"), counts.pop("real_kept")
    n_real = len(real_kept)
    added = pl.DataFrame({"sentence": sentences[n_real:], "label": labels[n_real:]},
                         schema={"sentence": pl.String, "label": part.schema["label"]})
    added = added.with_columns(origin=pl.Series(origin[n_real:], dtype=pl.String))
    out = pl.concat([part[real_kept].with_columns(origin=pl.lit("real")), added], how="diagonal")
    return out, counts


def tokenize(tokenizer, sentences: list[str], max_length: int) -> dict[str, np.ndarray]:
    """``input_ids`` / ``attention_mask`` (N, L) int32, padded to the longest sentence (L <= max_length)."""
    if not sentences:
        return {"input_ids": np.zeros((0, 2), np.int32), "attention_mask": np.zeros((0, 2), np.int32)}
    enc = tokenizer(sentences, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return {"input_ids": enc["input_ids"].astype(np.int32), "attention_mask": enc["attention_mask"].astype(np.int32)}


def candidate_table(docs, pp: FinancePreprocess, seed: int):
    """The annotation export: seed-lexicon AI candidates and as many sampled non-candidates.

    Document sentences pass the reference's filter (``min_words``, ``min_letter_ratio``)
    and are de-duplicated first, as the sister notebook does. Columns: document,
    institution, year, sentence, candidate (1 = holds a seed term), matched_terms,
    label (empty, for the annotator).
    """

    empty = pl.DataFrame(schema={"document": pl.String, "institution": pl.String, "year": pl.Int64,
                                 "sentence": pl.String, "candidate": pl.Int64, "matched_terms": pl.String,
                                 "label": pl.String})
    if docs is None or docs.height == 0:
        return empty
    keep = [text.keep_sentence(s, pp.min_words, pp.min_letter_ratio) for s in docs["sentence"].to_list()]
    pool = docs.filter(pl.Series(keep, dtype=pl.Boolean))
    pool = pool.with_columns(pl.col("sentence").map_elements(dedup_key, return_dtype=pl.String).alias("_key"))
    pool = pool.unique("_key", keep="first", maintain_order=True).drop("_key")
    hit = lexicon.keyword_rule(pool["sentence"].to_list())
    ai = pool.filter(pl.Series(hit == 1))
    non = pool.filter(pl.Series(hit == 0))
    n = pp.candidates_per_class
    rng = np.random.default_rng(seed)
    if n is not None and ai.height > n:
        ai = ai[np.sort(rng.choice(ai.height, n, replace=False)).tolist()]
    k = min(non.height, ai.height if n is None else n)
    non = non[np.sort(rng.choice(non.height, k, replace=False)).tolist()] if k else non.head(0)
    both = pl.concat([ai.with_columns(candidate=pl.lit(1, pl.Int64)), non.with_columns(candidate=pl.lit(0, pl.Int64))])
    both = both.with_columns(
        matched_terms=pl.col("sentence").map_elements(lambda s: "; ".join(lexicon.matched_terms(s)),
                                                      return_dtype=pl.String),
        label=pl.lit(None, pl.String))
    return both.select(empty.columns)


def preprocess(params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """Candidates for annotation from the documents; cleaned, de-duplicated, split and tokenized labels.

    Outputs in ``data/processed/finance/`` (replaced atomically): ``candidates.csv``;
    with labelled sentences also ``{train,val,test}.parquet`` (text and metadata),
    ``{train,val,test}.safetensors`` (token ids, mask, label) and ``schema.json``.
    """

    pp = params.preprocess.finance
    paths = store.domain_paths(NAME)
    docs_file, labels_file = paths.raw / "documents.parquet", paths.raw / "labels.parquet"
    if not docs_file.exists() and not labels_file.exists():
        raise FileNotFoundError(f"{paths.raw} holds no ingested data: run ingest first (python -m tasks ingest finance)")
    docs = pl.read_parquet(docs_file) if docs_file.exists() else None
    with store.atomic_dir(paths.processed) as out:
        cands = candidate_table(docs, pp, pp.seed)
        store.atomic_write_text(out / "candidates.csv", cands.write_csv())
        schema: dict[str, Any] = {
            "domain": NAME, "classes": CLASSES, "encoder_dir": pp.encoder_dir, "max_length": pp.max_length,
            "candidates": {"ai": int((cands["candidate"] == 1).sum()), "non_ai": int((cands["candidate"] == 0).sum())},
        }
        if labels_file.exists():
            labelled, stats = prepare_labels(pl.read_parquet(labels_file), pp)
            y = labelled["label"].to_numpy()
            parts = stratified_split(y, pp.test_fraction, pp.val_fraction, pp.seed)
            tok = load_tokenizer(pp.encoder_dir)
            sizes = {}
            for name, idx in parts.items():
                part = labelled[idx.tolist()]
                if name == "train" and pp.augment.active:
                    held_out = [s for k, i in parts.items() if k != "train" for s in labelled[i.tolist()]["sentence"]]
                    part, schema["augment"] = augment_part(part, pp, held_out)
                part.write_parquet(out / f"{name}.parquet")
                arrays = tokenize(tok, part["sentence"].to_list(), pp.max_length)
                save_file({**arrays, "y": part["label"].to_numpy().astype(np.int64)}, str(out / f"{name}.safetensors"))
                sizes[name] = {"n": part.height, "ai": int(part["label"].sum()),
                               "truncated": int((arrays["attention_mask"].sum(1) >= pp.max_length).sum())}
            schema.update(dedup=stats, splits=sizes, has_year="year" in labelled.columns
                          and labelled["year"].is_not_null().any(), seed=pp.seed)
        else:
            schema["note"] = (f"no labelled sentences: annotate {paths.processed / 'candidates.csv'} (label 0/1) and "
                              "set ingest.finance.labels to it")
        store.atomic_write_json(out / "schema.json", schema)
        manifest = {"stage": "preprocess", "domain": NAME, **{k: v for k, v in schema.items() if k != "domain"},
                    "outputs": {"processed": "see schema.json"}}
    manifest["outputs"] = {"processed": store.content_hash(paths.processed)}
    if run is not None:
        run.log_params({"test_fraction": pp.test_fraction, "val_fraction": pp.val_fraction, "seed": pp.seed,
                        "max_length": pp.max_length, "encoder_dir": str(pp.encoder_dir)})
        run.log_metrics({f"{k}_sentences": v["n"] for k, v in schema.get("splits", {}).items()})
    return manifest
