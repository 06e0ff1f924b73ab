"""The one training loop (tasks/loop.py): balanced batches, determinism, checkpoint/resume,
early stopping on the validation metric, best-epoch weights, and the model-file round trip.

A FlowTransformer of a few hundred parameters on tiny synthetic windows keeps this fast.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import models
from tasks.domains.netflow.data import FlowWindows
from tasks.loop import (
    balanced_batches,
    fit,
    load_model,
    predict,
    probabilities,
    save_model,
    shuffled_batches,
)
from tasks.params_base import TrainLoopParams

KEY = "netflow/flowtransformer"
W = 4
TINY_MODEL = {"n_numeric": 4, "categorical_levels": [4, 3], "window": W, "embed_dim": 8, "internal_size": 8,
              "n_heads": 1, "n_layers": 1, "mlp_sizes": [8]}


def tiny_model(n_outputs: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    return models.build(KEY, {**TINY_MODEL, "n_outputs": n_outputs})


def windows(n: int, seed: int, task: str = "binary", flip: bool = False) -> FlowWindows:
    """Rows whose first numeric feature leaks the label (so training has something to learn)."""
    rng = np.random.default_rng(seed)
    y_class = rng.choice(3, size=n, p=[0.6, 0.3, 0.1]).astype(np.int64)
    y = (y_class != 0).astype(np.int64)
    x_num = rng.random((n, 4)).astype(np.float32)
    x_num[:, 0] = 0.8 * (y_class / 2.0) + 0.2 * x_num[:, 0]
    x_cat = np.stack([rng.integers(0, 4, n), rng.integers(0, 3, n)], axis=1).astype(np.int64)
    if flip:  # labels contradicting the feature: the better the model fits training, the worse it does here
        y, y_class = 1 - y, (3 - y_class) % 3
    return FlowWindows(x_num, x_cat, y, y_class, W, task)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these models are tiny, and on a busy 2-core machine two threads spin-wait
    each other (measured: 13x slower). Determinism checks compare runs at the same thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return {"train": windows(400, 1), "val": windows(120, 2)}


def loop(**overrides) -> TrainLoopParams:
    base = {"seed": 0, "epochs": 3, "steps_per_epoch": 4, "batch_size": 32, "eval_batch_size": 64, "lr": 1e-2,
            "weight_decay": 0.01, "grad_clip": 1.0, "patience": 10, "balanced_batches": True, "resume": True,
            "device": "cpu"}
    return TrainLoopParams(**{**base, **overrides})


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- batches
def test_balanced_batches_equal_class_shares():
    labels = np.array([0] * 100 + [1] * 50 + [2] * 20)
    rng = np.random.default_rng(0)
    batches = balanced_batches(labels, 30, 5, rng)
    assert len(batches) == 5
    for idx in batches:
        assert len(idx) == 30
        counts = np.bincount(labels[idx], minlength=3)
        np.testing.assert_array_equal(counts, [10, 10, 10])
        assert len(np.unique(idx)) == 30  # every class has >= 10 rows: no replacement
    # an odd batch size: the remainder goes to the first classes
    for idx in balanced_batches(labels, 32, 3, np.random.default_rng(1)):
        np.testing.assert_array_equal(np.bincount(labels[idx], minlength=3), [11, 11, 10])


def test_balanced_batches_replacement_only_for_a_too_small_class():
    labels = np.array([0] * 50 + [1] * 3 + [2] * 10)
    saw_repeat = False
    for idx in balanced_batches(labels, 30, 20, np.random.default_rng(0)):
        per = {c: idx[labels[idx] == c] for c in range(3)}
        assert all(len(v) == 10 for v in per.values())
        assert len(np.unique(per[0])) == 10  # large class: without replacement
        # exactly 10 rows: drawn without replacement, so each of them exactly once
        np.testing.assert_array_equal(np.sort(per[2]), np.arange(53, 63))
        assert set(per[1]) <= {50, 51, 52}  # 3 rows for 10 slots: with replacement
        saw_repeat |= len(np.unique(per[1])) < 10
    assert saw_repeat


def test_balanced_batches_binary_half_half_and_reproducible():
    labels = np.array([0] * 90 + [1] * 10)
    a = balanced_batches(labels, 8, 4, np.random.default_rng(7))
    b = balanced_batches(labels, 8, 4, np.random.default_rng(7))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
        assert labels[x].sum() == 4
    # the indices are shuffled inside a batch (not all benign first)
    assert any((np.diff(labels[x]) < 0).any() for x in a)


def test_shuffled_batches_cover_the_data():
    batches = shuffled_batches(10, 4, 5, np.random.default_rng(0))
    assert [len(b) for b in batches] == [4] * 5
    flat = np.concatenate(batches)
    assert set(flat[:10]) == set(range(10))  # the first pass is a permutation


# ----------------------------------------------------------------------------- predict / probabilities
def test_predict_is_ordered_and_batch_size_independent(data):
    model = tiny_model()
    val = data["val"]
    full = predict(model, val, 1000)
    assert full.shape == (len(val), 1) and full.dtype == np.float32
    small = predict(model, val, 7)
    np.testing.assert_allclose(small, full, rtol=1e-5, atol=1e-6)
    (xn, xc), _ = val.batch(np.array([5]))
    with torch.no_grad():
        np.testing.assert_allclose(model(xn, xc).numpy(), full[5:6], rtol=1e-5, atol=1e-6)


def test_probabilities():
    logits = np.array([[0.0], [2.0], [-30.0], [30.0]], dtype=np.float32)
    p = probabilities(logits, "binary")
    assert p.shape == (4,)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-logits[:, 0].astype(np.float64))))
    assert p[0] == 0.5 and 0 < p[2] < 1e-12 and 1 - p[3] < 1e-12
    z = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -1000.0]])
    pm = probabilities(z, "multiclass")
    np.testing.assert_allclose(pm.sum(axis=1), 1.0)
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(pm[0], e / e.sum())
    np.testing.assert_allclose(pm[1], [0.5, 0.5, 0.0], atol=1e-12)  # stable for large logits


def test_binary_probabilities_of_extreme_logits_without_overflow():
    """A very negative logit is P = 0, not an 'overflow encountered in exp' RuntimeWarning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = probabilities(np.array([[-800.0], [800.0]], dtype=np.float32), "binary")
    np.testing.assert_array_equal(p, [0.0, 1.0])


