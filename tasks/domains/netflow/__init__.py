"""The ``netflow`` domain: ingest and preprocess network flow records, and the hooks
the generic train / evaluate / register / score stages call for this domain.

Data path (reference: FlowTransformer, models.md section 2):

* **ingest** reads CSV, CSV.gz or Parquet (one file or a glob, any fsspec URL)
  with polars, validates it against the dataset spec in params (required
  columns, numeric values), and writes ``data/raw/netflow/flows.parquet`` in
  time order. The offline default first writes synthetic NetFlow v2 CSVs
  (:mod:`tasks.domains.netflow.synthetic`) and then reads them with the same reader.
* **preprocess** fits the reference's transforms on training rows only:
  numeric ``log(x - min + 1) / log(range + 1)`` (non-finite and |x| > 1e9 set to
  0 first), top-k categorical levels coded 1..k with 0 for everything else;
  chronological split (train | validation | test, test last); writes one
  safetensors file per split plus ``schema.json``. Windows of W consecutive
  flows labelled by the last flow are formed on the fly by :class:`FlowWindows`,
  never across a split boundary.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks import store
from tasks.params import FlowDatasetSpec, Params

DOMAIN = "netflow"
RAW_FILE = "flows.parquet"
LABEL = "label"
IS_ATTACK = "is_attack"


class SchemaError(ValueError):
    """A source does not match the dataset spec; the message names the file and the fields."""


class EmptySourceError(ValueError):
    """A source file holds no data rows."""


# ============================================================================ ingest
def _local_copy(url: str, cache: Path, retries: int, delay_s: float) -> Path:
    """A local, uncompressed path for ``url`` (remote files are downloaded, .gz streamed out).

    polars scans local files lazily; remote and gzip-compressed sources are first
    streamed to a local cache so a file larger than memory still works.
    """
    import fsspec

    name = Path(url.split("::")[-1].split("?")[0]).name
    is_gz = name.endswith(".gz")
    if not store.is_remote(url) and not is_gz:
        return Path(url.removeprefix("file://"))
    out = cache / (name[:-3] if is_gz else name)
    i = 0
    while out.exists():  # two sources with one file name
        i += 1
        out = out.with_name(f"{i}-{out.name}")

    def fetch() -> Path:
        with fsspec.open(url, "rb") as src:
            stream = gzip.GzipFile(fileobj=src) if is_gz else src
            with open(out, "wb") as dst:
                shutil.copyfileobj(stream, dst, length=1 << 22)
        return out

    return store.retry(fetch, retries=retries, delay_s=delay_s, what=f"reading {url}")


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    return "csv"


def _scan(path: Path, fmt: str, display: str):
    """A lazy frame over one local file; CSV columns are read as strings so bad values can be named."""
    import polars as pl

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
    return lf, names


def validate_columns(names: list[str], spec: FlowDatasetSpec, display: str, require_label: bool = True) -> None:
    """Raise :class:`SchemaError` naming every required column missing from ``names`` (after renames)."""
    renamed = {spec.renames.get(n, n) for n in names}
    required = [*spec.numeric_fields, *spec.categorical_fields, *spec.keep_columns]
    if require_label:
        required.append(spec.label_column)
    missing = [c for c in required if c not in renamed]
    if missing:
        raise SchemaError(
            f"{display}: missing required columns {missing} (dataset spec {spec.name!r}; "
            f"the file has {len(names)} columns: {names[:8]}{' ...' if len(names) > 8 else ''})"
        )


def _not_a_number(column: str):
    """True where a non-empty entry of ``column`` does not parse as a number (empty/NaN/inf are accepted)."""
    import polars as pl

    text = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.col(column).is_not_null() & (text != "") & text.cast(pl.Float64, strict=False).is_null()


def _no_label(column: str):
    import polars as pl

    return pl.col(column).is_null() | (pl.col(column).cast(pl.String) == "")


def _invalid(spec: FlowDatasetSpec):
    """True for a row with a non-numeric entry in a numeric field or an empty label (see :func:`_check_values`)."""
    import polars as pl

    return pl.any_horizontal([*(_not_a_number(c) for c in spec.numeric_fields), _no_label(spec.label_column)])


def _typed(lf, spec: FlowDatasetSpec, names: list[str], flag: bool = False):
    """Rename, select and type the spec's columns: numerics as Float64, categoricals and label as strings.

    With ``flag``, an extra boolean ``__invalid`` column marks rows that fail the value checks.
    """
    import polars as pl

    lf = lf.rename({k: v for k, v in spec.renames.items() if k in names})
    exprs = [_invalid(spec).alias("__invalid")] if flag else []
    for c in spec.numeric_fields:
        exprs.append(pl.col(c).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).alias(c))
    for c in [*spec.categorical_fields, *spec.keep_columns]:
        exprs.append(pl.col(c).cast(pl.String).str.strip_chars().fill_null("").alias(c))
    label = pl.col(spec.label_column).cast(pl.String).str.strip_chars()
    exprs.append(label.alias(LABEL))
    exprs.append((label != spec.benign_value).alias(IS_ATTACK))
    return lf.select(exprs)


def _check_values(lf, spec: FlowDatasetSpec, display: str) -> None:
    """Raise :class:`SchemaError` naming column, row and value of the first non-numeric entries.

    Documented coercion: empty cells become null and are later set to 0 with the
    other non-finite values; ``NaN``/``inf`` parse as floats. Anything else that
    does not parse as a number (``"abc"``, ``"1.2.3"``) is an error.
    """
    import polars as pl

    names = lf.collect_schema().names()
    rows = lf.rename({k: v for k, v in spec.renames.items() if k in names}).with_row_index("__row", offset=1)
    flagged = (
        rows.with_columns(*(_not_a_number(c).alias(c) for c in spec.numeric_fields),
                          _no_label(spec.label_column).alias("__nolabel"))
        .filter(pl.any_horizontal([*spec.numeric_fields, "__nolabel"]))
        .head(5)
        .collect()
    )
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
            problems.append(f"row {row['__row']}, column {spec.label_column}: empty label")
    raise SchemaError(f"{display}: " + "; ".join(problems[:5]))


def write_flows(urls: list[str], spec: FlowDatasetSpec, target: Path, *, fmt: str = "auto", cache: Path,
                retries: int = 3, delay_s: float = 0.5, max_rows: int | None = None) -> None:
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

    Output columns: the numeric fields (Float64), categorical fields and
    ``keep_columns`` (strings), ``label`` (class name) and ``is_attack``.

    Raises:
        SchemaError: Required columns missing or a non-numeric value in a numeric column.
        EmptySourceError: A file with no data rows.
    """
    import polars as pl

    frames, scans = [], []
    for i, url in enumerate(urls):
        local = _local_copy(url, cache, retries, delay_s)
        lf, names = _scan(local, _format_of(Path(url.split("?")[0]), fmt), url)
        validate_columns(names, spec, url)
        if lf.head(1).collect().height == 0:
            raise EmptySourceError(f"{url}: header only, no data rows")
        scans.append(lf)
        frames.append(_typed(lf, spec, names, flag=True).with_columns(pl.lit(i, pl.Int32).alias("__file")))
    rows = pl.concat(frames, how="vertical")
    if max_rows:
        rows = rows.head(max_rows)
    sink = rows.drop("__invalid", "__file").sink_parquet(target, maintain_order=True, lazy=True)
    first_bad = rows.filter(pl.col("__invalid")).select("__file").head(1)
    _, bad = pl.collect_all([sink, first_bad])
    if bad.height:
        i = int(bad["__file"][0])
        _check_values(scans[i], spec, urls[i])
        raise SchemaError(f"{urls[i]}: invalid values (non-numeric entry or empty label)")  # not reached


