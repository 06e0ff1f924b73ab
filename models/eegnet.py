"""EEGNet (Lawhern et al. 2018): a compact depthwise-separable CNN for EEG-based BCIs.

Lawhern, Solon, Waytowich, Gordon, Hung, Lance, "EEGNet: a compact convolutional
neural network for EEG-based brain-computer interfaces", J. Neural Eng. 15(5):056013,
2018, arXiv 1611.08024 (Keras reference: vlawhern/arl-eegmodels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import check_bool, check_int, check_rate
from models.eeg_common import EEGConfig, EEGModel, eeg_input
from models.registry import register

__all__ = ["EEGNet", "EEGNetConfig", "MaxNormConv2d", "MaxNormLinear"]

# Keras BatchNormalization defaults used by the reference: momentum 0.99 (= 0.01 in torch's
# convention, the weight of the new batch) and epsilon 1e-3.
BN_MOMENTUM = 0.01
BN_EPS = 1e-3
POOL1, POOL2 = 4, 8  # the paper's pooling factors (128 Hz -> 32 Hz -> 4 Hz)


def _max_norm_(module: nn.Module, max_norm: float) -> None:
    """Project each output unit's weights onto the L2 ball of radius ``max_norm`` (Keras ``max_norm``).

    Keras applies the constraint after every optimizer step. Doing it before
    each training forward (as braindecode does) means every forward that
    produces a gradient uses constrained weights, which is the same sequence of
    weights seen from the loss. Skipped in eval mode, so inference never writes
    to the weights, and skipped when ``weight`` is not a plain parameter (e.g.
    under ``torch.nn.utils.prune``, whose mask recomputes it).
    """
    if not (module.training and isinstance(module.weight, nn.Parameter)):
        return
    with torch.no_grad():
        w = module.weight
        norms = w.flatten(1).norm(dim=1)  # (out,)
        if (norms > max_norm).any():  # no in-place write (and no version bump) when nothing changes
            w.copy_(torch.renorm(w, p=2, dim=0, maxnorm=max_norm))


class MaxNormConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose per-output-filter weight norm is kept ``<= max_norm`` during training."""

    def __init__(self, *args: Any, max_norm: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_norm = max_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _max_norm_(self, self.max_norm)
        return super().forward(x)


class MaxNormLinear(nn.Linear):
    """``nn.Linear`` whose per-output-unit weight norm is kept ``<= max_norm`` during training."""

    def __init__(self, *args: Any, max_norm: float = 0.25, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_norm = max_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _max_norm_(self, self.max_norm)
        return super().forward(x)


@dataclass
class EEGNetConfig(EEGConfig):
    """Knobs of :class:`EEGNet`; defaults = EEGNet-8,2 with kernel lengths scaled to ``sfreq``.

    Attributes:
        n_chans, n_times, sfreq, n_outputs: see :class:`~models.dbconformer.EEGConfig`.
        F1: temporal filters (8).
        D: spatial filters per temporal filter, depth multiplier (2).
        F2: pointwise filters of the separable conv (16 = F1 * D).
        kernel_length: temporal kernel; ``None`` = ``round(sfreq / 2)``, half a
            second as in the paper (64 at 128 Hz, 125 at 250 Hz).
        separable_kernel_length: kernel of the separable conv (after pooling by 4);
            ``None`` = ``round(sfreq / 8)``, again half a second (16 at 128 Hz).
        dropout: 0.5 (paper's within-subject setting); 0.25 for cross-subject.
        max_norm: the paper's constraints, max-norm 1 on the depthwise spatial
            filters and 0.25 on the classifier.
    """

    F1: int = 8
    D: int = 2
    F2: int = 16
    kernel_length: int | None = None
    separable_kernel_length: int | None = None
    dropout: float = 0.5
    max_norm: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("F1", "D", "F2"):
            check_int(self, name, 1)
        for name in ("kernel_length", "separable_kernel_length"):
            check_int(self, name, 1, optional=True)
        check_rate(self, "dropout")
        check_bool(self, "max_norm")
        self.require_n_times(POOL1 * POOL2, f"the two poolings need {POOL1} * {POOL2} samples")

    @property
    def temporal_kernel(self) -> int:
        """Effective temporal kernel length."""
        return self.kernel_length if self.kernel_length is not None else max(1, round(self.sfreq / 2))

    @property
    def separable_kernel(self) -> int:
        """Effective separable kernel length."""
        if self.separable_kernel_length is not None:
            return self.separable_kernel_length
        return max(1, round(self.sfreq / 8))

    @property
    def n_pooled(self) -> int:
        """Time steps after both poolings."""
        return self.n_times // POOL1 // POOL2


def _same_pad(kernel: int) -> nn.ZeroPad2d:
    """Keras/TF ``padding="same"`` along time: the extra zero of an even kernel goes on the right."""
    return nn.ZeroPad2d(((kernel - 1) // 2, kernel // 2, 0, 0))


@register("eeg/eegnet")
class EEGNet(EEGModel):
    """EEGNet: temporal conv, depthwise spatial conv, separable conv, dense classifier.

    EEGNet (Lawhern et al., J. Neural Eng. 2018) is a compact CNN that works
    across BCI paradigms (ERP, SMR, MRCP). EEGNet-F1,D::

        Conv2d(1, F1, (1, K1), same) -> BN
        -> depthwise Conv2d(F1, F1*D, (C, 1), groups=F1, max-norm 1) -> BN -> ELU -> AvgPool (1, 4) -> Dropout
        -> depthwise Conv2d(F1*D, F1*D, (1, K2), same) -> pointwise Conv2d(F1*D, F2, 1) -> BN -> ELU
        -> AvgPool (1, 8) -> Dropout -> flatten -> Linear(F2 * T//32, n, max-norm 0.25)

    No conv has a bias (each is followed by BatchNorm). With the defaults
    (22 x 1001 at 250 Hz, K1 = 125, K2 = 31) it has 3,178 parameters.

    Deliberate differences from the paper:

    * Kernel lengths follow ``sfreq`` by default (half a second each, see
      :class:`EEGNetConfig`); the paper's 64 / 16 are for 128 Hz data. Set
      ``kernel_length=64, separable_kernel_length=16`` for the literal EEGNet-8,2.
    * The max-norm constraints are applied before each training forward rather
      than after each optimizer step (see :func:`_max_norm_`); ``max_norm=False``
      turns them off.
    * ``forward`` returns logits (the reference ends in a softmax).

    Input:
        x: ``(B, n_chans, n_times)`` float32, or ``(B, 1, n_chans, n_times)``.

    Output:
        ``(B, n_outputs)`` logits.

    Args:
        config: an :class:`EEGNetConfig`.
    """

    Config = EEGNetConfig

    def __init__(self, config: EEGNetConfig) -> None:
        super().__init__(config)
        f1, fd, f2 = config.F1, config.F1 * config.D, config.F2
        k1, k2 = config.temporal_kernel, config.separable_kernel
        self.pad1 = _same_pad(k1)
        self.temporal_conv = nn.Conv2d(1, f1, (1, k1), bias=False)
        self.bn1 = nn.BatchNorm2d(f1, momentum=BN_MOMENTUM, eps=BN_EPS)
        spatial_kw: dict[str, Any] = {"max_norm": 1.0} if config.max_norm else {}
        spatial_cls = MaxNormConv2d if config.max_norm else nn.Conv2d
        self.spatial_conv = spatial_cls(f1, fd, (config.n_chans, 1), groups=f1, bias=False, **spatial_kw)
        self.bn2 = nn.BatchNorm2d(fd, momentum=BN_MOMENTUM, eps=BN_EPS)
        self.pool1 = nn.AvgPool2d((1, POOL1))
        self.pad2 = _same_pad(k2)
        self.separable_depthwise = nn.Conv2d(fd, fd, (1, k2), groups=fd, bias=False)
        self.separable_pointwise = nn.Conv2d(fd, f2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(f2, momentum=BN_MOMENTUM, eps=BN_EPS)
        self.pool2 = nn.AvgPool2d((1, POOL2))
        self.dropout = nn.Dropout(config.dropout)
        n_features = f2 * config.n_pooled
        if config.max_norm:
            self.classifier: nn.Linear = MaxNormLinear(n_features, config.n_outputs, max_norm=0.25)
        else:
            self.classifier = nn.Linear(n_features, config.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify EEG trials: ``(B, C, T)`` or ``(B, 1, C, T)`` -> ``(B, n_outputs)`` logits."""
        x = eeg_input(x, self.config).unsqueeze(1)  # (B, 1, C, T)
        h = self.bn1(self.temporal_conv(self.pad1(x)))  # (B, F1, C, T)
        h = F.elu(self.bn2(self.spatial_conv(h)))  # (B, F1*D, 1, T)
        h = self.dropout(self.pool1(h))  # (B, F1*D, 1, T//4)
        h = self.separable_pointwise(self.separable_depthwise(self.pad2(h)))  # (B, F2, 1, T//4)
        h = F.elu(self.bn3(h))  # (B, F2, 1, T//4)
        h = self.dropout(self.pool2(h))  # (B, F2, 1, T//32)
        return self.classifier(h.flatten(1))  # (B, n_outputs)
