"""The MLflow pyfunc that every registered formerflow model is, and the checks that run before it loads.

The registered artifact holds the model folder written by this project
(``model.safetensors`` + ``config.json`` with the fitted preprocessing schema, plus the
domain's assets) and no code: its MLmodel file names ``tasks.serving_entry`` as the
pyfunc's loader module, which MLflow imports from the *installed* formerflow package.
A service needs only ``mlflow.pyfunc.load_model("models:/formerflow-<domain>@champion")``
(with formerflow installed) and raw records: the wrapper applies the same preprocessing
as training.

Signature and input example: register logs each version with an MLflow signature and an
input example (:func:`signature`), both from a few inputs of the project's data that the
domain picks (its ``input_example`` hook): the input columns (or named arrays) it needs, and
the output columns it returns on them. MLflow checks every ``predict`` input against the
signature: missing columns are refused by name, extra columns are dropped.

Integrity: register writes :data:`MANIFEST` into the artifact (the sha256 of every other
file in it) and records the sha256 of the manifest itself on the model version (tag
:data:`DIGEST_TAG`). :func:`verify_artifact` checks both before anything in the folder is
deserialised; :func:`load_registered` (what scoring uses) downloads a version to a private
copy and checks it against the registry's digest before MLflow reads it, so a file altered
or added after register (weights, config, tokenizer, the MLmodel file) is refused, named.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from tasks import domains, tracking
from tasks.compress import METHODS, load_any, load_elastic, nested
from tasks.domains import InputExample

MANIFEST = "formerflow-manifest.json"
"""The file in a registered artifact that lists the sha256 of every other file in it."""
DIGEST_TAG = "artifact.manifest.sha256"
"""The model-version tag holding the sha256 of the artifact's manifest (recorded by register)."""
MODEL_DIR = "data/model_dir"
"""Where the model folder lies inside a registered artifact (MLflow copies the pyfunc's ``data_path`` to
``data/<its name>``)."""


class IntegrityError(ValueError):
    """A registered artifact does not match the digests recorded at register; the message names the file."""


# ----------------------------------------------------------------------------- digests
def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _files(root: Path) -> dict[str, Path]:
    """Every file under ``root`` by posix path relative to it, the manifest left out.

    Raises:
        IntegrityError: a symlink (it could point anywhere; a registered artifact never holds one).
    """
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise IntegrityError(f"{path}: a symlink in a model artifact; refusing to read it")
        if path.is_file():
            rel = path.relative_to(root).as_posix()
            if rel != MANIFEST:
                out[rel] = path
    return out


def write_manifest(root: str | Path) -> str:
    """Write :data:`MANIFEST` into ``root`` (the sha256 of every file under it). Returns the manifest's sha256."""
    root = Path(root)
    files = {rel: file_sha256(path) for rel, path in _files(root).items()}
    data = json.dumps({"algorithm": "sha256", "files": files}, indent=1, sort_keys=True).encode()
    (root / MANIFEST).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def verify_artifact(root: str | Path, expected: str | None = None) -> dict[str, str]:
    """Check every file of a registered artifact against its manifest (and the manifest against ``expected``).

    Reads only bytes and JSON; nothing in the folder is imported or deserialised here.

    Args:
        root: The artifact's folder (the one holding the MLmodel file and :data:`MANIFEST`).
        expected: The manifest's sha256 as the registry recorded it (tag :data:`DIGEST_TAG`); None checks
            the files against the manifest only.

    Returns:
        The manifest's file table, relative path -> sha256.

    Raises:
        IntegrityError: the manifest is missing or does not match ``expected``, or a file is altered,
            missing or not listed; the message names the file.
    """
    root = Path(root)
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise IntegrityError(f"{manifest} does not exist: the artifact was not registered with digests "
                             "(or the manifest was removed); register the model again")
    data = manifest.read_bytes()
    if expected is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise IntegrityError(f"{manifest}: sha256 {actual} differs from {expected} recorded in the registry at "
                                 "register: the artifact was altered; refusing to load it")
    try:
        listed = json.loads(data)["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{manifest} is not a formerflow manifest ({exc}); refusing to load the artifact") from exc
    present = _files(root)
    added, missing = sorted(set(present) - set(listed)), sorted(set(listed) - set(present))
    if added:
        raise IntegrityError(f"{present[added[0]]}: not in the artifact's manifest (added after register); "
                             "refusing to load the artifact")
    if missing:
        raise IntegrityError(f"{root / missing[0]}: listed in the artifact's manifest but missing; refusing to load")
    for rel, digest in sorted(listed.items()):
        actual = file_sha256(present[rel])
        if actual != digest:
            raise IntegrityError(f"{present[rel]}: sha256 {actual} differs from {digest} recorded at register: "
                                 "the file was altered; refusing to load the artifact")
    return listed


