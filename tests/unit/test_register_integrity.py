"""Registry integrity (issue 13, findings 1, 2, 12 and 14) on a tiny trained netflow project and a real MLflow store.

* evaluate records the content hashes of what it measured; register refuses metrics of other model folders or
  processed data, naming the folder (a worse model can no longer become champion on stale metrics);
* the gate compares the candidate with the champion only on the same processed data: otherwise (and when the
  champion has no finite metric) the champion is re-scored on the candidate's test set, or, when it cannot be,
  the candidate is not promoted; ``min_delta`` must be >= 0;
* a registered artifact holds no code, carries a sha256 manifest whose digest is a version tag, and a file
  altered or added after register is refused at load, named, before anything runs;
* scoring records the version number it used, not the alias.

One module-scoped project is trained once (ingest -> evaluate, about 15 s); every test works on its own copy,
with its own MLflow sqlite store and artifact folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from tests.conftest import REPO, TINY_NETFLOW, enter_copy, setup_project

D = "netflow"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A project after ingest, preprocess, train, compress and evaluate (no MLflow store yet)."""
    from tasks.params import load_params
    from tasks.stages import run_stage

    with pytest.MonkeyPatch.context() as mp:
        root = setup_project(tmp_path_factory.mktemp("integrity") / "proj", mp, TINY_NETFLOW)
        params = load_params()
        for stage in ("ingest", "preprocess", "train", "compress", "evaluate"):
            run_stage(stage, D, params, track=False)
    assert not (root / "mlflow.db").exists()
    return root


@pytest.fixture
def proj(trained, tmp_path, monkeypatch) -> Path:
    """A copy of the trained project, entered (its own MLflow store and artifacts)."""
    return enter_copy(trained, tmp_path / "proj", monkeypatch)


def params(*overrides: str):
    from tasks.params import load_params

    return load_params(overrides=list(overrides))


def register(*overrides: str) -> dict:
    from tasks.register import register as run

    return run(D, params(*overrides))


def evaluate() -> dict:
    from tasks.evaluate import evaluate as run

    return run(D, params())


def versions() -> list:
    from tasks import tracking

    return tracking.client().search_model_versions(f"name='formerflow-{D}'")


def version_tags(version: str) -> dict:
    from tasks import tracking

    return tracking.client().get_model_version(f"formerflow-{D}", version).tags


def set_tag(version: str, key: str, value: str) -> None:
    from tasks import tracking

    tracking.client().set_model_version_tag(f"formerflow-{D}", version, key, value)


def set_metric(version: str, key: str, value: float) -> None:
    """Record a later value of a version's metric (on its logged model, where register logs them)."""
    import time

    from mlflow.entities import Metric

    from tasks import tracking

    c = tracking.client()
    mv = c.get_model_version(f"formerflow-{D}", version)
    c.log_batch(mv.run_id, metrics=[Metric(key, value, int(time.time() * 1000), 1,
                                           model_id=tracking.version_model_id(mv))])


def champion() -> str:
    from tasks import tracking

    return str(tracking.client().get_model_version_by_alias(f"formerflow-{D}", "champion").version)


def artifact_root(version: str) -> Path:
    """The version's artifact folder in the local store (what a load reads)."""
    from tasks import tracking

    uri = tracking.client().get_model_version_download_uri(f"formerflow-{D}", version)
    assert uri.startswith("file://")
    return Path(uri.removeprefix("file://"))


def alter_weights(folder: Path) -> None:
    """Replace a model folder's weights by zeros (a re-trained, degenerate model: same shapes, other content)."""
    with safe_open(str(folder / "model.safetensors"), "np") as fh:
        meta = fh.metadata()  # int8 variants describe their packed tensors here
    tensors = load_file(str(folder / "model.safetensors"))
    save_file({k: np.zeros_like(v) for k, v in tensors.items()}, str(folder / "model.safetensors"), metadata=meta)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ============================================================================ finding 1: stale metrics
