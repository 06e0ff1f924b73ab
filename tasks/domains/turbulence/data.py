"""The processed splits of the ``turbulence`` domain: whole trajectories, and the (window -> next snapshots) pairs
the training loop reads, cut on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

from tasks import store

NAME = "turbulence"
RAW_NAME = "fields"
"""The synthetic source's file name in ``data/raw/turbulence/`` (``fields.h5``)."""


class FieldPairs:
    """The ``(T_in window -> next K snapshots)`` pairs of whole trajectories, cut on the fly.

    Attributes:
        fields: ``(n_traj, T, *grid, C)`` float32 tensor, physical units.
        t_in: Input window.
        horizon: Future snapshots per target (K; > 1 for pushforward training).
        labels: ``(N,)`` the trajectory index of each pair (the loop's ``labels`` contract).
    """

    def __init__(self, fields, t_in: int, horizon: int = 1, trajectory=None):
        self.fields = torch.as_tensor(fields)
        self.t_in, self.horizon = int(t_in), int(horizon)
        n_traj, n_time = self.fields.shape[:2]
        per = max(0, n_time - self.t_in - self.horizon + 1)
        self._traj = np.repeat(np.arange(n_traj), per)
        self._start = np.tile(np.arange(per), n_traj)
        ids = np.arange(n_traj) if trajectory is None else np.asarray(trajectory)
        self.labels = ids[self._traj].astype(np.int64)
        self.trajectory = ids

    def __len__(self) -> int:
        return len(self._traj)

    def with_horizon(self, horizon: int) -> FieldPairs:
        """The same trajectories with K future snapshots per target (pushforward training)."""
        return FieldPairs(self.fields, self.t_in, horizon, self.trajectory)

    def batch(self, idx: np.ndarray):
        """``((x,), y)``: x ``(B, T_in, *grid, C)``, y ``(B, K, *grid, C)``."""
        tr = torch.as_tensor(self._traj[idx])
        st = torch.as_tensor(self._start[idx])
        offs = torch.arange(self.t_in + self.horizon)
        window = self.fields[tr[:, None], st[:, None] + offs]  # (B, T_in + K, *grid, C)
        return (window[:, : self.t_in],), window[:, self.t_in :]


def load_schema(root: Path | None = None) -> dict:
    return store.read_json(store.domain_paths(NAME, root).processed / "schema.json")


def load_fields(name: str, root: Path | None = None) -> dict[str, np.ndarray]:
    """One split's whole trajectories: ``{"fields": (n, T, *grid, C), "trajectory": (n,)}``."""
    path = store.domain_paths(NAME, root).processed / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run preprocess first (python -m tasks preprocess turbulence)")
    return load_file(str(path))


def load_split(name: str, task: str = "regression", root: Path | None = None) -> FieldPairs:
    """One processed split as one-step pairs (:class:`FieldPairs`)."""
    t = load_fields(name, root)
    return FieldPairs(t["fields"], load_schema(root)["t_in"], 1, t["trajectory"])
