"""DBConformer: dual-branch convolutional Transformer for EEG decoding.

A re-implementation from the description in ``shared/reference/models.md`` section 1
(Wang et al., "DBConformer: Dual-branch convolutional Transformer for EEG decoding",
IEEE JBHI 30(5):4134-4147, 2026; arXiv 2506.21140). The reference code is under a
non-commercial licence, so nothing here is copied from it.

What the four EEG models share (constructor vocabulary, input convention, the
conformer block) is in :mod:`models.eeg_common`; it is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import BlockSpec, check_bool, check_choice, check_int, check_rate
from models.eeg_common import (
    ATTN_SCALES,
    ConformerAttention,
    ConformerBlock,
    EEGConfig,
    EEGModel,
    eeg_example_inputs,
    eeg_input,
)
from models.layers import count_parameters
from models.registry import register

__all__ = [
    "ATTN_SCALES",
    "ChannelAttentionPool",
    "ConformerAttention",
    "ConformerBlock",
    "DBConformer",
    "DBConformerConfig",
    "EEGConfig",
    "EEGModel",
    "SpatialEmbedding",
    "TemporalEmbedding",
    "count_parameters",
    "eeg_example_inputs",
    "eeg_input",
]

# ---------------------------------------------------------------------------- DBConformer


@dataclass
class DBConformerConfig(EEGConfig):
    """Knobs of :class:`DBConformer`; defaults = BNCI2014001 at depth 2+2 (models.md 1.3).

    Attributes:
        n_chans, n_times, sfreq, n_outputs: see :class:`EEGConfig`. ``sfreq`` is
            recorded only: the reference's kernel and patch lengths are in samples.
        emb_size: token width ``D`` of both branches.
        n_heads: attention heads (10 in the reference, head dim 4).
        tem_depth: blocks of the temporal branch (T-Conformer).
        chn_depth: blocks of the spatial branch (S-Conformer).
        kernel_size: depthwise temporal kernel of the temporal stem (63).
        patch_size: samples per temporal token (125; the reference uses 128 for
            its 512 Hz datasets).
        spa_dim: filters of the per-channel conv of the spatial embedding (16).
        spa_kernel: kernel of that conv (25).
        spa_stride: stride of that conv (5).
        dropout: the 0.5 dropouts (temporal embedding, transformer blocks, first head layer).
        head_dropout: dropout after the second head layer (0.3).
        pos_embed: learned positional embeddings in both branches (on in the reference).
        attn_scale: ``"emb"`` (reference quirk, 1/sqrt(emb_size)) or ``"head"``
            (1/sqrt(head_dim)).
    """

    emb_size: int = 40
    n_heads: int = 10
    tem_depth: int = 2
    chn_depth: int = 2
    kernel_size: int = 63
    patch_size: int = 125
    spa_dim: int = 16
    spa_kernel: int = 25
    spa_stride: int = 5
    dropout: float = 0.5
    head_dropout: float = 0.3
    pos_embed: bool = True
    attn_scale: str = "emb"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in (
            "emb_size",
            "n_heads",
            "kernel_size",
            "patch_size",
            "spa_dim",
            "spa_kernel",
            "spa_stride",
        ):
            check_int(self, name, 1)
        check_int(self, "tem_depth", 0)
        check_int(self, "chn_depth", 0)
        check_rate(self, "dropout")
        check_rate(self, "head_dropout")
        check_choice(self, "attn_scale", ATTN_SCALES)
        check_bool(self, "pos_embed")
        if self.emb_size % self.n_heads:
            raise ValueError(
                f"DBConformerConfig.emb_size ({self.emb_size}) must be divisible by n_heads ({self.n_heads})"
            )
        self.require_n_times(self.patch_size, "at least one temporal patch of patch_size samples")

    @property
    def n_patches(self) -> int:
        """Temporal tokens ``P = n_times // patch_size``."""
        return self.n_times // self.patch_size


