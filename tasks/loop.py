"""The one training loop for every model (:func:`fit`), prediction, and model folders (save / load).

A leaf module: it imports no domain and no stage, so domains (EEG's protocol, turbulence's
neural baselines) and the generic stages all train and score through it.

The loop: AdamW, class-balanced batches (the FlowTransformer reference draws
half benign, half malicious targets per batch), validation each epoch with
early stopping on the validation metric, a checkpoint after every epoch and
resume from the last one, deterministic seeding, a tqdm progress bar (on a terminal only), one
log line per epoch on the ``tasks.loop`` logger (:func:`epoch_line`: epoch i/N, training loss, the
validation metric, elapsed time and ETA; it reaches the terminal, a captured log, Prefect's run logs
and the stage's MLflow run, see :mod:`tasks.logs`), and a callback that logs per-epoch metrics (to
MLflow in the stage).

Datasets are anything with ``labels`` (N,) int and ``batch(idx) -> (inputs
tuple, targets)``: batches are gathered with vectorised indexing instead of a
per-item DataLoader, which is several times faster for small models on CPU.

The same loop trains regressions (``task="regression"``, the turbulence
operators): the loss is the per-sample relative L2 error in physical units
(IFactFormer's), the targets may hold K > 1 future steps for pushforward
training (:func:`regression_loss`), and the best epoch is the one with the
lowest validation relative L2.

Deliberate difference from the FlowTransformer reference: its early stopping
watches the *training batch loss*; ours watches validation balanced accuracy
(falling back to training loss when there is no validation split).

Data-parallel (``fit(..., distributed=True)`` inside :func:`tasks.ddp.session`, under
``torchrun``): every rank draws the same global batches a single process draws and trains on its
strided shard of each (:func:`tasks.ddp.shard`), the model wrapped in
``DistributedDataParallel``, which averages the gradients; the loss of a shard is weighted by its
share of the batch, so the averaged gradient is the gradient of the whole batch's mean loss, as in
one process. Rank 0 alone validates, writes checkpoints and calls ``on_epoch``; it broadcasts the
epoch's metrics, and every rank takes the same best-epoch / early-stopping decision from them, so
all stop together. The result: the single process's run up to float rounding (dropout aside: each
rank draws its own masks).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from scipy.special import expit
from sklearn.metrics import balanced_accuracy_score, f1_score
from tqdm.auto import tqdm

import models
from tasks import ddp as dist
from tasks import store
from tasks.params_base import RegressionTrain, TrainLoopParams

log = logging.getLogger(__name__)


class Dataset(Protocol):
    """What the loop reads: one label (or group id) per item and vectorised batches ``((inputs...), targets)``."""

    labels: np.ndarray

    def __len__(self) -> int: ...

    def batch(self, idx: np.ndarray) -> tuple[tuple, Any]: ...


def pick_device(setting: str = "auto") -> str:
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.*.device is 'cuda' but no CUDA device is available")
    return setting


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def balanced_batches(labels: np.ndarray, batch_size: int, steps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``steps`` batches with an equal share of every class present.

    Within a batch a class's indices are drawn without replacement when it has
    enough of them, with replacement otherwise (rare attack families).
    """
    classes = np.unique(labels)
    pools = [np.flatnonzero(labels == c) for c in classes]
    per = [batch_size // len(classes) + (1 if i < batch_size % len(classes) else 0) for i in range(len(classes))]
    out = []
    for _ in range(steps):
        parts = [rng.choice(pool, size=k, replace=len(pool) < k) for pool, k in zip(pools, per, strict=True)]
        idx = np.concatenate(parts)
        rng.shuffle(idx)
        out.append(idx)
    return out


def shuffled_batches(n: int, batch_size: int, steps: int, rng: np.random.Generator) -> list[np.ndarray]:
    perm = np.concatenate([rng.permutation(n) for _ in range(math.ceil(steps * batch_size / max(n, 1)) + 1)])
    return [perm[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def task_loss(task: str):
    """The training loss of a classification task: BCE on one logit, or cross-entropy."""
    if task == "binary":
        return lambda logits, y: F.binary_cross_entropy_with_logits(logits[:, 0].float(), y.float())
    return lambda logits, y: F.cross_entropy(logits.float(), y)


def relative_l2(pred, y):
    """Per-sample ``||pred - y||_2 / ||y||_2`` over all but the batch axis, averaged over the batch (float32)."""
    b = y.shape[0]
    diff = (pred.float() - y.float()).reshape(b, -1)  # (B, N*C)
    return (torch.linalg.vector_norm(diff, dim=1) / torch.linalg.vector_norm(y.float().reshape(b, -1), dim=1)
            .clamp_min(1e-12)).mean()


def regression_loss(model, x, y, pushforward_steps: int = 1, input_noise: float = 0.0):
    """Relative L2 of one step, plus the pushforward term when ``y`` holds more steps.

    Args:
        model: ``(B, T_in, *grid, C) -> (B, *grid, C)``.
        x: ``(B, T_in, *grid, C)`` input window, physical units.
        y: ``(B, K, *grid, C)``: the next K snapshots (K >= 1).
        pushforward_steps: Use the K-th target: roll out K-1 steps without gradient (the model's own,
            imperfect inputs, as in an autoregressive rollout), then one step with gradient
            (Brandstetter et al. 2022, "pushforward trick"). The loss is the mean of the one-step and the
            pushforward terms.
        input_noise: Training noise (Sanchez-Gonzalez et al. 2020; Stachenfeld et al. 2022): Gaussian
            noise of this standard deviation, relative to each sample's per-channel rms, added to the input
            window (and to the pushforward window) while the targets stay clean, so the model learns to
            take out the kind of error a rollout feeds it. 0: off. Only training calls this function;
            validation and evaluation see clean inputs.
    """
    x = _noisy(x, input_noise)
    loss = relative_l2(model(x), y[:, 0])  # (B, *grid, C) vs (B, *grid, C)
    k = min(pushforward_steps, y.shape[1])
    if k <= 1:
        return loss
    window = x
    with torch.no_grad():
        for _ in range(k - 1):
            nxt = model(window)  # (B, *grid, C)
            window = torch.cat([window[:, 1:], nxt.unsqueeze(1).to(window.dtype)], dim=1)  # (B, T_in, *grid, C)
    return 0.5 * (loss + relative_l2(model(_noisy(window, input_noise)), y[:, k - 1]))


def _noisy(x, std: float):
    """``x`` ``(B, T, *grid, C)`` plus Gaussian noise of ``std`` x each sample's per-channel rms (x itself if 0)."""
    if std <= 0:
        return x
    rms = x.float().pow(2).mean(dim=tuple(range(1, x.ndim - 1)), keepdim=True).sqrt()  # (B, 1, ..., 1, C)
    return x + (std * rms * torch.randn_like(x, dtype=torch.float32)).to(x.dtype)


def validate_regression(model, data: Dataset, batch_size: int, device: str) -> float:
    """Mean one-step relative L2 over every sample of ``data`` (per-sample errors averaged)."""
    model.eval()
    total, n = 0.0, 0
    with torch.inference_mode(), _autocast(device):
        for start in range(0, len(data), batch_size):
            idx = np.arange(start, min(start + batch_size, len(data)))
            (x,), y = data.batch(idx)
            err = relative_l2(model(x.to(device)), y[:, 0].to(device))
            total += float(err) * len(idx)
            n += len(idx)
    return total / max(n, 1)


def predict(model, data: Dataset, batch_size: int = 1024, device: str = "cpu") -> np.ndarray:
    """Logits of every window, in order: (N, n_outputs) float32."""
    model.eval()
    outs = []
    with torch.inference_mode(), _autocast(device):
        for start in range(0, len(data), batch_size):
            idx = np.arange(start, min(start + batch_size, len(data)))
            inputs, _ = data.batch(idx)
            outs.append(model(*[t.to(device) for t in inputs]).float().cpu())
    return torch.cat(outs).numpy() if outs else np.zeros((0, 1), dtype=np.float32)


def sample_losses(model, data: Dataset, task: str, batch_size: int = 1024, device: str = "cpu") -> np.ndarray:
    """The training loss of every item, in order: (N,) float64 (cross-entropy, BCE, or relative L2 of one step).

    What accuracy-driven pruning compares item by item (AxFormer's "at least half the samples no worse").
    """
    model.eval()
    out = []
    with torch.inference_mode(), _autocast(device):
        for start in range(0, len(data), batch_size):
            idx = np.arange(start, min(start + batch_size, len(data)))
            inputs, y = data.batch(idx)
            pred = model(*[t.to(device) for t in inputs])
            y = y.to(device)
            if task == "regression":
                b = y.shape[0]
                diff = (pred.float() - y[:, 0].float()).reshape(b, -1)  # (B, N*C)
                loss = torch.linalg.vector_norm(diff, dim=1) / torch.linalg.vector_norm(
                    y[:, 0].float().reshape(b, -1), dim=1).clamp_min(1e-12)  # (B,)
            elif task == "binary":
                loss = F.binary_cross_entropy_with_logits(pred[:, 0].float(), y.float(), reduction="none")  # (B,)
            else:
                loss = F.cross_entropy(pred.float(), y, reduction="none")  # (B,)
            out.append(loss.double().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Binary: P(positive) (N,); multi-class: softmax (N, K)."""
    if task == "binary":
        return expit(logits[:, 0].astype(np.float64))  # no overflow warning for very negative logits
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def hard_predictions(probs: np.ndarray, task: str, threshold: float = 0.5,
                     negative_threshold: float | None = None) -> np.ndarray:
    """Class predictions from probabilities.

    Args:
        probs: Binary: (N,) P(positive). Multi-class: (N, K) class probabilities, class 0 the negative class.
        task: ``binary`` or ``multiclass``.
        threshold: Binary: an item is positive when P(positive) >= threshold.
        negative_threshold: Multi-class only: an item is the most probable positive class when its
            :func:`positive_scores` (that class against class 0, m / (p_0 + m)) reaches this, else class 0
            (0.5 is the argmax). None: the plain argmax.

    Returns:
        (N,) int64 predicted label.
    """
    if task == "binary":
        return (probs >= threshold).astype(np.int64)
    if negative_threshold is None:
        return probs.argmax(axis=1)
    positive = 1 + probs[:, 1:].argmax(axis=1)
    return np.where(positive_scores(probs, task) >= negative_threshold, positive, 0).astype(np.int64)


THRESHOLD_RULES = ("f1_macro", "f1_negative", "prior")
"""Rules that choose a decision threshold on validation scores (besides a fixed number and ``fpr:<rate>``)."""


def positive_scores(probs: np.ndarray, task: str) -> np.ndarray:
    """The score a decision threshold applies to. (N,).

    Binary: P(positive). Multi-class: the most probable positive class against class 0, m / (p_0 + m) with
    m = max_k>0 p_k, so a threshold of 0.5 is the argmax (and a threshold search can never do worse than it
    on the data it searches), and for two classes it is P(positive) again.
    """
    if task == "binary":
        return probs
    m = probs[:, 1:].max(axis=1)
    return m / np.maximum(probs[:, 0] + m, np.finfo(np.float64).tiny)


def _f1(tp: np.ndarray, n_pred: np.ndarray, n_true: np.ndarray | int) -> np.ndarray:
    denom = n_pred + n_true
    return np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0)


def choose_threshold(y: np.ndarray, probs: np.ndarray, task: str, rule: str | float,
                     train_negative_fraction: float | None = None) -> dict[str, Any]:
    """The decision threshold on :func:`positive_scores` that ``rule`` picks on (validation) labels ``y`` and ``probs``.

    Every distinct score is a candidate (an item is positive when its score >= the threshold); the one with the
    best objective wins (the highest threshold among ties), and the threshold returned lies half-way (in logit
    space) between it and the next lower score, so scores a little off the validation ones fall the same way.

    Rules:
        * a number: that threshold (nothing is chosen);
        * ``f1_macro``: the macro-F1 over the task's classes (multi-class: the negative class or the most probable
          positive one, :func:`hard_predictions` with ``negative_threshold``);
        * ``f1_negative``: the F1 of the negative class (netflow: benign);
        * ``fpr:<rate>``: the lowest threshold whose false-positive rate (negatives flagged) is at most ``rate``
          (the most positives caught within that budget);
        * ``prior``: no search; the shift from the class-balanced training batches (each of the K classes 1/K)
          to the deployment prior, estimated by ``train_negative_fraction`` (the training split's share of the
          negative class): P(negative) and the positives' are rescaled by their prior ratios and the item is
          negative when it wins against the most probable positive class.

    Args:
        y: (N,) labels (binary flag or class index, 0 = negative).
        probs: Binary (N,) P(positive); multi-class (N, K).
        task: ``binary`` or ``multiclass``.
        rule: See above.
        train_negative_fraction: The training split's share of class 0 (``prior`` only).

    Returns:
        ``{"threshold", "rule", "n", "objective"}`` (objective: the rule's value on these labels at the threshold;
        None for a fixed number and ``prior``).

    Raises:
        ValueError: an unknown rule (named), a rate outside [0, 1], or ``prior`` without the training fraction.
    """
    if isinstance(rule, int | float) and not isinstance(rule, bool):
        return {"threshold": float(rule), "rule": float(rule), "n": int(len(y)), "objective": None}
    rule = str(rule)
    n_classes = 2 if task == "binary" else probs.shape[1]
    if rule == "prior":
        if train_negative_fraction is None or not 0.0 < train_negative_fraction < 1.0:
            raise ValueError(f"threshold rule 'prior' needs the training split's negative fraction in (0, 1), "
                             f"got {train_negative_fraction!r}")
        pi0 = train_negative_fraction
        # Trained on 1/K of each class: class 0's probability scales by pi0 * K, a positive's by about
        # (1 - pi0) / (K - 1) * K (the positives' own mix taken as trained). Positive when
        # m (1 - pi0) / (K - 1) >= p_0 pi0, i.e. m / (p_0 + m) >= pi0 (K - 1) / (pi0 (K - 1) + 1 - pi0).
        a = pi0 * (n_classes - 1)
        return {"threshold": float(a / (a + 1.0 - pi0)), "rule": rule, "n": int(len(y)), "objective": None}
    fpr_target = None
    if rule.startswith("fpr:"):
        try:
            fpr_target = float(rule[4:])
        except ValueError:
            fpr_target = -1.0
        if not 0.0 <= fpr_target <= 1.0:
            raise ValueError(f"threshold rule {rule!r}: the rate after 'fpr:' must be a number in [0, 1]")
    elif rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; use a number in (0, 1), "
                         f"{', '.join(THRESHOLD_RULES)} or fpr:<rate>")
    score = positive_scores(probs, task).astype(np.float64)
    y = np.asarray(y)
    order = np.argsort(-score, kind="stable")
    s_sorted = score[order]
    # Candidate k (k = 1..N) flags the k highest scores; only the last item of a run of equal scores is a valid cut.
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    k = np.flatnonzero(last) + 1  # number flagged at each candidate
    neg = (y[order] == 0).astype(np.int64)
    n_neg = int(neg.sum())
    neg_flagged = np.cumsum(neg)[k - 1]  # negatives at or above the threshold (false positives)
    tn = n_neg - neg_flagged
    n_pred_neg = len(y) - k
    f1_neg = _f1(tn, n_pred_neg, n_neg)
    if fpr_target is not None:
        fpr = neg_flagged / max(n_neg, 1)
        ok = fpr <= fpr_target + 1e-12
        objective = np.where(ok, k.astype(np.float64), -1.0)  # the most flagged within the budget
        value = fpr
    elif rule == "f1_negative":
        objective = value = f1_neg
    else:  # f1_macro over the task's classes
        f1s = [f1_neg]
        pred_pos = np.zeros(len(y), np.int64) if task == "binary" else 1 + probs[:, 1:].argmax(axis=1)
        pred_sorted = (np.ones(len(y), np.int64) if task == "binary" else pred_pos[order])
        y_sorted = y[order]
        for c in range(1, n_classes):
            tp = np.cumsum((pred_sorted == c) & (y_sorted == c))[k - 1]
            n_pred = np.cumsum(pred_sorted == c)[k - 1]
            f1s.append(_f1(tp, n_pred, int((y == c).sum())))
        present = [i for i in range(n_classes) if (y == i).any()] or [0]
        objective = value = np.mean([f1s[i] for i in present], axis=0)
    best = int(np.flatnonzero(objective == objective.max())[0])  # ties: the fewest flagged (highest threshold)
    cut = k[best]
    hi = s_sorted[cut - 1]
    if fpr_target is not None and objective[best] < 0:  # nothing fits the budget: flag nothing
        hi, cut = np.inf, 0
    lo = s_sorted[cut] if cut < len(y) else 0.0
    threshold = _logit_midpoint(lo, hi)
    return {"threshold": threshold, "rule": rule, "n": int(len(y)),
            "objective": float(value[best]) if np.isfinite(hi) else None}


def _logit_midpoint(lo: float, hi: float) -> float:
    """A threshold in (lo, hi] half-way between two scores in logit space (scores saturate near 0 and 1)."""
    if not np.isfinite(hi):
        return float(np.nextafter(1.0, 2.0))  # above every probability: nothing is flagged
    eps = 1e-12
    a, b = np.clip([lo, hi], eps, 1.0 - eps)
    mid = expit((np.log(a / (1 - a)) + np.log(b / (1 - b))) / 2.0)
    # The midpoint must keep ``hi`` flagged and ``lo`` not (float rounding near 0/1 can break that).
    return float(mid) if lo < mid <= hi else float(hi)


def _autocast(device: str):
    # bf16 autocast on GPUs that support it; plain fp32 on CPU (CPU bf16 is slower for small models).
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class FitResult:
    best_epoch: int
    best_metric: float
    epochs_run: int
    stopped_early: bool
    resumed_from: int | None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def fit(
    model,
    train: Dataset,
    val: Dataset | None,
    cfg: TrainLoopParams,
    *,
    task: str,
    checkpoint_dir: Path | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    loss_fn: Callable[[Any, tuple, Any], Any] | None = None,
    distributed: bool = False,
    name: str | None = None,
) -> FitResult:
    """Train ``model`` in place and leave it holding the best validation weights.

    Args:
        model: A torch module called as ``model(*inputs) -> logits``.
        train: Training windows.
        val: Validation windows (None: early stopping watches the training loss).
        cfg: Loop settings (epochs, steps, batch size, lr, weight decay, patience, ...).
        task: ``binary`` (one logit, BCE), ``multiclass`` (K logits, cross-entropy) or ``regression``
            (relative L2, :func:`regression_loss`; the best epoch has the lowest validation relative L2).
        checkpoint_dir: Where ``last.pt`` is written after every epoch; if it
            exists and ``cfg.resume``, training continues after its epoch.
        on_epoch: Called with ``(epoch, metrics)`` after each epoch.
        progress: Show a tqdm progress bar (on a terminal; off when output is not a TTY). The epoch lines
            are logged either way.
        loss_fn: ``(model, inputs, targets) -> loss`` replacing the task's training loss (distillation
            against a teacher); validation and the best epoch still use the task's metric.
        distributed: Train data-parallel over the process group of :func:`tasks.ddp.session`
            (every rank calls ``fit`` with the same arguments); False (the default) trains in this process
            alone, also on rank 0 of a group (a domain's extra fits there).
        name: What the epoch lines call this training (``netflow teacher``); default: the model's class.

    Returns:
        What happened: best epoch and metric, history, whether it stopped early or resumed (the same on
        every rank; the model holds the same weights on every rank).

    Raises:
        ValueError: ``distributed`` with a batch smaller than the number of processes.
        tasks.ddp.DistributedError: ``distributed`` outside a process group.
    """
    ddp = distributed and dist.active()
    if distributed and not ddp:
        dist.require_launch("fit(distributed=True)")
        raise dist.DistributedError("fit(distributed=True) outside tasks.ddp.session(): no process group")
    # A plain fit is a single process's, also on rank 0 of a group (a domain's extra fits run there alone).
    rank, world = (dist.rank(), dist.world_size()) if ddp else (0, 1)
    if ddp and cfg.batch_size < world:
        raise ValueError(f"train batch_size {cfg.batch_size} is smaller than the {world} processes: "
                         "every rank needs a part of each batch")
    main = rank == 0  # the only rank that writes, logs and validates
    device = dist.device(cfg.device) if ddp else pick_device(cfg.device)
    seed_everything(cfg.seed)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    regression = task == "regression"
    criterion = None if regression else task_loss(task)
    pushforward = cfg.pushforward_steps if isinstance(cfg, RegressionTrain) else 1
    # A field domain's train section may add training noise (turbulence's ``input_noise``); others have none.
    noise = cfg.input_noise if isinstance(cfg, RegressionTrain) else 0.0
    if regression and pushforward > 1:
        train = train.with_horizon(pushforward)  # targets hold the next K snapshots (a field domain's pairs)
    # Best-epoch scores are "higher is better"; an error (relative L2) is negated.
    sign = -1.0 if cfg.select_metric == "rel_l2" else 1.0
    steps = cfg.steps_per_epoch or max(1, math.ceil(len(train) / cfg.batch_size))
    total_steps = cfg.epochs * steps
    state = {"epoch": 0, "best_metric": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": [],
             "best_loss": math.inf}
    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    resumed_from = None
    ckpt = checkpoint_dir / "last.pt" if checkpoint_dir else None
    # Rank 0 reads the checkpoint and sends it: the other ranks may run on machines without its folder.
    saved = (torch.load(ckpt, map_location="cpu", weights_only=True)
             if main and ckpt is not None and cfg.resume and ckpt.exists() else None)
    if ddp:
        saved = dist.broadcast(saved)
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        best_state = saved["best_model"]
        state = {k: saved.get(k, state[k]) for k in state}  # best_loss is absent from older checkpoints
        state["history"] = [dict(h) for h in saved["history"]]
        resumed_from = int(state["epoch"])
    net = model
    if ddp:
        from torch.nn.parallel import DistributedDataParallel  # lazy: a single process never needs it

        # Built after the resume: DDP starts every rank from rank 0's weights.
        net = DistributedDataParallel(model, device_ids=[torch.device(device).index] if device.startswith("cuda")
                                      else None)
    t_start = time.perf_counter()
    first_epoch = state["epoch"] + 1  # this session's first (after a resume: the one after the checkpoint's)
    label = name or type(model).__name__
    stopped = state["bad_epochs"] >= cfg.patience
    bar = tqdm(total=cfg.epochs * steps, initial=state["epoch"] * steps, desc="train", unit="step",
               disable=None if progress and main else True, mininterval=1.0, leave=False)
    try:
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            if stopped:
                break
            # Per-epoch generators derived from (seed, epoch): a resumed run draws the same batches.
            rng = np.random.default_rng([cfg.seed, epoch])
            # Each rank its own dropout masks (rank 0's stream is the single process's).
            torch.manual_seed(cfg.seed * 100_003 + epoch + rank * 1_000_003)
            batches = (balanced_batches(train.labels, cfg.batch_size, steps, rng) if cfg.balanced_batches
                       else shuffled_batches(len(train), cfg.batch_size, steps, rng))
            model.train()
            losses = []
            shard_sums = []  # distributed: this rank's loss x its share of each batch (summed over the ranks below)
            if cfg.lr_schedule == "step":
                # torch's StepLR from the epoch number alone, so a resumed run continues on the same curve.
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * cfg.lr_gamma ** ((epoch - 1) // cfg.lr_step_epochs)
            for i, idx in enumerate(batches):
                if cfg.lr_schedule == "linear":
                    # Hugging Face's linear schedule without warm-up: lr * (1 - step / total), from the
                    # step count alone, so a resumed run continues on the same curve.
                    step = (epoch - 1) * steps + i
                    for group in opt.param_groups:
                        group["lr"] = cfg.lr * max(0.0, 1.0 - step / total_steps)
                share = 1.0
                if ddp:
                    part = dist.shard(idx, rank, world)
                    share = len(part) / len(idx)
                    idx = part
                inputs, y = train.batch(idx)
                with _autocast(device):
                    if loss_fn is not None:
                        loss = loss_fn(net, tuple(t.to(device) for t in inputs), y.to(device))
                    elif regression:
                        loss = regression_loss(net, inputs[0].to(device), y.to(device), pushforward, noise)
                    else:
                        logits = net(*[t.to(device) for t in inputs])
                if loss_fn is None and not regression:
                    loss = criterion(logits, y.to(device))
                opt.zero_grad(set_to_none=True)
                if ddp:
                    # DDP averages the ranks' gradients; weighting each shard's mean loss by world x its share
                    # makes that average the gradient of the whole batch's mean loss (x 1.0 for equal shards).
                    (loss * (world * share)).backward()
                    shard_sums.append(float(loss.detach()) * share)
                else:
                    loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.4f}")
            if ddp:
                losses = dist.all_sum(shard_sums)  # the loss of each whole batch, as one process logs it
            metrics = {"train_loss": float(np.mean(losses)), "lr": float(opt.param_groups[0]["lr"])}
            if not main:
                pass  # rank 0 validates; its metrics arrive below
            elif val is not None and len(val) > 0 and regression:
                metrics["val_rel_l2"] = validate_regression(model, val, cfg.eval_batch_size, device)
                metrics["val_loss"] = metrics["val_rel_l2"]
            elif val is not None and len(val) > 0:
                logits = predict(model, val, cfg.eval_batch_size, device)
                yv = val.labels
                metrics["val_loss"] = float(criterion(torch.from_numpy(logits), torch.from_numpy(yv)))
                pred = hard_predictions(probabilities(logits, task), task)
                metrics["val_balanced_accuracy"] = float(balanced_accuracy_score(yv, pred))
                # F1 of the positive class (binary, or the last of two classes); macro over more classes.
                n_cls = 2 if task == "binary" else logits.shape[1]
                # (pos_label only for two: sklearn warns that it ignores it under macro averaging.)
                f1_args = {"pos_label": n_cls - 1, "average": "binary"} if n_cls == 2 else {"average": "macro"}
                metrics["val_f1"] = float(f1_score(yv, pred, zero_division=0, **f1_args))
            if ddp:
                # Every rank decides from rank 0's numbers by the same code below: same best epoch, same stop.
                metrics = dist.broadcast(metrics)
            if "val_rel_l2" in metrics and regression:
                score = -metrics["val_rel_l2"]
            elif "val_balanced_accuracy" in metrics:
                score = sign * metrics[f"val_{cfg.select_metric}"]
            else:
                score = -metrics["train_loss"]
            metrics["epoch"] = epoch
            state["history"].append(metrics)
            # A tie on the metric (common on a small validation set: F1 = 1.0 several epochs running)
            # goes to the epoch with the lower validation loss, not simply to the first one.
            loss_now = metrics.get("val_loss", metrics["train_loss"])
            if score > state["best_metric"] or (score == state["best_metric"] and loss_now < state["best_loss"]):
                state.update(best_metric=score, best_epoch=epoch, bad_epochs=0, best_loss=loss_now)
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch
            stopped = state["bad_epochs"] >= cfg.patience
            if ckpt is not None and main:
                payload = {"model": model.state_dict(), "optimizer": opt.state_dict(), "best_model": best_state,
                           **{k: state[k] for k in state}}
                with store.atomic_path(ckpt) as tmp:  # a unique temp name: two writers never share one
                    torch.save(payload, tmp)
                    store.fault_point("checkpoint")  # test hook (tests/flows/test_fault_injection.py)
            if main:
                line = epoch_line(label, epoch, cfg.epochs, metrics, time.perf_counter() - t_start,
                                  epoch - first_epoch + 1, select=cfg.select_metric, best_epoch=state["best_epoch"])
                if bar.disable:
                    log.info(line)
                else:  # a terminal with the bar on it: clear the bar, print the line, draw the bar again
                    with tqdm.external_write_mode():
                        log.info(line)
            if on_epoch is not None and main:
                on_epoch(epoch, metrics)
            bar.set_postfix(epoch=epoch, **{k: f"{v:.4f}" for k, v in metrics.items() if k != "epoch"})
    finally:
        bar.close()
    if cfg.keep == "best":
        model.load_state_dict(best_state)
    model.to("cpu")
    return FitResult(
        best_epoch=int(state["best_epoch"]), best_metric=sign * float(state["best_metric"]),
        epochs_run=int(state["epoch"]), stopped_early=bool(stopped and state["epoch"] < cfg.epochs),
        resumed_from=resumed_from, history=state["history"], seconds=time.perf_counter() - t_start,
    )


def epoch_line(label: str, epoch: int, epochs: int, metrics: dict[str, float], elapsed: float, done: int, *,
               select: str = "balanced_accuracy", best_epoch: int | None = None) -> str:
    """The one log line of a finished epoch.

    ``netflow teacher epoch 3/10: train_loss 0.4123, val_balanced_accuracy 0.8123 (best: epoch 3), 12.3 s,
    ETA 28.7 s``: the validation metric is the one that picks the best epoch (relative L2 for a regression,
    ``val_<select>`` for a classification); without a validation split, none. The ETA assumes every epoch
    up to ``epochs`` runs (early stopping may end sooner) at this session's mean epoch time.

    Args:
        label: What is trained.
        epoch: The epoch just finished (1-based).
        epochs: The most epochs this fit runs.
        metrics: The epoch's metrics (``train_loss``; ``val_*`` when validated).
        elapsed: Seconds since this fit started (or resumed).
        done: Epochs this session has finished (``epoch`` unless resumed).
        select: The classification metric that picks the best epoch (``train.*.select_metric``).
        best_epoch: The best epoch so far.
    """
    parts = [f"train_loss {metrics['train_loss']:.4f}"]
    key = "val_rel_l2" if "val_rel_l2" in metrics else f"val_{select}"
    if key not in metrics:  # a metric the loop does not compute under that name: its first validation metric
        key = next((k for k in metrics if k.startswith("val_") and k != "val_loss"), key)
    if key in metrics:
        best = f" (best: epoch {best_epoch})" if best_epoch else ""
        parts.append(f"{key} {metrics[key]:.4f}{best}")
    eta = elapsed / max(done, 1) * max(epochs - epoch, 0)
    return f"{label} epoch {epoch}/{epochs}: {', '.join(parts)}, {_duration(elapsed)}, ETA {_duration(eta)}"


def _duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 05 s``, ``1 h 02 min``: what a reader of a log takes in at a glance."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# ============================================================================ model files
def save_model(folder: Path, model, key: str, extra: dict[str, Any] | None = None) -> None:
    """Write ``model.safetensors`` + ``config.json`` (registry key, constructor config, extras)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    store.atomic_write_json(folder / "config.json", {"key": key, "config": model.config_dict(), **(extra or {})})


def load_model(folder: Path):
    """Rebuild a model saved by :func:`save_model` (weights via safetensors, never pickle)."""
    meta = store.read_json(folder / "config.json")
    model = models.build(meta["key"], meta["config"])
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    model.eval()
    return model, meta


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
