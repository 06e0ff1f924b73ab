"""Issue 18, netflow: split strategies, windows inside runs, optional keep columns (the parts, on small data).

The end-to-end runs through the example profiles are in ``tests/flows/test_netflow_own_data.py``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError
from safetensors.numpy import load_file

from tasks.domains.netflow.data import FlowWindows
from tasks.domains.netflow.ingest import ingest
from tasks.domains.netflow.params import FlowDatasetSpec, NetflowPreprocess
from tasks.domains.netflow.preprocess import _check_coverage, _plan_stratified, preprocess, windows_of
from tasks.domains.netflow.records import SchemaError, write_flows
from tasks.domains.netflow.synthetic import generate, synthesize
from tasks.params import load_params

IPS = ["IPV4_SRC_ADDR", "IPV4_DST_ADDR"]


# ----------------------------------------------------------------------------- windows
def test_windows_stay_inside_runs_context_or_padding():
    units = np.array([0, 0, 0, 1, 1, 2])
    ends, starts, padded, context = windows_of(units, 3, pad=False)
    assert ends.tolist() == [2] and starts.tolist() == [0] and (padded, context) == (0, 5)
    ends, starts, padded, context = windows_of(units, 3, pad=True)
    assert ends.tolist() == [0, 1, 2, 3, 4, 5] and starts.tolist() == [0, 0, 0, 3, 3, 5] and (padded, context) == (5, 0)
    ends, starts, padded, context = windows_of(units, 1, pad=False)  # window 1: every row, nothing padded
    assert ends.tolist() == list(range(6)) and (padded, context) == (0, 0)


def test_padded_windows_repeat_the_first_row_of_their_run():
    x = np.arange(6, dtype=np.float32)[:, None]
    ends, starts, _, _ = windows_of(np.array([0, 0, 0, 1, 1, 1]), 3, pad=True)
    ds = FlowWindows(x, x.astype(np.int64), np.arange(6) % 2, np.arange(6) % 3, 3, ends=ends, starts=starts)
    (xn, _), y = ds.batch(np.arange(6))
    assert xn[..., 0].numpy().tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [3, 3, 3], [3, 3, 4], [3, 4, 5]]
    assert y.tolist() == [0, 1, 0, 1, 0, 1] and ds.classes.tolist() == [0, 1, 2, 0, 1, 2]
    plain = FlowWindows(x, x.astype(np.int64), np.zeros(6), np.zeros(6), 3)  # no runs given: today's windows
    assert plain.ends.tolist() == [2, 3, 4, 5] and plain.starts.tolist() == [0, 0, 0, 0]


def test_stratified_blocks_spread_every_class_and_never_split_a_block():
    # One file per class, as per-class files are read: classes in long contiguous runs.
    y = np.repeat([0, 1, 2, 3], [800, 300, 130, 40])
    files = np.repeat([0, 1, 2, 3], [800, 300, 130, 40])
    p = NetflowPreprocess(window=4, split="stratified", block_rows=16)
    plan, size = _plan_stratified(y, files, 4, p, test_apart=False)
    assert size == 16
    seen = {}
    for name, (rows, blocks) in plan.items():
        assert set(np.unique(y[rows])) == {0, 1, 2, 3}, name  # every class in every split
        for b in np.unique(blocks):
            assert b not in seen, "a block in two splits"
            seen[b] = name
            members = rows[blocks == b]
            assert (np.diff(members) == 1).all() and len(set(files[members])) == 1  # contiguous, one file
            assert len(members) >= 4  # a short tail joins the block before it
    shares = {n: len(r) / len(y) for n, (r, _) in plan.items()}
    assert 0.05 < shares["test"] < 0.16 and 0.05 < shares["val"] < 0.16
    again, _ = _plan_stratified(y, files, 4, p, test_apart=False)
    assert all((again[n][0] == plan[n][0]).all() for n in plan)  # the seed fixes it
    other, _ = _plan_stratified(y, files, 4, NetflowPreprocess(window=4, split="stratified", block_rows=16, seed=1),
                                test_apart=False)
    assert not (other["test"][0].shape == plan["test"][0].shape and (other["test"][0] == plan["test"][0]).all())


# ----------------------------------------------------------------------------- coverage checks
def _counts(train, val, test):
    return {"train": np.array(train), "val": np.array(val), "test": np.array(test)}


def test_a_split_without_benign_is_refused_naming_classes_and_counts():
    p = NetflowPreprocess()
    with pytest.raises(SchemaError) as info:
        _check_coverage("flows.parquet", "my/flows-*.csv", ["Benign", "DoS"], _counts([50, 20], [5, 3], [0, 9]), p)
    msg = str(info.value)
    assert msg.startswith("my/flows-*.csv: the test split(s) hold no 'Benign' window")
    assert "Benign: train 50, val 5, test 0; DoS: train 20, val 3, test 9" in msg
    assert "preprocess.netflow.unseen_classes=warn" in msg


def test_a_missing_attack_class_warns_by_default_and_errors_when_asked(caplog, capsys):
    counts = _counts([50, 20, 7], [5, 3, 0], [6, 9, 0])
    with caplog.at_level(logging.WARNING):
        _check_coverage("flows.parquet", "src.csv", ["Benign", "DoS", "Theft"], counts, NetflowPreprocess())
    (record,) = [r for r in caplog.records if "Theft" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "class(es) ['Theft'] have training windows but none in the test / val split" in record.getMessage()
    assert "Theft: train 7, val 0, test 0" in record.getMessage() and "Theft" in capsys.readouterr().out
    with pytest.raises(SchemaError, match=r"\['Theft'\].*preprocess\.netflow\.missing_classes=warn"):
        _check_coverage("flows.parquet", "src.csv", ["Benign", "DoS", "Theft"], counts,
                        NetflowPreprocess(missing_classes="error"))
    _check_coverage("flows.parquet", "src.csv", ["Benign", "DoS"], _counts([5, 2], [1, 1], [1, 1]),
                    NetflowPreprocess(missing_classes="error"))  # nothing missing: nothing said


def test_params_name_what_a_split_needs():
    with pytest.raises(ValidationError, match="group_by"):
        NetflowPreprocess(split="group")
    with pytest.raises(ValidationError, match="source_file"):
        FlowDatasetSpec(keep_columns=["source_file"])


# ----------------------------------------------------------------------------- keep columns
def test_keep_columns_are_optional_unless_required(tmp_path):
    df = synthesize(300, 2, 0.3)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    df.head(150).write_csv(a)
    df.tail(150).drop(IPS).write_csv(b)
    spec = FlowDatasetSpec(keep_columns=IPS)
    out = tmp_path / "out.parquet"
    got = write_flows([str(a), str(b)], spec, out, cache=tmp_path / "c")
    flows = pl.read_parquet(out)
    assert got.keep == IPS
    assert flows["IPV4_SRC_ADDR"].to_list() == df.head(150)["IPV4_SRC_ADDR"].cast(pl.String).to_list() + [""] * 150
    assert flows["source_file"].to_list() == [a.name] * 150 + [b.name] * 150  # below the files' common folder

    got = write_flows([str(b)], spec, out, cache=tmp_path / "c")  # no file has them: left out, no error
    assert got.keep == [] and not set(IPS) & set(pl.read_parquet(out).columns)

    required = FlowDatasetSpec(keep_columns=IPS, required_columns=["IPV4_SRC_ADDR"])
    with pytest.raises(SchemaError, match=r"b\.csv: missing required columns \['IPV4_SRC_ADDR'\]"):
        write_flows([str(a), str(b)], required, out, cache=tmp_path / "c")


# ----------------------------------------------------------------------------- the stage on small sources
def _run(overrides: list[str]) -> tuple[dict, dict]:
    ingest(load_params(overrides=overrides))
    manifest = preprocess(load_params(overrides=overrides))
    proc = Path("data/processed/netflow")
    schema = json.loads((proc / "schema.json").read_text())
    return manifest, {**schema, "tensors": {s: load_file(str(proc / f"{s}.safetensors")) for s in schema["splits"]}}


def test_windows_stop_at_file_boundaries_unless_one_capture(project):
    generate(project / "in", n_flows=3000, seed=5, n_files=2)  # the train split holds the boundary (row 1500)
    base = [f"ingest.netflow.source={project / 'in' / '*.csv'}"]
    _, apart = _run(base)
    _, joined = _run([*base, "ingest.netflow.one_capture=true"])
    w = apart["window"]
    assert apart["split"]["one_capture"] is False and joined["split"]["one_capture"] is True
    assert apart["splits"]["train"]["runs"] == 2 and joined["splits"]["train"]["runs"] == 1
    assert joined["splits"]["train"]["windows"] - apart["splits"]["train"]["windows"] == w - 1
    t = apart["tensors"]["train"]
    assert not ((t["end"] - (w - 1) < 1500) & (t["end"] >= 1500)).any()  # no window spans row 1499 -> 1500
    assert apart["splits"]["test"] == joined["splits"]["test"]  # one file there: the same windows


def test_group_split_keeps_groups_whole_and_windows_inside_a_group(project):
    df = synthesize(3000, 6, 0.3).with_row_index("i").with_columns(
        (pl.lit("h") + (pl.col("i") % 12).cast(pl.String)).alias("host")).drop("i")
    (project / "in").mkdir()
    df.write_csv(project / "in" / "flows.csv")
    _, s = _run([f"ingest.netflow.source={project / 'in' / 'flows.csv'}", "ingest.netflow.spec.keep_columns=[host]",
                 "preprocess.netflow.split=group", "preprocess.netflow.group_by=host",
                 "preprocess.netflow.unseen_classes=warn"])
    groups = s["split"]["groups"]
    assert not set(groups["train"]) & set(groups["test"]) and not set(groups["val"]) & set(groups["test"])
    assert groups["test"] and groups["val"]
    host = pl.read_parquet("data/raw/netflow/flows.parquet")["host"].to_numpy()
    w = s["window"]
    for name, t in s["tensors"].items():
        assert set(host[t["row"]]) == set(groups[name])
        rows = t["row"][t["end"][:, None] - np.arange(w)[None, :]]  # (N, W)
        assert (host[rows] == host[rows[:, :1]]).all()  # one host per window
        assert (np.diff(rows[:, ::-1], axis=1) > 0).all()  # in time order


def test_sort_by_a_kept_column_sorts_numbers_as_numbers(project):
    df = synthesize(2000, 7, 0.3)
    ts = np.random.default_rng(0).permutation(2000)
    df = df.with_columns(pl.Series("ts", ts.astype(str)))  # text: "10" < "9" unless read as numbers
    (project / "in").mkdir()
    df.write_csv(project / "in" / "flows.csv")
    _, s = _run([f"ingest.netflow.source={project / 'in' / 'flows.csv'}", "ingest.netflow.spec.keep_columns=[ts]",
                 "preprocess.netflow.sort_by=ts", "preprocess.netflow.unseen_classes=warn"])
    rows = np.concatenate([s["tensors"][n]["row"] for n in ("train", "val", "test")])
    np.testing.assert_array_equal(ts[rows], np.arange(2000))  # train | val | test in ts order


def test_source_file_names_are_relative_and_carry_no_credentials():
    from tasks.domains.netflow.records import source_names

    assert source_names(["s3://bucket/captures/day1.csv"]) == ["day1.csv"]
    assert source_names(["/data/run1/flows.csv", "/data/run2/flows.csv"]) == ["run1/flows.csv", "run2/flows.csv"]
    # the same files from a local folder and from a URL with credentials: the same column, no secret in it
    assert source_names(["https://user:hunter2pw@host/f/a.csv", "https://user:hunter2pw@host/f/b.csv"]) == \
        source_names(["/home/me/f/a.csv", "/home/me/f/b.csv"]) == ["a.csv", "b.csv"]