def read_for_scoring(urls: list[str], spec: FlowDatasetSpec, *, cache: Path, fmt: str = "auto"):
    """Read unlabelled (or labelled) records to score: all of ``urls`` in order, columns as in the source."""
    import polars as pl

    frames = []
    for url in urls:
        local = _local_copy(url, cache, 0, 0.0)
        lf, names = _scan(local, _format_of(Path(url.split("?")[0]), fmt), url)
        validate_columns(names, spec, url, require_label=False)
        frames.append(lf.collect())
    frame = pl.concat(frames, how="diagonal_relaxed")
    if frame.height == 0:
        raise EmptySourceError(f"{urls[0] if len(urls) == 1 else urls}: no data rows to score")
    return frame


def scoring_input(urls: list[str], ip, *, cache: Path):
    """The score stage's hook: the records of ``urls`` read with the ingest spec ``ip.spec``."""
    return read_for_scoring(urls, ip.spec, cache=cache, fmt=ip.format)


def key_columns(ip) -> list[str]:
    """Input columns copied beside the predictions (``ingest.netflow.spec.keep_columns``)."""
    return list(ip.spec.keep_columns)


def ingest(params: Params, run=None) -> dict[str, Any]:
    """Fetch the configured source (or generate the synthetic one) and write validated Parquet.

    Output folder ``data/raw/netflow/``: ``flows.parquet`` (time order kept),
    ``source/`` (the synthetic CSVs, when the source is synthetic) and
    ``manifest.json``. The folder is replaced atomically, so a failure leaves
    the previous contents untouched.

    Returns:
        The manifest: source, files, rows, class counts, output hash.
    """
    import polars as pl

    p = params.ingest.netflow
    paths = store.domain_paths(DOMAIN)
    with store.atomic_dir(paths.raw) as out, tempfile.TemporaryDirectory(dir=out) as cache:
        if p.source == "synthetic":
            from tasks.domains.netflow.synthetic import generate

            s = p.synthetic
            files = generate(out / "source", n_flows=s.n_flows, seed=s.seed, n_files=s.n_files,
                             attack_fraction=s.attack_fraction)
            urls = [str(f) for f in files]
            # Record where the files will live once the folder is swapped in, not the temp folder,
            # so the manifest (and the DVC hash of data/raw) is the same on every run.
            shown = [str((paths.raw / f.relative_to(out)).relative_to(paths.root)) for f in files]
            fingerprint: Any = {"synthetic": s.model_dump()}
        else:
            urls = store.retry(lambda: store.expand_urls(p.source), retries=p.retries, delay_s=p.retry_delay_s,
                               what=f"ingest.netflow.source {p.source}")
            fingerprint = [store.source_fingerprint(u) for u in urls] if len(urls) <= 1000 else {"n": len(urls)}
            shown = urls
        target = out / RAW_FILE
        write_flows(urls, p.spec, target, fmt=p.format, cache=Path(cache), retries=p.retries,
                    delay_s=p.retry_delay_s, max_rows=p.max_rows)
        counts = (
            pl.scan_parquet(target).group_by(LABEL).agg(pl.len().alias("n")).sort(LABEL).collect()
        )
        n_rows = int(counts["n"].sum()) if counts.height else 0
        if n_rows == 0:
            raise EmptySourceError(f"{p.source}: no data rows")
        class_counts = dict(zip(counts[LABEL].to_list(), [int(x) for x in counts["n"]], strict=True))
        if p.spec.benign_value not in class_counts:
            # Not fatal (a capture can be all attacks) but worth saying loudly.
            print(f"warning: no row has {p.spec.label_column} == {p.spec.benign_value!r}")
        manifest = {
            "stage": "ingest", "domain": DOMAIN, "source": p.source, "files": shown,
            "fingerprint": fingerprint, "rows": n_rows, "class_counts": class_counts,
            "spec": p.spec.name, "outputs": {"flows": store.content_hash(target)},
        }
        store.atomic_write_json(out / "manifest.json", manifest)
    if run is not None:
        run.log_params({"source": p.source, "spec": p.spec.name, "files": len(urls)})
        run.log_metrics({"rows": n_rows, **{f"class_rows.{k}": v for k, v in class_counts.items()}})
    return manifest


