"""The ``compress`` stage: turn the trained teacher into smaller / faster models, and load any of them back.

Methods (one module each, the same interface):

==============  ==========================================================================
``distill``     :mod:`.distill`: a smaller student of the teacher's family, trained against it
``prune``       :mod:`.prune`: AxFormer's accuracy-driven search, parts physically removed
``lowrank``     :mod:`.lowrank`: Greenformers' LED, SVD-initialised, ranks chosen on validation, distilled
``nested``      :mod:`.nested`: MatFormer's nested FFN, one fine-tune, every width extracted (Mix'n'Match)
``int8``        :mod:`.quantize`: torchao int8 (dynamic activations, int8 weights; embeddings)
``int8_eager``  :mod:`.quantize_eager`: torch.ao's eager dynamic int8 (deprecated API, kept by name)
==============  ==========================================================================

``compress.<domain>.methods`` lists variants, each a chain of methods joined by ``+``
(``prune+distill+int8_eager``: prune, then distillation fine-tuning, then int8); a
quantization can only come last. Chains share their prefixes: ``prune`` runs once for
``prune``, ``prune+int8_eager`` and ``prune+distill+int8_eager``.

``nested`` makes many variants from one fine-tune: the plain entry expands
(:func:`expand_methods`) to ``nested-w<width>`` for every granularity, ``nested-mix<k>``
(Mix'n'Match) and ``indep-w<width>`` (a student distilled on its own at that width, for the
paper's comparison); a chain names the width it continues from (``nested-w0.5+int8_eager``).
The token ``nested-w0.5`` runs as the steps ``nested`` (the shared fine-tune) then
``nested-w0.5`` (the extraction). Every nested variant's folder also holds ``elastic/``, the
full nested model, so the served artifact can run any extracted width (:mod:`tasks.serving`).

Each method module has ``NAME``, ``DESCRIPTION`` and ``step(model, record, context) -> model``;
the quantizations also ``save(model, folder, meta)`` and ``load(float_model, folder, meta)``.
A variant folder ``artifacts/<domain>/compressed/<variant>/`` holds ``model.safetensors``,
``config.json`` (the teacher's record plus: ``config``, the float architecture, the student's
for a distilled variant; ``plan``, the pruning cuts; ``quant``, the quantization; ``chain``)
and ``metrics.json`` (size, batch-1 latency against the teacher, parameters, seconds to make).
:func:`load_any` rebuilds any of them from those files alone: build the architecture, replay
the cuts, quantize, load the weights. No pickle anywhere.

Every variant is measured again, with the test metric, in the evaluate stage, which then
picks the one the registry serves (:mod:`.choose`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.torch import load_file, save_file
from torch import nn

import models
from tasks import domains, store
from tasks.compress import distill, lowrank, nested, prune, quantize, quantize_eager
from tasks.fanout import fan_out
from tasks.loop import Dataset, count_parameters, load_model
from tasks.measure import latency_ms, size_on_disk
from tasks.params_base import method_of

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun

METHODS: dict[str, ModuleType] = {m.NAME: m for m in (distill, prune, lowrank, nested, quantize, quantize_eager)}
QUANTIZERS = (quantize.NAME, quantize_eager.NAME)
PLAN_OPS: dict[str, ModuleType] = {op: m for m in (lowrank,) for op in m.OPS}
"""Plan ops owned by a method other than pruning (whose ops are the default)."""
ELASTIC = "elastic"
"""The sub-folder of a nested variant that holds the full nested model (any width can be sliced from it)."""
MODEL_FILES = ("model.safetensors", "config.json", "metrics.json")
"""What every model folder holds; anything else in the teacher's folder is an asset (:func:`copy_assets`)."""


class Subset:
    """Some items of a :class:`tasks.loop.Dataset` (the validation slice of a domain without a validation split)."""

    def __init__(self, data: Dataset, idx: np.ndarray) -> None:
        self.data, self.idx = data, np.asarray(idx)
        self.labels = np.asarray(data.labels)[self.idx]

    def __len__(self) -> int:
        return len(self.idx)

    def batch(self, idx: np.ndarray):
        return self.data.batch(self.idx[np.asarray(idx)])


