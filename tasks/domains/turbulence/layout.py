"""The field layout of the ``turbulence`` domain: how a file stores a velocity field, and the canonical array.

Turbulence data come as velocity snapshots in many containers and axis orders: the
synthetic source writes one HDF5 dataset ``velocity`` shaped ``(trajectory, time, x, y,
component)``; the channel-flow set of models.md section 4.5 is one ``.npy`` array
``(trajectory, time, x, y, z, component)`` with 4 stored channels of which the paper keeps
3; the isotropic-turbulence slice ``hit_slice.nc`` is classic NetCDF with one variable per
component, each ``(z, y, x)`` with ``z`` of length 1. A :class:`FieldLayout` says how a
file stores its field, and :func:`tasks.domains.turbulence.readers.read_fields` turns the
file into :class:`Fields`:

* ``data``: float32 ``(trajectory, time, *space, component)``, space axes in the order
  ``x, y, z``; absent ``trajectory`` / ``time`` axes are added with length 1, and a
  spatial axis of length 1 is squeezed (a ``(1, 256, 256)`` slice is a 2-D field);
* per spatial axis its coordinates and domain length, the snapshot spacing ``dt``, the
  ``stride`` (snapshots per model step, ``dt_model / dt``), component names and the
  file's attributes.

This module holds the layout spec (:class:`FieldLayout`), the canonical field
(:class:`Fields`), the error type (:class:`FieldError`), the axis and suffix vocabulary and
the file conventions the readers (:mod:`tasks.domains.turbulence.readers`) and writers
(:mod:`tasks.domains.turbulence.writers`) share, and the checks of a layout against a
stored array (:func:`parse_axes`, :func:`kept_channels`, :func:`component_names`,
:func:`canonical`).

Every error on bad input is a :class:`FieldError` whose message names the file and the
variable, axis, value or spec entry at fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

AXES: tuple[str, ...] = ("trajectory", "time", "x", "y", "z", "component")
"""Axis names a layout may use, in canonical order."""

SPATIAL: tuple[str, ...] = ("x", "y", "z")

SUFFIXES: dict[str, str] = {
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".he5": "hdf5",
    ".hdf": "hdf5",
    ".nc": "netcdf",
    ".nc3": "netcdf3",
    ".nc4": "netcdf4",
    ".cdf": "netcdf",
    ".netcdf": "netcdf",
    ".npz": "npz",
    ".npy": "npy",
    ".zarr": "zarr",
}
"""File suffix (lower case) -> format; ``netcdf`` is told apart as 3 or 4 by the first bytes."""

TWO_PI = 2.0 * math.pi
# netCDF-C stores a dimension without a coordinate variable as an HDF5 dataset with this NAME;
# its values are meaningless, so it is not a variable of the file.
NC4_DIM_ONLY = "This is a netCDF dimension but not a netCDF variable"
NPZ_ATTRS_KEY = "attrs"  # write_fields stores the file attributes as JSON under this key


DEFAULT_MAX_ARRAY_BYTES = 8 * 2**30
"""Largest field a file may declare (shape x item size) before it is read: ``ingest.turbulence.max_array_bytes``."""
DEFAULT_MAX_ABS_VALUE = 1e6
"""Largest velocity magnitude accepted: ``ingest.turbulence.max_abs_value`` (1e36-ish values are fill values)."""


class FieldError(ValueError):
    """Bad field input; the message names the file and the variable, axis, value or spec at fault."""


@dataclass(frozen=True)
class FieldLayout:
    """How a file stores a velocity field (plain values, to become a params section later).

    Attributes:
        variables: One variable holding all components (``["velocity"]``) or one variable
            per component (``["u", "v", "w"]``); HDF5 and Zarr names may be paths
            (``"group/velocity"``). An ``.npy`` file holds one array: one entry, any name.
        axes: Axis order of each variable as stored, comma-separated names from
            ``trajectory, time, x, y, z, component`` (``"trajectory,time,x,y,z,component"``;
            per-component variables have no ``component`` axis, e.g. ``"z,y,x"``).
        components: Names of the components, either one per stored component or one per
            kept channel (default: the variable names for per-component variables, else
            ``u, v, w`` then ``c3, c4, ...`` by stored index).
        channels: Stored component indices to keep, in the order to keep them (default:
            all). For per-component variables they index ``variables``.
        coords: Per spatial axis (``x``, ``y``, ``z``): the name of a 1-D coordinate
            variable in the file, a domain length (``L`` or ``[L]``: the grid
            ``arange(n) * L / n``) or ``[start, stop]`` (``start + arange(n) * (stop - start) / n``,
            a periodic cell-vertex grid like the synthetic source's). An axis not given
            uses a 1-D variable named like the axis when the file has one of the right
            length, else ``[0, 2*pi)`` with a warning in ``Fields.attrs["warnings"]``. The
            domain length of a coordinate variable is ``n * dx`` when it is uniform (a
            periodic grid), else the span of its ends (a stretched wall-normal grid); a
            uniform grid that includes both ends needs ``[start, stop]`` instead.
        time: Name of the time coordinate variable (1-D, uniformly spaced).
        dt: Time between stored snapshots (checked against ``time`` when both are given).
            With neither, a variable ``t`` / ``time`` of the right length, else a numeric
            file attribute ``dt``, is used when present.
        dt_model: Time step the surrogate advances; an integer multiple of the snapshot
            spacing (default: the spacing itself, stride 1).
        periodic: Whether the grid is periodic: ``true``, ``false`` or ``"auto"`` (the
            default): periodic for the array formats (HDF5, NetCDF, NPZ, NPY, Zarr: the
            outputs of spectral and periodic-box solvers, today's behaviour), not periodic for
            the text formats (a table or Tecplot file from PIV or a wall-bounded simulation).
            A grid that is not periodic has its spectra windowed (Hann) and cannot be filtered
            or coarsened spectrally.
        delimiter: Text tables: the column separator (default: a comma when the header has
            one, else whitespace).
        grid_rtol: Text tables and Tecplot: how far a spacing between neighbouring
            coordinate values may differ from the mean spacing, relative to it, before the
            points are refused as not a regular grid (printed coordinates carry rounding).
    """

    variables: list[str] = field(default_factory=lambda: ["velocity"])
    axes: str = "trajectory,time,x,y,component"
    components: list[str] | None = None
    channels: list[int] | None = None
    coords: dict[str, str | float | list[float]] | None = None
    time: str | None = None
    dt: float | None = None
    dt_model: float | None = None
    periodic: bool | str = "auto"
    delimiter: str | None = None
    grid_rtol: float = 0.01


PERIODIC_FORMATS = ("hdf5", "netcdf4", "netcdf3", "npz", "npy", "zarr")
"""Formats whose grids ``periodic: auto`` takes as periodic (the text formats are not)."""


def is_periodic(layout: FieldLayout, fmt: str, source: str) -> tuple[bool, str]:
    """Whether the grid of a ``fmt`` file read by ``layout`` is periodic, and why (for the manifest).

    Raises:
        FieldError: ``layout.periodic`` is neither a boolean nor ``"auto"``.
    """
    value = layout.periodic
    if isinstance(value, bool):
        return value, "given"
    if str(value).lower() != "auto":
        raise FieldError(f"{source}: periodic {value!r}: use true, false or auto")
    if fmt in PERIODIC_FORMATS:
        return True, f"auto: {fmt} (a solver's output)"
    return False, f"auto: {fmt} (text formats hold PIV and wall-bounded grids)"


@dataclass(frozen=True)
class Fields:
    """A velocity field in the canonical layout, with what is known about its grid and time.

    Attributes:
        data: float32 ``(trajectory, time, *space, component)``; space axes in the order
            ``x, y, z`` (those present).
        coords: Axis name -> coordinates: one 1-D array per spatial axis of ``data`` (its
            keys give the spatial axes) and ``"time"`` when the snapshot times are known.
        lengths: Domain length per spatial axis, in the order of ``data``.
        dt: Time between stored snapshots, or None when unknown.
        stride: Stored snapshots per model step (``dt_model / dt``; 1 by default).
        components: One name per component (last axis of ``data``).
        source: The file or URL read.
        attrs: Metadata: ``format``, ``variables`` (the variables the data came from),
            ``stored_axes``, ``stored_shape``, ``channels``, ``dims`` (dimension names in the
            file, where it has them), ``squeezed`` (spatial axes of length 1 dropped),
            ``coord_sources``, ``dt_source``, ``warnings`` and ``file_attrs`` (the file's
            own attributes as plain values).
    """

    data: np.ndarray
    coords: dict[str, np.ndarray]
    lengths: list[float]
    dt: float | None
    stride: int
    components: list[str]
    source: str
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        space = self.space
        if self.data.ndim != 3 + len(space):
            raise ValueError(
                f"Fields({self.source}): data shape {self.data.shape} needs {3 + len(space)} axes "
                f"(trajectory, time, {', '.join(space) or 'no space axes'}, component) by its coords {list(self.coords)}"
            )
        for i, axis in enumerate(space):
            if len(self.coords[axis]) != self.data.shape[2 + i]:
                raise ValueError(
                    f"Fields({self.source}): coords[{axis!r}] has {len(self.coords[axis])} entries, "
                    f"axis {axis} of data {self.data.shape} has {self.data.shape[2 + i]}"
                )
        if "time" in self.coords and len(self.coords["time"]) != self.data.shape[1]:
            raise ValueError(
                f"Fields({self.source}): coords['time'] has {len(self.coords['time'])} entries, "
                f"data {self.data.shape} has {self.data.shape[1]} snapshots"
            )
        if len(self.lengths) != len(space):
            raise ValueError(f"Fields({self.source}): {len(self.lengths)} lengths for the space axes {space}")
        if len(self.components) != self.data.shape[-1]:
            raise ValueError(
                f"Fields({self.source}): {len(self.components)} component names {self.components} "
                f"for {self.data.shape[-1]} components"
            )

    @property
    def space(self) -> tuple[str, ...]:
        """The spatial axes of ``data``, in order (``("x", "y")`` or ``("x", "y", "z")``)."""
        return tuple(a for a in SPATIAL if a in self.coords)

    @property
    def axes(self) -> tuple[str, ...]:
        """Names of all axes of ``data``."""
        return ("trajectory", "time", *self.space, "component")

    @property
    def dt_model(self) -> float | None:
        """The model's time step, ``stride * dt`` (None when ``dt`` is unknown)."""
        return None if self.dt is None else self.dt * self.stride


# ============================================================================ layout checks


def parse_axes(layout: FieldLayout, shape: tuple[int, ...], var: str, source: str, dims) -> list[str]:
    """The stored axis names of ``var``, checked against its shape.

    Raises:
        FieldError: Unknown or repeated axis names, a count that does not match ``shape``, no
            spatial axis, or a ``component`` axis on per-component variables.
    """
    spec = layout.axes
    names = [a.strip() for a in str(spec).split(",")] if str(spec).strip() else []
    where = f"{source}: axes {spec!r}"
    array = f"{var} of shape {tuple(shape)}"
    found = f" (dimensions in the file: {', '.join(dims)})" if dims else ""
    unknown = [a for a in names if a not in AXES]
    if unknown:
        raise FieldError(
            f"{where} for {array}: unknown axis name(s) {unknown}; use names from {', '.join(AXES)}"
        )
    dup = sorted({a for a in names if names.count(a) > 1})
    if dup:
        raise FieldError(f"{where} for {array}: axis name(s) {dup} appear more than once")
    if len(names) != len(shape):
        raise FieldError(
            f"{where} names {len(names)} axes but {var} has shape {tuple(shape)} ({len(shape)} axes){found}"
        )
    if not any(a in SPATIAL for a in names):
        raise FieldError(f"{where} for {array}: no spatial axis (x, y or z)")
    if len(layout.variables) > 1 and "component" in names:
        raise FieldError(
            f"{where} for {array}: per-component variables {layout.variables} cannot have a 'component' axis "
            "(each variable is one component)"
        )
    return names


def kept_channels(layout: FieldLayout, n_stored: int, source: str, what: str) -> list[int]:
    """The stored component indices ``layout.channels`` keeps (all by default), checked.

    Raises:
        FieldError: No channel, a channel out of range of the ``n_stored`` components of
            ``what``, or a repeated one.
    """
    if layout.channels is None:
        return list(range(n_stored))
    chans = list(layout.channels)
    if not chans:
        raise FieldError(
            f"{source}: channels is empty; keep at least one of the {n_stored} components of {what}"
        )
    for c in chans:
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or not 0 <= c < n_stored:
            raise FieldError(
                f"{source}: channels {chans}: {c!r} is out of range for the {n_stored} stored "
                f"component(s) of {what} (valid: 0..{n_stored - 1})"
            )
    if len(set(chans)) != len(chans):
        raise FieldError(f"{source}: channels {chans} repeat a channel")
    return [int(c) for c in chans]


def component_names(layout: FieldLayout, chans: list[int], n_stored: int, default: list[str], source: str):
    """One name per kept channel: ``layout.components`` (per stored or per kept channel), else ``default``.

    Raises:
        FieldError: ``layout.components`` has neither ``n_stored`` nor ``len(chans)`` names.
    """
    names = layout.components
    if names is None:
        return [default[c] for c in chans]
    names = [str(n) for n in names]
    if len(names) == n_stored:
        return [names[c] for c in chans]
    if len(names) == len(chans):
        return names
    raise FieldError(
        f"{source}: components {names} has {len(names)} names; give one per stored component "
        f"({n_stored}) or one per kept channel ({len(chans)})"
    )


def canonical(data: np.ndarray, stored: list[str], squeezed: list[str]) -> np.ndarray:
    """``data`` with axes ``stored`` as ``(trajectory, time, *space, component)``, C-contiguous."""
    stored = list(stored)
    for axis in ("trajectory", "time"):
        if axis not in stored:
            data = data[..., None]
            stored.append(axis)
    order = [a for a in AXES if a in stored]
    data = data.transpose([stored.index(a) for a in order])
    if squeezed:
        data = data.squeeze(axis=tuple(order.index(a) for a in squeezed))
    return np.ascontiguousarray(data)
