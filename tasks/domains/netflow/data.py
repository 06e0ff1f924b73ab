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
RAW_TEST_FILE = "test_flows.parquet"
"""The records of ``ingest.netflow.test_source`` (only when one is set), beside :data:`RAW_FILE`."""


class FlowWindows:
    """Windows of W consecutive flows of one split, labelled by the last flow.

    Window ``j`` ends at (targets) row ``ends[j]`` of the split and holds the W rows before it, back to
    ``starts[j]``, the first row of its run (a file, a group, a stratified block): rows before ``starts[j]``
    are not used, the run's first row is repeated in their place instead (the padding ``score`` applies to
    the first rows of a file). Without ``ends`` the split is one run and window ``j`` is rows
    ``j .. j + W - 1`` (target ``j + W - 1``), so no window crosses a split boundary.

    Attributes:
        labels: (N_windows,) int64 training target (attack flag or class index).
        attack: (N_windows,) int64 attack flag of each target flow.
        classes: (N_windows,) int64 class index of each target flow.
        ends: (N_windows,) int64 row of each window's target flow.
        starts: (N_windows,) int64 first row of each window's run.
    """

    def __init__(self, x_num: np.ndarray, x_cat: np.ndarray, y: np.ndarray, y_class: np.ndarray,
                 window: int, task: str = "binary", ends: np.ndarray | None = None,
                 starts: np.ndarray | None = None) -> None:
        self.window = window
        self.x_num = torch.as_tensor(x_num)  # (N, Fn)
        self.x_cat = torch.as_tensor(x_cat)  # (N, Fc)
        n = len(self.x_num)
        self.ends = np.arange(window - 1, n, dtype=np.int64) if ends is None else np.asarray(ends, np.int64)
        self.starts = np.zeros_like(self.ends) if starts is None else np.asarray(starts, np.int64)
        self.attack = np.asarray(y)[self.ends]
        self.classes = np.asarray(y_class)[self.ends]
        self.labels = self.attack if task == "binary" else self.classes
        self._offsets = torch.arange(window) - (window - 1)  # (W,) -W+1 .. 0
        self._ends = torch.as_tensor(self.ends)
        self._starts = torch.as_tensor(self.starts)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: np.ndarray):
        """Inputs and targets of the windows ``idx``: ((x_num (B, W, Fn), x_cat (B, W, Fc)), y (B,))."""
        i = torch.as_tensor(idx, dtype=torch.int64)
        rows = self._ends[i][:, None] + self._offsets  # (B, W)
        rows = torch.maximum(rows, self._starts[i][:, None])  # padded with the run's first row
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
    # Splits written before the split strategies have no "end"/"start": one run per split.
    return FlowWindows(t["x_num"], t["x_cat"], t["y"], t["y_class"], schema["window"], task,
                       ends=t.get("end"), starts=t.get("start"))
