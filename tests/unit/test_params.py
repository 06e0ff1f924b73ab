"""The params schema: defaults load, bad keys and values fail with their dotted path, profiles merge."""

from __future__ import annotations

import pytest
import yaml

from tasks.params import ParamsError, load_params, parse_override


def test_repo_params_and_profiles_validate(project):
    from tests.conftest import REPO

    p = load_params(REPO / "params.yaml")
    assert p.pipeline.domains == ["netflow"]
    assert p.train.netflow.model.arch == "flowtransformer"
    paper = load_params(REPO / "params.yaml", profiles=["paper"])
    assert paper.preprocess.netflow.test_fraction == 0.025
    assert paper.train.netflow.epochs == 5
    # a profile merges: keys it does not name keep their params.yaml values
    assert paper.train.netflow.baselines == p.train.netflow.baselines


def test_unknown_key_names_dotted_path(project):
    data = yaml.safe_load((project / "params.yaml").read_text())
    data["train"]["netflow"]["lrr"] = 0.1
    (project / "params.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ParamsError, match=r"train\.netflow\.lrr: Extra inputs are not permitted"):
        load_params()


def test_bad_value_names_path_and_value(project):
    with pytest.raises(ParamsError, match=r"train\.netflow\.lr: .*greater than 0.*-1"):
        load_params(overrides=["train.netflow.lr=-1"])
    with pytest.raises(ParamsError, match=r"train\.netflow\.task: .*'binary' or 'multiclass'"):
        load_params(overrides=["train.netflow.task=regression"])


def test_model_config_checked_at_load(project):
    with pytest.raises(ParamsError, match=r"train\.netflow\.model\.config: .*head"):
        load_params(overrides=["train.netflow.model.config.head=avg"])
    with pytest.raises(ParamsError, match=r"train\.netflow\.model\.config: .*unknown config field.*'depth'"):
        load_params(overrides=["train.netflow.model.config.depth=3"])
    with pytest.raises(ParamsError, match=r"train\.netflow\.model\.arch: .*netflow/flowtransformer"):
        load_params(overrides=["train.netflow.model.arch=lstm"])


def test_split_fractions_checked(project):
    with pytest.raises(ParamsError, match=r"preprocess\.netflow"):
        load_params(overrides=["preprocess.netflow.test_fraction=0.5", "preprocess.netflow.val_fraction=0.45"])


def test_override_parsing_and_profile_env(project, monkeypatch):
    assert parse_override("a.b.c=3") == {"a": {"b": {"c": 3}}}
    assert parse_override("a.b=[x, y]") == {"a": {"b": ["x", "y"]}}
    with pytest.raises(ParamsError, match="key.path=value"):
        parse_override("novalue")
    monkeypatch.setenv("FORMERFLOW_PROFILE", "paper")
    assert load_params().preprocess.netflow.test_fraction == 0.025
    with pytest.raises(ParamsError, match="not found"):
        load_params(profiles=["nosuchprofile"])


def test_missing_and_malformed_file(project):
    with pytest.raises(ParamsError, match="not found"):
        load_params(project / "nope.yaml")
    (project / "bad.yaml").write_text("train: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(project / "bad.yaml")
