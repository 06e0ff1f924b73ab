"""The ``compress`` stage: turn the trained teacher into smaller / faster models.

Each method is a module in this package with ``NAME``, ``DESCRIPTION`` and
three functions:

* ``apply(model, context) -> nn.Module``: the compressed model (``context`` is a
  :class:`CompressContext` giving access to the data, for methods that need it:
  distillation, accuracy-driven pruning);
* ``save(model, folder)``: write its weights (safetensors) into ``folder``;
* ``load(float_model, folder) -> nn.Module``: rebuild it from a freshly built
  float model of the teacher's config.

Adding a method (distillation, pruning, low-rank, nested widths) means adding
a module and a line in :data:`METHODS`; the stage, the evaluation and the
registry pick it up from there. Outputs land in
``artifacts/<domain>/compressed/<method>/``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import models
from tasks import domains, store
from tasks.compress import quantize
from tasks.loop import load_model
from tasks.measure import latency_ms, size_on_disk

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun

METHODS: dict[str, ModuleType] = {quantize.NAME: quantize}
MODEL_FILES = ("model.safetensors", "config.json", "metrics.json")
"""What every model folder holds; anything else in the teacher's folder is an asset (:func:`copy_assets`)."""


@dataclass
class CompressContext:
    """What a compression method may use besides the teacher: params and (lazily) the data splits."""

    domain: str
    params: Params

    @cached_property
    def splits(self) -> dict[str, Any]:
        dom = domains.get(self.domain)
        task = self.params.section("train", self.domain).task
        return {name: dom.load_split(name, task) for name in ("train", "val")}


def load_any(folder: Path):
    """Load a teacher or compressed model folder written by this project. Returns (model, meta)."""
    folder = Path(folder)
    meta = store.read_json(folder / "config.json")
    method = meta.get("compression")
    if method is None:
        return load_model(folder)
    if method not in METHODS:
        raise ValueError(f"{folder}: unknown compression method {method!r} (known: {sorted(METHODS)})")
    float_model = models.build(meta["key"], meta["config"])
    return METHODS[method].load(float_model, folder), meta


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


def compress(domain: str, params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """Apply every configured method to the teacher; measure size on disk and CPU latency against it.

    Outputs: ``artifacts/<domain>/compressed/<method>/{model.safetensors, config.json, metrics.json}``
    and ``reports/<domain>/compress.json`` (the size/latency table).
    """
    p = params.section("compress", domain)
    paths = store.domain_paths(domain)
    if not (paths.teacher / "model.safetensors").exists():
        raise FileNotFoundError(f"{paths.teacher} has no model: run the train stage first")
    teacher, meta = load_model(paths.teacher)
    inputs = teacher.example_inputs(p.latency_batch_size)
    base_lat = latency_ms(teacher, inputs, p.latency_repeats)
    base_size = size_on_disk(paths.teacher / "model.safetensors")
    table: dict[str, Any] = {"teacher": {"bytes": base_size, "latency_ms": base_lat["median_ms"],
                                         "size_ratio": 1.0, "speedup": 1.0}}
    context = CompressContext(domain, params)
    with store.atomic_dir(paths.compressed) as out:
        for name in p.methods:
            method = METHODS[name]
            folder = out / name
            folder.mkdir()
            model = method.apply(teacher, context)
            method.save(model, folder)
            store.atomic_write_json(folder / "config.json", {**meta, "compression": name,
                                                             "description": method.DESCRIPTION})
            copy_assets(paths.teacher, folder)
            lat = latency_ms(model, inputs, p.latency_repeats)
            size = size_on_disk(folder / "model.safetensors")
            row = {"bytes": size, "latency_ms": lat["median_ms"], "size_ratio": size / base_size,
                   "speedup": base_lat["median_ms"] / lat["median_ms"]}
            store.atomic_write_json(folder / "metrics.json", row)
            table[name] = row
    paths.reports.mkdir(parents=True, exist_ok=True)
    store.atomic_write_json(paths.reports / "compress.json", {"latency_batch_size": p.latency_batch_size,
                                                               "methods": table})
    if run is not None:
        run.log_params({"methods": ",".join(p.methods), "latency_batch_size": p.latency_batch_size})
        run.log_metrics({f"{m}.{k}": v for m, row in table.items() for k, v in row.items()})
    return {"stage": "compress", "domain": domain, "methods": table,
            "outputs": {"compressed": store.content_hash(paths.compressed)}}
