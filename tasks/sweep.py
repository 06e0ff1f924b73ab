"""Hyperparameter sweeps: the search space, one trial (train the teacher, score it), the best params as a profile.

A trial is a list of ``key.path=value`` overrides (the same strings ``--set`` takes) applied to the
sweep's params; it builds the domain's teacher from the processed splits through the domain contract
(:mod:`tasks.domains`), trains it with the one loop (:func:`tasks.loop.fit`) and returns the best
validation metric. A trial writes nothing into the project's artifacts: no teacher folder, no
checkpoint (the loop runs without a checkpoint folder); only its MLflow run and the study's journal.

The search space maps dotted params keys to :class:`Dimension` s. Each domain has a default
(:func:`default_space`: learning rate, weight decay, batch size and a width or depth knob of its
architecture); ``--space file.yaml`` replaces it::

    train.netflow.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    train.netflow.batch_size: {type: categorical, choices: [64, 128, 256]}
    train.netflow.model.config.n_layers: {type: int, low: 1, high: 3}

Pruning works across processes: the study lives in an Optuna journal file in the project
(:func:`study_journal`, ``.sweeps/<domain>/<study>.journal``), and each trial, in whatever process or
Dask worker runs it, opens that file (:func:`journal_reporter`), reports its per-epoch validation
value and asks the study's median pruner whether to stop (:class:`TrialPruned`).

No Prefect here (``flows/sweep.py`` runs the study); optuna (the ``scale`` extra) is imported where
it is used, so this module loads without it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from tasks import domains, store, tracking
from tasks.loop import count_parameters, fit, seed_everything
from tasks.params import (
    Params,
    ParamsError,
    check_model_configs,
    deep_merge,
    format_validation_error,
    parse_override,
)

if TYPE_CHECKING:
    from tasks.tracking import StageRun

Report = Callable[[int, float], None]
"""``report(epoch, value)``: the trial's validation value after an epoch; raises :class:`TrialPruned` to stop it."""

Scalar = bool | int | float | str | None


class TrialPruned(Exception):
    """Raised by a report callback: the pruner stops this trial after ``epoch`` (its value was ``value``)."""

    def __init__(self, epoch: int, value: float) -> None:
        super().__init__(f"pruned after epoch {epoch} (validation value {value:.6g})")
        self.epoch = epoch
        self.value = value


