"""Field readers of the ``turbulence`` domain: one file in, one canonical array out.

:func:`read_fields` reads a velocity field file by its
:class:`~tasks.domains.turbulence.layout.FieldLayout` into
:class:`~tasks.domains.turbulence.layout.Fields` (float32 ``(trajectory, time, *space,
component)``, see :mod:`tasks.domains.turbulence.layout`), checking everything that can be
checked from shapes and small variables before the (possibly large) field is read.

Formats: HDF5 (``.h5``, ``.hdf5``; nested paths such as ``group/velocity``), NetCDF4
(HDF5 underneath, read with h5py), classic NetCDF3 (``scipy.io.netcdf_file``), NPZ, NPY
(one array), Zarr directory stores (only when the ``zarr`` package is installed), and the text formats of
:mod:`tasks.domains.turbulence.text` (whitespace/CSV tables and Tecplot ASCII; a source may then be a glob or a
folder of files, one trajectory per folder). The
format comes from the file's first bytes, else its suffix, unless given
(:func:`detect_format`). Remote URLs (any fsspec protocol) are first copied into a cache
folder (:func:`local_copy`, through :func:`tasks.store.fetch_to_cache`); reading writes
nothing anywhere else.

Every error on bad input is a :class:`~tasks.domains.turbulence.layout.FieldError` whose
message names the file and the variable, axis, value or spec entry at fault.
"""

from __future__ import annotations

import abc
import hashlib
import json
import math
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tasks import store
from tasks.domains.turbulence.layout import (
    DEFAULT_MAX_ABS_VALUE,
    DEFAULT_MAX_ARRAY_BYTES,
    NC4_DIM_ONLY,
    NPZ_ATTRS_KEY,
    SPATIAL,
    SUFFIXES,
    TWO_PI,
    FieldError,
    FieldLayout,
    Fields,
    canonical,
    component_names,
    is_periodic,
    kept_channels,
    parse_axes,
)
from tasks.domains.turbulence.text import TEXT_FORMATS, natural_sorted, read_text_fields, sniff_text

READ_FORMATS: tuple[str, ...] = ("hdf5", "netcdf4", "netcdf3", "npz", "npy", "zarr", *TEXT_FORMATS)

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
# HDF5 / netCDF bookkeeping attributes that carry references or internals, not metadata.
_INTERNAL_ATTRS = {
    "DIMENSION_LIST",
    "REFERENCE_LIST",
    "CLASS",
    "NAME",
    "_Netcdf4Dimid",
    "_Netcdf4Coordinates",
}
_SLAB_ELEMENTS = 1 << 24  # finiteness is checked slab by slab so a 1 GB field needs no 1 GB mask
_MAX_ATTRS_BYTES = 16 << 20  # the JSON attributes entry of an NPZ written by write_fields is a few kB


# ============================================================================ format and source


def detect_format(path: Path, fmt: str | None = "auto") -> str:
    """The format of a local file or folder: ``fmt`` when given, else by first bytes, else suffix.

    Args:
        path: Local file (or Zarr folder).
        fmt: One of :data:`READ_FORMATS`, or ``"auto"`` / None to detect.

    Raises:
        FieldError: ``fmt`` is unknown, or the format cannot be told (names the file and
            its first bytes).
    """
    path = Path(path)
    if fmt not in (None, "auto"):
        if fmt not in READ_FORMATS:
            raise FieldError(f"{path}: unknown format {fmt!r}; supported: {', '.join(READ_FORMATS)}")
        return fmt
    suffix = SUFFIXES.get(path.suffix.lower())
    if path.is_dir():
        if suffix == "zarr" or any((path / m).exists() for m in (".zgroup", ".zarray", "zarr.json")):
            return "zarr"
        raise FieldError(f"{path}: a folder that is not a Zarr store (no .zgroup, .zarray or zarr.json)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except FileNotFoundError:
        raise FieldError(f"{path}: no such file") from None
    if head.startswith(_HDF5_MAGIC):
        return "netcdf4" if suffix in ("netcdf", "netcdf3", "netcdf4") else "hdf5"
    if head[:3] == b"CDF":
        if head[3:4] in (b"\x01", b"\x02"):
            return "netcdf3"
        raise FieldError(
            f"{path}: NetCDF variant {head[3:4]!r} (CDF-5, 64-bit data) is not supported; "
            "convert it to NetCDF4 or classic NetCDF"
        )
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_ZIP_MAGIC):
        return "npz"
    if suffix in ("hdf5", "netcdf4", "npz", "npy"):
        return suffix  # e.g. an HDF5 file with a user block; the reader reports what is wrong
    text = sniff_text(path)
    if text is not None:
        return text
    raise FieldError(
        f"{path}: cannot tell the format (first bytes {head!r}, suffix {path.suffix!r}); "
        f"pass format= one of {', '.join(READ_FORMATS)}"
    )