def test_evaluate_records_the_hashes_of_what_it_measured(trained):
    from tasks import store

    metrics = json.loads((trained / "reports" / D / "metrics.json").read_text())
    measured = metrics["measured_on"]
    folders = [f"data/processed/{D}", f"artifacts/{D}/teacher", f"artifacts/{D}/compressed/int8"]
    assert sorted(measured) == sorted(folders)
    for rel in folders:
        assert measured[rel] == store.content_hash(trained / rel)


def _teacher_retrained(root: Path) -> str:
    alter_weights(root / "artifacts" / D / "teacher")
    return f"artifacts/{D}/teacher"


def _variant_retrained(root: Path) -> str:
    alter_weights(root / "artifacts" / D / "compressed" / "int8")
    return f"artifacts/{D}/compressed/int8"


def _variant_added(root: Path) -> str:
    shutil.copytree(root / "artifacts" / D / "compressed" / "int8", root / "artifacts" / D / "compressed" / "int8b")
    return f"artifacts/{D}/compressed/int8b"


def flip_test_labels(root: Path) -> None:
    """Another test split with the same preprocessing schema: the first half of its labels flipped."""
    test = root / "data" / "processed" / D / "test.safetensors"
    t = load_file(str(test))
    half = len(t["y"]) // 2
    t["y"][:half] = 1 - t["y"][:half]
    save_file(t, str(test))


def _data_reprocessed(root: Path) -> str:
    flip_test_labels(root)
    return f"data/processed/{D}"


@pytest.mark.parametrize("change", [_teacher_retrained, _variant_retrained, _variant_added, _data_reprocessed])
def test_register_refuses_metrics_measured_on_other_files(proj, change):
    """Reproduces finding 1: the teacher changes after evaluate (a re-train whose evaluate was killed), and
    register used to promote it on the old teacher's metrics. Now it refuses, naming the folder; nothing is
    registered. A fresh evaluate makes the metrics current again."""
    from tasks import store

    before = json.loads((proj / "reports" / D / "metrics.json").read_text()).get("measured_on", {})
    rel = change(proj)
    now = store.content_hash(proj / rel)
    with pytest.raises(RuntimeError) as err:
        register()
    assert type(err.value).__name__ == "StaleMetricsError"
    msg = str(err.value)
    assert f"reports/{D}/metrics.json" in msg and rel in msg and now in msg and msg.endswith("run evaluate first")
    if rel in before:
        assert f"was measured on {rel} {before[rel]} but the folder now holds {now}" in msg
    assert versions() == [] and not (proj / "reports" / D / "registry.json").exists()
    if change is _teacher_retrained:  # evaluated again, the metrics are the new teacher's and count
        evaluate()
        assert register()["version"] == "1"


def test_register_refuses_metrics_without_hashes(proj):
    """metrics.json of an evaluate that recorded nothing (older code, or edited by hand) is not trusted."""
    path = proj / "reports" / D / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics.pop("measured_on", None)
    path.write_text(json.dumps(metrics))
    with pytest.raises(RuntimeError, match=rf"reports/{D}/metrics.json records no content hashes"):
        register()
    assert versions() == []


def test_register_stage_depends_on_what_metrics_were_measured_on():
    deps = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["register"]["do"]["deps"]
    assert {"artifacts/${item}/teacher", "artifacts/${item}/compressed", "data/processed/${item}",
            "reports/${item}/metrics.json"} <= set(deps)


# ============================================================================ finding 2: what the gate compares
def test_min_delta_must_not_be_negative(project):
    from tasks.params import ParamsError
    from tasks.register import gate

    with pytest.raises(ParamsError, match=r"register\.netflow\.min_delta: .*greater than or equal to 0.*-1"):
        params("register.netflow.min_delta=-1")
    assert params("register.netflow.min_delta=0").register.netflow.min_delta == 0
    with pytest.raises(ValueError, match="min_delta must be >= 0"):
        gate({"f1": 0.1}, {"f1": 0.9}, "f1", -1.0, 50.0)


