"""Issue 18, netflow: flow records shipped as train + test files, or as one file per class, from a profile alone.

Small files of each layout are generated where the example profiles of ``profiles/examples/`` point
(``data/incoming/...``) and ``python -m tasks <stage> netflow --profile ...`` runs on them (the CLI's ``main``
in this process). Checked: the separate test file is scored whole (window 1) with validation from the training
file, and train + evaluate run on that split; per-class files split chronologically are refused with the class
counts (or warned about with the switch), and ``split: stratified`` gives a test set with every class and no row
in windows of two splits. Bad inputs: a test source whose columns differ, a group split whose column is missing;
each names the user's file and leaves ``data/`` as it was.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from safetensors.numpy import load_file

from tasks.domains.netflow.synthetic import synthesize
from tests.conftest import data_tree, leftovers, run_cli, setup_project

RECORDS = "examples/netflow-train-test-files"
PER_CLASS = "examples/netflow-per-class-files"
CLASSES = ("Normal", "Exploits", "Generic", "DoS")
NUMERIC = ["dur", "spkts", "dpkts", "sbytes", "dbytes", "rate", "sttl", "dttl", "sload", "dload", "smean", "dmean"]
_TEMP_PATH = re.compile(r"/\.[^/\s]+\.[\w-]+\.tmp\b")


def records(n: int, seed: int) -> pl.DataFrame:
    """UNSW-NB15-like connection records: no IP columns, the class in ``attack_cat``, a 0/1 ``label`` column."""
    rng = np.random.default_rng(seed)
    cls = rng.choice(len(CLASSES), size=n, p=[0.5, 0.2, 0.2, 0.1])
    cols: dict[str, object] = {"id": np.arange(1, n + 1)}
    for j, name in enumerate(NUMERIC):
        cols[name] = np.round(rng.gamma(2.0, 10.0 * (1 + (cls + j) % 4), n), 3)
    cols["proto"] = np.where(cls == 3, "udp", rng.choice(["tcp", "udp", "arp"], n))
    cols["service"] = rng.choice(["-", "http", "dns", "ftp"], n)
    cols["state"] = np.where(cls == 0, "FIN", rng.choice(["INT", "CON", "REQ"], n))
    cols["attack_cat"] = np.asarray(CLASSES)[cls]
    cols["label"] = (cls != 0).astype(int)
    return pl.DataFrame(cols)


def write_records(project: Path, test: pl.DataFrame | None = None) -> tuple[Path, Path]:
    folder = project / "data" / "incoming" / "netflow-records"
    folder.mkdir(parents=True, exist_ok=True)
    records(600, 1).write_csv(folder / "train.csv")
    (records(300, 2) if test is None else test).write_csv(folder / "test.csv")
    return folder / "train.csv", folder / "test.csv"


def write_per_class(project: Path, n: int = 6000) -> dict[str, int]:
    """A NetFlow v2 capture written as one CSV per class (``<class>.csv``); returns the rows per class."""
    folder = project / "data" / "incoming" / "netflow-classes"
    folder.mkdir(parents=True, exist_ok=True)
    df = synthesize(n, 1, 0.3)
    counts = {}
    for (cls,), part in df.group_by(["Attack"], maintain_order=True):
        part.write_csv(folder / f"{cls}.csv")
        counts[cls] = part.height
    return counts








@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    return setup_project(tmp_path / "proj", monkeypatch)


def _processed(project: Path) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    proc = project / "data" / "processed" / "netflow"
    schema = json.loads((proc / "schema.json").read_text())
    return schema, {s: load_file(str(proc / f"{s}.safetensors")) for s in schema["splits"]}


def test_train_and_test_files_from_the_profile(project, capfd):
    """The test file is the test set, every row scored; validation comes from the training file; train and
    evaluate run on that split."""
    write_records(project)
    rc, out = run_cli(["ingest", "netflow", "--profile", RECORDS], capfd)
    assert rc == 0, out
    manifest = json.loads((project / "data/raw/netflow/manifest.json").read_text())
    assert manifest["rows"] == 600 and manifest["test_rows"] == 300
    assert manifest["test_source"] == "data/incoming/netflow-records/test.csv"
    assert [Path(f) for f in manifest["test_files"]] == [project / "data/incoming/netflow-records/test.csv"]
    assert set(manifest["outputs"]) == {"flows", "test_flows"} and manifest["keep_columns"] == []
    raw = pl.read_parquet(project / "data/raw/netflow/flows.parquet")
    test_raw = pl.read_parquet(project / "data/raw/netflow/test_flows.parquet")
    assert raw.columns == test_raw.columns and "IPV4_SRC_ADDR" not in raw.columns  # optional keep columns
    assert test_raw["source_file"].unique().to_list() == [Path(f).name for f in manifest["test_files"]]
    assert test_raw["label"].to_list() == records(300, 2)["attack_cat"].to_list()

    rc, out = run_cli(["preprocess", "netflow", "--profile", RECORDS], capfd)
    assert rc == 0, out
    schema, t = _processed(project)
    assert schema["split"]["test_source"] is True and schema["window"] == 1
    assert schema["splits"]["test"]["rows"] == schema["splits"]["test"]["windows"] == 300  # every row scored
    np.testing.assert_array_equal(t["test"]["row"], np.arange(300))  # the test file, in its order
    np.testing.assert_array_equal(t["train"]["row"], np.arange(540))  # validation: the last 10 % of train.csv
    np.testing.assert_array_equal(t["val"]["row"], np.arange(540, 600))
    assert sum(schema["splits"]["test"]["class_windows"].values()) == 300

    for stage in ("train", "evaluate"):
        rc, out = run_cli([stage, "netflow", "--profile", RECORDS, "--set", "compress.netflow.methods=[]"], capfd)
        assert rc == 0, f"{stage}: {out}"
    metrics = json.loads((project / "reports/netflow/metrics.json").read_text())
    assert "teacher" in json.dumps(metrics)


def test_per_class_files_refused_chronologically_and_stratified_covers_every_class(project, capfd, caplog):
    counts = write_per_class(project)
    assert len(counts) == 6
    rc, out = run_cli(["ingest", "netflow", "--profile", PER_CLASS], capfd)
    assert rc == 0, out
    before = data_tree(project)

    # The default chronological split tests on the last files only: refused, with the classes and their counts.
    rc, out = run_cli(["preprocess", "netflow", "--profile", PER_CLASS, "--set", "preprocess.netflow.split=chronological"],
                   capfd)
    assert rc == 1
    assert "data/incoming/netflow-classes/*.csv" in out and "hold no 'Benign' window" in out
    assert re.search(r"Benign: train \d+, val 0, test 0", out), out
    assert "use preprocess.netflow.split=stratified" in out
    assert data_tree(project) == before and not leftovers(project)

    # ... or warned about, loudly, with the switch.
    with caplog.at_level(logging.WARNING):
        rc, out = run_cli(["preprocess", "netflow", "--profile", PER_CLASS, "--set", "preprocess.netflow.split=chronological",
                        "--set", "preprocess.netflow.unseen_classes=warn"], capfd)
    assert rc == 0, out
    assert any("hold no 'Benign' window" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)

    # The profile's stratified split: every class in every split, no row in windows of two splits.
    rc, out = run_cli(["preprocess", "netflow", "--profile", PER_CLASS], capfd)
    assert rc == 0, out
    schema, t = _processed(project)
    assert schema["split"]["strategy"] == "stratified" and schema["split"]["block_rows"] == 64
    for split in ("train", "val", "test"):
        cw = schema["splits"][split]["class_windows"]
        assert set(cw) == set(counts) and min(cw.values()) > 0, (split, cw)
    w = schema["window"]
    used = {}
    for split, tensors in t.items():
        ends, starts = tensors["end"], tensors["start"]
        assert (ends - starts >= w - 1).all()  # inside training data no window is padded
        rows = tensors["row"][ends[:, None] - np.arange(w)[None, :]]  # (N, W) raw rows of every window
        used[split] = set(rows.ravel().tolist())
        # a window's rows are consecutive rows of one file
        assert (np.diff(rows[:, ::-1], axis=1) == 1).all()
    assert not used["train"] & used["test"] and not used["train"] & used["val"] and not used["val"] & used["test"]
    total = sum(schema["splits"][s]["windows"] + schema["splits"][s]["context_rows"] for s in t)
    assert total == sum(counts.values())  # every row is a target or counted as context


def test_test_source_with_other_columns_is_refused(project, capfd):
    test = records(300, 2).drop("sload").with_columns(pl.lit(1).alias("extra"))
    write_records(project, test)
    before = data_tree(project)
    rc, out = run_cli(["ingest", "netflow", "--profile", RECORDS], capfd)
    assert rc == 1
    assert "data/incoming/netflow-records/test.csv: the test source's columns differ" in out
    assert re.search(r"missing \['sload'\] \(in \S*data/incoming/netflow-records/train\.csv\)", out), out
    assert "['extra'] not in" in out
    assert not _TEMP_PATH.search(out), out
    assert data_tree(project) == before == {} and not leftovers(project)


def test_group_split_on_a_missing_column_is_refused(project, capfd):
    write_records(project)
    rc, out = run_cli(["ingest", "netflow", "--profile", RECORDS], capfd)
    assert rc == 0, out
    before = data_tree(project)
    rc, out = run_cli(["preprocess", "netflow", "--profile", RECORDS, "--set", "preprocess.netflow.split=group",
                    "--set", "preprocess.netflow.group_by=host"], capfd)
    assert rc == 1
    assert "data/incoming/netflow-records/train.csv" in out and "group_by names the column 'host'" in out
    assert "ingest.netflow.spec.keep_columns" in out
    assert data_tree(project) == before and not leftovers(project)
