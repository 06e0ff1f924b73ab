"""What MLflow records of a run and a registered model (issue 14, findings 4 and 5), on a real sqlite store.

* every domain's pyfunc is logged with a signature (its input and output columns, or named arrays) and an input
  example from the project's data, and the example round-trips through the loaded pyfunc;
* the chosen variant's metrics are MLflow metrics (of the register run and of its MLflow 3 logged model, from
  which the version is registered), not tags; the version's tags hold strings only;
* the train and evaluate runs log the processed data as a dataset input (source path, the content hash as
  digest).

A tiny netflow project runs every stage tracked, once per module (about 20 s); the other domains are checked on
an untrained model folder after their ingest and preprocess (seconds): the signature and example come from the
data, not from training.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY_NETFLOW, setup_project

D = "netflow"


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A netflow project after every stage, each in its own MLflow run of the project's sqlite store."""
    from tasks.params import load_params
    from tasks.stages import run_stage

    with pytest.MonkeyPatch.context() as mp:
        root = setup_project(tmp_path_factory.mktemp("records") / "proj", mp, TINY_NETFLOW)
        mp.delenv("FORMERFLOW_MLARTIFACTS", raising=False)
        params = load_params()
        manifests = {stage: run_stage(stage, D, params)
                     for stage in ("ingest", "preprocess", "train", "compress", "evaluate", "register")}
        yield {"root": root, "manifests": manifests}


def _version(reg: dict):
    from tasks import tracking

    return tracking.client().get_model_version(reg["registered_model"], reg["version"])


def _runs(name: str) -> list:
    from tasks import tracking

    c = tracking.client()
    exp = c.get_experiment_by_name(tracking.experiment_name(D))
    return [r for r in c.search_runs([exp.experiment_id]) if r.info.run_name == name]


# ============================================================================ finding 4: signature and example
def test_registered_version_has_a_signature_naming_its_columns(tracked):
    from mlflow.models import Model

    from tasks import serving, tracking

    reg = tracked["manifests"]["register"]
    uri = tracking.client().get_model_version_download_uri(reg["registered_model"], reg["version"])
    sig = Model.load(Path(uri.removeprefix("file://")) / "MLmodel").signature  # the MLmodel file as stored
    assert sig is not None
    schema = json.loads((tracked["root"] / "artifacts" / D / "teacher" / "config.json").read_text())["schema"]
    fields = [*schema["numeric_fields"], *schema["categorical_fields"]]
    inputs = {c.name: c for c in sig.inputs.inputs}
    assert list(inputs) == [*fields, "Attack"]
    assert all(inputs[f].required for f in fields) and not inputs["Attack"].required  # scoring input need not be labelled
    assert sig.outputs.input_names() == ["full_context", "p_attack", "prediction"]
    # loaded through the project's loader (digest-checked), the version carries the same signature
    model, ref = serving.load_registered(f"models:/{reg['registered_model']}@champion")
    assert ref.version == reg["version"] and model.metadata.signature == sig


def test_input_example_round_trips_through_the_loaded_pyfunc(tracked):
    from mlflow.exceptions import MlflowException

    from tasks import serving

    model, _ = serving.load_registered(f"models:/formerflow-{D}@champion")
    example = model.input_example
    assert isinstance(example, pd.DataFrame) and len(example) > 0
    assert list(example.columns) == [c for c in model.metadata.signature.inputs.input_names() if c != "Attack"]
    out = model.predict(example)
    assert list(out.columns) == model.metadata.signature.outputs.input_names() and len(out) == len(example)
    assert out["p_attack"].between(0, 1).all()
    # the same records as text (a CSV read without types) score the same: the feature columns are not typed
    as_text = model.predict(example.astype(str))
    np.testing.assert_allclose(as_text["p_attack"], out["p_attack"], rtol=1e-6)
    # a record without a feature the model needs is refused by name, before the model runs
    with pytest.raises(MlflowException, match="IN_BYTES"):
        model.predict(example.drop(columns=["IN_BYTES"]))


def _untrained_folder(name: str, root: Path) -> Path:
    """The teacher folder the train stage would write (weights untrained), after ingest and preprocess."""
    from tasks import domains, store
    from tasks.params import load_params
    from tasks.stages import run_stage
    from tasks.train import save_model

    params = load_params()
    for stage in ("ingest", "preprocess"):
        run_stage(stage, name, params, track=False)
    dom = domains.get(name)
    schema = dom.load_schema()
    info = dom.task_info(params, schema)
    folder = store.domain_paths(name).teacher
    folder.mkdir(parents=True)
    save_model(folder, dom.build_model(params, schema), f"{name}/{params.section('train', name).model.arch}",
               {**dataclasses.asdict(info), "schema": schema})
    dom.save_assets(folder, schema)
    return folder


