"""The ``preprocess`` stage of the ``turbulence`` domain: filter / coarsen, subsample to the model step, split by whole
trajectories, fit the normalisation on the training trajectories only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import save_file

from tasks import store
from tasks.domains.turbulence.data import NAME
from tasks.domains.turbulence.layout import FieldLayout, Fields
from tasks.domains.turbulence.readers import read_fields
from tasks.domains.turbulence.solver import coarsen, spectral_filter

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


class PreprocessError(ValueError):
    """The ingested field cannot be split / filtered as configured; the message names the setting."""


def read_raw(root: Path | None = None) -> tuple[Fields, dict[str, Any]]:
    """The ingested field, read with the layout ingest recorded. Returns (fields, manifest)."""
    paths = store.domain_paths(NAME, root)
    mpath = paths.raw / "manifest.json"
    if not mpath.exists():
        raise FileNotFoundError(f"{mpath} does not exist: run ingest first (python -m tasks ingest turbulence)")
    manifest = store.read_json(mpath)
    # ingest checked the caps (ingest.turbulence.max_*); what remains is the memory check
    fields = read_fields(paths.raw / manifest["file"], FieldLayout(**manifest["layout"]), format=manifest["format"],
                         max_array_bytes=None, max_abs_value=None)
    return fields, manifest


def filter_and_coarsen(data: np.ndarray, lengths: list[float], kind: str, width: float,
                       coarse_n: int | None) -> np.ndarray:
    """Filter (``kind`` != none) and coarsen every snapshot of ``(traj, time, *grid, C)``; periodic cubic grids.

    Raises:
        PreprocessError: A grid that is not cubic (equal points and lengths per axis), or a coarse grid
            that is odd or larger than the field's.
    """
    if kind == "none" and coarse_n is None:
        return data
    grid = data.shape[2:-1]
    ndim = len(grid)
    if len(set(grid)) != 1 or max(lengths) - min(lengths) > 1e-9 * max(lengths):
        raise PreprocessError(f"preprocess.turbulence.filter / coarse_n need a periodic grid with equal points and "
                              f"lengths per axis; the field has grid {list(grid)} and lengths {lengths}")
    n = grid[0]
    if coarse_n is not None and (coarse_n % 2 or coarse_n > n):
        raise PreprocessError(f"preprocess.turbulence.coarse_n must be even and <= {n} (the field's grid), "
                              f"got {coarse_n}")
    flat = np.moveaxis(data.reshape(-1, *grid, data.shape[-1]), -1, 1).astype(np.float64)  # (S, C, *grid)
    if kind != "none":
        flat = spectral_filter(flat, kind, width, n_coarse=coarse_n or n, ndim=ndim, length=lengths[0])
    if coarse_n is not None and coarse_n != n:
        flat = coarsen(flat, coarse_n, ndim=ndim)
    out = np.moveaxis(np.asarray(flat, dtype=np.float32), 1, -1)  # (S, *grid', C)
    return out.reshape(*data.shape[:2], *out.shape[1:-1], data.shape[-1])


def preprocess(params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """Filter / coarsen, subsample to the model step, split by whole trajectories, fit the normalisation.

    Outputs ``data/processed/turbulence/{train,val,test}.safetensors`` (``fields`` float32
    ``(n_traj, T, *grid, C)``, ``trajectory`` ids) and ``schema.json`` (grid, lengths, components,
    dt_model, t_in, per-channel mean / std of the training trajectories, the source's physics).

    With ``segments`` > 1 each trajectory is first cut into that many consecutive pieces. ``schema.json``
    records ``periodic`` from the ingest manifest; a grid that is not periodic is never filtered or
    coarsened spectrally.

    Raises:
        PreprocessError: Too few trajectories or snapshots for the split and the input window, or a spectral
            filter / coarsening asked of a grid that is not periodic.
    """
    p = params.preprocess.turbulence
    fields, manifest = read_raw()
    data = fields.data[:, :: fields.stride]  # (traj, T, *grid, C): one entry per model step
    periodic = bool(manifest.get("periodic", fields.attrs.get("periodic", True)))
    if p.segments > 1:
        per = data.shape[1] // p.segments
        if per < p.t_in + 1:
            raise PreprocessError(
                f"{manifest['file']}: {data.shape[1]} snapshots per trajectory at the model step cut into "
                f"preprocess.turbulence.segments = {p.segments} pieces leave {per} each; a (T_in={p.t_in} -> next) "
                f"pair needs {p.t_in + 1}")
        # (traj, segments * per, ...) -> (traj * segments, per, ...): consecutive pieces, later pieces split last
        data = data[:, : per * p.segments].reshape(data.shape[0] * p.segments, per, *data.shape[2:])
    n_traj, n_time = data.shape[:2]
    need = p.test_trajectories + p.val_trajectories + 1
    if n_traj < need:
        raise PreprocessError(
            f"{manifest['file']} has {n_traj} trajectories"
            f"{f' ({p.segments} segments each)' if p.segments > 1 else ''}; preprocess.turbulence needs at least "
            f"{need} (test_trajectories {p.test_trajectories} + val_trajectories {p.val_trajectories} + 1 for "
            "training), split whole so no trajectory is on both sides (one long sequence: set "
            "preprocess.turbulence.segments to cut it into pieces)")
    if n_time < p.t_in + 1:
        raise PreprocessError(f"{manifest['file']}: {n_time} snapshots per trajectory at the model step "
                              f"(stride {fields.stride}) leave no (T_in={p.t_in} -> next) pair")
    if not periodic and (p.filter != "none" or p.coarse_n is not None):
        raise PreprocessError(
            f"{manifest['source']}: preprocess.turbulence.filter ({p.filter}) / coarse_n ({p.coarse_n}) are spectral "
            "(FFT) operations and the grid is not periodic (manifest periodic: false, "
            f"{manifest.get('periodic_source')}); set filter: none and coarse_n: null, or ingest.turbulence.spec."
            "periodic: true if it is periodic")
    data = filter_and_coarsen(data, fields.lengths, p.filter, p.filter_width, p.coarse_n)
    n_train = n_traj - p.test_trajectories - p.val_trajectories
    ids = {"train": list(range(n_train)), "val": list(range(n_train, n_train + p.val_trajectories)),
           "test": list(range(n_traj - p.test_trajectories, n_traj))}
    train = data[ids["train"]]
    # Per-channel statistics of the training trajectories only (the reference: train inputs and targets,
    # which are the same snapshots but for one at each end).
    axes = tuple(range(train.ndim - 1))
    mean = train.astype(np.float64).mean(axis=axes)
    std = train.astype(np.float64).std(axis=axes)
    if not np.all(std > 0):
        raise PreprocessError(f"{manifest['file']}: component(s) {np.flatnonzero(std <= 0).tolist()} are constant "
                              "over the training trajectories; nothing to learn or normalise")
    inc = np.diff(train.astype(np.float64), axis=1)  # (traj, T-1, *grid, C): one model step's increments
    inc_mean, inc_std = inc.mean(axis=axes), inc.std(axis=axes)
    dt_model = None if fields.dt_model is None else float(fields.dt_model)
    schema = {
        "domain": NAME, "source": manifest["source"], "grid": list(data.shape[2:-1]), "lengths": fields.lengths,
        "components": fields.components, "ndim": data.ndim - 3, "t_in": p.t_in, "dt_model": dt_model,
        "stride": fields.stride, "mean": mean.tolist(), "std": std.tolist(),
        "increment_mean": inc_mean.tolist(), "increment_std": np.maximum(inc_std, 1e-12 * std).tolist(), "trajectories": ids,
        "pairs": {k: len(v) * (n_time - p.t_in) for k, v in ids.items()}, "snapshots": n_time,
        "filter": p.filter, "filter_width": p.filter_width, "coarse_n": p.coarse_n,
        "periodic": periodic, "segments": p.segments,
        "source_attrs": manifest.get("file_attrs", {}), "synthetic": "synthetic" in manifest.get("fingerprint", {}),
    }
    paths = store.domain_paths(NAME)
    with store.atomic_dir(paths.processed) as out:
        for name, idx in ids.items():
            if idx:
                save_file({"fields": np.ascontiguousarray(data[idx]), "trajectory": np.asarray(idx, np.int64)},
                          str(out / f"{name}.safetensors"))
        store.atomic_write_json(out / "schema.json", schema)
    if run is not None:
        run.log_params({"filter": p.filter, "coarse_n": p.coarse_n, "t_in": p.t_in, "stride": fields.stride})
        run.log_metrics({f"pairs.{k}": v for k, v in schema["pairs"].items()})
    return {"stage": "preprocess", "domain": NAME, "grid": schema["grid"], "pairs": schema["pairs"],
            "trajectories": {k: len(v) for k, v in ids.items()},
            "outputs": {"processed": store.content_hash(paths.processed)}}
