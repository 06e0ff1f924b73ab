"""The ``eeg`` evaluation-protocol runner (train stage) and its report section (evaluate stage).

:func:`run_protocol` fits every variant x seed x fold of ``train.eeg.protocol`` (CO, k-fold
CV or LOSO; every fold aligned as the DBConformer reference does, :func:`align_fold`) and
returns every test prediction; :func:`save_protocol` writes them as
``protocol.parquet`` + ``protocol.json``. :func:`protocol_report` reads them back for the
evaluate stage: the summary table (mean and std over subjects and seeds, chance level),
the per-subject table, the bar plot, the EA ablation and the channel-attention topomaps
(:func:`attention_section`). The folds, alignment, metrics and plots themselves are in
:mod:`tasks.domains.eeg.protocol`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import models
from tasks import store
from tasks.domains.eeg import protocol as eeg_protocol
from tasks.domains.eeg.data import NAME, Trials, load_schema, model_config
from tasks.fanout import fan_out
from tasks.loop import fit, predict, probabilities

if TYPE_CHECKING:
    from tasks.params import Params


# ============================================================================ protocols (train stage)
def align_fold(x: np.ndarray, subjects: np.ndarray, fold: eeg_protocol.Fold, protocol: str,
               ea: bool) -> tuple[np.ndarray, np.ndarray]:
    """Training and test arrays of one fold, aligned as the DBConformer reference does (models.md 1.5).

    * LOSO: offline EA per training subject; the test subject online (incremental).
    * CO / CV: offline EA on the training and on the test trials separately, then the
      online EA again on the already aligned test trials (the reference's double alignment).
    """
    xtr, xte = x[fold.train], x[fold.test]
    if not ea:
        return xtr, xte
    xtr = eeg_protocol.align_offline(xtr, subjects[fold.train])
    if protocol == "loso":
        return xtr, eeg_protocol.align_online(xte, subjects[fold.test])
    xte = eeg_protocol.align_offline(xte, subjects[fold.test])
    return xtr, eeg_protocol.align_online(xte, subjects[fold.test])


def protocol_variants(params: Params) -> list[tuple[str, str, bool]]:
    """(variant name, architecture, aligned) of every model the protocol fits."""
    pr = params.train.eeg.protocol
    out = [(m, m, pr.ea) for m in pr.models]
    if pr.ea_ablation and "dbconformer" in pr.models:
        out.append(("dbconformer-noEA" if pr.ea else "dbconformer-EA", "dbconformer", not pr.ea))
    return out


def run_protocol(params: Params, x: np.ndarray, subjects: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                 schema: dict, *, progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every variant x seed x fold of ``train.eeg.protocol`` on unaligned epochs ``x`` (N, C, T).

    Each fit is the generic loop (:func:`tasks.loop.fit`) with the stage's settings
    (``protocol.epochs`` / ``lr`` / per-model ``loops`` override), no validation split and
    the last epoch kept, as the reference. Pure numpy/torch (no I/O), so the same function
    runs on any machine with the data in memory.

    Returns:
        ``(columns, info)``: the test predictions as columns (model, seed, fold, subject,
        index, y, p0..p{K-1}) and the run's description: folds, variants, seconds, and
        DBConformer's channel-attention weights on the test trials (mean over folds and
        seeds, overall and per class) for the topomap.
    """
    p = params.train.eeg
    pr = p.protocol
    folds = eeg_protocol.protocol_folds(subjects, labels, pr.name, k=pr.k, pooled=pr.pooled, groups=groups)
    loop = p.model_copy(update={"epochs": pr.epochs or p.epochs, "lr": pr.lr or p.lr, "resume": False,
                                "keep": "last"})
    variants = protocol_variants(params)
    n_classes = len(schema["classes"])
    aligned = {ea: [align_fold(x, subjects, f, pr.name, ea) for f in folds] for ea in {v[2] for v in variants}}
    jobs, keys = [], []
    for name, arch, ea in variants:
        over = {k: (int(v) if k in ("epochs", "batch_size") else v) for k, v in pr.loops.get(arch, {}).items()}
        cfg = model_config(params, schema, arch, pr.configs.get(arch, {}))
        for seed in pr.seeds:
            for fold, (xtr, xte) in zip(folds, aligned[ea], strict=True):
                jobs.append((arch, cfg, loop.model_copy(update={"seed": seed, **over}), seed, xtr,
                             labels[fold.train], xte, p.eval_batch_size))
                keys.append((name, seed, fold))
    # Every fit is independent (own seed, own fold): on pipeline.task_runner's engine (tasks.fanout).
    fitted = fan_out(fit_protocol_fold, jobs, params.pipeline, what=f"eeg protocol {pr.name}", progress=progress)
    parts: list[dict[str, np.ndarray]] = []
    attention: dict[str, dict[str, list]] = {}
    seconds: dict[str, float] = {}
    for (name, seed, fold), (probs, weights, took) in zip(keys, fitted, strict=True):
        seconds[name] = round(seconds.get(name, 0.0) + took, 2)
        n = len(fold.test)
        cols = {"model": np.full(n, name, dtype=object), "seed": np.full(n, seed),
                "fold": np.full(n, fold.name, dtype=object), "subject": subjects[fold.test].astype(object),
                "index": fold.test, "y": labels[fold.test]}
        cols.update({f"p{k}": probs[:, k] for k in range(n_classes)})
        parts.append(cols)
        if weights is not None:
            yt = labels[fold.test]
            a = attention.setdefault(name, {"mean": [], "by_class": []})
            a["mean"].append(weights.mean(0))
            if all((yt == k).any() for k in range(n_classes)):
                a["by_class"].append(np.stack([weights[yt == k].mean(0) for k in range(n_classes)]))
    columns = {k: np.concatenate([c[k] for c in parts]) for k in parts[0]}
    info = {"protocol": pr.model_dump(mode="json"), "folds": [f.name for f in folds],
            "variants": [{"name": n, "arch": a, "ea": e} for n, a, e in variants],
            "seconds": seconds, "channels": schema["channels"], "classes": schema["classes"],
            # DBConformer's channel-attention weights on the test trials, mean over folds and seeds:
            # overall (C,) and per class (K, C), per variant (with / without EA).
            "attention": {v: {"ea": dict((n, e) for n, _, e in variants)[v],
                              "mean": np.mean(a["mean"], axis=0).tolist(),
                              "by_class": np.mean(a["by_class"], axis=0).tolist() if a["by_class"] else None}
                          for v, a in attention.items()}}
    return columns, info


def fit_protocol_fold(arch: str, cfg: Any, loop: Any, seed: int, xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray,
                      eval_batch_size: int) -> tuple[np.ndarray, np.ndarray | None, float]:
    """One protocol fit: build ``arch`` from ``cfg`` seeded with ``seed``, train on ``(xtr, ytr)`` with ``loop``
    (no validation split, the last epoch kept) and predict ``xte`` (N, C, T).

    Self-contained (arrays and configs in, arrays out), so it runs in this process or on a Dask worker alike.

    Returns:
        ``(probs, weights, seconds)``: class probabilities (N, K); DBConformer's channel-attention weights on the
        test trials (N, C), None for other architectures; the fit's wall time.
    """
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = models.build(f"{NAME}/{arch}", cfg)
    fit(model, Trials(xtr, ytr), None, loop, task="multiclass", progress=False, name=f"eeg protocol {arch} seed {seed}")
    probs = probabilities(predict(model, Trials(xte, np.zeros(len(xte), dtype=ytr.dtype)), eval_batch_size),
                          "multiclass")
    weights = None
    if arch == "dbconformer":
        model.eval()
        with torch.inference_mode():
            model(torch.as_tensor(xte))
        weights = model.last_channel_weights.numpy()  # (n_test, C)
    return probs, weights, time.perf_counter() - t0


def save_protocol(columns: dict[str, np.ndarray], info: dict[str, Any], out: Path) -> None:
    """Write :func:`run_protocol`'s result as ``protocol.parquet`` + ``protocol.json`` in ``out``."""
    import polars as pl  # lazy: polars is slow to import; only writing and reading the protocol need it

    pl.DataFrame({k: (v.tolist() if v.dtype == object else v) for k, v in columns.items()}).write_parquet(
        out / "protocol.parquet")
    store.atomic_write_json(out / "protocol.json", info)



# ============================================================================ protocol report (evaluate stage)
def protocol_report(params: Params, result: dict[str, Any], plots_dir: Path) -> tuple[str, list[str]]:
    """Protocol summary, per-subject table, bar plot, EA ablation and the channel-attention topomap.

    The body of the evaluate stage's hook :func:`tasks.domains.eeg.extra_evaluate`. Adds
    ``result["protocol"]`` (the summary) and returns the report's markdown section and the
    plot file names (empty when the train stage ran no protocol).
    """
    import polars as pl  # lazy: polars is slow to import; only writing and reading the protocol need it

    paths = store.domain_paths(NAME)
    f = paths.baselines / "protocol.parquet"
    if not f.exists():
        return "", []
    pred = pl.read_parquet(f)
    info = store.read_json(paths.baselines / "protocol.json")
    schema = load_schema()
    summary = eeg_protocol.summarize(pred, len(schema["classes"]))
    result["protocol"] = summary
    pr = info["protocol"]
    metrics = ["accuracy", "balanced_accuracy", "kappa"] + (["roc_auc"] if len(schema["classes"]) == 2 else [])
    n_seeds = len(pr["seeds"])
    pooled = pr["pooled"] or len(summary["subjects"]) == 1
    if pooled:
        spread = "± std over seeds" if n_seeds > 1 else "(one seed, one pooled subject: no spread)"
    else:
        # The std first after ± is the one the per-subject table and the bar chart show (protocol.table_std_key).
        spread = ("± std over seeds of the subject mean (the reference's std, as the bars); [± std over subjects of "
                  "the seed means]" if n_seeds > 1 else "± std over subjects (one seed, as the bars)")
    lines = [f"## Protocol: {pr['name'].upper()}"
             + (f" ({pr['k']}-fold)" if pr["name"] == "cv" else "")
             + (" over all trials pooled" if pr["pooled"] else ""),
             "",
             f"Seeds {pr['seeds']}; {len(info['folds'])} folds; mean over subjects and seeds {spread}. "
             "Each model trained per fold exactly as configured in `train.eeg.protocol`.",
             "",
             "| model | " + " | ".join(metrics) + " | fit time (s) |",
             "|---|" + "---:|" * (len(metrics) + 1)]
    for model, m in summary["summary"].items():
        if pooled:
            cells = [f"{m[k]['mean']:.3f}" + (f" ± {m[k]['std_seeds']:.3f}" if n_seeds > 1 else "") for k in metrics]
        else:
            first = eeg_protocol.table_std_key(m)
            cells = [f"{m[k]['mean']:.3f} ± {m[k][first]:.3f}"
                     + (f" [± {m[k]['std_subjects']:.3f}]" if first == "std_seeds" else "") for k in metrics]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {info['seconds'].get(model, float('nan')):.0f} |")
    ea_rows = [v for v in info["variants"] if v["arch"] == "dbconformer"]
    if len(ea_rows) == 2:
        with_ea = next(v["name"] for v in ea_rows if v["ea"])
        without = next(v["name"] for v in ea_rows if not v["ea"])
        a = summary["summary"][with_ea]["balanced_accuracy"]["mean"]
        b = summary["summary"][without]["balanced_accuracy"]["mean"]
        result["ea_gain"] = a - b
        lines += ["", f"**Euclidean alignment**: DBConformer balanced accuracy {a:.3f} with EA vs {b:.3f} without "
                      f"({a - b:+.3f})."]
    lines += ["", "### Per subject (balanced accuracy, mean over seeds)", "",
              eeg_protocol.per_subject_table(summary, "balanced_accuracy"), ""]
    plots = []
    eeg_protocol.plot_model_bars(summary, plots_dir / "protocol_bars.png", "balanced_accuracy",
                                 f"eeg {pr['name'].upper()}: balanced accuracy per subject")
    plots.append("protocol_bars.png")
    attention = info.get("attention") or {}
    if attention:
        lines += attention_section(attention, info["channels"], schema["classes"], plots_dir, plots, result)
    return "\n".join(lines), plots




def class_contrast(by_class: np.ndarray) -> np.ndarray:
    """How much a channel's attention weight changes with the class: |w_1 - w_0| (binary), else std over classes."""
    by_class = np.asarray(by_class)  # (K, C)
    return np.abs(by_class[1] - by_class[0]) if len(by_class) == 2 else by_class.std(axis=0)


def attention_section(attention: dict, channels: list[str], classes: list[str], plots_dir: Path, plots: list[str],
                      result: dict[str, Any]) -> list[str]:
    """Topomaps of DBConformer's channel attention: the mean weights and their class contrast.

    The class contrast (how much a channel's weight moves between classes) is what
    localises: on the synthetic motor imagery it peaks at C3/C4, where the generator
    put the desynchronisation, while the mean weights do not (measured in docs/eeg.md,
    "Channel attention"). The variant without Euclidean alignment is preferred for the
    picture when it ran, because EA whitens across channels, so an aligned channel is a
    mixture of electrodes.
    """
    name = next((v for v, a in attention.items() if not a["ea"]), next(iter(attention)))
    a = attention[name]
    lines = [f"### Channel attention ({name})", ""]
    w = np.asarray(a["mean"])
    eeg_protocol.plot_channel_topomap(w, channels, plots_dir / "channel_attention_mean.png",
                                      f"DBConformer ({name}): mean channel attention")
    plots.append("channel_attention_mean.png")
    top_mean = eeg_protocol.top_channels(w, channels)
    result["attention"] = {"variant": name, "top_mean": top_mean}
    lines.append(f"Mean attention weight is highest on: {', '.join(top_mean)}.")
    if a.get("by_class") is not None:
        contrast = class_contrast(a["by_class"])
        eeg_protocol.plot_channel_topomap(contrast, channels, plots_dir / "channel_attention.png",
                                          f"DBConformer ({name}): attention change {' vs '.join(classes)}")
        plots.append("channel_attention.png")
        top = eeg_protocol.top_channels(contrast, channels)
        result["attention"]["top_contrast"] = top
        lines.append(f"Attention changes most between {' and '.join(classes)} on: {', '.join(top)}.")
    return lines + [""]
