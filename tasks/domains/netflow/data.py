"""The processed splits of the ``netflow`` domain as the training loop reads them: windows of consecutive flows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

from tasks import store

NAME = "netflow"
RAW_FILE = "flows.parquet"
"""The validated records ingest writes into ``data/raw/netflow/``."""


class FlowWindows:
    """Windows of W consecutive flows of one split, labelled by the last flow.

    Target ``j`` is row ``j + W - 1`` of the split with context rows
    ``j .. j + W - 1`` in file order, so no window crosses a split boundary.

    Attributes:
        labels: (N_windows,) int64 training target (attack flag or class index).
        attack: (N_windows,) int64 attack flag of each target flow.
        classes: (N_windows,) int64 class index of each target flow.
    """

    def __init__(self, x_num: np.ndarray, x_cat: np.ndarray, y: np.ndarray, y_class: np.ndarray,
                 window: int, task: str = "binary") -> None:
        self.window = window
        self.x_num = torch.as_tensor(x_num)  # (N, Fn)
        self.x_cat = torch.as_tensor(x_cat)  # (N, Fc)
        self.attack = np.asarray(y[window - 1 :])
        self.classes = np.asarray(y_class[window - 1 :])
        self.labels = self.attack if task == "binary" else self.classes
        self._offsets = torch.arange(window)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: np.ndarray):
        """Inputs and targets of the windows ``idx``: ((x_num (B, W, Fn), x_cat (B, W, Fc)), y (B,))."""
        rows = torch.as_tensor(idx, dtype=torch.int64)[:, None] + self._offsets  # (B, W)
        return (self.x_num[rows], self.x_cat[rows]), torch.as_tensor(self.labels[idx])


def load_schema(root: Path | None = None) -> dict:
    return store.read_json(store.domain_paths(NAME, root).processed / "schema.json")


def load_split(name: str, task: str = "binary", root: Path | None = None) -> FlowWindows:
    """Read one processed split as windows."""
    paths = store.domain_paths(NAME, root)
    schema = load_schema(root)
    path = paths.processed / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run preprocess first (python -m tasks preprocess netflow)")
    t = load_file(str(path))
    return FlowWindows(t["x_num"], t["x_cat"], t["y"], t["y_class"], schema["window"], task)
