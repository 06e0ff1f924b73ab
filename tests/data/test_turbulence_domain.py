"""The turbulence domain's ingest and preprocess stages (tasks/turbulence), on real files read by the real readers.

Bad input at the stage level: each case must raise a FieldError naming the file and what is
wrong, and leave ``data/raw/turbulence`` exactly as the previous good ingest left it (no
partial folder, no temporary leftovers).
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from safetensors.numpy import load_file

from tasks import store
from tasks.domains.turbulence.configs import model_config
from tasks.domains.turbulence.data import load_fields, load_schema, load_split
from tasks.domains.turbulence.ingest import ingest
from tasks.domains.turbulence.layout import FieldError
from tasks.domains.turbulence.preprocess import preprocess
from tasks.params import load_params

HIT_SLICE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "turbulence" / "hit_slice.nc"
TWO_PI = 2 * math.pi


def _ingest(overrides: list[str] = ()):
    return ingest(load_params(overrides=list(overrides)))


def _h5(path: Path, vel: np.ndarray, dt: float = 0.5) -> Path:
    with h5py.File(path, "w") as f:
        f["velocity"] = vel
        f["t"] = dt * np.arange(vel.shape[1])
        f.attrs["dt"] = dt
    return path


def _smooth(shape, seed=0) -> np.ndarray:
    """Random periodic fields with a few low modes: (traj, time, n, n, 2)."""
    rng = np.random.default_rng(seed)
    traj, time, n = shape[0], shape[1], shape[2]
    x = np.arange(n) * TWO_PI / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    out = np.zeros((traj, time, n, n, 2), np.float32)
    for i in range(traj):
        a = rng.standard_normal(4)
        for t in range(time):
            out[i, t, ..., 0] = a[0] * np.sin(X + 0.1 * t) + a[1] * np.cos(2 * Y)
            out[i, t, ..., 1] = a[2] * np.cos(Y - 0.1 * t) + a[3] * np.sin(2 * X)
    return out


def test_synthetic_ingest_and_preprocess_split_whole_trajectories(project):
    m = _ingest()
    assert m["shape"] == [3, 16, 16, 16, 2] and m["dt"] == 0.5 and m["components"] == ["u", "v"]
    raw = store.domain_paths("turbulence").raw
    assert (raw / "fields.h5").exists() and m["file_attrs"]["viscosity"] == pytest.approx(1e-3)
    # The paper's window of one snapshot (the default run reads 2): the pair indices below are u_i -> u_{i+1}.
    out = preprocess(load_params(overrides=["preprocess.turbulence.t_in=1"]))
    assert out["trajectories"] == {"train": 1, "val": 1, "test": 1}
    schema = load_schema()
    ids = schema["trajectories"]
    assert set(ids["train"]).isdisjoint(ids["test"]) and set(ids["val"]).isdisjoint(ids["test"])
    proc = store.domain_paths("turbulence").processed
    train = load_file(str(proc / "train.safetensors"))["fields"]
    test = load_file(str(proc / "test.safetensors"))
    with h5py.File(raw / "fields.h5") as f:
        full = f["velocity"][()]
    np.testing.assert_array_equal(test["fields"], full[ids["test"]])  # the test trajectory, unchanged
    assert test["trajectory"].tolist() == ids["test"] == [2]
    # Normalisation from the training trajectories only.
    np.testing.assert_allclose(schema["mean"], train.reshape(-1, 2).mean(0), atol=1e-6)
    np.testing.assert_allclose(schema["std"], train.reshape(-1, 2).std(0), rtol=1e-5)
    assert not np.allclose(schema["std"], full.reshape(-1, 2).std(0), rtol=1e-4)
    pairs = load_split("train")
    (x,), y = pairs.batch(np.array([0, 5]))
    assert x.shape == (2, 1, 16, 16, 2) and y.shape == (2, 1, 16, 16, 2) and len(pairs) == 15
    np.testing.assert_array_equal(y[1, 0].numpy(), train[0, 6])  # pair 5 = (u_5 -> u_6)
    push = pairs.with_horizon(3)
    (x3,), y3 = push.batch(np.array([0]))
    assert len(push) == 13 and y3.shape == (1, 3, 16, 16, 2)
    np.testing.assert_array_equal(y3[0, 2].numpy(), train[0, 3])


def test_channel_flow_layout_ingests_3d_and_preprocesses(project, tmp_path):
    """The paper's array layout (trajectories x snapshots x 32 x 33 x 16 x 4, here shrunk), 3 of 4 channels."""
    arr = np.random.default_rng(0).standard_normal((4, 6, 8, 9, 4, 4)).astype(np.float32)
    src = tmp_path / "Retau180_dim4x6x8x9x4x4.npy"
    np.save(src, arr)
    spec = ["ingest.turbulence.spec.variables=[u]", "ingest.turbulence.spec.axes=trajectory,time,x,y,z,component",
            "ingest.turbulence.spec.channels=[0,1,2]", "ingest.turbulence.spec.coords={x: 12.566, y: 2.0, z: 4.189}",
            "ingest.turbulence.spec.dt=1.0", "ingest.turbulence.spec.dt_model=2.0"]
    m = _ingest([f"ingest.turbulence.source={src}", *spec])
    assert m["shape"] == [4, 6, 8, 9, 4, 3] and m["stride"] == 2 and m["lengths"] == [12.566, 2.0, 4.189]
    preprocess(load_params(overrides=[f"ingest.turbulence.source={src}", *spec]))
    schema = load_schema()
    assert schema["grid"] == [8, 9, 4] and schema["ndim"] == 3 and schema["snapshots"] == 3  # stride 2 of 6
    test = load_fields("test")["fields"]
    np.testing.assert_array_equal(test[0], arr[3, ::2, ..., :3])
    cfg = model_config(load_params(), schema)
    assert cfg["grid"] == [8, 9, 4] and cfg["n_channels"] == 3 and cfg["lengths"] == [12.566, 2.0, 4.189]


