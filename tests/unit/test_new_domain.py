"""The README's checklist for a fifth domain holds: a new package, a model file and params.yaml are all it takes.

In a copy of the sources, a toy classification domain is added exactly as the checklist says (nothing else
is edited: not tasks/params.py, not dvc.yaml, not the generic stages, not pyproject.toml's contracts). The
copy must then find it, validate its params, run its stages and the generic train / compress / evaluate
stages on it, list its dvc stages, and keep every import contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow

FILES = {
    "tasks/domains/toy/__init__.py": '''"""The ``toy`` domain: two Gaussian blobs in a CSV (the README's checklist, exercised by a test)."""
''',
    "tasks/domains/toy/params.py": '''
from __future__ import annotations

from pydantic import Field

from tasks.params_base import ClassificationEvaluate, ClassificationTrain, DomainParams, SourceSection, Strict


class ToyIngest(SourceSection):
    n_rows: int = Field(400, ge=10)


class ToyPreprocess(Strict):
    test_fraction: float = Field(0.25, gt=0, lt=1)


class ToyTrain(ClassificationTrain):
    defaults = {"model": {"arch": "mlp"}, "task": "multiclass", "epochs": 10, "steps_per_epoch": 20, "batch_size": 32, "lr": 0.01,
                "balanced_batches": False}


PARAMS = DomainParams(ingest=ToyIngest, preprocess=ToyPreprocess, train=ToyTrain, evaluate=ClassificationEvaluate)
''',
    "tasks/domains/toy/ingest.py": '''
from __future__ import annotations

import numpy as np
import polars as pl

from tasks import store


def ingest(params, run=None):
    p = params.ingest.toy
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, p.n_rows)
    x = rng.normal(size=(p.n_rows, 2)) + 2.0 * y[:, None]
    paths = store.domain_paths("toy")
    with store.atomic_dir(paths.raw) as out:
        pl.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": y}).write_csv(out / "rows.csv")
    return {"stage": "ingest", "domain": "toy", "rows": int(p.n_rows)}
''',
    "tasks/domains/toy/preprocess.py": '''
from __future__ import annotations

import numpy as np
import polars as pl
from safetensors.numpy import save_file

from tasks import store


def preprocess(params, run=None):
    paths = store.domain_paths("toy")
    frame = pl.read_csv(paths.raw / "rows.csv")
    n_test = int(frame.height * params.preprocess.toy.test_fraction)
    with store.atomic_dir(paths.processed) as out:
        for name, part in {"train": frame.head(frame.height - n_test), "test": frame.tail(n_test)}.items():
            # polars hands out column-major arrays; safetensors writes the buffer as is, so make it row-major
            save_file({"x": np.ascontiguousarray(part.select("a", "b").to_numpy(), dtype="float32"),
                       "y": part["label"].to_numpy().astype("int64")}, str(out / f"{name}.safetensors"))
        store.atomic_write_json(out / "schema.json", {"domain": "toy", "classes": ["low", "high"]})
    return {"stage": "preprocess", "domain": "toy"}
''',
    "tasks/domains/toy/domain.py": '''
from __future__ import annotations

import numpy as np
import torch
from safetensors.numpy import load_file

from tasks import store
from tasks.domains import ClassificationDefaults, ScoringInput, TaskInfo


class Rows:
    def __init__(self, x, y):
        self.x, self.labels = torch.as_tensor(x), np.asarray(y)

    def __len__(self):
        return len(self.labels)

    def batch(self, idx):
        return (self.x[torch.as_tensor(idx)],), torch.as_tensor(self.labels[idx])


class ToyDomain(ClassificationDefaults):
    name = "toy"

    def load_split(self, name, task):
        t = load_file(str(store.domain_paths("toy").processed / f"{name}.safetensors"))
        return Rows(t["x"], t["y"])

    def model_config(self, params, schema):
        return {**params.train.toy.model.config, "n_outputs": len(schema["classes"])}

    def task_info(self, params, schema):
        return TaskInfo(task="multiclass", class_names=schema["classes"], positive="high", negative="low",
                        item="row", threshold=params.evaluate.toy.threshold)

    def read_scoring_input(self, urls, ip, cache):
        return ScoringInput(None)

    def score_frame(self, loaded, frame):
        return frame


