"""Single sentences to score (``formerflow score finance --sentences FILE``), not documents.

Documents are split into sentences at full stops (:mod:`.sources`); a file that is already one sentence a line
has none, and came back as a handful of "sentences" thousands of characters long. Here each line is one
sentence, or each row of a table's text column is:

* **TXT** (any name not ending in ``.csv``, ``.tsv``, ``.parquet`` or ``.pq``): one sentence per line, blank
  lines skipped, no splitting; UTF-8 (a byte-order mark is allowed). Rows carry ``line``, the 1-based line
  number in the file.
* **CSV / TSV / Parquet**: the text column (``text_column``, default ``sentence``) and, optionally, a label
  column (``label_column``; default ``label`` when the table has one) whose values are 0/1, true/false or the
  class names (``non-AI`` / ``AI``). Rows carry ``row``, the 0-based data row (the header is not a row), as
  polars and pandas number them. Rows whose text is empty are skipped and counted.

Every error names the file as the user gave it (never a cached copy) and says what to do.
"""

from __future__ import annotations

import difflib
import io
import shlex
from pathlib import Path

import polars as pl

from tasks import store
from tasks.domains import ScoringInput
from tasks.domains.finance.data import CLASSES

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
"""File name endings read as tables; any other file is text, one sentence per line."""
DEFAULT_TEXT_COLUMN = "sentence"
DEFAULT_LABEL_COLUMN = "label"
LABEL_WORDS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1, CLASSES[0].lower(): 0,
               CLASSES[1].lower(): 1}
"""Label values a table may use (compared lower-case, stripped): 0/1, false/true, the class names."""


class SentenceFileError(ValueError):
    """A sentence file that cannot be scored: empty, not UTF-8, a missing column, labels that are not 0/1."""


def read_sentences(source: str, text_column: str | None = None, label_column: str | None = None,
                   cache: Path | None = None, retries: int = 0, delay_s: float = 0.5) -> ScoringInput:
    """The sentences of ``source``, one row each, ready for :func:`.scoring.score_frame`.

    Args:
        source: The file as the user named it (a path or fsspec URL); errors name it.
        text_column: A table's text column (default ``sentence``); for a TXT file it must be left unset.
        label_column: A table's label column; default ``label`` when the table has one, else no labels.
        cache: Where a remote file is copied (a local one is read in place).
        retries: Retries of a remote read.
        delay_s: First delay between retries.

    Returns:
        ``frame``: ``line`` (TXT) or ``row`` (tables), ``sentence``, and ``label`` (0/1) when labelled;
        ``notes``: ``format``, ``text_column``, ``label_column``, ``skipped_blank`` (rows or lines without text).

    Raises:
        SentenceFileError: the file is empty or has no text, is not UTF-8 (names the byte offset and line), lacks
            the text or label column (names its columns and the nearest match), or has labels other than 0/1.
        FileNotFoundError: the file does not exist.
    """
    kind = TABLE_SUFFIXES.get(Path(str(source).split("?", 1)[0]).suffix.lower(), "txt")
    if kind == "txt" and text_column is not None and text_column != DEFAULT_TEXT_COLUMN:
        raise SentenceFileError(f"{source}: --text-column {text_column!r} is for CSV/TSV/Parquet files; a text file "
                                "is read as one sentence per line (name the file .csv to read it as a table)")
    if kind == "txt" and label_column is not None:
        raise SentenceFileError(f"{source}: --label-column {label_column!r} is for CSV/TSV/Parquet files; a text "
                                "file has no labels")
    local = store.fetch_to_cache(source, cache, retries=retries, delay_s=delay_s) if cache else Path(source)
    local = Path(local)
    if not local.is_file():
        raise FileNotFoundError(f"{source}: no such sentence file")
    if kind == "parquet":
        frame, columns = _read_parquet(source, local)
    else:
        raw = local.read_bytes()
        if not raw.strip():
            raise SentenceFileError(f"{source}: no sentence to score: the file is empty"
                                    + (" (only blank lines)" if raw else ""))
        content = _decode(source, raw)
        if kind == "txt":
            return _text_lines(source, content)
        frame, columns = _read_csv(source, content, "\t" if kind == "tsv" else ",")
    return _table(source, frame, columns, kind, text_column or DEFAULT_TEXT_COLUMN, label_column)