def local_copy(url: str | Path, cache: Path | None, *, retries: int = 0, delay_s: float = 1.0) -> Path:
    """A local path for ``url``: local paths as they are, remote files (fsspec) copied into ``cache``.

    The copy is made by :func:`tasks.store.fetch_to_cache`: written under a temporary name
    then renamed, so an interrupted download never looks complete, and a Zarr store
    (``.zarr`` folder) is copied recursively. It is named by a hash of the URL, so two
    sources with one file name do not collide.

    Raises:
        FieldError: A remote URL and no ``cache`` folder.
        OSError: The download failed after ``retries`` retries (names the URL).
    """
    url = str(url)
    if not store.is_remote(url):
        return Path(url.removeprefix("file://"))
    if cache is None:
        raise FieldError(f"{url}: a remote source needs a cache folder (cache=...) to copy it into")
    name = Path(url.split("::")[-1].split("?")[0].rstrip("/")).name or "field"
    name = f"{hashlib.sha1(url.encode()).hexdigest()[:12]}-{name}"
    return store.fetch_to_cache(url, cache, name=name, retries=retries, delay_s=delay_s)


# ============================================================================ readers


def _plain(value: Any) -> Any:
    """An attribute value as plain Python (str, int, float, bool, lists), or None to drop it."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            items = [_plain(v) for v in value.ravel()]
            if any(v is None for v in items):
                return None  # object references (DIMENSION_LIST) and the like
            return items[0] if value.size == 1 else items
        if value.dtype.kind in "SU":
            items = [_plain(v) for v in value.ravel()]
            return items[0] if value.size == 1 else items
        return value.item() if value.size == 1 else value.tolist()
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return None


def _plain_attrs(attrs: Any) -> dict[str, Any]:
    out = {}
    for k, v in dict(attrs).items():
        if k in _INTERNAL_ATTRS:
            continue
        try:
            p = _plain(v)
        except Exception:  # an attribute h5py cannot decode must not stop the read
            continue
        if p is not None:
            out[str(k)] = p
    return out


class _Reader(abc.ABC):
    """The variables of one open file: names, shapes, arrays, attributes, dimension names."""

    format: str = ""

    @abc.abstractmethod
    def names(self) -> list[str]:
        """The variable names of the file."""

    @abc.abstractmethod
    def get(self, name: str) -> Any:
        """An array-like (``shape``, ``dtype``, ``[...]`` slicing); may be lazy."""

    def var_attrs(self, name: str) -> dict[str, Any]:
        return {}

    def file_attrs(self) -> dict[str, Any]:
        return {}

    def dims(self, name: str) -> list[str] | None:
        return None


class _H5Reader(_Reader):
    def __init__(self, f, fmt: str, source: str = ""):
        self.f, self.format, self.source = f, fmt, source or f.filename

    def names(self) -> list[str]:
        out: list[str] = []

        def visit(name: str, obj) -> None:
            if isinstance(obj, h5py.Dataset) and not _is_nc4_dim_only(obj):
                out.append(name)

        self.f.visititems(visit)
        return out

    def get(self, name: str):
        path = name.strip("/")
        node = self.f
        for part in path.split("/"):
            link = node.get(part, getlink=True) if isinstance(node, h5py.Group) else None
            if link is None:
                raise KeyError(name)
            if isinstance(link, h5py.ExternalLink):
                # h5py opens the other file silently; what is read must come from the file ingested
                raise FieldError(f"{self.source}: {name} is an HDF5 external link to {link.filename}:"
                                 f"{link.path}; refused (copy the data into the file)")
            node = node.get(part)
        obj = node
        if not isinstance(obj, h5py.Dataset) or _is_nc4_dim_only(obj):
            raise KeyError(name)
        if obj.file.filename != self.f.filename:  # a soft link through an external link elsewhere
            raise FieldError(f"{self.source}: {name} resolves into another file ({obj.file.filename}); refused "
                             "(copy the data into the file)")
        if obj.external or obj.is_virtual:
            what = "HDF5 external storage (raw data in other files)" if obj.external else "an HDF5 virtual dataset"
            raise FieldError(f"{self.source}: variable {name} is {what}; refused: only data inside the file "
                             "is read (copy the data into the file)")
        return obj

    def var_attrs(self, name: str) -> dict[str, Any]:
        return _plain_attrs(self.get(name).attrs)

    def file_attrs(self) -> dict[str, Any]:
        return _plain_attrs(self.f.attrs)

    def dims(self, name: str) -> list[str] | None:
        # netCDF4 names dimensions with HDF5 dimension scales; a plain HDF5 file may have none.
        ds = self.get(name)
        try:
            names = []
            for dim in ds.dims:
                scales = list(dim.values())
                if not scales:
                    return None
                names.append(scales[0].name.rsplit("/", 1)[-1])
            return names or None
        except Exception:  # dims on odd files (references to missing scales) are only nice to have
            return None


def _is_nc4_dim_only(ds) -> bool:
    name = ds.attrs.get("NAME")
    if isinstance(name, bytes | np.bytes_):
        name = name.decode("utf-8", errors="replace")
    return isinstance(name, str) and name.startswith(NC4_DIM_ONLY)


class _NC3Reader(_Reader):
    format = "netcdf3"

    def __init__(self, f):
        self.f = f

    def names(self) -> list[str]:
        return list(self.f.variables)

    def get(self, name: str):
        return self.f.variables[name].data

    def var_attrs(self, name: str) -> dict[str, Any]:
        return _plain_attrs(getattr(self.f.variables[name], "_attributes", {}))

    def file_attrs(self) -> dict[str, Any]:
        return _plain_attrs(getattr(self.f, "_attributes", {}))

    def dims(self, name: str) -> list[str] | None:
        return list(self.f.variables[name].dimensions)


class _MappingReader(_Reader):
    """NPZ and NPY: arrays by key, attributes from a JSON ``attrs`` entry (written by :func:`write_fields`)."""

    def __init__(self, arrays: Any, fmt: str, attrs: dict[str, Any] | None = None):
        self.arrays, self.format, self.attrs = arrays, fmt, attrs or {}

    def names(self) -> list[str]:
        return [k for k in self.arrays.keys() if not (self.format == "npz" and k == NPZ_ATTRS_KEY)]

    def get(self, name: str):
        if name not in self.names():
            raise KeyError(name)
        return self.arrays[name]

    def file_attrs(self) -> dict[str, Any]:
        return self.attrs


class _NpzMember:
    """One array of an NPZ archive: shape and dtype from its ``.npy`` header, the data read only when indexed.

    ``NpzFile[key]`` allocates whatever shape the header declares, so the shape is read first
    and checked against the size cap before anything is allocated.
    """

    def __init__(self, npz: Any, key: str, source: str):
        self.npz, self.key = npz, key
        try:
            member = f"{key}.npy" if f"{key}.npy" in npz.zip.namelist() else key
            with npz.zip.open(member) as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                self.shape, _, self.dtype = read(fh)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise FieldError(f"{source}: cannot read the header of {key!r} in the NPZ archive: {exc}") from None
        self.ndim = len(self.shape)

    def __getitem__(self, item: Any) -> np.ndarray:
        return self.npz[self.key][item]


class _ZarrReader(_Reader):
    format = "zarr"

    def __init__(self, root, single: str):
        self.root, self.single = root, single

    def _is_array(self) -> bool:
        return not hasattr(self.root, "groups")

    def names(self) -> list[str]:
        if self._is_array():
            return [self.single]
        out: list[str] = []

        def walk(group, prefix: str) -> None:
            for name, _ in group.arrays():
                out.append(prefix + name)
            for name, sub in group.groups():
                walk(sub, prefix + name + "/")

        walk(self.root, "")
        return out

    def get(self, name: str):
        if self._is_array():
            if name != self.single:
                raise KeyError(name)
            return self.root
        if name not in self.names():
            raise KeyError(name)
        return self.root[name]

    def var_attrs(self, name: str) -> dict[str, Any]:
        return _plain_attrs(self.get(name).attrs)

    def file_attrs(self) -> dict[str, Any]:
        return {} if self._is_array() else _plain_attrs(self.root.attrs)

    def dims(self, name: str) -> list[str] | None:
        arr = self.get(name)
        names = getattr(getattr(arr, "metadata", None), "dimension_names", None)  # Zarr v3
        names = names or arr.attrs.get("_ARRAY_DIMENSIONS")  # xarray's convention in Zarr v2
        return [str(n) for n in names] if names and all(n is not None for n in names) else None


@contextmanager
def _open(path: Path, fmt: str, source: str, layout: FieldLayout, max_bytes: int | None = None) -> Iterator[_Reader]:
    """Open ``path`` as ``fmt``; library errors become a FieldError naming the file."""
    if fmt in ("hdf5", "netcdf4"):
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise FieldError(f"{source}: cannot open as {fmt} (HDF5): {exc}") from exc
        with f:
            yield _H5Reader(f, fmt, source)
    elif fmt == "netcdf3":
        from scipy.io import netcdf_file  # lazy: scipy.io takes most of a second, only NetCDF3 needs it

        # Classic NetCDF is uncompressed and read whole when opened: the file's size is what it allocates.
        store.check_array_bytes(path.stat().st_size, display=source, max_bytes=max_bytes,
                                key="ingest.turbulence.max_array_bytes", error=FieldError)
        try:
            # A first look through a memory map: a header declaring more data than the file holds fails
            # here (no allocation) instead of in a read of the declared size.
            netcdf_file(path, "r", mmap=True).close()
        except (OSError, TypeError, ValueError) as exc:
            raise FieldError(f"{source}: cannot open as classic NetCDF: {exc}") from exc
        try:
            # mmap=False: the arrays outlive the file object, and nothing keeps the file open.
            f = netcdf_file(path, "r", mmap=False)
        except (OSError, TypeError, ValueError) as exc:
            raise FieldError(f"{source}: cannot open as classic NetCDF: {exc}") from exc
        try:
            yield _NC3Reader(f)
        finally:
            f.close()
    elif fmt == "npz":
        try:
            npz = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise FieldError(f"{source}: cannot open as NPZ: {exc}") from exc
        if not hasattr(npz, "files"):
            raise FieldError(f"{source}: not an NPZ archive (it holds a single array: use format='npy')")
        with npz:
            members = {k: _NpzMember(npz, k, source) for k in npz.files}
            yield _MappingReader(members, "npz", _npz_attrs(npz, members, source))
    elif fmt == "npy":
        if len(layout.variables) != 1:
            raise FieldError(
                f"{source}: an .npy file holds a single array, so variables must have one entry, "
                f"got {layout.variables}"
            )
        try:
            # mmap: only the kept channels are copied out of a large file.
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise FieldError(f"{source}: cannot open as NPY: {exc}") from exc
        if not isinstance(arr, np.ndarray):
            raise FieldError(f"{source}: not an .npy array (an archive? use format='npz')")
        yield _MappingReader({layout.variables[0]: arr}, "npy")
    elif fmt == "zarr":
        try:
            import zarr  # lazy: an optional dependency, and slow to import
        except ImportError as exc:
            raise FieldError(f"{source}: reading Zarr needs the zarr package (pip install zarr)") from exc
        try:
            root = zarr.open(str(path), mode="r")
        except Exception as exc:  # zarr raises several types for a store it cannot read
            raise FieldError(f"{source}: cannot open as Zarr: {exc}") from exc
        yield _ZarrReader(root, layout.variables[0])
    else:  # detect_format checked fmt
        raise FieldError(f"{source}: unknown format {fmt!r}")


def _npz_attrs(npz, members: dict[str, _NpzMember], source: str) -> dict[str, Any]:
    if NPZ_ATTRS_KEY not in npz.files:
        return {}
    head = members[NPZ_ATTRS_KEY]
    if int(np.prod(head.shape, dtype=np.int64)) * head.dtype.itemsize > _MAX_ATTRS_BYTES:
        raise FieldError(f"{source}: the NPZ entry {NPZ_ATTRS_KEY!r} declares {head.shape} {head.dtype}, more "
                         f"than {_MAX_ATTRS_BYTES} bytes of attributes; refused")
    raw = npz[NPZ_ATTRS_KEY]
    if raw.ndim == 0 and raw.dtype.kind == "U":
        with suppress(ValueError):
            attrs = json.loads(str(raw))
            if isinstance(attrs, dict):
                return attrs
    return {}


# ============================================================================ field checks


def _first_bad(arr: np.ndarray, fill: Any = None, max_abs: float | None = None) -> tuple[int, ...] | None:
    """Index of the first non-finite entry (or entry equal to ``fill``, or beyond ``max_abs``) in C order."""
    if arr.ndim == 0:
        arr = arr.reshape(1)
    per_row = max(1, int(np.prod(arr.shape[1:], dtype=np.int64)))
    step = max(1, _SLAB_ELEMENTS // per_row)
    for i0 in range(0, arr.shape[0], step):
        slab = np.asarray(arr[i0 : i0 + step])
        if fill is not None:
            bad = slab == fill
        elif max_abs is not None:
            bad = np.abs(slab) > max_abs
        else:
            bad = ~np.isfinite(slab)
        if bad.any():
            idx = np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape)
            return (int(idx[0]) + i0, *(int(i) for i in idx[1:]))
    return None


def _fmt_index(var: str, idx: tuple[int, ...]) -> str:
    return f"{var}[{', '.join(str(i) for i in idx)}]"


def _load_var(
    reader: _Reader, var: str, names: list[str], comp_axis: int | None, chans: list[int], source: str,
    max_abs: float | None = DEFAULT_MAX_ABS_VALUE,
) -> np.ndarray:
    """Read ``var`` (kept channels only), unpack CF scale/offset, check it, return float32 in stored order."""
    arr = reader.get(var)
    kind = np.dtype(arr.dtype).kind
    if kind not in "fiu":
        raise FieldError(
            f"{source}: variable {var} has dtype {arr.dtype}; a velocity field must be real numbers"
        )
    attrs = reader.var_attrs(var) if reader.format in ("netcdf3", "netcdf4", "zarr") else {}
    scale, offset = attrs.get("scale_factor"), attrs.get("add_offset")
    packed = isinstance(scale, int | float) or isinstance(offset, int | float)
    if kind in "iu" and not packed:
        # Integers are packed values (CF: times scale_factor plus add_offset); read raw they would
        # be velocities in units of the packing step, silently off by that factor.
        raise FieldError(
            f"{source}: variable {var} stores integers ({arr.dtype}) without a scale_factor/add_offset "
            f"attribute{' (read for NetCDF and Zarr only)' if reader.format not in ('netcdf3', 'netcdf4', 'zarr') else ''}; "
            "packed data need them to give velocities: add them, or store the field as floats"
        )
    try:
        data = np.asarray(arr[...]) if not isinstance(arr, np.ndarray) else arr
    except (OSError, RuntimeError, ValueError, KeyError) as exc:  # a damaged chunk, a truncated file
        raise FieldError(f"{source}: cannot read variable {var}: {type(exc).__name__}: {exc}") from None
    if comp_axis is not None and chans != list(range(data.shape[comp_axis])):
        data = np.take(data, chans, axis=comp_axis)

    def stored_index(idx: tuple[int, ...]) -> tuple[int, ...]:
        if comp_axis is None:
            return idx
        return (*idx[:comp_axis], chans[idx[comp_axis]], *idx[comp_axis + 1 :])

    for key in ("_FillValue", "missing_value"):
        fill = attrs.get(key)
        if isinstance(fill, int | float) and not isinstance(fill, bool) and math.isfinite(fill):
            bad = _first_bad(data, fill=np.asarray(fill, dtype=data.dtype))
            if bad is not None:
                raise FieldError(
                    f"{source}: {_fmt_index(var, stored_index(bad))} = {fill} (the {key}: missing data); "
                    "a velocity field must be complete"
                )
    if packed:
        # CF packing: stored integers (or floats) times scale plus offset, in float64 before the cast.
        data = data.astype(np.float64) * float(scale if scale is not None else 1.0) + float(offset or 0.0)
    data = data.astype(np.float32, copy=False)  # also makes big-endian NetCDF3 data native
    if isinstance(data, np.memmap) or not data.flags.writeable:
        data = np.array(data)  # own the memory: no view of a mapped or read-only file buffer
    bad = _first_bad(data)
    if bad is not None:
        value = float(data[bad])
        raise FieldError(
            f"{source}: {_fmt_index(var, stored_index(bad))} = {value} (first non-finite value, "
            f"index in the stored axis order {','.join(names)})"
        )
    bad = _first_bad(data, max_abs=max_abs) if max_abs is not None else None
    if bad is not None:
        # 1e38, 9.96921e36 and the like are fill values of some writer, not velocities
        raise FieldError(
            f"{source}: {_fmt_index(var, stored_index(bad))} = {float(data[bad]):g}, beyond the largest magnitude "
            f"accepted, ingest.turbulence.max_abs_value = {max_abs:g} (a fill value? index in the stored axis "
            f"order {','.join(names)}); raise the cap if the field is genuine"
        )
    return data

# ============================================================================ coordinates and time


def _coord_var(reader: _Reader, name: str, n: int, what: str, source: str) -> np.ndarray:
    try:
        arr = reader.get(name)
    except KeyError:
        raise FieldError(
            f"{source}: coordinate variable {name!r} for {what} not found; variables present: "
            f"{', '.join(reader.names())}"
        ) from None
    shape = tuple(int(s) for s in arr.shape)
    if shape != (n,):  # checked before the read, so a huge declared coordinate is never allocated
        raise FieldError(f"{source}: coordinate variable {name!r} has shape {shape}; {what} needs ({n},)")
    try:
        c = np.asarray(arr[...], dtype=np.float64)
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise FieldError(f"{source}: cannot read coordinate variable {name!r}: {type(exc).__name__}: {exc}") from None
    if not np.isfinite(c).all():
        raise FieldError(f"{source}: coordinate variable {name!r} holds non-finite values")
    d = np.diff(c)
    if n > 1 and not ((d > 0).all() or (d < 0).all()):
        raise FieldError(f"{source}: coordinate variable {name!r} for {what} is not strictly monotonic")
    return c


def _is_uniform(c: np.ndarray) -> bool:
    d = np.diff(c)
    return len(d) > 0 and bool(np.allclose(d, d[0], rtol=1e-5, atol=1e-12 * max(1.0, float(np.abs(c).max()))))


def _axis_coords(
    axis: str, n: int, spec: Any, reader: _Reader, source: str, warnings: list[str]
) -> tuple[np.ndarray, float, str]:
    """Coordinates, domain length and where they came from, for one spatial axis of ``n`` points."""
    if isinstance(spec, str):
        c = _coord_var(reader, spec, n, f"axis {axis}", source)
        return c, _length_of(c), f"variable {spec}"
    if spec is not None:
        values = [spec] if isinstance(spec, int | float) and not isinstance(spec, bool) else spec
        try:
            values = [float(v) for v in values]
        except (TypeError, ValueError):
            values = []
        if len(values) == 1 and values[0] > 0:
            start, stop = 0.0, values[0]
        elif len(values) == 2 and values[1] > values[0]:
            start, stop = values
        else:
            raise FieldError(
                f"{source}: coords[{axis!r}] = {spec!r}: give a variable name, a positive length L, [L] "
                "or [start, stop] with stop > start"
            )
        return start + np.arange(n) * ((stop - start) / n), stop - start, f"given {[start, stop]}"
    if axis in reader.names() and np.shape(reader.get(axis)) == (n,):
        c = _coord_var(reader, axis, n, f"axis {axis}", source)
        return c, _length_of(c), f"variable {axis} (found)"
    warnings.append(f"{axis}: no coordinates given or found; assumed a periodic grid on [0, 2*pi)")
    return np.arange(n) * (TWO_PI / n), TWO_PI, "default [0, 2*pi)"


def _length_of(c: np.ndarray) -> float:
    # A uniform grid is taken as periodic cell vertices (n * dx, as the synthetic source and
    # spectral solvers store it); a stretched one (a wall-normal channel grid) spans its ends.
    if len(c) == 1:
        return 0.0
    if _is_uniform(c):
        return float(abs(c[1] - c[0]) * len(c))
    return float(abs(c[-1] - c[0]))


def _time(
    layout: FieldLayout, reader: _Reader, n_time: int, source: str
) -> tuple[np.ndarray | None, float | None, str]:
    """Snapshot times (or None), spacing (or None) and where the spacing came from."""
    t, name = None, layout.time
    if name is None and layout.dt is None:
        name = next(
            (n for n in ("t", "time") if n in reader.names() and np.shape(reader.get(n)) == (n_time,)), None
        )
    if name is not None:
        t = _coord_var(reader, name, n_time, "the time axis", source)
    dt_t = None
    if t is not None and len(t) > 1:
        if not _is_uniform(t) or t[1] <= t[0]:
            d = np.diff(t)
            raise FieldError(
                f"{source}: time coordinate {name!r} is not uniformly increasing "
                f"(spacings {d.min():g}..{d.max():g}); give dt for the snapshot spacing"
            )
        dt_t = float((t[-1] - t[0]) / (len(t) - 1))
    if layout.dt is not None:
        dt = float(layout.dt)
        if not dt > 0 or not math.isfinite(dt):
            raise FieldError(f"{source}: dt {layout.dt!r} must be a positive number")
        if dt_t is not None and not math.isclose(dt, dt_t, rel_tol=1e-5):
            raise FieldError(
                f"{source}: dt {dt:g} disagrees with the spacing {dt_t:g} of the time coordinate {name!r}"
            )
        return t, dt, "given"
    if dt_t is not None:
        return t, dt_t, f"variable {name}"
    attr = reader.file_attrs().get("dt")
    if isinstance(attr, int | float) and not isinstance(attr, bool) and attr > 0 and math.isfinite(attr):
        return t, float(attr), "file attribute dt"
    return t, None, "unknown"


def _stride(dt_model: float | None, dt: float | None, source: str) -> int:
    if dt_model is None:
        return 1
    if dt is None:
        raise FieldError(
            f"{source}: dt_model {dt_model:g} needs the snapshot spacing, which is unknown "
            "(give dt or a time coordinate)"
        )
    ratio = dt_model / dt
    stride = round(ratio)
    if stride < 1 or abs(ratio - stride) > 1e-6 * max(1.0, ratio):
        raise FieldError(
            f"dt_model {dt_model:g} is not a multiple of the snapshot spacing {dt:g} (file {source})"
        )
    return int(stride)


def _stored_shape(reader: _Reader, layout: FieldLayout, source: str) -> tuple[tuple[int, ...], list[str]]:
    """The common shape of the layout's variables and their stored axis names, checked."""
    shapes: dict[str, tuple[int, ...]] = {}
    for var in layout.variables:
        try:
            shapes[var] = tuple(int(s) for s in reader.get(var).shape)
        except KeyError:
            present = ", ".join(reader.names()) or "(none)"
            raise FieldError(f"{source}: variable {var!r} not found; variables present: {present}") from None
    first = layout.variables[0]
    stored = parse_axes(layout, shapes[first], first, source, reader.dims(first))
    for var in layout.variables[1:]:
        if shapes[var] != shapes[first]:
            raise FieldError(
                f"{source}: per-component variables differ in shape: {first} {shapes[first]} vs {var} {shapes[var]}"
            )
    if any(s == 0 for s in shapes[first]):
        raise FieldError(f"{source}: variable {first} has shape {shapes[first]}, with an empty axis")
    return shapes[first], stored


