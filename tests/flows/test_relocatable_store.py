"""The MLflow store moves with the project (issue 14, finding 3), on a real sqlite store and real folders.

A tiny netflow project runs every stage tracked and registers its champion; the whole folder is then copied
elsewhere. In the copy (the original renamed away, or still there), ``@champion`` loads through the project's
loader and scores records, and a new run writes its artifacts inside the copy, never into the original.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import TINY_NETFLOW, setup_project

D = "netflow"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A project that ran every stage (tracked) and registered its champion, in its own folder."""
    from tasks.params import load_params
    from tasks.stages import run_stage

    with pytest.MonkeyPatch.context() as mp:
        root = setup_project(tmp_path_factory.mktemp("made") / "proj", mp, TINY_NETFLOW)
        mp.delenv("FORMERFLOW_MLARTIFACTS", raising=False)
        params = load_params()
        for stage in ("ingest", "preprocess", "train", "compress", "evaluate", "register"):
            run_stage(stage, D, params)
    return root


def enter(root: Path, mp: pytest.MonkeyPatch, store: Path | None = None) -> None:
    """Work in ``root`` as a user would: its folder, its store (or ``store``)."""
    mp.setenv("FORMERFLOW_ROOT", str(root))
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store or root / 'mlflow.db'}")
    mp.delenv("FORMERFLOW_MLARTIFACTS", raising=False)
    mp.delenv("FORMERFLOW_PARENT_RUN_ID", raising=False)
    mp.chdir(root)


def locations(db: Path) -> list[str]:
    """Every artifact location the store holds (experiments, runs, logged models, model versions)."""
    with sqlite3.connect(db) as con:
        return [v for table, col in (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                                     ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
                                     ("model_versions", "source"))
                for (v,) in con.execute(f"SELECT {col} FROM {table}") if v]  # noqa: S608


def files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def score_sample(root: Path) -> pl.DataFrame:
    """``@champion`` loaded through the project's loader (digest-checked) and scored on raw records."""
    from tasks import serving

    model, ref = serving.load_registered(f"models:/formerflow-{D}@champion")
    assert ref.version == "1"
    raw = pl.read_parquet(root / "data" / "raw" / D / "flows.parquet").head(20).drop("is_attack")
    return pl.from_pandas(model.predict(raw.to_pandas()))


def new_run_artifact(root: Path) -> Path:
    """A new run in the project logs a file; returns where the artifact landed."""
    from tasks import tracking

    note = root / "note.txt"
    note.write_text("written by the copy")
    with tracking.start_run(D, "probe") as run:
        run.log_artifact(note)
        uri = run.artifact_uri
    assert uri.startswith("file://")
    return Path(uri.removeprefix("file://")) / "note.txt"


def test_a_moved_project_loads_its_champion_and_writes_its_own_runs(made, tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere" / "proj"
    shutil.copytree(made, copy)
    gone = made.with_name("proj-renamed")
    made.rename(gone)  # the original folder no longer exists under its name
    try:
        enter(copy, monkeypatch)
        scored = score_sample(copy)
        assert scored.columns == ["full_context", "p_attack", "prediction"] and scored.height == 20
        assert scored["p_attack"].is_between(0, 1).all()
        # every location in the copy's store points into the copy
        stored = [v for v in locations(copy / "mlflow.db") if not v.startswith("models:/")]
        assert stored and all(str(copy) in v for v in stored), [v for v in stored if str(copy) not in v]
        before = files(gone)
        landed = new_run_artifact(copy)
        assert landed.is_file() and landed.is_relative_to(copy / "mlartifacts" / D)
        assert files(gone) == before  # nothing written into the original
    finally:
        gone.rename(made)


def test_a_copy_beside_its_original_writes_into_itself(made, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(made, copy)
    before = files(made)
    enter(copy, monkeypatch)
    landed = new_run_artifact(copy)
    assert landed.is_relative_to(copy / "mlartifacts")
    assert score_sample(copy).height == 20
    assert files(made) == before
    # the original's store still points into the original: relocating touched only the copy's file
    assert all(str(copy) not in v for v in locations(made / "mlflow.db"))


def test_a_store_outside_the_project_is_left_as_it_is(made, tmp_path, monkeypatch):
    """MLFLOW_TRACKING_URI naming another project's store (a shared store) is not rewritten to this project."""
    other = tmp_path / "other"
    other.mkdir()
    before = locations(made / "mlflow.db")
    enter(other, monkeypatch, store=made / "mlflow.db")
    from tasks import tracking

    assert tracking.relocate_store() == {}
    tracking.client().search_experiments()
    assert locations(made / "mlflow.db") == before


def test_relocation_rewrites_file_uris_and_plain_paths_once(made, tmp_path, monkeypatch):
    from tasks import tracking

    copy = tmp_path / "dir with space" / "proj"
    shutil.copytree(made, copy)
    enter(copy, monkeypatch)
    moved = tracking.relocate_store()
    assert list(moved) == [str(made)] and moved[str(made)] >= 5
    stored = locations(copy / "mlflow.db")
    assert not [v for v in stored if str(made) in v or made.as_uri() in v]
    assert any(v.startswith(copy.as_uri() + "/mlartifacts/") for v in stored)  # URIs, percent-encoded
    assert tracking.relocate_store() == {}  # once per process and project
    assert score_sample(copy).height == 20  # MLflow reads the percent-encoded locations