# ============================================================================ preprocess
@dataclass
class NumericScaler:
    """The reference's numeric transform ``log(x - min + 1) / log(range + 1)``, fitted on training rows."""

    minimum: np.ndarray  # (F,)
    range: np.ndarray  # (F,)
    max_abs: float = 1e9

    @classmethod
    def fit(cls, x: np.ndarray, max_abs: float = 1e9) -> NumericScaler:
        x = cls.clean(x, max_abs)
        return cls(x.min(axis=0), x.max(axis=0) - x.min(axis=0), max_abs)

    @staticmethod
    def clean(x: np.ndarray, max_abs: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.where(np.isfinite(x) & (np.abs(x) <= max_abs), x, 0.0)

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = self.clean(x, self.max_abs)
        # Deliberate difference: values below the training minimum would give log(<1)
        # (negative, or NaN below min-1) in the reference; we floor x - min at 0 so
        # they map to 0. Values above the training maximum are not clipped (> 1), as
        # in the reference (clip_numerical_values=False).
        shifted = np.maximum(x - self.minimum, 0.0)
        denom = np.log(self.range + 1.0)
        safe = np.where(self.range > 0, denom, 1.0)
        out = np.where(self.range > 0, np.log(shifted + 1.0) / safe, 0.0)
        return out.astype(np.float32)

    def to_dict(self) -> dict:
        return {"minimum": self.minimum.tolist(), "range": self.range.tolist(), "max_abs": self.max_abs}

    @classmethod
    def from_dict(cls, d: dict) -> NumericScaler:
        return cls(np.asarray(d["minimum"]), np.asarray(d["range"]), d["max_abs"])


def fit_levels(values: list[Any], k: int) -> list[str]:
    """Top-k most frequent levels (ties broken by the level's text, for determinism)."""
    from collections import Counter

    counts = Counter(values)
    return [lvl for lvl, _ in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:k]]