@pytest.mark.skipif(not HIT_SLICE.exists(), reason="../shared/data/turbulence is not present")
def test_hit_slice_ingests(project):
    m = _ingest([f"ingest.turbulence.source={HIT_SLICE}",
                 "ingest.turbulence.spec.variables=[velocity_x,velocity_y,velocity_z]",
                 "ingest.turbulence.spec.axes=z,y,x"])
    assert m["shape"] == [1, 1, 256, 256, 3] and m["format"] == "netcdf3"  # detected from the bytes
    assert (store.domain_paths("turbulence").raw / "hit_slice.nc").exists()


def test_preprocess_filters_and_coarsens(project, tmp_path):
    vel = _smooth((3, 5, 16))
    src = _h5(tmp_path / "f.h5", vel)
    over = [f"ingest.turbulence.source={src}", "preprocess.turbulence.filter=spectral",
            "preprocess.turbulence.filter_width=1.0", "preprocess.turbulence.coarse_n=8"]
    _ingest(over)
    preprocess(load_params(overrides=over))
    test = load_fields("test")["fields"]
    assert test.shape == (1, 5, 8, 8, 2)
    # Modes k <= 2 survive a sharp cut at the 8-point grid: the coarse field is the fine one sampled.
    np.testing.assert_allclose(test[0], vel[2][:, ::2, ::2], atol=1e-5)
    with pytest.raises(ValueError, match=r"coarse_n must be even and <= 16"):
        preprocess(load_params(overrides=[*over[:1], "preprocess.turbulence.coarse_n=32"]))


def test_preprocess_needs_enough_trajectories(project, tmp_path):
    src = _h5(tmp_path / "two.h5", _smooth((2, 4, 8)))
    _ingest([f"ingest.turbulence.source={src}"])
    with pytest.raises(ValueError, match=r"two\.h5 has 2 trajectories; preprocess\.turbulence needs at least 3"):
        preprocess(load_params())
    preprocess(load_params(overrides=["preprocess.turbulence.val_trajectories=0"]))
    assert load_schema()["trajectories"] == {"train": [0], "val": [], "test": [1]}


def _bad_nan(tmp_path):
    vel = _smooth((3, 4, 8))
    vel[1, 2, 5, 3, 0] = np.nan
    return _h5(tmp_path / "nan.h5", vel), [], r"nan\.h5: velocity\[1, 2, 5, 3, 0\] = nan"


def _bad_inf_component(tmp_path):
    path = tmp_path / "inf.npz"
    u, v = _smooth((3, 4, 8))[..., 0], _smooth((3, 4, 8))[..., 1]
    v[0, 1, 2, 3] = np.inf
    np.savez(path, u=u, v=v)
    return path, ["ingest.turbulence.spec.variables=[u,v]", "ingest.turbulence.spec.axes=trajectory,time,x,y"], \
        r"inf\.npz: v\[0, 1, 2, 3\] = inf"


def _bad_shapes(tmp_path):
    path = tmp_path / "shapes.npz"
    np.savez(path, u=np.zeros((3, 4, 8, 8), np.float32), v=np.zeros((3, 4, 8, 9), np.float32))
    return path, ["ingest.turbulence.spec.variables=[u,v]", "ingest.turbulence.spec.axes=trajectory,time,x,y"], \
        r"shapes\.npz: .*u \(3, 4, 8, 8\) vs v \(3, 4, 8, 9\)"


