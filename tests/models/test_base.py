"""models.base: the config-field validators and the RegisteredModel base class."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
import torch
from torch import nn

import models.registry as registry
from models import build, get, list_models, register
from models.base import (
    RegisteredModel,
    as_float_list,
    as_int_list,
    check_bool,
    check_choice,
    check_given_together,
    check_int,
    check_positive,
    check_rate,
)


@dataclasses.dataclass
class Cfg:
    """A stand-in config: the validators only read one attribute and the class name."""

    value: Any = None
    other: Any = None


# ---------------------------------------------------------------------------- validators


@pytest.mark.parametrize("value", [0, 1, 10**9])
def test_check_int_accepts(value):
    check_int(Cfg(value), "value", 0)


@pytest.mark.parametrize("value", [-1, True, False, 1.0, "1", None])
def test_check_int_rejects(value):
    with pytest.raises(ValueError) as exc:
        check_int(Cfg(value), "value", 0)
    assert str(exc.value) == f"Cfg.value must be an int >= 0, got {value!r}"


def test_check_int_optional_allows_none_only():
    check_int(Cfg(None), "value", 1, optional=True)
    with pytest.raises(ValueError, match=r"Cfg\.value must be an int >= 1, got 0"):
        check_int(Cfg(0), "value", 1, optional=True)


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 0.999])
def test_check_rate_accepts(value):
    check_rate(Cfg(value), "value")


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, True, "0.1", None, math.nan])
def test_check_rate_rejects(value):
    with pytest.raises(ValueError) as exc:
        check_rate(Cfg(value), "value")
    assert str(exc.value) == f"Cfg.value must be a float in [0, 1), got {value!r}"


def test_check_rate_optional():
    check_rate(Cfg(None), "value", optional=True)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        check_rate(Cfg(1.0), "value", optional=True)


@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan, True, "2", None])
def test_check_positive_rejects(value):
    with pytest.raises(ValueError, match=r"Cfg\.value must be a finite number > 0, got "):
        check_positive(Cfg(value), "value")


def test_check_positive_accepts_ints_and_floats():
    check_positive(Cfg(1), "value")
    check_positive(Cfg(1e-9), "value")


@pytest.mark.parametrize("value", [1, 0, "yes", "true", None])
def test_check_bool_rejects_look_alikes(value):
    with pytest.raises(ValueError) as exc:
        check_bool(Cfg(value), "value")
    assert str(exc.value) == f"Cfg.value must be true or false (a bool), got {value!r}"
    check_bool(Cfg(False), "value")


def test_check_choice_lists_allowed_values():
    check_choice(Cfg("b"), "value", ("a", "b"))
    with pytest.raises(ValueError) as exc:
        check_choice(Cfg("c"), "value", ("a", "b"))
    assert str(exc.value) == "Cfg.value must be one of ['a', 'b'], got 'c'"


def test_check_given_together():
    check_given_together(Cfg(None, None), "value", "other")
    check_given_together(Cfg(1, 2), "value", "other")
    for cfg in (Cfg(1, None), Cfg(None, 2)):
        with pytest.raises(ValueError, match=r"^Cfg\.value and other must be given together$"):
            check_given_together(cfg, "value", "other")


def test_as_int_list_returns_a_plain_list():
    out = as_int_list(Cfg((3, 4)), "value", 1)
    assert out == [3, 4] and type(out) is list
    assert as_int_list(Cfg([]), "value", 1) == []
    assert as_int_list(Cfg(None), "value", 1, optional=True) is None


@pytest.mark.parametrize(
    ("value", "length", "message"),
    [
        (5, None, "Cfg.value must be a list of ints >= 1, got 5"),
        ("ab", None, "Cfg.value must be a list of ints >= 1, got 'ab'"),
        (None, None, "Cfg.value must be a list of ints >= 1, got None"),
        ([1], 2, "Cfg.value must be a list of 2 ints >= 1, got [1]"),
        ([1], (2, 3), "Cfg.value must be a list of 2 or 3 ints >= 1, got [1]"),
        ([1, 0], None, "Cfg.value[1] must be an int >= 1, got 0"),
        ([1, True], 2, "Cfg.value[1] must be an int >= 1, got True"),
    ],
)
def test_as_int_list_rejects(value, length, message):
    with pytest.raises(ValueError) as exc:
        as_int_list(Cfg(value), "value", 1, length=length)
    assert str(exc.value) == message


def test_as_float_list_converts_to_floats():
    out = as_float_list(Cfg((1, 2.5)), "value", length=2, positive=True)
    assert out == [1.0, 2.5] and all(type(v) is float for v in out)
    assert as_float_list(Cfg([-1, 0]), "value") == [-1.0, 0.0]
    assert as_float_list(Cfg(None), "value", optional=True) is None


@pytest.mark.parametrize(
    ("value", "positive", "message"),
    [
        ([1.0], False, "Cfg.value must be a list of 2 finite numbers, got [1.0]"),
        ([1.0], True, "Cfg.value must be a list of 2 finite numbers > 0, got [1.0]"),
        ([1.0, math.nan], False, "Cfg.value[1] must be a finite number, got nan"),
        ([1.0, 0.0], True, "Cfg.value[1] must be a finite number > 0, got 0.0"),
        ([False, 1.0], False, "Cfg.value[0] must be a finite number, got False"),
    ],
)
def test_as_float_list_rejects(value, positive, message):
    with pytest.raises(ValueError) as exc:
        as_float_list(Cfg(value), "value", length=2, positive=positive)
    assert str(exc.value) == message


def test_messages_name_the_subclass():
    @dataclasses.dataclass
    class Sub(Cfg):
        pass

    with pytest.raises(ValueError, match=r"^Sub\.value "):
        check_int(Sub(-1), "value", 0)


# ---------------------------------------------------------------------------- RegisteredModel


@dataclasses.dataclass
class ToyConfig:
    width: int = 4
    sizes: list[int] = dataclasses.field(default_factory=lambda: [2])

    def __post_init__(self) -> None:
        check_int(self, "width", 1)
        self.sizes = as_int_list(self, "sizes", 1)


class Toy(RegisteredModel):
    Config = ToyConfig

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.lin = nn.Linear(config.width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)

    def example_inputs(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return (torch.randn(batch_size, self.config.width, generator=gen),)


def test_base_stores_config_and_provides_config_dict():
    model = Toy(ToyConfig(width=3, sizes=(5, 6)))
    assert model.config == ToyConfig(width=3, sizes=[5, 6])
    assert model.config_dict() == {"width": 3, "sizes": [5, 6]}
    assert json.loads(json.dumps(model.config_dict())) == model.config_dict()
    assert model(*model.example_inputs(2)).shape == (2, 1)


def test_base_rejects_a_config_of_another_type():
    @dataclasses.dataclass
    class LookAlike:
        width: int = 4

    with pytest.raises(TypeError, match=r"^Toy expects a config of type ToyConfig, got LookAlike$"):
        Toy(LookAlike())
    with pytest.raises(TypeError, match="got dict"):
        Toy({"width": 4})


def test_base_accepts_a_config_subclass():
    @dataclasses.dataclass
    class Wider(ToyConfig):
        extra: int = 0

    assert Toy(Wider(width=2)).config.width == 2


def test_base_without_config_attribute_says_so():
    class NoConfig(RegisteredModel):
        def example_inputs(self, batch_size, seed=0):
            return ()

    with pytest.raises(TypeError, match="Config"):
        NoConfig(ToyConfig())


def test_example_inputs_is_abstract():
    class Incomplete(RegisteredModel):
        Config = ToyConfig

    with pytest.raises(TypeError, match="example_inputs"):
        Incomplete(ToyConfig())


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry, so test registrations do not leak."""
    list_models()  # populate before copying
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_subclass_registers_and_builds(scratch_registry):
    register("toy/base")(Toy)
    model = build("toy/base", {"width": 2})
    assert isinstance(model, Toy) and model.config_dict() == {"width": 2, "sizes": [2]}
    with pytest.raises(ValueError, match=r"ToyConfig\.sizes\[0\] must be an int >= 1, got 0"):
        build("toy/base", {"sizes": [0]})


def test_registry_refuses_subclass_without_example_inputs(scratch_registry):
    class Incomplete(RegisteredModel):
        Config = ToyConfig

    with pytest.raises(TypeError, match=r"Incomplete must implement \['example_inputs'\]"):
        register("toy/incomplete")(Incomplete)


def test_registered_models_derive_from_the_base():
    outside = [key for key in list_models() if not issubclass(get(key), RegisteredModel)]
    assert outside == []
