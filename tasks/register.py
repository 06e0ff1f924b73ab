"""The ``register`` stage: log the evaluated model to MLflow's registry and apply the promotion gate.

Every evaluated model becomes a new version of ``formerflow-<domain>`` with
alias ``candidate``. The gate (``register.<domain>`` params) moves the alias
``champion`` to it only when its primary metric is at least the current
champion's plus ``min_delta`` and its per-window latency is within the
budget. The decision and its reason are written to
``reports/<domain>/registry.json`` and tagged on the version.

What is checked before anything is registered (README, "Registry integrity"):

* ``reports/<domain>/metrics.json`` must have been measured on the model folders and
  processed data as they are now (evaluate records their content hashes as
  ``measured_on``); otherwise :class:`StaleMetricsError` names the folder;
* the champion's metric counts only when it was measured on the same processed data
  (tag ``data.processed.md5``) and is finite; otherwise the champion is re-scored on the
  candidate's test set with the evaluate stage's code, and when that is impossible (its
  preprocessing schema differs) the candidate is registered but not promoted, and the
  reason says why.

Lineage tags of the version: ``data.processed.md5`` and ``data.raw.md5`` are the hashes DVC records in
dvc.lock for those folders (:func:`tasks.tracking.dvc_md5`, DVC's own code), ``data.source`` (and
``data.labels`` / ``data.metadata``) the ingest inputs with URLs redacted, ``params.hash`` the hash of the
register run's resolved params (artifact ``params.resolved.yaml``), ``git.commit`` / ``git.dirty``;
``formerflow lineage <domain>`` prints the chain (:mod:`tasks.lineage`).

The model is packaged as an MLflow pyfunc around the project's own model folder
(safetensors + config) with no code in it: the MLmodel file names the installed
:mod:`tasks.serving_entry` as loader module. A manifest of the sha256 of every file goes
into the artifact and its own sha256 onto the version (tag ``artifact.manifest.sha256``);
:mod:`tasks.serving` checks both before a model is loaded. Services load it with
``mlflow.pyfunc.load_model("models:/formerflow-<domain>@champion")``.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
from mlflow.exceptions import MlflowException

from tasks import domains, serving, store, tracking
from tasks.compress import load_any
from tasks.domains import LoadedModel
from tasks.evaluate import classification_metrics, model_folders
from tasks.loop import predict, probabilities

if TYPE_CHECKING:
    from tasks.params import Params

PIP_REQUIREMENTS = ["torch==2.13.0", "torchao==0.18.0", "mlflow==3.17.2", "polars==2.1.0", "safetensors", "numpy",
                    "pydantic>=2.7"]


def gate(candidate: dict[str, float], champion: dict[str, float] | None, primary: str, min_delta: float,
         latency_budget_ms: float, higher_is_better: bool = True) -> tuple[bool, str]:
    """Decide whether the candidate replaces the champion. Returns (promote, reason).

    ``higher_is_better=False`` is for errors (turbulence's rollout relative L2): the candidate must then be
    at most the champion's value minus ``min_delta``. A missing or non-finite value (a rollout that blew up)
    never promotes. ``champion`` must be the champion's metrics on the candidate's test set:
    :func:`compare_with_champion` re-scores it when its record is of other data or not finite, so a champion
    still without a finite value here was measured so (it is replaced).

    Raises:
        ValueError: ``min_delta`` < 0.
    """
    if not min_delta >= 0:  # params validation refuses it too; a negative margin would promote a worse model
        raise ValueError(f"min_delta must be >= 0, got {min_delta}")
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


class StaleMetricsError(RuntimeError):
    """``metrics.json`` was measured on other model folders or processed data than the folders hold now."""


class IncomparableError(RuntimeError):
    """The champion cannot be scored on the candidate's test set (another preprocessing schema)."""


def package(model_dir: Path, out: Path, expected_md5: str | None = None) -> tuple[Path, str]:
    """Save the pyfunc model (the model folder as its data, no code) into ``out/model`` with a manifest.

    Args:
        model_dir: The model folder to register.
        out: An empty working folder.
        expected_md5: The folder's content hash as evaluate measured it; the packaged copy must match it
            (the folder could change between the check and the copy).

    Returns:
        The pyfunc folder, and the sha256 of its manifest (the version's tag ``artifact.manifest.sha256``).

    Raises:
        StaleMetricsError: the copy does not match ``expected_md5``.
    """
    target = out / "model"
    staged = out / "stage" / Path(serving.MODEL_DIR).name
    shutil.copytree(model_dir, staged)
    # loader_module: MLflow imports tasks.serving_entry from the installed package, so nothing in the
    # artifact is code that runs at load (no models-from-code file, no code_paths).
    mlflow.pyfunc.save_model(path=str(target), loader_module="tasks.serving_entry", data_path=str(staged),
                             pip_requirements=PIP_REQUIREMENTS)
    copied = store.content_hash(target / serving.MODEL_DIR)
    if expected_md5 is not None and copied != expected_md5:
        raise StaleMetricsError(f"{model_dir} changed while it was being registered (content {copied}, evaluated "
                                f"{expected_md5}): run evaluate first")
    return target, serving.write_manifest(target)


def check_measured(domain: str, metrics: dict[str, Any], metrics_file: Path, model_dir: Path) -> dict[str, str]:
    """Check that ``metrics.json`` was measured on the processed data and model folders as they are now.

    The processed data, the teacher, the folder to register and every compressed variant (the choice of
    the variant depends on all of them) are hashed again and compared with evaluate's ``measured_on``.

    Returns:
        The hashes, by path relative to the project root.

    Raises:
        StaleMetricsError: naming each folder whose content differs, which evaluate did not measure, or
            which is gone.
    """
    paths = store.domain_paths(domain)

    def rel(path: Path) -> str:
        return path.relative_to(paths.root).as_posix()

    where = rel(metrics_file)
    measured = metrics.get("measured_on")
    if not isinstance(measured, dict):
        raise StaleMetricsError(f"{where} records no content hashes of the models and data it measured (written by "
                                "an older evaluate, or edited): run evaluate first")
    compressed = rel(paths.compressed) + "/"
    folders = {rel(f): f for f in (paths.processed, paths.teacher, model_dir,
                                    *model_folders(paths, baselines=False).values())}
    folders.update({k: paths.root / k for k in measured if k.startswith(compressed)})
    now = {key: store.content_hash(folder) for key, folder in sorted(folders.items())}
    problems = []
    for key, value in now.items():
        was = measured.get(key)
        if was == value:
            continue
        if value == "missing":
            problems.append(f"{where} was measured on {key} {was} but the folder no longer exists")
        elif was is None:
            problems.append(f"{where} was not measured on {key} (it holds {value})")
        else:
            problems.append(f"{where} was measured on {key} {was} but the folder now holds {value}")
    if problems:
        raise StaleMetricsError("; ".join(problems) + ": run evaluate first")
    return now


@dataclass(frozen=True)
class Comparison:
    """What the gate compares the candidate with.

    Attributes:
        metrics: The champion's metrics on the candidate's test set (recorded or re-scored); None: no champion,
            or none comparable.
        version: The champion's version, or None.
        rescored: True when the metrics were measured now on the candidate's test set.
        comparable: False when there is a champion but no metrics of it on the candidate's test set.
        note: Why the champion was re-scored or could not be compared ("" when its record was used as is).
    """

    metrics: dict[str, float] | None
    version: str | None = None
    rescored: bool = False
    comparable: bool = True
    note: str = ""


def compare_with_champion(domain: str, params: Params, name: str, processed_md5: str, work: Path) -> Comparison:
    """The champion's metrics on the candidate's test set.

    The champion's recorded metrics count only when it was evaluated on the same processed data (tag
    ``data.processed.md5``) and its primary metric is finite. Otherwise it is re-scored on the current test
    split (:func:`rescore`); if that fails, the comparison is refused (``comparable=False``) with the reason.
    """
    c = tracking.client()
    try:
        mv = c.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return Comparison(None)
    p = params.section("register", domain)
    tags = mv.tags or {}
    recorded = {k.removeprefix("metric."): float(v) for k, v in tags.items() if k.startswith("metric.")}
    value = recorded.get(p.primary_metric)
    finite = value is not None and math.isfinite(value)
    data = tags.get("data.processed.md5")
    version = str(mv.version)
    if data == processed_md5 and finite:
        return Comparison(recorded, version)
    why = (f"champion v{version} has no finite {p.primary_metric} on record" if data == processed_md5 else
           f"champion v{version} was evaluated on processed data {data or '(not recorded)'}, the candidate on "
           f"{processed_md5}")
    try:
        metrics = rescore(domain, params, serving.VersionRef(name, version), work)
    except Exception as exc:  # any failure keeps the champion: never promote over what cannot be compared
        return Comparison(None, version, comparable=False,
                          note=f"{why}, and it cannot be re-scored on the candidate's test set "
                               f"({type(exc).__name__}: {exc}); not promoted: compare the two on one test set, or "
                               f"move the alias by hand")
    return Comparison(metrics, version, rescored=True, note=f"{why}: re-scored on the candidate's test set")


def rescore(domain: str, params: Params, ref: serving.VersionRef, work: Path) -> dict[str, float]:
    """A registered version's metrics on the current test split, computed as the evaluate stage does.

    The version's artifact is downloaded and checked against its digest first. Its model must have been
    trained on the same preprocessing schema as the processed data (the test tensors are encoded with it).

    Raises:
        IntegrityError: the artifact does not match its digest.
        IncomparableError: the schemas differ.
    """
    dom = domains.get(domain)
    root = serving.download_verified(ref, work / f"v{ref.version}")
    folder = root / serving.MODEL_DIR
    schema = dom.load_schema()
    if store.read_json(folder / "config.json").get("schema") != schema:
        raise IncomparableError(f"{ref.uri} was trained on another preprocessing schema than "
                                f"{store.domain_paths(domain).processed / 'schema.json'}")
    model, meta = load_any(folder)
    if dom.kind == "field":
        plots = work / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        result, _, _ = dom.evaluate_models(params, {"champion": LoadedModel(model, meta, folder)}, plots)
        m = result["models"]["champion"]
    else:  # the calls of tasks.evaluate._evaluate_classifier for one model
        info = dom.task_info(params, schema)
        test = dom.load_split("test", info.task)
        probs = probabilities(predict(model, test, 1024), info.task)
        m = classification_metrics(test.labels, probs, info.task, info.class_names,
                                   threshold=info.threshold if info.threshold is not None else 0.5,
                                   families=test.classes if info.family_names is not None else None,
                                   family_names=info.family_names)
    out = {k: float(v) for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if isinstance(m.get("stable"), bool):
        out["stable"] = float(m["stable"])
    return out


def data_sources(params: Params, domain: str) -> dict[str, str]:
    """Tags ``data.<key>`` for the inputs the domain's ingest params name (``source``, ``labels``, ``metadata``),
    URLs redacted (:func:`tasks.store.redact`)."""
    ingest = params.section("ingest", domain).model_dump(mode="json")
    out = {}
    for key in ("source", "labels", "metadata"):
        value = ingest.get(key)
        if value not in (None, "", []):
            out[f"data.{key}"] = store.redact(", ".join(map(str, value)) if isinstance(value, list) else str(value))
    return out


def register(domain: str, params: Params, run=None) -> dict[str, Any]:
    """Register the evaluated model as ``candidate`` and move ``champion`` when the gate passes.

    Raises:
        FileNotFoundError: no ``metrics.json`` or no model folder.
        StaleMetricsError: ``metrics.json`` was measured on other files than the folders hold now.
    """
    if run is None:  # the model must be logged to a run: open one when called outside run_stage
        with tracking.start_run(domain, "register") as own:
            tracking.log_resolved_params(own, params.model_dump(mode="json"))
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
    hashes = check_measured(domain, metrics, metrics_file, model_dir)
    model_md5 = hashes[model_dir.relative_to(paths.root).as_posix()]
    # The lineage tags hold DVC's hashes (the md5 of the output in dvc.lock), not measured_on's: checked to
    # be the same folder just above, so DVC finds the exact data of the version.
    processed_md5 = tracking.dvc_md5(paths.processed)
    cand = {k: v for k, v in evaluated[chosen].items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if isinstance(evaluated[chosen].get("stable"), bool):  # as a number, so it is a tag and a metric like the rest
        cand["stable"] = float(evaluated[chosen]["stable"])
    name = tracking.registered_model_name(domain)
    client = tracking.client()
    with tempfile.TemporaryDirectory() as tmp:
        target, digest = package(model_dir, Path(tmp) / "package", model_md5)
        champion = compare_with_champion(domain, params, name, processed_md5, Path(tmp) / "champion")
        promote, reason = gate(cand, champion.metrics, p.primary_metric, p.min_delta, p.latency_budget_ms,
                               p.higher_is_better)
        if not champion.comparable and promote:
            promote, reason = False, champion.note
        elif champion.note:
            reason = f"{reason} ({champion.note})"
        run.log_artifact(target, "model")
    # The teacher and the Pareto table stay with the run, whatever variant is served.
    run.log_artifact(paths.teacher / "config.json", "teacher")
    if (paths.reports / "compress.md").exists():
        run.log_artifact(paths.reports / "compress.md")
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"formerflow {domain} models (see reports/{domain})")
    lineage = {k: v for k, v in client.get_run(run.run_id).data.tags.items()
               if k.startswith(("git.", "input.", "prefect.", "params."))}
    data = {"data.processed.md5": processed_md5, "data.raw.md5": tracking.dvc_md5(paths.raw),
            **data_sources(params, domain)}
    champion_value = (champion.metrics or {}).get(p.primary_metric)
    tags = {**{f"metric.{k}": str(v) for k, v in cand.items()}, "model": chosen, "compression.method": chosen,
            "compression.choice": metrics.get("choice", {}).get("reason", "set by register.<domain>.model"),
            "gate.decision": "promoted" if promote else "kept", "gate.reason": reason, **lineage, **data,
            "model.md5": model_md5, serving.DIGEST_TAG: digest}
    if champion.version is not None:
        tags.update({"gate.champion_version": champion.version, "gate.champion_rescored": str(champion.rescored),
                     "gate.champion_value": str(champion_value)})
    mv = client.create_model_version(name, source=f"{run.artifact_uri}/model", run_id=run.run_id, tags=tags)
    client.set_registered_model_alias(name, "candidate", mv.version)
    if promote:
        client.set_registered_model_alias(name, "champion", mv.version)
    run.log_metrics({f"candidate.{k}": v for k, v in cand.items()})
    run.set_tags({"registered.version": mv.version, "gate.decision": tags["gate.decision"]})
    result = {
        "stage": "register", "domain": domain, "registered_model": name, "version": str(mv.version),
        "model": chosen, "promoted": promote, "reason": reason,
        "champion_version": str(mv.version) if promote else champion.version,
        "primary_metric": p.primary_metric, "candidate_value": cand.get(p.primary_metric),
        "compared_with": None if champion.version is None else {
            "version": champion.version, "value": champion_value, "rescored": champion.rescored,
            "comparable": champion.comparable},
        "data_processed_md5": processed_md5, "artifact_manifest_sha256": digest,
    }
    store.atomic_write_json(paths.reports / "registry.json", result)
    return result
