"""The ``turbulence`` domain: next-step prediction of filtered turbulent velocity fields (IFactFormer, models.md 4).

Data path:

* **ingest** generates the synthetic source, filtered DNS of 2-D Kolmogorov flow from the
  pseudo-spectral solver in :mod:`tasks.domains.turbulence.synthetic` (3-D forced isotropic
  turbulence with ``synthetic.dim: 3``), written as HDF5; or fetches one field file
  (HDF5, NetCDF3/4, NPZ, NPY, Zarr; any fsspec URL) described by the layout spec
  ``ingest.turbulence.spec``. The whole field is read and validated with
  :func:`tasks.domains.turbulence.io.read_fields` (non-finite values, shapes, missing variables,
  axis spec, time step) before the file is kept in ``data/raw/turbulence/`` with a
  ``manifest.json`` holding the layout that reads it. A bad file leaves the previous
  folder untouched.
* **preprocess** optionally filters (spectral cut-off, box or Gaussian) and coarsens
  (spectral truncation) every snapshot, keeps every ``stride``-th snapshot so that one
  stored step is one model step (``dt_model``), splits by **whole trajectories** (the
  last ``test_trajectories`` for evaluation, the ``val_trajectories`` before them to pick
  the best epoch, the rest for training), and fits the per-channel mean / std on the
  training trajectories only. Each split is stored whole (``fields`` ``(n_traj, T, *grid,
  C)`` float32 in physical units) in safetensors; the ``(u_{t-T_in+1..t} -> u_{t+1})``
  pairs are cut from it on the fly (:class:`FieldPairs`).

Model and stages: the shared train loop fits IFactFormer-m with the paper's recipe
(relative L2 in physical units, AdamW, StepLR) and, with the same loop, the neural
baselines FNO and IFactFormer-o (:func:`extra_train`); evaluation rolls every model out
against the held-out trajectories (:mod:`tasks.domains.turbulence.evaluate`); scoring reads an
initial field file and writes the predicted trajectory in the same format
(:func:`score_fields`).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tasks import store
from tasks.params import Params
from tasks.domains.turbulence.io import FieldError, FieldLayout, Fields, local_copy, read_fields, write_fields

DOMAIN = "turbulence"
RAW_NAME = "fields"
BASELINE_KEYS = {"fno": ("turbulence/fno", {}), "ifactformer_o": ("turbulence/ifactformer", {"variant": "o"})}
"""Baseline name -> (registry key, config overrides on top of the teacher's data-dependent config)."""
KINDS = {"teacher": "IFactFormer-m", "int8": "IFactFormer-m, int8", "fno": "FNO baseline",
         "ifactformer_o": "IFactFormer-o baseline", "persistence": "u(t+1) = u(t)"}


class PreprocessError(ValueError):
    """The ingested field cannot be split / filtered as configured; the message names the setting."""


# ============================================================================ ingest
def synthetic_layout(dim: int) -> FieldLayout:
    """The layout of the file :func:`tasks.domains.turbulence.synthetic.generate` writes."""
    from tasks.domains.turbulence.synthetic import LAYOUT

    space = ["x", "y", "z"][:dim]
    return FieldLayout(variables=["velocity"], axes=LAYOUT[dim], coords={a: a for a in space}, time="t")


def _layout_dict(layout: FieldLayout) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(layout)


def _describe(fields: Fields) -> dict[str, Any]:
    return {"shape": list(fields.data.shape), "axes": list(fields.axes), "components": fields.components,
            "lengths": fields.lengths, "dt": fields.dt, "stride": fields.stride, "dt_model": fields.dt_model,
            "format": fields.attrs.get("format"), "warnings": fields.attrs.get("warnings", []),
            "file_attrs": {k: v for k, v in fields.attrs.get("file_attrs", {}).items() if k != "config"}}


def ingest(params: Params, run=None) -> dict[str, Any]:
    """Generate or fetch the velocity field and keep it, validated, in ``data/raw/turbulence/``.

    Output folder: the field file (``fields.h5`` for the synthetic source, else the source's
    own file name and format) and ``manifest.json`` (source, layout, shape, dt, attributes).
    The folder is replaced atomically: a bad file (NaN / Inf, mismatched shapes, missing
    variable, wrong axis spec, a model step that is not a multiple of the snapshot spacing)
    raises :class:`tasks.domains.turbulence.io.FieldError` and leaves the previous folder as it was.
    """
    p = params.ingest.turbulence
    paths = store.domain_paths(DOMAIN)
    t0 = time.perf_counter()
    with store.atomic_dir(paths.raw) as out, tempfile.TemporaryDirectory(dir=out) as cache:
        if p.source == "synthetic":
            from tasks.domains.turbulence.synthetic import HITConfig, SolverConfig, generate

            s = p.synthetic
            physics = {k: v for k, v in {"viscosity": s.viscosity, "forcing_amplitude": s.forcing_amplitude}.items()
                       if v is not None}
            if s.dim == 3 and "forcing_amplitude" in physics:
                raise ValueError("ingest.turbulence.synthetic.forcing_amplitude is for dim 2 (Kolmogorov forcing)")
            config = (SolverConfig(dtype="float32", **physics) if s.dim == 2
                      else HITConfig(dtype="float32", **physics))
            target = out / f"{RAW_NAME}.h5"
            gen = generate(target, n_trajectories=s.n_trajectories, n_snapshots=s.n_snapshots, dim=s.dim,
                           fine_n=s.fine_n, coarse_n=s.coarse_n, dt_snapshot=s.dt_snapshot, spinup=s.spinup,
                           filter_kind=s.filter_kind, filter_width=s.filter_width, config=config, seed=s.seed)
            base = synthetic_layout(s.dim)
            # The spec's time step settings still apply (dt_model: a coarser model step than the snapshots).
            layout = FieldLayout(**{**_layout_dict(base), "dt_model": p.spec.dt_model})
            fingerprint: Any = {"synthetic": s.model_dump(), "solver_steps": gen["n_steps"]}
            shown = str((paths.raw / target.name).relative_to(paths.root))
        else:
            layout = p.spec.to_layout()
            local = local_copy(p.source, Path(cache), retries=p.retries, delay_s=p.retry_delay_s)
            if not local.exists():
                raise FileNotFoundError(f"ingest.turbulence.source {p.source}: no such file or folder")
            name = Path(str(p.source).split("::")[-1].split("?")[0].rstrip("/")).name or "field"
            target = out / name
            if local.is_dir():
                shutil.copytree(local, target)
            else:
                shutil.copy2(local, target)
            fingerprint = store.source_fingerprint(p.source) if not store.is_remote(p.source) else {"url": p.source}
            shown = p.source
        # The full read is the validation: a bad field fails here, inside the atomic folder.
        fields = read_fields(target, layout, format=p.format)
        manifest = {
            "stage": "ingest", "domain": DOMAIN, "source": shown, "file": target.name, "format": p.format,
            "layout": _layout_dict(layout), "fingerprint": fingerprint, **_describe(fields),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        store.atomic_write_json(out / "manifest.json", manifest)
    manifest["outputs"] = {"raw": store.content_hash(paths.raw)}
    if run is not None:
        run.log_params({"source": p.source, "layout.variables": ",".join(layout.variables), "layout.axes": layout.axes})
        run.log_metrics({"trajectories": fields.data.shape[0], "snapshots": fields.data.shape[1]})
    return manifest


def read_raw(root: Path | None = None) -> tuple[Fields, dict[str, Any]]:
    """The ingested field, read with the layout ingest recorded. Returns (fields, manifest)."""
    paths = store.domain_paths(DOMAIN, root)
    mpath = paths.raw / "manifest.json"
    if not mpath.exists():
        raise FileNotFoundError(f"{mpath} does not exist: run ingest first (python -m tasks ingest turbulence)")
    manifest = store.read_json(mpath)
    fields = read_fields(paths.raw / manifest["file"], FieldLayout(**manifest["layout"]), format=manifest["format"])
    return fields, manifest


# ============================================================================ preprocess
def filter_and_coarsen(data: np.ndarray, lengths: list[float], kind: str, width: float,
                       coarse_n: int | None) -> np.ndarray:
    """Filter (``kind`` != none) and coarsen every snapshot of ``(traj, time, *grid, C)``; periodic cubic grids.

    Raises:
        PreprocessError: A grid that is not cubic (equal points and lengths per axis), or a coarse grid
            that is odd or larger than the field's.
    """
    from tasks.domains.turbulence.synthetic import coarsen, spectral_filter

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


def preprocess(params: Params, run=None) -> dict[str, Any]:
    """Filter / coarsen, subsample to the model step, split by whole trajectories, fit the normalisation.

    Outputs ``data/processed/turbulence/{train,val,test}.safetensors`` (``fields`` float32
    ``(n_traj, T, *grid, C)``, ``trajectory`` ids) and ``schema.json`` (grid, lengths, components,
    dt_model, t_in, per-channel mean / std of the training trajectories, the source's physics).

    Raises:
        PreprocessError: Too few trajectories or snapshots for the split and the input window.
    """
    from safetensors.numpy import save_file

    p = params.preprocess.turbulence
    fields, manifest = read_raw()
    data = fields.data[:, :: fields.stride]  # (traj, T, *grid, C): one entry per model step
    n_traj, n_time = data.shape[:2]
    need = p.test_trajectories + p.val_trajectories + 1
    if n_traj < need:
        raise PreprocessError(
            f"{manifest['file']} has {n_traj} trajectories; preprocess.turbulence needs at least {need} "
            f"(test_trajectories {p.test_trajectories} + val_trajectories {p.val_trajectories} + 1 for training), "
            "split whole so no trajectory is on both sides")
    if n_time < p.t_in + 1:
        raise PreprocessError(f"{manifest['file']}: {n_time} snapshots per trajectory at the model step "
                              f"(stride {fields.stride}) leave no (T_in={p.t_in} -> next) pair")
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
        "domain": DOMAIN, "source": manifest["source"], "grid": list(data.shape[2:-1]), "lengths": fields.lengths,
        "components": fields.components, "ndim": data.ndim - 3, "t_in": p.t_in, "dt_model": dt_model,
        "stride": fields.stride, "mean": mean.tolist(), "std": std.tolist(),
        "increment_mean": inc_mean.tolist(), "increment_std": np.maximum(inc_std, 1e-12 * std).tolist(), "trajectories": ids,
        "pairs": {k: len(v) * (n_time - p.t_in) for k, v in ids.items()}, "snapshots": n_time,
        "filter": p.filter, "filter_width": p.filter_width, "coarse_n": p.coarse_n,
        "source_attrs": manifest.get("file_attrs", {}), "synthetic": "synthetic" in manifest.get("fingerprint", {}),
    }
    paths = store.domain_paths(DOMAIN)
    with store.atomic_dir(paths.processed) as out:
        for name, idx in ids.items():
            if idx:
                save_file({"fields": np.ascontiguousarray(data[idx]), "trajectory": np.asarray(idx, np.int64)},
                          str(out / f"{name}.safetensors"))
        store.atomic_write_json(out / "schema.json", schema)
    if run is not None:
        run.log_params({"filter": p.filter, "coarse_n": p.coarse_n, "t_in": p.t_in, "stride": fields.stride})
        run.log_metrics({f"pairs.{k}": v for k, v in schema["pairs"].items()})
    return {"stage": "preprocess", "domain": DOMAIN, "grid": schema["grid"], "pairs": schema["pairs"],
            "trajectories": {k: len(v) for k, v in ids.items()},
            "outputs": {"processed": store.content_hash(paths.processed)}}


# ============================================================================ splits
class FieldPairs:
    """The ``(T_in window -> next K snapshots)`` pairs of whole trajectories, cut on the fly.

    Attributes:
        fields: ``(n_traj, T, *grid, C)`` float32 tensor, physical units.
        t_in: Input window.
        horizon: Future snapshots per target (K; > 1 for pushforward training).
        labels: ``(N,)`` the trajectory index of each pair (the loop's ``labels`` contract).
    """

    def __init__(self, fields, t_in: int, horizon: int = 1, trajectory=None):
        import torch

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
        import torch

        tr = torch.as_tensor(self._traj[idx])
        st = torch.as_tensor(self._start[idx])
        offs = torch.arange(self.t_in + self.horizon)
        window = self.fields[tr[:, None], st[:, None] + offs]  # (B, T_in + K, *grid, C)
        return (window[:, : self.t_in],), window[:, self.t_in :]


def load_schema(root: Path | None = None) -> dict:
    return store.read_json(store.domain_paths(DOMAIN, root).processed / "schema.json")


def load_fields(name: str, root: Path | None = None) -> dict[str, np.ndarray]:
    """One split's whole trajectories: ``{"fields": (n, T, *grid, C), "trajectory": (n,)}``."""
    from safetensors.numpy import load_file

    path = store.domain_paths(DOMAIN, root).processed / f"{name}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run preprocess first (python -m tasks preprocess turbulence)")
    return load_file(str(path))


