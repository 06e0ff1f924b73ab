"""The registry's model contract, written once: config-field validators and the base class of models.

Each ``models/<arch>.py`` holds one architecture and its config dataclass. What
every one of them needs besides is here:

* validators for the fields of a config, called from its ``__post_init__``:
  :func:`check_int`, :func:`check_rate`, :func:`check_positive`, :func:`check_bool`,
  :func:`check_choice`, :func:`check_given_together`, and :func:`as_int_list` /
  :func:`as_float_list`, which also return the list to store. Each raises
  ``ValueError`` with the message ``<ConfigClass>.<field> must be <rule>, got <value>``
  (``<field>[<i>]`` for one item of a list), e.g. ``FNOConfig.width must be an
  int >= 1, got 0``, so a bad value in a params file is found without reading
  the model code;
* :class:`RegisteredModel`, the ``nn.Module`` base of the registered models: its
  ``__init__`` checks the config's type and stores it as ``self.config``, it
  provides ``config_dict()``, and it declares ``example_inputs`` abstract, the one
  part of the contract a model must write itself. :mod:`models.registry` checks
  the contract when a class registers.

Like the rest of ``models``, this module imports nothing from ``tasks`` or
``flows`` and does no file I/O, so a model is importable on its own.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

import torch
from torch import nn

__all__ = [
    "BlockSpec",
    "HeadSpec",
    "RegisteredModel",
    "ZeroBranch",
    "as_float_list",
    "as_int_list",
    "check_bool",
    "check_choice",
    "check_given_together",
    "check_int",
    "check_positive",
    "check_rate",
]


# ---------------------------------------------------------------------------- config validators


def _reject(config: Any, name: str, rule: str, value: Any) -> NoReturn:
    raise ValueError(f"{type(config).__name__}.{name} must be {rule}, got {value!r}")


def _is_int(value: Any, minimum: int) -> bool:
    # bool is an int subclass; a stray True from a YAML file must not pass as 1.
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_int(config: Any, name: str, minimum: int, *, optional: bool = False) -> None:
    """Raise ``ValueError`` unless ``config.<name>`` is an int ``>= minimum`` (bools rejected).

    Args:
        config: the config instance (its class name starts the message).
        name: the field.
        minimum: smallest allowed value.
        optional: ``None`` is allowed too (the field then means "derive it").
    """
    value = getattr(config, name)
    if not (optional and value is None) and not _is_int(value, minimum):
        _reject(config, name, f"an int >= {minimum}", value)


def check_rate(config: Any, name: str, *, optional: bool = False) -> None:
    """Raise ``ValueError`` unless ``config.<name>`` is a number in ``[0, 1)`` (a dropout rate).

    Args:
        config: the config instance.
        name: the field.
        optional: ``None`` is allowed too.
    """
    value = getattr(config, name)
    if not (optional and value is None) and not (_is_number(value) and 0.0 <= value < 1.0):
        _reject(config, name, "a float in [0, 1)", value)


def check_positive(config: Any, name: str) -> None:
    """Raise ``ValueError`` unless ``config.<name>`` is a finite number ``> 0`` (bools rejected)."""
    value = getattr(config, name)
    if not (_is_number(value) and value > 0):
        _reject(config, name, "a finite number > 0", value)


def check_bool(config: Any, name: str) -> None:
    """Raise ``ValueError`` unless ``config.<name>`` is ``True`` or ``False``.

    ``1`` or ``"yes"`` are rejected rather than read as true: a switch set by
    mistake should fail, not silently turn something on.
    """
    value = getattr(config, name)
    if not isinstance(value, bool):
        _reject(config, name, "true or false (a bool)", value)


def check_choice(config: Any, name: str, allowed: Iterable[Any]) -> None:
    """Raise ``ValueError`` unless ``config.<name>`` is one of ``allowed`` (listed in the message)."""
    value = getattr(config, name)
    allowed = list(allowed)
    if value not in allowed:
        _reject(config, name, f"one of {allowed}", value)


def check_given_together(config: Any, first: str, second: str) -> None:
    """Raise ``ValueError`` if exactly one of ``config.<first>`` and ``config.<second>`` is ``None``."""
    if (getattr(config, first) is None) != (getattr(config, second) is None):
        raise ValueError(f"{type(config).__name__}.{first} and {second} must be given together")


def _as_list(config: Any, name: str, length: int | tuple[int, ...] | None, items: str) -> list[Any]:
    """``config.<name>`` as a new list, after checking it is a non-string iterable of an allowed length."""
    value = getattr(config, name)
    lengths = (length,) if isinstance(length, int) else length
    count = "" if lengths is None else " or ".join(str(n) for n in lengths) + " "
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        _reject(config, name, f"a list of {count}{items}", value)
    result = list(value)
    if lengths is not None and len(result) not in lengths:
        _reject(config, name, f"a list of {count}{items}", value)
    return result


def as_int_list(
    config: Any,
    name: str,
    minimum: int,
    *,
    length: int | tuple[int, ...] | None = None,
    optional: bool = False,
) -> list[int] | None:
    """Check ``config.<name>`` is a list of ints ``>= minimum`` and return it as a plain list.

    Any non-string iterable is accepted; the caller stores the returned ``list`` so
    that ``dataclasses.asdict`` gives what a JSON round trip gives back (a tuple would not).

    Args:
        config: the config instance.
        name: the field.
        minimum: smallest allowed item.
        length: required length, or a tuple of allowed lengths; ``None`` = any.
        optional: ``None`` is allowed too (and returned).

    Returns:
        The items as a new list, or ``None``.

    Raises:
        ValueError: not a list of an allowed length (names ``<field>``), or a bad
            item (names ``<field>[<i>]``).
    """
    if optional and getattr(config, name) is None:
        return None
    values = _as_list(config, name, length, f"ints >= {minimum}")
    for i, v in enumerate(values):
        if not _is_int(v, minimum):
            _reject(config, f"{name}[{i}]", f"an int >= {minimum}", v)
    return values


def as_float_list(
    config: Any,
    name: str,
    *,
    length: int | tuple[int, ...] | None = None,
    positive: bool = False,
    optional: bool = False,
) -> list[float] | None:
    """Check ``config.<name>`` is a list of finite numbers and return it as a list of floats.

    Ints become floats, so that ``[1, 2]`` and ``[1.0, 2.0]`` give the same config
    after a JSON round trip.

    Args:
        config: the config instance.
        name: the field.
        length: required length, or a tuple of allowed lengths; ``None`` = any.
        positive: every item must be ``> 0``.
        optional: ``None`` is allowed too (and returned).

    Returns:
        The items as a new list of floats, or ``None``.

    Raises:
        ValueError: as :func:`as_int_list`.
    """
    if optional and getattr(config, name) is None:
        return None
    rule = "a finite number > 0" if positive else "a finite number"
    values = _as_list(config, name, length, "finite numbers > 0" if positive else "finite numbers")
    for i, v in enumerate(values):
        if not (_is_number(v) and (v > 0 or not positive)):
            _reject(config, f"{name}[{i}]", rule, v)
    return [float(v) for v in values]


# ---------------------------------------------------------------------------- model base class


class RegisteredModel(nn.Module, metaclass=abc.ABCMeta):
    """Base class of the registered models: the registry contract, less what is the model's own.

    A subclass sets the class attribute ``Config`` (a ``@dataclass`` holding every
    constructor knob), calls ``super().__init__(config)`` first in its ``__init__``
    and implements :meth:`example_inputs`. This class provides the rest:

    * ``__init__`` rejects a config of another type (a ``TypeError`` naming the
      expected class), so a model never runs with a look-alike config, and
      stores it as ``self.config``;
    * :meth:`config_dict`, the config as a dict that ``build(key, ...)`` turns
      back into the same architecture.

    Example::

        @register("toy/linear")
        class Toy(RegisteredModel):
            Config = ToyConfig

            def __init__(self, config: ToyConfig) -> None:
                super().__init__(config)
                self.lin = nn.Linear(config.width, 1)

            def example_inputs(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor]:
                return (torch.zeros(batch_size, self.config.width),)

    Args:
        config: an instance of the class's ``Config``.
    """

    Config: ClassVar[type]
    registry_key: ClassVar[str]  # set by models.registry.register

    def __init__(self, config: Any) -> None:
        super().__init__()
        config_cls = getattr(type(self), "Config", None)
        if config_cls is None:
            raise TypeError(f"{type(self).__name__} needs a class attribute 'Config'")
        if not isinstance(config, config_cls):
            raise TypeError(
                f"{type(self).__name__} expects a config of type {config_cls.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config

    @abc.abstractmethod
    def example_inputs(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Valid dummy inputs on the model's device, so generic code can run ``model(*model.example_inputs(B))``.

        Args:
            batch_size: B.
            seed: seed of the CPU generator, so repeated calls give the same tensors.

        Returns:
            The positional arguments of ``forward``.
        """

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict; ``build(key, config_dict())`` rebuilds the model."""
        return dataclasses.asdict(self.config)

    def prunable_blocks(self) -> list[BlockSpec]:
        """Where structured pruning may cut this model, block by block from the input side.

        The default is none: a model that can be pruned lists its blocks (see :class:`BlockSpec`);
        ``tasks/compress/prune.py`` does the cutting and the search.
        """
        return []


# ---------------------------------------------------------------------------- structure for pruning


@dataclass(frozen=True)
class HeadSpec:
    """The multi-head layout of one attention, for removing heads physically.

    Attributes:
        module: dotted path of the attention module, whose ``attrs`` are updated after a cut.
        q, k, v: dotted paths of the query / key / value ``nn.Linear`` (output rows grouped by head).
        out: dotted path of the output ``nn.Linear`` (input columns grouped by head).
        qk_dim: rows per head in ``q`` and ``k``.
        v_dim: rows per head in ``v`` (= columns per head in ``out``).
        attrs: attributes of ``module`` to set after a cut, as multiples of the remaining head count
            (``{"num_heads": 1}``; HF BERT also ``{"all_head_size": head_size}``).
    """

    module: str
    q: str
    k: str
    v: str
    out: str
    qk_dim: int
    v_dim: int
    attrs: dict[str, int]


@dataclass(frozen=True)
class BlockSpec:
    """One transformer block's prunable parts (dotted module paths relative to the model).

    Removing a branch replaces each of its ``*_paths`` by a :class:`ZeroBranch`, so the block adds
    nothing for that branch (AxFormer's "prune the attention / the FFN of layer l": what remains is
    the residual path and the block's norms).

    Attributes:
        name: the block's path (for reports).
        attn_paths: modules replaced when the attention branch is removed (in call order).
        ffn_paths: modules replaced when the FFN branch is removed.
        heads: the attention's head layout (None: heads cannot be cut one by one).
        ffn_in, ffn_out: the FFN's first and second ``nn.Linear``: hidden units are rows of
            ``ffn_in`` and columns of ``ffn_out`` (None: no unit-level cut).
        identity_when_empty: with both branches removed the block is the identity (pre-LN
            residual blocks), so it is replaced by ``nn.Identity`` and costs nothing.
        tuple_paths: the ``attn_paths`` / ``ffn_paths`` whose module returns a tuple
            ``(output, extra)`` (Hugging Face attention).
    """

    name: str
    attn_paths: tuple[str, ...] = ()
    ffn_paths: tuple[str, ...] = ()
    heads: HeadSpec | None = None
    ffn_in: str | None = None
    ffn_out: str | None = None
    identity_when_empty: bool = False
    tuple_paths: tuple[str, ...] = ()


class ZeroBranch(nn.Module):
    """What a removed branch becomes: zeros shaped like its first input (``(zeros, None)`` with ``tuple_output``).

    Holds no parameters, so a pruned model is physically smaller, and runs no matrix product.
    """

    def __init__(self, tuple_output: bool = False) -> None:
        super().__init__()
        self.tuple_output = tuple_output

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        first = args[0] if args else next(iter(kwargs.values()))
        zeros = torch.zeros_like(first)
        return (zeros, None) if self.tuple_output else zeros

    def extra_repr(self) -> str:
        return "removed branch"
