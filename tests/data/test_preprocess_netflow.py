"""Preprocessing of flow records (models.md 2.3-2.4): what the FlowTransformer reference does, checked by hand.

* numeric ``log(x - min + 1) / log(range + 1)``, min/range fitted on training rows only,
  non-finite and |x| > 1e9 set to 0 before fitting, a constant column gives zeros;
* top-k categorical levels coded 1..k by training frequency, everything else 0;
* chronological split train | val | test, sizes from the fractions;
* windows of W consecutive rows of one split, labelled by the last flow, never
  crossing a split boundary (checked through the saved ``row`` tensor).
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.numpy import load_file

from tasks.domains import LoadedModel
from tasks.domains.netflow.data import FlowWindows, load_schema, load_split
from tasks.domains.netflow.domain import DOMAIN
from tasks.domains.netflow.ingest import ingest
from tasks.domains.netflow.preprocess import (
    NumericScaler,
    encode_categorical,
    fit_levels,
    preprocess,
    split_bounds,
    transform_frame,
)
from tasks.domains.netflow.records import SchemaError, read_for_scoring
from tasks.domains.netflow.scoring import score_frame
from tasks.params import load_params
from tests.conftest import setup_project

SPLITS = ("train", "val", "test")


def score(model, meta: dict, frame: pl.DataFrame) -> pl.DataFrame:
    """``score_frame`` of a model and its ``config.json`` contents (the folder is not read when scoring)."""
    return score_frame(LoadedModel(model, meta, Path()), frame)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """One ingest + preprocess of the tiny default pipeline, shared by the read-only tests.

    The env/cwd set-up mirrors ``conftest.project`` (which is function-scoped).
    Returns the project root, the raw frame, the schema and the tensors of every split.
    """
    with pytest.MonkeyPatch.context() as mp:
        root = setup_project(tmp_path_factory.mktemp("prep") / "proj", mp)
        ingest(load_params())
        manifest = preprocess(load_params())
        proc = root / "data" / "processed" / "netflow"
        yield {
            "root": root,
            "manifest": manifest,
            "params": load_params(),
            "raw": pl.read_parquet(root / "data" / "raw" / "netflow" / "flows.parquet"),
            "schema": load_schema(),
            "tensors": {s: load_file(str(proc / f"{s}.safetensors")) for s in SPLITS},
            "proc": proc,
        }


@pytest.fixture
def raw_project(project, processed) -> Path:
    """A fresh ``project`` holding a copy of the shared raw data (no second ingest)."""
    shutil.copytree(processed["root"] / "data" / "raw", project / "data" / "raw")
    return project


def expected_numeric(x: np.ndarray, minimum: np.ndarray, rng: np.ndarray) -> np.ndarray:
    """The reference transform written out (no flooring needed for values >= min)."""
    out = np.zeros_like(x, dtype=np.float64)
    for j in range(x.shape[1]):
        if rng[j] > 0:
            out[:, j] = np.log(x[:, j] - minimum[j] + 1.0) / np.log(rng[j] + 1.0)
    return out


# ----------------------------------------------------------------------------- numeric scaler
def test_numeric_transform_is_log_min_range():
    x = np.array([[1.0, 10.0, 0.0], [3.0, 1010.0, 5.0], [2.0, 110.0, 2.5], [5.0, 10.0, 1.0]])
    s = NumericScaler.fit(x)
    np.testing.assert_array_equal(s.minimum, [1.0, 10.0, 0.0])
    np.testing.assert_array_equal(s.range, [4.0, 1000.0, 5.0])
    out = s.transform(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    # By hand: column 0 row 1: log(3 - 1 + 1) / log(4 + 1) = log 3 / log 5.
    assert out[1, 0] == pytest.approx(math.log(3) / math.log(5), rel=1e-6)
    assert out[2, 1] == pytest.approx(math.log(101) / math.log(1001), rel=1e-6)
    np.testing.assert_allclose(out, expected_numeric(x, s.minimum, s.range), rtol=1e-6)
    # the training min maps to 0 and the training max to 1
    np.testing.assert_allclose(out.min(axis=0), 0.0, atol=1e-7)
    np.testing.assert_allclose(out.max(axis=0), 1.0, rtol=1e-6)


def test_numeric_evaluation_values_outside_training_range():
    s = NumericScaler.fit(np.array([[10.0], [20.0]]))
    out = s.transform(np.array([[30.0], [5.0], [-1e6]]))
    # above the training max: not clipped (> 1), as in the reference (clip_numerical_values=False)
    assert out[0, 0] == pytest.approx(math.log(21) / math.log(11), rel=1e-6)
    assert out[0, 0] > 1.0
    # below the training min: the documented deliberate difference floors x - min at 0 -> 0, never NaN
    assert out[1, 0] == 0.0 and out[2, 0] == 0.0
    assert np.isfinite(out).all()


def test_non_finite_and_huge_values_become_zero_before_fitting():
    col = np.array([5.0, np.inf, np.nan, -np.inf, 2e9, -2e9, 3.0, 1e9])[:, None]
    s = NumericScaler.fit(col)
    # cleaned column: [5, 0, 0, 0, 0, 0, 3, 1e9] -> min 0, range 1e9 (exactly 1e9 is kept: |x| <= 1e9)
    assert s.minimum[0] == 0.0
    assert s.range[0] == 1e9
    out = s.transform(col)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[[1, 2, 3, 4, 5], 0], 0.0)
    assert out[0, 0] == pytest.approx(math.log(6) / math.log(1e9 + 1), rel=1e-6)
    assert out[7, 0] == pytest.approx(1.0, rel=1e-6)

    # without the huge values the min would be -2e9: show the fit really ignored them
    s2 = NumericScaler.fit(np.array([[-2e9], [7.0], [9.0]]))
    assert s2.minimum[0] == 0.0 and s2.range[0] == 9.0


def test_max_abs_is_configurable():
    s = NumericScaler.fit(np.array([[1.0], [50.0], [200.0]]), max_abs=100.0)
    assert s.minimum[0] == 0.0 and s.range[0] == 50.0  # 200 -> 0 before fitting
    assert s.transform(np.array([[200.0]]))[0, 0] == 0.0


def test_constant_column_gives_zeros():
    x = np.array([[7.0, 1.0], [7.0, 2.0], [7.0, 3.0]])
    s = NumericScaler.fit(x)
    assert s.range[0] == 0.0
    out = s.transform(np.array([[7.0, 2.0], [100.0, 2.0], [-3.0, 2.0]]))
    np.testing.assert_array_equal(out[:, 0], 0.0)  # also for values the training rows never had
    assert np.isfinite(out).all()


def test_scaler_dict_round_trip():
    s = NumericScaler.fit(np.random.default_rng(0).lognormal(3, 2, size=(50, 4)))
    back = NumericScaler.from_dict(s.to_dict())
    np.testing.assert_array_equal(back.minimum, s.minimum)
    np.testing.assert_array_equal(back.range, s.range)
    assert back.max_abs == s.max_abs
    x = np.random.default_rng(1).lognormal(3, 2, size=(20, 4))
    np.testing.assert_array_equal(back.transform(x), s.transform(x))


# ----------------------------------------------------------------------------- categorical levels
def test_fit_levels_top_k_by_frequency_ties_by_text():
    values = ["80"] * 5 + ["443"] * 9 + ["22"] * 2 + ["53"] * 2 + ["8080"]
    assert fit_levels(values, 2) == ["443", "80"]
    # "22" and "53" tie at 2: broken by text ("22" < "53")
    assert fit_levels(values, 4) == ["443", "80", "22", "53"]
    assert fit_levels(values, 32) == ["443", "80", "22", "53", "8080"]  # fewer levels than k


def test_encode_categorical_codes_and_unseen_levels():
    levels = {"PORT": fit_levels(["443", "443", "443", "80", "80", "22"], 2), "PROTO": ["6", "17"]}
    assert levels["PORT"] == ["443", "80"]
    frame = pl.DataFrame({"PORT": ["443", "80", "22", "9999", "443"], "PROTO": ["17", "6", "1", "6", "6"]})
    codes = encode_categorical(frame, ["PORT", "PROTO"], levels)
    assert codes.dtype == np.int64 and codes.shape == (5, 2)
    # most frequent -> 1, next -> 2; rare (22, beyond k) and unseen (9999, 1) -> 0
    np.testing.assert_array_equal(codes[:, 0], [1, 2, 0, 0, 1])
    np.testing.assert_array_equal(codes[:, 1], [2, 1, 0, 1, 1])
    assert encode_categorical(frame, [], {}).shape == (5, 0)


# ----------------------------------------------------------------------------- split
def test_split_bounds_chronological_sizes():
    b = split_bounds(1000, 0.1, 0.1, 8)
    assert b == {"train": (0, 800), "val": (800, 900), "test": (900, 1000)}
    # fractions are rounded up for the held-out parts
    b = split_bounds(1001, 0.1, 0.2, 8)
    assert b == {"train": (0, 699), "val": (699, 900), "test": (900, 1001)}  # ceil(200.2), ceil(100.1)
    # no validation split
    b = split_bounds(100, 0.25, 0.0, 8)
    assert b["train"] == (0, 75) and b["test"] == (75, 100) and b["val"][0] == b["val"][1]


def test_split_bounds_exact_fraction_is_not_rounded_up_by_float_error():
    # 100 * 0.07 is 7.000000000000001 in floating point; 7 % of 100 rows is 7 rows, not 8.
    b = split_bounds(100, 0.07, 0.07, 1)
    assert b["test"] == (93, 100)
    assert b["val"] == (86, 93)


def test_split_bounds_rejects_a_split_smaller_than_a_window():
    with pytest.raises(ValueError, match="test split has 3 rows, fewer than one window of 8"):
        split_bounds(30, 0.1, 0.5, 8)
    with pytest.raises(ValueError, match="val split"):
        split_bounds(100, 0.1, 0.05, 8)


# ----------------------------------------------------------------------------- windows
def test_flow_windows_by_hand():
    n, w = 12, 4
    x_num = np.arange(n, dtype=np.float32)[:, None] * np.array([[1.0, -1.0]], dtype=np.float32)  # (N, 2)
    x_cat = np.arange(n, dtype=np.int64)[:, None] + 100  # (N, 1)
    y = np.array([0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0])
    y_class = np.array([0, 0, 0, 2, 0, 1, 2, 0, 0, 0, 1, 0])
    ds = FlowWindows(x_num, x_cat, y, y_class, w)
    assert len(ds) == n - w + 1
    (xn, xc), labels = ds.batch(np.array([0, 3, 8]))
    assert tuple(xn.shape) == (3, w, 2) and tuple(xc.shape) == (3, w, 1)
    for b, j in enumerate([0, 3, 8]):
        np.testing.assert_array_equal(xn[b, :, 0].numpy(), np.arange(j, j + w))  # rows j..j+W-1, in order
        np.testing.assert_array_equal(xc[b, :, 0].numpy(), np.arange(j, j + w) + 100)
    np.testing.assert_array_equal(labels.numpy(), y[[3, 6, 11]])  # label of the last flow
    np.testing.assert_array_equal(ds.attack, y[w - 1 :])
    np.testing.assert_array_equal(ds.classes, y_class[w - 1 :])

    multi = FlowWindows(x_num, x_cat, y, y_class, w, task="multiclass")
    np.testing.assert_array_equal(multi.labels, y_class[w - 1 :])
    _, labels = multi.batch(np.array([0, 3]))
    np.testing.assert_array_equal(labels.numpy(), [2, 2])


# ----------------------------------------------------------------------------- the stage
def test_preprocess_splits_are_chronological_with_fraction_sizes(processed):
    n = processed["raw"].height
    p = processed["params"].preprocess.netflow
    n_test, n_val = math.ceil(n * p.test_fraction), math.ceil(n * p.val_fraction)
    expected = {"train": (0, n - n_test - n_val), "val": (n - n_test - n_val, n - n_test), "test": (n - n_test, n)}
    rows = {s: processed["tensors"][s]["row"] for s in SPLITS}
    for s, (a, b) in expected.items():
        np.testing.assert_array_equal(rows[s], np.arange(a, b))  # consecutive, in time order
        assert processed["schema"]["splits"][s]["rows"] == b - a
    # together they are exactly the raw file, train first, test last
    np.testing.assert_array_equal(np.concatenate([rows[s] for s in SPLITS]), np.arange(n))
    assert rows["train"].max() < rows["val"].min() and rows["val"].max() < rows["test"].min()


def test_preprocess_tensors_match_raw_rows(processed):
    raw, schema = processed["raw"], processed["schema"]
    classes = schema["classes"]
    for s in SPLITS:
        t = processed["tensors"][s]
        part = raw[t["row"].tolist()]
        assert t["x_num"].dtype == np.float32 and t["x_cat"].dtype == np.int64
        assert t["x_num"].shape == (part.height, len(schema["numeric_fields"]))
        assert t["x_cat"].shape == (part.height, len(schema["categorical_fields"]))
        np.testing.assert_array_equal(t["y"], part["is_attack"].cast(pl.Int64).to_numpy())
        np.testing.assert_array_equal(t["y_class"], [classes.index(c) for c in part["label"].to_list()])


def test_preprocess_numeric_fitted_on_training_rows(processed):
    raw, schema = processed["raw"], processed["schema"]
    fields = schema["numeric_fields"]
    a, b = 0, schema["splits"]["train"]["rows"]
    train_x = NumericScaler.clean(raw[a:b].select(fields).to_numpy(), 1e9)
    minimum, rng = train_x.min(axis=0), train_x.max(axis=0) - train_x.min(axis=0)
    np.testing.assert_array_equal(schema["numeric_scaler"]["minimum"], minimum)
    np.testing.assert_array_equal(schema["numeric_scaler"]["range"], rng)
    np.testing.assert_allclose(processed["tensors"]["train"]["x_num"], expected_numeric(train_x, minimum, rng),
                               rtol=1e-5, atol=1e-6)


def test_preprocess_categorical_levels_from_training_rows(processed):
    raw, schema = processed["raw"], processed["schema"]
    k = processed["params"].preprocess.netflow.n_categorical_levels
    assert k == 32
    n_train = schema["splits"]["train"]["rows"]
    for i, f in enumerate(schema["categorical_fields"]):
        counts = Counter(raw[f][:n_train].to_list())
        expected = [lvl for lvl, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
        assert schema["levels"][f] == expected, f
        assert schema["categorical_levels"][i] == len(expected) + 1
        code = {lvl: j + 1 for j, lvl in enumerate(expected)}
        for s in SPLITS:
            t = processed["tensors"][s]
            values = raw[f][t["row"].tolist()].to_list()
            np.testing.assert_array_equal(t["x_cat"][:, i], [code.get(v, 0) for v in values], err_msg=f"{s}.{f}")


def test_preprocess_windows_never_cross_a_split(processed):
    """Window j of a split = rows j..j+W-1 of that split (seen through the saved ``row`` tensor)."""
    w = processed["schema"]["window"]
    assert w == 8
    for s in SPLITS:
        t = processed["tensors"][s]
        a, b = int(t["row"][0]), int(t["row"][-1]) + 1
        # windows over the row ids themselves: every window's context rows are what the model sees
        ds = FlowWindows(t["row"][:, None].astype(np.float32), t["row"][:, None], t["y"], t["y_class"], w)
        assert len(ds) == (b - a) - w + 1 == processed["schema"]["splits"][s]["windows"]
        (rows, _), _ = ds.batch(np.arange(len(ds)))
        rows = rows[..., 0].numpy().astype(np.int64)  # (N_windows, W)
        np.testing.assert_array_equal(rows[:, 0], np.arange(a, b - w + 1))
        assert (np.diff(rows, axis=1) == 1).all()  # consecutive
        assert rows.min() >= a and rows.max() < b  # inside this split only

        # the stage's own loader gives the same windows and last-flow labels
        loaded = load_split(s, root=processed["root"])
        idx = np.array([0, len(loaded) // 2, len(loaded) - 1])
        (xn, xc), labels = loaded.batch(idx)
        for bi, j in enumerate(idx):
            np.testing.assert_array_equal(xn[bi].numpy(), t["x_num"][j : j + w])
            np.testing.assert_array_equal(xc[bi].numpy(), t["x_cat"][j : j + w])
        np.testing.assert_array_equal(labels.numpy(), t["y"][idx + w - 1])
        multi = load_split(s, task="multiclass", root=processed["root"])
        np.testing.assert_array_equal(multi.labels, t["y_class"][w - 1 :])


def test_schema_json_contents(processed):
    schema, raw, params = processed["schema"], processed["raw"], processed["params"]
    spec = params.ingest.netflow.spec
    p = params.preprocess.netflow
    assert schema["domain"] == "netflow" and schema["spec"] == spec.name
    assert schema["numeric_fields"] == spec.numeric_fields and len(schema["numeric_fields"]) == 28
    assert schema["categorical_fields"] == spec.categorical_fields and len(schema["categorical_fields"]) == 9
    assert set(schema["levels"]) == set(spec.categorical_fields)
    assert all(1 <= len(v) <= 32 for v in schema["levels"].values())
    assert len(schema["numeric_scaler"]["minimum"]) == len(schema["numeric_scaler"]["range"]) == 28
    assert schema["numeric_scaler"]["max_abs"] == p.max_abs_value
    labels = set(raw["label"].unique().to_list())
    assert schema["classes"][0] == "Benign" == schema["benign_value"]
    assert schema["classes"][1:] == sorted(labels - {"Benign"})
    assert schema["label_column"] == spec.label_column and schema["renames"] == spec.renames
    assert schema["window"] == p.window
    classes = schema["classes"]
    for s in SPLITS:
        info = schema["splits"][s]
        t = processed["tensors"][s]
        assert info["rows"] == len(t["row"]) and info["windows"] == info["rows"] - p.window + 1
        counts = Counter(t["y_class"][p.window - 1 :].tolist())
        assert info["class_windows"] == {c: counts.get(i, 0) for i, c in enumerate(classes)}
        assert sum(info["class_windows"].values()) == info["windows"]
    assert processed["manifest"]["splits"] == schema["splits"]
    assert processed["manifest"]["outputs"]["processed"]
    assert sorted(p.name for p in processed["proc"].iterdir()) == [
        "schema.json", "test.safetensors", "train.safetensors", "val.safetensors"]


def test_transform_frame_reproduces_saved_features(processed):
    """Scoring applies the saved schema: the same rows must give the same features."""
    t = processed["tensors"]["test"]
    part = processed["raw"][t["row"].tolist()]
    x_num, x_cat = transform_frame(part, processed["schema"])
    np.testing.assert_array_equal(x_num, t["x_num"])
    np.testing.assert_array_equal(x_cat, t["x_cat"])


# ----------------------------------------------------------------------------- scoring raw records
@pytest.fixture(scope="module")
def scoring(processed, tmp_path_factory):
    """An untrained model of the processed schema, and the test rows as raw CSV records (strings)."""
    import models

    schema = processed["schema"]
    sources = sorted((processed["root"] / "data" / "raw" / "netflow" / "source").glob("*.csv"))
    frame = read_for_scoring([str(f) for f in sources], processed["params"].ingest.netflow.spec,
                             cache=tmp_path_factory.mktemp("cache"))
    assert frame.height == processed["raw"].height
    n_test = schema["splits"]["test"]["rows"]
    torch.manual_seed(0)
    cfg = DOMAIN.model_config(processed["params"], schema)
    model = models.build("netflow/flowtransformer", cfg).eval()
    return {"model": model, "cfg": cfg, "records": frame.tail(n_test), "schema": schema}


def test_score_frame_matches_the_processed_windows(processed, scoring):
    """Serving applies exactly the training-time preprocessing: same windows, same probabilities."""
    from tasks.loop import predict, probabilities

    schema, w = scoring["schema"], scoring["schema"]["window"]
    records = scoring["records"]
    out = score(scoring["model"], {"schema": schema, "task": "binary"}, records)
    assert out.height == records.height
    full = out["full_context"].to_numpy()
    assert not full[: w - 1].any() and full[w - 1 :].all()
    test = load_split("test", root=processed["root"])
    expected = probabilities(predict(scoring["model"], test), "binary")
    np.testing.assert_allclose(out["p_attack"].to_numpy()[w - 1 :], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), (out["p_attack"].to_numpy() >= 0.5).astype(int))

    # the first row's window is W copies of itself (left padding)
    t = processed["tensors"]["test"]
    xn = torch.from_numpy(np.repeat(t["x_num"][:1], w, axis=0))[None]  # (1, W, Fn)
    xc = torch.from_numpy(np.repeat(t["x_cat"][:1], w, axis=0))[None]  # (1, W, Fc)
    with torch.no_grad():
        p0 = probabilities(scoring["model"](xn, xc).numpy(), "binary")[0]
    assert out["p_attack"][0] == pytest.approx(p0, rel=1e-5)

    # unlabelled input scores the same
    unlabelled = records.drop("Attack", "Label")
    out2 = score(scoring["model"], {"schema": schema, "task": "binary"}, unlabelled)
    np.testing.assert_array_equal(out2["p_attack"].to_numpy(), out["p_attack"].to_numpy())


def test_score_frame_multiclass_columns(scoring):
    import models

    schema = scoring["schema"]
    torch.manual_seed(0)
    model = models.build("netflow/flowtransformer", {**scoring["cfg"], "n_outputs": len(schema["classes"])}).eval()
    meta = {"schema": schema, "task": "multiclass", "class_names": schema["classes"]}
    out = score(model, meta, scoring["records"].head(20))
    probs = out.select([f"p_{c}" for c in schema["classes"]]).to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["p_attack"].to_numpy(), 1.0 - probs[:, 0])
    np.testing.assert_array_equal(out["predicted_class"].to_list(),
                                  [schema["classes"][i] for i in probs.argmax(axis=1)])
    np.testing.assert_array_equal(out["prediction"].to_numpy(), (probs.argmax(axis=1) != 0).astype(int))


def test_score_frame_rejects_missing_columns(scoring):
    with pytest.raises(SchemaError, match="IN_BYTES"):
        score(scoring["model"], {"schema": scoring["schema"]}, scoring["records"].drop("IN_BYTES"))


def test_score_frame_of_fewer_rows_than_a_window(scoring):
    out = score(scoring["model"], {"schema": scoring["schema"]}, scoring["records"].head(3))
    assert out.height == 3 and not out["full_context"].any()
    assert np.isfinite(out["p_attack"].to_numpy()).all()


# ----------------------------------------------------------------------------- re-runs on a copy
def _rewrite_raw(root: Path, fn) -> None:
    path = root / "data" / "raw" / "netflow" / "flows.parquet"
    pl.read_parquet(path).pipe(fn).write_parquet(path)


def test_statistics_ignore_validation_and_test_rows(raw_project, processed):
    """Extreme values and a flood of a new level in val/test rows change none of the fitted statistics."""
    schema0 = processed["schema"]
    n_train = schema0["splits"]["train"]["rows"]
    n = processed["raw"].height
    field, port = "IN_BYTES", "L4_DST_PORT"
    j = schema0["numeric_fields"].index(field)
    last = n - 1

    def poison(f: pl.DataFrame) -> pl.DataFrame:
        idx = pl.int_range(pl.len())
        return f.with_columns(
            pl.when(idx == last).then(5e8).when(idx == n_train).then(-5e8).otherwise(pl.col(field)).alias(field),
            pl.when(idx >= n_train).then(pl.lit("31337")).otherwise(pl.col(port)).alias(port),
        )

    _rewrite_raw(raw_project, poison)
    preprocess(load_params())
    schema1 = load_schema()
    assert schema1["numeric_scaler"] == schema0["numeric_scaler"]
    assert schema1["levels"] == schema0["levels"]
    assert "31337" not in schema1["levels"][port]
    test = load_file(str(raw_project / "data" / "processed" / "netflow" / "test.safetensors"))
    val = load_file(str(raw_project / "data" / "processed" / "netflow" / "val.safetensors"))
    mn, rg = schema0["numeric_scaler"]["minimum"][j], schema0["numeric_scaler"]["range"][j]
    assert 5e8 > mn + rg  # the test value is beyond the training range ...
    assert test["x_num"][-1, j] == pytest.approx(math.log(5e8 - mn + 1) / math.log(rg + 1), rel=1e-5)
    assert test["x_num"][-1, j] > 1.0  # ... and maps above 1 (no clipping)
    assert val["x_num"][0, j] == 0.0  # below the training minimum
    c = schema0["categorical_fields"].index(port)
    assert (test["x_cat"][:, c] == 0).all() and (val["x_cat"][:, c] == 0).all()  # unseen level -> 0


def test_statistics_follow_training_rows(raw_project, processed):
    """Positive control: the same extreme value in a *training* row does move min/range."""
    j = processed["schema"]["numeric_fields"].index("IN_BYTES")
    _rewrite_raw(raw_project, lambda f: f.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(5e8).otherwise(pl.col("IN_BYTES")).alias("IN_BYTES")))
    preprocess(load_params())
    scaler = load_schema()["numeric_scaler"]
    assert scaler["range"][j] == 5e8 - scaler["minimum"][j]
    assert scaler["range"][j] != processed["schema"]["numeric_scaler"]["range"][j]


def test_bad_training_values_are_zero_before_fitting(raw_project, processed):
    """Null (empty CSV cell), inf and |x| > 1e9 in training rows count as 0 for the fit and the transform."""
    field = "IN_BYTES"
    j = processed["schema"]["numeric_fields"].index(field)
    bad = {5: None, 6: float("inf"), 7: 2e9, 8: -3e9, 9: float("nan")}

    def corrupt(f: pl.DataFrame) -> pl.DataFrame:
        idx = pl.int_range(pl.len())
        expr = pl.col(field)
        for row, value in bad.items():
            expr = pl.when(idx == row).then(pl.lit(value, dtype=pl.Float64)).otherwise(expr)
        return f.with_columns(expr.alias(field))

    _rewrite_raw(raw_project, corrupt)
    preprocess(load_params())
    n_train = processed["schema"]["splits"]["train"]["rows"]
    col = processed["raw"][field][:n_train].to_numpy().copy()
    col[list(bad)] = 0.0
    scaler = load_schema()["numeric_scaler"]
    assert scaler["minimum"][j] == col.min() == 0.0
    assert scaler["range"][j] == col.max() - col.min()
    x = load_file(str(raw_project / "data" / "processed" / "netflow" / "train.safetensors"))["x_num"]
    np.testing.assert_array_equal(x[list(bad), j], 0.0)
    assert np.isfinite(x).all()


def test_small_k_and_other_window(raw_project, processed):
    params = load_params(overrides=["preprocess.netflow.n_categorical_levels=3", "preprocess.netflow.window=5",
                                    "preprocess.netflow.val_fraction=0.2"])
    preprocess(params)
    schema = load_schema()
    n_train = schema["splits"]["train"]["rows"]
    n = processed["raw"].height
    assert n_train == n - math.ceil(0.1 * n) - math.ceil(0.2 * n)
    assert schema["window"] == 5
    tensors = load_file(str(raw_project / "data" / "processed" / "netflow" / "train.safetensors"))
    raw = processed["raw"]
    for i, f in enumerate(schema["categorical_fields"]):
        counts = Counter(raw[f][:n_train].to_list())
        expected = [lvl for lvl, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]]
        assert schema["levels"][f] == expected
        assert schema["categorical_levels"][i] == len(expected) + 1 <= 4
        assert tensors["x_cat"][:, i].max() <= 3
        # code 1 is the most frequent training level
        if expected:
            assert (tensors["x_cat"][:, i] == 1).sum() == counts[expected[0]]
    # the "PORT" field has more than 3 training levels, so some training rows fall into 0 ("other")
    port = schema["categorical_fields"].index("L4_DST_PORT")
    assert (tensors["x_cat"][:, port] == 0).any()
    assert len(load_split("train")) == n_train - 5 + 1


def test_preprocess_without_validation_split(raw_project, processed):
    preprocess(load_params(overrides=["preprocess.netflow.val_fraction=0.0"]))
    proc = raw_project / "data" / "processed" / "netflow"
    assert not (proc / "val.safetensors").exists()
    schema = load_schema()
    assert set(schema["splits"]) == {"train", "test"}
    n = processed["raw"].height
    assert schema["splits"]["train"]["rows"] == n - math.ceil(0.1 * n)
    assert load_file(str(proc / "test.safetensors"))["row"][0] == schema["splits"]["train"]["rows"]


def test_preprocess_is_deterministic(raw_project, processed):
    m = preprocess(load_params())
    assert m["outputs"]["processed"] == processed["manifest"]["outputs"]["processed"]


def test_preprocess_without_ingest_names_the_stage(project):
    with pytest.raises(FileNotFoundError, match="ingest"):
        preprocess(load_params())