def test_champion_without_a_finite_metric_is_rescored_not_ignored(proj):
    """A champion whose recorded metric is NaN used to let any candidate through. Now it is re-scored on the
    test set: the same teacher scores the same, so a margin of 0.01 keeps it."""
    first = register()
    set_metric("1", "balanced_accuracy", float("nan"))
    second = register("register.netflow.min_delta=0.01")
    assert not second["promoted"] and champion() == "1"
    assert second["compared_with"] == {"version": "1", "value": first["candidate_value"], "rescored": True,
                                       "comparable": True}
    assert "champion v1 has no finite balanced_accuracy on record: re-scored" in second["reason"]
    tags = version_tags("2")
    assert tags["gate.champion_rescored"] == "True" and "gate.champion_value" not in tags  # a number: a metric
    from tasks import tracking

    c = tracking.client()
    assert c.get_run(c.get_model_version(f"formerflow-{D}", "2").run_id).data.metrics["gate.champion_value"] == \
        first["candidate_value"]


def test_champion_on_other_processed_data_is_rescored_on_the_candidates_test_set(proj):
    """The champion was evaluated on other processed data (same schema): its recorded value is not compared;
    it is re-scored on the candidate's test set, with the evaluate stage's code."""
    from tasks import tracking

    first = register()
    old_md5 = version_tags("1")["data.processed.md5"]
    assert old_md5 == tracking.dvc_md5(proj / "data" / "processed" / D)  # DVC's hash: the one dvc.lock records
    flip_test_labels(proj)
    evaluate()
    second = register()
    new_md5 = tracking.dvc_md5(proj / "data" / "processed" / D)
    assert second["data_processed_md5"] == new_md5 != old_md5
    assert second["candidate_value"] != first["candidate_value"]
    # the champion (the same teacher) re-scored on the new test split scores exactly what the candidate does
    assert second["compared_with"] == {"version": "1", "value": second["candidate_value"], "rescored": True,
                                       "comparable": True}
    assert f"champion v1 was evaluated on processed data {old_md5}, the candidate on {new_md5}" in second["reason"]
    assert second["promoted"] and champion() == "2"  # equal, min_delta 0
    assert version_tags("2")["data.processed.md5"] == new_md5


def test_champion_that_cannot_be_rescored_is_not_replaced(proj):
    """The processed data was refitted (another schema): the champion cannot score its tensors, so the two are
    not compared and the candidate is not promoted, with the reason; even over a champion on record at 0."""
    register()
    set_metric("1", "balanced_accuracy", 0.0)
    schema_file = proj / "data" / "processed" / D / "schema.json"
    schema = json.loads(schema_file.read_text())
    schema["refit"] = "another preprocessing run"
    schema_file.write_text(json.dumps(schema))
    evaluate()
    second = register()
    assert not second["promoted"] and champion() == "1"
    assert second["compared_with"]["comparable"] is False and second["compared_with"]["value"] is None
    assert "champion v1 was evaluated on processed data" in second["reason"]
    assert "cannot be re-scored on the candidate's test set" in second["reason"]
    assert "another preprocessing schema" in second["reason"] and "not promoted" in second["reason"]
    assert version_tags("2")["gate.decision"] == "kept"


# ============================================================================ finding 14: digests, no code
def test_registered_artifact_holds_no_code_and_a_digest_of_every_file(proj):
    from tasks import serving

    reg = register()
    root = artifact_root(reg["version"])
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert not [f for f in files if f.endswith((".py", ".pyc", ".pkl"))]
    mlmodel = yaml.safe_load((root / "MLmodel").read_text())["flavors"]["python_function"]
    assert mlmodel["loader_module"] == "tasks.serving_entry" and not mlmodel.get("code")
    manifest = json.loads((root / serving.MANIFEST).read_text())["files"]
    assert sorted(manifest) == [f for f in files if f != serving.MANIFEST]
    assert "data/model_dir/model.safetensors" in manifest
    assert all(manifest[f] == sha256(root / f) for f in manifest)
    assert version_tags(reg["version"])[serving.DIGEST_TAG] == sha256(root / serving.MANIFEST)
    assert reg["artifact_manifest_sha256"] == sha256(root / serving.MANIFEST)