def encode_categorical(frame, fields: list[str], levels: dict[str, list[str]]) -> np.ndarray:
    """Codes 1..k for the fitted levels, 0 for rare or unseen ones. Returns (N, len(fields)) int64."""
    import polars as pl

    cols = []
    for f in fields:
        mapping = {lvl: i + 1 for i, lvl in enumerate(levels[f])}
        cols.append(
            frame.select(pl.col(f).cast(pl.String).replace_strict(mapping, default=0, return_dtype=pl.Int64))
            .to_series().to_numpy()
        )
    return np.stack(cols, axis=1) if cols else np.zeros((frame.height, 0), dtype=np.int64)


def transform_frame(frame, schema: dict) -> tuple[np.ndarray, np.ndarray]:
    """Apply a fitted schema to a typed flow frame: returns (x_num (N, Fn) float32, x_cat (N, Fc) int64)."""
    scaler = NumericScaler.from_dict(schema["numeric_scaler"])
    x_num = scaler.transform(frame.select(schema["numeric_fields"]).to_numpy())
    x_cat = encode_categorical(frame, schema["categorical_fields"], schema["levels"])
    return x_num, x_cat


def split_bounds(n: int, test_fraction: float, val_fraction: float, window: int) -> dict[str, tuple[int, int]]:
    """Chronological [start, stop) row ranges: train | val | test, the test rows last."""
    # round() first so float noise (100 * 0.07 = 7.000000000000001) does not add a row.
    n_test = int(np.ceil(round(n * test_fraction, 9)))
    n_val = int(np.ceil(round(n * val_fraction, 9))) if val_fraction > 0 else 0
    n_train = n - n_test - n_val
    for name, size in (("train", n_train), ("val", n_val), ("test", n_test)):
        if name == "val" and val_fraction == 0:
            continue
        if size < window:
            raise ValueError(
                f"the {name} split has {size} rows, fewer than one window of {window}: "
                f"use more data or change preprocess.netflow fractions/window"
            )
    return {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}


