"""The neural baselines of the ``turbulence`` domain (FNO, IFactFormer-o), trained by the shared loop on the teacher's
pairs and saved as model folders beside it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import models
from tasks import store
from tasks.domains.turbulence.configs import BASELINE_KEYS, data_config, fit_lifting
from tasks.domains.turbulence.data import NAME, load_schema, load_split
from tasks.loop import count_parameters, fit, save_model
from tasks.params_base import params_hash

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


def train_baselines(params: Params, out: Path, run: StageRun | None = None) -> dict[str, Any]:
    """Train the neural baselines (FNO, IFactFormer-o) with the shared loop on the teacher's pairs.

    Each is saved like the teacher (``out/<name>/model.safetensors`` + ``config.json`` + ``metrics.json``)
    and evaluated beside it. ``baselines`` (the stage's scikit-learn ones) is unused.
    """
    p = params.train.turbulence
    paths = store.domain_paths(NAME)
    schema = load_schema()
    train, val = load_split("train"), (load_split("val") if schema["trajectories"]["val"] else None)
    summary: dict[str, Any] = {}
    for name in p.baselines:
        key, base = BASELINE_KEYS[name]
        # IFactFormer-o is the teacher with chained kernels (same width, heads, loop), so the two differ
        # only in how the axis kernels combine; FNO has its own architecture config.
        own = dict(p.model.config) if key == f"{NAME}/{p.model.arch}" else {}
        cfg = fit_lifting(key, {**own, **base, **p.baseline_configs.get(name, {}), **data_config(schema, p.residual)})
        model = models.build(key, cfg)
        ckpt = paths.checkpoints / params_hash({"train": p.model_dump(mode="json"), "baseline": name, "config": cfg,
                                                "data": store.content_hash(paths.processed)})

        def log_epoch(epoch: int, metrics: dict[str, float], _name: str = name) -> None:
            if run is not None:
                run.log_metrics({f"{_name}.{k}": v for k, v in metrics.items() if k != "epoch"}, step=epoch)

        print(f"training baseline {name} ({key}, {count_parameters(model):,} parameters)")
        result = fit(model, train, val, p, task="regression", checkpoint_dir=ckpt, on_epoch=log_epoch,
                     name=f"turbulence baseline {name}")
        folder = out / name
        folder.mkdir()
        save_model(folder, model, key, {"task": "regression", "schema": schema})
        row = {"key": key, "parameters": count_parameters(model), "best_epoch": result.best_epoch,
               "best_val_rel_l2": result.best_metric if val is not None else None,
               "train_seconds": round(result.seconds, 3)}
        store.atomic_write_json(folder / "metrics.json", {**row, "history": result.history})
        summary.update({f"{name}.{k}": v for k, v in row.items() if k != "key"})
    return summary