# ----------------------------------------------------------------------------- registry versions
@dataclass(frozen=True)
class VersionRef:
    """A registered model version as a URI names it."""

    name: str
    version: str

    @property
    def uri(self) -> str:
        """The URI of exactly this version (``models:/<name>/<version>``), whatever alias named it."""
        return f"models:/{self.name}/{self.version}"


_REGISTRY_URI = re.compile(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))")


def resolve(model_uri: str) -> VersionRef | None:
    """The version a ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` URI names now; None for others.

    Raises:
        LookupError: the alias is not set or the version does not exist.
    """
    from mlflow.exceptions import MlflowException  # lazy: mlflow is slow to import

    m = _REGISTRY_URI.fullmatch(model_uri)
    if m is None:
        return None
    name, alias, version = m.groups()
    c = tracking.client()
    try:
        mv = c.get_model_version_by_alias(name, alias) if alias else c.get_model_version(name, version)
    except MlflowException as exc:
        raise LookupError(f"{model_uri}: no such registered model version ({exc.message})") from exc
    return VersionRef(name, str(mv.version))


def download_verified(ref: VersionRef, dst: str | Path) -> Path:
    """Copy a version's artifact into ``dst`` and check it against the digest the registry recorded.

    Returns:
        The artifact's folder under ``dst`` (MLmodel, :data:`MANIFEST`, :data:`MODEL_DIR`).

    Raises:
        IntegrityError: the version has no digest tag, or a file does not match (named).
    """
    import mlflow.artifacts  # lazy: mlflow is slow to import

    c = tracking.client()
    mv = c.get_model_version(ref.name, ref.version)
    expected = (mv.tags or {}).get(DIGEST_TAG)
    if not expected:
        raise IntegrityError(f"{ref.uri} has no tag {DIGEST_TAG}: it was registered before artifacts had digests "
                             "and could run code from its artifact when loaded; register the model again")
    source = c.get_model_version_download_uri(ref.name, ref.version)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst),
                                                     tracking_uri=tracking.tracking_uri()))
    verify_artifact(local, expected)
    return local


def load_registered(model_uri: str) -> tuple[Any, VersionRef | None]:
    """Load a registered pyfunc after checking its files against the registry's digest.

    A registry URI (``models:/<name>@<alias>`` or ``/<version>``) is resolved to its version first, so the
    caller can record the version it actually used; the artifact is copied to a private folder (kept for the
    model's lifetime: the finance tokenizer is read from it) and verified before MLflow reads it. Any other
    URI (a run or a local folder) is checked against its own manifest only.

    Returns:
        The pyfunc, and the version it is (None for a URI outside the registry).
    """
    ref = resolve(model_uri)
    if ref is None:  # the loader module checks the files against the artifact's manifest
        return tracking.load_pyfunc(model_uri), None
    copy = tempfile.TemporaryDirectory(prefix="formerflow-model-")
    root = download_verified(ref, copy.name)
    pyfunc = tracking.load_pyfunc(str(root))
    pyfunc.formerflow_copy = copy  # removed when the model is garbage-collected
    return pyfunc, ref


# ----------------------------------------------------------------------------- signature
def signature(model: FormerflowModel, example: InputExample):
    """The MLflow signature of a registered model: inferred from the domain's example inputs and what the model
    returns on them.

    Input columns the example lists as ``optional`` are not required; ``any_type`` columns accept numbers or text
    (MLflow's ``Any``); array outputs have a variable size in ``variable_dims`` besides the batch.

    Returns:
        ``mlflow.models.ModelSignature``.
    """
    import mlflow.models  # lazy: mlflow is slow to import
    from mlflow.types.schema import AnyType, ColSpec, Schema, TensorSpec  # lazy: mlflow is slow to import

    output = model.predict(example.data if example.local is None else example.local)
    # A nested variant takes the width as a parameter (default: its own; a mix: the full width's slice is not it,
    # so its default is no width at all, which MLflow cannot express: -1 stands for "the registered one").
    params = {"width": float(model.width if model.width is not None else -1.0)} if model.widths else None
    with warnings.catch_warnings():  # integer columns: the hint is about inferring from data with missing values
        warnings.simplefilter("ignore", UserWarning)
        inferred = mlflow.models.infer_signature(example.data, output, params=params)
    inputs, outputs = inferred.inputs, inferred.outputs
    if not inputs.is_tensor_spec():
        named = {c.name for c in inputs.inputs}
        cols = [ColSpec(AnyType() if c.name in example.any_type else c.type, c.name,
                        required=c.name not in example.optional) for c in inputs.inputs]
        cols += [ColSpec(AnyType() if n in example.any_type else "string", n, required=False)
                 for n in example.optional if n not in named]
        inputs = Schema(cols)
    if outputs.is_tensor_spec() and example.variable_dims:
        outputs = Schema([TensorSpec(t.type, tuple(-1 if i in example.variable_dims else d
                                                   for i, d in enumerate(t.shape)), t.name) for t in outputs.inputs])
    return mlflow.models.ModelSignature(inputs, outputs, params=inferred.params)