def preprocess(params: Params, run=None) -> dict[str, Any]:
    """Fit the reference's transforms on training rows and write the splits.

    Output folder ``data/processed/netflow/``: ``{train,val,test}.safetensors``
    (``x_num`` float32 (N, Fn), ``x_cat`` int64 (N, Fc), ``y`` int64 attack flag,
    ``y_class`` int64 class index, ``row`` int64 position in the raw file) and
    ``schema.json`` (fields, fitted scaler and levels, classes, window, split
    sizes and class counts).
    """
    import polars as pl
    import torch
    from safetensors.torch import save_file

    p = params.preprocess.netflow
    spec = params.ingest.netflow.spec
    paths = store.domain_paths(DOMAIN)
    raw = paths.raw / RAW_FILE
    if not raw.exists():
        raise FileNotFoundError(f"{raw} does not exist: run the ingest stage first (python -m tasks ingest netflow)")
    frame = pl.read_parquet(raw)
    bounds = split_bounds(frame.height, p.test_fraction, p.val_fraction, p.window)
    t0, t1 = bounds["train"]
    train_frame = frame.slice(t0, t1 - t0)
    scaler = NumericScaler.fit(train_frame.select(spec.numeric_fields).to_numpy(), p.max_abs_value)
    levels = {f: fit_levels(train_frame[f].to_list(), p.n_categorical_levels) for f in spec.categorical_fields}
    classes = [spec.benign_value] + sorted(set(frame[LABEL].unique().to_list()) - {spec.benign_value})
    schema: dict[str, Any] = {
        "domain": DOMAIN, "spec": spec.name, "numeric_fields": spec.numeric_fields,
        "categorical_fields": spec.categorical_fields, "levels": levels,
        "categorical_levels": [len(levels[f]) + 1 for f in spec.categorical_fields],
        "numeric_scaler": scaler.to_dict(), "classes": classes, "benign_value": spec.benign_value,
        "label_column": spec.label_column, "window": p.window, "splits": {}, "renames": spec.renames,
    }
    x_num, x_cat = transform_frame(frame, schema)
    class_index = {c: i for i, c in enumerate(classes)}
    y_class = np.array([class_index[c] for c in frame[LABEL].to_list()], dtype=np.int64)
    y = frame[IS_ATTACK].cast(pl.Int64).to_numpy().copy()  # polars hands out a read-only view
    with store.atomic_dir(paths.processed) as out:
        for name, (a, b) in bounds.items():
            if b <= a:
                continue
            tensors = {
                "x_num": torch.from_numpy(np.ascontiguousarray(x_num[a:b])),
                "x_cat": torch.from_numpy(np.ascontiguousarray(x_cat[a:b])),
                "y": torch.from_numpy(np.ascontiguousarray(y[a:b])),
                "y_class": torch.from_numpy(np.ascontiguousarray(y_class[a:b])),
                "row": torch.arange(a, b, dtype=torch.int64),
            }
            save_file(tensors, str(out / f"{name}.safetensors"))
            counts = np.bincount(y_class[a + p.window - 1 : b], minlength=len(classes))
            schema["splits"][name] = {
                "rows": b - a, "windows": max(b - a - p.window + 1, 0),
                "class_windows": dict(zip(classes, [int(c) for c in counts], strict=True)),
            }
        store.atomic_write_json(out / "schema.json", schema)
    manifest = {"stage": "preprocess", "domain": DOMAIN, "splits": schema["splits"],
                "outputs": {"processed": store.content_hash(paths.processed)}}
    if run is not None:
        run.log_params({"window": p.window, "n_categorical_levels": p.n_categorical_levels,
                        "test_fraction": p.test_fraction, "val_fraction": p.val_fraction})
        run.log_metrics({f"{s}.windows": v["windows"] for s, v in schema["splits"].items()})
    return manifest


