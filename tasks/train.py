"""The ``train`` stage: fit the domain's transformer (the teacher) and its baselines.

The loop itself is :mod:`tasks.loop`; this stage reads the domain's processed splits,
builds the teacher through the domain contract (:mod:`tasks.domains`), trains it with
per-epoch metrics to MLflow and a resumable checkpoint, fits the domain's scikit-learn
baselines (scored on the test split here, so no estimator is pickled) and runs the
domain's extra training (EEG: its evaluation protocol; turbulence: its neural baselines).
The training curves go to ``reports/<domain>/train_curve.png``: a static image, which
``dvc plots show`` embeds and renders offline (a vega-lite plot of ``train_history.csv``
would need the plotting library from the web).

Under ``torchrun`` (:mod:`tasks.ddp`) every rank runs this function: the teacher trains
data-parallel on all of them, and rank 0 alone writes (checkpoints, MLflow, the outputs below),
fits the baselines and runs the domain's extra training, in this process. The other ranks return
the training summary and write nothing.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from tasks import ddp, domains, store
from tasks.loop import Dataset, count_parameters, fit, save_model, seed_everything
from tasks.params_base import params_hash
from tasks.plotting import pyplot, save_png, wrap_title

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


def train(domain: str, params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """The ``train`` stage: fit the domain's transformer and its baselines.

    Outputs: ``artifacts/<domain>/teacher/`` (weights, config, metrics and the domain's model
    assets), ``artifacts/<domain>/baselines/`` (test-set predictions and timings of the
    baselines, and what the domain's extra training writes), ``reports/<domain>/train.json``,
    ``train_history.csv`` and ``train_curve.png``.

    Raises:
        FileNotFoundError: The processed data is missing (names the preprocess command, or the
            domain's note on what to do first).
    """
    dom = domains.get(domain)
    p = params.section("train", domain)
    paths = store.domain_paths(domain)
    schema = dom.load_schema()
    splits = {name: dom.load_split(name, p.task) for name in ("train", "val", "test")
              if (paths.processed / f"{name}.safetensors").exists()}
    if "train" not in splits:
        raise FileNotFoundError(f"{paths.processed / 'train.safetensors'} does not exist: "
                                + schema.get("note", f"run preprocess first (python -m tasks preprocess {domain})"))
    key = f"{domain}/{p.model.arch}"
    # The teacher's random init (FlowTransformer's layers, the text encoder's classifier) draws from torch's global
    # generator: seeded here, the same params give the same teacher in every process, not one per process start.
    seed_everything(p.seed)
    model = dom.build_model(params, schema)
    info = dom.task_info(params, schema)
    if info.task != p.task:  # the loss and the evaluation would read the logits differently
        raise ValueError(f"train.{domain}.task is {p.task!r} but the domain's task_info says {info.task!r}")
    ckpt_key = params_hash({"train": p.model_dump(mode="json"), "config": model.config_dict(),
                            "data": store.content_hash(paths.processed)})
    if run is not None:
        run.log_params(p.model_dump(mode="json"), prefix="train.")
        run.log_params({"model.key": key, "model.parameters": count_parameters(model)})

    def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
        if run is not None:
            run.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)

    result = fit(model, splits["train"], splits.get("val"), p, task=p.task,
                 checkpoint_dir=paths.checkpoints / ckpt_key, on_epoch=log_epoch, distributed=ddp.active(),
                 name=f"{domain} teacher")
    summary = {
        "key": key, "parameters": count_parameters(model), "best_epoch": result.best_epoch,
        # Without a validation split the loop watches -train_loss; report that as what it is.
        **({f"best_val_{p.select_metric}": result.best_metric} if "val" in splits else
           {"final_train_loss": result.history[-1]["train_loss"] if result.history else None}),
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early, "resumed_from_epoch": result.resumed_from,
        "train_seconds": round(result.seconds, 3),
        # Data-parallel runs say so (absent from a single process's summary, which stays as it was).
        **({"processes": ddp.world_size()} if ddp.active() else {}),
    }
    if not ddp.is_main():
        return {"stage": "train", "domain": domain, "rank": ddp.rank(), **summary, "outputs": {}}

    with store.atomic_dir(paths.teacher) as tdir, store.atomic_dir(paths.baselines) as bdir:
        save_model(tdir, model, key, {**dataclasses.asdict(info), "schema": schema})
        dom.save_assets(tdir, schema)
        store.atomic_write_json(tdir / "metrics.json", {**summary, "history": result.history})
        t0 = time.perf_counter()
        fitted = dom.fit_baselines(params, splits["train"]) if dom.kind == "classification" else {}
        fit_s = round(time.perf_counter() - t0, 3)
        cols, timings = _score_baselines(dom, fitted, splits["test"], info, fit_s) if fitted else ({}, {})
        pl.DataFrame({"y": splits["test"].labels, **cols}).write_parquet(bdir / "predictions.parquet")
        store.atomic_write_json(bdir / "metrics.json", {"baselines": list(fitted), "timings": timings})
        # Domain-specific training beside the teacher (EEG: its protocol; turbulence: neural baselines),
        # in the same atomic folder.
        summary.update(dom.extra_train(params, bdir, run, fitted))
    store.atomic_write_text(paths.reports / "train_history.csv", pl.DataFrame(result.history).write_csv())
    plot_train_curve(result.history, paths.reports / "train_curve.png", f"{domain}: {key}, training curves")
    store.atomic_write_json(paths.reports / "train.json", summary)
    if run is not None:
        run.log_metrics({k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)})
        run.log_artifact(paths.teacher / "config.json", "teacher")
    return {"stage": "train", "domain": domain, **summary,
            "outputs": {"teacher": store.content_hash(paths.teacher), "baselines": store.content_hash(paths.baselines)}}


def plot_train_curve(history: list[dict[str, float]], path: Path, title: str) -> Path:
    """The training curves of one fit as a PNG: losses on the left, the validation metrics on the right.

    Args:
        history: One dict per epoch (``epoch``, ``train_loss``, ``lr`` and the loop's ``val_*`` values).
        path: The image to write (atomically).
        title: The figure's title (wrapped to its width).

    Returns:
        ``path``.
    """
    plt = pyplot()
    frame = pl.DataFrame(history) if history else pl.DataFrame({"epoch": []})
    epochs = frame["epoch"].to_numpy() if "epoch" in frame.columns else np.arange(1, frame.height + 1)
    losses = [c for c in frame.columns if c.endswith("loss")]
    metrics = [c for c in frame.columns if c.startswith("val_") and not c.endswith("loss")]
    fig, axes = plt.subplots(1, 2 if metrics else 1, figsize=(9 if metrics else 5.5, 3.8), layout="constrained",
                             squeeze=False)
    for ax, cols, label in ((axes[0, 0], losses, "loss"), *([(axes[0, 1], metrics, "validation metric")]
                                                            if metrics else [])):
        for i, col in enumerate(cols):
            # Float-cast: a column of nulls (no validation in an epoch) is drawn as a gap, not refused.
            ax.plot(epochs, frame[col].cast(pl.Float64).to_numpy(), label=col, marker="o", markersize=3,
                    linestyle=("-", "--", "-.", ":")[i % 4])
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if cols:
            ax.legend(fontsize=8)
    if not frame.height:
        axes[0, 0].text(0.5, 0.5, "no epoch ran (resumed from a finished checkpoint?)", ha="center",
                        transform=axes[0, 0].transAxes)
    fig.suptitle(wrap_title(title, fig))
    return save_png(fig, path)


def _score_baselines(dom: domains.ClassificationDomain, fitted: dict[str, Any], test: Dataset, info: domains.TaskInfo,
                     fit_s: float) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Each fitted baseline's test-set scores (binary: P(positive); else one column per class) and timings."""
    xt = dom.baseline_features(test)
    cols: dict[str, np.ndarray] = {}
    timings: dict[str, Any] = {}
    for name, est in fitted.items():
        t1 = time.perf_counter()
        proba = est.predict_proba(xt)
        per = (time.perf_counter() - t1) / max(len(xt), 1) * 1e3
        if info.task == "binary":
            cols[name] = proba[:, 1]
        else:
            full = np.zeros((len(xt), len(info.class_names)))
            full[:, est.classes_] = proba
            for j, cname in enumerate(info.class_names):
                cols[f"{name}.{cname}"] = full[:, j]
        timings[name] = {"fit_seconds_all": fit_s, "ms_per_record_batched": per}
    return cols, timings