@dataclass
class CompressContext:
    """What a method may use besides the model it transforms: the teacher, the params, the data."""

    domain: str
    params: Params
    teacher: nn.Module
    key: str

    @property
    def settings(self):
        return self.params.section("compress", self.domain)

    @property
    def loop(self):
        """The domain's training-loop settings (``train.<domain>``)."""
        return self.params.section("train", self.domain)

    @property
    def task(self) -> str:
        return self.loop.task

    @cached_property
    def splits(self) -> dict[str, Dataset | None]:
        """``train``, ``val`` (None when the domain has no validation split, as EEG's deployment split) and
        ``search``: the validation items of the pruning search (``val``, or else the last 15 % of ``train``,
        as AxFormer holds out a slice of the training set)."""
        dom = domains.get(self.domain)
        paths = store.domain_paths(self.domain)
        train = dom.load_split("train", self.task)
        val = dom.load_split("val", self.task) if (paths.processed / "val.safetensors").exists() else None
        if val is None:
            n = len(train)
            search: Dataset = Subset(train, np.arange(n - max(1, round(0.15 * n)), n))
        else:
            search = val
        return {"train": train, "val": val, "search": search}

    def val_items(self, cap: int | None = None) -> Dataset:
        """The validation items of a search (pruning's, low-rank's), at most ``cap`` (default
        ``prune.max_val_items``), evenly spread."""
        val = self.splits["search"]
        cap = self.settings.prune.max_val_items if cap is None else cap
        if len(val) <= cap:
            return val
        return Subset(val, np.linspace(0, len(val) - 1, cap).round().astype(np.int64))

    def loop_settings(self, epochs: int | None, lr_factor: float = 1.0):
        """The domain's loop for a compression step: its own epochs, no resume, the best epoch kept."""
        update: dict[str, Any] = {"resume": False}
        if epochs is not None:
            update["epochs"] = epochs
        if lr_factor != 1.0:
            update["lr"] = self.loop.lr * lr_factor
        return self.loop.model_copy(update=update)


# ============================================================================ variants on disk
def method(token: str) -> ModuleType:
    """The module of a chain token (``nested-w0.5`` -> :mod:`.nested`)."""
    return METHODS[method_of(token)]


def describe(chain: list[str]) -> str:
    """One line per chain: what each step did (a step after another may say so, e.g. distillation fine-tuning)."""
    parts = []
    for i, token in enumerate(chain):
        mod = method(token)
        text = mod.describe(token) if hasattr(mod, "describe") else mod.DESCRIPTION
        parts.append(getattr(mod, "CHAINED_DESCRIPTION", text) if i and mod is not nested else text)
    return " -> ".join(dict.fromkeys(parts))


def parse_chain(variant: str) -> list[str]:
    """``"prune+distill+int8"`` -> ``["prune", "distill", "int8"]`` (validated by the params schema).

    A nested width token runs after the shared fine-tune: ``nested-w0.5+int8`` -> ``["nested", "nested-w0.5",
    "int8"]`` (``indep-w0.5`` starts from the teacher: it is a separate training).
    """
    out = []
    for token in variant.split("+"):
        if token.startswith("nested-"):
            out.append(nested.NAME)
        out.append(token)
    return out


def expand_methods(methods: list[str], teacher: nn.Module, settings: Any) -> list[str]:
    """The configured variants with plain ``nested`` replaced by every variant it makes (:func:`nested.expand`)."""
    out: list[str] = []
    for variant in methods:
        out.extend(nested.expand(teacher, settings.nested) if variant == nested.NAME else [variant])
    return list(dict.fromkeys(out))


def replay(model: nn.Module, plan: list[dict[str, Any]]) -> nn.Module:
    """Replay a recorded plan (pruning cuts, nested extraction slices, low-rank factorisations) on a model."""
    for op in plan:
        PLAN_OPS.get(op.get("op"), prune).apply_op(model, op)
    return model


