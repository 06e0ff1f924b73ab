"""Distillation (tasks/compress/distill.py): the losses, the students and their initialisation from the teacher."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import models
from tasks.compress import distill
from tasks.loop import fit
from tasks.params_base import TrainLoopParams

TINY_BERT = {"encoder": {"model_type": "bert", "vocab_size": 3000, "hidden_size": 32, "num_hidden_layers": 4,
                         "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64}}


def logits(seed: int, shape=(16, 3)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_alpha_zero_is_the_hard_label_loss(task):
    s, t = (logits(1), logits(2)) if task == "multiclass" else (logits(1, (16, 1)), logits(2, (16, 1)))
    y = torch.randint(0, 3 if task == "multiclass" else 2, (16,), generator=torch.Generator().manual_seed(3))
    hard = F.cross_entropy(s, y) if task == "multiclass" else F.binary_cross_entropy_with_logits(s[:, 0], y.float())
    got = distill.kd_classification(s, t, y, task=task, temperature=4.0, alpha=0.0)
    assert torch.allclose(got, hard)


@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_soft_term_is_kl_times_t_squared_and_zero_when_the_student_agrees(task):
    shape = (16, 3) if task == "multiclass" else (16, 1)
    s, t, y = logits(1, shape), logits(2, shape), torch.zeros(16, dtype=torch.long)
    for temperature in (1.0, 2.0, 5.0):
        got = distill.kd_classification(s, t, y, task=task, temperature=temperature, alpha=1.0)
        if task == "multiclass":
            p, q = F.softmax(t / temperature, -1), F.log_softmax(s / temperature, -1)
            kl = (p * (p.log() - q)).sum(-1).mean()
        else:
            p, q = torch.sigmoid(t[:, 0] / temperature), torch.sigmoid(s[:, 0] / temperature)
            kl = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean()
        assert torch.allclose(got, temperature**2 * kl, rtol=1e-4, atol=1e-6)
        same = distill.kd_classification(t, t, y, task=task, temperature=temperature, alpha=1.0)
        assert abs(float(same)) < 1e-5


def test_field_loss_weighs_teacher_and_truth():
    pred, teacher, truth = logits(1, (4, 8, 8, 2)), logits(2, (4, 8, 8, 2)), logits(3, (4, 8, 8, 2))
    from tasks.loop import relative_l2

    for alpha in (0.0, 0.3, 1.0):
        got = distill.kd_regression(pred, teacher, truth, alpha=alpha)
        want = alpha * relative_l2(pred, teacher) + (1 - alpha) * relative_l2(pred, truth)
        assert torch.allclose(got, want)


class Points:
    def __init__(self, x, y):
        self.x, self.labels = x, y

    def __len__(self):
        return len(self.labels)

    def batch(self, idx):
        return (self.x[torch.as_tensor(idx)],), torch.as_tensor(self.labels[idx])


def test_a_student_moves_toward_its_teacher():
    """A few steps of distillation bring a fresh student's outputs closer to a teacher's (toy MLPs)."""
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    student = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    x = torch.randn(256, 4)
    with torch.no_grad():
        y = teacher(x).argmax(1).numpy()
    data = Points(x, y)

    def gap():
        with torch.no_grad():
            return float(F.kl_div(F.log_softmax(student(x), -1), F.softmax(teacher(x), -1), reduction="batchmean"))

    before = gap()
    loop = TrainLoopParams(epochs=5, steps_per_epoch=20, batch_size=32, lr=0.02, balanced_batches=False,
                           resume=False, keep="last", grad_clip=None)
    fit(student, data, None, loop, task="multiclass", progress=False,
        loss_fn=distill.loss_against(teacher, "multiclass", temperature=2.0, alpha=1.0))
    assert gap() < 0.5 * before


def test_student_config_and_every_other_layer_init():
    """A 2-layer student of a 4-layer BERT takes layers 0 and 2; embeddings and classifier come along."""
    torch.manual_seed(0)
    teacher = models.build("finance/text_encoder", TINY_BERT)
    student, info = distill.build_student(teacher, "finance/text_encoder", {"encoder": {"num_hidden_layers": 2}},
                                          seed=1, from_teacher=True)
    assert student.config.encoder["num_hidden_layers"] == 2
    assert student.config.encoder["hidden_size"] == 32  # the other encoder keys kept (nested merge)
    t, s = teacher.state_dict(), student.state_dict()
    for i, j in ((0, 0), (1, 2)):
        key = "encoder.encoder.layer.{}.attention.self.query.weight"
        assert torch.equal(s[key.format(i)], t[key.format(j)])
    assert torch.equal(s["encoder.embeddings.word_embeddings.weight"], t["encoder.embeddings.word_embeddings.weight"])
    assert torch.equal(s["classifier.weight"], t["classifier.weight"])
    assert info["kept"] == 0 and info["copied"] == len(s)


def test_a_student_override_that_names_no_config_key_is_refused():
    """The text encoder's config takes any keyword: a mistyped key must not leave a default-sized student."""
    teacher = models.build("finance/text_encoder", TINY_BERT)
    # what YAML makes of `{encoder:{num_hidden_layers:4}}` (no space after the colon)
    with pytest.raises(ValueError, match=r"student\.encoder: 'num_hidden_layers:4' is not a key.*did you mean "
                                         r"'num_hidden_layers'"):
        distill.build_student(teacher, "finance/text_encoder", {"encoder": {"num_hidden_layers:4": None}},
                              seed=1, from_teacher=True)


def test_a_narrower_student_keeps_its_own_init_where_shapes_differ():
    cfg = {"n_chans": 22, "n_times": 301, "sfreq": 100.0, "n_outputs": 2}
    torch.manual_seed(0)
    teacher = models.build("eeg/dbconformer", cfg)
    student, info = distill.build_student(teacher, "eeg/dbconformer", {"emb_size": 20, "n_heads": 5, "tem_depth": 1},
                                          seed=3, from_teacher=True)
    again, _ = distill.build_student(teacher, "eeg/dbconformer", {"emb_size": 20, "n_heads": 5, "tem_depth": 1},
                                     seed=3, from_teacher=True)
    assert info["kept"] > 0 and info["copied"] > 0  # the spatial convolution (same shape) came from the teacher
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), again.state_dict().values(),
                                                 strict=True))  # seeded: the same student twice
    with torch.no_grad():
        assert math.isfinite(float(student(*student.example_inputs(2)).sum()))
    assert np.isclose(sum(p.numel() for p in student.parameters()) / sum(p.numel() for p in teacher.parameters()),
                      0.2, atol=0.1)
