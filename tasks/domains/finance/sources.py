"""Bringing finance sources in: annual-report documents (TXT / HTML / PDF) and labelled-sentence files.

Documents are read with :mod:`.text` (stdlib HTML parser, pypdf), split into sentences
and tagged with institution and year (sidecar ``metadata.csv`` or the file name); a bad
document (unreadable, or over a cap of ``ingest.finance.limits``) is skipped and named, or
stops the stage (``on_bad_document``). Labelled
sentences (CSV / Parquet ``sentence,label``) are validated: a missing column or a label
outside {0, 1} is a :class:`LabelsError` naming the file, column and lines.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import polars as pl
from tqdm.auto import tqdm

from tasks import store
from tasks.domains.finance import text
from tasks.domains.finance.params import FinanceIngest, LabelSpec

DOC_SUFFIXES = (".txt", ".html", ".htm", ".pdf")
DOC_COLUMNS = ["document", "institution", "year", "format", "sentence_id", "sentence"]
KEY_COLUMNS = ["document", "institution", "year", "sentence_id", "sentence"]
META_COLUMNS = ("document", "institution", "year", "kind", "section")
"""Optional columns carried from a labelled source to the splits (``file`` is read as ``document``)."""


class LabelsError(ValueError):
    """A labelled-sentence file does not match ``ingest.finance.spec``; names the file, columns and rows."""


class NoDocumentsError(ValueError):
    """No readable document was found (every one was missing, unsupported or bad)."""


def expand_documents(sources: str | list[str], *, retries: int = 0, delay_s: float = 0.0) -> tuple[list[str], list[str]]:
    """Document URLs of ``sources`` (files, folders, globs, URLs) and the ``metadata.csv`` sidecars found beside them.

    A folder contributes its ``.txt`` / ``.html`` / ``.htm`` / ``.pdf`` files (not recursive,
    other files ignored); a file named explicitly is kept whatever its suffix, so an
    unsupported one is reported as a bad document instead of vanishing.

    Raises:
        FileNotFoundError: a source matches nothing.
    """

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


def _first_line(exc: BaseException) -> str:
    """A reader's message without the hints polars adds on further lines."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _as_text(frame, column: str, display: str):
    """``frame[column]`` as strings; a column that cannot be (a list, a struct, binary that is not UTF-8) is named."""
    try:
        return frame[column].cast(pl.String)
    except pl.exceptions.PolarsError as exc:
        raise LabelsError(f"{display}: column {column!r} ({frame[column].dtype}) cannot be read as text: "
                          f"{_first_line(exc)}") from None


def read_metadata(path: Path, display: str) -> dict[str, tuple[str | None, int | None]]:
    """``file -> (institution, year)`` from a sidecar CSV ``file,institution,year``.

    Raises:
        LabelsError: the CSV cannot be parsed, lacks a column, or holds a year that is not a whole number.
    """

    try:
        frame = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise LabelsError(f"{display}: cannot read the metadata CSV: {_first_line(exc)}") from None
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


def _check_remote_size(url: str, name: str, ip: FinanceIngest) -> None:
    """Refuse a remote document over ``max_document_bytes`` before fetching it, when its size is known."""
    if not store.is_remote(url):
        return  # a local file is measured by text.read_text
    try:
        fs, _, paths = fsspec.get_fs_token_paths(url)
        size = fs.info(paths[0]).get("size")
    except Exception:  # noqa: BLE001 - the size is a shortcut; the fetch reports a missing or unreachable file
        return
    if isinstance(size, int) and size > ip.limits.max_document_bytes:
        raise text.over_limit(name, f"{size} bytes", "max_document_bytes", ip.limits)


def read_documents(urls: list[str], ip: FinanceIngest, *, cache: Path, sidecar: dict | None = None,
                   progress: bool = True) -> tuple[Any, list[dict[str, str]]]:
    """Sentences of every readable document, and the documents skipped with the reason.

    Each document is read on its own: any reader error or cap of ``ip.limits`` it hits skips
    that document (named on stderr and in ``skipped``), never the batch.

    Returns:
        ``(frame, skipped)``: a polars frame with :data:`DOC_COLUMNS` (document order,
        ``sentence_id`` from 0 per document) and ``[{"file", "reason"}]``.

    Raises:
        text.DocumentError: a document is bad and ``ip.on_bad_document`` is ``error``.
    """

    sidecar = sidecar or {}
    rows: dict[str, list] = {c: [] for c in DOC_COLUMNS}
    skipped: list[dict[str, str]] = []
    for url in tqdm(urls, desc="finance documents", unit="doc", disable=None if progress else True, leave=False):
        name = Path(url.split("?")[0]).name
        try:
            _check_remote_size(url, name, ip)
            local = store.fetch_to_cache(url, cache, retries=ip.retries, delay_s=ip.retry_delay_s)
            sentences = text.document_sentences(text.read_text(local, ip.encoding, ip.limits))
            if not sentences:
                raise text.DocumentError(f"{name}: no sentence could be extracted")
        except (text.DocumentError, OSError) as exc:
            if ip.on_bad_document == "error":
                raise text.DocumentError(f"{url}: {exc}") from None
            reason = str(exc) if str(exc).startswith(name) else f"{name}: {exc}"
            tqdm.write(f"finance: skipped {reason}", file=sys.stderr)
            skipped.append({"file": url, "reason": reason})
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

    fmt = spec.format
    if fmt == "auto":
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    try:
        if path.stat().st_size == 0:
            raise LabelsError(f"{display}: the file is empty (0 bytes)")
        frame = pl.read_parquet(path) if fmt == "parquet" else pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise LabelsError(f"{display}: cannot read labelled sentences: {_first_line(exc)}") from None
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

    sent = _as_text(frame, spec.sentence_column, display)
    empty = (sent.is_null() | (sent.str.strip_chars() == "")).to_numpy()
    if empty.any():
        raise LabelsError(f"{display}: column {spec.sentence_column!r} is empty at {where(empty)}")
    raw = _as_text(frame, spec.label_column, display).str.strip_chars()
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
            out[c] = _as_text(frame, cols[c], display)
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