# ----------------------------------------------------------------------------- fit
def test_fit_is_deterministic_for_a_seed(data):
    runs = []
    for _ in range(2):
        model = tiny_model()
        result = fit(model, data["train"], data["val"], loop(), task="binary", progress=False)
        runs.append((state(model), result))
    assert_same_state(runs[0][0], runs[1][0])
    assert runs[0][1].history == runs[1][1].history
    assert runs[0][1].best_epoch == runs[1][1].best_epoch
    # a different seed draws other batches and other dropout masks
    other = tiny_model()
    fit(other, data["train"], data["val"], loop(seed=1), task="binary", progress=False)
    assert any(not torch.equal(v, state(other)[k]) for k, v in runs[0][0].items())


def test_fit_history_and_callback_once_per_epoch(data):
    calls = []
    model = tiny_model()
    result = fit(model, data["train"], data["val"], loop(), task="binary", progress=True,
                 on_epoch=lambda e, m: calls.append((e, dict(m))))
    assert [e for e, _ in calls] == [1, 2, 3]
    assert [m for _, m in calls] == result.history
    for e, m in calls:
        assert m["epoch"] == e
        assert set(m) == {"epoch", "train_loss", "lr", "val_loss", "val_balanced_accuracy", "val_f1"}
        assert all(np.isfinite(v) for v in m.values())
    assert result.epochs_run == 3 and not result.stopped_early and result.resumed_from is None
    assert result.best_metric == max(m["val_balanced_accuracy"] for m in result.history)


