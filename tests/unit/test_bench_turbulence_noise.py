"""bench/turbulence_noise.py: its settings parse with clear errors, and its "default" row is params.yaml's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench.turbulence_noise import DEFAULT_SETTINGS, parse_setting


def test_settings_parse_name_and_json():
    assert parse_setting('pf2={"pushforward_steps": 2}') == ("pf2", {"pushforward_steps": 2})
    assert parse_setting('wide = {"model": {"dim": 64}}') == ("wide", {"model": {"dim": 64}})


@pytest.mark.parametrize("text, match", [
    ("pf2", "expected name=JSON"),
    ('={"epochs": 1}', "expected name=JSON"),
    ("pf2={pushforward_steps: 2}", "not JSON"),
    ("pf2=[2]", "expected a JSON object"),
])
def test_bad_settings_are_refused_by_name(text, match):
    with pytest.raises(SystemExit, match=match):
        parse_setting(text)


def test_the_default_row_is_what_params_yaml_trains():
    train = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())["train"]["turbulence"]
    (default,) = [v for k, v in DEFAULT_SETTINGS.items() if "(default)" in k]
    assert default == {"input_noise": train["input_noise"], "epochs": train["epochs"]}
    before = DEFAULT_SETTINGS["no noise, 6 epochs (before)"]
    assert before != default