# ----------------------------------------------------------------------------- the pyfunc
class FormerflowModel:
    """A teacher or compressed model folder, loaded, scoring raw records of its domain.

    MLflow's ``PyFuncModel`` calls :meth:`predict`; ``unwrap_python_model()`` returns this object
    (:attr:`python_model`), with the module as ``model`` and its ``config.json`` as ``meta``.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.model, self.meta = load_any(self.folder)
        self.loaded = domains.LoadedModel(self.model, self.meta, self.folder)
        self._widths: dict[float, domains.LoadedModel] = {}
        if self.width is not None:
            self._widths[self.width] = self.loaded

    @property
    def python_model(self) -> FormerflowModel:
        """What ``PyFuncModel.unwrap_python_model()`` returns."""
        return self

    # ------------------------------------------------------------------ one artifact, many widths (MatFormer)
    @property
    def widths(self) -> list[float]:
        """The FFN widths this artifact can serve (a nested variant: every extracted granularity; else none)."""
        return nested.available_widths(self.meta) if (self.folder / "elastic" / "config.json").exists() else []

    @property
    def width(self) -> float | None:
        """The width the folder's own weights are (a uniform nested variant), None otherwise (a mix, other variants)."""
        return (self.meta.get("nested") or {}).get("width")

    def at_width(self, width: float | None) -> domains.LoadedModel:
        """The model at ``width`` (None: the folder's own), sliced from the full nested model on first use.

        A nested variant that was quantized (``nested-w0.5+int8``) quantizes the slice the same way. The slice is
        kept for the next call.

        Raises:
            ValueError: ``width`` is not one this artifact serves (the message lists them).
        """
        if width is None:
            return self.loaded
        width = float(width)
        if width in self._widths:
            return self._widths[width]
        available = self.widths
        if width not in available:
            listed = ", ".join(f"{w:g}" for w in available) if available else "none: not a nested (MatFormer) variant"
            raise ValueError(f"width {width:g} is not served by {self.meta.get('compression', 'this model')} "
                             f"(available widths: {listed})")
        full, _ = load_elastic(self.folder)
        model = nested.extract(full, width)
        meta = {**self.meta, "nested": {**(self.meta.get("nested") or {}), "width": width}}
        if self.meta.get("quant"):
            model = METHODS[self.meta["quant"]].apply(model)
        self._widths[width] = domains.LoadedModel(model.eval(), meta, self.folder)
        return self._widths[width]

    def predict(self, model_input: pd.DataFrame | pl.DataFrame | dict[str, np.ndarray],
                params: dict[str, Any] | None = None) -> pd.DataFrame | np.ndarray:
        """Score a pandas DataFrame of raw records (in time order); returns a pandas DataFrame.

        Field models (turbulence) take arrays instead: ``{"initial": (B, T_in, *grid, C) float32, "steps":
        int64 array [n]}`` and return the predicted trajectory ``(B, n, *grid, C)``. Through MLflow's
        ``PyFuncModel.predict`` the input is checked against the version's signature first.

        The type hints are for readers and type checkers: MLflow reads a ``predict``'s hints only on a
        ``PythonModel`` subclass or an ``@pyfunc`` function (where a missing hint is its "Add type hints to
        the `predict` method" warning); this pyfunc is a loader module's object (:mod:`tasks.serving_entry`),
        so MLflow validates its input against the registered signature (:func:`signature`) instead, which
        describes each domain's input exactly (one hint cannot: a table, or named arrays for a field model).

        Args:
            model_input: The records (or arrays).
            params: ``{"width": w}`` runs a nested (MatFormer) variant at another of its extracted widths
                (:attr:`widths`); without it, the width that was registered.
        """
        width = (params or {}).get("width")
        loaded = self.at_width(None if width is None or width == -1 else width)
        dom = domains.get(self.meta["schema"]["domain"])
        if dom.kind == "field":
            if not isinstance(model_input, dict | np.ndarray):
                raise TypeError(f"the {dom.name} model predicts fields, not table rows: pass {{'initial': array, "
                                f"'steps': [n]}} to the pyfunc, or score a field file with python -m flows.scoring "
                                f"{dom.name} <file> <out>")
            return dom.predict_array(loaded, model_input)
        frame = model_input if isinstance(model_input, pl.DataFrame) else pl.from_pandas(model_input)
        return dom.score_frame(loaded, frame).to_pandas()