def test_resume_gives_the_same_result_as_one_run(data, tmp_path):
    """3 epochs in one go == 2 epochs, stop, then continue to 3 from the checkpoint."""
    straight = tiny_model()
    r_straight = fit(straight, data["train"], data["val"], loop(epochs=3), task="binary", progress=False)

    ckpt = tmp_path / "ckpt"
    first = tiny_model()
    r_first = fit(first, data["train"], data["val"], loop(epochs=2), task="binary", checkpoint_dir=ckpt,
                  progress=False)
    assert r_first.epochs_run == 2 and r_first.resumed_from is None
    assert (ckpt / "last.pt").exists() and not (ckpt / "last.tmp").exists()
    saved = torch.load(ckpt / "last.pt", map_location="cpu", weights_only=True)  # no pickled objects
    assert saved["epoch"] == 2 and len(saved["history"]) == 2

    epochs_seen = []
    resumed = tiny_model(seed=123)  # a different init: everything must come from the checkpoint
    r_resumed = fit(resumed, data["train"], data["val"], loop(epochs=3), task="binary", checkpoint_dir=ckpt,
                    progress=False, on_epoch=lambda e, m: epochs_seen.append(e))
    assert r_resumed.resumed_from == 2
    assert epochs_seen == [3]  # only the missing epoch ran
    assert r_resumed.epochs_run == 3
    assert_same_state(state(straight), state(resumed))
    assert r_resumed.history == r_straight.history
    assert (r_resumed.best_epoch, r_resumed.best_metric) == (r_straight.best_epoch, r_straight.best_metric)


def test_resume_of_a_finished_run_trains_nothing(data, tmp_path):
    first = tiny_model()
    r1 = fit(first, data["train"], data["val"], loop(epochs=2), task="binary", checkpoint_dir=tmp_path,
             progress=False)
    again = tiny_model(seed=5)
    calls = []
    r2 = fit(again, data["train"], data["val"], loop(epochs=2), task="binary", checkpoint_dir=tmp_path,
             progress=False, on_epoch=lambda e, m: calls.append(e))
    assert calls == [] and r2.resumed_from == 2 and r2.epochs_run == 2
    assert_same_state(state(first), state(again))  # the best weights of the checkpoint
    assert r2.history == r1.history


def test_resume_false_ignores_the_checkpoint(data, tmp_path):
    fit(tiny_model(), data["train"], data["val"], loop(epochs=2), task="binary", checkpoint_dir=tmp_path,
        progress=False)
    calls = []
    r = fit(tiny_model(), data["train"], data["val"], loop(epochs=2, resume=False), task="binary",
            checkpoint_dir=tmp_path, progress=False, on_epoch=lambda e, m: calls.append(e))
    assert r.resumed_from is None and calls == [1, 2]


def test_early_stopping_when_validation_does_not_improve(data):
    # lr = 0 (bypassing the params validation, which demands lr > 0): the weights never change, so the
    # validation metric of epoch 1 is never beaten.
    cfg = loop(epochs=6, patience=2).model_copy(update={"lr": 0.0})
    model = tiny_model()
    before = state(model)
    calls = []
    r = fit(model, data["train"], data["val"], cfg, task="binary", progress=False,
            on_epoch=lambda e, m: calls.append(e))
    assert r.stopped_early
    assert r.epochs_run == 3 < cfg.epochs  # epoch 1 best, epochs 2 and 3 not better -> stop
    assert calls == [1, 2, 3] and len(r.history) == 3
    assert r.best_epoch == 1
    assert_same_state(before, state(model))

    r1 = fit(tiny_model(), data["train"], data["val"], cfg.model_copy(update={"patience": 1}), task="binary",
             progress=False)
    assert r1.stopped_early and r1.epochs_run == 2


def test_model_ends_with_the_best_epoch_weights(data):
    """Validation labels contradict training: later epochs get worse, the loop must restore the best one."""
    val = windows(120, 3, flip=True)
    snapshots: dict[int, dict] = {}
    model = tiny_model()
    r = fit(model, data["train"], val, loop(epochs=4, lr=3e-2), task="binary", progress=False,
            on_epoch=lambda e, m: snapshots.__setitem__(e, state(model)))
    scores = [h["val_balanced_accuracy"] for h in r.history]
    assert r.best_epoch == int(np.argmax(scores)) + 1  # first epoch with the highest score
    assert r.best_metric == max(scores)
    assert r.best_epoch < r.epochs_run, "test premise: the best epoch is not the last one"
    assert_same_state(snapshots[r.best_epoch], state(model))
    last = snapshots[r.epochs_run]
    assert any(not torch.equal(last[k], v) for k, v in state(model).items())
    # and the restored model reproduces the best epoch's validation score
    from sklearn.metrics import balanced_accuracy_score

    pred = (probabilities(predict(model, val), "binary") >= 0.5).astype(int)
    assert balanced_accuracy_score(val.labels, pred) == pytest.approx(r.best_metric)


