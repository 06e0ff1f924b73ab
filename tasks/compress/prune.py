"""Accuracy-driven structured pruning (AxFormer, models.md 5.3), with the parts physically removed.

The search follows the AxFormer reference: on a validation set, from the last block to the
first, try removing the block's FFN, then its attention; keep a removal only when the
validation loss does not rise (``loss <= min_loss * (1 + tolerance)``; the paper's rule is
``tolerance = 0``) **and** at least half of the validation items are no worse than under the
unpruned model. When a removal is rejected but its loss was within 10 % of the best
(the reference's "close" test), the finer grain is tried instead: single heads of the
attention, groups of FFN hidden units. No gradient step happens during the search; the
pruned model is fine-tuned afterwards (by the shared loop, or by distillation in a
``prune+distill`` chain).

Unlike the reference (which only masks, "does not perform actual pruning"), every accepted
cut is physical (:func:`apply_op`): a removed branch becomes a parameter-free
:class:`models.base.ZeroBranch` (a pre-LN block with nothing left becomes ``nn.Identity``),
heads and FFN units are sliced out of the weight matrices. The cuts are recorded as a plan
(a list of JSON ops) beside the weights; :func:`apply_plan` replays them on a model freshly
built from its config, so a pruned model reloads from config + safetensors alone.

Where a model can be cut is the model's own knowledge: ``model.prunable_blocks()``
(:class:`models.base.BlockSpec`): which modules form a block's attention and FFN branches,
which matrices hold its heads and hidden units. torch-pruning (pinned 1.6.1) removes the
channels (``prune_linear_out_channels`` / ``prune_linear_in_channels``); its dependency graph
is not needed, since each block names its coupled matrices, and its own save needs a pickle,
so the cuts are saved as a plan instead. Removing a whole branch is not channel pruning: it
is a module replacement, done here.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch_pruning as tp
from torch import nn

from models.base import BlockSpec, HeadSpec, ZeroBranch
from tasks.loop import Dataset, fit, sample_losses

NAME = "prune"
DESCRIPTION = "accuracy-driven structured pruning (AxFormer's greedy search), parts physically removed"


# ============================================================================ physical cuts
def get_module(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, new)


def _block(model: nn.Module, name: str) -> BlockSpec:
    for spec in model.prunable_blocks():
        if spec.name == name:
            return spec
    raise ValueError(f"{type(model).__name__} has no prunable block {name!r}")


def _slice_linear(lin: nn.Linear, rows: list[int] | None = None, cols: list[int] | None = None) -> None:
    """Keep only ``rows`` (outputs) and / or ``cols`` (inputs) of a Linear, in place (torch-pruning's channel
    functions: the module keeps its type, no new weights are drawn)."""
    if rows is not None:
        tp.prune_linear_out_channels(lin, idxs=sorted(set(range(lin.out_features)) - set(rows)))
    if cols is not None:
        tp.prune_linear_in_channels(lin, idxs=sorted(set(range(lin.in_features)) - set(cols)))


def _head_rows(head_ids: list[int], size: int) -> list[int]:
    return [h * size + j for h in head_ids for j in range(size)]


def cut_heads(model: nn.Module, spec: HeadSpec, keep: list[int]) -> None:
    """Keep only the heads ``keep`` (indices into the current heads) of one attention."""
    for path, size in ((spec.q, spec.qk_dim), (spec.k, spec.qk_dim), (spec.v, spec.v_dim)):
        _slice_linear(get_module(model, path), rows=_head_rows(keep, size))
    _slice_linear(get_module(model, spec.out), cols=_head_rows(keep, spec.v_dim))
    module = get_module(model, spec.module)
    for attr, per_head in spec.attrs.items():
        setattr(module, attr, per_head * len(keep))


def cut_units(model: nn.Module, spec: BlockSpec, keep: list[int]) -> None:
    """Keep only the FFN hidden units ``keep`` of one block."""
    _slice_linear(get_module(model, spec.ffn_in), rows=keep)
    _slice_linear(get_module(model, spec.ffn_out), cols=keep)


def remove_branch(model: nn.Module, spec: BlockSpec, branch: str) -> None:
    """Replace the block's ``attn`` or ``ffn`` branch by zeros; an emptied pre-LN block becomes the identity."""
    for path in spec.attn_paths if branch == "attn" else spec.ffn_paths:
        set_module(model, path, ZeroBranch(tuple_output=path in spec.tuple_paths))
    removed = [all(isinstance(get_module(model, p), ZeroBranch) for p in paths)
               for paths in (spec.attn_paths, spec.ffn_paths) if paths]
    if spec.identity_when_empty and removed and all(removed):
        set_module(model, spec.name, nn.Identity())


def n_heads(model: nn.Module, spec: BlockSpec) -> int:
    """Heads left in the block's attention (0 when it has no cuttable heads or was removed)."""
    if spec.heads is None or not all(_alive(model, p) for p in spec.attn_paths):
        return 0
    return get_module(model, spec.heads.q).out_features // spec.heads.qk_dim


def n_units(model: nn.Module, spec: BlockSpec) -> int:
    """FFN hidden units left in the block (0 when it has none to cut or the FFN was removed)."""
    if spec.ffn_in is None or not all(_alive(model, p) for p in spec.ffn_paths):
        return 0
    return get_module(model, spec.ffn_in).out_features


def _alive(model: nn.Module, path: str) -> bool:
    try:
        return not isinstance(get_module(model, path), ZeroBranch)
    except AttributeError:  # the whole block became nn.Identity
        return False


