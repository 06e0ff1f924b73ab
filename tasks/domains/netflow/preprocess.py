"""The ``preprocess`` stage of the ``netflow`` domain: the reference's transforms, fitted on training rows only.

Numeric fields: ``log(x - min + 1) / log(range + 1)`` (non-finite and |x| > 1e9 set to 0
first); categorical fields: the top-k levels coded 1..k, 0 for everything else. One
safetensors file per split plus ``schema.json`` (the fitted transforms, which scoring
applies again).

Splits (``preprocess.netflow.split``), after an optional stable sort by ``sort_by``:

* ``chronological`` (the default): train | validation | test in row order, the test rows last.
* ``stratified``: every file is cut into contiguous blocks of ``block_rows`` rows (default
  16 x W; 1 for W = 1, the plain per-row stratified split); each block counts for the rarest
  class among its windows' targets, and per class the blocks are shuffled (``seed``) and dealt
  to test / validation / train by the fractions (at least one block each when the class has
  three). Windows are built inside a block only, so no row is in a training window and in a
  test window: overlapping windows dealt one by one would put 7 of every test window's 8 rows
  into training windows too.
* ``group``: whole groups of the ``group_by`` column (a file, a host, a subject) shuffled
  (``seed``) and dealt to test / validation by their rows until each reaches its fraction.
* with ``ingest.netflow.test_source``, the test split is that source, whole; validation then
  comes from the training source only (chronological: its last ``val_fraction`` of rows).

Windows of W consecutive rows never cross a run: a file (unless the source is one capture,
``ingest.netflow.one_capture``), a group, a block, or a split. In the training and
validation splits (and the test split of a source split into parts) the first W-1 rows of
a run are context only; they are counted in ``schema.json`` (``context_rows``). The rows of a
separate test source are all scored: the first W-1 rows of each of its files get a window
padded with copies of the file's first row, as ``python -m tasks score`` pads the start of
its input (``padded_windows`` counts them).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch
from safetensors.torch import save_file

from tasks import store
from tasks.domains.netflow.data import NAME, RAW_FILE, RAW_TEST_FILE
from tasks.domains.netflow.records import IS_ATTACK, LABEL, SOURCE_FILE, SchemaError

if TYPE_CHECKING:
    from tasks.domains.netflow.params import NetflowPreprocess
    from tasks.params import Params
    from tasks.tracking import StageRun

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ROW = "__row"
"""The row's position in its raw file (flows.parquet or test_flows.parquet), kept through the sort."""


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
    counts = Counter(values)
    return [lvl for lvl, _ in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:k]]


def encode_categorical(frame, fields: list[str], levels: dict[str, list[str]]) -> np.ndarray:
    """Codes 1..k for the fitted levels, 0 for rare or unseen ones. Returns (N, len(fields)) int64."""
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


def windows_of(units: np.ndarray, window: int, pad: bool) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The windows of one split whose rows belong to the runs ``units`` (equal ids adjacent, one id per run).

    Args:
        units: (N,) run id of each row of the split, in the split's order.
        window: W.
        pad: Every row is a target, the first W-1 of a run padded with the run's first row; else those rows are
            context only.

    Returns:
        ``ends`` (target row of each window), ``starts`` (first row of its run), the number of padded windows
        and the number of context-only rows.
    """
    m = len(units)
    if m == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, 0, 0
    idx = np.arange(m, dtype=np.int64)
    new = np.r_[True, units[1:] != units[:-1]]
    first = np.maximum.accumulate(np.where(new, idx, 0))
    k = idx - first  # position inside the run
    short = int((k < window - 1).sum())
    ends = idx if pad else idx[k >= window - 1]
    return ends, first[ends], (short if pad else 0), (0 if pad else short)


def _by_unit(pos: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pos`` regrouped so each key's rows are together (keys by first appearance, rows in order within)."""
    if len(pos) == 0:
        return pos, keys
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))[inv.reshape(-1)]
    order = np.argsort(rank, kind="stable")
    return pos[order], rank[order]


