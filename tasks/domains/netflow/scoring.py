"""Scoring raw flow records with a trained ``netflow`` model (what the registered pyfunc runs)."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from tasks import store
from tasks.domains import InputExample, LoadedModel
from tasks.domains.netflow.data import NAME, RAW_FILE, FlowWindows
from tasks.domains.netflow.params import FlowDatasetSpec
from tasks.domains.netflow.preprocess import transform_frame
from tasks.domains.netflow.records import SchemaError, check_values, typed_frame
from tasks.domains.netflow.threshold import meta_threshold
from tasks.loop import hard_predictions, predict, probabilities


def score_frame(loaded: LoadedModel, frame: pl.DataFrame) -> pl.DataFrame:
    """Score raw flow records (time order) with a trained model; one output row per input row.

    The first W-1 rows have fewer than W-1 predecessors; their windows are
    left-padded with copies of the first row and flagged ``full_context=False``.

    Args:
        loaded: A netflow model (teacher or compressed) and its ``config.json`` (which holds the fitted
            preprocessing ``schema``).
        frame: A polars DataFrame with the spec's columns (source names; renames are applied).

    Returns:
        A polars DataFrame: ``p_attack``, ``prediction`` (1 = attack, at the threshold chosen on validation and
        stored in ``config.json``, :mod:`.threshold`: binary, ``p_attack`` at or above it) and, for a
        multi-class model, ``predicted_class`` (its most probable family when that family against Benign,
        P(family) / (P(Benign) + P(family)), reaches the threshold, else Benign) and one ``p_<class>`` column
        per class.
    """
    model, meta = loaded.model, loaded.meta
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
    check_values(lf.select(pl.all().cast(pl.String)), spec, "input to score")
    typed = typed_frame(lf, spec, frame.columns).collect()
    x_num, x_cat = transform_frame(typed, schema)
    w = schema["window"]
    pad = w - 1
    x_num = np.concatenate([np.repeat(x_num[:1], pad, axis=0), x_num]) if len(x_num) else x_num
    x_cat = np.concatenate([np.repeat(x_cat[:1], pad, axis=0), x_cat]) if len(x_cat) else x_cat
    n = typed.height
    windows = FlowWindows(x_num, x_cat, np.zeros(len(x_num), np.int64), np.zeros(len(x_num), np.int64), w)
    task = meta.get("task", "binary")
    with torch.inference_mode():
        logits = predict(model, windows, 2048) if n else np.zeros((0, model.config.n_outputs), np.float32)
    probs = probabilities(logits, task)
    out = {"full_context": np.arange(n) >= pad}
    # The threshold chosen on validation when the folder was written (a folder from before: 0.5 / argmax).
    thr = meta_threshold(meta)
    if task == "binary":
        out["p_attack"] = probs
        out["prediction"] = hard_predictions(probs, task, 0.5 if thr is None else thr)
    else:
        classes = meta["class_names"]
        pred = hard_predictions(probs, task, negative_threshold=thr)
        out["p_attack"] = 1.0 - probs[:, 0]
        out["prediction"] = (pred != 0).astype(np.int64)
        out["predicted_class"] = np.asarray(classes, dtype=object)[pred]
        for j, c in enumerate(classes):
            out[f"p_{c}"] = probs[:, j]
    return pl.DataFrame(out)


def input_example(loaded: LoadedModel) -> InputExample:
    """The last ``window + 2`` records of ``data/raw/netflow/flows.parquet`` in the columns the model reads.

    Columns are named as in the source the model was trained on (before ``renames``). Every column is read as
    a number or as text alike (CSV read as text scores the same), so their type is not checked; the label
    column is optional (scoring input need not be labelled).
    """
    schema = loaded.meta["schema"]
    source = {canonical: src for src, canonical in schema.get("renames", {}).items()}
    fields = [*schema["numeric_fields"], *schema["categorical_fields"]]
    path = store.domain_paths(NAME).raw / RAW_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: the registered model's input example is read from it; "
                                "run ingest first (python -m tasks ingest netflow)")
    frame = pl.read_parquet(path, columns=fields).tail(int(schema["window"]) + 2)
    frame = frame.rename({c: source.get(c, c) for c in fields})
    label = source.get(schema["label_column"], schema["label_column"])
    return InputExample(frame.to_pandas(), optional=(label,), any_type=(*frame.columns, label))
