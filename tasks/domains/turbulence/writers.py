"""Field writers of the ``turbulence`` domain: canonical fields back to a file.

:func:`write_fields` writes :class:`~tasks.domains.turbulence.layout.Fields` back (HDF5,
NetCDF4, NetCDF3, NPZ, NPY) in the canonical axis order, through
:func:`tasks.store.atomic_path` (a temporary file, renamed onto the target on success), and
returns the :class:`~tasks.domains.turbulence.layout.FieldLayout` that reads the file again
(:func:`tasks.domains.turbulence.readers.read_fields`). The per-format writers are
:func:`_write_h5` (HDF5 and NetCDF4) and :func:`_write_nc3` (classic NetCDF); NPZ and NPY
are written by NumPy.

Every error on bad input is a :class:`~tasks.domains.turbulence.layout.FieldError` whose
message names the path and the format or variable names at fault.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tasks import store
from tasks.domains.turbulence.layout import (
    NC4_DIM_ONLY,
    NPZ_ATTRS_KEY,
    SUFFIXES,
    FieldError,
    FieldLayout,
    Fields,
)

WRITE_FORMATS: tuple[str, ...] = ("hdf5", "netcdf4", "netcdf3", "npz", "npy")


def _write_format(path: Path, fields: Fields, fmt: str | None) -> str:
    if fmt not in (None, "auto"):
        if fmt not in WRITE_FORMATS:
            raise FieldError(f"{path}: cannot write format {fmt!r}; supported: {', '.join(WRITE_FORMATS)}")
        return fmt
    suffix = SUFFIXES.get(path.suffix.lower())
    if suffix == "netcdf":
        src = fields.attrs.get("format")
        return src if src in ("netcdf3", "netcdf4") else "netcdf3"
    if suffix in WRITE_FORMATS:
        return suffix
    raise FieldError(
        f"{path}: cannot tell the format to write from the suffix {path.suffix!r}; "
        f"pass format= one of {', '.join(WRITE_FORMATS)}"
    )


def _out_variables(fields: Fields, fmt: str, variables: list[str] | None, path: Path) -> list[str]:
    n = fields.data.shape[-1]
    if variables is None:
        src = list(fields.attrs.get("variables") or [])
        if fmt in ("netcdf3", "netcdf4") and len(src) == n and n > 1:
            variables = src  # same variable names as the NetCDF input, one per component
        else:
            variables = src[:1] if len(src) == 1 else ["velocity"]
    variables = [str(v) for v in variables]
    if fmt == "netcdf3":
        variables = [v.replace("/", "_") for v in variables]
    if len(variables) not in (1, n) or (fmt == "npy" and len(variables) != 1):
        raise FieldError(
            f"{path}: variables {variables}: give one name (all components) or one per component ({n})"
            + ("; an .npy file holds one array" if fmt == "npy" else "")
        )
    return variables


def _attr_value(value: Any, netcdf3: bool) -> Any:
    """An attribute value HDF5 / NetCDF3 can store (None: drop it)."""
    if isinstance(value, bool):
        return np.int32(value) if netcdf3 else value
    if isinstance(value, int):
        if netcdf3:  # classic NetCDF has no 64-bit integers
            return np.int32(value) if -(2**31) <= value < 2**31 else float(value)
        return value
    if isinstance(value, float | str):
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        arr = np.asarray(value)
        return arr.astype(np.float64 if arr.dtype.kind == "f" or netcdf3 else arr.dtype)
    if value is None or (isinstance(value, list | dict) and not value):
        return None
    return json.dumps(value)


def _out_attrs(fields: Fields, axes: list[str]) -> dict[str, Any]:
    attrs = dict(fields.attrs.get("file_attrs") or {})
    attrs |= {
        "layout": ",".join(axes),
        "components": ",".join(fields.components),
        "lengths": [float(v) for v in fields.lengths],
        "stride": int(fields.stride),
        "source": fields.source,
    }
    if fields.dt is not None:
        attrs["dt"] = float(fields.dt)
    else:
        attrs.pop("dt", None)
    return attrs


def write_fields(
    path: str | Path, fields: Fields, *, format: str = "auto", variables: list[str] | None = None
) -> FieldLayout:
    """Write ``fields`` in the canonical axis order, atomically (temporary file, then rename).

    The field is stored as ``(trajectory, time, *space, component)`` float32 (one variable),
    or ``(trajectory, time, *space)`` per component (one variable per component), with a
    coordinate variable per spatial axis (``x``, ``y``, ``z``), the snapshot times when
    known (``t``; ``time`` in NetCDF), and the file attributes of the source plus
    ``layout``, ``components``, ``lengths``, ``stride``, ``source`` and ``dt``.

    Args:
        path: Output file; its folder is created.
        fields: What to write.
        format: ``hdf5``, ``netcdf4`` (HDF5 with netCDF-style dimension scales),
            ``netcdf3`` (classic, 64-bit offsets, via ``scipy.io.netcdf_file``), ``npz``,
            ``npy`` (the data array only), or ``"auto"`` by suffix (``.nc``: the netCDF
            flavour the fields were read from, else classic).
        variables: Output variable names: one (all components) or one per component.
            Default: for NetCDF, the source's names (per component when the source had
            one variable per component, as ``hit_slice.nc``); else the source's single
            variable name, or ``velocity``.

    Returns:
        The :class:`FieldLayout` that reads the written file back into equal ``Fields``.

    Raises:
        FieldError: Unknown format or variable names that do not fit (names the path).
    """
    path = Path(path)
    fmt = _write_format(path, fields, format)
    names = _out_variables(fields, fmt, variables, path)
    per_comp = len(names) > 1
    axes = list(fields.axes) if not per_comp else list(fields.axes[:-1])
    data = np.asarray(fields.data, dtype=np.float32)
    arrays = {names[0]: data} if not per_comp else {v: data[..., i] for i, v in enumerate(names)}
    time_name = "time" if fmt.startswith("netcdf") else "t"
    coords = {a: np.asarray(fields.coords[a], dtype=np.float64) for a in fields.space}
    if "time" in fields.coords:
        coords[time_name] = np.asarray(fields.coords["time"], dtype=np.float64)
    clash = sorted(set(arrays) & set(coords))
    if clash:
        raise FieldError(f"{path}: variable name(s) {clash} clash with coordinate variables {list(coords)}")
    attrs = _out_attrs(fields, axes)

    if fmt == "npy":
        with store.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, data)  # a file object: np.save would append .npy to a temporary name
        # No room for coordinates in an .npy file: the layout carries [start, start + length],
        # which reproduces uniform periodic grids (not stretched ones).
        starts = [float(fields.coords[a][0]) for a in fields.space]
        return FieldLayout(
            variables=names,
            axes=",".join(axes),
            components=list(fields.components),
            coords={a: [s0, s0 + lf] for a, s0, lf in zip(fields.space, starts, fields.lengths, strict=True)},
            dt=fields.dt,
            dt_model=fields.dt_model if fields.stride > 1 else None,
        )
    if fmt == "npz":
        payload = {**arrays, **coords, NPZ_ATTRS_KEY: np.asarray(json.dumps(attrs))}
        with store.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **payload)
    elif fmt in ("hdf5", "netcdf4"):
        _write_h5(path, arrays, coords, attrs, axes, fields, netcdf=fmt == "netcdf4", time_name=time_name)
    else:
        _write_nc3(path, arrays, coords, attrs, axes, fields, time_name=time_name)
    return FieldLayout(
        variables=names,
        axes=",".join(axes),
        components=list(fields.components),
        coords={a: a for a in fields.space},
        time=time_name if "time" in fields.coords else None,
        dt=fields.dt,
        dt_model=fields.dt_model if fields.stride > 1 else None,
    )


def _write_h5(path, arrays, coords, attrs, axes, fields: Fields, *, netcdf: bool, time_name: str) -> None:
    sizes = dict(zip(fields.axes, fields.data.shape, strict=True))
    with store.atomic_path(path) as tmp:
        # track_times=False: equal fields give equal bytes.
        with h5py.File(tmp, "w", track_order=True) as f:
            scales = {}
            if netcdf:
                # netCDF-4 names each dimension by a dimension-scale dataset: the coordinate
                # variable where there is one, else netCDF-C's dimension-only placeholder.
                for axis in axes:
                    key = time_name if axis == "time" else axis
                    if key in coords:
                        ds = f.create_dataset(key, data=coords[key], track_times=False)
                        ds.make_scale(key)
                    else:
                        ds = f.create_dataset(key, shape=(sizes[axis],), dtype="f4", track_times=False)
                        ds.make_scale(f"{NC4_DIM_ONLY}{sizes[axis]:10d}")
                    scales[axis] = ds
            for name, values in coords.items():
                if name not in f:
                    f.create_dataset(name, data=values, track_times=False)
            for name, arr in arrays.items():
                ds = f.create_dataset(name, data=arr, track_times=False)
                for i, axis in enumerate(axes if netcdf else []):
                    ds.dims[i].attach_scale(scales[axis])
            for k, v in attrs.items():
                v = _attr_value(v, netcdf3=False)
                if v is not None:
                    f.attrs[k] = v


def _write_nc3(path, arrays, coords, attrs, axes, fields: Fields, *, time_name: str) -> None:
    from scipy.io import netcdf_file  # lazy: scipy.io takes most of a second, only NetCDF3 needs it

    sizes = dict(zip(fields.axes, fields.data.shape, strict=True))
    with store.atomic_path(path) as tmp:
        f = netcdf_file(tmp, "w", version=2)  # 64-bit offsets: fields over 2 GB
        try:
            for axis in axes:
                f.createDimension(time_name if axis == "time" else axis, sizes[axis])
            for name, values in coords.items():
                var = f.createVariable(name, "d", (name,))
                var[:] = values
            dims = tuple(time_name if a == "time" else a for a in axes)
            for name, arr in arrays.items():
                var = f.createVariable(name, "f", dims)
                var[...] = arr
            for k, v in attrs.items():
                v = _attr_value(v, netcdf3=True)
                if v is not None:
                    # Into the attribute table itself: setattr would also clobber netcdf_file's
                    # own members for names such as "variables" or "mode".
                    f._attributes[k] = v
        finally:
            f.close()
