"""Text field formats of the ``turbulence`` domain: whitespace/CSV tables and Tecplot ASCII, common outputs of PIV
and of simulation post-processing.

Both hold *points*: one row per grid point with its coordinates and velocity components.
:func:`read_text_fields` turns files of points into the canonical
:class:`~tasks.domains.turbulence.layout.Fields`:

* **Text table** (``format: table``; ``.csv``, ``.tsv``, ``.txt``, ``.dat`` that is not Tecplot): a header line of
  column names (``x y u v``, or ``x,y,u,v``; a leading ``#`` is dropped), then one row per grid point in any
  order. The delimiter is ``spec.delimiter``, else a comma when the header has one, else whitespace. One file is
  one snapshot, unless ``spec.time`` names a column: then each distinct value of that column is one snapshot
  (a file may hold one or several), ordered by it, and ``dt`` is its spacing.
* **Tecplot ASCII** (``format: tecplot``; ``.dat``, ``.tec``, ``.tp`` starting with ``TITLE=``, ``VARIABLES=`` or
  ``ZONE``): ``VARIABLES = "X" "Y" "U" "V"`` then ordered zones ``ZONE I=.., J=.., (K=..),
  DATAPACKING=POINT|BLOCK`` (also the older ``F=POINT`` / ``F=BLOCK``). Each zone is one snapshot, in file order;
  when every zone has a ``SOLUTIONTIME`` they give ``dt``.

Snapshots and trajectories: the files of one folder are one trajectory, in natural order of their names
(``frame_2`` before ``frame_10``), their snapshots (zones, or time values) one after another; files in different
folders are different trajectories (``run1/``, ``run2/``, ...), which must hold the same number of snapshots.

The grid: the coordinate columns (``spec.coords``: axis -> column name, default the columns named ``x``, ``y``,
``z``) must take a few distinct values each that, crossed, give every row exactly once, evenly spaced within
``spec.grid_rtol`` of the mean spacing; the velocity columns are ``spec.variables`` (one column per component).
An axis with a single value (a ``z`` column of a plane) is dropped. The domain length of an axis is ``n * dx``,
the period the FFT assumes; such grids are not periodic unless ``spec.periodic: true``, so the spectra are
windowed (:mod:`tasks.domains.turbulence.physics`).

Every error is a :class:`~tasks.domains.turbulence.layout.FieldError` naming the file as the user gave it
(``display``), and where it is a grid or zone problem, the zone and what is wrong.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.domains.turbulence.layout import SPATIAL, FieldError, FieldLayout, component_names, kept_channels

TEXT_FORMATS: tuple[str, ...] = ("table", "tecplot")
"""Formats read here; both hold points (not a stored array) and default to not periodic."""

TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".dat", ".tec", ".tp", ".xyz")
"""Suffixes (lower case) that mark a text field file; Tecplot is told from a table by its keywords."""

_TECPLOT_START = re.compile(r"^\s*(TITLE|VARIABLES|ZONE|FILETYPE)\b\s*=?", re.IGNORECASE)
_ZONE_ITEM = re.compile(r'([A-Za-z]+)\s*=\s*("[^"]*"|\([^)]*\)|[^,\s]+)')
_IGNORED = ("DATASETAUXDATA", "AUXDATA", "TEXT", "GEOMETRY", "CUSTOMLABELS")


def _natural_key(name: str) -> list:
    # frame_2 before frame_10: digit runs compare as numbers
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def natural_sorted(paths: Sequence[str]) -> list[str]:
    """``paths`` ordered by folder, then natural order of the file name (digit runs as numbers)."""
    return sorted(paths, key=lambda p: [_natural_key(part) for part in str(p).replace("\\", "/").split("/")])


def sniff_text(path: Path) -> str | None:
    """``"tecplot"`` or ``"table"`` for a text field file (by its first keyword, then its suffix), else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    if b"\x00" in head:
        return None  # binary
    text = head.decode("utf-8", errors="replace")
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if _TECPLOT_START.match(line):
            return "tecplot"
        break
    return "table" if path.suffix.lower() in TEXT_SUFFIXES else None


# ============================================================================ snapshots of points


@dataclass
class Snapshot:
    """One snapshot's points: column name -> values, and where they came from (for messages)."""

    columns: dict[str, np.ndarray]
    where: str
    time: float | None = None


