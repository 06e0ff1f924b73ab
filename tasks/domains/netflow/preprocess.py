"""The ``preprocess`` stage of the ``netflow`` domain: the reference's transforms, fitted on training rows only.

Numeric fields: ``log(x - min + 1) / log(range + 1)`` (non-finite and |x| > 1e9 set to 0
first); categorical fields: the top-k levels coded 1..k, 0 for everything else; a
chronological split (train | validation | test, test last). One safetensors file per
split plus ``schema.json`` (the fitted transforms, which scoring applies again).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch
from safetensors.torch import save_file

from tasks import store
from tasks.domains.netflow.data import NAME, RAW_FILE
from tasks.domains.netflow.records import IS_ATTACK, LABEL, SchemaError

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


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


def _check_unseen(raw, classes: list[str], y_class: np.ndarray, bounds: dict[str, tuple[int, int]], window: int,
                  policy: str) -> None:
    """A class with windows in validation/test but none in training cannot be learnt: an error (or a warning).

    The split is chronological, so an attack that starts late in the capture lands only in the
    test rows; its windows would be scored against a class the model never saw.
    """
    counts = {name: np.bincount(y_class[a + window - 1 : b], minlength=len(classes))
              for name, (a, b) in bounds.items() if b - a >= window}
    later = [s for s in counts if s != "train"]
    unseen = {c: {s: int(counts[s][i]) for s in later if counts[s][i]} for i, c in enumerate(classes)
              if counts["train"][i] == 0 and any(counts[s][i] for s in later)}
    if not unseen:
        return
    what = (f"{raw}: class(es) {sorted(unseen)} have no training window but appear later ({unseen}): the "
            "chronological split puts them only in validation/test, so the model cannot learn them")
    if policy == "warn":
        print(f"warning: {what}")
        return
    raise SchemaError(what + "; use more data, change preprocess.netflow.test_fraction/val_fraction, or set "
                             "preprocess.netflow.unseen_classes=warn to go on")


def preprocess(params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """Fit the reference's transforms on training rows and write the splits.

    Output folder ``data/processed/netflow/``: ``{train,val,test}.safetensors``
    (``x_num`` float32 (N, Fn), ``x_cat`` int64 (N, Fc), ``y`` int64 attack flag,
    ``y_class`` int64 class index, ``row`` int64 position in the raw file) and
    ``schema.json`` (fields, fitted scaler and levels, classes, window, split
    sizes and class counts).
    """
    p = params.preprocess.netflow
    spec = params.ingest.netflow.spec
    paths = store.domain_paths(NAME)
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
        "domain": NAME, "spec": spec.name, "numeric_fields": spec.numeric_fields,
        "categorical_fields": spec.categorical_fields, "levels": levels,
        "categorical_levels": [len(levels[f]) + 1 for f in spec.categorical_fields],
        "numeric_scaler": scaler.to_dict(), "classes": classes, "benign_value": spec.benign_value,
        "label_column": spec.label_column, "window": p.window, "splits": {}, "renames": spec.renames,
    }
    x_num, x_cat = transform_frame(frame, schema)
    class_index = {c: i for i, c in enumerate(classes)}
    y_class = np.array([class_index[c] for c in frame[LABEL].to_list()], dtype=np.int64)
    y = frame[IS_ATTACK].cast(pl.Int64).to_numpy().copy()  # polars hands out a read-only view
    _check_unseen(raw, classes, y_class, bounds, p.window, p.unseen_classes)
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
    manifest = {"stage": "preprocess", "domain": NAME, "splits": schema["splits"],
                "outputs": {"processed": store.content_hash(paths.processed)}}
    if run is not None:
        run.log_params({"window": p.window, "n_categorical_levels": p.n_categorical_levels,
                        "test_fraction": p.test_fraction, "val_fraction": p.val_fraction})
        run.log_metrics({f"{s}.windows": v["windows"] for s, v in schema["splits"].items()})
    return manifest