# ----------------------------------------------------------------------------- the search space
class Dimension(BaseModel):
    """One searched param: a float or int range (optionally log-scaled or stepped) or a list of choices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Scalar] | None = None
    """``categorical``: the values (numbers, strings, booleans; Optuna stores nothing else)."""

    @model_validator(mode="after")
    def _consistent(self) -> Dimension:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical dimension needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("a categorical dimension takes 'choices' only (no low/high/step/log)")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} dimension takes low/high, not 'choices'")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} dimension needs 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"'low' ({self.low}) must be below 'high' ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scaled dimension needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("'log' and 'step' cannot both be set (Optuna's rule)")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an int dimension needs whole low/high (got {self.low}, {self.high})")
        return self

    def values_to_check(self) -> list[Scalar]:
        """Values that must all load as params: both ends of a range, every choice."""
        if self.type == "categorical":
            return list(self.choices or [])
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]

    def describe(self) -> str:
        """``float [0.0001, 0.01] log``, ``categorical [64, 128]``: how the parent MLflow run records it."""
        if self.type == "categorical":
            return f"categorical {self.choices}"
        extra = " log" if self.log else f" step {self.step:g}" if self.step else ""
        return f"{self.type} [{self.low:g}, {self.high:g}]{extra}"


Space = dict[str, Dimension]
"""Dotted params key (``train.netflow.lr``) -> its dimension."""

ARCH_KNOBS: dict[str, dict[str, Dimension]] = {
    # Depth and FFN width of the encoder blocks (the teacher: 2 blocks of 128).
    "flowtransformer": {"n_layers": Dimension(type="int", low=1, high=3),
                        "internal_size": Dimension(type="categorical", choices=[64, 128, 256])},
    # Blocks of each branch (the reference: 2 + 2).
    "dbconformer": {"tem_depth": Dimension(type="int", low=1, high=3),
                    "chn_depth": Dimension(type="int", low=1, high=3)},
    # A pre-trained encoder's width and depth are fixed by its weights: only the classifier's dropout moves.
    "text_encoder": {"dropout": Dimension(type="float", low=0.0, high=0.3)},
    # Latent width, and the times the weight-shared block is applied (depth without more parameters).
    "ifactformer": {"dim": Dimension(type="categorical", choices=[16, 32, 64]),
                    "n_layer": Dimension(type="int", low=2, high=6)},
}
"""A width or depth knob per architecture (``train.<domain>.model.config.<knob>``) in the default space."""


def default_space(domain: str, params: Params) -> Space:
    """The default search space of ``domain``, centred on its current train params.

    Learning rate log-uniform over a decade either side of ``train.<domain>.lr``, weight decay from
    {0, 1e-4, 1e-3, 1e-2, 1e-1}, batch size half / same / double, and :data:`ARCH_KNOBS` of the
    domain's architecture (none for an architecture not listed there).
    """
    p = params.section("train", domain)
    pre = f"train.{domain}"
    batch = sorted({max(2, p.batch_size // 2), p.batch_size, p.batch_size * 2})
    space: Space = {
        f"{pre}.lr": Dimension(type="float", low=p.lr / 10, high=p.lr * 10, log=True),
        f"{pre}.weight_decay": Dimension(type="categorical", choices=[0.0, 1e-4, 1e-3, 1e-2, 1e-1]),
        f"{pre}.batch_size": Dimension(type="categorical", choices=batch),
    }
    for knob, dim in ARCH_KNOBS.get(p.model.arch, {}).items():
        space[f"{pre}.model.config.{knob}"] = dim
    return space


def load_space(path: str | Path) -> Space:
    """Read a search space from YAML: a mapping of dotted params keys to dimensions.

    Raises:
        ParamsError: The file is missing, not a mapping, or a dimension is invalid (names file and key).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"search space file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ParamsError(f"{path}: a search space is a non-empty mapping of dotted params keys "
                          "(train.<domain>.lr) to dimensions ({type: float, low: ..., high: ...})")
    space: Space = {}
    for key, spec in data.items():
        if not isinstance(spec, dict):
            raise ParamsError(f"{path}: {key}: a dimension is a mapping (type: float|int|categorical, ...), "
                              f"got {spec!r}")
        try:
            space[str(key)] = Dimension.model_validate(spec)
        except ValidationError as exc:
            raise ParamsError(format_validation_error(exc, f"{path}: {key}")) from None
    return space


def check_space(space: Space, domain: str, params: Params, source: str = "search space") -> None:
    """Fail before any trial runs when a key or value of ``space`` would not load as params.

    A trial trains the teacher on the processed data, so only ``train.<domain>.*`` keys change
    what it does (a preprocess or compress key would be searched without effect).

    Raises:
        ParamsError: names ``source``, the key and the value.
    """
    prefix = f"train.{domain}."
    for key, dim in space.items():
        if not key.startswith(prefix):
            raise ParamsError(f"{source}: {key}: a trial trains {domain}'s teacher on the processed data, so "
                              f"the space holds {prefix}* keys only")
        for value in dim.values_to_check():
            apply_overrides(params, [override(key, value)], source=f"{source}: {key}={value!r}")


def suggest(trial: Any, space: Space) -> list[str]:
    """Draw one value per dimension from an Optuna ``trial``; return them as ``key=value`` overrides."""
    out = []
    for key, dim in space.items():
        if dim.type == "float":
            value: Any = trial.suggest_float(key, dim.low, dim.high, log=dim.log, step=dim.step)
        elif dim.type == "int":
            value = trial.suggest_int(key, int(dim.low), int(dim.high), log=dim.log,
                                      step=int(dim.step) if dim.step else 1)
        else:
            value = trial.suggest_categorical(key, dim.choices)
        out.append(override(key, value))
    return out


