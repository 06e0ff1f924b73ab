"""Flow records: reading CSV / CSV.gz / Parquet with polars and validating them against the dataset spec.

The readers of the ``netflow`` domain's ingest and scoring. Columns are read as strings
first so that a bad value can be named by file, row, column and value; the spec's
``renames`` map a source's column names onto the fields the model reads.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from pathlib import Path
from typing import NamedTuple

import polars as pl

from tasks import store
from tasks.domains.netflow.params import FlowDatasetSpec
from tasks.params_base import did_you_mean

LABEL = "label"
"""The class name column of the raw Parquet (the spec's label column, as text)."""
IS_ATTACK = "is_attack"
"""True for every row whose label is not the spec's benign value."""
SOURCE_FILE = "source_file"
"""The file (as the source names it) each raw row came from: file boundaries and ``split: group`` use it."""


class SchemaError(ValueError):
    """A source does not match the dataset spec; the message names the file and the fields."""


class EmptySourceError(ValueError):
    """A source file holds no data rows."""


NULL_LABELS = ("nan", "null", "none", "na", "n/a", "<na>", "nat")
"""Label texts that mean "no label" (compared lower-case): a pandas NaN written to CSV, a float NaN label
in Parquet, a database NULL. They are errors, never an attack class of their own."""

DEFAULT_MAX_EXTRACTED_BYTES = 16 * 2**30
DEFAULT_MAX_COMPRESSION_RATIO = 100.0


def local_plain(url: str, cache: Path, *, retries: int = 0, delay_s: float = 0.5,
                max_bytes: int = DEFAULT_MAX_EXTRACTED_BYTES,
                max_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO) -> Path:
    """A local, uncompressed copy of ``url``: fetched when remote, a ``.gz`` unpacked under caps.

    The unpacking is counted as it goes (:func:`tasks.store.capped_copy`), so a decompression
    bomb is stopped at ``max_bytes`` or at ``max_ratio`` times its compressed size instead of
    filling the disk; a file that is not gzip or ends early is a :class:`SchemaError` at once
    (decode errors are not retried: the same bytes fail again).

    Raises:
        SchemaError: Not gzip, truncated, or over a cap (the message names the file, the cap and its key).
    """
    local = store.fetch_to_cache(url, cache, retries=retries, delay_s=delay_s)
    if not Path(url.split("?")[0]).name.endswith(".gz"):
        return local
    name = Path(url.split("::")[-1].split("?")[0]).name[:-3] or "source"
    out, i = Path(cache) / name, 0
    while out.exists():  # two sources with one file name
        i += 1
        out = out.with_name(f"{i}-{name}")
    try:
        with open(local, "rb") as raw, gzip.GzipFile(fileobj=raw) as gz, store.atomic_path(out) as tmp, \
                open(tmp, "wb") as dst:
            store.capped_copy(gz, dst, display=url, max_bytes=max_bytes,
                              bytes_key="ingest.netflow.max_extracted_bytes", max_ratio=max_ratio,
                              ratio_key="ingest.netflow.max_compression_ratio", consumed=raw.tell,
                              error=SchemaError)
    except gzip.BadGzipFile as exc:
        raise SchemaError(f"{url}: not a gzip file ({exc}); give the plain file or rename it without .gz") from None
    except (EOFError, zlib.error) as exc:
        raise SchemaError(f"{url}: a damaged or truncated gzip file ({type(exc).__name__}: {exc})") from None
    return out


_DUPLICATED = re.compile(r"^(?P<base>.*)_duplicated_\d+$")


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    return "csv"


def _scan(path: Path, fmt: str, display: str):
    """A lazy frame over one local file; CSV columns are read as strings so bad values can be named."""
    try:
        if fmt == "parquet":
            lf = pl.scan_parquet(path)
        else:
            if path.stat().st_size == 0:
                raise EmptySourceError(f"{display}: the file is empty (0 bytes)")
            lf = pl.scan_csv(path, infer_schema=False)
        names = lf.collect_schema().names()
    except (pl.exceptions.NoDataError, pl.exceptions.ComputeError) as exc:
        raise EmptySourceError(f"{display}: cannot read any data: {exc}") from None
    if not names:
        raise EmptySourceError(f"{display}: no header and no rows")
    # polars renames a repeated header name to <name>_duplicated_<k> and reads on; which of the two
    # columns is the real one cannot be known, so a repeated name is an error.
    dups = sorted({m["base"] for n in names if (m := _DUPLICATED.match(n)) and m["base"] in names})
    if dups:
        raise SchemaError(f"{display}: the header names the column(s) {dups} more than once")
    if fmt == "parquet":
        try:
            schema = lf.collect_schema()
        except pl.exceptions.PolarsError as exc:
            raise SchemaError(f"{display}: cannot read the Parquet schema: {exc}") from None
        nested = {n: str(t) for n, t in schema.items() if t.is_nested() or t in (pl.Object, pl.Binary)}
        if nested:
            raise SchemaError(f"{display}: column(s) of list/struct/binary type {nested}; flow fields must be "
                              "numbers or text, one value per row")
    return lf, names


def validate_columns(names: list[str], spec: FlowDatasetSpec, display: str, require_label: bool = True) -> None:
    """Raise :class:`SchemaError` naming every required column missing from ``names`` (after renames)."""
    renamed_list = [spec.renames.get(n, n) for n in names]
    twice = sorted({n for n in renamed_list if renamed_list.count(n) > 1})
    if twice:
        raise SchemaError(f"{display}: after the spec's renames, the column(s) {twice} appear more than once "
                          f"(renames {spec.renames})")
    renamed = set(renamed_list)
    # keep_columns are optional (kept when present); only required_columns are demanded of every file.
    required = [*spec.numeric_fields, *spec.categorical_fields,
                *(c for c in spec.required_columns if c not in spec.numeric_fields + spec.categorical_fields)]
    if require_label:
        required.append(spec.label_column)
    missing = [c for c in required if c not in renamed]
    if missing:
        # The file's columns nearest to each missing one (IN_BYTE for IN_BYTES): a typo or another spelling,
        # which spec.renames maps.
        near = "".join(f"; {c}{hint}" for c in missing if (hint := did_you_mean(c, sorted(renamed - set(required)))))
        raise SchemaError(
            f"{display}: missing required columns {missing} (dataset spec {spec.name!r}; "
            f"the file has {len(names)} columns: {names[:8]}{' ...' if len(names) > 8 else ''}{near}; "
            "ingest.netflow.spec.renames maps a file's name to the spec's)"
        )


def _not_a_number(column: str):
    """True where a non-empty entry of ``column`` does not parse as a number (empty/NaN/inf are accepted)."""
    text = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.col(column).is_not_null() & (text != "") & text.cast(pl.Float64, strict=False).is_null()


def _no_label(column: str):
    text = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.col(column).is_null() | (text == "") | text.str.to_lowercase().is_in(list(NULL_LABELS))


def _invalid(spec: FlowDatasetSpec):
    """True for a row with a non-numeric entry in a numeric field or an empty label (see :func:`check_values`)."""
    return pl.any_horizontal([*(_not_a_number(c) for c in spec.numeric_fields), _no_label(spec.label_column)])


def present_keep_columns(spec: FlowDatasetSpec, names_per_file: list[list[str]]) -> list[str]:
    """The spec's keep columns that at least one file has (after renames), in the spec's order."""
    have = {spec.renames.get(n, n) for names in names_per_file for n in names}
    return [c for c in spec.keep_columns if c in have and c not in spec.categorical_fields]


def typed_frame(lf, spec: FlowDatasetSpec, names: list[str], flag: bool = False, keep: list[str] | None = None):
    """Rename, select and type the spec's columns: numerics as Float64, categoricals and label as strings.

    With ``flag``, an extra boolean ``__invalid`` column marks rows that fail the value checks. ``keep`` (default:
    none) names the keep columns to write: one this file lacks is written as "" (another file of the glob has it).
    """
    renamed = {spec.renames.get(n, n) for n in names}
    lf = lf.rename({k: v for k, v in spec.renames.items() if k in names})
    exprs = [_invalid(spec).alias("__invalid")] if flag else []
    for c in spec.numeric_fields:
        exprs.append(pl.col(c).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).alias(c))
    for c in spec.categorical_fields:
        exprs.append(pl.col(c).cast(pl.String).str.strip_chars().fill_null("").alias(c))
    for c in keep or []:
        exprs.append(pl.col(c).cast(pl.String).str.strip_chars().fill_null("").alias(c) if c in renamed
                     else pl.lit("", pl.String).alias(c))
    label = pl.col(spec.label_column).cast(pl.String).str.strip_chars()
    exprs.append(label.alias(LABEL))
    exprs.append((label != spec.benign_value).alias(IS_ATTACK))
    return lf.select(exprs)


