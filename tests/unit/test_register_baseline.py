"""The gate knows the baselines (issue 14, finding 6), on a tiny trained netflow project and a real MLflow store.

A candidate whose primary metric is worse than the best baseline of its own ``metrics.json`` (scored on the same
test split) is registered with alias ``candidate`` but not promoted, also when there is no champion yet; the
reason names the baseline and both values, and is in ``registry.json`` and the version's tags.
``register.<domain>.allow_below_baseline`` promotes it anyway, and says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from tests.conftest import TINY_NETFLOW, deep_merge, enter_copy, setup_project

D = "netflow"
NAME = f"formerflow-{D}"
# The threshold fixed at 0.5: one chosen on validation for the trained teacher could put the zeroed teacher's
# constant 0.5 on the side of the test split's majority class (balanced accuracy 1.0 on a one-class tiny test).
TINY = deep_merge(TINY_NETFLOW, {"register": {D: {"allow_below_baseline": False}}, "train": {D: {"threshold": 0.5}}})


@pytest.fixture(scope="module")
def below(tmp_path_factory) -> Path:
    """A project whose teacher is worse than its logreg baseline: zero weights (one constant prediction, chance
    balanced accuracy), evaluated as such. No MLflow store yet."""
    from tasks.params import load_params
    from tasks.stages import run_stage

    with pytest.MonkeyPatch.context() as mp:
        root = setup_project(tmp_path_factory.mktemp("baseline") / "proj", mp, TINY)
        params = load_params()
        for stage in ("ingest", "preprocess", "train", "compress"):
            run_stage(stage, D, params, track=False)
        weights = root / "artifacts" / D / "teacher" / "model.safetensors"
        with safe_open(str(weights), "np") as fh:
            meta = fh.metadata()
        save_file({k: np.zeros_like(v) for k, v in load_file(str(weights)).items()}, str(weights), metadata=meta)
        run_stage("evaluate", D, params, track=False)
    return root


@pytest.fixture
def proj(below, tmp_path, monkeypatch) -> Path:
    return enter_copy(below, tmp_path / "proj", monkeypatch)


def register(*overrides: str) -> dict:
    from tasks.params import load_params
    from tasks.register import register as run

    return run(D, load_params(overrides=list(overrides)))


def test_a_candidate_below_its_baseline_is_registered_but_not_promoted(proj):
    from tasks import tracking

    models = json.loads((proj / "reports" / D / "metrics.json").read_text())["models"]
    teacher, logreg = models["teacher"]["balanced_accuracy"], models["logreg"]["balanced_accuracy"]
    assert teacher < logreg, (teacher, logreg)  # the setup: a constant predictor below the baseline

    reg = register()
    assert reg["version"] == "1" and reg["promoted"] is False and reg["champion_version"] is None
    assert reg["reason"] == (f"balanced_accuracy {teacher:.4f} is worse than baseline logreg {logreg:.4f} "
                             "(higher is better); register.netflow.allow_below_baseline is false")
    assert reg["baseline"] == {"name": "logreg", "value": logreg, "candidate_below": True, "allowed": False,
                               "compared": ["logreg"]}
    assert json.loads((proj / "reports" / D / "registry.json").read_text())["reason"] == reg["reason"]
    c = tracking.client()
    tags = c.get_model_version(NAME, "1").tags
    assert tags["gate.decision"] == "kept" and tags["gate.reason"] == reg["reason"]
    assert tags["gate.baseline_name"] == "logreg" and "gate.baseline_value" not in tags  # a number: a metric
    assert c.get_run(c.get_model_version(NAME, "1").run_id).data.metrics["gate.baseline_value"] == logreg
    assert tags["gate.below_baseline"] == "True"
    # registered as a version with alias candidate only: there is no champion to serve
    assert str(c.get_model_version_by_alias(NAME, "candidate").version) == "1"
    with pytest.raises(MlflowException):
        c.get_model_version_by_alias(NAME, "champion")

    # The switch promotes it, and the reason still names the baseline.
    reg = register(f"register.{D}.allow_below_baseline=true")
    assert reg["version"] == "2" and reg["promoted"] is True
    assert reg["reason"].startswith("no champion yet; balanced_accuracy") and "allowed by" in reg["reason"]
    assert str(c.get_model_version_by_alias(NAME, "champion").version) == "2"
    assert reg["baseline"]["allowed"] is True and reg["baseline"]["candidate_below"] is True