@pytest.mark.parametrize("name", ["eeg", "finance", "turbulence"])
def test_every_domain_packages_a_signature_and_an_example_that_round_trips(name, tmp_path, monkeypatch):
    """What register packages (the pyfunc with the signature and example the domain's data give), loaded back."""
    import mlflow.pyfunc

    from tasks import domains, serving
    from tasks.register import package

    root = setup_project(tmp_path / "proj", monkeypatch)
    folder = _untrained_folder(name, root)
    served = serving.FormerflowModel(folder)
    example = domains.get(name).input_example(served.loaded)
    sig = serving.signature(served, example)
    target, _ = package(folder, tmp_path / "package", signature=sig, input_example=example.data)
    model = mlflow.pyfunc.load_model(str(target))
    assert model.metadata.signature == sig
    got = model.input_example
    out = model.predict(got)
    meta = served.meta
    if name == "turbulence":
        cfg = meta["config"]
        assert sig.inputs.input_names() == ["initial", "steps"]
        assert sig.inputs.inputs[0].shape == (-1, cfg["t_in"], *cfg["grid"], cfg["n_channels"])
        assert sig.outputs.inputs[0].shape == (-1, -1, *cfg["grid"], cfg["n_channels"])  # steps: the caller's
        assert out.shape == (1, int(got["steps"][0]), *cfg["grid"], cfg["n_channels"])
        return
    classes = meta["schema"]["classes"] if name == "eeg" else None
    want_in, want_out = {
        "eeg": (["path"], ["recording", "epoch", "onset_s", "event", "predicted_class", "prediction",
                           *[f"p_{c}" for c in classes or []]]),
        "finance": (["sentence"], ["p_ai", "prediction"]),
    }[name]
    assert sig.inputs.input_names() == want_in and sig.outputs.input_names() == want_out
    assert list(out.columns) == want_out and len(out) > 0
    if name == "eeg":  # the example names a recording of the project by a path relative to it: portable
        path = got["path"][0]
        assert not Path(path).is_absolute() and (root / path).is_file() and path.startswith("data/raw/eeg/")


# ============================================================================ finding 5: metrics, not tags
def test_version_metrics_are_metrics_of_the_run_and_of_its_logged_model(tracked):
    from mlflow.entities import LoggedModelStatus

    from tasks import tracking

    reg = tracked["manifests"]["register"]
    mv = _version(reg)
    evaluated = json.loads((tracked["root"] / "reports" / D / "metrics.json").read_text())["models"]["teacher"]
    # the finite numbers (a NaN, e.g. roc_auc of a one-class test split, is not a value to sort on: not logged)
    numbers = {k: float(v) for k, v in evaluated.items()
               if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
    # no metric is a tag any more: every tag value is a string that is not a number (hashes, reasons, names)
    assert not [k for k in mv.tags if k.startswith("metric.")]
    for key, value in mv.tags.items():
        try:
            float(value)
        except ValueError:
            continue
        pytest.fail(f"version tag {key}={value} is a number: it should be a metric")
    # the version comes from an MLflow 3 logged model that holds the metrics
    model_id = tracking.version_model_id(mv)
    assert mv.source == f"models:/{model_id}" and model_id == reg["logged_model_id"]
    c = tracking.client()
    logged = c.get_logged_model(model_id)
    assert logged.source_run_id == mv.run_id and logged.status == LoggedModelStatus.READY
    assert tracking.version_metrics(mv) == pytest.approx(numbers)
    assert {m.key for m in logged.metrics} == set(numbers)
    # ... and the register run's metrics, so runs sort and chart on them
    run = c.get_run(mv.run_id)
    assert {k: run.data.metrics[k] for k in numbers} == pytest.approx(numbers)
    assert run.outputs.model_outputs[0].model_id == model_id
    # the experiment's models sort on them (what the Models tab does)
    found = c.search_logged_models([logged.experiment_id], filter_string="metrics.balanced_accuracy >= 0",
                                   order_by=[{"field_name": "metrics.balanced_accuracy", "ascending": False}])
    assert [m.model_id for m in found] == [model_id]


def test_metrics_recorded_as_tags_by_an_older_register_are_still_read():
    from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

    from tasks import tracking

    old = ModelVersion("formerflow-netflow", "1", 0, source="file:///x/model",
                       tags=[ModelVersionTag("metric.balanced_accuracy", "0.75"),
                             ModelVersionTag("gate.reason", "no champion yet")])
    assert tracking.version_model_id(old) is None
    assert tracking.version_metrics(old) == {"balanced_accuracy": 0.75}


@pytest.mark.parametrize(("stage", "context"), [("train", "training"), ("evaluate", "evaluation")])
def test_train_and_evaluate_runs_log_the_processed_data_as_a_dataset(tracked, stage, context):
    from tasks import tracking

    (run,) = _runs(stage)
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1
    ds = inputs[0].dataset
    digest = tracking.dvc_md5(tracked["root"] / "data" / "processed" / D)  # the hash dvc.lock records
    assert ds.name == f"{D}-processed" and ds.digest == digest[:36]
    assert run.data.tags["input.processed.md5"] == digest  # the same hash as the lineage tag
    assert json.loads(ds.source) == {"uri": f"data/processed/{D}"} and ds.source_type == "local"
    profile = json.loads(ds.profile)
    assert profile["files"] > 0 and profile["bytes"] > 0
    assert {t.key: t.value for t in inputs[0].tags} == {"mlflow.data.context": context,
                                                       "formerflow.dvc_md5": digest}


def test_preprocess_logs_the_raw_data_and_stages_on_models_log_no_dataset(tracked):
    (pre,) = _runs("preprocess")
    assert [i.dataset.name for i in pre.inputs.dataset_inputs] == [f"{D}-raw"]
    for stage in ("ingest", "compress", "register"):
        (run,) = _runs(stage)
        assert run.inputs.dataset_inputs == []

