"""The ``evaluate`` stage: metrics, plots and the report, every model side by side.

Metrics come from scikit-learn; plots from matplotlib. For a classification domain
(class 0 is the negative class, every other class positive; the domain's
:class:`tasks.domains.TaskInfo` names them and the scored items):

* accuracy, balanced accuracy, Cohen's kappa, F1 / precision / recall of the positive
  class, macro-F1, per-class precision / recall / F1, false-positive rate, ROC-AUC,
  Brier score, confusion matrix;
* recall per finer class of the positives (netflow: attack family), when the domain has them;
* latency per item at batch 1 and throughput at a larger batch on CPU.

A field domain (turbulence) rolls its models out itself (``evaluate_models``); the stage
loads every model folder for it and writes the same outputs.

Outputs: ``reports/<domain>/metrics.json`` (every number; register reads it), ``summary.json`` (the few
numbers ``dvc metrics show`` prints, one flat dict with the same keys for every domain), ``report.md``
(headed by when, from which code and params, and the registry's state: :class:`ReportHeader`) and
``plots/`` (images only, so ``dvc plots show`` renders them offline).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from sklearn.metrics import ConfusionMatrixDisplay, auc, balanced_accuracy_score, f1_score, roc_curve

from tasks import domains, store, tracking
from tasks.compress import load_any
from tasks.compress.choose import choose, method_sections, nested_plot, pareto_markdown, pareto_plots
from tasks.domains import ClassificationDomain, LoadedModel, TaskInfo
from tasks.loop import count_parameters, hard_predictions, predict, probabilities
from tasks.measure import classification_metrics, latency_ms, size_on_disk  # metrics: shared with score
from tasks.params import ParamsError, load_params, params_diff
from tasks.params_base import STAGES, params_hash
from tasks.plotting import curve_style, pyplot, wrap_title
from tasks.store import DomainPaths

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


DEFAULT_VIEW = ("balanced_accuracy", "macro_f1", "f1", "fpr")
"""What the report shows of a model with its own threshold at the default rule (0.5 / argmax), beside it."""


def own_threshold_metrics(y: np.ndarray, probs: np.ndarray, task: str, class_names: list[str], meta: dict[str, Any],
                          families: np.ndarray | None = None,
                          family_names: list[str] | None = None) -> dict[str, Any] | None:
    """Metrics of a model folder that records its own decision threshold (``config.json``: ``threshold`` and
    ``threshold_choice``, chosen on validation when the folder was written), at that threshold; None for a folder
    without one.

    A multi-class model applies it to its most probable positive class against class 0: below it the item is
    class 0, else that class (:func:`tasks.loop.hard_predictions`; 0.5 is the argmax). Beside the metrics: ``threshold``, ``threshold_choice``,
    ``at_default`` (the same metrics at 0.5 / argmax, as a model without its own threshold is scored) and, for a
    multi-class model, ``binary`` (class 0 against the rest: balanced accuracy and macro-F1).
    """
    if not meta.get("threshold_choice"):
        return None
    thr = float(meta["threshold"])
    pred = (hard_predictions(probs, task, thr) if task == "binary"
            else hard_predictions(probs, task, negative_threshold=thr))
    m = classification_metrics(y, probs, task, class_names, threshold=thr, families=families,
                               family_names=family_names, pred=pred)
    default = classification_metrics(y, probs, task, class_names, families=families, family_names=family_names)
    m.update(threshold=thr, threshold_choice=meta["threshold_choice"],
             at_default={k: default[k] for k in DEFAULT_VIEW})
    if task != "binary":
        m["binary"] = _binary_view(y != 0, pred != 0)
        m["at_default"]["binary"] = _binary_view(y != 0, probs.argmax(axis=1) != 0)
    return m


def _binary_view(pos_true: np.ndarray, pos_pred: np.ndarray) -> dict[str, float]:
    """Negative class against the rest (netflow: benign vs attack) of a multi-class model's predictions."""
    t, p = pos_true.astype(int), pos_pred.astype(int)
    return {"balanced_accuracy": float(balanced_accuracy_score(t, p)),
            "macro_f1": float(f1_score(t, p, labels=np.union1d(t, p), average="macro", zero_division=0))}


