"""The ``evaluate`` stage: metrics, plots and the report, every model side by side.

Metrics come from scikit-learn; plots from matplotlib. For the netflow domain
(binary intrusion detection, attack = positive):

* balanced accuracy, F1 of the attack class, macro-F1, per-class precision /
  recall / F1, benign false-positive rate, ROC-AUC, confusion matrix;
* recall per attack family (which campaigns the detector misses);
* latency per window at batch 1 and throughput at a larger batch on CPU.

Outputs: ``reports/<domain>/metrics.json``, ``report.md``, ``plots/*.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tasks import store
from tasks.params import Params


def classification_metrics(
    y: np.ndarray,
    probs: np.ndarray,
    task: str,
    class_names: list[str],
    *,
    threshold: float = 0.5,
    families: np.ndarray | None = None,
    family_names: list[str] | None = None,
) -> dict[str, Any]:
    """Metrics of one model's scores.

    Args:
        y: (N,) true labels (binary flag or class index).
        probs: Binary: (N,) P(positive). Multi-class: (N, K) class probabilities.
        task: ``binary`` or ``multiclass`` (class 0 is the negative / benign class).
        class_names: Names of the label values.
        threshold: Decision threshold of the binary task.
        families: (N,) finer class index of every sample (attack family), for per-family recall.
        family_names: Names of the family indices.

    Returns:
        A JSON-serialisable dict of scalar metrics, per-class tables and the confusion matrix.
    """
    from sklearn.metrics import (
        balanced_accuracy_score,
        brier_score_loss,
        cohen_kappa_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    labels = list(range(len(class_names)))
    if task == "binary":
        pred = (probs >= threshold).astype(np.int64)
        attack_true, attack_pred, attack_score = y, pred, probs
    else:
        pred = probs.argmax(axis=1)
        attack_true, attack_pred, attack_score = (y != 0).astype(int), (pred != 0).astype(int), 1.0 - probs[:, 0]
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y, pred, labels=labels)
    negatives = attack_true == 0
    out: dict[str, Any] = {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "kappa": float(cohen_kappa_score(y, pred, labels=labels)) if len(y) else float("nan"),
        # Macro-F1 over the classes present in labels or predictions: a chronological test split
        # often lacks some attack families, which would otherwise count as F1 = 0.
        "macro_f1": float(f1_score(y, pred, labels=np.union1d(y, pred), average="macro", zero_division=0)),
        "f1": float(f1_score(attack_true, attack_pred, pos_label=1, zero_division=0)),
        "precision": float(precision_score(attack_true, attack_pred, pos_label=1, zero_division=0)),
        "recall": float(recall_score(attack_true, attack_pred, pos_label=1, zero_division=0)),
        "benign_fpr": float(attack_pred[negatives].mean()) if negatives.any() else float("nan"),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.tolist(),
    }
    out["roc_auc"] = (float(roc_auc_score(attack_true, attack_score))
                      if len(np.unique(attack_true)) == 2 else float("nan"))
    if task == "binary" or probs.shape[1] == 2:
        # Calibration of P(positive), as FinAI-BERT reports it (lower is better; 0.25 = always 0.5).
        out["brier"] = float(brier_score_loss(attack_true, np.clip(attack_score, 0.0, 1.0))) if len(y) else float("nan")
    if task == "multiclass" and probs.shape[1] > 2 and len(np.unique(y)) == probs.shape[1]:
        out["roc_auc_ovr_macro"] = float(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    if families is not None and family_names is not None:
        out["family_recall"] = {
            family_names[k]: float((attack_pred[families == k] == (0 if k == 0 else 1)).mean())
            for k in np.unique(families)
        }
    return out


# ----------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: list[list[int]], class_names: list[str], title: str, path: Path) -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4 + 0.4 * len(class_names), 3.5 + 0.4 * len(class_names)))
    ConfusionMatrixDisplay(np.asarray(cm), display_labels=class_names).plot(ax=ax, colorbar=False, values_format="d")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    """One ROC curve per model (attack vs benign)."""
    from sklearn.metrics import auc, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (y, score) in curves.items():
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set_xlabel("false-positive rate (benign flagged)")
    ax.set_ylabel("true-positive rate (attacks caught)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- report
TABLE_COLUMNS = [
    ("balanced_accuracy", "bal. acc"), ("kappa", "kappa"), ("f1", "F1 (attack)"), ("macro_f1", "macro-F1"),
    ("benign_fpr", "benign FPR"), ("roc_auc", "ROC-AUC"), ("latency_ms", "latency ms/window (b=1)"),
    ("throughput_per_s", "windows/s (batched)"), ("bytes", "size (KB)"), ("parameters", "params"),
]
COLUMN_LABELS = {**dict(TABLE_COLUMNS), "accuracy": "accuracy", "precision": "precision", "recall": "recall",
                 "brier": "Brier", "one_step_rel_l2": "one-step rel. L2", "rollout_rel_l2_10": "rel. L2 @10",
                 "rollout_rel_l2_50": "rel. L2 @50", "spectrum_lsd": "spectrum LSD", "stable": "stable",
                 "ms_per_step": "ms/step (b=1)", "speedup_vs_solver": "speed-up vs solver"}
"""Every metric a domain may put in its table (``task_info()["table_columns"]``), with its default header."""


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if key == "bytes":
        return f"{value / 1024:,.0f}"
    if key in ("parameters", "throughput_per_s"):
        return f"{value:,.0f}"
    if key in ("latency_ms", "ms_per_step"):
        return f"{value:.3f}"
    if key == "speedup_vs_solver":
        return f"{value:.1f}x"
    return f"{value:.4f}"


def _columns(keys: list[str] | None) -> list[tuple[str, str]]:
    return TABLE_COLUMNS if keys is None else [(k, COLUMN_LABELS.get(k, k)) for k in keys]


def metrics_table(models: dict[str, dict[str, Any]], labels: dict[str, str] | None = None,
                  columns: list[str] | None = None) -> str:
    """The side-by-side markdown table of every evaluated model (``labels`` renames columns per domain)."""
    labels = labels or {}
    cols = _columns(columns)
    head = "| model | kind | " + " | ".join(labels.get(k, label) for k, label in cols) + " |"
    sep = "|---|---|" + "---:|" * len(cols)
    rows = [f"| {name} | {m.get('kind', '')} | " + " | ".join(_fmt(k, m.get(k)) for k, _ in cols) + " |"
            for name, m in models.items()]
    return "\n".join([head, sep, *rows])


def write_report(domain: str, result: dict[str, Any], path: Path, plots: list[str], *,
                 test_note: str = "windows, the last rows in time order", labels: dict[str, str] | None = None,
                 extra: str = "", columns: list[str] | None = None) -> None:
    models = result["models"]
    threshold = f"; threshold {result['threshold']}" if result.get("threshold") is not None else ""
    lines = [
        f"# formerflow report: {domain}",
        "",
        f"Test split: {result['n_test']} {test_note}. Task: {result['task']}{threshold}. "
        "Latency on CPU, batch 1, median of repeats.",
        "",
        metrics_table(models, labels, columns),
        "",
    ]
    if any("per_class" in m for m in models.values()):
        lines += ["## Per-class results", ""]
    for name, m in models.items():
        if "per_class" not in m:
            continue
        lines.append(f"**{name}**: " + "; ".join(
            f"{c}: P {v['precision']:.3f} R {v['recall']:.3f} F1 {v['f1']:.3f} (n={v['support']})"
            for c, v in m["per_class"].items()))
        if m.get("family_recall"):
            lines.append("  detection rate by family: " + ", ".join(
                f"{k} {v:.3f}" for k, v in m["family_recall"].items()))
        lines.append("")
    if result.get("compression"):
        lines += ["## Compression trade-off", "", compression_table(result["compression"]), ""]
    if extra:
        lines += [extra, ""]
    # Images inline; anything else (the finance attributions page) as a link.
    lines += ["## Plots", ""] + [(f"![{Path(p).stem}](plots/{Path(p).name})" if Path(p).suffix == ".png"
                                  else f"- [{Path(p).name}](plots/{Path(p).name})") for p in plots] + [""]
    store.atomic_write_text(path, "\n".join(lines))


def compression_table(table: dict[str, dict[str, float]]) -> str:
    rows = ["| model | size (KB) | size ratio | latency ms | speed-up |", "|---|---:|---:|---:|---:|"]
    for name, r in table.items():
        rows.append(f"| {name} | {r['bytes'] / 1024:,.1f} | {r['size_ratio']:.3f} | {r['latency_ms']:.3f} | "
                    f"{r['speedup']:.2f}x |")
    return "\n".join(rows)


def evaluate(domain: str, params: Params, run=None) -> dict[str, Any]:
    """Score the teacher, every compressed model and the baselines on the test split.

    Returns:
        The manifest with the metrics of every model and the primary metric.
    """
    import polars as pl

    from tasks import domains
    from tasks.compress import load_any
    from tasks.measure import latency_ms, size_on_disk
    from tasks.train import count_parameters, predict, probabilities

    dom = domains.get(domain)
    if hasattr(dom, "evaluate_models"):
        return _evaluate_fields(domain, dom, params, run)
    p = params.section("evaluate", domain)
    task = params.section("train", domain).task
    paths = store.domain_paths(domain)
    schema = dom.load_schema()
    info = dom.task_info(params, schema)
    test = dom.load_split("test", task)
    y = test.labels
    families = getattr(test, "classes", None)
    folders = _model_folders(paths)
    results: dict[str, dict[str, Any]] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    attack_true = y if task == "binary" else (y != 0).astype(int)
    for name, folder in folders.items():
        model, meta = load_any(folder)
        probs = probabilities(predict(model, test, 1024), task)
        m = classification_metrics(y, probs, task, info["class_names"], threshold=p.threshold,
                                   families=families, family_names=info["family_names"])
        lat = latency_ms(model, model.example_inputs(p.latency_batch_size), p.latency_repeats)
        thr = latency_ms(model, model.example_inputs(p.throughput_batch_size), max(3, p.latency_repeats // 10))
        m.update(kind=meta.get("compression", "transformer"), latency_ms=lat["per_item_ms"],
                 throughput_per_s=1e3 / thr["per_item_ms"], bytes=size_on_disk(folder / "model.safetensors"),
                 parameters=count_parameters(model) if "compression" not in meta else None)
        results[name] = m
        curves[name] = (attack_true, probs if task == "binary" else 1.0 - probs[:, 0])
    base_file = paths.baselines / "predictions.parquet"
    if base_file.exists():
        preds = pl.read_parquet(base_file)
        timings = store.read_json(paths.baselines / "metrics.json").get("timings", {})
        for bname in timings:
            if task == "binary":
                probs = preds[bname].to_numpy()
            else:
                probs = preds.select([f"{bname}.{c}" for c in info["class_names"]]).to_numpy()
            m = classification_metrics(y, probs, task, info["class_names"], threshold=p.threshold,
                                       families=families, family_names=info["family_names"])
            m.update(kind=info.get("baseline_kind", "single-flow baseline"), latency_ms=None,
                     throughput_per_s=1e3 / timings[bname]["ms_per_record_batched"], bytes=None, parameters=None)
            results[bname] = m
            curves[bname] = (attack_true, probs if task == "binary" else 1.0 - probs[:, 0])
    result = {"domain": domain, "task": task, "threshold": p.threshold, "n_test": int(len(y)),
              "models": results, "compression": _compression(paths)}
    with store.atomic_dir(paths.reports / "plots") as plots_dir:
        plot_files = []
        for name, m in results.items():
            f = plots_dir / f"confusion_{name}.png"
            plot_confusion(m["confusion_matrix"], info["class_names"], f"{domain}: {name}", f)
            plot_files.append(f.name)
        plot_roc(curves, plots_dir / "roc.png", f"{domain}: ROC, {info.get('roc_label', 'attack vs benign')} "
                 "(test split)")
        plot_files.insert(0, "roc.png")
        extra_md = ""
        if hasattr(dom, "extra_evaluate"):
            # Domain-specific evaluation beside the test split (EEG: its protocol summary and plots).
            extra_md, extra_plots = dom.extra_evaluate(params, result, plots_dir, scores=curves)
            plot_files += extra_plots
    return _finish(domain, result, info, plot_files, extra_md, run)


def _model_folders(paths) -> dict[str, Path]:
    """The teacher and every compressed model folder, by name."""
    folders = {"teacher": paths.teacher}
    if paths.compressed.exists():
        folders.update({f.name: f for f in sorted(paths.compressed.iterdir()) if (f / "config.json").exists()})
    return folders


def _compression(paths) -> dict[str, Any] | None:
    """The compress stage's size / latency table, when it ran."""
    if not (paths.reports / "compress.json").exists():
        return None
    return store.read_json(paths.reports / "compress.json")["methods"]