def override(key: str, value: Any) -> str:
    """``key=value`` with the value written as YAML, so :func:`tasks.params.parse_override` reads it back as is.

    (YAML, not ``str``: PyYAML reads ``1e-05`` as a string, but writes that float as ``1.0e-05``.)
    """
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return f"{key}={text.removesuffix('...').strip()}"


def overrides_dict(overrides: list[str]) -> dict[str, Any]:
    """The nested params mapping of ``key=value`` overrides (what a profile file holds)."""
    data: dict[str, Any] = {}
    for text in overrides:
        data = deep_merge(data, parse_override(text))
    return data


def apply_overrides(params: Params, overrides: list[str], source: str = "sweep trial") -> Params:
    """``params`` with ``overrides`` merged in and validated, as ``--set`` would (in memory: no file read).

    Raises:
        ParamsError: a key or value does not validate (names ``source`` and the key path).
    """
    data = deep_merge(params.model_dump(mode="json"), overrides_dict(overrides))
    try:
        out = Params.model_validate(data)
    except ValidationError as exc:
        raise ParamsError(format_validation_error(exc, source)) from None
    check_model_configs(out, source)
    return out


# ----------------------------------------------------------------------------- one trial
def objective(params: Params, domain: str) -> tuple[str, Literal["maximize", "minimize"]]:
    """The validation metric a trial is scored on and its direction: ``val_<train.<domain>.select_metric>``.

    A classification maximises (balanced accuracy, F1); a regression minimises ``val_rel_l2``.
    """
    metric = params.section("train", domain).select_metric
    return f"val_{metric}", "minimize" if metric == "rel_l2" else "maximize"


def require_processed(domain: str) -> None:
    """Raise unless ``domain``'s processed train and validation splits exist.

    Raises:
        FileNotFoundError: names the commands that make them.
    """
    processed = store.domain_paths(domain).processed
    train = processed / "train.safetensors"
    if not train.exists():
        raise FileNotFoundError(f"{train} does not exist: a sweep trains on the processed data; run "
                                f"`python -m tasks ingest {domain}` and `python -m tasks preprocess {domain}` "
                                f"first (or `dvc repro preprocess@{domain}`)")
    if not (processed / "val.safetensors").exists():
        raise FileNotFoundError(f"{processed / 'val.safetensors'} does not exist: a sweep scores its trials on "
                                f"the validation split; set preprocess.{domain}.val_fraction above 0 and run "
                                f"`python -m tasks preprocess {domain}` again")


@dataclasses.dataclass
class TrialResult:
    """What one trial did: ``complete`` with its best validation value, or ``pruned`` after ``epochs``."""

    state: Literal["complete", "pruned"]
    value: float
    """The best validation value of the epochs run (``metric``; the last reported one when pruned)."""
    metric: str
    epochs: int
    best_epoch: int
    parameters: int
    seconds: float
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)


