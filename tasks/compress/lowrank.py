"""Low-rank factorisation of the Linear layers (Greenformers' LED, models.md 6), post-training, then distilled.

LED replaces a ``Linear(in -> out)`` by ``Linear(in -> r, no bias)`` followed by ``Linear(r -> out, bias)``
(:class:`LowRankLinear`): ``in * out`` weights become ``r * (in + out)``, which only saves anything below the
break-even rank ``in * out / (in + out)``; a layer at or above it is left alone, as the library does. The LRT
paper factorises the attention projections (Q / K / V / output) and the FFN; here that is every plain
``nn.Linear`` inside the blocks a model lists in ``prunable_blocks()`` (:func:`candidates`), provided the layer is
called through its own ``forward`` (a parent that reads ``.weight`` directly, as ``nn.MultiheadAttention`` does
with its ``out_proj``, would bypass the factors) and shares its weight with no other module.

Post-training, as the thesis extends LRT (and its BERT notebook: SVD, no re-training): the factors start from
the truncated SVD of the trained weight, ``W^T = U S V^T`` -> ``first.weight = (U_r S_r)^T``,
``second.weight = V_r``, the bias copied into ``second`` (models.md 6.2), so at full rank the layer is the
original to round-off. The rank of each layer is chosen by the same accuracy-driven rule as pruning
(:func:`tasks.compress.prune.axformer_search`): on validation items, layer by layer from the last block to
the first, the configured fractions of the break-even rank are tried from the smallest up, and the first whose
mean validation loss stays within ``(1 + tolerance)`` of the current one is kept; a layer where none does stays
dense. No gradient step happens during the search (SVD only). The factorised model is then fine-tuned by
distillation against the teacher (:func:`tasks.compress.distill.loss_against`, the shared loop).

Each factorisation is recorded as a plan op ``{"op": "lowrank", "path", "rank"}``; :func:`apply_op` replays it
on a model freshly built from its config (``tasks.compress.replay``), whose state-dict keys are then
``<path>.first.weight``, ``<path>.second.weight`` and ``<path>.second.bias``, so a factorised model reloads from
config + safetensors alone. The factors are plain ``nn.Linear``: both int8 methods (torchao, torch.ao eager)
quantize them like any other Linear in a ``lowrank+int8`` chain. greenformer itself (0.2.2, 2021) is not a
dependency: the factorisation is the few lines below (compression.md).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from tasks.compress import distill, prune
from tasks.compress.prune import get_module, set_module
from tasks.loop import Dataset, count_parameters, fit, pick_device, sample_losses

NAME = "lowrank"
DESCRIPTION = ("low-rank factorisation of the attention and FFN Linears (Greenformers' LED: truncated-SVD init, "
               "ranks chosen on validation, distillation fine-tuning)")
OPS = ("lowrank",)


# ============================================================================ the factorised layer
class LowRankLinear(nn.Module):
    """``Linear(in -> out)`` as ``Linear(in -> r, no bias)`` then ``Linear(r -> out, bias)`` (LED).

    Parameters and multiply-adds go from ``in * out`` to ``r * (in + out)``.

    Args:
        in_features: width of the input.
        out_features: width of the output.
        rank: ``r``, the width between the two factors.
        bias: whether the second factor has a bias (as the layer it replaces).

    Shape:
        ``(..., in) -> (..., out)``.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    @property
    def in_features(self) -> int:
        return self.first.in_features

    @property
    def out_features(self) -> int:
        return self.second.out_features

    @property
    def rank(self) -> int:
        return self.first.out_features

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int,
                    svd: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> LowRankLinear:
        """The rank-``rank`` truncated SVD of ``linear`` (exact, to round-off, at ``rank = min(in, out)``).

        Args:
            linear: the layer to factorise (left unchanged).
            rank: ``r``, from 1 to ``min(in, out)``.
            svd: ``weight_svd(linear.weight)`` when already computed (the search tries several ranks per layer).
        """
        layer = cls.shaped_like(linear, rank)
        u, s, vh = svd if svd is not None else weight_svd(linear.weight)
        with torch.no_grad():
            # W = U S Vh, i.e. W^T = Vh^T S U^T: models.md's (U S)^T is S Vh here, its V is U.
            layer.first.weight.copy_(s[:rank, None] * vh[:rank])  # (r, in)
            layer.second.weight.copy_(u[:, :rank])  # (out, r)
            if linear.bias is not None:
                layer.second.bias.copy_(linear.bias)
        return layer

    @classmethod
    def shaped_like(cls, linear: nn.Linear, rank: int) -> LowRankLinear:
        """Factors of rank ``rank`` for ``linear`` (its widths, bias, device, dtype and mode), plainly initialised.

        Raises:
            ValueError: ``rank`` outside ``[1, min(in, out)]``.
        """
        w = linear.weight
        if not 1 <= rank <= min(w.shape):
            raise ValueError(f"rank must lie in [1, {min(w.shape)}] for a {w.shape[1]} -> {w.shape[0]} Linear, "
                             f"got {rank}")
        layer = cls(linear.in_features, linear.out_features, rank, bias=linear.bias is not None)
        return layer.to(device=w.device, dtype=w.dtype).train(linear.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))  # (..., in) -> (..., r) -> (..., out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def weight_svd(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD ``W = U diag(S) Vh`` of a ``(out, in)`` weight, in float32 on the weight's device.

    Returns:
        ``U (out, k)``, ``S (k,)`` descending, ``Vh (k, in)``, ``k = min(in, out)``.
    """
    return torch.linalg.svd(weight.detach().float(), full_matrices=False)


def break_even(linear: nn.Linear) -> int:
    """``floor(in * out / (in + out))``: a factorisation saves parameters only below this rank."""
    return linear.in_features * linear.out_features // (linear.in_features + linear.out_features)


def rank_for(linear: nn.Linear, fraction: float) -> int:
    """``floor(break_even * fraction)``, at least 1 (greenformer's rank given as a fraction)."""
    return max(1, math.floor(break_even(linear) * fraction))


def ranks_to_try(linear: nn.Linear, fractions: list[float]) -> list[int]:
    """The distinct ranks of ``fractions`` below the break-even, ascending (empty: nothing would be saved)."""
    bound = break_even(linear)
    return sorted({r for r in (rank_for(linear, f) for f in fractions) if r < bound})


def apply_op(model: nn.Module, op: dict[str, Any]) -> None:
    """One recorded factorisation ``{"op": "lowrank", "path": <dotted Linear path>, "rank": r}``, in place.

    Replaying a plan builds the layout only: the factors get a plain Linear init, since a plan is replayed
    on a model built from its config whose weights the saved factors then overwrite (an SVD of the fresh
    init here cost about a second per layer at BERT-base size and was thrown away). The search factorises
    trained layers with :meth:`LowRankLinear.from_linear`.
    """
    if op.get("op") != "lowrank":
        raise ValueError(f"not a low-rank op: {op!r}")
    linear = get_module(model, op["path"])
    if type(linear) is not nn.Linear:
        raise ValueError(f"{op['path']} is a {type(linear).__name__}, not an nn.Linear: cannot factorise it")
    try:
        layer = LowRankLinear.shaped_like(linear, int(op["rank"]))
    except ValueError as exc:
        raise ValueError(f"{op['path']}: {exc}") from None
    set_module(model, op["path"], layer)


# ============================================================================ which layers
def candidates(model: nn.Module) -> list[str]:
    """Dotted paths of the Linears LED may factorise, in model order.

    Every plain ``nn.Linear`` inside a block of ``model.prunable_blocks()``, except one that

    * belongs to ``nn.MultiheadAttention`` (it passes ``out_proj.weight`` to the functional attention) or is
      already a factor of a :class:`LowRankLinear`;
    * is not called through its own ``forward`` on the model's example inputs (someone reads its ``.weight``
      instead, and would bypass the factors);
    * shares its weight with another module (tied weights would be untied).
    """
    paths: list[str] = []
    for spec in model.prunable_blocks():
        try:
            block = get_module(model, spec.name)
        except AttributeError:  # a pruned block that became something else
            continue
        for name, module in block.named_modules():
            path = f"{spec.name}.{name}" if name else spec.name
            parent = get_module(model, path.rpartition(".")[0]) if "." in path else model
            if type(module) is nn.Linear and not isinstance(parent, nn.MultiheadAttention | LowRankLinear):
                paths.append(path)
    paths = list(dict.fromkeys(paths))
    owners: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        owners[id(p)] = owners.get(id(p), 0) + 1
    called = _called(model, paths)
    return [p for p in paths if p in called and owners[id(get_module(model, p).weight)] == 1]


def _called(model: nn.Module, paths: list[str]) -> set[str]:
    """Which of ``paths`` run their own ``forward`` when the model runs on its example inputs."""
    seen: set[str] = set()
    hooks = [get_module(model, p).register_forward_hook(lambda m, i, o, p=p: seen.add(p)) for p in paths]
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(*model.example_inputs(2))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return seen


# ============================================================================ the rank search
@dataclass(kw_only=True)
class SearchResult(prune.SearchResult):
    """What :func:`rank_search` did: pruning's record (copy, plan, losses, trials) plus the rank of every layer."""

    candidates: list[str]
    ranks: list[int]
    """Per candidate (model order): the rank kept, 0 where the layer stayed dense."""
    no_saving: int
    """Eligible Linears left out because every rank tried would be at or above their break-even rank."""


def rank_search(model: nn.Module, val: Dataset, task: str, *, fractions: list[float], tolerance: float = 0.05,
                batch_size: int = 1024) -> SearchResult:
    """Choose each Linear's rank on ``val`` by the accuracy-driven rule of pruning, factorising a copy of ``model``.

    From the last block to the first (and the last layer of a block to its first), each candidate layer tries
    the ranks ``floor(break_even * f)`` for ``f`` in ``fractions``, smallest first, and keeps the first whose
    mean validation loss is ``<= current loss * (1 + tolerance)`` (the current loss then becomes that loss);
    ranks at or above the break-even are not tried, and a layer where nothing passes stays dense. SVD only, no
    training.

    Args:
        model: The trained model (left unchanged).
        val: Validation items.
        task: ``binary``, ``multiclass`` or ``regression`` (which per-item loss, :func:`tasks.loop.sample_losses`).
        fractions: Fractions of the break-even rank to try, in (0, 1).
        tolerance: Relative rise of the validation loss one layer's factorisation may cause (0: none).
        batch_size: Evaluation batch.

    Returns:
        The factorised copy (eval mode), its plan, the losses before and after, the rank of every candidate.
    """
    t0 = time.perf_counter()
    work = copy.deepcopy(model).eval()
    tries = {path: ranks_to_try(get_module(work, path), fractions) for path in candidates(work)}
    paths = [p for p, ranks in tries.items() if ranks]  # a layer too small to save anything is no candidate
    base = float(sample_losses(work, val, task, batch_size).mean())
    current = base
    kept = dict.fromkeys(paths, 0)
    plan: list[dict[str, Any]] = []
    log: list[dict[str, Any]] = []
    # One step per layer: the search is the slow part on the text encoder (36 layers, a forward per trial);
    # tqdm shows it on a terminal only (disable=None), like the training bar.
    for path in tqdm(list(reversed(paths)), desc="lowrank search", unit="layer", disable=None, leave=False):
        linear = get_module(work, path)
        bound = break_even(linear)
        svd = weight_svd(linear.weight)  # once per layer, truncated per trial
        for rank in tries[path]:
            set_module(work, path, LowRankLinear.from_linear(linear, rank, svd))
            loss = float(sample_losses(work, val, task, batch_size).mean())
            ok = loss <= current * (1 + tolerance)
            log.append({"path": path, "rank": rank, "bound": bound, "loss": loss, "accepted": ok})
            if ok:
                current, kept[path] = loss, rank
                plan.append({"op": "lowrank", "path": path, "rank": rank})
                break
        else:
            set_module(work, path, linear)  # nothing passed: the layer stays dense
    return SearchResult(model=work.eval(), plan=plan, base_loss=base, final_loss=current, trials=len(log),
                        seconds=time.perf_counter() - t0, log=log, candidates=paths,
                        ranks=[kept[p] for p in paths], no_saving=len(tries) - len(paths))


# ============================================================================ the step
def step(model: nn.Module, record: dict[str, Any], context: Any) -> nn.Module:
    """Search the ranks on validation items (SVD only), factorise, then fine-tune by distillation from the teacher.

    ``record["stats"]`` gains ``lowrank_layers`` ``[factorised, candidates]``, ``lowrank_no_saving`` (eligible
    Linears too small to gain from any rank tried), ``lowrank_ranks`` (per candidate in model order, 0 = dense),
    ``lowrank_params`` ``[before, after]``, ``lowrank_val_loss`` ``[before, after SVD, after fine-tuning]`` (mean
    loss on the search items; "before" is the teacher's when the chain starts with ``lowrank``),
    ``lowrank_trials``, ``lowrank_search_seconds`` and ``lowrank_finetune_epochs``. The search items are the
    validation split (capped at ``lowrank.max_val_items``), or, without one (EEG), the held-out end of the
    training split, which the fine-tuning then also trains on.
    """
    s = context.settings.lowrank
    val = context.val_items(s.max_val_items)
    batch = context.loop.eval_batch_size
    result = rank_search(model, val, context.task, fractions=s.fractions, tolerance=s.tolerance, batch_size=batch)
    record["plan"] = [*record["plan"], *result.plan]
    factorised = result.model
    tuned_loss, epochs = result.final_loss, 0
    if s.finetune_epochs and result.plan:
        d = context.settings.distill
        loss = distill.loss_against(context.teacher, context.task, temperature=d.temperature, alpha=d.alpha,
                                    hidden_weight=d.hidden_weight)
        cfg = context.loop_settings(s.finetune_epochs, s.lr_factor)
        if s.steps_per_epoch is not None:
            cfg = cfg.model_copy(update={"steps_per_epoch": s.steps_per_epoch})
        context.teacher.to(pick_device(cfg.device))  # the loss calls the teacher on the batches' device
        try:
            fit(factorised.train(), context.splits["train"], context.splits["val"], cfg, task=context.task,
                loss_fn=loss, progress=False, name=f"{context.domain} lowrank fine-tune")
        finally:
            context.teacher.cpu().eval()
        tuned_loss = float(sample_losses(factorised, val, context.task, batch).mean())
        epochs = s.finetune_epochs
    record["stats"] = {
        **record.get("stats", {}),
        "lowrank_layers": [len(result.plan), len(result.candidates)],
        "lowrank_no_saving": result.no_saving,
        "lowrank_ranks": result.ranks,
        "lowrank_params": [count_parameters(model), count_parameters(factorised)],
        "lowrank_val_loss": [round(result.base_loss, 6), round(result.final_loss, 6), round(tuned_loss, 6)],
        "lowrank_trials": result.trials,
        "lowrank_search_seconds": round(result.seconds, 2),
        "lowrank_finetune_epochs": epochs,
    }
    return factorised.eval()