# ----------------------------------------------------------------------------- plots
def plot_confusion(cm: list[list[int]], class_names: list[str], title: str, path: Path) -> None:
    """Confusion matrix with counts; class names slanted when they would collide, title wrapped to fit."""
    plt = pyplot()
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(4 + 0.4 * n, 3.5 + 0.4 * n), layout="constrained")
    # Horizontal names collide once the longest no longer fits its column (~0.4 in, ~6 characters).
    slant = 45 if n > 2 and max(map(len, class_names), default=0) > 6 else "horizontal"
    ConfusionMatrixDisplay(np.asarray(cm), display_labels=class_names).plot(
        ax=ax, colorbar=False, values_format="d", xticks_rotation=slant)
    if slant != "horizontal":
        plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    ax.set_title(wrap_title(title, fig))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str,
             positive: str = "positive", negative: str = "negative") -> None:
    """One ROC curve per model (``positive`` vs ``negative``).

    A float model and its int8 copy often score alike, so each curve gets its own line style and
    markers (:func:`tasks.plotting.curve_style`) and is drawn above the ones before it: the
    earlier curve shows as a wide line around the later one instead of hiding under it.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, zorder=1)
    drawn = 0
    for name, (y, score) in curves.items():
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, score)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})", **curve_style(drawn, len(fpr)))
        drawn += 1
    ax.set_xlabel(f"false-positive rate ({negative} flagged)")
    ax.set_ylabel(f"true-positive rate ({positive} caught)")
    ax.set_title(wrap_title(title, fig))
    if drawn:
        ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- report
CLASSIFICATION_COLUMNS = ["accuracy", "balanced_accuracy", "kappa", "f1", "macro_f1", "fpr", "roc_auc", "latency_ms",
                          "throughput_per_s", "bytes", "parameters"]
"""The table of a classification domain unless its TaskInfo names other columns."""
COLUMN_LABELS = {"balanced_accuracy": "bal. acc", "kappa": "kappa", "macro_f1": "macro-F1", "roc_auc": "ROC-AUC",
                 "bytes": "size (KB)", "parameters": "params", "accuracy": "accuracy", "brier": "Brier",
                 "one_step_rel_l2": "one-step rel. L2", "rollout_rel_l2_10": "rel. L2 @10",
                 "rollout_rel_l2_50": "rel. L2 @50", "spectrum_lsd": "spectrum LSD", "stable": "stable",
                 "ms_per_step": "ms/step (b=1)", "speedup_vs_solver": "speed-up vs solver"}
"""Default headers of the metrics a table may show; the class- and item-dependent ones come from TaskInfo."""


def column_labels(info: TaskInfo) -> dict[str, str]:
    """Headers of the report's table in the domain's words (``F1 (attack)``, ``latency ms/sentence (b=1)``)."""
    return {**COLUMN_LABELS, "f1": f"F1 ({info.positive})", "precision": f"precision ({info.positive})",
            "recall": f"recall ({info.positive})", "fpr": f"FPR ({info.negative})",
            "latency_ms": f"latency ms/{info.item} (b=1)", "throughput_per_s": f"{info.item}s/s (batched)",
            **info.column_labels}


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


def _columns(info: TaskInfo) -> list[str]:
    return info.table_columns or CLASSIFICATION_COLUMNS


def metrics_table(models: dict[str, dict[str, Any]], info: TaskInfo) -> str:
    """The side-by-side markdown table of every evaluated model, in the domain's columns and words."""
    labels = column_labels(info)
    cols = _columns(info)
    head = "| model | kind | " + " | ".join(labels.get(k, k) for k in cols) + " |"
    sep = "|---|---|" + "---:|" * len(cols)
    rows = [f"| {name} | {m.get('kind', '')} | " + " | ".join(_fmt(k, m.get(k)) for k in cols) + " |"
            for name, m in models.items()]
    return "\n".join([head, sep, *rows])


