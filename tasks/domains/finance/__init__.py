"""The ``finance`` domain: AI-disclosure detection in bank annual reports (FinAI-BERT, models.md section 3).

Data path:

* **ingest** reads two kinds of source, each optional but not both absent:

  - *documents* (``ingest.finance.source``): annual reports as ``.txt``, ``.html`` /
    ``.htm`` and ``.pdf`` (files, folders, globs, any fsspec URL). Text comes from
    :mod:`tasks.domains.finance.text` (stdlib HTML parser without scripts / styles / navigation /
    tables, pypdf for PDFs), is cleaned and split into sentences offline. Institution and
    year come from a sidecar CSV (``file,institution,year``) or from the file name by
    ``name_pattern``. A document that cannot be read (corrupt or encrypted PDF, empty,
    undecodable, HTML with nothing but scripts) is skipped, counted and named in the
    manifest while the others are read (``on_bad_document: error`` stops instead).
  - *labelled sentences* (``ingest.finance.labels``): CSV / Parquet with
    ``sentence,label`` (0/1) and optional metadata (``institution``, ``year``, ``file``).
    A missing column or a label outside {0, 1} is an error naming the file and rows.

  The offline default writes the synthetic corpus (:mod:`tasks.domains.finance.synthetic`) and
  reads it with the same readers; its ground-truth ``labels.csv`` is the labelled source.
  Outputs ``data/raw/finance/{documents,labels}.parquet`` and ``manifest.json``.
* **preprocess** cleans the labelled sentences (NFKC, whitespace), drops repeats
  (case-insensitive, so no sentence lands on both sides of the split; sentences whose
  copies disagree on the label are dropped and counted), splits them stratified 80/20
  with seed 42 as the paper (and 10 % of the training part, stratified, as the validation
  set that picks the best epoch by F1), and tokenizes each split with the encoder's
  WordPiece tokenizer (max length 128). From the documents it exports
  ``candidates.csv`` for annotation: the seed-lexicon AI candidates (after the
  reference's >= 5 words / letter ratio >= 0.5 filter, de-duplicated) and as many sampled
  non-candidates, with an empty ``label`` column. Annotated, that file is a valid
  ``ingest.finance.labels`` source.

Model and stages: the shared train loop fine-tunes :mod:`models.text_encoder` with the
paper's recipe; the baselines are :mod:`tasks.domains.finance.baselines`; evaluation adds the
paper's robustness and interpretability checks (:func:`extra_evaluate`); scoring reads
documents and writes every sentence's P(AI) plus a per-document table and plot
(:func:`score_summary`).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tasks import store
from tasks.domains.finance import lexicon, text
from tasks.params import FinanceIngest, FinancePreprocess, LabelSpec, Params

DOMAIN = "finance"
CLASSES = ["non-AI", "AI"]
DOC_SUFFIXES = (".txt", ".html", ".htm", ".pdf")
DOC_COLUMNS = ["document", "institution", "year", "format", "sentence_id", "sentence"]
KEY_COLUMNS = ["document", "institution", "year", "sentence_id", "sentence"]
META_COLUMNS = ("document", "institution", "year", "kind", "section")
"""Optional columns carried from a labelled source to the splits (``file`` is read as ``document``)."""


class LabelsError(ValueError):
    """A labelled-sentence file does not match ``ingest.finance.spec``; names the file, columns and rows."""


class NoDocumentsError(ValueError):
    """No readable document was found (every one was missing, unsupported or bad)."""


# ============================================================================ sources
def _fetch(url: str, cache: Path, retries: int, delay_s: float) -> Path:
    """A local path for ``url``: local paths as they are, remote files copied into ``cache``."""
    import shutil

    import fsspec

    if not store.is_remote(url):
        return Path(url.removeprefix("file://"))
    name = Path(url.split("::")[-1].split("?")[0]).name
    out = cache / name
    i = 0
    while out.exists():
        i += 1
        out = cache / f"{i}-{name}"

    def fetch() -> Path:
        with fsspec.open(url, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 22)
        return out

    return store.retry(fetch, retries=retries, delay_s=delay_s, what=f"reading {url}")


def expand_documents(sources: str | list[str], *, retries: int = 0, delay_s: float = 0.0) -> tuple[list[str], list[str]]:
    """Document URLs of ``sources`` (files, folders, globs, URLs) and the ``metadata.csv`` sidecars found beside them.

    A folder contributes its ``.txt`` / ``.html`` / ``.htm`` / ``.pdf`` files (not recursive,
    other files ignored); a file named explicitly is kept whatever its suffix, so an
    unsupported one is reported as a bad document instead of vanishing.

    Raises:
        FileNotFoundError: a source matches nothing.
    """
    import fsspec

    urls: list[str] = []
    sidecars: list[str] = []
    for src in [sources] if isinstance(sources, str) else list(sources):
        fs, _, paths = fsspec.get_fs_token_paths(src)
        if not any(ch in src for ch in "*?[") and paths and fs.isdir(paths[0]):
            listing = sorted(fs.ls(paths[0], detail=False))
            docs = [p for p in listing if Path(p).suffix.lower() in DOC_SUFFIXES]
            if not docs:
                raise FileNotFoundError(f"{src}: the folder holds no .txt, .html, .htm or .pdf document")
            proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
            local = proto in ("file", "local")
            urls += [p if local else fs.unstrip_protocol(p) for p in docs]
            meta = [p for p in listing if Path(p).name == "metadata.csv"]
            sidecars += [m if local else fs.unstrip_protocol(m) for m in meta]
            continue
        found = store.retry(lambda s=src: store.expand_urls(s), retries=retries, delay_s=delay_s,
                            what=f"ingest.finance.source {src}")
        urls += [u for u in found if Path(u).name != "metadata.csv"]
        sidecars += [u for u in found if Path(u).name == "metadata.csv"]
    return urls, sidecars


def read_metadata(path: Path, display: str) -> dict[str, tuple[str | None, int | None]]:
    """``file -> (institution, year)`` from a sidecar CSV ``file,institution,year``."""
    import polars as pl

    frame = pl.read_csv(path, infer_schema=False)
    missing = [c for c in ("file", "institution", "year") if c not in frame.columns]
    if missing:
        raise LabelsError(f"{display}: metadata CSV lacks columns {missing} (has {frame.columns})")
    out = {}
    for i, (f, inst, year) in enumerate(frame.select("file", "institution", "year").iter_rows(), start=2):
        try:
            out[Path(str(f)).name] = (inst, int(year) if year not in (None, "") else None)
        except ValueError:
            raise LabelsError(f"{display}: line {i}: year {year!r} is not a whole number") from None
    return out


def document_metadata(name: str, sidecar: dict, pattern: str) -> tuple[str | None, int | None]:
    """Institution and year of the document file ``name``: the sidecar first, else ``pattern`` on the stem."""
    if name in sidecar:
        return sidecar[name]
    m = re.match(pattern, Path(name).stem)
    if m is None:
        return None, None
    groups = m.groupdict()
    year = groups.get("year")
    return groups.get("institution"), int(year) if year else None


def read_documents(urls: list[str], ip: FinanceIngest, *, cache: Path, sidecar: dict | None = None,
                   progress: bool = True) -> tuple[Any, list[dict[str, str]]]:
    """Sentences of every readable document, and the documents skipped with the reason.

    Returns:
        ``(frame, skipped)``: a polars frame with :data:`DOC_COLUMNS` (document order,
        ``sentence_id`` from 0 per document) and ``[{"file", "reason"}]``.

    Raises:
        text.DocumentError: a document is bad and ``ip.on_bad_document`` is ``error``.
    """
    import polars as pl
    from tqdm.auto import tqdm

    sidecar = sidecar or {}
    rows: dict[str, list] = {c: [] for c in DOC_COLUMNS}
    skipped: list[dict[str, str]] = []
    for url in tqdm(urls, desc="finance documents", unit="doc", disable=None if progress else True, leave=False):
        name = Path(url.split("?")[0]).name
        try:
            local = _fetch(url, cache, ip.retries, ip.retry_delay_s)
            sentences = text.document_sentences(text.read_text(local, ip.encoding))
            if not sentences:
                raise text.DocumentError(f"{name}: no sentence could be extracted")
        except (text.DocumentError, OSError) as exc:
            if ip.on_bad_document == "error":
                raise text.DocumentError(f"{url}: {exc}") from None
            skipped.append({"file": url, "reason": str(exc)})
            continue
        inst, year = document_metadata(name, sidecar, ip.name_pattern)
        n = len(sentences)
        rows["document"] += [name] * n
        rows["institution"] += [inst] * n
        rows["year"] += [year] * n
        rows["format"] += [Path(name).suffix.lower().lstrip(".")] * n
        rows["sentence_id"] += list(range(n))
        rows["sentence"] += sentences
    frame = pl.DataFrame(rows, schema={"document": pl.String, "institution": pl.String, "year": pl.Int64,
                                       "format": pl.String, "sentence_id": pl.Int64, "sentence": pl.String})
    return frame, skipped


def read_labels(path: Path, spec: LabelSpec, display: str, sidecar: dict | None = None,
                name_pattern: str | None = None):
    """Validated labelled sentences: ``sentence``, ``label`` (0/1) and the optional :data:`META_COLUMNS`.

    Raises:
        LabelsError: unreadable / empty file, missing columns, empty sentences or labels outside {0, 1};
            the message names the file, the column and (up to five) offending lines.
    """
    import polars as pl

    fmt = spec.format
    if fmt == "auto":
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    try:
        if path.stat().st_size == 0:
            raise LabelsError(f"{display}: the file is empty (0 bytes)")
        frame = pl.read_parquet(path) if fmt == "parquet" else pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.NoDataError, pl.exceptions.ComputeError, OSError) as exc:
        raise LabelsError(f"{display}: cannot read labelled sentences: {exc}") from None
    missing = [c for c in (spec.sentence_column, spec.label_column) if c not in frame.columns]
    if missing:
        raise LabelsError(f"{display}: missing required column(s) {missing} (ingest.finance.spec); "
                          f"the file has columns {frame.columns}")
    if frame.height == 0:
        raise LabelsError(f"{display}: no labelled rows (header only)")
    first_line = 2 if fmt == "csv" else 0  # CSV: line 1 is the header; Parquet: row index

    def where(mask: np.ndarray) -> str:
        idx = np.flatnonzero(mask)
        shown = ", ".join(str(int(i) + first_line) for i in idx[:5])
        return f"{'line' if fmt == 'csv' else 'row'}{'s' if len(idx) > 1 else ''} {shown}" + (
            f" and {len(idx) - 5} more" if len(idx) > 5 else "")

    sent = frame[spec.sentence_column].cast(pl.String)
    empty = (sent.is_null() | (sent.str.strip_chars() == "")).to_numpy()
    if empty.any():
        raise LabelsError(f"{display}: column {spec.sentence_column!r} is empty at {where(empty)}")
    raw = frame[spec.label_column].cast(pl.String).str.strip_chars()
    parsed = raw.cast(pl.Float64, strict=False)
    bad = (parsed.is_null() | ~parsed.is_in([0.0, 1.0])).to_numpy()
    if bad.any():
        first = raw.to_list()[int(np.flatnonzero(bad)[0])]
        raise LabelsError(f"{display}: column {spec.label_column!r} must be 0 or 1; got {first!r} at {where(bad)}")
    out = {"sentence": sent, "label": parsed.cast(pl.Int64)}
    cols = {c.lower(): c for c in frame.columns}
    if "document" not in cols and "file" in cols:
        cols["document"] = cols["file"]
    for c in META_COLUMNS:
        if c in cols and cols[c] not in (spec.sentence_column, spec.label_column):
            out[c] = frame[cols[c]].cast(pl.String)
    labelled = pl.DataFrame(out)
    if "year" in labelled.columns:
        year = labelled["year"].cast(pl.Int64, strict=False)
        bad_year = (year.is_null() & labelled["year"].is_not_null()).to_numpy()
        if bad_year.any():
            raise LabelsError(f"{display}: column 'year' is not a whole number at {where(bad_year)}")
        labelled = labelled.with_columns(year=year)
    elif "document" in labelled.columns and (sidecar or name_pattern):
        # The synthetic ground truth (and any export of candidates) names the file: take its metadata.
        meta = [document_metadata(Path(d).name, sidecar or {}, name_pattern or "(?!)") if d else (None, None)
                for d in labelled["document"].to_list()]
        labelled = labelled.with_columns(
            pl.Series("institution", [m[0] for m in meta], pl.String) if "institution" not in labelled.columns
            else pl.col("institution"),
            pl.Series("year", [m[1] for m in meta], pl.Int64))
    return labelled


# ============================================================================ ingest
def ingest(params: Params, run=None) -> dict[str, Any]:
    """Read the documents and / or labelled sentences (or generate the synthetic corpus) into ``data/raw/finance``.

    The folder is replaced atomically: a failure leaves the previous contents untouched.

    Returns:
        The manifest: sources, documents read and skipped (with reasons), sentences, label counts.
    """

    ip = params.ingest.finance
    paths = store.domain_paths(DOMAIN)
    with store.atomic_dir(paths.raw) as out, tempfile.TemporaryDirectory(dir=out) as tmp:
        cache = Path(tmp)
        labels_url = ip.labels
        if ip.source == "synthetic":
            from tasks.domains.finance.synthetic import generate

            s = ip.synthetic
            gen = generate(out / "source", n_institutions=s.n_institutions, years=tuple(s.years), seed=s.seed,
                           pdf_fraction=s.pdf_fraction, html_fraction=s.html_fraction)
            doc_urls, sidecars = list(gen["files"]), [gen["metadata"]]
            labels_url = labels_url or gen["labels"]
            fingerprint: Any = {"synthetic": s.model_dump()}
            shown = [str((paths.raw / Path(f).relative_to(out)).relative_to(paths.root)) for f in doc_urls]
        elif ip.source is not None:
            doc_urls, sidecars = expand_documents(ip.source, retries=ip.retries, delay_s=ip.retry_delay_s)
            fingerprint = [store.source_fingerprint(u) for u in doc_urls[:1000]]
            shown = doc_urls
        else:
            doc_urls, sidecars, fingerprint, shown = [], [], None, []
        sidecar: dict = {}
        for m in ([ip.metadata] if ip.metadata else sidecars):
            sidecar.update(read_metadata(_fetch(m, cache, ip.retries, ip.retry_delay_s), m))
        docs, skipped = read_documents(doc_urls, ip, cache=cache, sidecar=sidecar)
        if doc_urls and docs.height == 0:
            raise NoDocumentsError(f"{ip.source}: no readable document among {len(doc_urls)}: "
                                   + "; ".join(s["reason"] for s in skipped[:5]))
        docs.write_parquet(out / "documents.parquet")
        manifest: dict[str, Any] = {
            "stage": "ingest", "domain": DOMAIN, "source": ip.source, "files": shown, "fingerprint": fingerprint,
            "documents": docs["document"].n_unique() if docs.height else 0, "document_sentences": docs.height,
            "skipped": [{"file": (s["file"] if ip.source != "synthetic" else Path(s["file"]).name),
                         "reason": s["reason"]} for s in skipped],
        }
        if labels_url is not None:
            local = _fetch(labels_url, cache, ip.retries, ip.retry_delay_s)
            shown_labels = (str((paths.raw / local.relative_to(out)).relative_to(paths.root))
                            if ip.source == "synthetic" and ip.labels is None else labels_url)
            labelled = read_labels(local, ip.spec, labels_url, sidecar, ip.name_pattern)
            labelled.write_parquet(out / "labels.parquet")
            counts = labelled["label"].value_counts().sort("label")
            manifest.update(labels=shown_labels, labelled_sentences=labelled.height,
                            label_counts={CLASSES[k]: int(n) for k, n in counts.iter_rows()},
                            labels_fingerprint=None if ip.source == "synthetic" and ip.labels is None
                            else store.source_fingerprint(labels_url))
        manifest["outputs"] = {f.name: store.content_hash(f) for f in sorted(out.glob("*.parquet"))}
        store.atomic_write_json(out / "manifest.json", manifest)
    if skipped:
        print(f"finance ingest: skipped {len(skipped)} bad document(s): "
              + "; ".join(s["reason"] for s in manifest["skipped"]))
    if run is not None:
        run.log_params({"source": str(ip.source), "labels": str(labels_url)})
        run.log_metrics({"documents": manifest["documents"], "document_sentences": manifest["document_sentences"],
                         "skipped_documents": len(skipped), "labelled_sentences": manifest.get("labelled_sentences", 0)})
    return manifest


# ============================================================================ preprocess
def dedup_key(sentence: str) -> str:
    """What makes two sentences "the same": cleaned text, case-folded."""
    return text.clean(sentence).casefold()


def prepare_labels(labelled, pp: FinancePreprocess) -> tuple[Any, dict[str, int]]:
    """Cleaned, de-duplicated labelled sentences and what was dropped.

    Repeats are collapsed to their first occurrence; a sentence whose copies carry
    different labels is dropped altogether (counted as ``conflicting``), since either
    label would put a contradiction into training or test.
    """
    import polars as pl

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
    from sklearn.model_selection import train_test_split

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


def load_tokenizer(encoder_dir: str | None):
    """The WordPiece tokenizer of the encoder folder (None: all-MiniLM-L6-v2 from its package), offline."""
    from transformers import AutoTokenizer

    from models.text_encoder import TextEncoderConfig

    return AutoTokenizer.from_pretrained(TextEncoderConfig(model_dir=encoder_dir).resolved_dir(),
                                         local_files_only=True)


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
    import polars as pl

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


def preprocess(params: Params, run=None) -> dict[str, Any]:
    """Candidates for annotation from the documents; cleaned, de-duplicated, split and tokenized labels.

    Outputs in ``data/processed/finance/`` (replaced atomically): ``candidates.csv``;
    with labelled sentences also ``{train,val,test}.parquet`` (text and metadata),
    ``{train,val,test}.safetensors`` (token ids, mask, label) and ``schema.json``.
    """
    import polars as pl
    from safetensors.numpy import save_file

    pp = params.preprocess.finance
    paths = store.domain_paths(DOMAIN)
    docs_file, labels_file = paths.raw / "documents.parquet", paths.raw / "labels.parquet"
    if not docs_file.exists() and not labels_file.exists():
        raise FileNotFoundError(f"{paths.raw} holds no ingested data: run ingest first (python -m tasks ingest finance)")
    docs = pl.read_parquet(docs_file) if docs_file.exists() else None
    with store.atomic_dir(paths.processed) as out:
        cands = candidate_table(docs, pp, pp.seed)
        store.atomic_write_text(out / "candidates.csv", cands.write_csv())
        schema: dict[str, Any] = {
            "domain": DOMAIN, "classes": CLASSES, "encoder_dir": pp.encoder_dir, "max_length": pp.max_length,
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
        manifest = {"stage": "preprocess", "domain": DOMAIN, **{k: v for k, v in schema.items() if k != "domain"},
                    "outputs": {"processed": "see schema.json"}}
    manifest["outputs"] = {"processed": store.content_hash(paths.processed)}
    if run is not None:
        run.log_params({"test_fraction": pp.test_fraction, "val_fraction": pp.val_fraction, "seed": pp.seed,
                        "max_length": pp.max_length, "encoder_dir": str(pp.encoder_dir)})
        run.log_metrics({f"{k}_sentences": v["n"] for k, v in schema.get("splits", {}).items()})
    return manifest


# ============================================================================ datasets
class Sentences:
    """Tokenized sentences as the training loop wants them: ``labels`` and ``batch(idx) -> ((ids, mask), y)``.

    Batches are cut to their longest sentence: the paper pads every sentence to 128
    tokens; with BERT's attention mask the logits are the same, and short batches are
    several times faster on a CPU.

    Attributes:
        labels: (N,) int64, 1 = AI disclosure.
        text: (N,) the cleaned sentences (object array), for the TF-IDF baselines.
        years: (N,) int year or None per sentence.
    """

    def __init__(self, input_ids: np.ndarray, attention_mask: np.ndarray, y: np.ndarray,
                 sentences: list[str], years: list[int | None] | None = None) -> None:
        import torch

        self.ids = torch.as_tensor(np.asarray(input_ids, dtype=np.int64))  # (N, L)
        self.mask = torch.as_tensor(np.asarray(attention_mask, dtype=np.int64))  # (N, L)
        self.labels = np.asarray(y, dtype=np.int64)
        self.text = np.asarray(sentences, dtype=object)
        self.years = list(years) if years is not None else [None] * len(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: np.ndarray):
        import torch

        t = torch.as_tensor(idx, dtype=torch.int64)
        mask = self.mask[t]  # (B, L)
        width = max(int(mask.sum(1).max()), 1) if len(t) else 1
        return (self.ids[t][:, :width], mask[:, :width]), torch.as_tensor(self.labels[idx])


def load_schema(root: Path | None = None) -> dict:
    return store.read_json(store.domain_paths(DOMAIN, root).processed / "schema.json")


def load_split(name: str, task: str = "multiclass", root: Path | None = None) -> Sentences:
    """One tokenized split (``train``, ``val`` or ``test``) with its text and years."""
    import polars as pl
    from safetensors.numpy import load_file

    folder = store.domain_paths(DOMAIN, root).processed
    path = folder / f"{name}.safetensors"
    if not path.exists():
        note = store.read_json(folder / "schema.json").get("note") if (folder / "schema.json").exists() else None
        raise FileNotFoundError(f"{path} does not exist: " + (note or "run preprocess first "
                                                                "(python -m tasks preprocess finance)"))
    t = load_file(str(path))
    meta = pl.read_parquet(folder / f"{name}.parquet")
    years = meta["year"].to_list() if "year" in meta.columns else None
    return Sentences(t["input_ids"], t["attention_mask"], t["y"], meta["sentence"].to_list(), years)


# ============================================================================ hooks for the generic stages
def model_config(params: Params, schema: dict) -> dict[str, Any]:
    """Registry config: params' config plus the tokenizer's encoder folder and length from preprocessing."""
    cfg = dict(params.train.finance.model.config)
    cfg.update(model_dir=schema["encoder_dir"], max_length=int(schema["max_length"]), n_outputs=len(CLASSES))
    return cfg


def task_info(params: Params, schema: dict) -> dict[str, Any]:
    pp = params.preprocess.finance
    return {"task": "multiclass", "class_names": list(CLASSES), "negative_class": 0, "family_names": None,
            "column_labels": {"f1": "F1 (AI)", "precision": "precision (AI)", "recall": "recall (AI)",
                              "latency_ms": "latency ms/sentence (b=1)", "throughput_per_s": "sentences/s (batched)"},
            "table_columns": ["accuracy", "precision", "recall", "f1", "roc_auc", "brier", "latency_ms",
                              "throughput_per_s", "bytes", "parameters"],
            "baseline_kind": "TF-IDF / lexicon baseline", "roc_label": "AI vs non-AI",
            "test_note": f"sentences: stratified {pp.test_fraction:.0%} hold-out (seed {pp.seed}), "
                         "no sentence on both sides"}


def baseline_features(split: Sentences) -> np.ndarray:
    """The baselines read raw sentences: (N,) object array of str."""
    return split.text


def fit_baselines(names: list[str], train: Sentences, n_categorical: int, max_rows: int, seed: int):
    """TF-IDF + LR / NB / RF and the keyword rule on the training sentences (:mod:`tasks.domains.finance.baselines`)."""
    from tasks.domains.finance.baselines import fit_baselines as fit

    return fit(names, train.text, train.labels, seed)


def extra_train(params: Params, out: Path, run=None, baselines: dict | None = None) -> dict[str, Any]:
    """Score the edge-case set with the fitted baselines (evaluate adds the encoders), into ``edge_cases.parquet``."""
    import polars as pl

    from tasks.domains.finance.edge_cases import EDGE_CASES

    cols: dict[str, Any] = {"group": [e.group for e in EDGE_CASES], "sentence": [e.sentence for e in EDGE_CASES],
                            "label": [e.label for e in EDGE_CASES]}
    for name, est in (baselines or {}).items():
        cols[name] = est.predict_proba(np.asarray(cols["sentence"], dtype=object))[:, 1]
    pl.DataFrame(cols).write_parquet(out / "edge_cases.parquet")
    return {}


def extra_evaluate(params: Params, result: dict[str, Any], plots_dir: Path,
                   scores: dict | None = None) -> tuple[str, list[str]]:
    """FinAI-BERT's checks (models.md 3.5-3.6): calibration, per-year slices, length bias, edge cases, attributions.

    Adds ``result["finance"]`` and returns the report's markdown section and plot file names.
    """
    from tasks.domains.finance import report

    return report.evaluate_extras(params, result, plots_dir, scores or {})


# ============================================================================ scoring
SCORE_INPUT_EXPANDS_ITSELF = True
"""The score input may be a file, folder, glob or fsspec URL of documents: :func:`expand_documents` expands it."""


def scoring_input(urls: list[str], ip, *, cache: Path):
    """Sentences of the documents to score (bad documents skipped and named), plus notes for the summary."""
    import polars as pl

    pp_filter = FinancePreprocess()
    doc_urls, sidecars = expand_documents(urls[0] if len(urls) == 1 else urls, retries=ip.retries,
                                          delay_s=ip.retry_delay_s)
    sidecar: dict = {}
    for m in sidecars:
        sidecar.update(read_metadata(_fetch(m, cache, ip.retries, ip.retry_delay_s), m))
    frame, skipped = read_documents(doc_urls, ip.model_copy(update={"on_bad_document": "skip"}), cache=cache,
                                    sidecar=sidecar)
    # Headings, table rows and fragments are not sentences to classify: the reference's filter.
    keep = [text.keep_sentence(s, pp_filter.min_words, pp_filter.min_letter_ratio) for s in frame["sentence"]]
    frame = frame.filter(pl.Series(keep, dtype=pl.Boolean))
    if frame.height == 0:
        raise NoDocumentsError(f"{urls[0] if len(urls) == 1 else urls}: no readable sentence in "
                               f"{len(doc_urls)} document(s)" + (": " + "; ".join(s["reason"] for s in skipped)
                                                                 if skipped else ""))
    return frame, {"documents": doc_urls, "skipped": skipped}


def key_columns(ip) -> list[str]:
    return list(KEY_COLUMNS)


def score_frame(model, meta: dict, frame) -> Any:
    """P(AI disclosure) of every sentence in ``frame["sentence"]``.

    Returns:
        polars DataFrame: ``p_ai`` and ``prediction`` (1 = AI disclosure at 0.5), one row per input row.
    """
    import polars as pl

    from tasks.train import predict, probabilities

    if "sentence" not in frame.columns:
        raise LabelsError(f"input to score: needs a 'sentence' column, got {frame.columns}")
    sentences = [text.clean(s or "") for s in frame["sentence"].to_list()]
    tok = model.tokenizer
    enc = tokenize(tok, sentences, int(meta["config"]["max_length"]))
    data = Sentences(enc["input_ids"], enc["attention_mask"], np.zeros(len(sentences), np.int64), sentences)
    # Sort by length so each batch is cut to similar lengths, then restore the order.
    order = np.argsort(enc["attention_mask"].sum(1), kind="stable") if len(sentences) else np.zeros(0, np.int64)
    sorted_data = Sentences(enc["input_ids"][order], enc["attention_mask"][order], data.labels, sentences)
    logits = predict(model, sorted_data, 64) if len(sentences) else np.zeros((0, 2), np.float32)
    probs = np.empty(len(sentences))
    probs[order] = probabilities(logits, "multiclass")[:, 1] if len(sentences) else probs
    return pl.DataFrame({"p_ai": probs, "prediction": (probs >= 0.5).astype(np.int64)})


def score_summary(out, notes: dict, output: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The per-document table and the AI-disclosure intensity plot of a scoring run.

    Args:
        out: The scored sentences (key columns + ``p_ai``, ``prediction``).
        notes: From :func:`scoring_input`: ``documents`` and ``skipped``.
        output: The predictions' Parquet path; the extra files are named after it.

    Returns:
        ``(manifest additions, {file name: bytes})``: ``<stem>.documents.csv`` (per document:
        institution, year, sentences, AI sentences, AI share, mean P(AI)),
        ``<stem>.intensity.png`` (AI share by year per institution) and ``<stem>.report.md``
        (the table, the plot and every skipped document with its reason). The caller writes
        them beside the output, atomically with it.
    """
    from tasks.domains.finance import report

    return report.scoring_summary(out, notes, output)
