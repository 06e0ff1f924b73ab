"""Model configs of the ``turbulence`` domain: the data-dependent part (grid, box, channels, normalisation) that
the teacher and the neural baselines share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from models.ifactformer import IFactFormerConfig
from tasks.domains.turbulence.data import NAME

if TYPE_CHECKING:
    from tasks.params import Params

BASELINE_KEYS = {"fno": ("turbulence/fno", {}), "ifactformer_o": ("turbulence/ifactformer", {"variant": "o"})}
"""Baseline name -> (registry key, config overrides on top of the teacher's data-dependent config)."""


def model_config(params: Params, schema: dict) -> dict[str, Any]:
    """The registry config of the teacher: params' config plus grid, lengths, channels, window, statistics."""
    cfg = dict(params.train.turbulence.model.config)
    cfg.update(data_config(schema, params.train.turbulence.residual))
    return fit_lifting(f"{NAME}/{params.train.turbulence.model.arch}", cfg)


def fit_lifting(key: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """IFactFormer's grouped lifting needs ``dim // 2`` divisible by the components; when the config leaves
    ``lift_dim`` unset and it is not (dim 32 on a 3-component field), round it to the nearest multiple."""
    if key != f"{NAME}/ifactformer" or cfg.get("lift_dim") is not None:
        return cfg
    half, c = int(cfg.get("dim", IFactFormerConfig.dim)) // 2, int(cfg["n_channels"])
    return cfg if half % c == 0 else {**cfg, "lift_dim": c * max(1, round(half / c))}


def data_config(schema: dict, residual: bool) -> dict[str, Any]:
    """Grid, box, channels, window and the normalisation fitted by preprocess (inputs: the fields' statistics;
    outputs: the same, or the one-step increments' when the models predict increments)."""
    out = ({"out_mean": list(schema["increment_mean"]), "out_std": list(schema["increment_std"])} if residual
           else {"out_mean": None, "out_std": None})
    return {"grid": list(schema["grid"]), "lengths": [float(x) for x in schema["lengths"]],
            "n_channels": len(schema["components"]), "t_in": schema["t_in"],
            "norm_mean": list(schema["mean"]), "norm_std": list(schema["std"]), "residual": residual, **out}