def _space_coords(
    layout: FieldLayout,
    reader: _Reader,
    sizes: dict[str, int],
    space: list[str],
    squeezed: list[str],
    source: str,
) -> tuple[dict[str, np.ndarray], list[float], dict[str, str], list[str]]:
    """Coordinates, lengths, their origins and warnings for the spatial axes kept."""
    spec = dict(layout.coords or {})
    bad = [k for k in spec if k not in space and k not in squeezed]
    if bad:
        raise FieldError(
            f"{source}: coords names axes {bad} that are not spatial axes of axes {layout.axes!r}"
        )
    coords: dict[str, np.ndarray] = {}
    lengths: list[float] = []
    origins: dict[str, str] = {}
    warnings: list[str] = []
    for axis in space:
        coords[axis], length, origins[axis] = _axis_coords(
            axis, sizes[axis], spec.get(axis), reader, source, warnings
        )
        lengths.append(length)
    return coords, lengths, origins, warnings


# ============================================================================ read


def read_fields(
    source: str | Path,
    layout: FieldLayout,
    *,
    cache: Path | None = None,
    format: str = "auto",
    retries: int = 0,
    delay_s: float = 1.0,
    max_array_bytes: int | None = DEFAULT_MAX_ARRAY_BYTES,
    max_abs_value: float | None = DEFAULT_MAX_ABS_VALUE,
    display: str | None = None,
) -> Fields:
    """Read a velocity field file into the canonical layout.

    Args:
        source: Local path or fsspec URL of the file (a folder for Zarr).
        layout: How the file stores the field (:class:`FieldLayout`).
        cache: Folder for copies of remote sources; nothing else is written.
        format: One of :data:`READ_FORMATS`, or ``"auto"`` (first bytes, then suffix).
        retries: Retries of a failed download (exponential backoff from ``delay_s``).
        delay_s: First wait between download tries, in seconds.
        max_array_bytes: The variables to read may declare at most this many bytes (shape x item
            size), checked before anything is read, as is the memory available (None: only that).
        max_abs_value: Largest magnitude accepted in the field (None: no check).
        display: The name every message gives the source (default ``source``): ingest reads a copy
            and names the user's file.

    Returns:
        :class:`Fields` with float32 data ``(trajectory, time, *space, component)``;
        ``attrs["periodic"]`` says whether the grid is periodic (:func:`~tasks.domains.turbulence.layout.is_periodic`).

    Raises:
        FieldError: Unreadable file, missing variable, axis spec that does not fit the
            array, mismatched per-component shapes, channels out of range, non-finite or
            missing values, bad coordinates, or ``dt_model`` not a multiple of the
            snapshot spacing, integers without a CF scale factor, a magnitude beyond
            ``max_abs_value``, a field larger than ``max_array_bytes`` or the memory
            available, data outside the file (HDF5 external links, external storage,
            virtual datasets). The message names the file and what is wrong.
    """
    name = display or str(source)
    if format in TEXT_FORMATS or (format in (None, "auto") and _is_text_source(str(source))):
        return _read_text_source(str(source), name, layout, format, cache=cache, retries=retries, delay_s=delay_s,
                                 max_array_bytes=max_array_bytes, max_abs_value=max_abs_value)
    path = local_copy(source, cache, retries=retries, delay_s=delay_s)
    try:
        fmt = detect_format(path, format)
    except FieldError as exc:
        raise FieldError(str(exc).replace(str(path), name)) from None
    if not layout.variables:
        raise FieldError(f"{name}: layout.variables is empty; name the variable(s) that hold the field")
    with _open(path, fmt, name, layout, max_array_bytes) as reader:
        # Everything that can be checked from shapes and small variables is checked before
        # the (possibly large) field is read.
        shape, stored = _stored_shape(reader, layout, name)
        first = layout.variables[0]
        itemsize = max(np.dtype(reader.get(v).dtype).itemsize for v in layout.variables)
        store.check_array_bytes(
            len(layout.variables) * math.prod(shape) * itemsize,
            display=f"{name}: {', '.join(layout.variables)} of shape {shape}", max_bytes=max_array_bytes,
            key="ingest.turbulence.max_array_bytes", error=FieldError)
        if len(layout.variables) > 1:
            comp_axis, n_stored = None, len(layout.variables)
            chans = kept_channels(layout, n_stored, name, f"variables {layout.variables}")
            kept_vars = [layout.variables[c] for c in chans]
            default_names = [v.rsplit("/", 1)[-1] for v in layout.variables]
        else:
            comp_axis = stored.index("component") if "component" in stored else None
            n_stored = shape[comp_axis] if comp_axis is not None else 1
            chans = kept_channels(layout, n_stored, name, f"{first} {shape} (axes {layout.axes!r})")
            kept_vars = [first]
            default_names = [("u", "v", "w")[i] if i < 3 else f"c{i}" for i in range(n_stored)]
        components = component_names(layout, chans, n_stored, default_names, name)
        sizes = dict(zip(stored, shape, strict=True))
        squeezed = [a for a in SPATIAL if sizes.get(a) == 1]
        space = [a for a in SPATIAL if sizes.get(a, 1) > 1]
        if not space:
            raise FieldError(
                f"{name}: {first} {shape} has no spatial axis longer than 1 (axes {layout.axes!r})"
            )
        coords, lengths, coord_sources, warnings = _space_coords(layout, reader, sizes, space, squeezed, name)
        t, dt, dt_source = _time(layout, reader, sizes.get("time", 1), name)
        if t is not None:
            coords["time"] = t
        stride = _stride(None if layout.dt_model is None else float(layout.dt_model), dt, name)

        if len(layout.variables) > 1:
            data = np.stack([_load_var(reader, v, stored, None, [], name, max_abs_value) for v in kept_vars],
                            axis=-1)
        else:
            data = _load_var(reader, first, stored, comp_axis, chans, name, max_abs_value)
            if comp_axis is None:
                data = data[..., None]  # a single scalar variable: one component
        data = canonical(data, stored if "component" in stored else [*stored, "component"], squeezed)
        attrs = {
            "format": fmt,
            "variables": kept_vars,
            "stored_axes": stored,
            "stored_shape": list(shape),
            "channels": chans,
            "dims": {v: reader.dims(v) for v in kept_vars},
            "squeezed": squeezed,
            "coord_sources": coord_sources,
            "dt_source": dt_source,
            "warnings": warnings,
            "file_attrs": reader.file_attrs(),
        }
        attrs["periodic"], attrs["periodic_source"] = is_periodic(layout, fmt, name)
    return Fields(
        data=data,
        coords=coords,
        lengths=lengths,
        dt=dt,
        stride=stride,
        components=components,
        source=name,
        attrs=attrs,
    )