def test_tampered_weights_are_refused_at_load_naming_the_file(proj):
    from tasks import serving, tracking

    reg = register()
    weights = artifact_root(reg["version"]) / "data" / "model_dir" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one weight changed: still a valid safetensors file
    weights.write_bytes(bytes(data))
    for load in (lambda: serving.load_registered(f"models:/formerflow-{D}@champion"),
                 lambda: tracking.load_pyfunc(f"models:/formerflow-{D}/{reg['version']}")):  # MLflow's own loader
        with pytest.raises(serving.IntegrityError, match=r"data/model_dir/model\.safetensors: sha256 .* differs .* "
                                                         r"recorded at register"):
            load()


def test_code_planted_in_an_artifact_never_runs(proj):
    """The attack of finding 14: code put into a registered artifact (MLmodel pointed at it, the manifest
    recomputed to match). The registry's digest of the manifest no longer matches, so the load is refused
    before MLflow reads the folder: the planted code never runs."""
    from tasks import serving
    from tasks.score import score

    reg = register()
    root = artifact_root(reg["version"])
    marker = proj / "planted-code-ran"
    (root / "code" / "evil").mkdir(parents=True)
    (root / "code" / "evil" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    conf = yaml.safe_load((root / "MLmodel").read_text())
    conf["flavors"]["python_function"].update(code="code", loader_module="evil")
    (root / "MLmodel").write_text(yaml.safe_dump(conf))
    serving.write_manifest(root)  # the attacker keeps the manifest consistent with the files
    with pytest.raises(serving.IntegrityError, match=r"formerflow-manifest\.json: sha256 .* differs .* registry"):
        serving.load_registered(f"models:/formerflow-{D}@champion")
    src = sorted((proj / "data" / "raw" / D / "source").glob("*.csv"))[-1]
    with pytest.raises(serving.IntegrityError, match="registry"):
        score(D, params(), str(src), proj / "preds.parquet")
    assert not marker.exists() and not (proj / "preds.parquet").exists()


def test_a_file_added_to_an_artifact_or_a_version_without_digest_is_refused(proj):
    from tasks import serving

    reg = register()
    root = artifact_root(reg["version"])
    (root / "data" / "model_dir" / "extra.json").write_text("{}")
    with pytest.raises(serving.IntegrityError, match=r"data/model_dir/extra\.json: not in the artifact's manifest"):
        serving.verify_artifact(root)
    (root / "data" / "model_dir" / "extra.json").unlink()
    serving.verify_artifact(root)  # back as registered
    from tasks import tracking

    tracking.client().delete_model_version_tag(f"formerflow-{D}", reg["version"], serving.DIGEST_TAG)
    with pytest.raises(serving.IntegrityError, match=rf"models:/formerflow-{D}/1 has no tag {serving.DIGEST_TAG}"):
        serving.load_registered(f"models:/formerflow-{D}@champion")


# ============================================================================ finding 12: the version that scored
def test_scoring_records_the_version_number_it_used(proj):
    import polars as pl

    from tasks.score import score

    register()
    set_metric("1", "balanced_accuracy", 0.0)  # v2 (the same teacher) then beats it
    assert register()["promoted"] and champion() == "2"
    src = sorted((proj / "data" / "raw" / D / "source").glob("*.csv"))[-1]
    manifest = score(D, params(), str(src), proj / "preds.parquet")
    assert manifest["model_version"] == "2"
    assert manifest["model_uri"] == f"models:/formerflow-{D}/2"
    assert manifest["model_requested"] == f"models:/formerflow-{D}@champion"
    assert pl.read_parquet(proj / "preds.parquet").height == manifest["rows"] > 0
    explicit = score(D, params(), str(src), proj / "preds1.parquet", model_uri=f"models:/formerflow-{D}/1")
    assert explicit["model_version"] == "1" and explicit["model_uri"] == f"models:/formerflow-{D}/1"