DOMAIN = ToyDomain()
''',
    "models/toy_mlp.py": '''
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.base import RegisteredModel, check_int
from models.registry import register


@dataclass
class ToyMLPConfig:
    n_outputs: int = 2
    hidden: int = 8

    def __post_init__(self):
        check_int(self, "n_outputs", 1)
        check_int(self, "hidden", 1)


@register("toy/mlp")
class ToyMLP(RegisteredModel):
    Config = ToyMLPConfig

    def __init__(self, config):
        super().__init__(config)
        self.net = nn.Sequential(nn.Linear(2, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.n_outputs))

    def forward(self, x):
        return self.net(x)  # (B, 2) -> (B, n_outputs)

    def example_inputs(self, batch_size, seed=0):
        return (torch.randn(batch_size, 2, generator=torch.Generator().manual_seed(seed)),)
''',
}

SCRIPT = textwrap.dedent('''
    from tasks import domains
    from tasks.params import load_params
    from tasks.stages import run_stage

    assert "toy" in domains.names(), domains.names()
    params = load_params(overrides=["pipeline.domains=[toy]"])
    assert params.train.toy.epochs == 10 and params.register.toy.primary_metric == "balanced_accuracy"
    for stage in ("ingest", "preprocess", "train", "compress", "evaluate"):
        run_stage(stage, "toy", params, track=False)
    import json, pathlib
    m = json.loads(pathlib.Path("reports/toy/metrics.json").read_text())["models"]
    assert set(m) >= {"teacher", "int8"} and m["teacher"]["balanced_accuracy"] > 0.8, m["teacher"]
    print("toy ok", round(m["teacher"]["balanced_accuracy"], 3))
''')


def test_a_fifth_domain_needs_only_its_package_a_model_and_params(tmp_path):
    for rel in ("tasks", "models", "flows"):
        shutil.copytree(REPO / rel, tmp_path / rel, ignore=shutil.ignore_patterns("__pycache__"))
    for rel in ("pyproject.toml", "dvc.yaml"):
        shutil.copy2(REPO / rel, tmp_path / rel)
    for rel, text in FILES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text.lstrip())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for stage, section in {"ingest": {"n_rows": 400}, "preprocess": {}, "train": {}, "compress": {"latency_repeats": 3},
                           "evaluate": {"latency_repeats": 3, "throughput_batch_size": 8}, "register": {},
                           "score": {}}.items():
        params[stage]["toy"] = section
    params["pipeline"]["domains"].append("toy")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "FORMERFLOW_ROOT": str(tmp_path)}
    bin_dir = Path(sys.executable).parent

    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0 and "toy ok" in run.stdout, run.stdout[-2000:] + run.stderr[-4000:]

    lint = subprocess.run([str(bin_dir / "lint-imports"), "--no-logo", "--no-cache"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert lint.returncode == 0 and "6 kept, 0 broken" in lint.stdout, lint.stdout[-3000:]

    dvc = subprocess.run([str(bin_dir / "dvc"), "stage", "list", "--name-only"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    if dvc.returncode != 0:  # dvc needs a repository: make the copy one
        subprocess.run([str(bin_dir / "dvc"), "init", "--no-scm", "-q"], cwd=tmp_path, env=env, check=True)
        dvc = subprocess.run([str(bin_dir / "dvc"), "stage", "list", "--name-only"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert {f"{s}@toy" for s in ("ingest", "preprocess", "train", "compress", "evaluate", "register")} <= set(
        dvc.stdout.split()), dvc.stdout + dvc.stderr


def test_baseline_hooks_come_as_a_pair():
    """A domain that fits baselines but forgets their features fails where it is defined, naming itself;
    one without baselines gets an empty feature matrix."""
    import numpy as np

    from tasks.domains import ClassificationDefaults

    with pytest.raises(TypeError, match="HalfDomain overrides fit_baselines but not baseline_features"):
        class HalfDomain(ClassificationDefaults):  # noqa: F841 - defining it is the test
            def fit_baselines(self, params, train):
                return {"b": object()}

    class Plain(ClassificationDefaults):
        name = "plain"

        def model_config(self, params, schema):
            return {}

    feats = Plain().baseline_features(np.zeros((5, 3)))
    assert feats.shape == (5, 0)