def _finish(domain: str, result: dict[str, Any], info: dict[str, Any], plot_files: list[str], extra_md: str,
            run=None) -> dict[str, Any]:
    """Write ``metrics.json`` and ``report.md``, log to MLflow, and return the stage manifest (every domain)."""
    paths = store.domain_paths(domain)
    results = result["models"]
    store.atomic_write_json(paths.reports / "metrics.json", result)
    write_report(domain, result, paths.reports / "report.md", plot_files, labels=info.get("column_labels"),
                 test_note=info.get("test_note", "windows, the last rows in time order"), extra=extra_md,
                 columns=info.get("table_columns"))
    if run is not None:
        for name, m in results.items():
            run.log_metrics({f"{name}.{k}": float(v) for k, v in m.items() if isinstance(v, int | float)})
        for name, m in result.get("protocol", {}).get("summary", {}).items():  # EEG: protocol means per model
            run.log_metrics({f"protocol.{name}.{k}": v["mean"] for k, v in m.items()
                             if isinstance(v, dict) and isinstance(v.get("mean"), float) and np.isfinite(v["mean"])})
        run.log_artifact(paths.reports / "report.md")
        run.log_artifact(paths.reports / "plots", "plots")
    return {"stage": "evaluate", "domain": domain,
            "summary": {n: {k: m.get(k) for k, _ in _columns(info.get("table_columns"))} for n, m in results.items()},
            "table": metrics_table(results, info.get("column_labels"), info.get("table_columns")), "extra": extra_md,
            "outputs": {"metrics": store.content_hash(paths.reports / "metrics.json")}}


def _evaluate_fields(domain: str, dom, params: Params, run=None) -> dict[str, Any]:
    """The evaluate stage of a field domain (turbulence): its ``evaluate_models`` rolls every model out.

    Same outputs and report layout as the classification domains: ``metrics.json`` (``models`` ->
    metrics, what register reads), ``report.md`` (the table, the compression trade-off, the domain's
    sections and plots) and ``plots/``, all written atomically.
    """
    paths = store.domain_paths(domain)
    info = dom.task_info(params, dom.load_schema())
    with store.atomic_dir(paths.reports / "plots") as plots_dir:
        result, extra_md, plot_files = dom.evaluate_models(params, _model_folders(paths), plots_dir)
    result = {"domain": domain, "task": info["task"], "threshold": None, **result,
              "compression": _compression(paths)}
    return _finish(domain, result, info, plot_files, extra_md, run)