def _column(frame: pl.DataFrame, column: str, key: str, source: str) -> pl.Series:
    if column not in frame.columns:
        hint = ("" if column == SOURCE_FILE else
                "; a source column other than the spec's fields is kept only when listed in "
                "ingest.netflow.spec.keep_columns (and required in every file with required_columns)")
        raise SchemaError(f"{source}: {key} names the column {column!r}, which the ingested flows do not have "
                          f"(they have {[c for c in frame.columns if c != ROW]}){hint}")
    return frame[column]


def _sorted(frame: pl.DataFrame, column: str | None, source: str) -> pl.DataFrame:
    """Rows stably sorted by ``column``: as numbers when every value is one, else as text."""
    frame = frame.with_row_index(ROW)
    if not column:
        return frame
    values = _column(frame, column, "preprocess.netflow.sort_by", source)
    if values.dtype == pl.String:
        as_num = values.str.strip_chars().cast(pl.Float64, strict=False)
        if as_num.null_count() == values.null_count():
            values = as_num
    return frame.with_columns(values.alias("__sort")).sort("__sort", maintain_order=True, nulls_last=True) \
        .drop("__sort")


def _file_keys(frame: pl.DataFrame, one_capture: bool) -> np.ndarray:
    """Run id of every row for the file boundaries: its file's index, or 0 for one capture (or an old raw file)."""
    if one_capture or SOURCE_FILE not in frame.columns:
        return np.zeros(frame.height, np.int64)
    return frame[SOURCE_FILE].rank("dense").cast(pl.Int64).to_numpy()


def _n_of(n: int, fraction: float) -> int:
    # round() first so float noise (100 * 0.07 = 7.000000000000001) does not add a row.
    return int(np.ceil(round(n * fraction, 9))) if fraction > 0 else 0


def _plan_chronological(n: int, files: np.ndarray, p: NetflowPreprocess, test_apart: bool):
    if test_apart:
        n_val = _n_of(n, p.val_fraction)
        bounds = {"train": (0, n - n_val), "val": (n - n_val, n)}
    else:
        bounds = split_bounds(n, p.test_fraction, p.val_fraction, p.window)
    return {name: _by_unit(np.arange(a, b), files[a:b]) for name, (a, b) in bounds.items()}


