"""Batch scoring with a registered model: ``models:/formerflow-<domain>@champion`` by default.

Reads new records from any fsspec URL with the domain's reader (same validation
as ingest), scores them with the registered pyfunc, and writes the inputs'
key columns plus the predictions as Parquet (atomically).

An alias is resolved to its version number once, before loading: the manifest records the
version that scored (``model_version``, ``model_uri`` = ``models:/<name>/<version>``), not
``@champion``, which may point elsewhere by the time anyone reads it. The version's files are
checked against the digest the registry recorded before the model loads (:mod:`tasks.serving`).

:func:`score_sentences` (``score <domain> --sentences FILE``) scores single sentences instead of documents,
for a domain whose contract object reads them (``read_sentences``: finance): one output row per sentence, a
metrics table when the file carries labels, and ``--model <baseline>`` for a baseline the train stage saved. A
sentence is predicted positive at the evaluate stage's threshold (:func:`sentence_threshold`), as the domain's
report counts them, and its metrics are evaluate's (:func:`tasks.measure.classification_metrics`).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from tasks import domains, serving, store, tracking
from tasks.measure import classification_metrics
from tasks.params_base import ClassificationEvaluate

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


SENTENCE_OUTPUTS = (".parquet", ".csv")
"""What ``score --sentences`` writes, by the output's ending."""
CHAMPION = "champion"
"""``--model`` naming the registered model (the default), as opposed to a saved baseline."""


def sentences_domains() -> list[str]:
    """The domains whose contract object scores single sentences (has ``read_sentences``)."""
    return [d for d in domains.names() if hasattr(domains.get(d), "read_sentences")]


def score_sentences(domain: str, params: Params, source: str, output: str | Path, model: str | None = None,
                    model_uri: str | None = None, text_column: str | None = None, label_column: str | None = None,
                    width: float | None = None) -> dict[str, Any]:
    """Score single sentences (``score <domain> --sentences FILE``): one output row per sentence.

    Args:
        domain: A domain that reads sentence files (:func:`sentences_domains`: finance).
        params: Project params (``ingest.<domain>`` retries for a remote file).
        source: A TXT file (one sentence per line) or a CSV/TSV/Parquet file with a text column.
        output: ``.parquet`` (or ``.csv``) file of the predictions; with labels, the metrics go beside it as
            ``<stem>.metrics.json``.
        model: ``champion`` (default: the registered model, as document scoring) or a baseline the train stage
            saved (the domain's ``sentence_baselines()``: ``keyword``, ``tfidf_logreg``, ...).
        model_uri: The registered model to use instead of the champion (not with a baseline).
        text_column: A table's text column (default ``sentence``).
        label_column: A table's label column (default ``label`` when present).
        width: A nested version's FFN width (registered model only).

    Returns:
        The manifest: what scored (version or baseline file and SHA-256), ``threshold`` (``prediction`` is 1
        where ``p_ai`` reaches it: :func:`sentence_threshold`) and ``threshold_param`` (where it was read), rows,
        flagged, the output file(s), ``metrics`` (with labels) and ``table``, the text the CLI prints (first
        predictions, the threshold, metrics).

    Raises:
        ValueError: the domain scores no sentences, the output is neither .parquet nor .csv, ``--model`` names
            no saved baseline (lists them), or the file cannot be scored (the domain's error names it). Nothing is
            written then.
    """
    dom = domains.get(domain)
    if not hasattr(dom, "read_sentences"):
        raise ValueError(f"--sentences: the {domain} domain does not score single sentences; domains that do: "
                         f"{', '.join(sentences_domains()) or 'none'}")
    output = Path(output)
    if output.suffix.lower() not in SENTENCE_OUTPUTS:
        raise ValueError(f"--output {output}: sentence scores are written as {' or '.join(SENTENCE_OUTPUTS)}")
    baseline = model not in (None, CHAMPION)
    if baseline and (model_uri or width is not None):
        raise ValueError(f"--model {model} is a baseline; --model-uri and --width choose a registered model")
    ip = params.section("ingest", domain)
    # A baseline is looked up before the input is read: an unknown name answers at once with the list.
    predict_baseline, record = dom.load_sentence_baseline(model) if baseline else (None, {})
    threshold, threshold_param = sentence_threshold(params, domain)
    with tempfile.TemporaryDirectory() as cache:
        scoring = dom.read_sentences(source, text_column, label_column, ip, Path(cache))
    frame = scoring.frame
    if baseline:
        probs = np.asarray(predict_baseline(frame["sentence"].to_list()), dtype=np.float64)
        preds = pl.DataFrame({"p_ai": probs})
        version: dict[str, Any] = {"model": model, **record}
    else:
        requested = model_uri or params.section("score", domain).model_uri or \
            f"models:/{tracking.registered_model_name(domain)}@champion"
        pyfunc, ref = serving.load_registered(requested)
        if width is not None:  # checked before scoring: the error lists the widths the version serves
            pyfunc.unwrap_python_model().at_width(width)
        preds = pl.from_pandas(pyfunc.predict(frame.select("sentence").to_pandas(),
                                              params={"width": float(width)} if width is not None else None))
        version = {"model": CHAMPION if not model_uri else model_uri, **_version_fields(requested, ref)}
    # The registered pyfunc predicts at 0.5; every model here is cut at evaluate's threshold instead.
    preds = preds.with_columns(prediction=(pl.col("p_ai") >= threshold).cast(pl.Int64))
    out = pl.concat([frame.drop("label", strict=False), preds, frame.select("label") if "label" in frame.columns
                     else pl.DataFrame()], how="horizontal")
    metrics = _label_metrics(out["label"].to_numpy(), out["p_ai"].to_numpy(), out["prediction"].to_numpy()) \
        if "label" in out.columns else None
    metrics_file = output.with_name(f"{output.stem}.metrics.json") if metrics else None
    manifest = {"stage": "score", "domain": domain, "kind": "sentences", **version, "threshold": threshold,
                "threshold_param": threshold_param, "input": source,
                **{k: v for k, v in scoring.notes.items()}, "rows": out.height,
                "flagged": int((out["prediction"] != 0).sum()), "output": str(output),
                **({"width": width} if width is not None else {}),
                **({"metrics": metrics, "metrics_file": str(metrics_file)} if metrics else {})}
    # Written under temporary names and renamed when all exist: a failure leaves nothing half written.
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(store.atomic_path(output))
        if output.suffix.lower() == ".csv":
            out.write_csv(tmp)
        else:
            out.write_parquet(tmp)
        if metrics_file is not None:
            stack.enter_context(store.atomic_path(metrics_file)).write_text(
                json.dumps({k: v for k, v in manifest.items() if k != "metrics"} | {"metrics": metrics}, indent=2,
                           default=str) + "\n")
    manifest["table"] = _sentence_table(out, metrics, threshold, threshold_param)
    return manifest


