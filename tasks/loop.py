"""The one training loop for every model (:func:`fit`), prediction, and model folders (save / load).

A leaf module: it imports no domain and no stage, so domains (EEG's protocol, turbulence's
neural baselines) and the generic stages all train and score through it.

The loop: AdamW, class-balanced batches (the FlowTransformer reference draws
half benign, half malicious targets per batch), validation each epoch with
early stopping on the validation metric, a checkpoint after every epoch and
resume from the last one, deterministic seeding, a tqdm progress bar, and a
callback that logs per-epoch metrics (to MLflow in the stage).

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


def hard_predictions(probs: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    return (probs >= threshold).astype(np.int64) if task == "binary" else probs.argmax(axis=1)


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
        progress: Show a tqdm progress bar (on a terminal; off when output is not a TTY).
        loss_fn: ``(model, inputs, targets) -> loss`` replacing the task's training loss (distillation
            against a teacher); validation and the best epoch still use the task's metric.
        distributed: Train data-parallel over the process group of :func:`tasks.ddp.session`
            (every rank calls ``fit`` with the same arguments); False (the default) trains in this process
            alone, also on rank 0 of a group (a domain's extra fits there).

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
    noise = float(getattr(cfg, "input_noise", 0.0) or 0.0) if regression else 0.0
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
                metrics["val_f1"] = float(f1_score(yv, pred, pos_label=n_cls - 1, zero_division=0,
                                                   average="binary" if n_cls == 2 else "macro"))
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