class TemporalEmbedding(nn.Module):
    """Temporal patch embedding of the T-Conformer ("Stem", radix 1): ``(B, C, T) -> (B, P, D)``.

    Pointwise ``Conv1d(C, D, 1)`` (a learned spatial filter bank) + BN, depthwise
    ``Conv1d(D, D, k, groups=D)`` + BN, GELU, ``AvgPool1d(patch)``, dropout.

    The reference drops the last time sample before pooling when
    ``T = n * patch + 1``. Pooling with ``kernel = stride = patch`` floors and
    never reads a trailing remainder, so that crop changes nothing and is left
    out here (a test checks the equivalence); BatchNorm runs before the crop in
    the reference too, so its statistics also agree.
    """

    def __init__(self, config: DBConformerConfig) -> None:
        super().__init__()
        d = config.emb_size
        self.pointwise = nn.Conv1d(config.n_chans, d, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(d)
        # padding="same" = the reference's padding 31 for k = 63, and defined for any k.
        self.depthwise = nn.Conv1d(d, d, config.kernel_size, padding="same", groups=d, bias=False)
        self.bn2 = nn.BatchNorm1d(d)
        self.pool = nn.AvgPool1d(config.patch_size)
        self.dropout = nn.Dropout(config.dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reference init of this module only: trunc-normal(std 0.01) weights, BN weight 1 / bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv1d | nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, P, D)``."""
        x = self.bn1(self.pointwise(x))  # (B, D, T); no activation between the two convs
        x = F.gelu(self.bn2(self.depthwise(x)))  # (B, D, T)
        x = self.dropout(self.pool(x))  # (B, D, P)
        return x.transpose(1, 2)  # (B, P, D)


class SpatialEmbedding(nn.Module):
    """Spatial (channel) embedding of the S-Conformer: one token per electrode, ``(B, C, T) -> (B, C, D)``.

    Each channel is a separate 1-D signal through one shared
    ``Conv1d(1, spa_dim, spa_kernel, stride=spa_stride, padding=spa_kernel // 2)``,
    ELU, global average over time and ``Linear(spa_dim, D)``. Nothing here knows
    which electrode a token came from: the spatial positional embedding does.
    """

    def __init__(self, config: DBConformerConfig) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            1, config.spa_dim, config.spa_kernel, stride=config.spa_stride, padding=config.spa_kernel // 2
        )
        self.proj = nn.Linear(config.spa_dim, config.emb_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T) -> (B, C, D)``."""
        b, c, t = x.shape
        h = F.elu(self.conv(x.reshape(b * c, 1, t)))  # (B*C, spa_dim, T')
        h = h.mean(dim=-1)  # (B*C, spa_dim); = AdaptiveAvgPool1d(1) + Flatten
        return self.proj(h).view(b, c, -1)  # (B, C, D)


class ChannelAttentionPool(nn.Module):
    """DBConformer's lightweight channel attention: ``(B, C, D) -> (B, D)`` plus weights ``(B, C)``.

    ``score_c = Linear(D, 1)(tanh(Linear(D, D)(s_c)))``, ``w = softmax_C(score)``,
    output ``sum_c w_c s_c``. The weights say how much each electrode's token
    contributes to the spatial summary (plotted as a topomap downstream).
    """

    def __init__(self, emb_size: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(emb_size, emb_size)
        self.score = nn.Linear(emb_size, 1)

    def forward(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, D) -> ((B, D), (B, C))``."""
        scores = self.score(torch.tanh(self.hidden(s))).squeeze(-1)  # (B, C)
        weights = scores.softmax(dim=-1)  # (B, C), sums to 1 over channels
        pooled = torch.einsum("bc,bcd->bd", weights, s)  # (B, D)
        return pooled, weights


@register("eeg/dbconformer")
class DBConformer(EEGModel):
    """DBConformer: a temporal and a spatial conformer branch on the same EEG trial, fused by an MLP.

    DBConformer (Wang et al., "DBConformer: Dual-branch convolutional Transformer
    for EEG decoding", IEEE JBHI 2026, arXiv 2506.21140; facts in models.md
    section 1) decodes motor imagery and detects seizures with two branches that
    read the same (Euclidean-aligned) trial::

        T-Conformer: TemporalEmbedding (B, P, D) + pos_t -> ConformerBlock x tem_depth -> mean over P
        S-Conformer: SpatialEmbedding  (B, C, D) + pos_s -> ConformerBlock x chn_depth
                     -> ChannelAttentionPool
        head:        concat (B, 2D) -> Linear 64, ELU, Dropout .5 -> Linear 32, ELU, Dropout .3 -> Linear n

    Reference quirks kept: 10 heads on ``D = 40`` with scores scaled by
    ``1/sqrt(40)`` (``attn_scale="emb"``), pre-LN blocks without a final
    LayerNorm, dropout 0.5 everywhere in the blocks, positional embeddings drawn
    from N(0, 1) (``randn``, not the usual std 0.02), trunc-normal(0.01) init in
    the temporal embedding only, PyTorch defaults elsewhere. With the defaults
    (BNCI2014001: 22 x 1001, depth 2+2) the model has 93,747 parameters
    (models.md 1.4; BatchNorm running statistics are buffers, not counted).

    Deliberate differences from the reference:

    * ``forward`` returns the logits only; the reference returns
      ``(fused_features, logits)``. The features are :meth:`forward_features`.
    * The reference's crop of the last time sample is omitted: it is a no-op
      before the floor-pooling (see :class:`TemporalEmbedding`).
    * The options that are off in the reference (gated fusion, single-branch,
      SE block, cross-attention) are not implemented.
    * Euclidean alignment belongs to preprocessing, not to this module.

    Input:
        x: ``(B, n_chans, n_times)`` float32, or ``(B, 1, n_chans, n_times)`` as in
        the reference code.

    Output:
        ``(B, n_outputs)`` logits. After each forward,
        :attr:`last_channel_weights` holds the channel-attention weights ``(B, n_chans)``
        (detached; each row sums to 1).

    Args:
        config: a :class:`DBConformerConfig`.
    """

    Config = DBConformerConfig

    def __init__(self, config: DBConformerConfig) -> None:
        super().__init__(config)
        d = config.emb_size
        self.temporal_embed = TemporalEmbedding(config)
        self.spatial_embed = SpatialEmbedding(config)
        if config.pos_embed:
            self.pos_t = nn.Parameter(torch.randn(1, config.n_patches, d))  # N(0, 1) as in the reference
            self.pos_s = nn.Parameter(torch.randn(1, config.n_chans, d))
        else:
            self.register_parameter("pos_t", None)
            self.register_parameter("pos_s", None)

        def blocks(depth: int) -> nn.Sequential:
            return nn.Sequential(
                *(ConformerBlock(d, config.n_heads, config.dropout, config.attn_scale) for _ in range(depth))
            )

        self.temporal_blocks = blocks(config.tem_depth)
        self.spatial_blocks = blocks(config.chn_depth)
        self.channel_pool = ChannelAttentionPool(d)
        self.head = nn.Sequential(
            nn.Linear(2 * d, 64),
            nn.ELU(),
            nn.Dropout(config.dropout),
            nn.Linear(64, 32),
            nn.ELU(),
            nn.Dropout(config.head_dropout),
            nn.Linear(32, config.n_outputs),
        )
        self.last_channel_weights: torch.Tensor | None = None

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused features and channel-attention weights.

        Args:
            x: ``(B, C, T)`` or ``(B, 1, C, T)``.

        Returns:
            ``(features (B, 2 * emb_size), channel_weights (B, C))``; the features
            are ``[temporal mean, spatial attention pool]``.
        """
        x = eeg_input(x, self.config)  # (B, C, T)
        t = self.temporal_embed(x)  # (B, P, D)
        s = self.spatial_embed(x)  # (B, C, D)
        if self.pos_t is not None:
            t = t + self.pos_t  # (B, P, D)
            s = s + self.pos_s  # (B, C, D)
        z_t = self.temporal_blocks(t).mean(dim=1)  # (B, D)
        z_s, weights = self.channel_pool(self.spatial_blocks(s))  # (B, D), (B, C)
        return torch.cat([z_t, z_s], dim=-1), weights  # (B, 2D), (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify EEG trials.

        Args:
            x: ``(B, n_chans, n_times)`` or ``(B, 1, n_chans, n_times)``.

        Returns:
            ``(B, n_outputs)`` logits.
        """
        z, weights = self.forward_features(x)  # (B, 2D), (B, C)
        self.last_channel_weights = weights.detach()
        return self.head(z)  # (B, n_outputs)

    def prunable_blocks(self) -> list[BlockSpec]:
        """Both branches' pre-LN transformer blocks: FFN, attention and single heads of each."""
        return [spec for prefix, blocks in (("temporal_blocks", self.temporal_blocks),
                                            ("spatial_blocks", self.spatial_blocks))
                for i, block in enumerate(blocks) if isinstance(block, ConformerBlock)
                for spec in [block.prunable(f"{prefix}.{i}")] if spec is not None]

    @torch.no_grad()
    def channel_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Channel-attention weights ``(B, n_chans)`` for ``x``, without touching the mode or the head.

        Call it on a model in ``eval()`` mode to get deterministic weights (dropout
        acts inside the spatial blocks).
        """
        return self.forward_features(x)[1]

    def parameter_breakdown(self) -> dict[str, int]:
        """Parameters per component, in the columns of models.md 1.4."""
        pos = sum(p.numel() for p in (self.pos_t, self.pos_s) if p is not None)
        parts = {
            "stem": count_parameters(self.temporal_embed),
            "spatial_embed": count_parameters(self.spatial_embed),
            "pos_emb": pos,
            "transformers": count_parameters(self.temporal_blocks) + count_parameters(self.spatial_blocks),
            "chan_attn": count_parameters(self.channel_pool),
            "head": count_parameters(self.head),
        }
        parts["total"] = sum(parts.values())
        return parts
