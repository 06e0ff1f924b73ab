"""The compress stage end to end on a tiny netflow project (one module-scoped run): every variant and chain saved
as config + safetensors and rebuilt by ``load_any``; evaluate's Pareto table and choice; the registered pyfunc
serves exactly the chosen variant."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tasks.compress import METHODS, load_any
from tasks.params_base import method_of
from tests.conftest import setup_project

METHODS_RUN = ["distill", "prune", "int8", "int8_eager", "prune+distill+int8_eager", "nested-w0.5",
               "nested-w0.25+int8_eager"]
TINY_E2E = {
    "train": {"netflow": {"epochs": 2, "steps_per_epoch": 4, "batch_size": 32, "baselines": ["logreg"],
                          "baseline_max_rows": 500}},
    "compress": {"netflow": {"latency_repeats": 3, "methods": METHODS_RUN, "budget": 0.05,
                             "distill": {"epochs": 2, "finetune_epochs": 1}, "prune": {"max_val_items": 100, "tolerance": 0.05},
                             "nested": {"granularities": [1, 2, 4], "steps_per_epoch": 4, "importance_items": 64,
                                        "mix": False, "compare_independent": False}}},
    "evaluate": {"netflow": {"latency_repeats": 3, "throughput_batch_size": 16}},
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """ingest -> ... -> evaluate -> register once on a tiny project (env as conftest.project)."""
    from tasks.params import load_params
    from tasks.stages import run_stage

    with pytest.MonkeyPatch.context() as mp:
        root = setup_project(tmp_path_factory.mktemp("e2e") / "proj", mp, TINY_E2E)
        params = load_params()
        manifests = {stage: run_stage(stage, "netflow", params, track=stage == "register")
                     for stage in ("ingest", "preprocess", "train", "compress", "evaluate", "register")}
        yield {"root": root, "params": params, "manifests": manifests}


def test_every_variant_is_a_model_folder_with_its_record(pipeline):
    root = pipeline["root"]
    compressed = root / "artifacts" / "netflow" / "compressed"
    assert sorted(p.name for p in compressed.iterdir()) == sorted(METHODS_RUN)
    table = json.loads((root / "reports" / "netflow" / "compress.json").read_text())["methods"]
    assert set(table) == {"teacher", *METHODS_RUN}
    teacher_meta = json.loads((root / "artifacts" / "netflow" / "teacher" / "config.json").read_text())
    for variant in METHODS_RUN:
        meta = json.loads((compressed / variant / "config.json").read_text())
        assert meta["compression"] == variant and meta["chain"] == variant.split("+")
        assert meta["quant"] == (variant.split("+")[-1] if variant.split("+")[-1].startswith("int8") else None)
        assert meta["schema"] == teacher_meta["schema"]  # what scoring needs travels with every variant
        row = table[variant]
        assert row["bytes"] == (compressed / variant / "model.safetensors").stat().st_size
        assert row["size_ratio"] == pytest.approx(row["bytes"] / table["teacher"]["bytes"])
        assert json.loads((compressed / variant / "metrics.json").read_text()) == row
    distilled = json.loads((compressed / "distill" / "config.json").read_text())
    assert distilled["student"] and distilled["config"]["n_layers"] == 1  # the student's own architecture
    assert table["distill"]["parameters"] < table["teacher"]["parameters"]
    assert table["int8_eager"]["size_ratio"] < 0.4
    chained = json.loads((compressed / "prune+distill+int8_eager" / "config.json").read_text())
    # after prune, distill fine-tunes the pruned model (its own architecture, distill.finetune_epochs) ...
    assert not chained["student"] and chained["stats"]["distill_epochs"] == 1
    assert "distillation fine-tuning" in chained["description"]
    assert table["prune+distill+int8_eager"]["parameters"] == table["prune"]["parameters"]
    # ... while distill alone trains a new student for distill.epochs
    assert distilled["stats"]["distill_epochs"] == 2 and "into a smaller student" in distilled["description"]


@pytest.mark.parametrize("variant", METHODS_RUN)
def test_load_any_rebuilds_each_variant_from_its_files(pipeline, variant):
    """Loaded twice, a variant gives the same outputs (nothing random left), of the right shape and finite."""
    folder = pipeline["root"] / "artifacts" / "netflow" / "compressed" / variant
    a, meta = load_any(folder)
    b, _ = load_any(folder)
    inputs = a.example_inputs(16, seed=2)
    with torch.inference_mode():
        out_a, out_b = a(*inputs), b(*inputs)
    assert torch.equal(out_a, out_b) and out_a.shape == (16, 1) and torch.isfinite(out_a).all()
    assert {method_of(t) for t in meta["chain"]} <= set(METHODS)


def test_evaluate_measures_every_variant_and_picks_one_within_the_budget(pipeline):
    root = pipeline["root"]
    result = json.loads((root / "reports" / "netflow" / "metrics.json").read_text())
    models = result["models"]
    assert set(models) == {"teacher", "logreg", *METHODS_RUN}
    choice = result["choice"]
    chosen = models[choice["variant"]]
    teacher = models["teacher"]
    assert chosen["balanced_accuracy"] >= teacher["balanced_accuracy"] - 0.05
    assert chosen["latency_ms"] <= teacher["latency_ms"]
    for name, why in choice["rejected"].items():
        assert "budget" in why or "slower" in why, (name, why)
        if "slower" in why:
            assert models[name]["latency_ms"] > teacher["latency_ms"]
    for name in METHODS_RUN:  # measured in this process: metric, size, latency, throughput, parameters
        m = models[name]
        assert m["bytes"] > 0 and m["latency_ms"] > 0 and m["throughput_per_s"] > 0 and m["parameters"] > 0
    md = (root / "reports" / "netflow" / "compress.md").read_text()
    assert f"Chosen: **{choice['variant']}**" in md and all(f"| {v} |" in md for v in METHODS_RUN)
    assert {"compress_latency.png", "compress_size.png"} <= {p.name for p in (root / "reports" / "netflow" / "plots").iterdir()}
    assert "## Compression: the Pareto table" in (root / "reports" / "netflow" / "report.md").read_text()


def test_the_registered_pyfunc_serves_the_chosen_variant(pipeline):
    from tasks import tracking
    from tasks.domains import LoadedModel
    from tasks.domains.netflow.scoring import score_frame

    root = pipeline["root"]
    reg = pipeline["manifests"]["register"]
    choice = json.loads((root / "reports" / "netflow" / "metrics.json").read_text())["choice"]["variant"]
    assert reg["model"] == choice
    folder = root / "artifacts" / "netflow" / ("teacher" if choice == "teacher" else f"compressed/{choice}")
    model, meta = load_any(folder)
    frame = pd.read_parquet(root / "data" / "raw" / "netflow" / "flows.parquet").head(64)
    import polars as pl

    raw = pl.from_pandas(frame).rename({"label": meta["schema"]["label_column"]}).drop("is_attack")
    expected = score_frame(LoadedModel(model, meta, folder), raw).to_pandas()
    pyfunc = tracking.load_pyfunc(f"models:/{reg['registered_model']}/{reg['version']}")
    got = pyfunc.predict(raw.to_pandas())
    assert np.allclose(got["p_attack"].to_numpy(), expected["p_attack"].to_numpy(), atol=0, rtol=0)
    version = tracking.client().get_model_version(reg["registered_model"], reg["version"])
    assert version.tags["compression.method"] == choice


def _raw_flows(root, meta, n=64):
    import polars as pl

    frame = pd.read_parquet(root / "data" / "raw" / "netflow" / "flows.parquet").head(n)
    return pl.from_pandas(frame).rename({"label": meta["schema"]["label_column"]}).drop("is_attack").to_pandas()


def test_one_nested_artifact_serves_every_width(pipeline, tmp_path):
    """The packaged pyfunc of nested-w0.5 runs at its own width by default, at any other extracted width on
    request (different outputs), and names the widths it serves when asked for another."""
    from tasks import domains, serving, tracking
    from tasks.register import package

    root = pipeline["root"]
    compressed = root / "artifacts" / "netflow" / "compressed"
    folder = compressed / "nested-w0.5"
    assert (folder / "elastic" / "model.safetensors").exists()  # the full nested model travels with the variant
    served = serving.FormerflowModel(folder)
    assert served.widths == [1.0, 0.5, 0.25] and served.width == 0.5
    example = domains.get("netflow").input_example(served.loaded)
    signature = serving.signature(served, example)
    assert [(p.name, p.default) for p in signature.params.params] == [("width", 0.5)]
    target, _ = package(folder, tmp_path / "pkg", None, signature, example.data)
    pyfunc = tracking.load_pyfunc(str(target))
    raw = _raw_flows(root, served.meta)
    own, half = pyfunc.predict(raw), pyfunc.predict(raw, params={"width": 0.5})
    quarter, full = pyfunc.predict(raw, params={"width": 0.25}), pyfunc.predict(raw, params={"width": 1.0})
    assert np.array_equal(own["p_attack"], half["p_attack"])
    assert not np.allclose(half["p_attack"], quarter["p_attack"]) and not np.allclose(half["p_attack"], full["p_attack"])
    # width 1 is the full nested model itself
    full_model, full_meta = load_any(folder / "elastic")
    import polars as pl

    from tasks.domains import LoadedModel
    from tasks.domains.netflow.scoring import score_frame

    expected = score_frame(LoadedModel(full_model, full_meta, folder), pl.from_pandas(raw)).to_pandas()
    assert np.allclose(full["p_attack"], expected["p_attack"], atol=1e-6)
    with pytest.raises(Exception, match=r"width 0.3 is not served .*available widths: 1, 0.5, 0.25"):
        pyfunc.predict(raw, params={"width": 0.3})


def test_a_quantized_nested_variant_quantizes_the_widths_it_serves(pipeline):
    from tasks import serving

    compressed = pipeline["root"] / "artifacts" / "netflow" / "compressed"
    q = serving.FormerflowModel(compressed / "nested-w0.25+int8_eager")
    other = q.at_width(0.5).model
    assert not any(type(m) is torch.nn.Linear for m in other.modules())  # every Linear became a dynamic int8 one
    f = serving.FormerflowModel(compressed / "nested-w0.5").at_width(0.5).model
    inputs = f.example_inputs(32, seed=3)
    with torch.inference_mode():
        assert torch.allclose(torch.sigmoid(other(*inputs)), torch.sigmoid(f(*inputs)), atol=0.05)
    with pytest.raises(ValueError, match="none: not a nested"):
        serving.FormerflowModel(compressed / "distill").at_width(0.5)


def test_score_cli_width_error_names_the_served_widths(pipeline, tmp_path, capsys):
    """``formerflow score --width`` on a version that is not nested: one clean line, no output written."""
    from tasks.__main__ import main

    root = pipeline["root"]
    reg = pipeline["manifests"]["register"]
    out = tmp_path / "preds.parquet"
    code = main(["score", "netflow", "--input", str(root / "data" / "raw" / "netflow" / "flows.parquet"),
                 "--output", str(out), "--width", "0.3", "--model-uri",
                 f"models:/{reg['registered_model']}/{reg['version']}"])
    err = capsys.readouterr().err
    assert code == 1 and "width 0.3 is not served" in err and "available widths" in err
    assert not out.exists()