def load_split(name: str, task: str = "regression", root: Path | None = None) -> FieldPairs:
    """One processed split as one-step pairs (:class:`FieldPairs`)."""
    t = load_fields(name, root)
    return FieldPairs(t["fields"], load_schema(root)["t_in"], 1, t["trajectory"])


# ============================================================================ hooks
def model_config(params: Params, schema: dict) -> dict[str, Any]:
    """The registry config of the teacher: params' config plus grid, lengths, channels, window, statistics."""
    cfg = dict(params.train.turbulence.model.config)
    cfg.update(_data_config(schema, params.train.turbulence.residual))
    return _fit_lifting(f"{DOMAIN}/{params.train.turbulence.model.arch}", cfg)


def _fit_lifting(key: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """IFactFormer's grouped lifting needs ``dim // 2`` divisible by the components; when the config leaves
    ``lift_dim`` unset and it is not (dim 32 on a 3-component field), round it to the nearest multiple."""
    if key != f"{DOMAIN}/ifactformer" or cfg.get("lift_dim") is not None:
        return cfg
    from models.ifactformer import IFactFormerConfig

    half, c = int(cfg.get("dim", IFactFormerConfig.dim)) // 2, int(cfg["n_channels"])
    return cfg if half % c == 0 else {**cfg, "lift_dim": c * max(1, round(half / c))}


def _data_config(schema: dict, residual: bool) -> dict[str, Any]:
    """Grid, box, channels, window and the normalisation fitted by preprocess (inputs: the fields' statistics;
    outputs: the same, or the one-step increments' when the models predict increments)."""
    out = ({"out_mean": list(schema["increment_mean"]), "out_std": list(schema["increment_std"])} if residual
           else {"out_mean": None, "out_std": None})
    return {"grid": list(schema["grid"]), "lengths": [float(x) for x in schema["lengths"]],
            "n_channels": len(schema["components"]), "t_in": schema["t_in"],
            "norm_mean": list(schema["mean"]), "norm_std": list(schema["std"]), "residual": residual, **out}


def task_info(params: Params, schema: dict) -> dict[str, Any]:
    """What the generic stages need: no classes; the report's columns (one per reported rollout step)."""
    steps = [s for s in params.evaluate.turbulence.report_steps
             if s <= min(params.evaluate.turbulence.rollout_steps, schema["snapshots"] - schema["t_in"])]
    rollout = [f"rollout_rel_l2_{s}" for s in steps]
    return {"task": "regression", "class_names": [], "family_names": [],
            "table_columns": ["one_step_rel_l2", *rollout, "spectrum_lsd", "stable", "ms_per_step",
                              "speedup_vs_solver", "bytes", "parameters"],
            "column_labels": {f"rollout_rel_l2_{s}": f"rel. L2 @{s}" for s in steps},
            "test_note": (f"held-out trajectories ({schema['pairs']['test']} one-step pairs; rollouts from the first "
                          f"window of each)")}


def extra_train(params: Params, out: Path, run=None, baselines: dict | None = None) -> dict[str, Any]:
    """Train the neural baselines (FNO, IFactFormer-o) with the shared loop on the teacher's pairs.

    Each is saved like the teacher (``out/<name>/model.safetensors`` + ``config.json`` + ``metrics.json``)
    and evaluated beside it. ``baselines`` (the stage's scikit-learn ones) is unused.
    """
    import models
    from tasks.params import params_hash
    from tasks.train import count_parameters, fit, save_model

    p = params.train.turbulence
    paths = store.domain_paths(DOMAIN)
    schema = load_schema()
    train, val = load_split("train"), (load_split("val") if schema["trajectories"]["val"] else None)
    summary: dict[str, Any] = {}
    for name in p.baselines:
        key, base = BASELINE_KEYS[name]
        # IFactFormer-o is the teacher with chained kernels (same width, heads, loop), so the two differ
        # only in how the axis kernels combine; FNO has its own architecture config.
        own = dict(p.model.config) if key == f"{DOMAIN}/{p.model.arch}" else {}
        cfg = _fit_lifting(key, {**own, **base, **p.baseline_configs.get(name, {}), **_data_config(schema, p.residual)})
        model = models.build(key, cfg)
        ckpt = paths.checkpoints / params_hash({"train": p.model_dump(mode="json"), "baseline": name, "config": cfg,
                                                "data": store.content_hash(paths.processed)})

        def log_epoch(epoch: int, metrics: dict[str, float], _name: str = name) -> None:
            if run is not None:
                run.log_metrics({f"{_name}.{k}": v for k, v in metrics.items() if k != "epoch"}, step=epoch)

        print(f"training baseline {name} ({key}, {count_parameters(model):,} parameters)")
        result = fit(model, train, val, p, task="regression", checkpoint_dir=ckpt, on_epoch=log_epoch)
        folder = out / name
        folder.mkdir()
        save_model(folder, model, key, {"task": "regression", "schema": schema})
        row = {"key": key, "parameters": count_parameters(model), "best_epoch": result.best_epoch,
               "best_val_rel_l2": result.best_metric if val is not None else None,
               "train_seconds": round(result.seconds, 3)}
        store.atomic_write_json(folder / "metrics.json", {**row, "history": result.history})
        summary.update({f"{name}.{k}": v for k, v in row.items() if k != "key"})
    return summary


# ============================================================================ evaluate
def _solver_seconds_per_step(schema: dict, enabled: bool) -> float | None:
    """Wall time of the synthetic source's fine-grid solver to advance one model step (None for real data).

    The solver is rebuilt from the attributes the generator wrote (grid, physics, precision), spun up as
    the generator did, then timed over four model steps (:func:`tasks.domains.turbulence.synthetic.solver_cost`).
    """
    if not enabled or not schema.get("synthetic") or not schema.get("dt_model"):
        return None
    from tasks.domains.turbulence.synthetic import HITConfig, SolverConfig, solver_cost

    a = schema.get("source_attrs", {})
    common = {"n": int(a["fine_n"]), "viscosity": float(a["viscosity"]), "courant": float(a["courant"]),
              "dtype": str(a.get("solver_dtype", "float32"))}
    if schema.get("ndim") == 2:
        cfg: SolverConfig | HITConfig = SolverConfig(
            **common, forcing_amplitude=float(a["forcing_amplitude"]), forcing_wavenumber=int(a["forcing_wavenumber"]),
            drag=float(a["drag"]))
    else:
        cfg = HITConfig(**common, forcing_power=float(a["forcing_power"]), forcing_kmax=float(a["forcing_kmax"]))
    dt = float(schema["dt_model"])
    cost = solver_cost(cfg, spinup=float(a.get("spinup", 10.0)), duration=4 * dt, dt_snapshot=dt)
    return float(cost["wall_s_per_time_unit"]) * dt


def evaluate_models(params: Params, folders: dict[str, Path], plots_dir: Path) -> tuple[dict[str, Any], str, list[str]]:
    """Roll every model (teacher, compressed, baselines) and persistence out on the test trajectories.

    Returns:
        ``(result, markdown, plot files)``; ``result["models"]`` maps model name to its metrics.
    """
    import torch

    from tasks.compress import load_any
    from tasks.measure import size_on_disk
    from tasks.train import count_parameters
    from tasks.domains.turbulence import evaluate as ev

    p = params.evaluate.turbulence
    schema = load_schema()
    test = load_fields("test")["fields"]
    paths = store.domain_paths(DOMAIN)
    loaded, kinds, sizes, counts = {}, {}, {}, {}
    every = dict(folders)
    for name in params.train.turbulence.baselines:
        if (paths.baselines / name / "config.json").exists():
            every[name] = paths.baselines / name
    for name, folder in every.items():
        model, meta = load_any(folder)
        loaded[name] = model
        kinds[name] = KINDS.get(name, meta.get("compression", name))
        sizes[name] = size_on_disk(folder / "model.safetensors")
        counts[name] = count_parameters(model) if "compression" not in meta else None
    loaded["persistence"] = Persistence()
    kinds["persistence"] = KINDS["persistence"]
    with torch.no_grad():
        solver_s = _solver_seconds_per_step(schema, p.solver_speed)
    metrics, md, plots = ev.evaluate_fields(
        loaded, test, t_in=schema["t_in"], lengths=schema["lengths"], dt_model=schema["dt_model"] or 1.0,
        rollout_steps=p.rollout_steps, report_steps=p.report_steps, blowup_factor=p.blowup_factor,
        plots_dir=plots_dir, kinds=kinds, solver_seconds_per_step=solver_s, latency_repeats=p.latency_repeats,
        gif=p.gif)
    metrics["persistence"].update(ms_per_step=None, speedup_vs_solver=None)  # no model to time
    for name, m in metrics.items():
        m.update(bytes=sizes.get(name), parameters=counts.get(name))
        # The registry's latency budget reads latency_ms; here it is one predicted step at batch 1.
        m["latency_ms"] = m.get("ms_per_step")
    check_md, check_plots = "", []
    if p.hit_slice:
        path = Path(p.hit_slice)
        path = path if path.is_absolute() else store.project_root() / path
        check, check_md, check_plots = ev.hit_slice_check(path, plots_dir, k_range=tuple(p.hit_slice_k_range))
    else:
        check = {}
    result = {"models": metrics, "n_test": int(test.shape[0]), "solver_seconds_per_step": solver_s,
              "hit_slice": check, "dt_model": schema["dt_model"], "grid": schema["grid"]}
    return result, md + ("\n\n" + check_md if check_md else ""), [*plots, *check_plots]


def Persistence():  # noqa: N802 - reads as the class it builds
    """The trivial forecast ``u(t+1) = u(t)`` (an ``nn.Module``): the floor a surrogate must beat at one step."""
    import torch

    class _Persistence(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, -1]  # (B, T_in, *grid, C) -> (B, *grid, C)

    return _Persistence()


# ============================================================================ scoring
def score_fields(params: Params, model_uri: str, input_url: str, output: str | Path) -> dict[str, Any]:
    """Roll the registered model out from the last window of every trajectory of a field file.

    The input is read with ``ingest.turbulence.spec`` (the same validation as ingest); the
    prediction (``score.turbulence.steps`` snapshots per trajectory, ``dt_model`` apart) is
    written to ``output`` in the input's format (atomically: nothing is left on failure).

    Raises:
        FieldError: The input does not match the model (grid, components) or fails validation.
    """
    from tasks import tracking
    from tasks.domains.turbulence.evaluate import rollout

    ip, sp = params.ingest.turbulence, params.score.turbulence
    pyfunc = tracking.load_pyfunc(model_uri)
    wrapper = pyfunc.unwrap_python_model()
    model, meta = wrapper.model, wrapper.meta
    with tempfile.TemporaryDirectory() as cache:
        fields = read_fields(input_url, ip.spec.to_layout(), cache=Path(cache), format=ip.format,
                             retries=ip.retries, delay_s=ip.retry_delay_s)
    cfg = meta["config"]
    data = fields.data[:, :: fields.stride]
    if list(data.shape[2:-1]) != list(cfg["grid"]) or data.shape[-1] != cfg["n_channels"]:
        raise FieldError(f"{input_url}: field grid {list(data.shape[2:-1])} with {data.shape[-1]} components does not "
                         f"match the model's grid {cfg['grid']} with {cfg['n_channels']} components")
    if data.shape[1] < cfg["t_in"]:
        raise FieldError(f"{input_url}: {data.shape[1]} snapshots at the model step; the model needs {cfg['t_in']}")
    t0 = time.perf_counter()
    pred = rollout(model, data[:, -cfg["t_in"]:], sp.steps)  # (traj, steps, *grid, C)
    seconds = time.perf_counter() - t0
    dt = fields.dt_model
    coords = {a: fields.coords[a] for a in fields.space}
    if dt is not None and "time" in fields.coords:
        t_last = float(fields.coords["time"][:: fields.stride][-1])
        coords["time"] = t_last + dt * np.arange(1, sp.steps + 1)
    out = Fields(data=pred.astype(np.float32), coords=coords, lengths=fields.lengths, dt=dt, stride=1,
                 components=fields.components, source=f"formerflow {model_uri} from {input_url}",
                 attrs={"file_attrs": {"model_uri": model_uri, "input": str(input_url), "steps": sp.steps}})
    output = Path(output)
    fmt = fields.attrs["format"] if fields.attrs["format"] != "zarr" else "hdf5"
    variables = fields.attrs["variables"] if len(fields.attrs["variables"]) > 1 else None
    layout = write_fields(output, out, format=fmt, variables=variables)
    finite = bool(np.isfinite(pred).all())
    return {"stage": "score", "domain": DOMAIN, "model_uri": model_uri, "input": str(input_url),
            "rows": int(pred.shape[0] * pred.shape[1]), "flagged": 0 if finite else 1, "output": str(output),
            "format": fmt, "trajectories": int(pred.shape[0]), "steps": sp.steps, "finite": finite,
            "seconds": round(seconds, 3), "ms_per_step": round(1e3 * seconds / max(sp.steps, 1), 3),
            "layout": {"variables": layout.variables, "axes": layout.axes}}


def predict_array(model, meta: dict, model_input) -> np.ndarray:
    """The pyfunc's array input: ``{"initial": (B, T_in, *grid, C), "steps": [n]}`` or the window array alone
    (one step). Returns the predicted trajectory ``(B, n, *grid, C)`` float32, physical units."""
    from tasks.domains.turbulence.evaluate import rollout

    if isinstance(model_input, dict):
        initial = np.asarray(model_input["initial"], dtype=np.float32)
        steps = int(np.asarray(model_input.get("steps", [1])).reshape(-1)[0])
    else:
        initial, steps = np.asarray(model_input, dtype=np.float32), 1
    cfg = meta["config"]
    expected = (cfg["t_in"], *cfg["grid"], cfg["n_channels"])
    if initial.ndim != len(expected) + 1 or tuple(initial.shape[1:]) != expected:
        raise FieldError(f"model input of shape {tuple(initial.shape)}; expected (B, {', '.join(map(str, expected))})")
    return rollout(model, initial, steps)


def score_frame(model, meta: dict, frame) -> Any:
    """Tables are not a turbulence input: field files go through :func:`score_fields`, arrays through
    :func:`predict_array`."""
    raise TypeError("the turbulence model predicts fields, not table rows: pass {'initial': array, 'steps': [n]} "
                    "to the pyfunc, or score a field file with python -m flows.scoring turbulence <file> <out>")
