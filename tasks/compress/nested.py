"""MatFormer (models.md 7): nested FFN widths, one joint fine-tune, every width extracted, Mix'n'Match.

Every block of ``model.prunable_blocks()`` with ``ffn_in`` / ``ffn_out`` gets a nested FFN: the
sub-model at granularity ``f`` uses the first ``k = n / f`` hidden units of every such block (rows of
``W_in`` and ``b_in``, columns of ``W_out``, the full ``b_out``). Attention, embeddings and norms
are shared, un-nested.

* Training-time nesting swaps the two Linears of each FFN for :class:`NestedLinear`, an
  ``nn.Linear`` holding the very same parameters whose forward slices them to an active width
  (:func:`nest`, :func:`at_width`). The state-dict keys do not change, and :func:`unnest` puts plain
  ``nn.Linear`` back, so the fine-tuned full model is a plain model of the teacher's architecture:
  the f = 1 sub-model *is* it, and ``nested-w1`` equals it exactly.
* Before fine-tuning, each block's hidden units are **reordered by importance** (:func:`reorder`:
  a function-preserving permutation of ``W_in`` rows / ``b_in`` / ``W_out`` columns, by the mean
  ``|activation_j| * ||W_out[:, j]||`` over a few training items, or the weight norms
  ``||W_out[:, j]|| * ||W_in[j, :]||`` without data). This deliberately differs from MatFormer,
  which trains nested from scratch, so its prefixes are important by construction: a pretrained
  teacher's units come in arbitrary order, and prefix slicing must keep the important ones
  (DynaBERT's "rewiring").
* ``step`` (token ``nested``): MatFormer's joint objective on a copy of the teacher (MatFormer-OLMo):
  on every batch, the distillation loss against the teacher (:func:`tasks.compress.distill.loss_against`,
  ``compress.<domain>.distill`` temperature / alpha) at **every** granularity, summed, then one
  backward, one gradient clip and **one** optimizer step. Summing the losses and calling backward once
  gives exactly the summed per-granularity gradients; it runs through :func:`tasks.loop.fit`'s
  ``loss_fn`` (:func:`joint_loss`). The teacher runs once per batch, not once per granularity.
* ``token_step``: ``nested-w<width>`` extracts a dense copy by prune's ``units`` ops (appended to
  the record's plan, so :func:`tasks.compress.load_any` rebuilds it from config + safetensors);
  ``nested-mix<k>`` extracts a Mix'n'Match model (:func:`mix_widths`); ``indep-w<width>`` is the
  paper's comparison: the teacher, reordered and sliced the same way, distilled on its own at that
  fixed width with the same loss and epochs.

Widths are written ``1 / f`` compactly (``1``, ``0.5``, ``0.25``, ``0.125``: :func:`fmt_width`). A
server holding the full nested model (a variant's ``elastic/`` folder) gets any width with
:func:`extract`, the trained ones from :func:`available_widths`.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.base import BlockSpec
from tasks.compress import distill, prune
from tasks.loop import Dataset, FitResult, fit, sample_losses
from tasks.params_base import NESTED_TOKEN

NAME = "nested"
DESCRIPTION = ("MatFormer nested-FFN fine-tune of the teacher (every granularity on every batch, one step), "
               "units reordered by importance first")

Widths = float | Mapping[str, float]
"""One width for every nested block, or a width per block name."""


# ============================================================================ widths and tokens
def fmt_width(width: float) -> str:
    """``1``, ``0.5``, ``0.25``, ``0.125``: the compact width of a token (``1 / 3`` -> ``0.333333``)."""
    return f"{width:g}"


def width_of(granularity: int) -> float:
    return 1.0 / granularity


def units_at(n: int, width: float) -> int:
    """Hidden units kept of ``n`` at ``width``: ``n / f`` for a granularity ``f`` (at least one)."""
    return max(1, min(n, round(n * width)))


def parse(token: str) -> tuple[str, float | int]:
    """``nested-w0.5`` -> ``("width", 0.5)``; ``nested-mix2`` -> ``("mix", 2)``; ``indep-w0.5`` -> ``("indep", 0.5)``.

    A width that is ``1 / f`` up to the token's rounding (``0.333333``) is read as exactly ``1 / f``.
    """
    m = NESTED_TOKEN.match(token)
    if m is None:
        raise ValueError(f"{token!r} is not a nested token (nested-w<width>, nested-mix<k>, indep-w<width>)")
    if m["mix"] is not None:
        k = int(m["mix"])
        if k < 1:
            raise ValueError(f"{token!r}: Mix'n'Match picks are numbered from 1")
        return "mix", k
    kind, text = ("width", m["width"]) if m["width"] is not None else ("indep", m["indep"])
    width = float(text)
    if not 0.0 < width <= 1.0:
        raise ValueError(f"{token!r}: a width is a fraction of the FFN's hidden units in (0, 1]")
    f = round(1.0 / width)
    if fmt_width(width_of(f)) == text or abs(width * f - 1.0) < 1e-6:
        width = width_of(f)
    return kind, width


def nested_specs(model: nn.Module) -> list[BlockSpec]:
    """The blocks with a nested FFN: those of ``model.prunable_blocks()`` that name ``ffn_in`` and ``ffn_out``."""
    return [s for s in model.prunable_blocks() if s.ffn_in and s.ffn_out]


def units(model: nn.Module) -> dict[str, int]:
    """Hidden units of every nested block, ``{block: n}``."""
    return {s.name: model.get_submodule(s.ffn_in).out_features for s in nested_specs(model)}


def _per_block(blocks: list[str], widths: Widths) -> dict[str, float]:
    if isinstance(widths, Mapping):
        unknown = sorted(set(widths) - set(blocks))
        if unknown:
            raise ValueError(f"no nested block(s) {unknown} (blocks: {blocks})")
        return {b: float(widths.get(b, 1.0)) for b in blocks}
    return dict.fromkeys(blocks, float(widths))


# ============================================================================ training-time nesting
class NestedLinear(nn.Linear):
    """An FFN Linear sliced to its block's active width: the same ``weight`` / ``bias`` parameters (same keys).

    ``role="in"`` (the FFN's first Linear) keeps the first ``active`` output rows and bias entries;
    ``role="out"`` (the second) the first ``active`` input columns and the whole bias. ``active=None`` is
    the full width.
    """

    def __init__(self, linear: nn.Linear, role: str) -> None:
        nn.Module.__init__(self)  # no new weights: the Linear's own parameters are taken over
        if role not in ("in", "out"):
            raise ValueError(f"role must be 'in' or 'out', got {role!r}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.role = role
        self.active: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.active
        if k is None:
            return F.linear(x, self.weight, self.bias)
        if self.role == "in":  # (..., d) -> (..., k)
            return F.linear(x, self.weight[:k], None if self.bias is None else self.bias[:k])
        return F.linear(x, self.weight[:, :k], self.bias)  # (..., k) -> (..., d)

    def plain(self) -> nn.Linear:
        """A plain ``nn.Linear`` holding the same parameters (no new weights drawn)."""
        lin = torch.nn.utils.skip_init(nn.Linear, self.in_features, self.out_features, bias=self.bias is not None,
                                       device=self.weight.device, dtype=self.weight.dtype)
        lin.weight = self.weight
        lin.bias = self.bias
        return lin

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, role={self.role}, active={self.active}"


def nest(model: nn.Module) -> nn.Module:
    """Swap every nested block's FFN Linears for :class:`NestedLinear` (in place; the state dict is unchanged)."""
    for spec in nested_specs(model):
        for path, role in ((spec.ffn_in, "in"), (spec.ffn_out, "out")):
            lin = model.get_submodule(path)
            if isinstance(lin, NestedLinear):
                continue
            if type(lin) is not nn.Linear:
                raise TypeError(f"{path}: a nested FFN needs plain nn.Linear layers, got {type(lin).__name__}")
            prune.set_module(model, path, NestedLinear(lin, role))
    return model


def unnest(model: nn.Module) -> nn.Module:
    """Put plain ``nn.Linear`` back (in place): the model is again exactly the teacher's architecture."""
    for name, module in list(model.named_modules()):
        if isinstance(module, NestedLinear):
            prune.set_module(model, name, module.plain())
    return model


def is_nested(model: nn.Module) -> bool:
    return any(isinstance(m, NestedLinear) for m in model.modules())


@contextmanager
def at_width(model: nn.Module, widths: Widths) -> Iterator[nn.Module]:
    """Run a :func:`nest`-ed model at one width (or a width per block); full width again on exit."""
    specs = nested_specs(model)
    per = _per_block([s.name for s in specs], widths)
    try:
        for spec in specs:
            lin_in, lin_out = model.get_submodule(spec.ffn_in), model.get_submodule(spec.ffn_out)
            if isinstance(lin_in, NestedLinear) and isinstance(lin_out, NestedLinear):
                k = units_at(lin_in.out_features, per[spec.name])
                lin_in.active = lin_out.active = None if k == lin_in.out_features else k
        yield model
    finally:
        for module in model.modules():
            if isinstance(module, NestedLinear):
                module.active = None


# ============================================================================ importance reordering
def _items(data: Dataset, n: int) -> np.ndarray:
    """``n`` items spread evenly over ``data`` (a split stored in time or class order is covered whole)."""
    return np.unique(np.linspace(0, len(data) - 1, min(n, len(data))).round().astype(np.int64))


def importance(model: nn.Module, data: Dataset | None = None, items: int = 256,
               batch_size: int = 64) -> dict[str, torch.Tensor]:
    """A score per hidden unit of every nested block, ``{block: (n,)}``: how much the unit adds to the output.

    With ``data``: the mean ``|a_j|`` of the unit's activation (the input of ``ffn_out``) over ``items``
    training items (every token / position / loop), times ``||W_out[:, j]||``; gradient-free. Without data
    (or ``items=0``): ``||W_out[:, j]|| * ||W_in[j, :]||``.
    """
    specs = nested_specs(model)
    w_out = {s.name: model.get_submodule(s.ffn_out).weight.detach().float() for s in specs}  # (d, n)
    if data is None or items <= 0 or len(data) == 0:
        return {s.name: torch.linalg.vector_norm(w_out[s.name], dim=0)
                * torch.linalg.vector_norm(model.get_submodule(s.ffn_in).weight.detach().float(), dim=1)
                for s in specs}
    sums = {s.name: torch.zeros(w_out[s.name].shape[1], dtype=torch.float64) for s in specs}
    counts = dict.fromkeys(sums, 0)

    def hook(name: str):
        def accumulate(module: nn.Module, args: tuple) -> None:
            a = args[0].detach().float()  # (..., n): the FFN's hidden activation
            sums[name] += a.abs().reshape(-1, a.shape[-1]).sum(0).double().cpu()
            counts[name] += a.numel() // a.shape[-1]
        return accumulate

    handles = [model.get_submodule(s.ffn_out).register_forward_pre_hook(hook(s.name)) for s in specs]
    was_training = model.training
    model.eval()
    try:
        idx = _items(data, items)
        with torch.inference_mode():
            for start in range(0, len(idx), batch_size):
                inputs, _ = data.batch(idx[start:start + batch_size])
                model(*inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: (sums[name] / max(counts[name], 1)).float() * torch.linalg.vector_norm(w_out[name], dim=0)
            for name in sums}


def permute_units(model: nn.Module, spec: BlockSpec, order: torch.Tensor) -> None:
    """Reorder one block's hidden units (in place, the same parameters): unit ``order[i]`` becomes unit ``i``.

    Function-preserving: ``W_out[:, P] act(W_in[P] x + b_in[P])`` sums the same terms as before.
    """
    lin_in, lin_out = model.get_submodule(spec.ffn_in), model.get_submodule(spec.ffn_out)
    order = order.to(lin_in.weight.device)
    with torch.no_grad():
        lin_in.weight.copy_(lin_in.weight[order])  # (n, d) rows
        if lin_in.bias is not None:
            lin_in.bias.copy_(lin_in.bias[order])
        lin_out.weight.copy_(lin_out.weight[:, order])  # (d, n) columns


def reorder(model: nn.Module, data: Dataset | None = None, items: int = 256,
            batch_size: int = 64) -> dict[str, list[int]]:
    """Sort every nested block's hidden units by :func:`importance`, most important first (in place).

    Returns:
        ``{block: order}``: the old index of each new unit. Deterministic for the same model and data
        (a stable sort), so the nested fine-tune and every independent student slice the same units.
    """
    scores = importance(model, data, items, batch_size)
    orders = {}
    for spec in nested_specs(model):
        order = torch.argsort(scores[spec.name], descending=True, stable=True)
        permute_units(model, spec, order)
        orders[spec.name] = order.tolist()
    return orders


# ============================================================================ extraction and Mix'n'Match
def plan_for(model: nn.Module, widths: Widths) -> list[dict[str, Any]]:
    """Prune's ``units`` ops slicing every nested block to its width (none for a block kept whole)."""
    n = units(model)
    per = _per_block(list(n), widths)
    return [{"op": "units", "block": b, "keep": list(range(units_at(n[b], per[b])))}
            for b in n if units_at(n[b], per[b]) < n[b]]


def extract(full_model: nn.Module, width: Widths) -> nn.Module:
    """A dense sub-model of the full nested model: a copy with each FFN sliced to its prefix (eval mode).

    Args:
        full_model: The fine-tuned full model (plain or still :func:`nest`-ed; left unchanged).
        width: One width in (0, 1] (``1 / f``), or a width per block name (Mix'n'Match; missing blocks: 1).
    """
    model = unnest(copy.deepcopy(full_model))
    prune.apply_plan(model, plan_for(model, width))
    return model.eval()


def available_widths(meta: Mapping[str, Any]) -> list[float]:
    """The widths the nested model of a record (``config.json``) was trained at, widest first ([] for others)."""
    nested = meta.get("nested") or {}
    return [width_of(f) for f in sorted(nested.get("granularities", []))]


def mixes(meta: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The Mix'n'Match picks of a nested record, ``{"nested-mix1": {block: width}, ...}`` (a server's menu)."""
    return dict((meta.get("nested") or {}).get("mixes", {}))


def _depth(name: str, position: int) -> int:
    """A block's depth: the index in its module list (``temporal_blocks.1`` and ``spatial_blocks.1`` are both
    depth 1 of DBConformer's two parallel branches), else its position."""
    digits = re.findall(r"\d+", name)
    return int(digits[-1]) if digits else position


def mix_widths(blocks: list[str], granularities: list[int]) -> list[dict[str, float]]:
    """Mix'n'Match picks: per-block widths between neighbouring granularities, non-decreasing with depth.

    The paper's heuristic favours widths that change slowly and monotonically across the layers; here, for
    each pair of neighbouring widths ``(1/f, 2/f)``, the shallower half of the depths at ``1/f`` and the rest
    at ``2/f`` (one pick per pair, numbered from the smallest). A model with a single depth (IFactFormer-m's
    one shared block) has no mixes.
    """
    depth = {b: _depth(b, i) for i, b in enumerate(blocks)}
    levels = sorted(set(depth.values()))
    if len(levels) < 2:
        return []
    shallow = set(levels[: len(levels) // 2])
    widths = sorted(width_of(f) for f in set(granularities))  # narrowest first
    return [{b: (small if depth[b] in shallow else large) for b in blocks}
            for small, large in zip(widths, widths[1:], strict=False)]


# ============================================================================ the joint objective
class _Recorded(nn.Module):
    """The teacher's outputs on the current batch, served to every granularity's loss (the teacher runs once)."""

    def __init__(self, out: torch.Tensor, hidden: torch.Tensor | None) -> None:
        super().__init__()
        self.out, self.hidden = out, hidden

    def forward(self, *inputs: Any) -> torch.Tensor:
        return self.out

    def embed(self, *inputs: Any) -> torch.Tensor | None:
        return self.hidden


def joint_loss(teacher: nn.Module, task: str, granularities: list[int], *, temperature: float, alpha: float,
               hidden_weight: float = 0.0):
    """MatFormer's joint objective in :func:`tasks.loop.fit`'s ``loss_fn`` form: the sum over granularities of
    the distillation loss against ``teacher`` (:func:`tasks.compress.distill.loss_against`), equal weights.

    One backward of the sum gives the summed per-granularity gradients, and fit then clips once and takes
    one optimizer step per batch (MatFormer-OLMo). ``teacher`` is moved to the batch's device on first use
    (pass a private copy). With ``granularities=[1]`` on a plain model it is distill's loss (indep students).
    """
    teacher = teacher.eval()

    def loss(model: nn.Module, inputs: tuple, y: torch.Tensor) -> torch.Tensor:
        device = inputs[0].device
        if next(teacher.parameters()).device != device:
            teacher.to(device)
        with torch.no_grad():
            t_out = teacher(*inputs)
            t_hidden = teacher.embed(*inputs) if hidden_weight > 0 else None
        per = distill.loss_against(_Recorded(t_out, t_hidden), task, temperature=temperature, alpha=alpha,
                                   hidden_weight=hidden_weight)
        total = None
        for f in granularities:
            with at_width(model, width_of(f)):
                value = per(model, inputs, y)
            total = value if total is None else total + value
        return total

    return loss


def joint_finetune(model: nn.Module, teacher: nn.Module, train: Dataset, val: Dataset | None, cfg: Any, *,
                   task: str, granularities: list[int], temperature: float, alpha: float,
                   hidden_weight: float = 0.0) -> FitResult:
    """MatFormer fine-tune of ``model`` (in place; already reordered), by :func:`tasks.loop.fit`.

    ``model`` is nested for the fit and plain again afterwards. Validation (the best epoch) runs at full
    width. Returns fit's result.
    """
    nest(model)
    try:
        loss = joint_loss(copy.deepcopy(teacher), task, granularities, temperature=temperature, alpha=alpha,
                          hidden_weight=hidden_weight)
        return fit(model, train, val, cfg, task=task, loss_fn=loss)  # a bar on a terminal, as every fit
    finally:
        unnest(model)


def val_losses(model: nn.Module, data: Dataset, task: str, granularities: list[int],
               batch_size: int = 1024) -> dict[str, float]:
    """Mean training loss (labels) of the sub-model at each granularity, ``{width: loss}`` (model unchanged)."""
    nested = nest(copy.deepcopy(model))
    out = {}
    for f in granularities:
        with at_width(nested, width_of(f)):
            out[fmt_width(width_of(f))] = round(float(sample_losses(nested, data, task, batch_size).mean()), 6)
    return out


# ============================================================================ the stage's interface
def expand(teacher: nn.Module, settings: Any) -> list[str]:
    """The variants of a plain ``nested`` entry (``compress.<domain>.nested``: :class:`NestedSettings`).

    ``nested-w<w>`` for every granularity (widest first), ``nested-mix<k>`` (with ``mix``, when the model
    has more than one depth of nested blocks), ``indep-w<w>`` for f > 1 (with ``compare_independent``).
    """
    specs = nested_specs(teacher)
    if not specs:
        raise ValueError(f"{type(teacher).__name__} has no FFN with hidden units to nest (prunable_blocks() "
                         "names no ffn_in / ffn_out)")
    grans = sorted(settings.granularities)
    out = [f"nested-w{fmt_width(width_of(f))}" for f in grans]
    if settings.mix:
        out += [f"nested-mix{k}" for k in range(1, len(mix_widths([s.name for s in specs], grans)) + 1)]
    if settings.compare_independent:
        out += [f"indep-w{fmt_width(width_of(f))}" for f in grans if f > 1]
    return out


def describe(token: str) -> str:
    """One line per chain token, for reports."""
    if token == NAME:
        return DESCRIPTION
    kind, value = parse(token)
    if kind == "width":
        return f"MatFormer sub-model: every FFN at width {fmt_width(value)}, sliced from the nested fine-tune"
    if kind == "mix":
        return (f"MatFormer Mix'n'Match pick {value}: per-block FFN widths of two neighbouring granularities, "
                "non-decreasing with depth, sliced from the nested fine-tune")
    return (f"independent baseline: the teacher's FFNs (reordered by importance) sliced to width {fmt_width(value)}, "
            "distilled alone with the nested fine-tune's loss and epochs")


def _loop(context: Any) -> Any:
    """The loop of the fine-tune and of the independent students: ``nested.epochs``, ``lr * nested.lr_factor``,
    ``nested.steps_per_epoch`` when set."""
    s = context.settings.nested
    cfg = context.loop_settings(s.epochs, s.lr_factor)
    return cfg if s.steps_per_epoch is None else cfg.model_copy(update={"steps_per_epoch": s.steps_per_epoch})


def _importance_data(context: Any) -> tuple[Dataset | None, int]:
    items = context.settings.nested.importance_items
    return (context.splits["train"] if items > 0 else None), items


def step(model: nn.Module, record: dict[str, Any], context: Any) -> nn.Module:
    """Token ``nested``: reorder a copy of the teacher's units, then MatFormer's joint fine-tune. Returns the
    full model (plain modules, eval mode); ``record["nested"]`` says how to slice it."""
    s, d = context.settings.nested, context.settings.distill
    t0 = time.perf_counter()
    full = copy.deepcopy(model)
    data, items = _importance_data(context)
    reorder(full, data, items, context.loop.eval_batch_size)
    val = context.val_items()
    before = val_losses(full, val, context.task, s.granularities, context.loop.eval_batch_size)
    result = joint_finetune(full, context.teacher, context.splits["train"], context.splits["val"],
                            _loop(context), task=context.task,
                            granularities=s.granularities, temperature=d.temperature, alpha=d.alpha,
                            hidden_weight=d.hidden_weight)
    after = val_losses(full, val, context.task, s.granularities, context.loop.eval_batch_size)
    blocks = [spec.name for spec in nested_specs(full)]
    picks = mix_widths(blocks, s.granularities)  # recorded even when not expanded (``mix``): a server's menu
    record["nested"] = {
        "granularities": list(s.granularities), "widths": [fmt_width(width_of(f)) for f in s.granularities],
        "units": units(full), "importance": "activation" if data is not None else "weight",
        "importance_items": items if data is not None else 0,
        "mixes": {f"nested-mix{k}": pick for k, pick in enumerate(picks, 1)}}
    record["stats"] = {**record.get("stats", {}), "nested_seconds": round(time.perf_counter() - t0, 2),
                       "nested_fit_seconds": round(result.seconds, 2), "nested_epochs": result.epochs_run,
                       "nested_best_epoch": result.best_epoch, "nested_val_loss_before": before,
                       "nested_val_loss": after}
    return full.eval()


def token_step(token: str, model: nn.Module, record: dict[str, Any], context: Any) -> nn.Module:
    """``nested-w<width>`` / ``nested-mix<k>``: slice the full nested model (``model``, the ``nested`` step's);
    ``indep-w<width>``: distil the teacher (``model``), reordered and sliced, at that width on its own."""
    kind, value = parse(token)
    if kind == "indep":
        return _independent(float(value), model, record, context)
    if "nested" not in record or "granularities" not in record["nested"]:
        raise ValueError(f"{token}: runs after the nested fine-tune (chain {record.get('chain')})")
    blocks = list(record["nested"]["units"])
    if kind == "mix":
        picks = record["nested"].get("mixes", {})
        if f"nested-mix{value}" not in picks:
            raise ValueError(f"{token}: no such Mix'n'Match pick; this model has {sorted(picks) or 'none'} "
                             f"(granularities {record['nested']['granularities']}, blocks {blocks})")
        widths: dict[str, float] = dict(picks[f"nested-mix{value}"])
        width = None
    else:
        widths, width = _per_block(blocks, float(value)), float(value)
    plan = plan_for(model, widths)
    sub = extract(model, widths)
    record["plan"] = [*record["plan"], *plan]
    # A new dict: the nested step's record (shared by every variant of the fine-tune) stays as it is.
    record["nested"] = {**record["nested"], "width": width, "blocks": widths}
    record["stats"] = {**record.get("stats", {}), "nested_width": width,
                       "nested_blocks": ",".join(fmt_width(widths.get(b, 1.0)) for b in blocks)}  # report's mix rows
    return sub


def _independent(width: float, teacher: nn.Module, record: dict[str, Any], context: Any) -> nn.Module:
    """The comparison baseline: the teacher with the same reordering, sliced to ``width``, distilled alone."""
    d = context.settings.distill
    t0 = time.perf_counter()
    student = copy.deepcopy(teacher)
    data, items = _importance_data(context)
    reorder(student, data, items, context.loop.eval_batch_size)
    blocks = list(units(student))
    plan = plan_for(student, width)
    prune.apply_plan(student, plan)
    loss = joint_loss(copy.deepcopy(context.teacher), context.task, [1], temperature=d.temperature, alpha=d.alpha,
                      hidden_weight=d.hidden_weight)
    result = fit(student, context.splits["train"], context.splits["val"], _loop(context), task=context.task,
                 loss_fn=loss, progress=False, name=f"{context.domain} indep-w{width:g}")
    val = sample_losses(student, context.val_items(), context.task, context.loop.eval_batch_size)
    record["plan"] = [*record["plan"], *plan]
    record["nested"] = {"width": width, "blocks": _per_block(blocks, width), "independent": True,
                        "importance": "activation" if data is not None else "weight"}
    record["stats"] = {**record.get("stats", {}), "indep_width": width,
                       "indep_seconds": round(time.perf_counter() - t0, 2), "distill_epochs": result.epochs_run,
                       "distill_best_epoch": result.best_epoch, "indep_val_loss": round(float(val.mean()), 6)}
    return student.eval()