def _bad_missing(tmp_path):
    return _h5(tmp_path / "miss.h5", _smooth((3, 4, 8))), ["ingest.turbulence.spec.variables=[vel]"], \
        r"miss\.h5: variable 'vel' not found; variables present: t, velocity"


def _bad_axes(tmp_path):
    return _h5(tmp_path / "axes.h5", _smooth((3, 4, 8))), ["ingest.turbulence.spec.axes=trajectory,time,x,y"], \
        r"axes\.h5: axes 'trajectory,time,x,y'.*names 4 axes but velocity has shape \(3, 4, 8, 8, 2\)"


def _bad_dt(tmp_path):
    return _h5(tmp_path / "dt.h5", _smooth((3, 4, 8)), dt=0.2), ["ingest.turbulence.spec.dt_model=0.3"], \
        r"dt_model 0\.3 is not a multiple of the snapshot spacing 0\.2 \(file .*dt\.h5\)"


@pytest.mark.parametrize("case", [_bad_nan, _bad_inf_component, _bad_shapes, _bad_missing, _bad_axes, _bad_dt])
def test_bad_input_is_named_and_leaves_raw_untouched(project, tmp_path, case):
    good = _h5(tmp_path / "good.h5", _smooth((3, 4, 8)))
    _ingest([f"ingest.turbulence.source={good}"])
    raw = store.domain_paths("turbulence").raw
    before = store.content_hash(raw)
    listing = sorted(p.name for p in raw.parent.iterdir())
    src, spec, message = case(tmp_path)
    with pytest.raises(FieldError, match=message):
        _ingest([f"ingest.turbulence.source={src}", *spec])
    assert store.content_hash(raw) == before
    assert sorted(p.name for p in raw.parent.iterdir()) == listing  # no temporary folder left behind
    assert sorted(p.name for p in raw.iterdir()) == ["good.h5", "manifest.json"]


def test_missing_source_file_is_named(project, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ingest\.turbulence\.source .*nope\.h5"):
        _ingest([f"ingest.turbulence.source={tmp_path / 'nope.h5'}"])
    assert not store.domain_paths("turbulence").raw.exists()


def test_3d_synthetic_source_runs_every_stage(project):
    """The paper profile's 3-D mode (forced isotropic turbulence) through train, compress and evaluate, tiny."""
    import json

    from tasks.stages import run_stage

    params = load_params(overrides=[
        "ingest.turbulence.synthetic.dim=3", "ingest.turbulence.synthetic.fine_n=16",
        "ingest.turbulence.synthetic.coarse_n=8", "ingest.turbulence.synthetic.n_snapshots=8",
        "ingest.turbulence.synthetic.spinup=1.0", "ingest.turbulence.synthetic.dt_snapshot=0.2",
        "train.turbulence.epochs=1", "train.turbulence.steps_per_epoch=2",
        "train.turbulence.baseline_configs={fno: {width: 4, modes: [2, 2, 2], n_layers: 1}}",
        "evaluate.turbulence.rollout_steps=5", "evaluate.turbulence.report_steps=[5]", "evaluate.turbulence.gif=false"])
    for stage in ("ingest", "preprocess", "train", "compress", "evaluate"):
        run_stage(stage, "turbulence", params, track=False)
    schema = json.loads((project / "data/processed/turbulence/schema.json").read_text())
    assert schema["grid"] == [8, 8, 8] and schema["components"] == ["u", "v", "w"]
    metrics = json.loads((project / "reports/turbulence/metrics.json").read_text())["models"]
    assert {"teacher", "int8", "fno", "ifactformer_o", "persistence"} <= set(metrics)
    assert all(len(m["rollout_curve"]) == 5 and "rollout_rel_l2_5" in m for m in metrics.values())
    assert metrics["teacher"]["speedup_vs_solver"] > 0  # against the 3-D solver at 16^3
    assert (project / "reports/turbulence/plots/snapshots.png").stat().st_size > 3000


def test_fsspec_url_source_is_fetched_and_kept(project, tmp_path):
    """Any fsspec URL: the file is copied in (here from the in-memory filesystem) and kept under its own name."""
    import fsspec

    local = _h5(tmp_path / "remote.h5", _smooth((3, 4, 8)))
    url = "memory://formerflow-test/remote.h5"
    with fsspec.open(url, "wb") as f:
        f.write(local.read_bytes())
    m = _ingest([f"ingest.turbulence.source={url}"])
    raw = store.domain_paths("turbulence").raw
    assert m["source"] == url and m["shape"] == [3, 4, 8, 8, 2]
    assert (raw / "remote.h5").read_bytes() == local.read_bytes()
    assert sorted(p.name for p in raw.iterdir()) == ["manifest.json", "remote.h5"]  # no cache folder left
    preprocess(load_params(overrides=[f"ingest.turbulence.source={url}"]))
    assert load_schema()["grid"] == [8, 8]
