"""Registry behaviour, and conformance of every registered model to the registry contract."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import models.registry as registry
from models import build, get, list_models, register

REPO_ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("key", list_models())
def test_registered_model_conforms(key):
    cls = get(key)
    assert cls.registry_key == key
    assert dataclasses.is_dataclass(cls.Config)
    torch.manual_seed(0)
    model = build(key, {})
    assert isinstance(model, nn.Module)
    assert model.config == cls.Config()
    model.eval()
    inputs = model.example_inputs(3)
    assert isinstance(inputs, tuple) and all(isinstance(t, torch.Tensor) for t in inputs)
    with torch.no_grad():
        out = model(*inputs)
    assert out.shape[0] == 3
    if hasattr(model.config, "n_outputs"):
        assert out.shape == (3, model.config.n_outputs)
    assert torch.isfinite(out).all()

    cfg = json.loads(json.dumps(model.config_dict()))
    clone = build(key, cfg).eval()
    assert clone.config_dict() == model.config_dict()
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(clone(*inputs), out)


def _calls_and_imports(path: Path) -> tuple[set[str], set[str]]:
    """Names called (``f`` or ``obj.f`` -> ``f``) and top-level packages imported by a source file."""
    calls, imports = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imports |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imports.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call):
            func = node.func
            calls.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return calls, imports


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "models").glob("*.py")), ids=lambda p: p.name)
def test_models_import_no_pipeline_code_and_do_no_file_io(path):
    calls, imports = _calls_and_imports(path)
    # models is the bottom layer: tasks and flows import it, never the other way round.
    assert not imports & {"tasks", "flows"}
    # Configs and weights reach a model through its constructor and load_state_dict, not from files
    # it opens itself (text_encoder too: the finance domain hands it the pre-trained weights).
    io = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "save", "load", "load_file"}
    assert not calls & io


def test_registry_lists_flowtransformer():
    assert "netflow/flowtransformer" in list_models()
    assert list_models("netflow") == [k for k in list_models() if k.startswith("netflow/")]
    assert "netflow/flowtransformer" in list_models("netflow")
    assert list_models("no-such-domain") == []
    assert all(len(k.split("/")) == 2 for k in list_models())


def test_registry_fills_itself_without_manual_imports():
    code = (
        "import sys, models\n"
        "assert 'models.flowtransformer' not in sys.modules\n"
        "print(models.list_models())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "netflow/flowtransformer" in result.stdout


# ---------------------------------------------------------------------------- build errors


def test_build_accepts_config_instance_and_none():
    cls = get("netflow/flowtransformer")
    model = build("netflow/flowtransformer", cls.Config(head="gap"))
    assert model.config.head == "gap"
    assert build("netflow/flowtransformer").config == cls.Config()


def test_unknown_key_lists_known_models():
    with pytest.raises(KeyError, match="netflow/flowtransformer") as exc:
        build("netflow/nope", {})
    assert "netflow/nope" in str(exc.value)


def test_unknown_config_field_is_named():
    with pytest.raises(TypeError, match="bogus_field"):
        build("netflow/flowtransformer", {"bogus_field": 1, "head": "gap"})


def test_bad_config_value_is_named():
    with pytest.raises(ValueError, match="head"):
        build("netflow/flowtransformer", {"head": "nope"})


def test_wrong_config_type():
    with pytest.raises(TypeError, match="mapping"):
        build("netflow/flowtransformer", ["head", "gap"])


# ---------------------------------------------------------------------------- register errors


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry, so test registrations do not leak."""
    list_models()  # populate before copying
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _model_class(name: str = "Toy"):
    @dataclasses.dataclass
    class Config:
        width: int = 4

    class Toy(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.config = config
            self.lin = nn.Linear(config.width, 1)

        def forward(self, x):
            return self.lin(x)

        def example_inputs(self, batch_size):
            return (torch.zeros(batch_size, self.config.width),)

        def config_dict(self):
            return dataclasses.asdict(self.config)

    Toy.Config = Config
    Toy.__qualname__ = name
    return Toy


def test_register_and_build_toy(scratch_registry):
    register("toy/linear")(_model_class())
    assert "toy/linear" in list_models("toy")
    model = build("toy/linear", {"width": 3})
    assert model(*model.example_inputs(2)).shape == (2, 1)


@pytest.mark.parametrize("key", ["toy", "toy/", "/linear", "toy/a/b", "Toy/Linear"])
def test_register_rejects_malformed_keys(key):
    with pytest.raises(ValueError, match="domain"):
        register(key)


def test_register_rejects_duplicate_key(scratch_registry):
    register("toy/linear")(_model_class("Toy"))
    with pytest.raises(ValueError, match="already used"):
        register("toy/linear")(_model_class("OtherToy"))


def test_register_requires_config_dataclass(scratch_registry):
    class NoConfig(nn.Module):
        pass

    with pytest.raises(TypeError, match="Config"):
        register("toy/noconfig")(NoConfig)


def test_register_requires_contract_methods(scratch_registry):
    cls = _model_class()
    del cls.example_inputs
    with pytest.raises(TypeError, match="example_inputs"):
        register("toy/nomethods")(cls)


def test_broken_model_module_fails_loudly(monkeypatch):
    monkeypatch.setattr(registry, "_POPULATED", False)
    fake = pkgutil.ModuleInfo(None, "no_such_model_file", False)
    monkeypatch.setattr(registry.pkgutil, "iter_modules", lambda path: [fake])
    with pytest.raises(ImportError, match="models.no_such_model_file"):
        list_models()
