"""The stage table: one plain function per stage, the single implementation every entry point calls.

``ingest`` and ``preprocess`` are the domain's own: ``tasks/domains/<domain>/ingest.py``
and ``preprocess.py`` (the :mod:`tasks.domains` contract). ``train``, ``compress``,
``evaluate`` and ``register`` are generic modules that look the domain up. Each stage's
module is imported by name when the stage runs, so ``python -m tasks ingest netflow``
(what ``dvc repro`` calls) loads the code of that stage and what it imports, nothing
else; tests/unit/test_dvc_deps.py derives those modules from the imports and checks
that dvc.yaml lists each as a dependency of the stage. :func:`stage_code_hash` hashes the
same files, for Prefect's cache key.

:func:`run_stage` holds the domain's lock (:func:`tasks.store.lock`) while a stage runs, so
two stages never write one domain's outputs at once (a second one is refused with the
holder's pid and stage), and first puts right what a killed stage left behind
(:func:`tasks.store.recover`). Under ``torchrun`` (:mod:`tasks.ddp`) that is rank 0's
part: the other ranks run the stage function only, with no lock, no recovery and no MLflow run.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks import ddp, domains, store, tracking
from tasks.params_base import STAGES

if TYPE_CHECKING:
    from tasks.params import Params

StageFunction = Callable[[str, "Params", Any], dict[str, Any]]

STAGE_MODULES: dict[str, str] = {"train": "tasks.train", "compress": "tasks.compress",
                                 "evaluate": "tasks.evaluate", "register": "tasks.register", "score": "tasks.score"}
"""The generic stages: stage name -> module holding a function of that name ``(domain, params, run)``
(``score``, run on demand and not by the pipeline, takes its input and output besides)."""
DOMAIN_STAGES = ("ingest", "preprocess")
"""The stages each domain implements itself, as ``tasks.domains.<domain>.<stage>.<stage>(params, run)``."""


DATASET_INPUTS = ("raw", "processed")
"""The inputs of :func:`stage_inputs` that are data (the others are models and reports): logged as MLflow datasets."""
DATASET_CONTEXT = {"train": "training", "evaluate": "evaluation"}
"""MLflow's input context of a stage's datasets (the stage's name where not listed)."""


class UnknownStageError(ValueError):
    pass


def stage_entry(stage: str, domain: str) -> str:
    """The module whose function of the stage's name runs ``stage`` for ``domain``."""
    if stage in DOMAIN_STAGES:
        return f"tasks.domains.{domain}.{stage}"
    return STAGE_MODULES[stage]


def stage_function(stage: str, domain: str) -> StageFunction:
    """The function of ``stage`` for ``domain``, called as ``fn(domain, params, run)``.

    Raises:
        UnknownStageError: names the stages.
    """
    if stage in DOMAIN_STAGES:
        fn = getattr(importlib.import_module(stage_entry(stage, domain)), stage)
        return lambda domain, params, run: fn(params, run)
    if stage not in STAGE_MODULES:
        raise UnknownStageError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    # Imported by name when the stage runs: a stage's process loads its own code only (fast CLI,
    # and the dvc.yaml deps of a stage are the modules it imports).
    return getattr(importlib.import_module(stage_entry(stage, domain)), stage)


def stage_inputs(stage: str, domain: str) -> dict[str, Path]:
    """The files a stage reads (upstream outputs), whose content hashes tag its MLflow run."""
    p = store.domain_paths(domain)
    return {
        "ingest": {},
        "preprocess": {"raw": p.raw},
        "train": {"processed": p.processed},
        "compress": {"teacher": p.teacher},
        "evaluate": {"processed": p.processed, "teacher": p.teacher, "baselines": p.baselines,
                     "compressed": p.compressed},
        "register": {"metrics": p.reports / "metrics.json", "teacher": p.teacher, "compressed": p.compressed},
    }[stage]


def stage_outputs(stage: str, domain: str) -> list[Path]:
    """The files a stage writes (what DVC tracks as its outs; register writes the registry)."""
    p = store.domain_paths(domain)
    return {
        "ingest": [p.raw],
        "preprocess": [p.processed],
        "train": [p.teacher, p.baselines],
        "compress": [p.compressed, p.reports / "compress.json"],
        "evaluate": [p.reports / "metrics.json", p.reports / "summary.json", p.reports / "plots"],
        # register rewrites report.md's registry line (the champion/candidate after this run's register)
        "register": [p.reports / "registry.json", p.reports / "report.md"],
    }[stage]


def recover_outputs(stage: str, domain: str) -> list[str]:
    """Put right what a killed run left beside ``stage``'s outputs, in the domain's reports and checkpoints.

    Call it holding the domain's lock (:func:`run_stage` does): the reports and checkpoints
    folders are the domain's own, so every leftover there is a dead writer's. Returns what was done.
    """
    paths = store.domain_paths(domain)
    actions = [a for out in stage_outputs(stage, domain) for a in store.recover(out)]
    actions += store.recover_tree(paths.reports)  # train.json, train_history.csv beside the listed outputs
    if stage == "train":
        actions += store.recover_tree(paths.checkpoints)
    return actions


def run_stage(stage: str, domain: str, params: Params, *, parent_run_id: str | None = None,
              tags: dict[str, str] | None = None, track: bool = True) -> dict[str, Any]:
    """Run one stage of one domain, inside its own MLflow run (a child of ``parent_run_id`` if given).

    Under torchrun, ranks other than 0 only call the stage function (see the module docstring).

    The stage runs holding the domain's lock (refused at once with
    :class:`tasks.store.LockHeldError`, naming the holder, while another stage of the domain
    runs), after :func:`recover_outputs`. The manifest returned has its URLs redacted
    (:func:`tasks.store.redact`): it is printed, tagged and persisted by Prefect.

    Raises:
        UnknownStageError / tasks.domains.UnknownDomainError: names the valid choices.
        tasks.store.LockHeldError: another stage of the domain runs.
    """
    if stage not in STAGES:
        raise UnknownStageError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    domains.check(domain)  # validates the domain name before anything is opened
    fn = stage_function(stage, domain)
    if not ddp.is_main():
        # A data-parallel rank other than 0 computes and writes nothing: the lock, the recovery of a killed
        # run's leftovers, the MLflow run and the outputs are rank 0's (which holds the lock meanwhile).
        return store.redact(fn(domain, params, None))
    with store.lock(domain, what=f"{stage} {domain}"):
        for action in recover_outputs(stage, domain):
            print(f"{stage} {domain}: recovered after an interrupted run: {action}")
        if not track:
            return store.redact(fn(domain, params, None))
        # Lineage tags hold the hashes dvc.lock records (tracking.dvc_md5), so DVC finds the data of any run.
        inputs = {name: tracking.dvc_md5(path) for name, path in stage_inputs(stage, domain).items()}
        lineage = tracking.lineage_tags(inputs, (tags or {}).get("prefect.flow_run_id"))
        with tracking.start_run(domain, stage, parent_run_id=parent_run_id, tags={**lineage, **(tags or {})}) as run:
            # The data a stage reads, as the run's dataset inputs (source path and the DVC hash its input tag holds).
            run.log_datasets({n: (path, inputs[n]) for n, path in stage_inputs(stage, domain).items()
                              if n in DATASET_INPUTS}, context=DATASET_CONTEXT.get(stage, stage))
            tracking.log_resolved_params(run, params.model_dump(mode="json"))
            manifest = store.redact(fn(domain, params, run))
            root = store.project_root()
            run.set_tags({f"output.{out.relative_to(root).as_posix()}.md5": tracking.dvc_md5(out)
                          for out in stage_outputs(stage, domain)})  # keyed by the path dvc.lock lists
            return manifest


# ----------------------------------------------------------------------------- the code a stage runs
CODE_ROOT = Path(__file__).resolve().parents[1]
"""The folder holding the ``tasks`` and ``models`` packages (the code, not the project's data root)."""
CODE_PACKAGES = ("tasks", "models")


def stage_code_files(stage: str, domain: str, code_root: Path | None = None) -> list[Path]:
    """The project source files a stage runs, for a cache key that changes when its code does.

    Starts from what tests/unit/test_dvc_deps.py starts from: the stage's module, this
    dispatcher, every module of the domain's package (looked up by name at run time), the model
    files for the stages that build models (the registry imports them by name) and the pyfunc
    entry for register; then follows every ``import`` of a ``tasks`` or ``models`` module in those
    files, those inside functions included and ``if TYPE_CHECKING:`` ones not, with the
    ``__init__.py`` of each package on the way.
    """
    root = (code_root or CODE_ROOT).resolve()
    start = {stage_entry(stage, domain), __name__}
    start |= {_module_of(f, root) for f in (root / "tasks" / "domains" / domain).rglob("*.py")}
    if stage in ("train", "compress", "evaluate", "register"):
        start |= {_module_of(f, root) for f in (root / "models").glob("*.py")}
    if stage == "register":
        start.add("tasks.serving_entry")
    seen: set[str] = set()
    todo = sorted(start)
    while todo:
        mod = todo.pop()
        if mod in seen or _module_file(mod, root) is None:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # packages whose __init__ runs first
        todo += _imports(_module_file(mod, root), mod)
    return sorted({_module_file(m, root) for m in seen})


def stage_code_hash(stage: str, domain: str, code_root: Path | None = None) -> str:
    """SHA-256 of the files of :func:`stage_code_files` (their paths and bytes)."""
    root = (code_root or CODE_ROOT).resolve()
    h = hashlib.sha256()
    for file in stage_code_files(stage, domain, root):
        h.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return h.hexdigest()


def _module_of(file: Path, root: Path) -> str:
    rel = file.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _module_file(mod: str, root: Path) -> Path | None:
    if mod.split(".")[0] not in CODE_PACKAGES:
        return None
    base = root.joinpath(*mod.split("."))
    for file in (base / "__init__.py", base.with_suffix(".py")):
        if file.is_file():
            return file
    return None


def _imports(file: Path, mod: str) -> list[str]:
    st = file.stat()
    return list(_parse_imports(str(file), mod, file.name == "__init__.py", st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=1024)
def _parse_imports(file: str, mod: str, is_package: bool, _mtime_ns: int, _size: int) -> tuple[str, ...]:
    """The modules ``file`` imports (each ``from m import x`` as ``m.x`` too: x may be a module); cached per version."""
    package = mod if is_package else mod.rpartition(".")[0]
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(base)
            found.extend(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(Path(file).read_bytes(), filename=file))
    return tuple(found)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