def threshold_table(models: dict[str, dict[str, Any]], fallback: float | None) -> str:
    """The decision threshold of every model that chose its own on validation, and its test metrics there and at
    the default rule (0.5 / argmax)."""
    multi = any("binary" in m for m in models.values())
    head = ("| model | rule | chosen on | threshold | objective (val) | macro-F1 @default | macro-F1 @chosen "
            "| bal. acc @default | bal. acc @chosen |" + (" binary macro-F1 @default | binary macro-F1 @chosen |"
                                                         if multi else ""))
    rows = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if multi else "")]
    for name, m in models.items():
        c, d = m["threshold_choice"], m["at_default"]
        split = f"{c['split']} (n={c['n']})" if c.get("split") else (c.get("note") or "–")
        if c.get("chosen_for", name) != name and name != "teacher":
            split += f", chosen for {c['chosen_for']}"
        row = (f"| {name} | {c['rule']} | {split} | {m['threshold']:.6g} | {_fmt('objective', c.get('objective'))} "
               f"| {d['macro_f1']:.4f} | {m['macro_f1']:.4f} | {d['balanced_accuracy']:.4f} "
               f"| {m['balanced_accuracy']:.4f} |")
        if multi:
            row += f" {d['binary']['macro_f1']:.4f} | {m['binary']['macro_f1']:.4f} |" if "binary" in m else " – | – |"
        rows.append(row)
    others = f" Models without their own threshold are scored at {fallback}." if fallback is not None else ""
    return ("## Decision thresholds (chosen on the validation split)\n\n"
            "Each model's threshold on P(positive) was chosen on the validation split's scores when its folder was "
            "written and is stored in its config.json, which the registered model and scoring apply; the table's "
            f"metrics are on the test split.{others}\n\n" + "\n".join(rows))


# ----------------------------------------------------------------------------- the report's header
REGISTRY_LINE = "- **Registry**"
"""How the header's registry line starts: register finds and rewrites it (:func:`update_registry_line`)."""


@dataclass(frozen=True)
class ReportHeader:
    """What a report was made from and when: the lines at the top of ``report.md``.

    Attributes:
        written: UTC time the report was written.
        commit: The git commit of the project, or ``unknown`` (not a git work tree).
        dirty: ``no``, ``yes (<n> files: ...)`` or ``unknown``: changes to tracked or untracked files that
            git does not ignore, outside what a run writes (:data:`tasks.tracking.GENERATED`); the rule of the runs' ``git.dirty``
            tag (:func:`tasks.tracking.git_state`).
        params_hash: :func:`tasks.params_base.params_hash` of the resolved params (params.yaml + profiles +
            ``--set``), as the MLflow tag ``params.hash`` of the stage's run records it.
        profiles: The profiles the stage can see (``$FORMERFLOW_PROFILE``), or a note that it sees none.
        differs: Where the domain's resolved params differ from params.yaml alone (profiles and ``--set``
            together), ``key: params.yaml X, this run Y``; empty when they do not.
        registry: The registry line (:func:`registry_line`).
    """

    written: str
    commit: str
    dirty: str
    params_hash: str
    profiles: str
    differs: tuple[str, ...]
    registry: str

    def markdown(self, most: int = 6) -> list[str]:
        """The header as markdown list lines, at most ``most`` params differences spelled out."""
        if self.differs:
            shown = "; ".join(f"`{d}`" for d in self.differs[:most])
            more = f"; and {len(self.differs) - most} more" if len(self.differs) > most else ""
            differs = f"differs from params.yaml in {len(self.differs)} key(s): {shown}{more}"
        else:
            differs = "same as params.yaml"
        return [f"- **Written**: {self.written}",
                f"- **Code**: git `{self.commit}` (dirty: {self.dirty})",
                f"- **Params**: hash `{self.params_hash}` of the resolved params (params.yaml + profiles + `--set`; "
                "the `params.hash` tag of the stage's MLflow run)",
                f"- **Profiles and overrides**: {self.profiles}; this domain's params {differs}",
                self.registry]


