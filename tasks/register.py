"""The ``register`` stage: log the evaluated model to MLflow's registry and apply the promotion gate.

Every evaluated model becomes a new version of ``formerflow-<domain>`` with
alias ``candidate``. The gate (``register.<domain>`` params) moves the alias
``champion`` to it only when its primary metric is at least the current
champion's plus ``min_delta``, no worse than the best baseline of its own
report (``metrics.json``: the baselines scored on the same test split; unless
``allow_below_baseline``), and its per-window latency is within the budget. The
decision and its reason are written to ``reports/<domain>/registry.json`` and
tagged on the version (``gate.decision``, ``gate.reason``, ``gate.baseline``), and
the registry line of ``report.md``'s header is rewritten with the new aliases.
A candidate that is not promoted is still registered, with alias ``candidate``
only; when there is no champion yet, none is set (``@champion`` then does not
resolve, and scoring says so).

What is checked before anything is registered (docs/operations.md, "Registry integrity"):

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

What MLflow records (docs/operations.md, "MLflow"): the pyfunc carries a signature and an input example
(:func:`tasks.serving.signature`, from the domain's ``input_example`` hook). It is logged as an
MLflow 3 logged model of the register run, and the version is registered from it
(source ``models:/<model_id>``); the chosen variant's metrics are metrics of the run and of
that logged model (:func:`tasks.tracking.version_metrics` reads them back), not tags. Tags
hold only strings: the gate's decision, the lineage, the digests.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
from mlflow.exceptions import MlflowException

from tasks import domains, serving, store, tracking
from tasks.compress import load_any
from tasks.domains import LoadedModel
from tasks.evaluate import (
    classification_metrics,
    model_folders,
    own_threshold_metrics,
    registry_line,
    update_registry_line,
)
from tasks.loop import predict, probabilities

if TYPE_CHECKING:
    from tasks.params import Params

PIP_REQUIREMENTS = ["torch==2.13.0", "torchao==0.18.0", "mlflow==3.17.2", "polars==2.1.0", "safetensors", "numpy",
                    "pydantic>=2.7"]


def best_baseline(baselines: Mapping[str, Mapping[str, Any]] | None, primary: str,
                  higher_is_better: bool = True) -> tuple[str, float] | None:
    """The baseline with the best finite ``primary`` value: ``(name, value)``, or None when there is none.

    Args:
        baselines: Baseline name -> its metrics, measured on the candidate's test split (see
            :func:`comparable_baselines`).
        primary: The gated metric.
        higher_is_better: False for an error: the lowest value is the best.
    """
    values = {name: float(m[primary]) for name, m in (baselines or {}).items()
              if isinstance(m.get(primary), int | float) and not isinstance(m.get(primary), bool)
              and math.isfinite(m[primary])}
    if not values:
        return None
    name = (max if higher_is_better else min)(values, key=values.__getitem__)
    return name, values[name]


def gate(candidate: dict[str, float], champion: dict[str, float] | None, primary: str, min_delta: float,
         latency_budget_ms: float, higher_is_better: bool = True, *,
         baselines: Mapping[str, Mapping[str, Any]] | None = None, allow_below_baseline: bool = False,
         switch: str = "allow_below_baseline") -> tuple[bool, str]:
    """Decide whether the candidate replaces the champion. Returns (promote, reason).

    A missing or non-finite value (a rollout that blew up) never promotes. Nor does an unstable rollout, a
    latency over the budget, or a candidate worse on ``primary`` than the best of ``baselines`` unless
    ``allow_below_baseline``; the reason names every one of these that fails (the baseline with both values
    and ``switch``, also when it is allowed). Then it must beat the champion by ``min_delta``.
    ``higher_is_better=False`` is for errors (turbulence's rollout relative L2): the candidate must then be at
    most the champion's value minus ``min_delta``, and at most the best baseline's. A tie with the best
    baseline passes.

    ``champion`` must be the champion's metrics on the candidate's test set: :func:`compare_with_champion`
    re-scores it when its record is of other data or not finite, so a champion still without a finite value
    here was measured so (it is replaced). ``baselines`` must be measured on that test set too
    (:func:`comparable_baselines`).

    Raises:
        ValueError: ``min_delta`` < 0.
    """
    if not min_delta >= 0:  # params validation refuses it too; a negative margin would promote a worse model
        raise ValueError(f"min_delta must be >= 0, got {min_delta}")
    value = candidate.get(primary)
    if value is None or not math.isfinite(value):
        return False, f"candidate has no finite {primary}"
    problems = []  # every hard check that fails is named, not only the first
    if candidate.get("stable") == 0.0:  # an unstable rollout (turbulence) is never promoted
        blowup, small = candidate.get("blowup_step"), candidate.get("small_scale_step")
        if blowup is not None and math.isfinite(blowup):
            problems.append(f"the candidate's rollout blew up at step {blowup:.0f}")
        elif small is not None and math.isfinite(small):
            problems.append(f"the candidate's rollout is unstable: small-scale energy from step {small:.0f}")
        else:
            problems.append("the candidate's rollout is unstable")
    latency = candidate.get("latency_ms")
    if latency is not None and latency > latency_budget_ms:
        problems.append(f"latency {latency:.3f} ms > budget {latency_budget_ms} ms")
    note = ""
    best_base = best_baseline(baselines, primary, higher_is_better)
    if best_base is not None:
        bname, bvalue = best_base
        if value < bvalue if higher_is_better else value > bvalue:
            below = (f"{primary} {value:.4f} is worse than baseline {bname} {bvalue:.4f} "
                     f"({'higher' if higher_is_better else 'lower'} is better)")
            if allow_below_baseline:
                note = f"; {below}, allowed by {switch}"
            else:
                problems.append(f"{below}; {switch} is false")
    if problems:
        return False, "; ".join(problems)
    if champion is None:
        return True, "no champion yet" + note
    best = champion.get(primary)
    if best is None or not math.isfinite(best):
        return True, f"champion has no finite {primary}" + note
    if not higher_is_better:
        if value <= best - min_delta:
            return True, f"{primary} {value:.4f} <= champion {best:.4f} - {min_delta}" + note
        return False, f"{primary} {value:.4f} > champion {best:.4f} - {min_delta}" + note
    if value >= best + min_delta:
        return True, f"{primary} {value:.4f} >= champion {best:.4f} + {min_delta}" + note
    return False, f"{primary} {value:.4f} < champion {best:.4f} + {min_delta}" + note


def comparable_baselines(metrics: dict[str, Any], own: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The baselines of ``metrics.json`` that were scored on the candidate's test split.

    Every row of ``metrics["models"]`` that is not one of the domain's own models (``own``: the teacher and
    its compressed variants) is a baseline the evaluate stage scored on the same test split as the
    candidate: the scikit-learn / lexicon baselines of netflow and finance (their predictions are of the test
    rows), turbulence's neural baselines (FNO, IFactFormer-o) and persistence (rolled out from the same
    windows). EEG's protocol models (EEGNet, ShallowConvNet, ...) are not rows there: the protocol trains and
    tests them on its own folds (CO / k-fold / LOSO), not on the deployment split the candidate is measured on,
    so they are not comparable and EEG has no baseline here.
    """
    skip = set(own)
    return {name: m for name, m in metrics.get("models", {}).items() if name not in skip and isinstance(m, dict)}


class StaleMetricsError(RuntimeError):
    """``metrics.json`` was measured on other model folders or processed data than the folders hold now."""


class IncomparableError(RuntimeError):
    """The champion cannot be scored on the candidate's test set (another preprocessing schema)."""


def package(model_dir: Path, out: Path, expected_md5: str | None = None, signature=None,
            input_example: Any = None) -> tuple[Path, str]:
    """Save the pyfunc model (the model folder as its data, no code) into ``out/model`` with a manifest.

    Args:
        model_dir: The model folder to register.
        out: An empty working folder.
        expected_md5: The folder's content hash as evaluate measured it; the packaged copy must match it
            (the folder could change between the check and the copy).
        signature: The pyfunc's ``mlflow.models.ModelSignature`` (:func:`tasks.serving.signature`), or None.
        input_example: The input example stored with it (in the manifest like every file), or None.

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
                             pip_requirements=PIP_REQUIREMENTS, signature=signature, input_example=input_example)
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
    recorded = tracking.version_metrics(mv, c)
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
        fam = test.classes if info.family_names is not None else None
        # A folder with its own decision threshold (netflow) is scored at it, as evaluate scored the candidate.
        m = own_threshold_metrics(test.labels, probs, info.task, info.class_names, meta, fam, info.family_names)
        if m is None:
            m = classification_metrics(test.labels, probs, info.task, info.class_names,
                                       threshold=info.threshold if info.threshold is not None else 0.5,
                                       families=fam, family_names=info.family_names)
    out = {k: float(v) for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if isinstance(m.get("stable"), bool):
        out["stable"] = float(m["stable"])
    return out


def log_model(client, run, domain: str, variant: str, folder: Path) -> str:
    """Log the packaged pyfunc ``folder`` as an MLflow 3 logged model of ``run``. Returns its model id.

    The logged model is the register run's output (the run's page lists it; the experiment's Models tab shows
    it with its metrics). It ends READY, or FAILED when its files could not be stored.
    """
    from mlflow.entities import LoggedModelOutput  # lazy: mlflow is slow to import

    lm = client.create_logged_model(run.experiment_id, name=re.sub(r"[^A-Za-z0-9_-]", "-", f"{domain}-{variant}"),
                                    source_run_id=run.run_id, model_type="formerflow",
                                    tags={"formerflow.domain": domain, "compression.method": variant})
    try:
        client.log_model_artifacts(lm.model_id, str(folder))
    except BaseException:
        client.finalize_logged_model(lm.model_id, "FAILED")
        raise
    client.finalize_logged_model(lm.model_id, "READY")
    client.log_outputs(run.run_id, [LoggedModelOutput(lm.model_id, 0)])
    return lm.model_id


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
    if isinstance(evaluated[chosen].get("stable"), bool):  # as a number, so it is a metric like the rest
        cand["stable"] = float(evaluated[chosen]["stable"])
    # The baselines scored on the candidate's test split (not the teacher or its variants): a candidate worse
    # than the best of them is not promoted unless register.<domain>.allow_below_baseline.
    baselines = comparable_baselines(metrics, {*model_folders(paths, baselines=False), chosen})
    base = best_baseline(baselines, p.primary_metric, p.higher_is_better)
    below = base is not None and math.isfinite(cand.get(p.primary_metric, math.nan)) and (
        cand[p.primary_metric] < base[1] if p.higher_is_better else cand[p.primary_metric] > base[1])
    name = tracking.registered_model_name(domain)
    client = tracking.client()
    served = serving.FormerflowModel(model_dir)
    example = domains.get(domain).input_example(served.loaded)
    signature = serving.signature(served, example) if example is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        target, digest = package(model_dir, Path(tmp) / "package", model_md5, signature,
                                 example.data if example is not None else None)
        champion = compare_with_champion(domain, params, name, processed_md5, Path(tmp) / "champion")
        promote, reason = gate(cand, champion.metrics, p.primary_metric, p.min_delta, p.latency_budget_ms,
                               p.higher_is_better, baselines=baselines, allow_below_baseline=p.allow_below_baseline,
                               switch=f"register.{domain}.allow_below_baseline")
        if not champion.comparable and promote:
            promote, reason = False, champion.note
        elif champion.note:
            reason = f"{reason} ({champion.note})"
        model_id = log_model(client, run, domain, chosen, target)
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
    # The chosen variant's metrics: of the run and of its logged model (sortable, chartable), before the version
    # exists, so a version is never without them.
    run.log_metrics(cand, model_id=model_id)
    # What the gate compared with, as metrics of the run too (a number in a tag can be neither sorted nor charted).
    gate_values = {"gate.baseline_value": None if base is None else base[1], "gate.champion_value": champion_value}
    run.log_metrics({k: v for k, v in gate_values.items() if v is not None and math.isfinite(float(v))})
    tags = {"model": chosen, "compression.method": chosen,
            "compression.choice": metrics.get("choice", {}).get("reason", "set by register.<domain>.model"),
            "gate.decision": "promoted" if promote else "kept", "gate.reason": reason, **lineage, **data,
            "model.md5": model_md5, serving.DIGEST_TAG: digest}
    tags["gate.baseline"] = (f"{base[0]} {p.primary_metric} {base[1]}" if base is not None else
                             "none scored on the candidate's test split")
    if base is not None:
        tags.update({"gate.baseline_name": base[0], "gate.below_baseline": str(below)})
    if champion.version is not None:
        tags.update({"gate.champion_version": champion.version, "gate.champion_rescored": str(champion.rescored)})
    with tracking.project_uris():  # the registry resolves a models:/<model_id> source through MLflow's global client
        mv = client.create_model_version(name, source=f"models:/{model_id}", run_id=run.run_id, tags=tags,
                                         model_id=model_id)
    client.set_registered_model_alias(name, "candidate", mv.version)
    if promote:
        client.set_registered_model_alias(name, "champion", mv.version)
    run.set_tags({"registered.version": mv.version, "gate.decision": tags["gate.decision"]})
    result = {
        "stage": "register", "domain": domain, "registered_model": name, "version": str(mv.version),
        "model": chosen, "promoted": promote, "reason": reason,
        "champion_version": str(mv.version) if promote else champion.version,
        "primary_metric": p.primary_metric, "candidate_value": cand.get(p.primary_metric),
        "compared_with": None if champion.version is None else {
            "version": champion.version, "value": champion_value, "rescored": champion.rescored,
            "comparable": champion.comparable},
        "baseline": None if base is None else {
            "name": base[0], "value": base[1], "candidate_below": below,
            "allowed": p.allow_below_baseline, "compared": sorted(baselines)},
        "data_processed_md5": processed_md5, "artifact_manifest_sha256": digest, "logged_model_id": model_id,
    }
    store.atomic_write_json(paths.reports / "registry.json", result)
    # The report's header read the aliases before this version existed: rewritten, so it never names a
    # superseded champion (dvc.yaml lists report.md as register's output for that reason).
    decision = "promoted to champion" if promote else "kept out of champion"
    update_registry_line(paths.reports / "report.md", registry_line(
        domain, result["champion_version"], result["version"],
        f"after this run's register, which made v{mv.version} candidate and {decision} ({reason})"))
    return result
