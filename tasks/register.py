"""The ``register`` stage: log the evaluated model to MLflow's registry and apply the promotion gate.

Every evaluated model becomes a new version of ``formerflow-<domain>`` with
alias ``candidate``. The gate (``register.<domain>`` params) moves the alias
``champion`` to it only when its primary metric is at least the current
champion's plus ``min_delta`` and its per-window latency is within the
budget. The decision and its reason are written to
``reports/<domain>/registry.json`` and tagged on the version.

The model is packaged as an MLflow pyfunc (:class:`tasks.serving.FormerflowModel`)
around the project's own model folder (safetensors + config), so services
load it with ``mlflow.pyfunc.load_model("models:/formerflow-<domain>@champion")``.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
from mlflow.exceptions import MlflowException

from tasks import store, tracking

if TYPE_CHECKING:
    from tasks.params import Params

PIP_REQUIREMENTS = ["torch==2.13.0", "torchao==0.18.0", "mlflow==3.17.2", "polars==2.1.0", "safetensors", "numpy",
                    "pydantic>=2.7"]


def gate(candidate: dict[str, float], champion: dict[str, float] | None, primary: str, min_delta: float,
         latency_budget_ms: float, higher_is_better: bool = True) -> tuple[bool, str]:
    """Decide whether the candidate replaces the champion. Returns (promote, reason).

    ``higher_is_better=False`` is for errors (turbulence's rollout relative L2): the candidate must then be
    at most the champion's value minus ``min_delta``. A missing or non-finite value (a rollout that blew up)
    never promotes.
    """
    value = candidate.get(primary)
    if value is None or not math.isfinite(value):
        return False, f"candidate has no finite {primary}"
    if candidate.get("stable") == 0.0:  # a rollout that blew up (turbulence) is never promoted
        step = candidate.get("blowup_step")
        return False, "the candidate's rollout blew up" + (f" at step {step:.0f}" if step is not None else "")
    latency = candidate.get("latency_ms")
    if latency is not None and latency > latency_budget_ms:
        return False, f"latency {latency:.3f} ms > budget {latency_budget_ms} ms"
    if champion is None:
        return True, "no champion yet"
    best = champion.get(primary)
    if best is None or not math.isfinite(best):
        return True, f"champion has no finite {primary}"
    if not higher_is_better:
        if value <= best - min_delta:
            return True, f"{primary} {value:.4f} <= champion {best:.4f} - {min_delta}"
        return False, f"{primary} {value:.4f} > champion {best:.4f} - {min_delta}"
    if value >= best + min_delta:
        return True, f"{primary} {value:.4f} >= champion {best:.4f} + {min_delta}"
    return False, f"{primary} {value:.4f} < champion {best:.4f} + {min_delta}"


def package(model_dir: Path, out: Path) -> Path:
    """Save the pyfunc model (the model folder as an artifact) into ``out/model``."""
    root = Path(__file__).resolve().parents[1]
    target = out / "model"
    mlflow.pyfunc.save_model(
        path=str(target),
        python_model=str(root / "tasks" / "serving_entry.py"),
        artifacts={"model_dir": str(model_dir)},
        code_paths=[str(root / "tasks"), str(root / "models")],
        pip_requirements=PIP_REQUIREMENTS,
    )
    return target


def register(domain: str, params: Params, run=None) -> dict[str, Any]:
    """Register the evaluated model as ``candidate`` and move ``champion`` when the gate passes."""
    if run is None:  # the model must be logged to a run: open one when called outside run_stage
        with tracking.start_run(domain, "register") as own:
            return register(domain, params, own)

    p = params.section("register", domain)
    paths = store.domain_paths(domain)
    metrics_file = paths.reports / "metrics.json"
    if not metrics_file.exists():
        raise FileNotFoundError(f"{metrics_file} does not exist: run the evaluate stage first")
    metrics = store.read_json(metrics_file)
    evaluated = metrics["models"]
    chosen = p.model
    if chosen == "chosen":
        if "choice" not in metrics:
            raise ValueError(f"{metrics_file} has no compression choice: run the evaluate stage again")
        chosen = metrics["choice"]["variant"]
    if chosen not in evaluated:
        raise ValueError(f"register.{domain}.model = {chosen!r} was not evaluated; evaluated: {sorted(evaluated)}")
    model_dir = paths.teacher if chosen == "teacher" else paths.compressed / chosen
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir} does not exist: {chosen!r} is not a model folder")
    cand = {k: v for k, v in evaluated[chosen].items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if isinstance(evaluated[chosen].get("stable"), bool):  # as a number, so it is a tag and a metric like the rest
        cand["stable"] = float(evaluated[chosen]["stable"])
    name = tracking.registered_model_name(domain)
    client = tracking.client()
    champion = tracking.get_alias(name, "champion")
    promote, reason = gate(cand, champion.metrics if champion else None, p.primary_metric, p.min_delta,
                           p.latency_budget_ms, p.higher_is_better)
    with tempfile.TemporaryDirectory() as tmp:
        package(model_dir, Path(tmp))
        run.log_artifact(Path(tmp) / "model", "model")
    # The teacher and the Pareto table stay with the run, whatever variant is served.
    run.log_artifact(paths.teacher / "config.json", "teacher")
    if (paths.reports / "compress.md").exists():
        run.log_artifact(paths.reports / "compress.md")
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"formerflow {domain} models (see reports/{domain})")
    lineage = {k: v for k, v in client.get_run(run.run_id).data.tags.items()
               if k.startswith(("git.", "input.", "prefect."))}
    tags = {**{f"metric.{k}": str(v) for k, v in cand.items()}, "model": chosen, "compression.method": chosen,
            "compression.choice": metrics.get("choice", {}).get("reason", "set by register.<domain>.model"),
            "gate.decision": "promoted" if promote else "kept", "gate.reason": reason, **lineage,
            "data.processed.md5": store.content_hash(paths.processed)}
    mv = client.create_model_version(name, source=f"{run.artifact_uri}/model", run_id=run.run_id, tags=tags)
    client.set_registered_model_alias(name, "candidate", mv.version)
    if promote:
        client.set_registered_model_alias(name, "champion", mv.version)
    run.log_metrics({f"candidate.{k}": v for k, v in cand.items()})
    run.set_tags({"registered.version": mv.version, "gate.decision": tags["gate.decision"]})
    result = {
        "stage": "register", "domain": domain, "registered_model": name, "version": str(mv.version),
        "model": chosen, "promoted": promote, "reason": reason,
        "champion_version": str(mv.version) if promote else (str(champion.version) if champion else None),
        "primary_metric": p.primary_metric, "candidate_value": cand.get(p.primary_metric),
    }
    store.atomic_write_json(paths.reports / "registry.json", result)
    return result
