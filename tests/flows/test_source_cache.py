"""Through a real Prefect flow run: a source rewritten in place at the same path is ingested again, not cached."""

from __future__ import annotations

import polars as pl
import pytest
from prefect import flow

from flows.pipeline import _task_for
from tasks.domains.netflow.synthetic import generate

pytestmark = pytest.mark.slow


@flow(name="formerflow-test-ingest")
def ingest_flow(params: dict) -> dict:
    """The pipeline's cached ingest task of netflow, alone (what a nightly deployment runs first)."""
    return _task_for("ingest", "netflow", False).submit("ingest", "netflow", params, None).result()


def test_a_source_truncated_in_place_is_ingested_again(project, prefect_harness):
    from tasks.params import load_params

    src = generate(project / "incoming", n_flows=1200, seed=3)[0]
    params = load_params(overrides=[f"ingest.netflow.source={src}"]).model_dump(mode="json")
    first = ingest_flow(params)
    assert first["rows"] == 1200
    assert ingest_flow(params) == first  # nothing changed: Prefect's cache answers

    lines = src.read_text().splitlines(keepends=True)
    src.write_text("".join(lines[:801]))  # the same file, 800 rows now
    third = ingest_flow(params)
    assert third["rows"] == 800 == pl.read_parquet(project / "data/raw/netflow/flows.parquet").height
