"""ShallowConvNet (Schirrmeister et al. 2017): a learned filter-bank common spatial pattern pipeline.

Schirrmeister et al., "Deep learning with convolutional neural networks for EEG
decoding and visualization", Human Brain Mapping 38(11):5391-5420, 2017,
arXiv 1703.05051 (the "shallow ConvNet"; braindecode ``ShallowFBCSPNet``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.base import check_int, check_rate
from models.eeg_common import EEGConfig, EEGModel, eeg_input
from models.registry import register

__all__ = ["ShallowConvNet", "ShallowConvNetConfig", "safe_log"]

LOG_EPS = 1e-6  # the paper's safe_log clamps at 1e-6 before the log


def safe_log(x: torch.Tensor, eps: float = LOG_EPS) -> torch.Tensor:
    """``log(max(x, eps))``: the pooled power can underflow to 0, whose log is -inf."""
    return torch.log(torch.clamp(x, min=eps))


@dataclass
class ShallowConvNetConfig(EEGConfig):
    """Knobs of :class:`ShallowConvNet`; defaults = the paper (lengths in samples at 250 Hz).

    Attributes:
        n_chans, n_times, sfreq, n_outputs: see :class:`~models.dbconformer.EEGConfig`.
            ``sfreq`` is recorded only: the paper gives its lengths in samples
            for 250 Hz data.
        n_filters_time: temporal filters (40).
        filter_time_length: temporal kernel (25 samples = 100 ms at 250 Hz).
        n_filters_spat: spatial filters (40).
        pool_time_length: mean-pooling window (75).
        pool_time_stride: mean-pooling stride (15).
        dropout: dropout before the classifier (0.5).
    """

    n_filters_time: int = 40
    filter_time_length: int = 25
    n_filters_spat: int = 40
    pool_time_length: int = 75
    pool_time_stride: int = 15
    dropout: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (
            "n_filters_time",
            "filter_time_length",
            "n_filters_spat",
            "pool_time_length",
            "pool_time_stride",
        ):
            check_int(self, name, 1)
        check_rate(self, "dropout")
        self.require_n_times(
            self.filter_time_length - 1 + self.pool_time_length, "filter_time_length - 1 + pool_time_length"
        )

    @property
    def n_pooled(self) -> int:
        """Time steps after pooling."""
        valid = self.n_times - self.filter_time_length + 1
        return (valid - self.pool_time_length) // self.pool_time_stride + 1


@register("eeg/shallowconvnet")
class ShallowConvNet(EEGModel):
    """ShallowConvNet: temporal conv, spatial conv, square, mean-pool, log, dense.

    The shallow ConvNet of Schirrmeister et al. (Hum. Brain Mapp. 2017) mirrors
    filter-bank CSP: a temporal convolution (band-pass filters), a spatial
    convolution across all electrodes (spatial filters), squaring and
    mean-pooling (band power), a log, and a linear classifier::

        Conv2d(1, 40, (1, 25)) -> Conv2d(40, 40, (C, 1), no bias) -> BN -> square
        -> AvgPool (1, 75) stride (1, 15) -> safe_log -> Dropout .5 -> Linear(40 * N, n)

    The spatial conv has no bias because the BatchNorm after it has one (as in
    the paper's code and braindecode). BatchNorm momentum 0.1 (the paper's
    ``alpha = 0.1``) is PyTorch's default. 41,202 parameters on 22 x 1001 with
    two classes (N = 61 pooled steps).

    Deliberate differences from the paper's code:

    * The classifier is ``Linear`` on the flattened ``(40, N)`` map instead of a
      ``Conv2d`` whose kernel spans all ``N`` steps: the same function and
      parameter count, without the final squeeze.
    * No ``LogSoftmax``: ``forward`` returns logits, like every model here (the
      loss applies the softmax).

    Input:
        x: ``(B, n_chans, n_times)`` float32, or ``(B, 1, n_chans, n_times)``.

    Output:
        ``(B, n_outputs)`` logits.

    Args:
        config: a :class:`ShallowConvNetConfig`.
    """

    Config = ShallowConvNetConfig

    def __init__(self, config: ShallowConvNetConfig) -> None:
        super().__init__(config)
        self.temporal_conv = nn.Conv2d(1, config.n_filters_time, (1, config.filter_time_length))
        self.spatial_conv = nn.Conv2d(
            config.n_filters_time, config.n_filters_spat, (config.n_chans, 1), bias=False
        )
        self.bn = nn.BatchNorm1d(config.n_filters_spat)
        self.pool = nn.AvgPool1d(config.pool_time_length, config.pool_time_stride)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.n_filters_spat * config.n_pooled, config.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify EEG trials: ``(B, C, T)`` or ``(B, 1, C, T)`` -> ``(B, n_outputs)`` logits."""
        x = eeg_input(x, self.config)  # (B, C, T)
        h = self.temporal_conv(x.unsqueeze(1))  # (B, F_t, C, T'), T' = T - k + 1
        h = self.spatial_conv(h).squeeze(2)  # (B, F_s, T')
        # Power, pooling and log in float32: under bf16 autocast they would lose too many digits.
        h = self.bn(h).float() ** 2  # (B, F_s, T'), instantaneous power
        h = safe_log(self.pool(h))  # (B, F_s, N), log band power
        return self.classifier(self.dropout(h).flatten(1))  # (B, n_outputs)
