"""Knowledge distillation: a smaller student of the teacher's family, trained by the shared loop against the teacher.

The losses are the well-known ones (../shared/reference/compression.md), written out here:

* classification: ``alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)``
  (Hinton et al.; Hugging Face's distiller): the ``T^2`` keeps the soft term's gradients on the
  scale of the hard one as ``T`` grows. A binary task (one logit) uses the Bernoulli KL.
  ``alpha = 0`` is plain training on the labels;
* fields (regression): ``alpha * relL2(s, teacher's prediction) + (1 - alpha) * relL2(s, truth)``;
* text encoder, optionally: ``+ hidden_weight * (1 - cos)`` between the student's and the
  teacher's mean last hidden states (DistilBERT's cosine loss).

A student is the teacher's config with the overrides of ``compress.<domain>.distill.student``
(fewer blocks, narrower widths). With ``init_from_teacher`` its layers start from every other
layer of the teacher (DistilBERT's initialisation) wherever the shapes match; the rest is
freshly initialised from the seed. A model that is already compressed (a pruned one in a
``prune+distill`` chain) keeps its structure and is fine-tuned the same way.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import models
from tasks.loop import fit, relative_l2

NAME = "distill"
DESCRIPTION = "knowledge distillation into a smaller student of the teacher's family (KL * T^2 + hard labels)"
CHAINED_DESCRIPTION = "distillation fine-tuning of that model against the teacher (KL * T^2 + hard labels)"
LAYER_LISTS = re.compile(r"(^|\.)(layer|transformer|temporal_blocks|spatial_blocks|blocks)\.(\d+)(\.|$)")
"""The module lists whose index maps student layer i to teacher layer i * (teacher depth / student depth)."""


# ============================================================================ losses
def kd_classification(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, *, task: str,
                      temperature: float, alpha: float) -> torch.Tensor:
    """``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * hard-label loss``, batch mean.

    Args:
        student_logits, teacher_logits: ``(B, K)`` (``(B, 1)`` for a binary task).
        y: ``(B,)`` labels.
        task: ``binary`` (one logit: Bernoulli KL, BCE) or ``multiclass`` (softmax KL, cross-entropy).
        temperature: T >= 1 softens both distributions.
        alpha: weight of the distillation term (0: labels only).
    """
    s, t = student_logits.float(), teacher_logits.float().detach()
    if task == "binary":
        s, t = s[:, 0], t[:, 0]  # (B,)
        hard = F.binary_cross_entropy_with_logits(s, y.float())
        p = torch.sigmoid(t / temperature)  # (B,) soft targets
        # KL(p || q) of Bernoulli = BCE(q; p) - H(p): the teacher's entropy makes it 0 when they agree.
        entropy = F.binary_cross_entropy(p, p, reduction="none")
        soft = (F.binary_cross_entropy_with_logits(s / temperature, p, reduction="none") - entropy).mean()
    else:
        hard = F.cross_entropy(s, y)
        soft = F.kl_div(F.log_softmax(s / temperature, dim=-1), F.log_softmax(t / temperature, dim=-1),
                        reduction="batchmean", log_target=True)
    return alpha * temperature**2 * soft + (1.0 - alpha) * hard


def kd_regression(pred: torch.Tensor, teacher_pred: torch.Tensor, y: torch.Tensor, *, alpha: float) -> torch.Tensor:
    """``alpha * relL2(pred, teacher) + (1 - alpha) * relL2(pred, truth)`` (per-sample relative L2, batch mean)."""
    return alpha * relative_l2(pred, teacher_pred.detach()) + (1.0 - alpha) * relative_l2(pred, y)


def loss_against(teacher: nn.Module, task: str, *, temperature: float, alpha: float,
                 hidden_weight: float = 0.0) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor]:
    """The training loss of a student of ``teacher``, in the form :func:`tasks.loop.fit` takes (``loss_fn``)."""
    teacher = teacher.eval()

    def loss(student: nn.Module, inputs: tuple, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t_out = teacher(*inputs)
        s_out = student(*inputs)
        if task == "regression":
            return kd_regression(s_out, t_out, y[:, 0], alpha=alpha)  # y: (B, K, ...); the next step
        value = kd_classification(s_out, t_out, y, task=task, temperature=temperature, alpha=alpha)
        if hidden_weight > 0:
            with torch.no_grad():
                t_h = teacher.embed(*inputs)
            value = value + hidden_weight * (1 - F.cosine_similarity(student.embed(*inputs), t_h, dim=-1)).mean()
        return value

    return loss


# ============================================================================ students
def _merge(base: dict[str, Any], over: dict[str, Any], path: str = "student") -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if k not in out:
            # An unknown key would otherwise be ignored by a permissive config (the text encoder's takes any
            # keyword), and the student silently stays the size of its default.
            near = difflib.get_close_matches(str(k), [str(x) for x in out], n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"compress distill {path}: {k!r} is not a key of the teacher's config "
                             f"(keys: {', '.join(map(str, out))}){hint}")
        out[k] = _merge(out[k], v, f"{path}.{k}") if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def student_config(teacher: nn.Module, overrides: dict[str, Any]) -> dict[str, Any]:
    """The teacher's config with the student overrides merged in (nested dicts key by key)."""
    return _merge(teacher.config_dict(), overrides)