def save_variant(folder: Path, model: nn.Module, record: dict[str, Any]) -> None:
    """Weights (quantized by the record's method, else plain) and ``config.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    if record.get("quant"):
        METHODS[record["quant"]].save(model, folder, record)
    else:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(folder / "model.safetensors"))
    store.atomic_write_json(folder / "config.json", record)


def load_any(folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a teacher or compressed model folder written by this project. Returns (model, meta).

    A compressed one is rebuilt from its files alone: the float architecture from ``config``,
    the pruning ``plan`` replayed on it, the quantization applied, then the weights loaded.
    """
    folder = Path(folder)
    meta = store.read_json(folder / "config.json")
    if "compression" not in meta:
        return load_model(folder)
    unknown = [m for m in meta.get("chain", []) if method_of(m) not in METHODS]
    if unknown:
        raise ValueError(f"{folder}: unknown compression method(s) {unknown} (known: {sorted(METHODS)})")
    model = replay(models.build(meta["key"], meta["config"]), meta.get("plan", []))
    if meta.get("quant"):
        model = METHODS[meta["quant"]].load(model, folder, meta)
    else:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.eval(), meta


def load_elastic(folder: Path) -> tuple[nn.Module, dict[str, Any]] | None:
    """The full nested model kept beside a nested variant (``<folder>/elastic/``), float; None for other variants."""
    folder = Path(folder)
    return load_any(folder / ELASTIC) if (folder / ELASTIC / "config.json").exists() else None


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (else copy) a saved model folder: every nested variant holds the same elastic weights."""
    dst.mkdir(parents=True)
    for item in src.iterdir():
        try:
            (dst / item.name).hardlink_to(item)
        except OSError:
            shutil.copy2(item, dst / item.name)


def copy_assets(teacher: Path, folder: Path) -> None:
    """Copy the teacher folder's assets (what the domain saved besides the weights, e.g. finance's tokenizer)
    into a compressed model's folder, so every model folder can be served on its own."""
    for item in sorted(teacher.iterdir()):
        if item.name in MODEL_FILES or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, folder / item.name)
        else:
            shutil.copy2(item, folder / item.name)


# ============================================================================ the stage
QUANT = ("int8", "int8_eager")
"""Chain tokens that convert rather than train (seconds each)."""


def _make(chains: list[list[str]], done: dict[tuple[str, ...], tuple[nn.Module, dict[str, Any], float]],
          ctx: CompressContext) -> None:
    """Make every prefix of ``chains`` not yet in ``done`` (model, record, seconds from the teacher), in order."""
    for chain in chains:
        for i in range(1, len(chain) + 1):  # each prefix once, shared by the chains that start with it
            prefix = tuple(chain[:i])
            if prefix in done:
                continue
            model, record, seconds = done[prefix[:-1]]
            record = {**record, "chain": list(prefix), "plan": list(record["plan"])}
            t0 = time.perf_counter()
            model = method(prefix[-1]).step(model, record, ctx) if prefix[-1] in METHODS else \
                method(prefix[-1]).token_step(prefix[-1], model, record, ctx)
            done[prefix] = (model, record, seconds + time.perf_counter() - t0)


def make_chains(chains: list[list[str]], teacher_record: dict[str, Any], ctx: CompressContext
                ) -> dict[tuple[str, ...], tuple[nn.Module, dict[str, Any], float]]:
    """Every prefix of ``chains`` made from ``ctx.teacher``: one fan-out task of :func:`compress` (a Dask worker
    reads the domain's splits from the project folder, so a remote cluster needs it at the same path)."""
    done: dict[tuple[str, ...], tuple[nn.Module, dict[str, Any], float]] = {(): (ctx.teacher, teacher_record, 0.0)}
    _make(chains, done, ctx)
    del done[()]
    return done