def run_trial(domain: str, params: Params, overrides: list[str], report: Report | None = None,
              run: StageRun | None = None) -> TrialResult:
    """Train ``domain``'s teacher with ``overrides`` applied and return its best validation value.

    The teacher is built from the processed splits as the train stage builds it, and trained with the
    loop's early stopping; nothing is written into the project (no teacher folder, no checkpoint).

    Args:
        domain: The domain.
        params: The sweep's params (params.yaml + profiles + ``--set``); the trial's overrides go on top.
        overrides: ``key=value`` strings (:func:`suggest`).
        report: Called with ``(epoch, value)`` after each epoch (value: :func:`objective`'s metric); it may
            raise :class:`TrialPruned` to stop the trial there.
        run: The trial's MLflow run: per-epoch metrics are logged to it.

    Returns:
        The result; ``pruned`` when ``report`` stopped it.

    Raises:
        FileNotFoundError: the processed data is missing (:func:`require_processed`).
        ParamsError: an override does not validate.
    """
    trial_params = apply_overrides(params, overrides)
    require_processed(domain)
    dom = domains.get(domain)
    p = trial_params.section("train", domain)
    schema = dom.load_schema()
    train, val = dom.load_split("train", p.task), dom.load_split("val", p.task)
    metric, direction = objective(trial_params, domain)
    # Seeded as the train stage seeds it: two trials differ by their params, not by their initialisation.
    seed_everything(p.seed)
    model = dom.build_model(trial_params, schema)
    history: list[dict[str, float]] = []

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        history.append(dict(metrics))
        if run is not None:
            run.log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
        if report is not None:
            report(epoch, float(metrics[metric]))

    t0 = time.perf_counter()
    try:
        result = fit(model, train, val, p, task=p.task, checkpoint_dir=None, on_epoch=on_epoch, progress=False,
                     name=f"{domain} sweep trial")
    except TrialPruned as pruned:
        values = [h[metric] for h in history]
        best = (max if direction == "maximize" else min)(values)
        return TrialResult("pruned", float(best), metric, pruned.epoch, values.index(best) + 1,
                           count_parameters(model), round(time.perf_counter() - t0, 3), history)
    return TrialResult("complete", float(result.best_metric), metric, result.epochs_run, result.best_epoch,
                       count_parameters(model), round(result.seconds, 3), history)


# ----------------------------------------------------------------------------- the study's journal
@dataclasses.dataclass(frozen=True)
class StudyRef:
    """Where a study lives and how it prunes: all a trial process needs to open it (picklable)."""

    name: str
    journal: str
    """The Optuna journal file every trial process opens (a shared file system for remote workers)."""
    direction: Literal["maximize", "minimize"]
    startup_trials: int = 5
    """Median pruner: no pruning until this many trials have completed."""
    warmup_epochs: int = 1
    """Median pruner: no pruning at or before this epoch (the first epochs are noisy)."""


def study_journal(domain: str, name: str) -> Path:
    """``<project>/.sweeps/<domain>/<name>.journal``."""
    return store.project_root() / ".sweeps" / domain / f"{name}.journal"


def _storage(ref: StudyRef):
    from optuna.storages import JournalStorage  # lazy: optuna is the scale extra
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock  # lazy

    # The open-lock (O_EXCL on a lock file) works on file systems without symlinks (the default lock's).
    return JournalStorage(JournalFileBackend(ref.journal, lock_obj=JournalFileOpenLock(ref.journal)))


def pruner(ref: StudyRef):
    """The study's median pruner (Optuna keeps pruners out of the storage: each process makes its own)."""
    from optuna.pruners import MedianPruner  # lazy

    # Steps are epochs (1, 2, ...) and Optuna prunes from step n_warmup_steps on: + 1 keeps the warm-up epochs.
    return MedianPruner(n_startup_trials=ref.startup_trials, n_warmup_steps=ref.warmup_epochs + 1)


def create_study(ref: StudyRef, seed: int):
    """A new study in ``ref.journal`` with a seeded TPE sampler and the median pruner."""
    import optuna  # lazy

    Path(ref.journal).parent.mkdir(parents=True, exist_ok=True)
    return optuna.create_study(study_name=ref.name, storage=_storage(ref), direction=ref.direction,
                               sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner(ref))


def open_study(ref: StudyRef):
    """The study of ``ref`` as another process sees it (its journal replayed), with the same pruner."""
    import optuna  # lazy

    return optuna.load_study(study_name=ref.name, storage=_storage(ref), pruner=pruner(ref))