# ============================================================================ datasets
class FlowWindows:
    """Windows of W consecutive flows of one split, labelled by the last flow.

    Target ``j`` is row ``j + W - 1`` of the split with context rows
    ``j .. j + W - 1`` in file order, so no window crosses a split boundary.

    Attributes:
        labels: (N_windows,) int64 training target (attack flag or class index).
        attack: (N_windows,) int64 attack flag of each target flow.
        classes: (N_windows,) int64 class index of each target flow.
    """

    def __init__(self, x_num: np.ndarray, x_cat: np.ndarray, y: np.ndarray, y_class: np.ndarray,
                 window: int, task: str = "binary") -> None:
        import torch

        self.window = window
        self.x_num = torch.as_tensor(x_num)  # (N, Fn)
        self.x_cat = torch.as_tensor(x_cat)  # (N, Fc)
        self.attack = np.asarray(y[window - 1 :])
        self.classes = np.asarray(y_class[window - 1 :])
        self.labels = self.attack if task == "binary" else self.classes
        self._offsets = torch.arange(window)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: np.ndarray):
        """Inputs and targets of the windows ``idx``: ((x_num (B, W, Fn), x_cat (B, W, Fc)), y (B,))."""
        import torch

        rows = torch.as_tensor(idx, dtype=torch.int64)[:, None] + self._offsets  # (B, W)
        return (self.x_num[rows], self.x_cat[rows]), torch.as_tensor(self.labels[idx])


def load_schema(root: Path | None = None) -> dict:
    return store.read_json(store.domain_paths(DOMAIN, root).processed / "schema.json")


def load_split(name: str, task: str = "binary", root: Path | None = None) -> FlowWindows:
    """Read one processed split as windows."""
    from safetensors.numpy import load_file

    paths = store.domain_paths(DOMAIN, root)
    schema = load_schema(root)
    path = paths.processed / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run preprocess first (python -m tasks preprocess netflow)")
    t = load_file(str(path))
    return FlowWindows(t["x_num"], t["x_cat"], t["y"], t["y_class"], schema["window"], task)


# ============================================================================ hooks for the generic stages
def model_config(params: Params, schema: dict) -> dict[str, Any]:
    """The registry config of the model: params' config plus the data-dependent sizes."""
    p = params.train.netflow
    cfg = dict(p.model.config)
    cfg.update(
        n_numeric=len(schema["numeric_fields"]),
        categorical_levels=list(schema["categorical_levels"]),
        window=schema["window"],
        n_outputs=1 if p.task == "binary" else len(schema["classes"]),
    )
    return cfg


def task_info(params: Params, schema: dict) -> dict[str, Any]:
    """What the evaluation needs to know of the labels."""
    task = params.train.netflow.task
    names = ["Benign", "Attack"] if task == "binary" else list(schema["classes"])
    return {"task": task, "class_names": names, "negative_class": 0, "family_names": list(schema["classes"])}


def baseline_features(split: FlowWindows) -> np.ndarray:
    """Single-flow features of each window's target flow: numerics then categorical codes. (N, Fn + Fc)."""
    w = split.window
    return np.concatenate([split.x_num.numpy()[w - 1 :], split.x_cat.numpy()[w - 1 :]], axis=1)


