"""Scoring with a trained ``turbulence`` model: roll it out from a field file, or from arrays (the pyfunc)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tasks import tracking
from tasks.domains import InputExample, LoadedModel
from tasks.domains.turbulence.data import NAME, load_fields
from tasks.domains.turbulence.evaluate import rollout
from tasks.domains.turbulence.layout import FieldError, Fields
from tasks.domains.turbulence.readers import read_fields
from tasks.domains.turbulence.writers import write_fields

if TYPE_CHECKING:
    from tasks.params import Params


def score_fields(params: Params, model_uri: str, input_url: str, output: str | Path,
                 width: float | None = None) -> dict[str, Any]:
    """Roll the registered model out from the last window of every trajectory of a field file.

    The input is read with ``ingest.turbulence.spec`` (the same validation as ingest); the
    prediction (``score.turbulence.steps`` snapshots per trajectory, ``dt_model`` apart) is
    written to ``output`` in the input's format (atomically: nothing is left on failure).

    Raises:
        FieldError: The input does not match the model (grid, components) or fails validation.
    """
    ip, sp = params.ingest.turbulence, params.score.turbulence
    pyfunc = tracking.load_pyfunc(model_uri)
    loaded = pyfunc.unwrap_python_model().at_width(width)  # a nested version: any of its widths
    model, meta = loaded.model, loaded.meta
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
    # Zarr and the text formats (tables, Tecplot: points, not an array) are answered in HDF5.
    fmt = fields.attrs["format"] if fields.attrs["format"] not in ("zarr", "table", "tecplot") else "hdf5"
    variables = fields.attrs["variables"] if len(fields.attrs["variables"]) > 1 else None
    layout = write_fields(output, out, format=fmt, variables=variables)
    finite = bool(np.isfinite(pred).all())
    return {"stage": "score", "domain": NAME, "model_uri": model_uri, "input": str(input_url),
            "rows": int(pred.shape[0] * pred.shape[1]), "flagged": 0 if finite else 1, "output": str(output),
            "format": fmt, "trajectories": int(pred.shape[0]), "steps": sp.steps, "finite": finite,
            "seconds": round(seconds, 3), "ms_per_step": round(1e3 * seconds / max(sp.steps, 1), 3),
            "layout": {"variables": layout.variables, "axes": layout.axes}}


def predict_array(loaded: LoadedModel, model_input: Any) -> np.ndarray:
    """The pyfunc's array input: ``{"initial": (B, T_in, *grid, C), "steps": [n]}`` or the window array alone
    (one step). Returns the predicted trajectory ``(B, n, *grid, C)`` float32, physical units."""
    if isinstance(model_input, dict):
        initial = np.asarray(model_input["initial"], dtype=np.float32)
        steps = int(np.asarray(model_input.get("steps", [1])).reshape(-1)[0])
    else:
        initial, steps = np.asarray(model_input, dtype=np.float32), 1
    cfg = loaded.meta["config"]
    expected = (cfg["t_in"], *cfg["grid"], cfg["n_channels"])
    if initial.ndim != len(expected) + 1 or tuple(initial.shape[1:]) != expected:
        raise FieldError(f"model input of shape {tuple(initial.shape)}; expected (B, {', '.join(map(str, expected))})")
    return rollout(loaded.model, initial, steps)


def input_example(loaded: LoadedModel, steps: int = 2) -> InputExample:
    """The first window of the first test trajectory (physical units, float32), rolled out ``steps`` steps:
    ``{"initial": (1, T_in, *grid, C), "steps": [steps]}``. The output's steps dimension is the input's choice."""
    t_in = int(loaded.meta["config"]["t_in"])
    initial = np.ascontiguousarray(load_fields("test")["fields"][:1, :t_in], dtype=np.float32)
    return InputExample({"initial": initial, "steps": np.array([steps], dtype=np.int64)}, variable_dims=(1,))