# ============================================================================ text sources


_GLOB = "*?["


def _is_text_source(source: str) -> bool:
    """A glob, a folder that is not a Zarr store, or a text file: read by :mod:`tasks.domains.turbulence.text`."""
    if any(ch in store._pattern_part(source) for ch in _GLOB):
        return True
    if store.is_remote(source):
        return Path(source.split("?")[0]).suffix.lower() in (".csv", ".tsv", ".txt", ".dat", ".tec", ".tp")
    path = Path(source.removeprefix("file://"))
    if path.is_dir():
        return SUFFIXES.get(path.suffix.lower()) != "zarr" and not any(
            (path / m).exists() for m in (".zgroup", ".zarray", "zarr.json"))
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith((_HDF5_MAGIC, _NPY_MAGIC, _ZIP_MAGIC, b"CDF")):
        return False
    return sniff_text(path) is not None


def glob_root(pattern: str) -> str:
    """The part of a glob before its first component with a wildcard (``data/in/run*/f*.txt`` -> ``data/in``)."""
    parts = pattern.rstrip("/").split("/")
    fixed = []
    for part in parts:
        if any(ch in part for ch in _GLOB):
            break
        fixed.append(part)
    return "/".join(fixed) or "."


def text_files(source: str) -> tuple[str, list[str]]:
    """``(root, files)`` of a text source: a glob (its fixed prefix and the matches), a folder (it, and every
    file below it but hidden ones) or one file (its folder, and it), in natural order.

    Raises:
        FieldError: Nothing matches, or the folder holds no file.
    """
    if any(ch in store._pattern_part(source) for ch in _GLOB):
        try:
            files = store.expand_urls(source)
        except FileNotFoundError as exc:
            raise FieldError(str(exc)) from None
        root = glob_root(source)
        if store.is_remote(source):
            return root, natural_sorted(files)
        base = Path(root).resolve()
        return root, natural_sorted([str(Path(root) / Path(f).resolve().relative_to(base)) for f in files])
    path = Path(source.removeprefix("file://"))
    if not store.is_remote(source) and path.is_dir():
        files = [str(f) for f in path.rglob("*") if f.is_file()
                 and not any(part.startswith(".") for part in f.relative_to(path).parts)]
        if not files:
            raise FieldError(f"{source}: a folder with no file")
        return source.rstrip("/"), natural_sorted(files)
    return str(Path(source).parent), [source]