def _read_text(path: Path, display: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FieldError(f"{display}: not a UTF-8 text file (byte {exc.start}): a text table or Tecplot ASCII file "
                         "was expected") from None


def _floats(tokens: list[str], display: str, where: str) -> np.ndarray:
    try:
        return np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise FieldError(f"{display}: {where}: {bad!r} is not a number") from None


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_table(path: Path, display: str, layout: FieldLayout) -> list[Snapshot]:
    """The snapshots of one text table (one, or one per value of the ``layout.time`` column)."""
    text = _read_text(path, display)
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if start is None:
        raise FieldError(f"{display}: empty file; a header line of column names (such as 'x y u v') was expected")
    header = lines[start].strip().lstrip("#").strip()
    delim = layout.delimiter if layout.delimiter is not None else ("," if "," in header else None)
    names = [n.strip().strip('"').strip("'") for n in (header.split(delim) if delim else header.split())]
    if any(_is_float(n) for n in names if n):
        raise FieldError(f"{display}: the first line {header[:80]!r} holds numbers; a header line of column names "
                         "(such as 'x y u v') was expected")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup or "" in names:
        raise FieldError(f"{display}: the header names {'the column(s) ' + str(dup) + ' more than once' if dup else 'an empty column'}")
    body = "\n".join(lines[start + 1:])
    try:
        rows = np.loadtxt(io.StringIO(body), delimiter=delim, comments="#", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        # numpy counts rows from the line after the header
        raise FieldError(f"{display}: {exc} (rows counted from the line after the header)") from None
    if rows.size == 0:
        raise FieldError(f"{display}: a header and no rows")
    if rows.shape[1] != len(names):
        raise FieldError(f"{display}: {rows.shape[1]} values per row but the header names {len(names)} columns "
                         f"({', '.join(names)})")
    columns = {n: rows[:, i] for i, n in enumerate(names)}
    if layout.time is None:
        return [Snapshot(columns, "")]
    if layout.time not in columns:
        raise FieldError(f"{display}: time column {layout.time!r} not found; columns present: {', '.join(names)}")
    t = columns[layout.time]
    out = []
    for value in np.unique(t):
        sel = t == value
        out.append(Snapshot({n: c[sel] for n, c in columns.items()}, f"{layout.time} = {value:g}", float(value)))
    return out


def _zone_header(text: str) -> dict[str, str]:
    return {k.upper(): v.strip('"') for k, v in _ZONE_ITEM.findall(text)}


def read_tecplot(path: Path, display: str) -> list[Snapshot]:
    """The zones of one Tecplot ASCII file, one snapshot each."""
    lines = _read_text(path, display).splitlines()
    variables: list[str] | None = None
    zones: list[dict[str, Any]] = []
    in_vars = False
    for no, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        first = line[0]
        if first.isdigit() or first in "+-.":
            if not zones:
                raise FieldError(f"{display}: line {no}: numbers before the first ZONE record")
            zones[-1]["tokens"].extend(line.replace(",", " ").replace("D", "E").replace("d", "e").split())
            zones[-1]["data"] = True
            in_vars = False
            continue
        word = re.match(r"[A-Za-z]+", line)
        key = word.group(0).upper() if word else ""
        if key == "VARIABLES" or (in_vars and first == '"'):
            body = line.split("=", 1)[1] if key == "VARIABLES" else line
            quoted = re.findall(r'"([^"]*)"', body)
            names = quoted if quoted else [n for n in re.split(r"[,\s]+", body.strip()) if n]
            variables = (variables or []) + names if key != "VARIABLES" else names
            in_vars = True
        elif key == "ZONE":
            zones.append({"header": line[4:], "tokens": [], "data": False, "line": no})
            in_vars = False
        elif key in ("TITLE", "FILETYPE") or key in _IGNORED:
            in_vars = False
        elif zones and not zones[-1]["data"] and "=" in line:
            zones[-1]["header"] += " " + line  # a ZONE record continued on the next line
        else:
            raise FieldError(f"{display}: line {no}: unexpected text {line[:60]!r} (not a Tecplot ASCII record or "
                             "number)")
    if not variables:
        raise FieldError(f"{display}: no VARIABLES record; a Tecplot ASCII file names its variables "
                         "(VARIABLES = \"X\" \"Y\" \"U\" \"V\")")
    if not zones:
        raise FieldError(f"{display}: no ZONE record")
    out = []
    nvar = len(variables)
    for i, zone in enumerate(zones, start=1):
        h = _zone_header(zone["header"])
        title = h.get("T")
        where = f"zone {i}" + (f" ({title!r})" if title else "") + f", line {zone['line']}"
        if "N" in h or "E" in h or h.get("ZONETYPE", "ORDERED").upper() != "ORDERED":
            raise FieldError(f"{display}: {where}: a finite-element zone (ZONETYPE/N=/E=); only ordered zones "
                             "(I=, J=, K=) hold a grid")
        if "CELLCENTERED" in h.get("VARLOCATION", "").upper():
            raise FieldError(f"{display}: {where}: VARLOCATION with CELLCENTERED variables is not supported "
                             "(write every variable at the nodes)")
        try:
            dims = [int(h.get(k, "1")) for k in ("I", "J", "K")]
        except ValueError:
            raise FieldError(f"{display}: {where}: I, J, K must be whole numbers, got "
                             f"I={h.get('I')}, J={h.get('J')}, K={h.get('K')}") from None
        if "I" not in h or min(dims) < 1:
            raise FieldError(f"{display}: {where}: an ordered zone needs I= (and J=, K=) of at least 1")
        packing = h.get("DATAPACKING", h.get("F", "POINT")).upper()
        if packing not in ("POINT", "BLOCK"):
            raise FieldError(f"{display}: {where}: DATAPACKING={packing}; POINT or BLOCK (F=POINT / F=BLOCK) expected")
        n_points = math.prod(dims)
        size = f"I={dims[0]}, J={dims[1]}, K={dims[2]}"
        if len(zone["tokens"]) != n_points * nvar:
            raise FieldError(
                f"{display}: {where}: zone size {size} with {nvar} variables needs {n_points * nvar} values "
                f"(DATAPACKING={packing}), the zone holds {len(zone['tokens'])}")
        values = _floats(zone["tokens"], display, where)
        table = values.reshape(n_points, nvar) if packing == "POINT" else values.reshape(nvar, n_points).T
        time = h.get("SOLUTIONTIME")
        try:
            t = float(time) if time is not None else None
        except ValueError:
            raise FieldError(f"{display}: {where}: SOLUTIONTIME={time!r} is not a number") from None
        out.append(Snapshot({v: table[:, j] for j, v in enumerate(variables)}, where, t))
    return out


# ============================================================================ the grid


def _fmt_point(axes: list[str], values: list[float]) -> str:
    return ", ".join(f"{a}={v:g}" for a, v in zip(axes, values, strict=True))


def grid_from_points(
    snap: Snapshot, coords: dict[str, str], variables: list[str], display: str, rtol: float
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The regular grid the points of ``snap`` form: coordinates per axis and ``(*grid, C)`` values.

    Raises:
        FieldError: A missing column, non-finite values, points missing or given twice, or uneven spacing
            beyond ``rtol`` of the mean spacing (the message names the file, the zone and a point).
    """
    where = f"{display}: {snap.where}: " if snap.where else f"{display}: "
    present = ", ".join(snap.columns)
    for name in [*coords.values(), *variables]:
        if name not in snap.columns:
            raise FieldError(f"{where}column {name!r} not found; columns present: {present}")
    axes = list(coords)
    n = len(snap.columns[coords[axes[0]]])
    for name in [*coords.values(), *variables]:
        col = snap.columns[name]
        bad = np.flatnonzero(~np.isfinite(col))
        if bad.size:
            raise FieldError(f"{where}row {int(bad[0]) + 1}: {name} = {col[bad[0]]} ({bad.size} non-finite value(s) "
                             f"in {name}); a velocity field must be complete (masked PIV vectors must be filled)")
    uniq, index = {}, []
    for axis in axes:
        u, inv = np.unique(snap.columns[coords[axis]], return_inverse=True)
        uniq[axis] = u
        index.append(inv.ravel())
    shape = tuple(len(uniq[a]) for a in axes)
    flat = np.ravel_multi_index(tuple(index), shape)
    counts = np.bincount(flat, minlength=math.prod(shape))
    if (counts != 1).any():
        missing, dup = np.flatnonzero(counts == 0), np.flatnonzero(counts > 1)
        parts = []

        def point(flat_index: int) -> str:
            idx = np.unravel_index(flat_index, shape)
            return _fmt_point(axes, [float(uniq[a][i]) for a, i in zip(axes, idx, strict=True)])

        if missing.size:
            parts.append(f"{missing.size} missing (first at {point(int(missing[0]))})")
        if dup.size:
            parts.append(f"{dup.size} given more than once (first at {point(int(dup[0]))})")
        grid = " x ".join(f"{len(uniq[a])} {a}" for a in axes)
        raise FieldError(f"{where}the points do not form a regular grid: {n} rows, while the distinct coordinates "
                         f"({grid} values) make {math.prod(shape)} grid points; {' and '.join(parts)}")
    out_coords = {}
    for axis in axes:
        u = uniq[axis]
        if len(u) > 1:
            d = np.diff(u)
            mean = float(d.mean())
            worst = int(np.argmax(np.abs(d - mean)))
            if abs(d[worst] - mean) > rtol * mean:
                raise FieldError(
                    f"{where}uneven spacing along {axis} (column {coords[axis]!r}): {d[worst]:g} between {axis}="
                    f"{u[worst]:g} and {u[worst + 1]:g}, the mean spacing is {mean:g} (tolerance grid_rtol = "
                    f"{rtol:g} of it); the points do not form a regular grid")
            u = u[0] + mean * np.arange(len(u))  # printed coordinates carry rounding; the grid is regular
        out_coords[axis] = u
    data = np.empty((*shape, len(variables)), dtype=np.float64)
    for c, var in enumerate(variables):
        data[(*index, c)] = snap.columns[var]
    return out_coords, data


# ============================================================================ read


def _default_coords(snap: Snapshot, display: str) -> dict[str, str]:
    found = {}
    lower = {name.lower(): name for name in snap.columns}
    for axis in SPATIAL:
        if axis in lower:
            found[axis] = lower[axis]
    if not found:
        raise FieldError(f"{display}: no coordinate columns: name them in spec.coords (e.g. {{x: X, y: Y}}); columns "
                         f"present: {', '.join(snap.columns)}")
    return found


def read_text_fields(
    files: list[tuple[Path, str]], layout: FieldLayout, fmt: str, max_abs: float | None
) -> tuple[np.ndarray, dict[str, np.ndarray], list[str], float | None, dict[str, Any]]:
    """Read text field files into ``(trajectory, time, *space, component)``.

    Args:
        files: ``(local path, name shown in messages)`` per file, grouped into trajectories by the folder of the
            shown name and ordered naturally (:func:`natural_sorted`).
        layout: ``coords`` (axis -> column), ``variables`` (one column per component), ``time``, ``dt``,
            ``grid_rtol``, ``delimiter``, ``channels``, ``components``.
        fmt: ``table`` or ``tecplot``.
        max_abs: Largest magnitude accepted (None: no check).

    Returns:
        ``(data float32, coords per spatial axis (+ "time"), component names, dt or None, attrs)``.
    """
    if fmt not in TEXT_FORMATS:
        raise FieldError(f"{files[0][1]}: unknown text format {fmt!r}")
    spec = dict(layout.coords or {})
    for axis, col in spec.items():
        if not isinstance(col, str):
            raise FieldError(f"{files[0][1]}: coords[{axis!r}] = {col!r}: a {fmt} file holds its coordinates as "
                             "columns; name the column (e.g. coords: {x: x, y: y})")
    groups: dict[str, list[tuple[Path, str]]] = {}
    for path, shown in sorted(files, key=lambda f: [_natural_key(p) for p in f[1].replace("\\", "/").split("/")]):
        groups.setdefault(str(Path(shown).parent), []).append((path, shown))
    trajectories: list[list[np.ndarray]] = []
    times: list[list[float | None]] = []
    grid_coords: dict[str, np.ndarray] | None = None
    first_shown = ""
    n_stored = len(layout.variables)
    chans = kept_channels(layout, n_stored, files[0][1], f"variables {layout.variables}")
    variables = [layout.variables[c] for c in chans]
    for folder, members in groups.items():
        snaps_of: list[np.ndarray] = []
        t_of: list[float | None] = []
        for path, shown in members:
            snaps = read_table(path, shown, layout) if fmt == "table" else read_tecplot(path, shown)
            for snap in snaps:
                cols = spec or _default_coords(snap, shown)
                c, values = grid_from_points(snap, cols, variables, shown, layout.grid_rtol)
                if grid_coords is None:
                    grid_coords, first_shown = c, shown + (f" ({snap.where})" if snap.where else "")
                elif list(c) != list(grid_coords) or any(
                        len(c[a]) != len(grid_coords[a]) or not np.allclose(c[a], grid_coords[a], rtol=layout.grid_rtol,
                                                                            atol=layout.grid_rtol * _dx(grid_coords[a]))
                        for a in c):
                    raise FieldError(f"{shown}: {snap.where + ': ' if snap.where else ''}the grid "
                                     f"{_describe_grid(c)} differs from the grid {_describe_grid(grid_coords)} of "
                                     f"{first_shown}; every snapshot must share one grid")
                if max_abs is not None and np.abs(values).max() > max_abs:
                    raise FieldError(f"{shown}: {snap.where + ': ' if snap.where else ''}a velocity of "
                                     f"{np.abs(values).max():g}, beyond the largest magnitude accepted, "
                                     f"ingest.turbulence.max_abs_value = {max_abs:g} (a fill value?)")
                snaps_of.append(values)
                t_of.append(snap.time)
        if all(t is not None for t in t_of) and len(t_of) > 1:
            order = np.argsort(np.asarray(t_of, dtype=np.float64), kind="stable")
            if fmt == "tecplot" and (np.diff(np.asarray(t_of)) <= 0).any():
                raise FieldError(f"{folder}: the SOLUTIONTIME of the zones does not increase in file order "
                                 f"({', '.join(f'{t:g}' for t in t_of[:8])}...)")
            snaps_of, t_of = [snaps_of[i] for i in order], [t_of[i] for i in order]
        trajectories.append(snaps_of)
        times.append(t_of)
    counts = {folder: len(s) for folder, s in zip(groups, trajectories, strict=True)}
    if len(set(counts.values())) > 1:
        raise FieldError(f"the trajectories (one per folder) hold different numbers of snapshots: "
                         f"{', '.join(f'{k}: {v}' for k, v in counts.items())}; every trajectory needs the same")
    assert grid_coords is not None
    data = np.stack([np.stack(s) for s in trajectories]).astype(np.float32)  # (traj, time, *grid, C)
    axes = list(grid_coords)
    keep = [a for a in axes if len(grid_coords[a]) > 1]
    if not keep:
        raise FieldError(f"{first_shown}: a single point; no spatial axis has more than one coordinate value")
    order = [a for a in SPATIAL if a in keep]
    squeezed = [a for a in axes if a not in keep]
    if squeezed:
        data = data.squeeze(axis=tuple(2 + axes.index(a) for a in squeezed))
    positions = [a for a in axes if a in keep]
    data = np.ascontiguousarray(np.moveaxis(data, [2 + positions.index(a) for a in order],
                                            list(range(2, 2 + len(order)))))
    coords = {a: grid_coords[a] for a in order}
    dt, dt_source = _text_dt(layout, times, first_shown)
    if dt_source.startswith("times") and times[0][0] is not None:
        coords["time"] = np.asarray(times[0], dtype=np.float64)
    names = component_names(layout, chans, n_stored, list(layout.variables), files[0][1])
    attrs = {"trajectories": list(groups), "files": [shown for _, shown in files], "squeezed": squeezed,
             "coord_sources": {a: f"column {(spec or {}).get(a, a)}" for a in order}, "dt_source": dt_source,
             "variables": variables, "channels": chans}
    return data, coords, names, dt, attrs


def _dx(c: np.ndarray) -> float:
    return float(c[1] - c[0]) if len(c) > 1 else 1.0


def _describe_grid(c: dict[str, np.ndarray]) -> str:
    return " x ".join(f"{len(v)} {a} in [{v[0]:g}, {v[-1]:g}]" for a, v in c.items())


def _text_dt(layout: FieldLayout, times: list[list[float | None]], shown: str) -> tuple[float | None, str]:
    t = times[0]
    dt_t = None
    if len(t) > 1 and all(v is not None for v in t):
        d = np.diff(np.asarray(t, dtype=np.float64))
        if not np.allclose(d, d.mean(), rtol=1e-5, atol=0):
            raise FieldError(f"{shown}: the snapshot times are not evenly spaced (spacings {d.min():g}..{d.max():g}); "
                             "give dt for the snapshot spacing")
        dt_t = float(d.mean())
    if layout.dt is not None:
        if dt_t is not None and not math.isclose(layout.dt, dt_t, rel_tol=1e-5):
            raise FieldError(f"{shown}: dt {layout.dt:g} disagrees with the spacing {dt_t:g} of the snapshot times")
        return float(layout.dt), "given"
    if dt_t is not None:
        return dt_t, "times (time column or SOLUTIONTIME)"
    return None, "unknown"
