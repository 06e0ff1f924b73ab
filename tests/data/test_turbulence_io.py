"""Data tests for the turbulence field layout, readers and writers.

The modules under test are :mod:`tasks.domains.turbulence.layout`,
:mod:`tasks.domains.turbulence.readers` and :mod:`tasks.domains.turbulence.writers`.

Every supported format is round-tripped through small files made here (HDF5 in the
synthetic source's layout, NetCDF4 written with h5py and netCDF dimension scales, classic
NetCDF3 via SciPy, NPZ, NPY in the channel-flow layout); the shipped ``hit_slice.nc`` and a
freshly generated synthetic file are read; every kind of bad input must raise a
:class:`FieldError` that names the file and what is wrong.
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

import fsspec
import h5py
import numpy as np
import pytest
from scipy.io import netcdf_file

from tasks.domains.turbulence.layout import FieldError, FieldLayout, Fields
from tasks.domains.turbulence.readers import detect_format, read_fields
from tasks.domains.turbulence.synthetic import generate
from tasks.domains.turbulence.writers import write_fields

HIT_SLICE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "turbulence" / "hit_slice.nc"
SYNTHETIC = FieldLayout(variables=["velocity"], axes="trajectory,time,x,y,component")
CHANNEL_AXES = "trajectory,time,x,y,z,component"
TWO_PI = 2 * math.pi


def _field(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _synthetic_h5(path: Path, shape=(2, 3, 8, 6, 2), dt: float = 0.5, group: str = "") -> np.ndarray:
    """An HDF5 file laid out as :func:`tasks.domains.turbulence.synthetic.generate` writes it."""
    vel = _field(shape)
    with h5py.File(path, "w") as f:
        f.create_dataset(f"{group}velocity", data=vel)
        f.create_dataset("x", data=np.arange(shape[2]) * TWO_PI / shape[2])
        f.create_dataset("y", data=np.arange(shape[3]) * TWO_PI / shape[3])
        f.create_dataset("t", data=10.0 + dt * np.arange(shape[1]))
        f.attrs["layout"] = "trajectory,time,x,y,component"
        f.attrs["dt"] = dt
        f.attrs["seed"] = 3
    return vel


def _netcdf4(path: Path, nx=6, ny=5) -> dict[str, np.ndarray]:
    """A minimal netCDF-4 file via h5py: dimension scales z, y, x and one variable per component."""
    comps = {f"velocity_{c}": _field((1, ny, nx), seed=i) for i, c in enumerate("xyz")}
    with h5py.File(path, "w") as f:
        f.attrs["_NCProperties"] = "version=2,netcdf=4.9.2,hdf5=1.14.3"
        scales = {}
        for dim, n in (("z", 1), ("y", ny), ("x", nx)):
            ds = f.create_dataset(dim, data=np.zeros(n, dtype=np.float32))
            # netCDF-C's NAME for a dimension without a coordinate variable (values meaningless).
            ds.make_scale(f"This is a netCDF dimension but not a netCDF variable{n:10d}")
            scales[dim] = ds
        for name, arr in comps.items():
            ds = f.create_dataset(name, data=arr)
            for i, dim in enumerate(("z", "y", "x")):
                ds.dims[i].attach_scale(scales[dim])
    return comps


def _netcdf3(path: Path, nt=4, ny=5, nx=6) -> dict[str, np.ndarray]:
    comps = {c: _field((nt, ny, nx), seed=i) for i, c in enumerate("uvw")}
    f = netcdf_file(path, "w")
    for dim, n in (("time", nt), ("y", ny), ("x", nx)):
        f.createDimension(dim, n)
    for dim, values in (
        ("time", 0.25 * np.arange(nt)),
        ("y", -np.cos(np.linspace(0, np.pi, ny))),
        ("x", np.arange(nx) * 0.5),
    ):
        f.createVariable(dim, "d", (dim,))[:] = values
    for name, arr in comps.items():
        f.createVariable(name, "f", ("time", "y", "x"))[:] = arr
    f.title = "test"
    f.close()
    return comps


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ============================================================================ round trips


def test_hdf5_synthetic_layout_round_trip(tmp_path):
    src = tmp_path / "field.h5"
    vel = _synthetic_h5(src)
    f = read_fields(src, SYNTHETIC)
    assert f.data.shape == (2, 3, 8, 6, 2) and f.data.dtype == np.float32
    np.testing.assert_array_equal(f.data, vel)
    assert f.space == ("x", "y") and f.axes == ("trajectory", "time", "x", "y", "component")
    assert f.lengths == pytest.approx([TWO_PI, TWO_PI])
    assert f.dt == pytest.approx(0.5) and f.stride == 1 and f.attrs["dt_source"] == "variable t"
    np.testing.assert_allclose(f.coords["time"], 10.0 + 0.5 * np.arange(3))
    assert f.components == ["u", "v"]
    assert f.attrs["format"] == "hdf5" and f.attrs["file_attrs"]["seed"] == 3
    assert f.attrs["coord_sources"] == {"x": "variable x (found)", "y": "variable y (found)"}
    assert f.attrs["warnings"] == []

    out = tmp_path / "out" / "pred.h5"
    layout = write_fields(out, f)
    back = read_fields(out, layout)
    _assert_same(back, f)
    with h5py.File(out) as h:
        assert h["velocity"].shape == (2, 3, 8, 6, 2) and h["velocity"].dtype == np.float32
        assert h.attrs["layout"] == "trajectory,time,x,y,component"
    assert [p.name for p in out.parent.iterdir()] == ["pred.h5"]  # no temporary left behind


def _assert_same(a: Fields, b: Fields) -> None:
    np.testing.assert_array_equal(a.data, b.data)
    assert set(a.coords) == set(b.coords)
    for k in a.coords:
        np.testing.assert_allclose(a.coords[k], b.coords[k])
    assert a.lengths == pytest.approx(b.lengths)
    assert a.dt == pytest.approx(b.dt) if b.dt is not None else a.dt is None
    assert a.stride == b.stride and a.components == b.components


def test_hdf5_nested_group_path_and_stride(tmp_path):
    src = tmp_path / "nested.hdf5"
    vel = _synthetic_h5(src, dt=0.2, group="run1/fields/")
    f = read_fields(src, FieldLayout(variables=["run1/fields/velocity"], axes=SYNTHETIC.axes, dt_model=0.6))
    np.testing.assert_array_equal(f.data, vel)
    assert f.stride == 3 and f.dt_model == pytest.approx(0.6)
    assert f.attrs["variables"] == ["run1/fields/velocity"]
    layout = write_fields(tmp_path / "w.h5", f)
    assert layout.variables == ["run1/fields/velocity"] and layout.dt_model == pytest.approx(0.6)
    assert read_fields(tmp_path / "w.h5", layout).stride == 3


def test_netcdf4_per_component_via_h5py(tmp_path):
    src = tmp_path / "slice.nc"
    comps = _netcdf4(src)
    layout = FieldLayout(variables=list(comps), axes="z,y,x")
    assert detect_format(src) == "netcdf4"
    f = read_fields(src, layout)
    assert f.data.shape == (1, 1, 6, 5, 3) and f.attrs["squeezed"] == ["z"]
    for i, arr in enumerate(comps.values()):
        np.testing.assert_array_equal(f.data[0, 0, :, :, i], arr[0].T)  # stored (z, y, x) -> (x, y)
    assert f.components == ["velocity_x", "velocity_y", "velocity_z"]
    assert f.attrs["dims"]["velocity_x"] == ["z", "y", "x"]
    # The dimension-only datasets z, y, x hold no coordinates: the default grid is used, with a warning.
    assert f.attrs["coord_sources"]["x"] == "default [0, 2*pi)" and len(f.attrs["warnings"]) == 2

    out = tmp_path / "pred.nc"
    back_layout = write_fields(out, f)  # .nc read as netCDF-4: written as netCDF-4 again
    assert detect_format(out) == "netcdf4" and back_layout.variables == list(comps)
    back = read_fields(out, back_layout)
    _assert_same(back, f)
    assert back.attrs["dims"]["velocity_x"] == ["trajectory", "time", "x", "y"]


def test_netcdf3_round_trip_keeps_variable_names(tmp_path):
    src = tmp_path / "flow.nc"
    comps = _netcdf3(src)
    layout = FieldLayout(variables=["u", "v", "w"], axes="time,y,x", coords={"x": "x", "y": "y"}, time="time")
    assert detect_format(src) == "netcdf3"
    f = read_fields(src, layout)
    assert f.data.shape == (1, 4, 6, 5, 3)
    np.testing.assert_array_equal(f.data[0, :, :, :, 1], comps["v"].transpose(0, 2, 1))
    assert f.dt == pytest.approx(0.25) and f.components == ["u", "v", "w"]
    assert f.lengths == pytest.approx([3.0, 2.0])  # uniform x: periodic, n*dx; stretched y: its span
    assert f.attrs["dims"]["u"] == ["time", "y", "x"] and f.attrs["file_attrs"]["title"] == "test"

    out = tmp_path / "pred.nc"
    back_layout = write_fields(out, f)
    assert detect_format(out) == "netcdf3"
    nc = netcdf_file(out, "r", mmap=False)
    try:
        assert {"u", "v", "w", "x", "y", "time"} <= set(nc.variables)
        assert nc.variables["u"].dimensions == ("trajectory", "time", "x", "y")
    finally:
        nc.close()
    back = read_fields(out, back_layout)
    _assert_same(back, f)
    assert back.attrs["file_attrs"]["title"] == "test"


def test_npz_round_trip(tmp_path):
    src = tmp_path / "field.npz"
    vel = _field((3, 4, 5, 6, 2))
    np.savez(src, vel=vel, xc=np.arange(4.0), tt=np.arange(3) * 0.1)
    layout = FieldLayout(
        variables=["vel"], axes="time,x,y,z,component", coords={"x": "xc", "y": [0, 3], "z": 12.0}, time="tt"
    )
    f = read_fields(src, layout)
    assert f.data.shape == (1, 3, 4, 5, 6, 2)
    np.testing.assert_array_equal(f.data[0], vel)
    assert f.lengths == pytest.approx([4.0, 3.0, 12.0]) and f.dt == pytest.approx(0.1)
    np.testing.assert_allclose(f.coords["y"], np.arange(5) * 0.6)

    out = tmp_path / "pred.npz"
    back = read_fields(out, write_fields(out, f))
    _assert_same(back, f)
    assert back.attrs["file_attrs"]["layout"] == "trajectory,time,x,y,z,component"


@pytest.mark.parametrize("fmt", ["npy", "npz", "h5"])
def test_channel_flow_layout_keeps_three_of_four_channels(tmp_path, fmt):
    # Stand-in for Retau180_dim21x400x32x33x16x4_dT200.npy, same axis order.
    arr = _field((2, 5, 4, 5, 3, 4))
    src = tmp_path / f"retau.{fmt}"
    if fmt == "npy":
        np.save(src, arr)
    elif fmt == "npz":
        np.savez(src, data=arr)
    else:
        with h5py.File(src, "w") as h:
            h["data"] = arr
    layout = FieldLayout(
        variables=["data"],
        axes=CHANNEL_AXES,
        channels=[0, 1, 2],
        coords={"x": [0, 4 * math.pi], "y": [-1, 1], "z": [0, 4 * math.pi / 3]},
        dt=0.2,
    )
    f = read_fields(src, layout)
    assert f.data.shape == (2, 5, 4, 5, 3, 3) and f.data.dtype == np.float32
    assert f.data.flags.c_contiguous and not isinstance(f.data, np.memmap)
    np.testing.assert_array_equal(f.data, arr[..., :3])
    assert f.components == ["u", "v", "w"] and f.attrs["channels"] == [0, 1, 2]
    assert f.lengths == pytest.approx([4 * math.pi, 2.0, 4 * math.pi / 3])

    if fmt == "npy":
        out = tmp_path / "pred.npy"
        back = read_fields(out, write_fields(out, f))
        _assert_same(back, f)


def test_channels_reorder_and_component_names(tmp_path):
    src = tmp_path / "c.npy"
    arr = _field((1, 2, 4, 4, 4))
    np.save(src, arr)
    # A field variable that happens to be named like an axis is not taken for its coordinates.
    assert read_fields(src, FieldLayout(variables=["x"])).attrs["coord_sources"]["x"] == "default [0, 2*pi)"
    f = read_fields(
        src,
        FieldLayout(
            variables=["any"],
            axes="trajectory,time,x,y,component",
            channels=[3, 0],
            components=["u", "v", "w", "p"],
        ),
    )
    np.testing.assert_array_equal(f.data, arr[..., [3, 0]])
    assert f.components == ["p", "u"]


@pytest.mark.skipif(not HIT_SLICE.exists(), reason="../shared/data/turbulence is not present")
def test_hit_slice_ingests_to_single_2d_snapshot():
    """The real 2-D slice (../shared/data, always present in CI) ingests with per-component variables."""
    names = ["velocity_x", "velocity_y", "velocity_z"]
    f = read_fields(HIT_SLICE, FieldLayout(variables=names, axes="z,y,x"))
    assert f.data.shape == (1, 1, 256, 256, 3) and f.data.dtype == np.float32
    assert f.attrs["format"] == "netcdf3" and f.attrs["squeezed"] == ["z"]
    assert f.components == names and f.dt is None and f.stride == 1
    assert f.lengths == pytest.approx([TWO_PI, TWO_PI])
    assert any("periodic grid" in w for w in f.attrs["warnings"])
    assert np.isfinite(f.data).all() and f.data.std() > 0
    nc = netcdf_file(HIT_SLICE, "r", mmap=False)
    try:
        vy = np.array(nc.variables["velocity_y"].data)
    finally:
        nc.close()
    np.testing.assert_array_equal(f.data[0, 0, 17, 3, 1], vy[0, 3, 17])  # [x, y] <- stored [z, y, x]


def test_generated_synthetic_file_reads_back(tmp_path):
    m = generate(
        tmp_path / "syn.h5",
        n_trajectories=1,
        n_snapshots=3,
        fine_n=32,
        coarse_n=16,
        dt_snapshot=0.1,
        spinup=0.2,
    )
    f = read_fields(m["path"], SYNTHETIC)
    assert f.data.shape == (1, 3, 16, 16, 2) == tuple(m["shape"])
    assert f.dt == pytest.approx(0.1) and f.lengths == pytest.approx([TWO_PI, TWO_PI])
    assert f.attrs["file_attrs"]["layout"] == SYNTHETIC.axes
    with h5py.File(m["path"]) as h:
        np.testing.assert_array_equal(f.data, h["velocity"][()])
    assert read_fields(m["path"], FieldLayout(axes=SYNTHETIC.axes, dt_model=0.2)).stride == 2


def test_remote_source_is_copied_into_cache_only(tmp_path):
    src = tmp_path / "local.h5"
    vel = _synthetic_h5(src)
    url = "memory://turbulence-readers-test/remote.h5"
    with fsspec.open(url, "wb") as dst:
        dst.write(src.read_bytes())
    cache = tmp_path / "cache"
    before = _files(tmp_path)
    f = read_fields(url, SYNTHETIC, cache=cache)
    np.testing.assert_array_equal(f.data, vel)
    assert f.source == url
    assert {p for p in _files(tmp_path) - before if not p.startswith("cache")} == set()
    assert [p.name.endswith("-remote.h5") for p in cache.iterdir()] == [True]
    with pytest.raises(FieldError, match="needs a cache folder"):
        read_fields(url, SYNTHETIC)
    fsspec.filesystem("memory").rm("/turbulence-readers-test", recursive=True)


def test_reading_writes_nothing(tmp_path):
    _synthetic_h5(tmp_path / "a.h5")
    _netcdf3(tmp_path / "b.nc")
    _netcdf4(tmp_path / "c.nc")
    np.save(tmp_path / "d.npy", _field((2, 4, 4, 2)))
    for p in tmp_path.iterdir():
        p.chmod(0o444)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    read_fields(tmp_path / "a.h5", SYNTHETIC)
    read_fields(tmp_path / "b.nc", FieldLayout(variables=["u", "v"], axes="time,y,x"))
    read_fields(tmp_path / "c.nc", FieldLayout(variables=["velocity_x"], axes="z,y,x"))
    read_fields(tmp_path / "d.npy", FieldLayout(axes="time,x,y,component"))
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


# ============================================================================ bad input


def test_nan_names_variable_and_first_index_in_stored_order(tmp_path):
    src = tmp_path / "x.h5"
    vel = _field((1, 5, 12, 6, 2))
    vel[0, 3, 10, 4, 1] = np.nan
    vel[0, 4, 0, 0, 0] = np.inf  # later in C order: not the one reported
    with h5py.File(src, "w") as h:
        h["velocity"] = vel
    with pytest.raises(FieldError, match=r"x\.h5: velocity\[0, 3, 10, 4, 1\] = nan"):
        read_fields(src, SYNTHETIC)


def test_inf_in_per_component_variable_and_dropped_channel(tmp_path):
    src = tmp_path / "inf.nc"
    comps = _netcdf3(src)
    f = netcdf_file(src, "a", mmap=False)
    f.variables["w"][2, 1, 3] = -np.inf
    f.close()
    with pytest.raises(FieldError, match=r"inf\.nc: w\[2, 1, 3\] = -inf"):
        read_fields(src, FieldLayout(variables=list(comps), axes="time,y,x"))
    # A bad value in a channel that is not kept does not matter ...
    kept = read_fields(src, FieldLayout(variables=list(comps), axes="time,y,x", channels=[1, 0]))
    np.testing.assert_array_equal(kept.data[0, ..., 0], comps["v"].transpose(0, 2, 1))
    assert kept.components == ["v", "u"] and kept.attrs["variables"] == ["v", "u"]
    single = read_fields(src, FieldLayout(variables=list(comps), axes="time,y,x", channels=[1]))
    np.testing.assert_array_equal(single.data[0, ..., 0], comps["v"].transpose(0, 2, 1))

    # ... and one in a kept channel is reported at its stored channel index.
    arr = _field((1, 2, 4, 4, 4))
    arr[0, 1, 2, 3, 2] = np.nan
    np.save(tmp_path / "c.npy", arr)
    with pytest.raises(FieldError, match=r"c\.npy: v\[0, 1, 2, 3, 2\] = nan"):
        read_fields(
            tmp_path / "c.npy",
            FieldLayout(variables=["v"], axes="trajectory,time,x,y,component", channels=[2]),
        )


def test_fill_value_is_reported_as_missing(tmp_path):
    src = tmp_path / "fill.nc"
    f = netcdf_file(src, "w")
    f.createDimension("y", 3)
    f.createDimension("x", 4)
    v = f.createVariable("u", "f", ("y", "x"))
    v._FillValue = np.float32(-9999.0)
    data = np.ones((3, 4), np.float32)
    data[1, 2] = -9999.0
    v[:] = data
    f.close()
    with pytest.raises(FieldError, match=r"fill\.nc: u\[1, 2\] = -9999\.0 \(the _FillValue"):
        read_fields(src, FieldLayout(variables=["u"], axes="y,x"))


def test_mismatched_component_shapes(tmp_path):
    src = tmp_path / "m.npz"
    np.savez(src, u=_field((4, 5)), v=_field((4, 6)))
    with pytest.raises(FieldError, match=r"m\.npz: .*u \(4, 5\) vs v \(4, 6\)"):
        read_fields(src, FieldLayout(variables=["u", "v"], axes="x,y"))


def test_missing_variable_lists_present(tmp_path):
    src = tmp_path / "x.h5"
    _synthetic_h5(src)
    with pytest.raises(
        FieldError, match=r"x\.h5: variable 'vel' not found; variables present: t, velocity, x, y"
    ):
        read_fields(src, FieldLayout(variables=["vel"], axes=SYNTHETIC.axes))
    with pytest.raises(FieldError, match=r"coordinate variable 'xx' for axis x not found"):
        read_fields(src, FieldLayout(axes=SYNTHETIC.axes, coords={"x": "xx"}))


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ("trajectory,time,x,y", r"names 4 axes but velocity has shape \(2, 3, 8, 6, 2\)"),
        ("trajectory,time,x,y,comp", r"unknown axis name\(s\) \['comp'\]"),
        ("trajectory,time,x,x,component", r"axis name\(s\) \['x'\] appear more than once"),
        ("trajectory,time,component", r"names 3 axes"),
    ],
)
def test_bad_axis_spec(tmp_path, axes, message):
    src = tmp_path / "x.h5"
    _synthetic_h5(src)
    with pytest.raises(FieldError, match=rf"x\.h5: axes '{axes}'.*" + message) as err:
        read_fields(src, FieldLayout(axes=axes))
    assert re.search(r"velocity (has|of) shape \(2, 3, 8, 6, 2\)", str(err.value))


def test_axis_spec_mismatch_names_file_dimensions(tmp_path):
    src = tmp_path / "d.nc"
    _netcdf3(src)
    with pytest.raises(
        FieldError, match=r"has shape \(4, 5, 6\) \(3 axes\) \(dimensions in the file: time, y, x\)"
    ):
        read_fields(src, FieldLayout(variables=["u"], axes="y,x"))
    with pytest.raises(FieldError, match=r"cannot have a 'component' axis"):
        read_fields(src, FieldLayout(variables=["u", "v"], axes="time,y,component"))
    np.save(tmp_path / "s.npy", _field((3, 2)))
    with pytest.raises(
        FieldError, match=r"s\.npy: axes 'time,component' for s of shape \(3, 2\): no spatial axis"
    ):
        read_fields(tmp_path / "s.npy", FieldLayout(variables=["s"], axes="time,component"))


def test_channels_out_of_range(tmp_path):
    src = tmp_path / "x.h5"
    _synthetic_h5(src)
    with pytest.raises(
        FieldError, match=r"x\.h5: channels \[0, 2\]: 2 is out of range for the 2 stored component"
    ):
        read_fields(src, FieldLayout(axes=SYNTHETIC.axes, channels=[0, 2]))
    with pytest.raises(FieldError, match=r"out of range"):
        read_fields(src, FieldLayout(axes=SYNTHETIC.axes, channels=[-1]))
    with pytest.raises(FieldError, match=r"repeat a channel"):
        read_fields(src, FieldLayout(axes=SYNTHETIC.axes, channels=[1, 1]))
    with pytest.raises(FieldError, match=r"components \['a', 'b', 'c'\] has 3 names"):
        read_fields(src, FieldLayout(axes=SYNTHETIC.axes, components=["a", "b", "c"]))


def test_dt_model_must_be_a_multiple_of_the_snapshot_spacing(tmp_path):
    src = tmp_path / "x.h5"
    _synthetic_h5(src, dt=0.2)
    with pytest.raises(FieldError) as err:
        read_fields(src, FieldLayout(axes=SYNTHETIC.axes, dt_model=0.3))
    assert str(err.value) == f"dt_model 0.3 is not a multiple of the snapshot spacing 0.2 (file {src})"
    with pytest.raises(FieldError, match="dt_model 0.1 is not a multiple"):
        read_fields(src, FieldLayout(axes=SYNTHETIC.axes, dt_model=0.1))
    assert read_fields(src, FieldLayout(axes=SYNTHETIC.axes, dt_model=0.4)).stride == 2
    np.save(tmp_path / "n.npy", _field((2, 4, 4, 2)))
    with pytest.raises(FieldError, match=r"n\.npy: dt_model 0.4 needs the snapshot spacing"):
        read_fields(tmp_path / "n.npy", FieldLayout(axes="time,x,y,component", dt_model=0.4))
    with pytest.raises(FieldError, match=r"dt 0.3 disagrees with the spacing 0.2"):
        read_fields(src, FieldLayout(axes=SYNTHETIC.axes, time="t", dt=0.3))


def test_bad_coordinates_and_time(tmp_path):
    src = tmp_path / "x.h5"
    _synthetic_h5(src)
    with h5py.File(src, "a") as h:
        h["t2"] = np.array([0.0, 0.1, 0.3])
        h["short"] = np.arange(3.0)
    with pytest.raises(FieldError, match=r"time coordinate 't2' is not uniformly increasing"):
        read_fields(src, FieldLayout(axes=SYNTHETIC.axes, time="t2"))
    with pytest.raises(
        FieldError, match=r"coordinate variable 'short' has shape \(3,\); axis x needs \(8,\)"
    ):
        read_fields(src, FieldLayout(axes=SYNTHETIC.axes, coords={"x": "short"}))
    with pytest.raises(FieldError, match=r"coords\['y'\] = \[2, 1\]"):
        read_fields(src, FieldLayout(axes=SYNTHETIC.axes, coords={"y": [2, 1]}))
    with pytest.raises(FieldError, match=r"coords names axes \['z'\]"):
        read_fields(src, FieldLayout(axes=SYNTHETIC.axes, coords={"z": 1.0}))


def test_format_errors(tmp_path, monkeypatch):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello world")
    with pytest.raises(FieldError, match=r"junk\.bin: cannot tell the format"):
        read_fields(junk, SYNTHETIC)
    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"not hdf5 at all")
    with pytest.raises(FieldError, match=r"fake\.h5: cannot open as hdf5"):
        read_fields(fake, SYNTHETIC)
    with pytest.raises(FieldError, match=r"no such file"):
        read_fields(tmp_path / "absent.h5", SYNTHETIC)
    np.save(tmp_path / "a.npy", _field((2, 4, 4, 2)))
    with pytest.raises(FieldError, match=r"a\.npy: an \.npy file holds a single array"):
        read_fields(tmp_path / "a.npy", FieldLayout(variables=["u", "v"], axes="time,x,y"))
    with pytest.raises(FieldError, match="unknown format 'grib'"):
        read_fields(tmp_path / "a.npy", SYNTHETIC, format="grib")
    store = tmp_path / "f.zarr"
    store.mkdir()
    monkeypatch.setitem(sys.modules, "zarr", None)  # as if zarr were not installed
    with pytest.raises(FieldError, match=r"f\.zarr: reading Zarr needs the zarr package"):
        read_fields(store, SYNTHETIC)


def test_zarr_round_trip(tmp_path):
    zarr = pytest.importorskip("zarr")
    vel = _field((2, 3, 8, 6, 2))
    root = zarr.open_group(str(tmp_path / "f.zarr"), mode="w")
    root.create_group("g")
    root["g"].create_array("velocity", shape=vel.shape, dtype="float32")[...] = vel
    f = read_fields(tmp_path / "f.zarr", FieldLayout(variables=["g/velocity"], axes=SYNTHETIC.axes))
    np.testing.assert_array_equal(f.data, vel)
    assert f.attrs["format"] == "zarr"
    with pytest.raises(FieldError, match=r"variable 'velocity' not found; variables present: g/velocity"):
        read_fields(tmp_path / "f.zarr", FieldLayout(variables=["velocity"], axes=SYNTHETIC.axes))
    # A store holding one array (no group): like .npy, any one name.
    arr = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=vel.shape, dtype="float32")
    arr[...] = vel
    f = read_fields(tmp_path / "a.zarr", FieldLayout(variables=["any"], axes=SYNTHETIC.axes))
    np.testing.assert_array_equal(f.data, vel)


# ============================================================================ writer


def test_write_is_atomic_and_checks_names(tmp_path):
    src = tmp_path / "x.h5"
    _synthetic_h5(src)
    f = read_fields(src, SYNTHETIC)
    out = tmp_path / "out.h5"
    out.write_bytes(b"old")
    with pytest.raises(FieldError, match=r"out\.h5: variables \['a', 'b', 'c'\]"):
        write_fields(out, f, variables=["a", "b", "c"])
    assert out.read_bytes() == b"old"  # a failed write leaves the old file
    with pytest.raises(FieldError, match="clash with coordinate variables"):
        write_fields(out, f, variables=["x"])
    with pytest.raises(FieldError, match="cannot write format 'zarr'"):
        write_fields(out, f, format="zarr")
    layout = write_fields(out, f, variables=["u", "v"])  # one variable per component
    assert layout.axes == "trajectory,time,x,y" and layout.variables == ["u", "v"]
    _assert_same(read_fields(out, layout), f)
    assert sorted(os.listdir(tmp_path)) == ["out.h5", "x.h5"]


def test_fields_rejects_inconsistent_construction():
    with pytest.raises(ValueError, match="component names"):
        Fields(
            np.zeros((1, 1, 4, 4, 2), np.float32),
            {"x": np.arange(4), "y": np.arange(4)},
            [1, 1],
            None,
            1,
            ["u"],
            "s",
        )
    with pytest.raises(ValueError, match="needs 4 axes"):
        Fields(np.zeros((1, 1, 4, 4, 2), np.float32), {"x": np.arange(4)}, [1], None, 1, ["u", "v"], "s")