def _read_text_source(source: str, name: str, layout: FieldLayout, fmt: str, *, cache: Path | None, retries: int,
                      delay_s: float, max_array_bytes: int | None, max_abs_value: float | None) -> Fields:
    """A text table or Tecplot source (a file, a glob or a folder) as :class:`Fields`; messages name ``name``."""
    root, urls = text_files(source)
    shown_root = glob_root(name) if name != source else root

    def shown(url: str) -> str:
        if len(urls) == 1 and url == source:
            return name
        rel = url[len(root):].lstrip("/") if url.startswith(root) else Path(url).name
        return f"{shown_root.rstrip('/')}/{rel}" if shown_root not in ("", ".") else rel

    files = []
    for url in urls:
        path = local_copy(url, cache, retries=retries, delay_s=delay_s)
        if not path.is_file():
            raise FieldError(f"{shown(url)}: no such file")
        files.append((path, shown(url)))
    store.check_array_bytes(sum(p.stat().st_size for p, _ in files) * 2, display=f"{name} (text, read whole)",
                            max_bytes=max_array_bytes, key="ingest.turbulence.max_array_bytes", error=FieldError)
    kinds = {}
    for path, label in files:
        kinds[label] = fmt if fmt in TEXT_FORMATS else sniff_text(path)
        if kinds[label] is None:
            raise FieldError(f"{label}: not a text table or Tecplot ASCII file (give format: table or tecplot, "
                             f"or one of {', '.join(READ_FORMATS[:6])} for a single array file)")
    found = sorted(set(kinds.values()))
    if len(found) > 1:
        first = {k: next(label for label, v in kinds.items() if v == k) for k in found}
        raise FieldError(f"{name}: the files mix formats: {', '.join(f'{k} ({v})' for k, v in first.items())}")
    kind = found[0]
    data, coords, components, dt, attrs = read_text_fields(files, layout, kind, max_abs_value)
    space = [a for a in SPATIAL if a in coords]
    lengths = [float(coords[a][1] - coords[a][0]) * len(coords[a]) for a in space]  # n * dx: the FFT's period
    stride = _stride(None if layout.dt_model is None else float(layout.dt_model), dt, name)
    periodic, why = is_periodic(layout, kind, name)
    attrs |= {"format": kind, "stored_axes": ["points"], "stored_shape": list(data.shape), "warnings": [],
              "file_attrs": {}, "periodic": periodic, "periodic_source": why}
    return Fields(data=data, coords=coords, lengths=lengths, dt=dt, stride=stride, components=components,
                  source=name, attrs=attrs)
