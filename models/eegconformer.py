"""EEG Conformer: convolutional patch embedding + transformer, the DBConformer paper's strongest baseline.

Re-implemented from the description of the baseline in ``shared/reference/models.md``
section 1.4 (Song et al., "EEG Conformer: Convolutional Transformer for EEG Decoding
and Visualization", IEEE TNSRE 31:710-719, 2023; arXiv/code 2022, eeyhsong/EEG-Conformer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import check_choice, check_int, check_rate
from models.eeg_common import ATTN_SCALES, ConformerBlock, EEGConfig, EEGModel, eeg_input
from models.registry import register

__all__ = ["EEGConformer", "EEGConformerConfig"]


@dataclass
class EEGConformerConfig(EEGConfig):
    """Knobs of :class:`EEGConformer`; defaults = the baseline of the DBConformer repo on BNCI2014001.

    Attributes:
        n_chans, n_times, sfreq, n_outputs: see :class:`~models.dbconformer.EEGConfig`.
            ``sfreq`` is recorded only: the kernel and pooling lengths are in
            samples (chosen for 250 Hz).
        emb_size: token width ``D`` (40).
        n_heads: attention heads (10, head dim 4).
        depth: transformer blocks (6).
        n_filters: filters of the temporal and spatial convs (40).
        kernel_length: temporal conv kernel (25).
        pool_length: average-pooling window (75).
        pool_stride: average-pooling stride (15).
        dropout: every 0.5 dropout (patch embedding, blocks, first head layer).
        head_dropout: dropout after the second head layer (0.3).
        attn_scale: ``"emb"`` (reference, 1/sqrt(emb_size)) or ``"head"`` (1/sqrt(head_dim)).
    """

    emb_size: int = 40
    n_heads: int = 10
    depth: int = 6
    n_filters: int = 40
    kernel_length: int = 25
    pool_length: int = 75
    pool_stride: int = 15
    dropout: float = 0.5
    head_dropout: float = 0.3
    attn_scale: str = "emb"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("emb_size", "n_heads", "n_filters", "kernel_length", "pool_length", "pool_stride"):
            check_int(self, name, 1)
        check_int(self, "depth", 0)
        check_rate(self, "dropout")
        check_rate(self, "head_dropout")
        check_choice(self, "attn_scale", ATTN_SCALES)
        if self.emb_size % self.n_heads:
            raise ValueError(
                f"EEGConformerConfig.emb_size ({self.emb_size}) must be divisible by n_heads ({self.n_heads})"
            )
        self.require_n_times(self.kernel_length - 1 + self.pool_length, "kernel_length - 1 + pool_length")

    @property
    def n_tokens(self) -> int:
        """Tokens after the conv stem: ``(T - kernel_length + 1 - pool_length) // pool_stride + 1``."""
        return (self.n_times - self.kernel_length + 1 - self.pool_length) // self.pool_stride + 1


@register("eeg/eegconformer")
class EEGConformer(EEGModel):
    """EEG Conformer: a ShallowConvNet-like stem whose pooled time steps become transformer tokens.

    EEG Conformer (Song et al., IEEE TNSRE 2023; the baseline the DBConformer
    paper compares its parameter count with, models.md 1.4)::

        Conv2d(1, 40, (1, 25)) -> Conv2d(40, 40, (C, 1)) -> BN -> ELU
        -> AvgPool (1, 75) stride (1, 15) -> Dropout .5 -> Conv2d(40, D, 1)   (B, N, D)
        -> ConformerBlock x depth (no positional embedding)
        -> flatten (B, N*D) -> Linear 256, ELU, Dropout .5 -> Linear 32, ELU, Dropout .3 -> Linear n

    The blocks are the same as DBConformer's (:class:`~models.dbconformer.ConformerBlock`:
    pre-LN, 10 heads on 40 dims, scores / sqrt(40), dropout 0.5); DBConformer
    inherited them from this model. On BNCI2014001 (22 x 1001) the stem gives
    N = 61 tokens, the head's input is 61 * 40 = 2440 wide, and the model has
    789,506 parameters, 80 % of them in the head's first layer.

    Deliberate differences from the reference:

    * The reference also instantiates an unused ``LayerNorm + Linear(D, n)``
      classification head (162 parameters at n = 2, which is why models.md
      quotes "789.5 K (plus 162)"); it is left out.
    * ``forward`` returns the logits only (the reference returns
      ``(features, logits)``). The 2-D convs keep the reference's shapes; the
      BatchNorm, pooling and projection after the spatial conv (height 1) are 1-D.
    * PyTorch default initialisation (the reference's training script decides its own).

    Input:
        x: ``(B, n_chans, n_times)`` float32, or ``(B, 1, n_chans, n_times)`` as in
        the reference code.

    Output:
        ``(B, n_outputs)`` logits.

    Args:
        config: an :class:`EEGConformerConfig`.
    """

    Config = EEGConformerConfig

    def __init__(self, config: EEGConformerConfig) -> None:
        super().__init__(config)
        f, d = config.n_filters, config.emb_size
        self.temporal_conv = nn.Conv2d(1, f, (1, config.kernel_length))
        self.spatial_conv = nn.Conv2d(f, f, (config.n_chans, 1))  # one spatial filter over all electrodes
        self.bn = nn.BatchNorm1d(f)
        self.pool = nn.AvgPool1d(config.pool_length, config.pool_stride)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.projection = nn.Conv1d(f, d, 1)  # the reference's Conv2d(F, D, (1, 1))
        self.blocks = nn.Sequential(
            *(
                ConformerBlock(d, config.n_heads, config.dropout, config.attn_scale)
                for _ in range(config.depth)
            )
        )
        self.head = nn.Sequential(
            nn.Linear(config.n_tokens * d, 256),
            nn.ELU(),
            nn.Dropout(config.dropout),
            nn.Linear(256, 32),
            nn.ELU(),
            nn.Dropout(config.head_dropout),
            nn.Linear(32, config.n_outputs),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Transformer output flattened: ``(B, C, T)`` or ``(B, 1, C, T)`` -> ``(B, N * D)``."""
        x = eeg_input(x, self.config)  # (B, C, T)
        h = self.temporal_conv(x.unsqueeze(1))  # (B, F, C, T'), T' = T - kernel_length + 1
        h = self.spatial_conv(h).squeeze(2)  # (B, F, T')
        h = F.elu(self.bn(h))  # (B, F, T')
        h = self.embed_dropout(self.pool(h))  # (B, F, N)
        tokens = self.projection(h).transpose(1, 2)  # (B, N, D)
        return self.blocks(tokens).flatten(1)  # (B, N*D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify EEG trials: ``(B, C, T)`` or ``(B, 1, C, T)`` -> ``(B, n_outputs)`` logits."""
        return self.head(self.forward_features(x))  # (B, n_outputs)