def git_state(root: Path) -> tuple[str, str]:
    """``(commit, dirty)`` of the project at ``root`` for the header (:class:`ReportHeader`): the rule of the
    lineage tags (:func:`tasks.tracking.git_state`), so a report and its MLflow runs agree; ``("unknown",
    "unknown")`` outside a git work tree or without git."""
    state = tracking.git_state(root)
    return state.commit, state.describe()


def registry_line(domain: str, champion: str | None, candidate: str | None, note: str) -> str:
    """The header's registry line: the versions behind ``champion`` and ``candidate`` and when they were read."""
    def v(version: str | None) -> str:
        return f"v{version}" if version else "none"

    return (f"{REGISTRY_LINE} (`{tracking.registered_model_name(domain)}`): champion {v(champion)}, "
            f"candidate {v(candidate)}; {note}")


def registry_now(domain: str, tracked: bool) -> str:
    """The registry line as evaluate writes it: the aliases before this run's register, which rewrites it.

    Untracked (``--no-track``, a test calling the stage) the registry is not opened: that would create the
    project's MLflow store.
    """
    if not tracked:
        return registry_line(domain, None, None, "not read (evaluate ran without MLflow tracking); register "
                                                 "rewrites this line")
    name = tracking.registered_model_name(domain)
    try:
        champion, candidate = (tracking.get_alias(name, alias) for alias in ("champion", "candidate"))
    except Exception as exc:  # an unreachable tracking server costs the line, not the report
        return registry_line(domain, None, None, f"unknown: the registry could not be read ({type(exc).__name__}: "
                                                 f"{exc})")
    return registry_line(domain, champion and champion.version, candidate and candidate.version,
                         "as read by evaluate, before this run's register (register rewrites this line)")


def update_registry_line(path: Path, line: str) -> bool:
    """Replace the registry line of the report at ``path`` with ``line`` (register, after moving the aliases).

    Returns:
        False when there is no report or it has no registry line (written before the header existed).
    """
    if not path.exists():
        return False
    lines = path.read_text().split("\n")
    hits = [i for i, text in enumerate(lines) if text.startswith(REGISTRY_LINE)]
    if not hits:
        return False
    lines[hits[0]] = line
    store.atomic_write_text(path, "\n".join(lines))
    return True


def report_header(domain: str, params: Params, tracked: bool) -> ReportHeader:
    """The header of ``domain``'s report for a stage that runs on ``params``.

    A stage receives the resolved params, not how they were made: the profiles it names are those of
    ``$FORMERFLOW_PROFILE`` (which ``formerflow``'s ``--profile`` sets for the stages it runs), and the
    differences from params.yaml alone show what profiles and ``--set`` changed, whichever way they were given.
    """
    root = store.project_root()
    commit, dirty = git_state(root)
    effective = params.model_dump(mode="json")
    try:
        base = load_params(profiles=[], overrides=[]).model_dump(mode="json")
        differs = tuple(params_diff(effective, base, [f"{stage}.{domain}" for stage in STAGES]))
    except (ParamsError, OSError) as exc:
        differs = (f"(params.yaml alone does not load: {exc})",)
    env = os.environ.get("FORMERFLOW_PROFILE", "").strip()
    # formerflow's --profile sets $FORMERFLOW_PROFILE for the stages it runs (tasks.params.announce_profiles)
    profiles = f"profiles `{env}`" if env else "no profile"
    return ReportHeader(
        written=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), commit=commit, dirty=dirty,
        # As tracking.log_resolved_params hashes them (URLs redacted), so the header and the run's tag agree.
        params_hash=params_hash(store.redact(effective)), profiles=profiles, differs=differs,
        registry=registry_now(domain, tracked))