def test_fit_without_validation_watches_training_loss(data):
    model = tiny_model()
    r = fit(model, data["train"], None, loop(epochs=2), task="binary", progress=False)
    assert all(set(h) == {"epoch", "train_loss", "lr"} for h in r.history)
    best = min(h["train_loss"] for h in r.history)
    assert r.best_metric == pytest.approx(-best)


def test_fit_multiclass(data):
    train = windows(400, 1, task="multiclass")
    val = windows(120, 2, task="multiclass")
    model = tiny_model(n_outputs=3)
    r = fit(model, train, val, loop(epochs=2, balanced_batches=False), task="multiclass", progress=False)
    assert r.epochs_run == 2 and np.isfinite(r.best_metric)
    logits = predict(model, val)
    assert logits.shape == (len(val), 3)


# ----------------------------------------------------------------------------- model files
def test_save_and_load_model_round_trip(data, tmp_path):
    model = tiny_model()
    fit(model, data["train"], data["val"], loop(epochs=1), task="binary", progress=False)
    save_model(tmp_path, model, KEY, {"task": "binary", "class_names": ["Benign", "Attack"]})
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["key"] == KEY and meta["config"] == model.config_dict()
    assert meta["task"] == "binary" and meta["class_names"] == ["Benign", "Attack"]
    loaded, meta2 = load_model(tmp_path)
    assert meta2 == meta
    assert not loaded.training
    assert_same_state(state(model), state(loaded))
    np.testing.assert_array_equal(predict(loaded, data["val"]), predict(model, data["val"]))
    # the weights file is plain safetensors (no pickle)
    from safetensors.torch import load_file

    assert set(load_file(str(tmp_path / "model.safetensors"))) == set(model.state_dict())


def test_linear_schedule_decays_to_zero_and_f1_picks_the_epoch(data):
    """FinAI-BERT's recipe: lr * (1 - step / total) per step (HF Trainer's default), best epoch by validation F1."""
    epochs, steps = 4, 5
    model = tiny_model()
    res = fit(model, data["train"], data["val"], loop(epochs=epochs, steps_per_epoch=steps, lr_schedule="linear",
                                                     select_metric="f1"), task="binary", progress=False)
    lrs = [h["lr"] for h in res.history]  # the lr of each epoch's last step
    total = epochs * steps
    assert lrs == pytest.approx([1e-2 * (1 - (e * steps - 1) / total) for e in range(1, epochs + 1)])
    f1 = [h["val_f1"] for h in res.history]
    assert res.best_metric == max(f1) and f1[res.best_epoch - 1] == max(f1)
    const = fit(tiny_model(), data["train"], data["val"], loop(epochs=2), task="binary", progress=False)
    assert [h["lr"] for h in const.history] == [1e-2, 1e-2]


def test_a_tie_on_the_metric_goes_to_the_lower_validation_loss():
    """On an easy task every epoch reaches F1 = 1: the kept epoch is the one with the lowest val loss."""
    model = tiny_model()
    train, val = windows(400, 1), windows(120, 2)
    # Make the label trivially visible: the first numeric feature of every row equals its own attack flag.
    for d in (train, val):
        flags = torch.zeros(len(d.x_num))
        flags[W - 1:] = torch.as_tensor(d.attack, dtype=torch.float32)
        d.x_num[:, 0] = flags
    res = fit(model, train, val, loop(epochs=6, lr=3e-2, select_metric="f1"), task="binary", progress=False)
    f1 = np.array([h["val_f1"] for h in res.history])
    loss = np.array([h["val_loss"] for h in res.history])
    tied = np.flatnonzero(f1 == f1.max())
    assert len(tied) >= 2, f"the task should saturate F1 in several epochs: {f1}"
    assert res.best_epoch - 1 == tied[np.argmin(loss[tied])]


# ============================================================================ regression (turbulence)
class _Pairs:
    """u(t+1) = 0.8 u(t) on random fields: a linear map the FNO can learn. (traj, T, 8, 8, 2)."""

    def __init__(self, n_traj: int, seed: int, horizon: int = 1):
        from tasks.domains.turbulence.data import FieldPairs

        rng = np.random.default_rng(seed)
        first = rng.standard_normal((n_traj, 1, 8, 8, 2)).astype(np.float32)
        self.fields = np.concatenate([first * 0.8**t for t in range(6)], axis=1)
        self.pairs = FieldPairs(self.fields, 1, horizon)


