"""The ``eeg`` domain's shared data pieces: the domain name, its data error, trials, splits, schema and model config.

A small module that the stages, the epoching (:mod:`.epochs`), the protocol runner
(:mod:`.runner`) and the contract (:mod:`.domain`) all import.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.numpy import load_file

from tasks import store

if TYPE_CHECKING:
    from tasks.params import Params

NAME = "eeg"


class EEGDataError(ValueError):
    """The recordings cannot be combined or epoched as configured; the message names file and field."""


# ============================================================================ datasets
class Trials:
    """EEG trials as the training loop wants them: ``labels`` and ``batch(idx) -> ((x,), y)``."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))  # (N, C, T)
        self.labels = np.asarray(y, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: np.ndarray):
        return (self.x[torch.as_tensor(idx)],), torch.as_tensor(self.labels[idx])


def load_schema(root: Path | None = None) -> dict:
    return store.read_json(store.domain_paths(NAME, root).processed / "schema.json")


def load_split(name: str, task: str = "multiclass", root: Path | None = None) -> Trials:
    """The deployment split ``train`` or ``test`` (aligned), as :class:`Trials`."""
    path = store.domain_paths(NAME, root).processed / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run preprocess first (python -m tasks preprocess eeg)")
    t = load_file(str(path))
    return Trials(t["x"], t["y"])


def model_config(params: Params, schema: dict, arch: str | None = None, extra: dict | None = None) -> dict[str, Any]:
    """Registry config: params' config (or ``extra`` for a protocol model) plus the data's shape."""
    p = params.train.eeg
    cfg = dict(p.model.config) if arch is None or arch == p.model.arch else {}
    cfg.update(extra or {})
    cfg.update(n_chans=len(schema["channels"]), n_times=int(schema["n_times"]), sfreq=float(schema["sfreq"]),
               n_outputs=len(schema["classes"]))
    return cfg