def apply_op(model: nn.Module, op: dict[str, Any]) -> None:
    """One recorded cut: ``{"op": "branch", "block", "branch"}``, ``{"op": "heads"|"units", "block", "keep"}``."""
    spec = _block(model, op["block"])
    if op["op"] == "branch":
        remove_branch(model, spec, op["branch"])
    elif op["op"] == "heads":
        cut_heads(model, spec.heads, list(op["keep"]))
    elif op["op"] == "units":
        cut_units(model, spec, list(op["keep"]))
    else:
        raise ValueError(f"unknown pruning op {op!r}")


def apply_plan(model: nn.Module, plan: list[dict[str, Any]]) -> nn.Module:
    """Replay a pruning plan on a model (fresh from its config, or the one being pruned)."""
    for op in plan:
        apply_op(model, op)
    return model


# ============================================================================ the search
@dataclass
class SearchResult:
    model: nn.Module
    plan: list[dict[str, Any]]
    base_loss: float
    final_loss: float
    trials: int
    seconds: float
    log: list[dict[str, Any]] = field(default_factory=list)


def axformer_search(model: nn.Module, val: Dataset, task: str, *, tolerance: float = 0.0, close: float = 1.1,
                    ffn_groups: int = 4, heads: bool = True, batch_size: int = 1024) -> SearchResult:
    """AxFormer's greedy search (models.md 5.3) on ``val``, with physical cuts on copies of ``model``.

    Args:
        model: The trained model (left unchanged; the result is a pruned copy).
        val: Validation items (a held-out slice of the training data, as the reference).
        task: ``binary``, ``multiclass`` or ``regression`` (which per-item loss).
        tolerance: Relative rise of the validation loss a cut may cause (0: the paper's rule).
        close: A rejected branch whose loss is below ``close * min_loss`` is tried at the finer grain.
        ffn_groups: FFN hidden units are tried in this many groups (the paper: 12 groups of 256).
        heads: Try single heads of a rejected attention.
        batch_size: Evaluation batch.

    Returns:
        The pruned copy, its plan, the losses before and after, the number of validation passes.
    """
    t0 = time.perf_counter()
    base = sample_losses(model, val, task, batch_size)
    state = {"model": copy.deepcopy(model).eval(), "loss": float(base.mean())}
    plan: list[dict[str, Any]] = []
    log: list[dict[str, Any]] = []

    def attempt(op: dict[str, Any]) -> tuple[bool, float]:
        """Cut a copy; keep it when the loss does not rise and over half of the items are no worse."""
        candidate = copy.deepcopy(state["model"])
        apply_op(candidate, op)
        losses = sample_losses(candidate, val, task, batch_size)
        loss = float(losses.mean())
        no_worse = int((losses <= base + 1e-12).sum())
        ok = loss <= state["loss"] * (1 + tolerance) and no_worse > 0.5 * len(base)
        log.append({**op, "loss": loss, "no_worse": no_worse, "accepted": ok})
        if ok:
            state.update(model=candidate, loss=loss)
            plan.append(op)
        return ok, loss

    for spec in reversed(model.prunable_blocks()):
        ffn_alive = bool(spec.ffn_paths) and all(_alive(state["model"], p) for p in spec.ffn_paths)
        ok, loss = attempt({"op": "branch", "block": spec.name, "branch": "ffn"}) if ffn_alive else (False, 0.0)
        units = n_units(state["model"], spec)
        if not ok and (loss < close * state["loss"] or not ffn_alive) and units >= ffn_groups > 1:
            # Last group first: a cut then never shifts the positions of the groups still to try.
            for group in reversed(np.array_split(np.arange(units), ffn_groups)):
                left = n_units(state["model"], spec)
                keep = [u for u in range(left) if u not in set(group.tolist())]
                if keep:
                    attempt({"op": "units", "block": spec.name, "keep": keep})
        if spec.attn_paths and all(_alive(state["model"], p) for p in spec.attn_paths):
            ok, loss = attempt({"op": "branch", "block": spec.name, "branch": "attn"})
            if not ok and heads and loss < close * state["loss"]:
                for h in reversed(range(n_heads(state["model"], spec))):
                    left = n_heads(state["model"], spec)
                    if left > 1:  # the last head goes only with the whole attention
                        attempt({"op": "heads", "block": spec.name, "keep": [k for k in range(left) if k != h]})
    return SearchResult(state["model"], plan, float(base.mean()), state["loss"], len(log),
                        time.perf_counter() - t0, log)


# ============================================================================ the step
def step(model: nn.Module, record: dict[str, Any], context: Any) -> nn.Module:
    """Search on the validation items, cut for real, then fine-tune the pruned model on the labels."""
    s = context.settings.prune
    result = axformer_search(model, context.val_items(), context.task, tolerance=s.tolerance, close=s.close,
                             ffn_groups=s.ffn_groups, heads=s.heads, batch_size=context.loop.eval_batch_size)
    record["plan"] = [*record["plan"], *result.plan]
    pruned = result.model
    tuned = 0
    if s.finetune_epochs and result.plan:
        fit(pruned, context.splits["train"], context.splits["val"],
            context.loop_settings(s.finetune_epochs, s.lr_factor), task=context.task, progress=False,
            name=f"{context.domain} prune fine-tune")
        tuned = s.finetune_epochs
    record["stats"] = {**record.get("stats", {}), "prune_cuts": len(result.plan), "prune_trials": result.trials,
                       "prune_val_loss": [round(result.base_loss, 6), round(result.final_loss, 6)],
                       "prune_search_seconds": round(result.seconds, 2), "prune_finetune_epochs": tuned}
    return pruned.eval()
