"""Compression (tasks/compress): int8 dynamic quantization, its safetensors round trip, ``load_any``,
and the train -> compress -> evaluate stages on a tiny project (one shared module-scoped run)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import models
from tasks.compress import METHODS, load_any, quantize
from tasks.loop import save_model
from tests.conftest import setup_project

KEY = "netflow/flowtransformer"
CONFIGS = {
    "record-basic-last": {},
    "none-gpt-featurewise": {"encoding": "none", "transformer": "gpt", "n_layers": 1, "n_heads": 2,
                             "internal_size": 32, "head": "featurewise"},
    "categorical-bert-cls-clean": {"encoding": "categorical", "transformer": "bert", "n_layers": 1, "n_heads": 2,
                                   "internal_size": 32, "head": "cls",
                                   "variant": "clean", "mlp_sizes": [32, 16]},
    "lookup-flatten-nobias": {"encoding": "categorical", "cat_embed_mode": "lookup", "head": "flatten",
                              "embed_bias": False, "featurewise_bias": False},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared 2-core box: one intra-op thread avoids spin-wait contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(overrides: dict, seed: int = 0):
    torch.manual_seed(seed)
    return models.build(KEY, overrides).eval()


def qlinear_type():
    from torch.ao.nn.quantized.dynamic import Linear

    return Linear


def run(model, inputs) -> torch.Tensor:
    with torch.inference_mode():
        return model(*inputs)


# ----------------------------------------------------------------------------- quantize
@pytest.mark.parametrize("name", list(CONFIGS))
def test_int8_replaces_every_linear(name):
    model = build(CONFIGS[name])
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert n_linear > 0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantize.apply(model)
    assert not any(isinstance(m, nn.Linear) for m in q.modules())
    assert sum(isinstance(m, qlinear_type()) for m in q.modules()) == n_linear
    # the float model is left as it was
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == n_linear
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("name", list(CONFIGS))
def test_int8_save_load_round_trip_is_bit_identical(name, tmp_path):
    model = build(CONFIGS[name])
    q = quantize.apply(model)
    path = quantize.save(q, tmp_path)
    assert path == tmp_path / "model.safetensors"
    tensors = load_file(str(path))
    assert not any(t.is_quantized for t in tensors.values())  # plain tensors only
    int8 = {k: t for k, t in tensors.items() if k.endswith(".weight.int8")}
    assert len(int8) == sum(isinstance(m, nn.Linear) for m in model.modules())
    assert all(t.dtype == torch.int8 for t in int8.values())

    fresh = build(CONFIGS[name], seed=99)  # other random weights: everything must come from the file
    loaded = quantize.load(fresh, tmp_path)
    inputs = model.example_inputs(32, seed=3)
    assert torch.equal(run(loaded, inputs), run(q, inputs))


def test_int8_file_is_small_and_outputs_close(tmp_path):
    model = build({})
    save_model(tmp_path, model, KEY)
    float_bytes = (tmp_path / "model.safetensors").stat().st_size
    q = quantize.apply(model)
    qdir = tmp_path / "int8"
    qdir.mkdir()
    quantize.save(q, qdir)
    int8_bytes = (qdir / "model.safetensors").stat().st_size
    assert int8_bytes < 0.4 * float_bytes, (int8_bytes, float_bytes)

    inputs = model.example_inputs(256, seed=1)
    p_float = torch.sigmoid(run(model, inputs))
    p_int8 = torch.sigmoid(run(q, inputs))
    assert (p_float - p_int8).abs().max().item() < 0.05


def test_int8_load_rejects_unknown_tensors(tmp_path):
    model = build({})
    quantize.save(quantize.apply(model), tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    tensors["not.a.parameter"] = torch.zeros(3)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="unexpected tensors"):
        quantize.load(build({}), tmp_path)


def test_load_any_dispatches_on_config_json(tmp_path):
    model = build({})
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    save_model(teacher, model, KEY, {"task": "binary"})
    m, meta = load_any(teacher)
    assert type(m) is type(model) and "compression" not in meta
    inputs = model.example_inputs(8)
    assert torch.equal(run(m, inputs), run(model, inputs))

    q = quantize.apply(model)
    qdir = tmp_path / "int8"
    qdir.mkdir()
    quantize.save(q, qdir)
    meta_q = {**json.loads((teacher / "config.json").read_text()), "compression": "int8"}
    (qdir / "config.json").write_text(json.dumps(meta_q))
    mq, meta2 = load_any(qdir)
    assert meta2["compression"] == "int8"
    assert any(isinstance(x, qlinear_type()) for x in mq.modules())
    assert torch.equal(run(mq, inputs), run(q, inputs))

    (qdir / "config.json").write_text(json.dumps({**meta_q, "compression": "magic"}))
    with pytest.raises(ValueError, match="unknown compression method 'magic'"):
        load_any(qdir)
    assert "int8" in METHODS


# ----------------------------------------------------------------------------- the stages, end to end
TINY_E2E = {
    "train": {"netflow": {"epochs": 2, "steps_per_epoch": 4, "batch_size": 32, "baselines": ["logreg"],
                          "baseline_max_rows": 500}},
    "compress": {"netflow": {"latency_repeats": 2}},
    "evaluate": {"netflow": {"latency_repeats": 2, "throughput_batch_size": 16}},
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """ingest -> preprocess -> train -> compress -> evaluate once on a tiny project (env as conftest.project)."""
    from tasks.params import load_params
    from tasks.stages import run_stage

    with pytest.MonkeyPatch.context() as mp:
        root = setup_project(tmp_path_factory.mktemp("e2e") / "proj", mp, TINY_E2E)
        params = load_params()
        manifests = {stage: run_stage(stage, "netflow", params, track=False)
                     for stage in ("ingest", "preprocess", "train", "compress", "evaluate")}
        yield {"root": root, "params": params, "manifests": manifests}


def test_compress_stage_writes_the_int8_folder_and_report(pipeline):
    root = pipeline["root"]
    folder = root / "artifacts" / "netflow" / "compressed" / "int8"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    report = json.loads((root / "reports" / "netflow" / "compress.json").read_text())
    methods = report["methods"]
    assert set(methods) == {"teacher", "int8"}
    row = methods["int8"]
    assert row["size_ratio"] < 0.4
    teacher_bytes = (root / "artifacts" / "netflow" / "teacher" / "model.safetensors").stat().st_size
    assert methods["teacher"]["bytes"] == teacher_bytes
    assert row["bytes"] == (folder / "model.safetensors").stat().st_size
    assert row["size_ratio"] == pytest.approx(row["bytes"] / teacher_bytes)
    assert row["latency_ms"] > 0 and row["speedup"] == pytest.approx(methods["teacher"]["latency_ms"] / row["latency_ms"])
    assert json.loads((folder / "metrics.json").read_text()) == row
    assert pipeline["manifests"]["compress"]["methods"] == methods

    teacher_meta = json.loads((root / "artifacts" / "netflow" / "teacher" / "config.json").read_text())
    meta = json.loads((folder / "config.json").read_text())
    assert meta["compression"] == "int8" and meta["description"] == quantize.DESCRIPTION
    assert {k: v for k, v in meta.items() if k not in ("compression", "description")} == teacher_meta


def test_compressed_model_predicts_like_the_teacher(pipeline):
    from tasks.domains.netflow import data as netflow
    from tasks.loop import predict, probabilities

    root = pipeline["root"]
    teacher, _ = load_any(root / "artifacts" / "netflow" / "teacher")
    int8, meta = load_any(root / "artifacts" / "netflow" / "compressed" / "int8")
    assert meta["compression"] == "int8"
    test = netflow.load_split("test", root=root)
    p_t = probabilities(predict(teacher, test), "binary")
    p_q = probabilities(predict(int8, test), "binary")
    assert np.abs(p_t - p_q).max() < 0.05


def test_evaluate_stage_scores_every_model(pipeline):
    from tasks.domains.netflow import data as netflow
    from tasks.evaluate import classification_metrics
    from tasks.loop import predict, probabilities

    root = pipeline["root"]
    reports = root / "reports" / "netflow"
    result = json.loads((reports / "metrics.json").read_text())
    assert set(result["models"]) == {"teacher", "int8", "logreg"}
    assert result["task"] == "binary" and result["threshold"] == 0.5
    test = netflow.load_split("test", root=root)
    assert result["n_test"] == len(test)
    kinds = {n: m["kind"] for n, m in result["models"].items()}
    assert kinds == {"teacher": "transformer", "int8": "int8", "logreg": "single-flow baseline"}

    # the teacher's row equals the metrics recomputed from its predictions
    teacher, _ = load_any(root / "artifacts" / "netflow" / "teacher")
    probs = probabilities(predict(teacher, test), "binary")
    schema = netflow.load_schema(root)
    expected = classification_metrics(test.labels, probs, "binary", ["Benign", "Attack"],
                                      families=test.classes, family_names=schema["classes"])
    got = result["models"]["teacher"]
    for k in ("balanced_accuracy", "f1", "macro_f1", "fpr", "roc_auc", "confusion_matrix",
              "family_recall", "per_class"):
        assert got[k] == expected[k], k  # JSON keeps floats exactly
    assert np.asarray(got["confusion_matrix"]).sum() == len(test)
    assert got["bytes"] == (root / "artifacts" / "netflow" / "teacher" / "model.safetensors").stat().st_size
    assert got["parameters"] > 0 and result["models"]["int8"]["parameters"] is None
    assert got["latency_ms"] > 0 and got["throughput_per_s"] > 0
    assert result["compression"]["int8"]["size_ratio"] < 0.4

    plots = sorted(p.name for p in (reports / "plots").iterdir())
    assert plots == ["confusion_int8.png", "confusion_logreg.png", "confusion_teacher.png", "roc.png"]
    report = (reports / "report.md").read_text()
    assert "| teacher | transformer |" in report and "| int8 | int8 |" in report
    assert "## Compression trade-off" in report
    summary = pipeline["manifests"]["evaluate"]["summary"]
    assert summary["teacher"]["balanced_accuracy"] == got["balanced_accuracy"]


# ----------------------------------------------------------------------------- EEG models
EEG_KEYS = [k for k in models.list_models() if k.startswith("eeg/")]
EEG_SHAPE = {"n_chans": 22, "n_times": 301, "sfreq": 100.0, "n_outputs": 2}


@pytest.mark.parametrize("key", EEG_KEYS)
def test_int8_on_every_eeg_model(key, tmp_path):
    """The compress stage's int8 method works on DBConformer and each baseline: linears replaced,
    a bit-identical safetensors round trip, probabilities within 0.05 of the float model."""
    torch.manual_seed(0)
    model = models.build(key, EEG_SHAPE).eval()
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    q = quantize.apply(model)
    assert sum(isinstance(m, qlinear_type()) for m in q.modules()) == n_linear > 0
    quantize.save(q, tmp_path)
    torch.manual_seed(1)
    loaded = quantize.load(models.build(key, EEG_SHAPE).eval(), tmp_path)
    inputs = model.example_inputs(16, seed=2)
    assert torch.equal(run(loaded, inputs), run(q, inputs))
    p_float = torch.softmax(run(model, inputs), 1)
    p_int8 = torch.softmax(run(q, inputs), 1)
    assert (p_float - p_int8).abs().max().item() < 0.05
