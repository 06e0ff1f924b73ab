"""Batch scoring with a registered model: ``models:/formerflow-<domain>@champion`` by default.

Reads new records from any fsspec URL with the domain's reader (same validation
as ingest), scores them with the registered pyfunc, and writes the inputs'
key columns plus the predictions as Parquet (atomically).

An alias is resolved to its version number once, before loading: the manifest records the
version that scored (``model_version``, ``model_uri`` = ``models:/<name>/<version>``), not
``@champion``, which may point elsewhere by the time anyone reads it. The version's files are
checked against the digest the registry recorded before the model loads (:mod:`tasks.serving`).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from tasks import domains, serving, store, tracking

if TYPE_CHECKING:
    from tasks.params import Params


def score(domain: str, params: Params, input_url: str, output: str | Path, model_uri: str | None = None,
          width: float | None = None) -> dict[str, Any]:
    """Score ``input_url`` and write predictions to ``output`` (Parquet).

    Args:
        domain: The domain whose registered model scores the records.
        params: Project params (the ingest spec of the domain is used to read the input).
        input_url: A file, glob or fsspec URL of new records.
        output: Local Parquet path for the predictions.
        model_uri: An MLflow model URI; defaults to ``score.<domain>.model_uri`` or the champion.
        width: Run a nested (MatFormer) version at another of its extracted FFN widths (1, 0.5, ...); None: the
            width it was registered at. A version that serves no such width is an error naming the ones it does.

    Returns:
        A manifest: model URI of the version used (``models:/<name>/<version>``), ``model_version``, the URI
        asked for (``model_requested``), rows scored, rows predicted positive (class != 0: attack, seizure,
        ...), output path.
    """
    dom = domains.get(domain)
    p = params.section("score", domain)
    ip = params.section("ingest", domain)
    requested = model_uri or p.model_uri or f"models:/{tracking.registered_model_name(domain)}@champion"
    if dom.kind == "field":
        # Field domains (turbulence) read a field file and write a predicted trajectory in its format; they load
        # the model themselves, so the version is checked here and passed by number (MLflow's loader module
        # checks the files against the artifact's manifest again when it loads).
        ref = serving.resolve(requested)
        if ref is not None:
            with tempfile.TemporaryDirectory() as tmp:
                serving.download_verified(ref, tmp)
        manifest = dom.score_fields(params, ref.uri if ref else requested, input_url, output, width=width)
        return {**manifest, **_version_fields(requested, ref), **({"width": width} if width is not None else {})}
    model, ref = serving.load_registered(requested)
    predict_params = {"width": float(width)} if width is not None else None
    if width is not None:  # checked before any input is read: the error lists the widths the version serves
        model.unwrap_python_model().at_width(width)
    if dom.score_input_expands_itself:
        urls = [input_url]  # the domain's reader takes folders, globs, URLs and archives (EEG, finance)
    else:
        urls = store.retry(lambda: store.expand_urls(input_url), retries=ip.retries, delay_s=ip.retry_delay_s,
                           what=f"score input {input_url}")
    with tempfile.TemporaryDirectory() as cache:
        scoring = dom.read_scoring_input(urls, ip, Path(cache))
        frame = scoring.frame
        preds = pl.from_pandas(model.predict(frame.to_pandas(), params=predict_params))
    if dom.score_per_input_row:
        keep = [c for c in dom.key_columns(ip) if c in frame.columns]
        out = pl.concat([frame.select(keep).with_row_index("row"), preds], how="horizontal")
    else:  # one row per derived item (EEG: per epoch); the predictions carry their own keys
        out = preds
    output = Path(output)
    extra, files = dom.score_summary(out, scoring.notes, output)
    # Every file is written under a temporary name first and renamed only when all exist,
    # so a failure leaves no half of a result behind.
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(store.atomic_path(output))
        staged = {name: stack.enter_context(store.atomic_path(output.with_name(name))) for name in files}
        out.write_parquet(tmp)
        for name, data in files.items():
            staged[name].write_bytes(data)
    return {"stage": "score", "domain": domain, **_version_fields(requested, ref), "input": input_url,
            "rows": out.height, "flagged": int((out["prediction"] != 0).sum()) if out.height else 0,
            "output": str(output), **({"width": width} if width is not None else {}), **extra}


def _version_fields(requested: str, ref: serving.VersionRef | None) -> dict[str, Any]:
    """The manifest's record of the model that scored: the exact version, and what was asked for."""
    return {"model_uri": ref.uri if ref else requested, "model_version": ref.version if ref else None,
            "model_requested": requested}