def fit_baselines(names: list[str], train: FlowWindows, n_categorical: int, max_rows: int, seed: int):
    """Fit the single-flow scikit-learn baselines on the most recent ``max_rows`` training flows.

    * ``logreg``: logistic regression on the scaled numerics + one-hot categorical codes.
    * ``hgb``: histogram gradient boosting with the categorical codes as native categories.

    Returns:
        ``{name: fitted estimator}``; each has ``predict_proba`` on :func:`baseline_features` rows.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    x = baseline_features(train)[-max_rows:]
    y = train.labels[-max_rows:]
    n_num = x.shape[1] - n_categorical
    cat_idx = list(range(n_num, x.shape[1]))
    fitted = {}
    for name in names:
        if name == "logreg":
            pre = ColumnTransformer(
                [("cat", OneHotEncoder(handle_unknown="ignore"), cat_idx)], remainder="passthrough"
            )
            est = make_pipeline(pre, LogisticRegression(max_iter=300, class_weight="balanced"))
        elif name == "hgb":
            est = HistGradientBoostingClassifier(
                categorical_features=cat_idx, class_weight="balanced", max_iter=200, random_state=seed
            )
        else:  # params validation makes this unreachable
            raise ValueError(f"unknown baseline {name!r}")
        fitted[name] = est.fit(x, y)
    return fitted


def score_frame(model, meta: dict, frame) -> Any:
    """Score raw flow records (time order) with a trained model; one output row per input row.

    The first W-1 rows have fewer than W-1 predecessors; their windows are
    left-padded with copies of the first row and flagged ``full_context=False``.

    Args:
        model: A netflow model (teacher or compressed).
        meta: Its ``config.json`` (holds the fitted preprocessing ``schema``).
        frame: A polars DataFrame with the spec's columns (source names; renames are applied).

    Returns:
        A polars DataFrame: ``p_attack``, ``prediction`` (1 = attack) and, for a
        multi-class model, ``predicted_class`` and one ``p_<class>`` column per class.
    """
    import polars as pl
    import torch

    from tasks.train import probabilities

    schema = meta["schema"]
    spec = FlowDatasetSpec(
        numeric_fields=schema["numeric_fields"], categorical_fields=schema["categorical_fields"],
        label_column=schema["label_column"], benign_value=schema["benign_value"],
        renames=schema.get("renames", {}),
    )
    names = frame.columns
    renamed = {spec.renames.get(n, n) for n in names}
    missing = [c for c in [*spec.numeric_fields, *spec.categorical_fields] if c not in renamed]
    if missing:
        raise SchemaError(f"input to score: missing required columns {missing}")
    if spec.label_column not in renamed:  # scoring input need not be labelled
        frame = frame.with_columns(pl.lit(spec.benign_value).alias(spec.label_column))
    lf = frame.lazy()
    _check_values(lf.select(pl.all().cast(pl.String)), spec, "input to score")
    typed = _typed(lf, spec, frame.columns).collect()
    x_num, x_cat = transform_frame(typed, schema)
    w = schema["window"]
    pad = w - 1
    x_num = np.concatenate([np.repeat(x_num[:1], pad, axis=0), x_num]) if len(x_num) else x_num
    x_cat = np.concatenate([np.repeat(x_cat[:1], pad, axis=0), x_cat]) if len(x_cat) else x_cat
    n = typed.height
    windows = FlowWindows(x_num, x_cat, np.zeros(len(x_num), np.int64), np.zeros(len(x_num), np.int64), w)
    task = meta.get("task", "binary")
    from tasks.train import predict

    with torch.inference_mode():
        logits = predict(model, windows, 2048) if n else np.zeros((0, model.config.n_outputs), np.float32)
    probs = probabilities(logits, task)
    out = {"full_context": np.arange(n) >= pad}
    if task == "binary":
        out["p_attack"] = probs
        out["prediction"] = (probs >= 0.5).astype(np.int64)
    else:
        classes = meta["class_names"]
        out["p_attack"] = 1.0 - probs[:, 0]
        out["prediction"] = (probs.argmax(axis=1) != 0).astype(np.int64)
        out["predicted_class"] = np.asarray(classes, dtype=object)[probs.argmax(axis=1)]
        for j, c in enumerate(classes):
            out[f"p_{c}"] = probs[:, j]
    return pl.DataFrame(out)
