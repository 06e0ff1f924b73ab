"""Ingest of flow records: real formats through polars, the dataset spec, and every bad-input case.

In every failure case nothing partial is left in data/ and the MLflow registry is unchanged.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import polars as pl
import pytest

from tasks import store
from tasks.domains.netflow.ingest import ingest
from tasks.domains.netflow.records import EmptySourceError, SchemaError
from tasks.domains.netflow.synthetic import NF_V2_COLUMNS, generate
from tasks.params import load_params
from tests.conftest import SHARED_DATA


@pytest.fixture
def csv_source(project) -> Path:
    """A valid NF-v2 CSV of 1,000 synthetic flows outside data/."""
    files = generate(project / "incoming", n_flows=1000, seed=3)
    return files[0]


def _ingest_from(project, source: str, *extra: str):
    params = load_params(overrides=[f"ingest.netflow.source={source}", "ingest.netflow.retry_delay_s=0.01", *extra])
    return ingest(params)


def _data_tree(project) -> list[str]:
    data = project / "data"
    return sorted(str(p.relative_to(project)) for p in data.rglob("*")) if data.exists() else []


def _registry_versions(project) -> int:
    from tasks import tracking

    if not (project / "mlflow.db").exists():
        return 0
    return len(tracking.client().search_model_versions())


@pytest.fixture
def unchanged(project):
    """Asserts after the test body that data/ and the registry are exactly as before."""
    before_tree, before_reg = _data_tree(project), _registry_versions(project)
    yield
    assert _data_tree(project) == before_tree, "a failed ingest left files in data/"
    assert _registry_versions(project) == before_reg


def test_csv_parquet_gzip_and_glob_agree(project, csv_source):
    m_csv = _ingest_from(project, str(csv_source))
    raw = pl.read_parquet(project / "data/raw/netflow/flows.parquet")
    assert raw.height == 1000 == m_csv["rows"]
    assert raw["is_attack"].to_list() == (raw["label"] != "Benign").to_list()

    gz = csv_source.with_suffix(".csv.gz")
    with open(csv_source, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    pq = csv_source.with_suffix(".parquet")
    pl.read_csv(csv_source).write_parquet(pq)
    for source in (gz, pq):
        _ingest_from(project, str(source))
        again = pl.read_parquet(project / "data/raw/netflow/flows.parquet")
        assert again.select("IN_BYTES", "L4_DST_PORT", "label").equals(raw.select("IN_BYTES", "L4_DST_PORT", "label"))

    files = generate(project / "many", n_flows=2000, seed=4, n_files=3)
    m = _ingest_from(project, str(project / "many" / "*.csv"))
    assert m["rows"] == 2000 and len(m["files"]) == 3
    # file order is time order: the glob keeps it
    first = pl.read_csv(files[0], infer_schema=False)["IN_BYTES"].cast(pl.Float64).to_list()
    assert pl.read_parquet(project / "data/raw/netflow/flows.parquet")["IN_BYTES"].to_list()[: len(first)] == first


def test_fsspec_memory_url(project, csv_source):
    import fsspec

    with fsspec.open("memory://incoming/flows.csv", "wb") as fh:
        fh.write(csv_source.read_bytes())
    m = _ingest_from(project, "memory://incoming/flows.csv")
    assert m["rows"] == 1000


def test_spec_renames_map_other_formats(project, csv_source):
    """A KDD-style file with other column names ingests by writing a spec, not code."""
    df = pl.read_csv(csv_source, infer_schema=False).rename({"IN_BYTES": "src_bytes", "Attack": "class"})
    path = project / "kdd_like.csv"
    df.write_csv(path)
    m = _ingest_from(project, str(path), "ingest.netflow.spec.renames={src_bytes: IN_BYTES, class: Attack}",
                     "ingest.netflow.spec.name=kdd-like")
    assert m["rows"] == 1000 and m["spec"] == "kdd-like"


def test_missing_columns_named(project, csv_source, unchanged):
    df = pl.read_csv(csv_source, infer_schema=False).drop("IN_BYTES", "TCP_FLAGS")
    bad = project / "missing.csv"
    df.write_csv(bad)
    with pytest.raises(SchemaError, match=r"missing\.csv: missing required columns \['IN_BYTES', 'TCP_FLAGS'\]"):
        _ingest_from(project, str(bad))


def test_non_numeric_value_names_column_and_row(project, csv_source, unchanged):
    df = pl.read_csv(csv_source, infer_schema=False)
    df = df.with_columns(pl.when(pl.int_range(pl.len()) == 41).then(pl.lit("lots")).otherwise(pl.col("OUT_PKTS"))
                         .alias("OUT_PKTS"))
    bad = project / "text.csv"
    df.write_csv(bad)
    with pytest.raises(SchemaError, match=r"text\.csv: row 42, column OUT_PKTS: 'lots' is not a number"):
        _ingest_from(project, str(bad))


def test_empty_file_and_header_only(project, unchanged):
    empty = project / "empty.csv"
    empty.write_text("")
    with pytest.raises(EmptySourceError, match=r"empty\.csv: the file is empty"):
        _ingest_from(project, str(empty))
    header = project / "header.csv"
    header.write_text(",".join(NF_V2_COLUMNS) + "\n")
    with pytest.raises(EmptySourceError, match=r"header\.csv: header only"):
        _ingest_from(project, str(header))


def test_glob_matching_nothing(project, unchanged):
    with pytest.raises(FileNotFoundError, match=r"matches no file"):
        _ingest_from(project, str(project / "nowhere" / "*.csv"))


def test_unreachable_url_is_retried_then_clear_error(project, unchanged):
    # Port 9 (discard) on loopback: connection refused at once, every try.
    url = "http://127.0.0.1:9/flows.csv"
    with pytest.raises(OSError, match=r"127\.0\.0\.1:9/flows\.csv: failed after 3 tries"):
        _ingest_from(project, url, "ingest.netflow.retries=2")


def test_failed_ingest_keeps_previous_output(project, csv_source):
    _ingest_from(project, str(csv_source))
    before = store.content_hash(project / "data/raw/netflow")
    with pytest.raises(FileNotFoundError):
        _ingest_from(project, str(project / "absent.csv"))
    assert store.content_hash(project / "data/raw/netflow") == before


def test_real_botiot_sample_header_and_head(project):
    """The real NF-BoT-IoT-v2 sample reads through the default NF-v2 spec (first 5,000 rows here)."""
    sample = SHARED_DATA / "netflow" / "nf_botiot_v2_reduced.csv.gz"
    if not sample.exists():
        # Without ../shared/data the same reader is exercised on a synthetic .csv.gz instead.
        sample = project / "synthetic.csv.gz"
        src = generate(project / "syn", n_flows=5000, seed=1)[0]
        with open(src, "rb") as a, gzip.open(sample, "wb") as b:
            shutil.copyfileobj(a, b)
    m = _ingest_from(project, str(sample), "ingest.netflow.max_rows=5000")
    assert m["rows"] == 5000
    assert set(m["class_counts"]) >= {"Benign"} or sum(m["class_counts"].values()) == 5000


def test_synthetic_ingest_is_reproducible(project):
    """Same params, same bytes: the manifest names final paths, so DVC sees an unchanged output."""
    params = load_params()
    first = ingest(params)
    h1 = store.content_hash(project / "data/raw/netflow")
    second = ingest(params)
    assert store.content_hash(project / "data/raw/netflow") == h1
    assert first == second
    assert all((project / f).exists() for f in second["files"])