def _decode(source: str, raw: bytes) -> str:
    """``raw`` as UTF-8 text (a leading byte-order mark dropped), or an error naming the first bad byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)  # utf-8-sig counts after the mark
        line = raw.count(b"\n", 0, start) + 1
        raise SentenceFileError(
            f"{source}: not UTF-8 text: byte 0x{raw[start]:02x} at offset {start} (line {line}) "
            f"is not valid UTF-8 ({exc.reason}); save the file as UTF-8, e.g. "
            f"iconv -f latin1 -t utf-8 {shlex.quote(Path(str(source)).name)} > fixed{Path(str(source)).suffix}"
        ) from None


def _text_lines(source: str, content: str) -> ScoringInput:
    """One sentence per line; blank lines skipped; line numbers as an editor shows them (1-based)."""
    lines, numbers = [], []
    # split("\n"), not splitlines(): form feeds and Unicode line separators inside a sentence do not end it,
    # so the numbers stay those an editor shows.
    for i, line in enumerate(content.split("\n"), start=1):
        text = line.strip()
        if text:
            lines.append(text)
            numbers.append(i)
    if not lines:
        raise SentenceFileError(f"{source}: no sentence to score: the file has only blank lines")
    frame = pl.DataFrame({"line": numbers, "sentence": lines}, schema={"line": pl.Int64, "sentence": pl.String})
    total = content.count("\n") + (0 if content.endswith("\n") else 1)
    return ScoringInput(frame, {"format": "txt", "text_column": None, "label_column": None,
                                "skipped_blank": total - len(lines)})


def _read_csv(source: str, content: str, sep: str) -> tuple[pl.DataFrame, list[str]]:
    try:
        # Every column as text: a label column of 0/1 and one of AI/non-AI are parsed alike (_labels).
        frame = pl.read_csv(io.StringIO(content), separator=sep, infer_schema=False)
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise SentenceFileError(f"{source}: not a readable {'TSV' if sep == chr(9) else 'CSV'} table: "
                                f"{str(exc).splitlines()[0]}") from None
    return frame, frame.columns


def _read_parquet(source: str, local: Path) -> tuple[pl.DataFrame, list[str]]:
    try:
        frame = pl.read_parquet(local)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise SentenceFileError(f"{source}: not a readable Parquet file: {str(exc).splitlines()[0]}") from None
    return frame, frame.columns


def _missing(source: str, what: str, name: str, columns: list[str], option: str) -> SentenceFileError:
    """The error for a column the table does not have: its columns, and the nearest one as a suggestion."""
    lower = {c.lower(): c for c in columns}
    near = [lower[name.lower()]] if name.lower() in lower else difflib.get_close_matches(name, columns, n=1,
                                                                                          cutoff=0.5)
    hint = f"; did you mean {near[0]!r}? ({option} {near[0]})" if near else f"; name it with {option}"
    return SentenceFileError(f"{source}: no {what} column {name!r}; the file has columns {columns}{hint}")


def _table(source: str, frame: pl.DataFrame, columns: list[str], kind: str, text_column: str,
           label_column: str | None) -> ScoringInput:
    if text_column not in columns:
        raise _missing(source, "text", text_column, columns, "--text-column")
    if label_column is not None and label_column not in columns:
        raise _missing(source, "label", label_column, columns, "--label-column")
    if label_column is None and DEFAULT_LABEL_COLUMN in columns and DEFAULT_LABEL_COLUMN != text_column:
        label_column = DEFAULT_LABEL_COLUMN
    if frame.schema[text_column] != pl.String:
        raise SentenceFileError(f"{source}: text column {text_column!r} holds {frame.schema[text_column]}, not text")
    if frame.height == 0:
        raise SentenceFileError(f"{source}: no sentence to score: the table has no rows (columns {columns})")
    out = frame.with_row_index("row").select(
        pl.col("row").cast(pl.Int64), pl.col(text_column).str.strip_chars().alias("sentence"),
        *([pl.col(label_column).alias("label")] if label_column else []))
    kept = out.filter(pl.col("sentence").is_not_null() & (pl.col("sentence") != ""))
    if kept.height == 0:
        raise SentenceFileError(f"{source}: no sentence to score: column {text_column!r} is empty in all "
                                f"{frame.height} row(s)")
    if label_column:
        kept = kept.with_columns(_labels(source, label_column, kept["label"], kept["row"]))
    return ScoringInput(kept, {"format": kind, "text_column": text_column, "label_column": label_column,
                               "skipped_blank": out.height - kept.height})


def _labels(source: str, column: str, values: pl.Series, rows: pl.Series) -> pl.Series:
    """The label column as 0/1 (Int64): numbers 0/1, booleans, or the words of :data:`LABEL_WORDS`."""
    words = values.cast(pl.String).str.strip_chars().str.to_lowercase()
    mapped = words.replace_strict(LABEL_WORDS, default=None, return_dtype=pl.Int64)
    bad = mapped.is_null()
    if bad.any():
        shown = [f"row {r}: {v!r}" for r, v in zip(rows.filter(bad).head(3).to_list(),
                                                   values.filter(bad).head(3).to_list(), strict=True)]
        raise SentenceFileError(
            f"{source}: label column {column!r} has {int(bad.sum())} value(s) that are not a label "
            f"({'; '.join(shown)}); labels are 0/1, false/true or {'/'.join(CLASSES)} (1 = AI disclosure)"
            + ("; rename or drop the column to score without labels" if column == DEFAULT_LABEL_COLUMN else ""))
    return mapped.alias("label")
