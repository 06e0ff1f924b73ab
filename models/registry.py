"""Model registry: ``<domain>/<arch>`` keys mapped to model classes.

Every model class registers itself with the :func:`register` decorator. The
registry fills itself on the first lookup by importing every module of the
``models`` package, so callers never import model files by hand (braindecode
style)::

    from models import build, list_models

    list_models("netflow")                      # ['netflow/flowtransformer']
    model = build("netflow/flowtransformer", {"head": "cls"})
    logits = model(*model.example_inputs(4))

The contract of a registered class, checked at registration time:

* a class attribute ``Config``, a ``@dataclass`` holding every constructor knob
  and validating them in ``__post_init__`` (with the validators of :mod:`models.base`);
* ``__init__(self, config: Config)`` storing ``self.config``;
* ``example_inputs(self, batch_size) -> tuple[Tensor, ...]`` so generic code
  (latency, quantization, export) can run ``model(*model.example_inputs(4))``;
* ``config_dict(self) -> dict``, JSON-serialisable, such that
  ``build(key, model.config_dict())`` rebuilds the same architecture.

A model derives from :class:`models.base.RegisteredModel`, which provides all of
it but ``Config`` and ``example_inputs``: its ``__init__(config)`` rejects a config
of another type and stores it, and it implements ``config_dict``. ``example_inputs``
is abstract there, so a subclass that forgets it is refused here. A class that
does not (yet) derive from the base registers too, as long as it provides the
four parts itself.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import threading
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

_REGISTRY: dict[str, type[nn.Module]] = {}
_POPULATED = False
# Prefect's thread task runner may hit the first lookup from several threads at once.
_POPULATE_LOCK = threading.Lock()
_REQUIRED_METHODS = ("example_inputs", "config_dict")


def register(key: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator that registers a model under ``key``.

    Args:
        key: ``"<domain>/<arch>"``, lower case, e.g. ``"netflow/flowtransformer"``.

    Returns:
        The decorator; it returns the class unchanged apart from a
        ``registry_key`` class attribute set to ``key``.

    Raises:
        ValueError: ``key`` is malformed or already taken by another class.
        TypeError: the class does not meet the registry contract (module docstring).
    """
    parts = key.split("/")
    if len(parts) != 2 or not all(parts) or key != key.strip().lower():
        raise ValueError(f"registry key must look like '<domain>/<arch>' in lower case, got {key!r}")

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        config_cls = getattr(cls, "Config", None)
        if config_cls is None or not dataclasses.is_dataclass(config_cls):
            raise TypeError(f"{cls.__qualname__} needs a class attribute 'Config' that is a @dataclass")
        # A RegisteredModel subclass inherits example_inputs as an abstract method: callable, yet missing.
        abstract = getattr(cls, "__abstractmethods__", frozenset())
        missing = [
            name for name in _REQUIRED_METHODS if name in abstract or not callable(getattr(cls, name, None))
        ]
        if missing:
            raise TypeError(f"{cls.__qualname__} must implement {missing} to be registered")
        previous = _REGISTRY.get(key)
        # Same qualified name = the module was re-imported (importlib.reload, notebooks): allow it.
        if previous is not None and _qualname(previous) != _qualname(cls):
            raise ValueError(f"registry key {key!r} is already used by {_qualname(previous)}")
        cls.registry_key = key
        _REGISTRY[key] = cls
        return cls

    return decorator


def get(key: str) -> type[nn.Module]:
    """Return the model class registered under ``key``.

    Raises:
        KeyError: unknown key; the message lists the known keys.
    """
    _populate()
    try:
        return _REGISTRY[key]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise KeyError(f"unknown model {key!r}; known models: {known}") from None


def list_models(domain: str | None = None) -> list[str]:
    """Sorted registry keys, optionally only those of one domain (``"eeg"``, ``"netflow"``, ...)."""
    _populate()
    keys = sorted(_REGISTRY)
    if domain is None:
        return keys
    return [k for k in keys if k.split("/", 1)[0] == domain]


def build(key: str, config: Mapping[str, Any] | Any | None = None) -> nn.Module:
    """Instantiate the model registered under ``key``.

    Args:
        key: registry key, e.g. ``"netflow/flowtransformer"``.
        config: an instance of the model's ``Config``, or a mapping of its
            fields (missing fields keep their defaults), or ``None`` for all defaults.

    Returns:
        The model, in training mode, on the CPU.

    Raises:
        KeyError: unknown ``key``.
        TypeError: ``config`` has fields the ``Config`` does not know (named in
            the message), or is of the wrong type.
        ValueError: a field has an invalid value (raised by the ``Config``).
    """
    cls = get(key)
    return cls(make_config(key, config))


def make_config(key: str, config: Mapping[str, Any] | Any | None = None) -> Any:
    """Turn ``config`` (mapping, ``Config`` or ``None``) into the ``Config`` of model ``key``.

    Raises:
        KeyError, TypeError, ValueError: as :func:`build`.
    """
    config_cls = get(key).Config
    if config is None:
        return config_cls()
    if isinstance(config, config_cls):
        return config
    if not isinstance(config, Mapping):
        raise TypeError(
            f"config for {key!r} must be a mapping or {config_cls.__qualname__}, got {type(config).__name__}"
        )
    known = [f.name for f in dataclasses.fields(config_cls) if f.init]
    unknown = sorted(set(config) - set(known))
    if unknown:
        # Checked here rather than left to the dataclass so that every bad field is named at once.
        raise TypeError(f"unknown config field(s) {unknown} for {key!r}; known fields: {known}")
    return config_cls(**config)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _populate() -> None:
    """Import every module of the ``models`` package once, so their ``@register`` calls run."""
    global _POPULATED
    if _POPULATED:
        return
    with _POPULATE_LOCK:
        if _POPULATED:
            return
        package = importlib.import_module(__name__.rpartition(".")[0])
        for info in pkgutil.iter_modules(package.__path__):
            name = f"{package.__name__}.{info.name}"
            if name == __name__:
                continue
            try:
                importlib.import_module(name)
            except Exception as exc:
                # A broken model file must fail loudly: silently skipping it would make the
                # model look unregistered and hide the real error.
                raise ImportError(f"model registry: importing {name} failed: {exc}") from exc
        _POPULATED = True