def sentence_threshold(params: Params, domain: str) -> tuple[float, str]:
    """The threshold on P(positive) a sentence is predicted positive at, and the param it comes from.

    The evaluate stage's (``evaluate.<domain>.threshold``): the domain's task info reads it for the report, and
    finance's evaluate applies it to every model's sentences, the saved baselines' too (edge cases, years). A
    domain whose evaluate section has no threshold predicts at 0.5.
    """
    section = params.section("evaluate", domain)
    if isinstance(section, ClassificationEvaluate):
        return float(section.threshold), f"evaluate.{domain}.threshold"
    return 0.5, f"no evaluate.{domain}.threshold"


def _label_metrics(y: np.ndarray, p: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, balanced accuracy, F1, precision, recall (of the positive class) and ROC-AUC of labelled
    sentences, as evaluate computes them (:func:`tasks.measure.classification_metrics`) on ``pred``; balanced
    accuracy and ROC-AUC are None when the labels hold one class only (undefined then)."""
    y = np.asarray(y, dtype=np.int64)
    both = len(np.unique(y)) == 2
    with warnings.catch_warnings():
        if not both:  # scikit-learn warns about what one class leaves undefined, which is not reported
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
        m = classification_metrics(y, np.asarray(p, dtype=np.float64), "binary", ["negative", "positive"],
                                   pred=np.asarray(pred, dtype=np.int64))
    return {"n": m["n"], "positives": int(y.sum()), "accuracy": m["accuracy"],
            "balanced_accuracy": m["balanced_accuracy"] if both else None,
            "f1": m["f1"], "precision": m["precision"], "recall": m["recall"],
            "roc_auc": m["roc_auc"] if both else None}


def _sentence_table(out: pl.DataFrame, metrics: dict[str, Any] | None, threshold: float, threshold_param: str,
                    rows: int = 10) -> str:
    """What the CLI prints: the first predictions, the threshold they were cut at and, with labels, the metrics
    table."""
    key = "line" if "line" in out.columns else "row"
    lines = [f"{key:>6}  {'p_ai':>6}  pred  {'label  ' if 'label' in out.columns else ''}sentence"]
    for r in out.head(rows).iter_rows(named=True):
        text = r["sentence"] if len(r["sentence"]) <= 80 else r["sentence"][:77] + "..."
        label = f"{r['label']:>5}  " if "label" in r else ""
        lines.append(f"{r[key]:>6}  {r['p_ai']:6.3f}  {r['prediction']:>4}  {label}{text}")
    if out.height > rows:
        lines.append(f"... {out.height - rows} more")
    lines.append(f"pred = 1 where p_ai >= {threshold:g} ({threshold_param})")
    if metrics:
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {'n/a (one class)' if v is None else (f'{v:.4f}' if isinstance(v, float) else v)} |"
                  for k, v in metrics.items()]
    return "\n".join(lines)