def _plan_group(frame: pl.DataFrame, files: np.ndarray, p: NetflowPreprocess, test_apart: bool, source: str):
    values = _column(frame, p.group_by, "preprocess.netflow.group_by", source).cast(pl.String).fill_null("")
    groups, inv, counts = np.unique(values.to_numpy().astype(str), return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    wanted = {"test": 0 if test_apart else _n_of(frame.height, p.test_fraction),
              "val": _n_of(frame.height, p.val_fraction)}
    assign = np.zeros(len(groups), np.int64)  # 0 train, 1 val, 2 test
    order = np.random.default_rng(p.seed).permutation(len(groups))
    i = 0
    for code, name in ((2, "test"), (1, "val")):
        got = 0
        while got < wanted[name] and i < len(order):
            assign[order[i]] = code
            got += counts[order[i]]
            i += 1
    if i >= len(order) or any(wanted[s] and not (assign == c).any() for c, s in ((2, "test"), (1, "val"))):
        raise SchemaError(f"{source}: split 'group' by {p.group_by!r} found {len(groups)} group(s) "
                          f"({[str(g) for g in groups[:10]]}); the validation/test fractions need more groups so "
                          "that training keeps at least one: use a column with more groups, or another split")
    plan = {}
    runs = inv * (int(files.max(initial=0)) + 1) + files  # windows stay inside one group of one file
    for code, name in ((0, "train"), (1, "val"), (2, "test")):
        pos = np.flatnonzero(assign[inv] == code)
        if len(pos) or name == "train":
            plan[name] = _by_unit(pos, runs[pos])
    return plan, {s: [str(g) for g in groups[assign == c][:50]] for c, s in ((0, "train"), (1, "val"), (2, "test"))}


def _plan_stratified(y_class: np.ndarray, files: np.ndarray, n_classes: int, p: NetflowPreprocess,
                     test_apart: bool):
    w = p.window
    size = p.block_rows or (1 if w == 1 else 16 * w)
    pos, run = _by_unit(np.arange(len(files)), files)
    idx = np.arange(len(pos))
    new = np.r_[True, run[1:] != run[:-1]] if len(run) else np.zeros(0, bool)
    first = np.maximum.accumulate(np.where(new, idx, 0))
    k = idx - first
    run_len = np.bincount(run)[run]
    block_no = k // size
    last = (run_len - 1) // size
    tail = run_len - last * size
    block_no = np.where((block_no == last) & (tail < w) & (last > 0), block_no - 1, block_no)  # no block < W
    key = np.stack([run, block_no])
    new_block = np.r_[True, (key[:, 1:] != key[:, :-1]).any(axis=0)] if len(run) else np.zeros(0, bool)
    block = np.cumsum(new_block) - 1
    n_blocks = int(block.max(initial=-1)) + 1
    kb = idx - np.maximum.accumulate(np.where(new_block, idx, 0))
    target = kb >= w - 1
    cls = y_class[pos]
    # A block counts for its rarest class (fewest targets overall), so rare classes are spread over the splits.
    rank = np.argsort(np.argsort(np.bincount(cls[target], minlength=n_classes), kind="stable"), kind="stable")
    block_rank = np.full(n_blocks, n_classes, np.int64)
    np.minimum.at(block_rank, block[target], rank[cls[target]])
    assign = np.zeros(n_blocks, np.int64)  # 0 train, 1 val, 2 test
    rng = np.random.default_rng(p.seed)
    for c in range(n_classes):
        blocks = rng.permutation(np.flatnonzero(block_rank == rank[c]))
        m = len(blocks)
        n_test = 0 if test_apart else round(m * p.test_fraction)
        n_val = round(m * p.val_fraction)
        if not test_apart and n_test == 0 and m >= 2:
            n_test = 1
        if p.val_fraction > 0 and n_val == 0 and m >= 3:
            n_val = 1
        while n_test + n_val >= m and n_test + n_val > 0:  # training keeps at least one block of the class
            if n_val:
                n_val -= 1
            else:
                n_test -= 1
        assign[blocks[:n_test]] = 2
        assign[blocks[n_test:n_test + n_val]] = 1
    plan = {}
    for code, name in ((0, "train"), (1, "val"), (2, "test")):
        mask = assign[block] == code
        if mask.any() or name == "train":
            plan[name] = (pos[mask], block[mask])
    return plan, size


def _fmt_counts(counts: dict[str, np.ndarray], classes: list[str], which: list[int]) -> str:
    return "; ".join(f"{classes[i]}: " + ", ".join(f"{s} {int(c[i])}" for s, c in counts.items()) for i in which)


def _check_coverage(raw: Any, source: str, classes: list[str], counts: dict[str, np.ndarray],
                    p: NetflowPreprocess) -> None:
    """Refuse (or warn about) splits that cannot measure what training learns.

    * a class with validation/test windows but no training window (the model cannot learn it): ``unseen_classes``;
    * a validation or test split without a benign window (no false-alarm rate; per-class files split in file
      order end here): ``unseen_classes``;
    * an attack class training has that validation or test lacks (its recall is unknown): ``missing_classes``.

    Every message names the classes and their windows per split; all problems of the error policy are raised
    together in one :class:`SchemaError`, those of ``warn`` are logged (``logging.warning``) and printed.
    """
    later = [s for s in counts if s != "train"]
    problems: list[tuple[str, str, str]] = []
    unseen = {c: {s: int(counts[s][i]) for s in later if counts[s][i]} for i, c in enumerate(classes)
              if counts["train"][i] == 0 and any(counts[s][i] for s in later)}
    if unseen:
        problems.append((f"{raw}: class(es) {sorted(unseen)} have no training window but appear later ({unseen}): "
                         f"the {p.split} split puts them only in validation/test, so the model cannot learn them",
                         p.unseen_classes, "unseen_classes"))
    no_benign = [s for s in later if counts[s][0] == 0]
    if no_benign:
        problems.append((f"{source}: the {' and '.join(no_benign)} split(s) hold no {classes[0]!r} window, so false "
                         "alarms cannot be measured there (windows per split: "
                         f"{_fmt_counts(counts, classes, list(range(len(classes))))}); a {p.split} split of files "
                         "of one class each ends this way: use preprocess.netflow.split=stratified (or group)",
                         p.unseen_classes, "unseen_classes"))
    missing = [i for i in range(1, len(classes)) if counts["train"][i] and any(counts[s][i] == 0 for s in later)]
    if missing:
        short = sorted({s for i in missing for s in later if counts[s][i] == 0})
        problems.append((f"{source}: class(es) {[classes[i] for i in missing]} have training windows but none in "
                         f"the {' / '.join(short)} split ({_fmt_counts(counts, classes, missing)}): their recall "
                         f"there is unknown (preprocess.netflow.split={p.split})", p.missing_classes,
                         "missing_classes"))
    for what, policy, _ in problems:
        if policy == "warn":
            log.warning(what)
            print(f"warning: {what}")
    errors = [(what, switch) for what, policy, switch in problems if policy == "error"]
    if errors:
        switches = sorted({f"preprocess.netflow.{switch}=warn" for _, switch in errors})
        raise SchemaError("; ".join(what for what, _ in errors) + "; use more data, change "
                          "preprocess.netflow.split/test_fraction/val_fraction, or set "
                          f"{' and '.join(switches)} to go on")


def preprocess(params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """Fit the reference's transforms on training rows and write the splits.

    Output folder ``data/processed/netflow/``: ``{train,val,test}.safetensors``
    (``x_num`` float32 (N, Fn), ``x_cat`` int64 (N, Fc), ``y`` int64 attack flag,
    ``y_class`` int64 class index, ``row`` int64 position in its raw file (``flows.parquet``, or
    ``test_flows.parquet`` for a separate test source), ``end`` / ``start`` int64 per window: its target row
    and the first row of its run, see :class:`.data.FlowWindows`) and ``schema.json`` (fields, fitted scaler
    and levels, classes, window, the split strategy, split sizes, class counts, padded and context-only rows).

    Raises:
        SchemaError: A ``group_by`` / ``sort_by`` column the flows do not have, too few groups, a split
            without windows, or splits that miss classes (see :func:`_check_coverage`).
    """
    p = params.preprocess.netflow
    spec = params.ingest.netflow.spec
    paths = store.domain_paths(NAME)
    raw = paths.raw / RAW_FILE
    if not raw.exists():
        raise FileNotFoundError(f"{raw} does not exist: run the ingest stage first (python -m tasks ingest netflow)")
    raw_manifest = store.read_json(paths.raw / "manifest.json") if (paths.raw / "manifest.json").exists() else {}
    one_capture = bool(raw_manifest.get("one_capture", True))  # raw data from before file boundaries: one run
    source = f"{raw_manifest.get('source', raw)} (ingested as {raw})"
    frame = _sorted(pl.read_parquet(raw), p.sort_by, source)
    test_raw = paths.raw / RAW_TEST_FILE
    test_frame = None
    if test_raw.exists():
        test_source = f"{raw_manifest.get('test_source', test_raw)} (ingested as {test_raw})"
        test_frame = _sorted(pl.read_parquet(test_raw), p.sort_by, test_source)
    n = frame.height
    files = _file_keys(frame, one_capture)
    everything = frame if test_frame is None else pl.concat([frame, test_frame], how="vertical")
    classes = [spec.benign_value] + sorted(set(everything[LABEL].unique().to_list()) - {spec.benign_value})
    class_index = {c: i for i, c in enumerate(classes)}
    y_class = np.array([class_index[c] for c in everything[LABEL].to_list()], dtype=np.int64)
    test_apart = test_frame is not None
    groups = None
    if p.split == "chronological":
        plan = _plan_chronological(n, files, p, test_apart)
    elif p.split == "group":
        plan, groups = _plan_group(frame, files, p, test_apart, source)
    else:
        plan, _ = _plan_stratified(y_class[:n], files, len(classes), p, test_apart)
    if p.val_fraction == 0:
        plan.pop("val", None)
    pad = {name: False for name in plan}
    if test_frame is not None:
        plan["test"] = _by_unit(np.arange(n, everything.height), _file_keys(test_frame, one_capture))
        pad["test"] = True
    windows = {}
    for name, (rows, units) in plan.items():
        windows[name] = windows_of(units, p.window, pad[name])
        if len(windows[name][0]) == 0:
            raise SchemaError(f"{source}: the {name} split has {len(rows)} rows but no window of {p.window} rows "
                              f"inside one file/group/block ({p.split} split): use more data, a smaller "
                              "preprocess.netflow.window, or other fractions")
    train_frame = everything[plan["train"][0]]
    scaler = NumericScaler.fit(train_frame.select(spec.numeric_fields).to_numpy(), p.max_abs_value)
    levels = {f: fit_levels(train_frame[f].to_list(), p.n_categorical_levels) for f in spec.categorical_fields}
    note = {"chronological": "windows, the last rows in time order",
            "stratified": f"windows of contiguous blocks, stratified by class (seed {p.seed})",
            "group": f"windows of whole groups of {p.group_by} (seed {p.seed})"}[p.split]
    if test_apart:
        note = f"a separate test source ({note.split(',')[0]} for validation)"
    schema: dict[str, Any] = {
        "domain": NAME, "spec": spec.name, "numeric_fields": spec.numeric_fields,
        "categorical_fields": spec.categorical_fields, "levels": levels,
        "categorical_levels": [len(levels[f]) + 1 for f in spec.categorical_fields],
        "numeric_scaler": scaler.to_dict(), "classes": classes, "benign_value": spec.benign_value,
        "label_column": spec.label_column, "window": p.window, "splits": {}, "renames": spec.renames,
        "split": {"strategy": p.split, "seed": p.seed, "group_by": p.group_by, "sort_by": p.sort_by,
                  "block_rows": (p.block_rows or (1 if p.window == 1 else 16 * p.window))
                  if p.split == "stratified" else None,
                  "test_source": test_apart, "one_capture": one_capture, "note": note,
                  **({"groups": groups} if groups is not None else {})},
    }
    x_num, x_cat = transform_frame(everything, schema)
    y = everything[IS_ATTACK].cast(pl.Int64).to_numpy().copy()  # polars hands out a read-only view
    row = everything[ROW].cast(pl.Int64).to_numpy()
    counts = {name: np.bincount(y_class[plan[name][0]][windows[name][0]], minlength=len(classes))
              for name in SPLITS if name in plan}
    _check_coverage(raw, source, classes, counts, p)
    with store.atomic_dir(paths.processed) as out:
        for name in SPLITS:
            if name not in plan:
                continue
            rows, units = plan[name]
            ends, starts, padded, context = windows[name]
            tensors = {
                "x_num": torch.from_numpy(np.ascontiguousarray(x_num[rows])),
                "x_cat": torch.from_numpy(np.ascontiguousarray(x_cat[rows])),
                "y": torch.from_numpy(np.ascontiguousarray(y[rows])),
                "y_class": torch.from_numpy(np.ascontiguousarray(y_class[rows])),
                "row": torch.from_numpy(np.ascontiguousarray(row[rows])),
                "end": torch.from_numpy(np.ascontiguousarray(ends)),
                "start": torch.from_numpy(np.ascontiguousarray(starts)),
            }
            save_file(tensors, str(out / f"{name}.safetensors"))
            schema["splits"][name] = {
                "rows": len(rows), "windows": len(ends),
                "class_windows": dict(zip(classes, [int(c) for c in counts[name]], strict=True)),
                "runs": int(len(np.unique(units))), "padded_windows": padded, "context_rows": context,
            }
        store.atomic_write_json(out / "schema.json", schema)
    manifest = {"stage": "preprocess", "domain": NAME, "splits": schema["splits"], "split": schema["split"],
                "outputs": {"processed": store.content_hash(paths.processed)}}
    if run is not None:
        run.log_params({"window": p.window, "n_categorical_levels": p.n_categorical_levels,
                        "test_fraction": p.test_fraction, "val_fraction": p.val_fraction, "split": p.split,
                        "test_source": test_apart})
        run.log_metrics({f"{s}.windows": v["windows"] for s, v in schema["splits"].items()})
    return manifest
