"""The turbulence domain end to end: real Prefect flow run, real MLflow registry, scoring a field file."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from scipy.io import netcdf_file

from tasks import tracking

pytestmark = pytest.mark.slow


def test_turbulence_pipeline_registers_and_scores_a_field_file(project, prefect_harness):
    from flows.pipeline import pipeline
    from flows.scoring import score_flow

    result = pipeline(domains=["turbulence"])["turbulence"]
    reg = result["register"]
    assert reg["primary_metric"] == "rollout_rel_l2_10" and reg["promoted"], reg
    c = tracking.client()
    assert str(c.get_model_version_by_alias("formerflow-turbulence", "champion").version) == reg["version"]

    # Train: the shared loop, relative L2 and StepLR; baselines trained by the same loop.
    train = json.loads((project / "reports/turbulence/train.json").read_text())
    assert train["key"] == "turbulence/ifactformer" and 0.0 < train["best_val_rel_l2"] < 10.0
    assert {"fno.best_val_rel_l2", "ifactformer_o.best_val_rel_l2"} <= set(train)

    # Evaluate: IFactFormer-m, int8, -o, FNO and persistence side by side on rollouts.
    metrics = json.loads((project / "reports/turbulence/metrics.json").read_text())
    models = metrics["models"]
    assert {"teacher", "int8", "distill", "prune", "prune+distill+int8_eager", "fno", "ifactformer_o",
            "persistence"} <= set(models)
    for name, m in models.items():
        assert m["one_step_rel_l2"] >= 0.0 and isinstance(m["stable"], bool), name
        assert len(m["rollout_curve"]) == 12
    assert models["persistence"]["one_step_rel_l2"] > 0.0  # the field moves between snapshots
    report = (project / "reports/turbulence/report.md").read_text()
    for text in ("one-step rel. L2", "rel. L2 @10", "spectrum LSD", "| teacher | IFactFormer-m |",
                 "| fno | FNO baseline |", "## Compression: the Pareto table", "![spectra](plots/spectra.png)"):
        assert text in report, text
    for plot in ("spectra.png", "error_vs_time.png", "snapshots.png", "rollout_strip.png"):
        assert (project / "reports/turbulence/plots" / plot).stat().st_size > 3000

    # Scoring: an initial field file in NetCDF3 (one variable per component) -> a trajectory in NetCDF3.
    from tasks.params import load_params

    t_in = load_params().preprocess.turbulence.t_in  # the snapshots the model reads (the default run: 2)
    with h5py.File(project / "data/raw/turbulence/fields.h5") as f:
        init = f["velocity"][2, :t_in]  # (t_in, 16, 16, 2): the first snapshots of the test trajectory
        x, y = f["x"][()], f["y"][()]
    src = project / "init.nc"
    nc = netcdf_file(src, "w")
    nc.createDimension("time", t_in)
    nc.createDimension("x", 16)
    nc.createDimension("y", 16)
    for name, arr in (("x", x), ("y", y)):
        nc.createVariable(name, "d", (name,))[:] = arr
    nc.createVariable("time", "d", ("time",))[:] = 0.5 * np.arange(t_in)
    for i, comp in enumerate("uv"):
        nc.createVariable(comp, "f", ("time", "x", "y"))[:] = init[..., i]
    nc.dt = 0.5
    nc.close()

    out = project / "preds" / "rollout.nc"
    spec = ["ingest.turbulence.spec.variables=[u,v]", "ingest.turbulence.spec.axes=time,x,y",
            "score.turbulence.steps=7"]
    from tasks.score import score

    manifest = score("turbulence", load_params(overrides=spec), str(src), out)
    assert manifest["format"] == "netcdf3" and manifest["steps"] == 7 and manifest["finite"]
    back = netcdf_file(out, "r", mmap=False)
    assert set(back.variables) >= {"u", "v", "x", "y", "time"}
    u = back.variables["u"][:].copy()
    times = back.variables["time"][:].copy()
    back.close()
    assert u.shape == (1, 7, 16, 16) and np.isfinite(u).all()
    np.testing.assert_allclose(times, 0.5 * (t_in - 1) + 0.5 * np.arange(1, 8))  # after the last input snapshot

    # The registered pyfunc takes arrays too: {"initial": (B, T_in, *grid, C), "steps": [n]}.
    pyfunc = tracking.load_pyfunc("models:/formerflow-turbulence@champion")
    pred = pyfunc.predict({"initial": init[None].astype(np.float32), "steps": np.array([7])})
    assert pred.shape == (1, 7, 16, 16, 2)
    np.testing.assert_allclose(pred[0, ..., 0], u[0], rtol=1e-5, atol=1e-6)

    # A file on another grid is refused with a clear error, and no output is written.
    bad = project / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["velocity"] = np.zeros((1, 2, 8, 8, 2), np.float32)
        f.attrs["dt"] = 0.5
    with pytest.raises(ValueError, match=r"bad\.h5: field grid \[8, 8\] with 2 components does not match"):
        score_flow("turbulence", str(bad), str(project / "preds" / "bad.h5"))
    assert not (project / "preds" / "bad.h5").exists()

    # The Prefect scoring flow on the synthetic file itself (HDF5 in, HDF5 out, read back by the same reader).
    from tasks.domains.turbulence.layout import FieldLayout
    from tasks.domains.turbulence.readers import read_fields

    manifest = score_flow("turbulence", str(project / "data/raw/turbulence/fields.h5"), str(project / "preds/all.h5"))
    assert manifest["format"] == "hdf5" and manifest["trajectories"] == 3 and manifest["steps"] == 50
    pred = read_fields(project / "preds/all.h5", FieldLayout(axes="trajectory,time,x,y,component", time="t",
                                                             coords={"x": "x", "y": "y"}))
    assert pred.data.shape == (3, 50, 16, 16, 2) and pred.dt == 0.5
    with h5py.File(project / "data/raw/turbulence/fields.h5") as f:
        t_last = float(f["t"][-1])
    np.testing.assert_allclose(pred.coords["time"][:2], [t_last + 0.5, t_last + 1.0])