def _layer_count(state: dict[str, torch.Tensor], prefix: str) -> int:
    idx = {int(m.group(3)) for k in state for m in [LAYER_LISTS.search(k)] if m and k.startswith(prefix)}
    return max(idx) + 1 if idx else 0


def init_from_teacher(student: nn.Module, teacher: nn.Module) -> dict[str, int]:
    """Copy the teacher's tensors into the student where names (after layer mapping) and shapes match.

    Student layer ``i`` of a layer list takes teacher layer ``i * stride`` with ``stride = teacher depth //
    student depth`` (a 3-layer student of a 6-layer BERT gets layers 0, 2, 4: DistilBERT's rule).

    Returns:
        ``{"copied": n, "kept": m}``: tensors taken from the teacher and tensors left as initialised.
    """
    t_state, s_state = teacher.state_dict(), student.state_dict()
    copied = 0
    new = {}
    for key, value in s_state.items():
        m = LAYER_LISTS.search(key)
        source = key
        if m:
            prefix = key[: m.start(3)]
            t_n, s_n = _layer_count(t_state, prefix), _layer_count(s_state, prefix)
            stride = max(1, t_n // max(s_n, 1))
            source = key[: m.start(3)] + str(int(m.group(3)) * stride) + key[m.end(3):]
        t_value = t_state.get(source)
        if t_value is not None and t_value.shape == value.shape:
            new[key] = t_value.clone()
            copied += 1
    student.load_state_dict(new, strict=False)
    return {"copied": copied, "kept": len(s_state) - copied}


def build_student(teacher: nn.Module, key: str, overrides: dict[str, Any], *, seed: int,
                  from_teacher: bool) -> tuple[nn.Module, dict[str, Any]]:
    """A fresh student (seeded init), optionally started from the teacher's layers. Returns (model, init info)."""
    cfg = student_config(teacher, overrides)
    torch.manual_seed(seed)  # the student's init does not depend on what ran before in the process
    student = models.build(key, cfg)
    info = init_from_teacher(student, teacher) if from_teacher else {"copied": 0, "kept": len(student.state_dict())}
    return student, info


def fresh_copy(model: nn.Module) -> nn.Module:
    """A trainable copy of an already compressed (pruned) model, for distillation fine-tuning."""
    return copy.deepcopy(model).train()


# ============================================================================ the step
def step(model: nn.Module, record: dict[str, Any], context: Any) -> nn.Module:
    """First in a chain: train a new student; after another method: distillation fine-tuning of its model."""
    s = context.settings.distill
    epochs = s.epochs
    if len(record["chain"]) == 1:
        student, info = build_student(context.teacher, context.key, s.student, seed=context.loop.seed,
                                      from_teacher=s.init_from_teacher)
        record["config"] = student.config_dict()
        record["student"] = True
    else:
        student, info = fresh_copy(model), {"copied": None, "kept": None}
        epochs = s.finetune_epochs or s.epochs
    loss = loss_against(context.teacher, context.task, temperature=s.temperature, alpha=s.alpha,
                        hidden_weight=s.hidden_weight)
    result = fit(student, context.splits["train"], context.splits["val"], context.loop_settings(epochs, s.lr_factor),
                 task=context.task, loss_fn=loss, progress=False, name=f"{context.domain} distill")
    record["stats"] = {**record.get("stats", {}), "distill_epochs": result.epochs_run,
                       "distill_best_epoch": result.best_epoch, "distill_tensors_from_teacher": info["copied"]}
    return student.eval()