def write_report(domain: str, result: dict[str, Any], path: Path, plots: list[str], info: TaskInfo,
                 extra: str = "", header: ReportHeader | None = None) -> None:
    """Write ``report.md``: the header, the metrics table, thresholds, per-class results, extra sections, plots.

    Args:
        domain: The domain key.
        result: What ``metrics.json`` holds.
        path: The report file.
        plots: Image file names in the report's ``plots/`` folder.
        info: The domain's task description (columns and words of the table).
        extra: Markdown sections after the tables (the Pareto table, the domain's own).
        header: The header (:func:`report_header`); None leaves it out.
    """
    models = result["models"]
    threshold = f"; threshold {result['threshold']}" if result.get("threshold") is not None else ""
    lines = [f"# formerflow report: {domain}", ""]
    if header is not None:
        lines += [*header.markdown(), ""]
    lines += [
        f"Test split: {result['n_test']} {info.split_note}. Task: {result['task']}{threshold}. "
        "Latency on CPU, batch 1, median of repeats.",
        "",
        metrics_table(models, info),
        "",
    ]
    own = {name: m for name, m in models.items() if "threshold_choice" in m}
    if own:
        lines += [threshold_table(own, result.get("threshold")), ""]
    if any("per_class" in m for m in models.values()):
        lines += ["## Per-class results", ""]
    for name, m in models.items():
        if "per_class" not in m:
            continue
        lines.append(f"**{name}**: " + "; ".join(
            f"{c}: P {v['precision']:.3f} R {v['recall']:.3f} F1 {v['f1']:.3f} (n={v['support']})"
            for c, v in m["per_class"].items()))
        if m.get("family_recall"):
            lines.append("  recall by family: " + ", ".join(
                f"{k} {v:.3f}" for k, v in m["family_recall"].items()))
        lines.append("")
    if extra:
        lines += [extra, ""]
    lines += ["## Plots", ""] + [f"![{Path(p).stem}](plots/{Path(p).name})" for p in plots] + [""]
    store.atomic_write_text(path, "\n".join(lines))


# ----------------------------------------------------------------------------- the compact views
COST_COLUMNS = ("latency_ms", "ms_per_step", "throughput_per_s", "bytes", "parameters", "speedup_vs_solver")
KEY_METRICS = ("macro_f1", "f1", "roc_auc", "balanced_accuracy")
"""The metrics a compact table shows beside the primary one, in this order of preference (when the domain's
table has them; otherwise its first quality columns)."""


def compact_columns(info: TaskInfo, primary: str, n_key: int = 2) -> list[str]:
    """The columns of the compact table: the primary metric, ``n_key`` key metrics, batch-1 latency, size."""
    cols = _columns(info)
    quality = [k for k in (*[k for k in KEY_METRICS if k in cols], *cols)
               if k != primary and k not in COST_COLUMNS]
    latency = "ms_per_step" if "ms_per_step" in cols else "latency_ms"
    return [primary, *dict.fromkeys(quality).keys()][: 1 + n_key] + [latency, "bytes"]


def compact_table(models: dict[str, dict[str, Any]], info: TaskInfo, primary: str) -> str:
    """The metrics table narrowed to :func:`compact_columns` (what fits a Prefect artifact's width)."""
    labels = column_labels(info)
    cols = compact_columns(info, primary)
    head = "| model | kind | " + " | ".join(labels.get(k, k) for k in cols) + " |"
    rows = [f"| {name} | {m.get('kind', '')} | " + " | ".join(_fmt(k, m.get(k)) for k in cols) + " |"
            for name, m in models.items()]
    return "\n".join([head, "|---|---|" + "---:|" * len(cols), *rows])