def compress(domain: str, params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """Make every configured variant of the teacher; measure its size and batch-1 latency against the teacher.

    Outputs: ``artifacts/<domain>/compressed/<variant>/{model.safetensors, config.json, metrics.json}``
    (+ the teacher's assets) and ``reports/<domain>/compress.json`` (size, latency, parameters and
    seconds to make, per variant).
    """
    p = params.section("compress", domain)
    paths = store.domain_paths(domain)
    if not (paths.teacher / "model.safetensors").exists():
        raise FileNotFoundError(f"{paths.teacher} has no model: run the train stage first")
    teacher, meta = load_model(paths.teacher)
    ctx = CompressContext(domain, params, teacher, meta["key"])
    inputs = teacher.example_inputs(p.latency_batch_size)
    base_lat = latency_ms(teacher, inputs, p.latency_repeats)
    base_size = size_on_disk(paths.teacher / "model.safetensors")
    table: dict[str, Any] = {"teacher": {"bytes": base_size, "latency_ms": base_lat["median_ms"], "size_ratio": 1.0,
                                         "speedup": 1.0, "parameters": count_parameters(teacher), "seconds": 0.0}}
    teacher_record = {**meta, "plan": [], "quant": None, "chain": [], "student": False}
    done: dict[tuple[str, ...], tuple[nn.Module, dict[str, Any], float]] = {(): (teacher, teacher_record, 0.0)}
    elastic: Path | None = None  # the full nested model, saved once, linked into every nested variant
    variants = expand_methods(p.methods, teacher, p)
    if params.pipeline.task_runner != "threads":
        # The trainings of different chain roots are independent: on the cluster, one task per root (each
        # prefix still made once). The int8 conversions take seconds and stay here, as does every latency
        # measurement below (one at a time, so no variant is timed while another trains).
        groups: dict[str, list[list[str]]] = {}
        for variant in variants:
            chain = parse_chain(variant)
            trained = chain[:max((i + 1 for i, t in enumerate(chain) if t not in QUANT), default=0)]
            if trained:
                groups.setdefault(trained[0], []).append(trained)
        for made in fan_out(make_chains, [(chains, teacher_record, ctx) for chains in groups.values()],
                            params.pipeline, what=f"compress {domain}"):
            done.update(made)
    with store.atomic_dir(paths.compressed) as out:
        for variant in variants:
            chain = parse_chain(variant)
            _make([chain], done, ctx)
            model, record, seconds = done[tuple(chain)]
            folder = out / variant
            record = {**record, "chain": [t for t in chain if t != nested.NAME or chain == [nested.NAME]],
                      "compression": variant, "compile": bool(p.compile and record.get("quant") == "int8"),
                      "description": describe(chain)}
            params_float = record.pop("_parameters", None) or count_parameters(model)
            save_variant(folder, model, record)
            copy_assets(paths.teacher, folder)
            if chain[0] == nested.NAME:
                if elastic is None:
                    elastic = out / f".{ELASTIC}"
                    full, full_record, _ = done[(nested.NAME,)]
                    save_variant(elastic, full, {**full_record, "compression": nested.NAME, "chain": [nested.NAME],
                                                 "description": nested.DESCRIPTION})
                _link_tree(elastic, folder / ELASTIC)
            # What the domain chooses on validation for each variant itself (netflow: the decision threshold).
            domains.get(domain).calibrate(folder, model)
            lat = latency_ms(model, inputs, p.latency_repeats)
            size = size_on_disk(folder / "model.safetensors")
            row = {"bytes": size, "latency_ms": lat["median_ms"], "size_ratio": size / base_size,
                   "speedup": base_lat["median_ms"] / lat["median_ms"], "parameters": params_float,
                   "seconds": round(seconds, 2), **{k: v for k, v in record.get("stats", {}).items()}}
            store.atomic_write_json(folder / "metrics.json", row)
            table[variant] = row
            print(f"compress {domain}: {variant}: {size / 1024:,.0f} KB ({row['size_ratio']:.2f}x), "
                  f"{row['latency_ms']:.3f} ms at batch {p.latency_batch_size} ({row['speedup']:.2f}x), "
                  f"{seconds:.1f} s")
        if elastic is not None:
            shutil.rmtree(elastic)
    paths.reports.mkdir(parents=True, exist_ok=True)
    store.atomic_write_json(paths.reports / "compress.json", {"latency_batch_size": p.latency_batch_size,
                                                               "methods": table})
    if run is not None:
        run.log_params({"methods": ",".join(p.methods), "latency_batch_size": p.latency_batch_size,
                        "budget": p.budget, "objective": p.objective})
        run.log_metrics({f"{m}.{k}": v for m, row in table.items() for k, v in row.items()
                         if isinstance(v, int | float) and not isinstance(v, bool)})
    return {"stage": "compress", "domain": domain, "methods": table,
            "outputs": {"compressed": store.content_hash(paths.compressed)}}

