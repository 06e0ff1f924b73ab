"""The params schema: defaults load, bad keys and values fail with their dotted path, profiles merge."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.params import ParamsError, load_params, parse_override


def test_repo_params_and_profiles_validate(project):
    from tests.conftest import REPO

    p = load_params(REPO / "params.yaml")
    assert p.pipeline.domains == ["netflow", "eeg", "finance", "turbulence"]
    assert p.train.netflow.model.arch == "flowtransformer"
    paper = load_params(REPO / "params.yaml", profiles=["paper"])
    assert paper.train.turbulence.lr == 5e-4 and paper.preprocess.turbulence.t_in == 1
    assert paper.train.turbulence.model.config.get("output_filter", "none") == "none"
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


_PROFILES = Path(__file__).resolve().parents[2] / "profiles"


# Every profile shipped in the repository, the examples of "Your own data" included (profiles/examples/*.yaml,
# named examples/<name> as on the command line).
@pytest.mark.parametrize("profile", sorted(str(p.relative_to(_PROFILES).with_suffix(""))
                                           for p in _PROFILES.rglob("*.yaml")))
def test_every_profile_validates(project, profile):
    from tests.conftest import REPO

    load_params(REPO / "params.yaml", profiles=[profile])


def test_lookup_tables_are_replaced_not_merged(project):
    from tests.conftest import REPO

    bonn = load_params(REPO / "params.yaml", profiles=["bonn"])
    # the default {left_hand: left_hand, ...} would name classes the Bonn spec does not have
    assert bonn.ingest.eeg.spec.event_map == {}
    assert set(bonn.ingest.eeg.spec.label_map.values()) == {"non_seizure", "seizure"}
    mmi = load_params(REPO / "params.yaml", profiles=["eegmmidb"])
    assert mmi.ingest.eeg.spec.event_map == {"T1": "left_hand", "T2": "right_hand"}
    # ordinary sections still merge key by key
    assert mmi.train.eeg.protocol.seeds == load_params(REPO / "params.yaml").train.eeg.protocol.seeds


def test_eeg_spec_and_protocol_are_checked_at_load(project):
    with pytest.raises(ParamsError, match=r"ingest\.eeg\.spec: .*classes not in classes .*\['rest'\]"):
        load_params(overrides=["ingest.eeg.spec.event_map={T0: rest}"])
    with pytest.raises(ParamsError, match=r"train\.eeg\.protocol\.configs\.dbconformer: .*n_heads"):
        load_params(overrides=["train.eeg.protocol.configs={dbconformer: {n_heads: 0}}"])
    with pytest.raises(ParamsError, match=r"train\.eeg\.protocol\.name: .*'co', 'cv' or 'loso'"):
        load_params(overrides=["train.eeg.protocol.name=holdout"])
    with pytest.raises(ParamsError, match=r"preprocess\.eeg: .*tmax"):
        load_params(overrides=["preprocess.eeg.tmax=0.1"])
    with pytest.raises(ParamsError, match=r"preprocess\.eeg: .*Nyquist"):
        load_params(overrides=["preprocess.eeg.sfreq=50"])


def test_finance_params_are_checked_at_load(project):
    from tests.conftest import REPO

    p = load_params(REPO / "params.yaml")
    t = p.train.finance  # FinAI-BERT's recipe (models.md 3.1)
    assert (t.epochs, t.batch_size, t.lr, t.lr_schedule, t.select_metric) == (3, 8, 5e-5, "linear", "f1")
    assert (p.preprocess.finance.test_fraction, p.preprocess.finance.seed, p.preprocess.finance.max_length) == (
        0.2, 42, 128)
    with pytest.raises(ParamsError, match=r"train\.finance.*preprocess\.finance\.encoder_dir"):
        load_params(overrides=["train.finance.model.config.max_length=64"])  # the tokenizer's, set in preprocess
    with pytest.raises(ParamsError, match=r"train\.finance\.model\.config: unknown config field\(s\) \['model_dir'\]"):
        load_params(overrides=["train.finance.model.config.model_dir=/tmp/bert"])  # the encoder folder is preprocess's
    with pytest.raises(ParamsError, match=r"ingest\.finance.*give ingest\.finance\.source"):
        load_params(overrides=["ingest.finance.source=null"])
    with pytest.raises(ParamsError, match=r"train\.finance\.baselines"):
        load_params(overrides=["train.finance.baselines=[xgboost]"])
    with pytest.raises(ParamsError, match=r"ingest\.finance\.on_bad_document"):
        load_params(overrides=["ingest.finance.on_bad_document=ignore"])


def test_turbulence_params_and_paper_profile(project):
    """Defaults: the IFactFormer recipe (models.md 4.5) but lr 2e-3 (issue 17's CPU setting) and a 2-D source;
    the paper profile: the recipe's lr, one input snapshot and no output filter, its width, 3-D."""
    import models
    from tasks import domains
    from tests.conftest import REPO

    p = load_params(REPO / "params.yaml")
    t = p.train.turbulence
    assert (t.task, t.lr, t.lr_schedule, t.lr_step_epochs, t.lr_gamma, t.batch_size, t.select_metric) == (
        "regression", 2e-3, "step", 5, 0.7, 5, "rel_l2")
    assert p.register.turbulence.higher_is_better is False and p.register.turbulence.primary_metric.startswith(
        "rollout_rel_l2")
    paper = load_params(REPO / "params.yaml", profiles=["paper"])
    assert paper.train.turbulence.lr == 5e-4 and paper.preprocess.turbulence.t_in == 1
    assert paper.train.turbulence.model.config.get("output_filter", "none") == "none"
    s = paper.ingest.turbulence.synthetic
    assert (s.dim, s.fine_n, s.coarse_n) == (3, 32, 16) and paper.train.turbulence.residual is False
    schema = {"grid": [32, 33, 16], "lengths": [12.566, 2.0, 4.189], "components": ["u", "v", "w"], "t_in": 1,
              "mean": [0.0] * 3, "std": [1.0] * 3, "increment_mean": [0.0] * 3, "increment_std": [1.0] * 3}
    model = models.build("turbulence/ifactformer", domains.get("turbulence").model_config(paper, schema))
    assert model.reference_param_count() == 1_181_763  # the count main.ipynb prints (models.md 4.3)
    with pytest.raises(ParamsError, match=r"train\.turbulence\.balanced_batches"):
        load_params(overrides=["train.turbulence.balanced_batches=true"])
    with pytest.raises(ParamsError, match=r"ingest\.turbulence\.spec\.coords\.q"):
        load_params(overrides=["ingest.turbulence.spec.coords={q: 1.0}"])