def _number(value: Any) -> float | None:
    """A finite float, or None (JSON null: ``dvc metrics show`` prints ``-``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        return None
    return float(value)


def summary(result: dict[str, Any], primary: str, higher_is_better: bool) -> dict[str, Any]:
    """``summary.json``: the handful of numbers ``dvc metrics show`` prints, the same keys for every domain.

    ``metric`` names the primary metric; ``teacher``, ``served`` and ``best_baseline`` are its values for the
    teacher, the variant the compression choice serves (``variant``) and the best model that is neither the
    teacher nor a compressed variant; ``speedup`` is the teacher's batch-1 latency over the served variant's,
    ``size_ratio`` the served variant's size on disk over the teacher's.
    """
    models = result["models"]
    teacher = models.get("teacher", {})
    variant = (result.get("choice") or {}).get("variant", "teacher")
    served = models.get(variant, {})
    own = {"teacher", *(result.get("compression") or {})}
    baselines = [v for n, m in models.items() if n not in own and (v := _number(m.get(primary))) is not None]
    t_lat, s_lat = _number(teacher.get("latency_ms")), _number(served.get("latency_ms"))
    t_size, s_size = _number(teacher.get("bytes")), _number(served.get("bytes"))
    return {"metric": primary, "teacher": _number(teacher.get(primary)), "variant": variant,
            "served": _number(served.get(primary)),
            "best_baseline": (max if higher_is_better else min)(baselines) if baselines else None,
            "speedup": round(t_lat / s_lat, 3) if t_lat and s_lat else None,
            "size_ratio": round(s_size / t_size, 3) if t_size and s_size else None}


# ----------------------------------------------------------------------------- the stage
def evaluate(domain: str, params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """Score the teacher, every compressed model and the baselines on the test split.

    Returns:
        The manifest with the metrics of every model and the primary metric.
    """
    dom = domains.get(domain)
    paths = store.domain_paths(domain)
    info = dom.task_info(params, dom.load_schema())
    # Hashed before anything is loaded: a folder replaced while the stage runs then no longer matches what
    # metrics.json records, and register refuses it (hashed after, a swap would go unnoticed).
    measured = measured_inputs(paths, model_folders(paths, baselines=dom.kind == "field"))
    with store.atomic_dir(paths.reports / "plots") as plots_dir:
        if dom.kind == "field":
            models = {name: LoadedModel(*load_any(folder), folder) for name, folder in model_folders(paths).items()}
            result, extra_md, plot_files = dom.evaluate_models(params, models, plots_dir)
            result = {"domain": domain, "task": info.task, "threshold": None, **result,
                      "compression": _compression(paths)}
        else:
            result, extra_md, plot_files = _evaluate_classifier(domain, dom, params, info, plots_dir)
        choice_md, choice_plots = _choose_variant(domain, params, result, plots_dir)
        check_images(plots_dir)
    result["measured_on"] = measured
    return _finish(domain, params, result, info, [*choice_plots, *plot_files],
                   "\n\n".join(filter(None, [choice_md, extra_md])), run)


IMAGE_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg", ".svg")
"""What ``reports/<domain>/plots/`` may hold: DVC lists the folder as image plots (``dvc plots show`` embeds
them; anything else there it fails to load)."""


def check_images(plots_dir: Path) -> None:
    """Refuse a plots folder holding anything but images, naming the files (a page goes beside report.md)."""
    other = sorted(f.name for f in plots_dir.iterdir() if f.suffix.lower() not in IMAGE_SUFFIXES)
    if other:
        raise ValueError(f"reports/{plots_dir.parent.name}/plots/ may hold images only ({', '.join(IMAGE_SUFFIXES)}), "
                         f"but the evaluate stage wrote {', '.join(other)} there: write pages beside report.md")


def _choose_variant(domain: str, params: Params, result: dict[str, Any], plots_dir: Path) -> tuple[str, list[str]]:
    """The Pareto table of the teacher and its compressed variants, and the one to serve (``result["choice"]``).

    Also written on its own to ``reports/<domain>/compress.md``.
    """
    paths = store.domain_paths(domain)
    reg, cp = params.section("register", domain), params.section("compress", domain)
    compressed = result.get("compression") or {}
    rows = {n: m for n, m in result["models"].items() if n == "teacher" or n in compressed}
    for name, row in rows.items():  # a packed int8 module hides its parameters: the float count before quantizing
        if row.get("parameters") is None and name in compressed:
            row["parameters"] = compressed[name].get("parameters")
    choice = choose(rows, primary=reg.primary_metric, higher_is_better=reg.higher_is_better, budget=cp.budget,
                    objective=cp.objective)
    result["choice"] = choice
    table = pareto_markdown(rows, choice, reg.primary_metric, reg.higher_is_better, compressed)
    sections = method_sections(rows, reg.primary_metric, reg.higher_is_better, compressed)
    if sections:
        table = f"{table}\n\n{sections}"
    plots = pareto_plots(rows, choice, reg.primary_metric, reg.higher_is_better, plots_dir, domain)
    plots += nested_plot(rows, compressed, reg.primary_metric, reg.higher_is_better, plots_dir, domain)
    images = "\n\n".join(f"![{Path(f).stem}](plots/{f})" for f in plots)
    store.atomic_write_text(paths.reports / "compress.md", f"# formerflow compression: {domain}\n\n{table}\n\n{images}\n")
    return f"## Compression: the Pareto table and the variant served\n\n{table}", plots


def _evaluate_classifier(domain: str, dom: ClassificationDomain, params: Params, info: TaskInfo,
                         plots_dir: Path) -> tuple[dict[str, Any], str, list[str]]:
    """Every model folder and baseline of a classification domain on its test split; plots; the domain's section."""
    p = params.section("evaluate", domain)
    paths = store.domain_paths(domain)
    task = info.task
    threshold = info.threshold if info.threshold is not None else 0.5
    test = dom.load_split("test", task)
    y = test.labels
    families = test.classes if info.family_names is not None else None
    results: dict[str, dict[str, Any]] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    loaded: dict[str, LoadedModel] = {}
    pos_true = y if task == "binary" else (y != 0).astype(int)
    for name, folder in model_folders(paths, baselines=False).items():
        model, meta = load_any(folder)
        loaded[name] = LoadedModel(model, meta, folder)
        probs = probabilities(predict(model, test, 1024), task)
        # A folder that records its own threshold (chosen on validation when it was written) is scored at it,
        # as the registered pyfunc applies it; any other at the evaluate section's threshold.
        m = own_threshold_metrics(y, probs, task, info.class_names, meta, families, info.family_names)
        if m is None:
            m = classification_metrics(y, probs, task, info.class_names, threshold=threshold,
                                       families=families, family_names=info.family_names)
        lat = latency_ms(model, model.example_inputs(p.latency_batch_size), p.latency_repeats)
        # One warm-up call is enough for a batch (kernel choice and allocation happen in it); five cost the text
        # encoder ~3 s per model.
        thr = latency_ms(model, model.example_inputs(p.throughput_batch_size), max(3, p.latency_repeats // 10),
                         warmup=1)
        m.update(kind=meta.get("compression", "transformer"), latency_ms=lat["per_item_ms"],
                 throughput_per_s=1e3 / thr["per_item_ms"], bytes=size_on_disk(folder / "model.safetensors"),
                 parameters=count_parameters(model) if "compression" not in meta else None)
        results[name] = m
        curves[name] = (pos_true, probs if task == "binary" else 1.0 - probs[:, 0])
    base_file = paths.baselines / "predictions.parquet"
    if base_file.exists():
        preds = pl.read_parquet(base_file)
        timings = store.read_json(paths.baselines / "metrics.json").get("timings", {})
        for bname in timings:
            if task == "binary":
                probs = preds[bname].to_numpy()
            else:
                probs = preds.select([f"{bname}.{c}" for c in info.class_names]).to_numpy()
            m = classification_metrics(y, probs, task, info.class_names, threshold=threshold,
                                       families=families, family_names=info.family_names)
            m.update(kind=info.baseline_kind, latency_ms=None,
                     throughput_per_s=1e3 / timings[bname]["ms_per_record_batched"], bytes=None, parameters=None)
            results[bname] = m
            curves[bname] = (pos_true, probs if task == "binary" else 1.0 - probs[:, 0])
    result = {"domain": domain, "task": task, "threshold": info.threshold, "n_test": int(len(y)),
              "models": results, "compression": _compression(paths)}
    plot_files = []
    for name, m in results.items():
        f = plots_dir / f"confusion_{name}.png"
        plot_confusion(m["confusion_matrix"], info.class_names, f"{domain}: {name}", f)
        plot_files.append(f.name)
    plot_roc(curves, plots_dir / "roc.png", f"{domain}: ROC, {info.positive} vs {info.negative} (test split)",
             info.positive, info.negative)
    plot_files.insert(0, "roc.png")
    # Domain-specific evaluation beside the test split (EEG: its protocol summary; finance: its checks).
    extra_md, extra_plots = dom.extra_evaluate(params, result, plots_dir, curves, loaded)
    return result, extra_md, plot_files + extra_plots


def model_folders(paths: DomainPaths, baselines: bool = True) -> dict[str, Path]:
    """Every model folder of a domain by name: the teacher, each compressed model and (with ``baselines``)
    each neural baseline saved as a model folder (``artifacts/<domain>/baselines/<name>/config.json``)."""
    folders = {"teacher": paths.teacher}
    for parent in (paths.compressed, *([paths.baselines] if baselines else [])):
        if parent.exists():
            folders.update({f.name: f for f in sorted(parent.iterdir()) if (f / "config.json").exists()})
    return folders


def measured_inputs(paths: DomainPaths, folders: dict[str, Path]) -> dict[str, str]:
    """Content hashes of the processed data and of each model folder, by path relative to the project root.

    ``metrics.json`` records them as ``measured_on``; register recomputes them and refuses metrics that were
    measured on other files than the folders hold now (a re-trained teacher, an interrupted evaluate).
    """
    def rel(path: Path) -> str:
        return path.relative_to(paths.root).as_posix()

    return {rel(paths.processed): store.content_hash(paths.processed),
            **{rel(folder): store.content_hash(folder) for folder in folders.values()}}


def _compression(paths: DomainPaths) -> dict[str, Any] | None:
    """The compress stage's size / latency table, when it ran."""
    if not (paths.reports / "compress.json").exists():
        return None
    return store.read_json(paths.reports / "compress.json")["methods"]


def _finish(domain: str, params: Params, result: dict[str, Any], info: TaskInfo, plot_files: list[str],
            extra_md: str, run: StageRun | None = None) -> dict[str, Any]:
    """Write ``metrics.json``, ``summary.json`` and ``report.md``, log to MLflow, and return the stage manifest
    (every domain)."""
    paths = store.domain_paths(domain)
    results = result["models"]
    reg = params.section("register", domain)
    store.atomic_write_json(paths.reports / "metrics.json", result)
    store.atomic_write_json(paths.reports / "summary.json", summary(result, reg.primary_metric, reg.higher_is_better))
    write_report(domain, result, paths.reports / "report.md", plot_files, info, extra=extra_md,
                 header=report_header(domain, params, tracked=run is not None))
    if run is not None:
        for name, m in results.items():
            run.log_metrics({f"{name}.{k}": float(v) for k, v in m.items() if isinstance(v, int | float)})
        for name, m in result.get("protocol", {}).get("summary", {}).items():  # EEG: protocol means per model
            run.log_metrics({f"protocol.{name}.{k}": v["mean"] for k, v in m.items()
                             if isinstance(v, dict) and isinstance(v.get("mean"), float) and np.isfinite(v["mean"])})
        run.log_artifact(paths.reports / "report.md")
        run.log_artifact(paths.reports / "summary.json")
        run.log_artifact(paths.reports / "plots", "plots")
        for page in sorted(paths.reports.glob("*.html")):  # a domain's pages beside the report (finance's attributions)
            run.log_artifact(page)
    report = paths.reports / "report.md"
    return {"stage": "evaluate", "domain": domain,
            "summary": {n: {k: m.get(k) for k in _columns(info)} for n, m in results.items()},
            "table": metrics_table(results, info), "extra": extra_md,
            # What a narrow view (the Prefect artifact) shows, and where the whole report is.
            "compact_table": compact_table(results, info, reg.primary_metric),
            "served": (result.get("choice") or {}).get("variant"), "report": report.relative_to(paths.root).as_posix(),
            "outputs": {"metrics": store.content_hash(paths.reports / "metrics.json")}}