def tiny_fno(residual: bool = False):
    torch.manual_seed(0)
    return models.build("turbulence/fno", {"grid": [8, 8], "width": 8, "modes": [3, 3], "n_layers": 2,
                                           "projection_width": 16, "residual": residual})


def test_relative_l2_and_pushforward_loss():
    from tasks.loop import regression_loss, relative_l2

    y = torch.randn(3, 8, 8, 2)
    assert float(relative_l2(y, y)) == 0.0
    assert float(relative_l2(torch.zeros_like(y), y)) == pytest.approx(1.0)
    assert float(relative_l2(2 * y, y)) == pytest.approx(1.0)
    model = lambda x: 0.5 * x[:, -1]  # noqa: E731 - halves the last snapshot
    x = torch.randn(2, 1, 8, 8, 2)
    targets = torch.stack([0.5 * x[:, 0], 0.25 * x[:, 0], 0.1 * x[:, 0]], dim=1)  # (B, K=3, ...)
    assert float(regression_loss(model, x, targets, 1)) == pytest.approx(0.0, abs=1e-6)
    assert float(regression_loss(model, x, targets, 2)) == pytest.approx(0.0, abs=1e-6)  # 2 steps: exact
    # 3 steps: model reaches 0.125 x where 0.1 x is true -> |0.125 - 0.1| / 0.1 = 0.25, halved with the exact step.
    assert float(regression_loss(model, x, targets, 3)) == pytest.approx(0.125, rel=1e-5)


def test_fit_regression_learns_and_steps_the_lr():
    train, val = _Pairs(6, 0).pairs, _Pairs(2, 1).pairs
    model = tiny_fno()
    cfg = loop(epochs=4, steps_per_epoch=15, batch_size=8, lr=5e-3, select_metric="rel_l2", lr_schedule="step",
               lr_step_epochs=2, lr_gamma=0.5, balanced_batches=False)
    result = fit(model, train, val, cfg, task="regression", progress=False)
    hist = result.history
    assert [h["lr"] for h in hist] == pytest.approx([5e-3, 5e-3, 2.5e-3, 2.5e-3])
    assert hist[-1]["val_rel_l2"] < hist[0]["val_rel_l2"] < 1.5
    assert result.best_metric == pytest.approx(min(h["val_rel_l2"] for h in hist))  # lower is better
    assert result.best_epoch == 1 + int(np.argmin([h["val_rel_l2"] for h in hist]))


def test_pushforward_training_uses_k_step_targets():
    train = _Pairs(4, 0).pairs
    model = tiny_fno(residual=True)
    from tasks.domains.turbulence.params import TurbulenceTrain

    cfg = TurbulenceTrain(epochs=1, steps_per_epoch=3, batch_size=4, pushforward_steps=3, device="cpu")
    result = fit(model, train, None, cfg, task="regression", progress=False)
    assert np.isfinite(result.history[0]["train_loss"])
    assert len(train.with_horizon(3)) == 4 * (6 - 1 - 3 + 1)
    (x,), y = train.with_horizon(3).batch(np.array([0, 1]))
    assert x.shape == (2, 1, 8, 8, 2) and y.shape == (2, 3, 8, 8, 2)


def test_the_train_stage_gives_the_same_teacher_whatever_ran_before_in_the_process(project):
    """The teacher's init draws from torch's global generator: the stage seeds it, so the same params give the same
    weights in any process (before, netflow and finance teachers differed with every process start)."""
    from safetensors.torch import load_file

    from tasks.params import load_params
    from tasks.stages import run_stage

    params = load_params()
    for stage in ("ingest", "preprocess"):
        run_stage(stage, "netflow", params, track=False)
    weights = []
    for draws in (1, 1000):
        torch.rand(draws)  # what ran before moves the global generator
        for ckpt in (project / "checkpoints" / "netflow").glob("*"):
            shutil.rmtree(ckpt)  # no resume: train from the start both times
        run_stage("train", "netflow", params, track=False)
        weights.append(load_file(project / "artifacts" / "netflow" / "teacher" / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