def check_values(lf, spec: FlowDatasetSpec, display: str) -> None:
    """Raise :class:`SchemaError` naming column, row and value of the first non-numeric entries.

    Documented coercion: empty cells become null and are later set to 0 with the
    other non-finite values; ``NaN``/``inf`` parse as floats. Anything else that
    does not parse as a number (``"abc"``, ``"1.2.3"``) is an error.
    """
    names = lf.collect_schema().names()
    rows = lf.rename({k: v for k, v in spec.renames.items() if k in names}).with_row_index("__row", offset=1)
    flagged = (
        rows.with_columns(*(_not_a_number(c).alias(c) for c in spec.numeric_fields),
                          _no_label(spec.label_column).alias("__nolabel"))
        .filter(pl.any_horizontal([*spec.numeric_fields, "__nolabel"]))
    )
    n_bad = flagged.select(pl.len()).collect().item()
    flagged = flagged.head(5).collect()
    if flagged.height == 0:
        return
    problems = []
    raw = rows.filter(pl.col("__row").is_in(flagged["__row"].to_list())).collect()
    for row in flagged.iter_rows(named=True):
        values = raw.filter(pl.col("__row") == row["__row"]).row(0, named=True)
        for c in spec.numeric_fields:
            if row[c]:
                problems.append(f"row {row['__row']}, column {c}: {values[c]!r} is not a number")
        if row["__nolabel"]:
            value = values[spec.label_column]
            what = "empty label" if value is None or not str(value).strip() else f"null-like label {value!r}"
            problems.append(f"row {row['__row']}, column {spec.label_column}: {what}")
    raise SchemaError(f"{display}: " + "; ".join(problems[:5])
                      + (f" ({n_bad} bad rows in all)" if n_bad > 1 else ""))