def journal_reporter(ref: StudyRef, number: int) -> Report:
    """The report callback of trial ``number``: records each epoch's value in the journal, then asks the pruner.

    Runs in the process that trains (a thread of the flow, a Dask worker): the median is taken over
    what every other trial has written to the journal so far.
    """
    import optuna  # lazy

    storage = _storage(ref)
    study = optuna.load_study(study_name=ref.name, storage=storage, pruner=pruner(ref))
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(ref.name), number)
    trial = optuna.trial.Trial(study, trial_id)

    def report(epoch: int, value: float) -> None:
        if not math.isfinite(value):  # a diverged trial: Optuna ignores NaN reports, so stop it here
            raise TrialPruned(epoch, value)
        trial.report(value, step=epoch)
        if trial.should_prune():
            raise TrialPruned(epoch, value)

    return report


def tracked_trial(domain: str, params: Params, overrides: list[str], ref: StudyRef, number: int,
                  parent_run_id: str | None, tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One trial of a study as a child MLflow run ``trial-<number>`` of ``parent_run_id``.

    The run holds the trial's overrides as params, the per-epoch metrics, ``best_<metric>`` and the tag
    ``sweep.state`` (complete / pruned; a trial that raised ends FAILED). What the flow's task runs.

    Returns:
        :class:`TrialResult` as a dict, plus ``number``, ``overrides`` and ``run_id``.
    """
    report = journal_reporter(ref, number)
    tags = {"sweep.study": ref.name, "sweep.trial": str(number), "worker": f"{socket.gethostname()}:{os.getpid()}",
            **(tags or {})}
    with tracking.start_run(domain, f"trial-{number}", parent_run_id=parent_run_id, tags=tags) as run:
        run.log_params({k: v for k, _, v in (o.partition("=") for o in overrides)})
        result = run_trial(domain, params, overrides, report, run)
        run.log_metrics({f"best_{result.metric}": result.value, "epochs_run": result.epochs,
                         "parameters": result.parameters, "train_seconds": result.seconds})
        run.set_tags({"sweep.state": result.state})
    return {"number": number, "overrides": overrides, "run_id": run.run_id, **dataclasses.asdict(result)}


# ----------------------------------------------------------------------------- the result
def profile_name(domain: str) -> str:
    return f"sweep-{domain}"


def write_profile(domain: str, overrides: list[str], header: Mapping[str, Any]) -> Path:
    """Write the best trial's params as ``profiles/sweep-<domain>.yaml`` (atomically), with a comment header.

    A normal profile: ``--profile sweep-<domain>`` (or ``FORMERFLOW_PROFILE``) merges it over params.yaml.

    Args:
        domain: The domain.
        overrides: The best trial's ``key=value`` strings.
        header: ``name: value`` lines for the comment at the top (study, metric, value, ...).
    """
    path = store.project_root() / "profiles" / f"{profile_name(domain)}.yaml"
    lines = [f"# Written by `formerflow sweep {domain}` on {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}: "
             "the best trial's params.",
             *(f"#   {k}: {v}" for k, v in header.items()),
             f"# Use: python -m flows.pipeline --domain {domain} --profile {profile_name(domain)}",
             "# (after the profiles the sweep ran on, if any; this file holds the searched keys only)"]
    body = yaml.safe_dump(overrides_dict(overrides), sort_keys=True, default_flow_style=False)
    return store.atomic_write_text(path, "\n".join(lines) + "\n" + body)


def summary_table(rows: list[Mapping[str, Any]], metric: str, space: Space) -> str:
    """A markdown table of the trials: number, state, value, epochs, seconds and each searched value."""
    keys = list(space)
    short = [k.split(".", 2)[-1] for k in keys]  # train.netflow.lr -> lr
    head = ["trial", "state", metric, "epochs", "seconds", *short]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        values = dict(o.partition("=")[::2] for o in r.get("overrides", []))
        value = r.get("value")
        out.append("| " + " | ".join([
            str(r["number"]), r["state"], "" if value is None else f"{value:.4f}", str(r.get("epochs", "")),
            "" if r.get("seconds") is None else f"{r['seconds']:.1f}", *(values.get(k, "") for k in keys)]) + " |")
    return "\n".join(out)
