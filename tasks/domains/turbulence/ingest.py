"""The ``ingest`` stage of the ``turbulence`` domain: the synthetic solver's field or one field file, read whole and
validated, kept in ``data/raw/turbulence/`` with the layout that reads it."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks import logs, store
from tasks.domains.turbulence.data import NAME, RAW_NAME
from tasks.domains.turbulence.layout import FieldError, FieldLayout, Fields
from tasks.domains.turbulence.readers import glob_root, local_copy, read_fields, text_files
from tasks.domains.turbulence.solver import HITConfig, SolverConfig
from tasks.domains.turbulence.synthetic import LAYOUT, generate

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


def synthetic_layout(dim: int) -> FieldLayout:
    """The layout of the file :func:`tasks.domains.turbulence.synthetic.generate` writes."""
    space = ["x", "y", "z"][:dim]
    return FieldLayout(variables=["velocity"], axes=LAYOUT[dim], coords={a: a for a in space}, time="t")


def _layout_dict(layout: FieldLayout) -> dict[str, Any]:
    return asdict(layout)


log = logging.getLogger(__name__)


def _describe(fields: Fields) -> dict[str, Any]:
    return {"shape": list(fields.data.shape), "axes": list(fields.axes), "components": fields.components,
            "lengths": fields.lengths, "dt": fields.dt, "stride": fields.stride, "dt_model": fields.dt_model,
            "format": fields.attrs.get("format"), "warnings": fields.attrs.get("warnings", []),
            "periodic": fields.attrs.get("periodic", True), "periodic_source": fields.attrs.get("periodic_source"),
            "file_attrs": {k: v for k, v in fields.attrs.get("file_attrs", {}).items() if k != "config"}}


def _check_links(folder: Path, source: str) -> None:
    """Refuse a symbolic link inside a store folder (a Zarr chunk) that resolves outside it.

    ``copytree`` follows links, so a linked chunk would bring a file from elsewhere on the
    machine into DVC-tracked ``data/raw``.
    """
    for parent, dirs, files in os.walk(folder):  # followlinks=False: a linked folder is checked, not walked
        for entry in (*dirs, *files):
            path = Path(parent) / entry
            if path.is_symlink():
                store.check_inside(path, folder, display=f"ingest.turbulence.source {source}: {path.relative_to(folder)}",
                                   error=FieldError)


def ingest(params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """Generate or fetch the velocity field and keep it, validated, in ``data/raw/turbulence/``.

    Output folder: the field file (``fields.h5`` for the synthetic source, else the source's
    own file name and format) and ``manifest.json`` (source, layout, shape, dt, attributes).
    A glob of text files (tables or Tecplot, :mod:`tasks.domains.turbulence.text`) is copied below
    ``fields/``, keeping the folders under the glob's fixed prefix (one folder per trajectory).
    The manifest records ``periodic`` (:func:`tasks.domains.turbulence.layout.is_periodic`), which
    preprocess and evaluate read. The folder is replaced atomically: a bad file (NaN / Inf,
    mismatched shapes, missing variable, wrong axis spec, points that do not form a grid, a
    Tecplot zone whose size does not match its data, a model step that is not a multiple of the
    snapshot spacing) raises :class:`tasks.domains.turbulence.layout.FieldError` naming the
    user's file, and leaves the previous folder as it was.
    """
    p = params.ingest.turbulence
    paths = store.domain_paths(NAME)
    t0 = time.perf_counter()
    with store.atomic_dir(paths.raw) as out, tempfile.TemporaryDirectory(dir=out) as cache:
        if p.source == "synthetic":
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
        elif any(ch in store._pattern_part(p.source) for ch in "*?["):
            # A glob of text files (a table or Tecplot file per snapshot, a folder per trajectory): each match
            # is copied below fields/ by its path under the glob's fixed prefix, which keeps the folders.
            layout = p.spec.to_layout()
            root, urls = text_files(p.source)
            target = out / RAW_NAME
            for url in urls:
                rel = url[len(root):].lstrip("/")
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                local = local_copy(url, Path(cache), retries=p.retries, delay_s=p.retry_delay_s)
                shutil.copy2(local, dest)
            fingerprint = {"files": store.sources_fingerprint(urls)} if not store.is_remote(p.source) \
                else {"url": p.source}
            shown = glob_root(p.source)
        else:
            layout = p.spec.to_layout()
            local = local_copy(p.source, Path(cache), retries=p.retries, delay_s=p.retry_delay_s)
            if not local.exists():
                raise FileNotFoundError(f"ingest.turbulence.source {p.source}: no such file or folder")
            name = Path(str(p.source).split("::")[-1].split("?")[0].rstrip("/")).name or "field"
            target = out / name
            if local.is_dir():
                _check_links(local, p.source)
                shutil.copytree(local, target)
            else:
                shutil.copy2(local, target)
            fingerprint = store.source_fingerprint(p.source) if not store.is_remote(p.source) else {"url": p.source}
            shown = p.source
        # The full read is the validation: a bad field fails here, inside the atomic folder. The reader reads
        # the copy but names the user's source (display): the copy is gone once the stage has failed.
        try:
            fields = read_fields(target, layout, format=p.format, max_array_bytes=p.max_array_bytes,
                                 max_abs_value=p.max_abs_value, display=str(shown))
        except FieldError as exc:
            # A message from a library may still quote the copy's path; name the source there too.
            raise FieldError(str(exc).replace(str(target), str(shown))) from None
        size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) if target.is_dir() else \
            target.stat().st_size
        logs.report_read(log, "turbulence ingest", {str(shown): size}, rows=None,
                         seconds=time.perf_counter() - t0)
        manifest = {
            "stage": "ingest", "domain": NAME, "source": shown, "file": target.name, "format": p.format,
            "layout": _layout_dict(layout), "fingerprint": fingerprint, **_describe(fields),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        store.atomic_write_json(out / "manifest.json", store.redact(manifest))  # no credentials in URLs
    manifest["outputs"] = {"raw": store.content_hash(paths.raw)}
    if run is not None:
        run.log_params({"source": p.source, "layout.variables": ",".join(layout.variables), "layout.axes": layout.axes})
        run.log_metrics({"trajectories": fields.data.shape[0], "snapshots": fields.data.shape[1]})
    return manifest