def source_names(urls: list[str]) -> list[str]:
    """Each file's path below the files' common folder: the ``source_file`` value of its rows.

    Relative, so the same files read from a local folder or a bucket give the same column (and the same
    content hash), and no host, bucket or credential of a URL is written into the data.
    """
    clean = [u.split("::")[-1].split("?")[0] for u in urls]
    common = os.path.commonprefix(clean)
    cut = common.rfind("/") + 1 if len(clean) > 1 else clean[0].rfind("/") + 1
    return [c[cut:] or c for c in clean]


def write_flows(urls: list[str], spec: FlowDatasetSpec, target: Path, *, fmt: str = "auto", cache: Path,
                retries: int = 3, delay_s: float = 0.5, max_rows: int | None = None,
                max_bytes: int = DEFAULT_MAX_EXTRACTED_BYTES,
                max_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO, shown: list[str] | None = None,
                keep: list[str] | None = None, same_columns_as: tuple[str, list[str]] | None = None) -> FileColumns:
    """Validate every source file and write them, in order, as one Parquet file.

    The values are checked in the same streaming pass that writes the Parquet
    (polars shares the scan between the sink and the check), so a large CSV is
    read once and never held in memory. Only when a bad value is found is the
    offending file read again to name its rows, columns and values.

    Args:
        urls: Concrete file URLs or paths (see :func:`tasks.store.expand_urls`).
        spec: The dataset spec (fields, label, benign value, renames).
        target: The Parquet file to write (inside a folder being built atomically).
        fmt: ``auto`` (by extension), ``csv`` or ``parquet``.
        cache: Folder for local copies of remote or compressed files.
        retries: Retries of a remote read with exponential backoff.
        delay_s: First backoff delay.
        max_rows: Keep only the first rows.
        max_bytes: Cap on the unpacked size of a ``.gz`` source (:func:`local_plain`).
        max_ratio: Cap on the compression ratio of a ``.gz`` source.
        shown: The name of each file written into the ``source_file`` column (default: :func:`source_names`).
        keep: The keep columns to write (default: those of ``spec.keep_columns`` that some file has).
        same_columns_as: ``(name, columns)`` of another source (the training source of a test source): every
            file must have exactly these columns (after renames), else a :class:`SchemaError` naming both files
            and the columns that differ.

    Output columns: the numeric fields (Float64), categorical fields and
    keep columns (strings), ``label`` (class name), ``is_attack`` and ``source_file``.

    Returns:
        The first file's name and columns (after renames), and the keep columns written.

    Raises:
        SchemaError: Required columns missing, a repeated column, a non-numeric value in a numeric column,
            an empty or null-like label, a column polars cannot read as the spec's type, a damaged ``.gz``
            or one over a cap, columns that differ from ``same_columns_as``.
        EmptySourceError: A file with no data rows.
    """
    shown = shown or source_names(urls)
    scans, all_names = [], []
    for url in urls:
        local = local_plain(url, cache, retries=retries, delay_s=delay_s, max_bytes=max_bytes, max_ratio=max_ratio)
        lf, names = _scan(local, _format_of(Path(url.split("?")[0]), fmt), url)
        if same_columns_as is not None:  # first: "differs from the training file" says more than "missing"
            compare_columns(same_columns_as, (url, [spec.renames.get(n, n) for n in names]))
        validate_columns(names, spec, url)
        if lf.head(1).collect().height == 0:
            raise EmptySourceError(f"{url}: header only, no data rows")
        scans.append(lf)
        all_names.append(names)
    keep = present_keep_columns(spec, all_names) if keep is None else keep
    frames = [typed_frame(lf, spec, names, flag=True, keep=keep).with_columns(
                  pl.lit(i, pl.Int32).alias("__file"), pl.lit(shown[i], pl.String).alias(SOURCE_FILE))
              for i, (lf, names) in enumerate(zip(scans, all_names, strict=True))]
    rows = pl.concat(frames, how="vertical")
    if max_rows:
        rows = rows.head(max_rows)
    sink = rows.drop("__invalid", "__file").sink_parquet(target, maintain_order=True, lazy=True)
    first_bad = rows.filter(pl.col("__invalid")).select("__file").head(1)
    try:
        _, bad = pl.collect_all([sink, first_bad])
    except pl.exceptions.PolarsError as exc:
        # Types are checked per file above; what is left (a value polars cannot parse mid-file) is
        # still bad input, not a crash.
        shown = urls[0] if len(urls) == 1 else f"one of {urls[:5]}{' ...' if len(urls) > 5 else ''}"
        raise SchemaError(f"{shown}: cannot read the flows: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if bad.height:
        i = int(bad["__file"][0])
        check_values(scans[i], spec, urls[i])
        raise SchemaError(f"{urls[i]}: invalid values (non-numeric entry or empty label)")  # not reached
    return FileColumns(urls[0], [spec.renames.get(n, n) for n in all_names[0]], keep)


class FileColumns(NamedTuple):
    """What :func:`write_flows` read: the first file, its columns (after renames), the keep columns written."""

    name: str
    columns: list[str]
    keep: list[str]


def compare_columns(reference: tuple[str, list[str]], other: tuple[str, list[str]]) -> None:
    """Raise :class:`SchemaError` when two files' column sets differ, naming both files and the columns.

    A test source must be the same kind of records as the training source: a column on one side only means the
    files come from different exports (or a renamed field), which the spec would otherwise read silently.
    """
    (ref_name, ref_cols), (name, cols) = reference, other
    missing = [c for c in ref_cols if c not in cols]
    extra = [c for c in cols if c not in ref_cols]
    if missing or extra:
        parts = ([f"missing {missing} (in {ref_name})"] if missing else []) + \
                ([f"{extra} not in {ref_name}"] if extra else [])
        raise SchemaError(f"{name}: the test source's columns differ from the training source's: "
                          + "; ".join(parts) + " (ingest.netflow.test_source must have the same columns as "
                          "ingest.netflow.source)")


def read_for_scoring(urls: list[str], spec: FlowDatasetSpec, *, cache: Path, fmt: str = "auto"):
    """Read unlabelled (or labelled) records to score: all of ``urls`` in order, columns as in the source."""
    frames = []
    for url in urls:
        local = local_plain(url, cache)
        lf, names = _scan(local, _format_of(Path(url.split("?")[0]), fmt), url)
        validate_columns(names, spec, url, require_label=False)
        frames.append(lf.collect())
    frame = pl.concat(frames, how="diagonal_relaxed")
    if frame.height == 0:
        raise EmptySourceError(f"{urls[0] if len(urls) == 1 else urls}: no data rows to score")
    return frame


