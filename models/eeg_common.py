"""What the EEG models share: the constructor vocabulary, the input convention and the conformer block.

* :class:`EEGConfig`: the shared constructor vocabulary ``n_chans, n_times, sfreq,
  n_outputs`` (braindecode style) with its validation;
* :func:`eeg_input` / :func:`eeg_example_inputs`: the input convention, ``(B, C, T)``
  float32, ``(B, 1, C, T)`` (the reference layout) accepted too;
* :class:`EEGModel`: the base class of the ``eeg/*`` models, a
  :class:`~models.base.RegisteredModel` whose ``example_inputs`` follows that convention;
* :class:`ConformerAttention` / :class:`ConformerBlock`: the EEG-Conformer-style
  pre-LN transformer block with its ``1/sqrt(emb_size)`` score scaling (used by
  DBConformer and EEG Conformer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.base import BlockSpec, HeadSpec, RegisteredModel, ZeroBranch, check_int, check_positive

# "emb": scores / sqrt(emb_size), the EEG Conformer / DBConformer quirk (models.md 1.2, 9.1);
# "head": scores / sqrt(emb_size / n_heads), the textbook scaling, for ablations.
ATTN_SCALES = ("emb", "head")


# ---------------------------------------------------------------------------- shared EEG vocabulary


@dataclass
class EEGConfig:
    """Constructor vocabulary shared by every ``eeg/*`` model (DESIGN.md principle 5).

    The defaults are BNCI2014001 (BCI-IV-2a) as the DBConformer scripts use it:
    22 channels, 4 s at 250 Hz with the inclusive end point (1001 samples), left
    vs right hand (models.md 1.3).

    Attributes:
        n_chans: EEG channels ``C``.
        n_times: samples per trial ``T``.
        sfreq: sampling rate in Hz. Models whose kernel lengths are defined in
            seconds derive them from it; the others only record it.
        n_outputs: number of classes (logits).
    """

    n_chans: int = 22
    n_times: int = 1001
    sfreq: float = 250.0
    n_outputs: int = 2

    def __post_init__(self) -> None:
        check_int(self, "n_chans", 1)
        check_int(self, "n_times", 1)
        check_int(self, "n_outputs", 1)
        check_positive(self, "sfreq")
        # float, so that 250 and 250.0 give the same config_dict after a JSON round trip.
        self.sfreq = float(self.sfreq)

    def require_n_times(self, minimum: int, why: str) -> None:
        """Raise ``ValueError`` naming ``n_times`` if a trial is shorter than the architecture needs."""
        if self.n_times < minimum:
            raise ValueError(
                f"{type(self).__name__}.n_times must be >= {minimum} ({why}), got {self.n_times}"
            )


def eeg_input(x: torch.Tensor, config: EEGConfig) -> torch.Tensor:
    """Bring a batch to ``(B, C, T)`` and check its shape against ``config``.

    Args:
        x: ``(B, n_chans, n_times)`` or ``(B, 1, n_chans, n_times)`` (the layout of
            the DBConformer / EEG Conformer reference code).
        config: the model's config.

    Returns:
        ``(B, n_chans, n_times)``, a view of ``x``.

    Raises:
        ValueError: any other shape.
    """
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]  # (B, C, T)
    if x.dim() != 3 or tuple(x.shape[1:]) != (config.n_chans, config.n_times):
        raise ValueError(
            f"expected x of shape (B, {config.n_chans}, {config.n_times}) or "
            f"(B, 1, {config.n_chans}, {config.n_times}), got {tuple(x.shape)}"
        )
    return x


def eeg_example_inputs(model: nn.Module, config: EEGConfig, batch_size: int, seed: int = 0) -> tuple:
    """Dummy EEG batch ``(x,)`` with ``x`` standard-normal ``(B, n_chans, n_times)`` float32 on the model's device."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, config.n_chans, config.n_times, generator=gen)  # (B, C, T)
    return (x.to(next(model.parameters()).device),)


class EEGModel(RegisteredModel):
    """Base class of the ``eeg/*`` models: :class:`~models.base.RegisteredModel` with the EEG example batch.

    A subclass sets ``Config`` to an :class:`EEGConfig` subclass; the input
    convention of its ``forward`` is :func:`eeg_input`.
    """

    config: EEGConfig

    def example_inputs(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor]:
        """``(x,)`` with ``x`` standard-normal ``(B, n_chans, n_times)`` float32 on the model's device."""
        return eeg_example_inputs(self, self.config, batch_size, seed)


# ---------------------------------------------------------------------------- conformer block


class ConformerAttention(nn.Module):
    """Multi-head self-attention as in EEG Conformer and DBConformer (models.md 1.2).

    Separate ``Linear(D, D)`` query/key/value projections with bias, softmax
    attention with dropout on the probabilities, and an output ``Linear(D, D)``.
    With ``scale="emb"`` the scores are divided by ``sqrt(emb_size)`` instead of
    ``sqrt(head_dim)``: the reference's quirk, reproduced because it is what the
    papers trained (with 10 heads on 40 dims it makes every head's softmax
    ``sqrt(10)`` times flatter than the textbook one).

    Args:
        emb_size: token width ``D``.
        n_heads: heads; ``D`` must be divisible by it.
        dropout: dropout on the attention probabilities.
        scale: ``"emb"`` (reference) or ``"head"`` (textbook ``1/sqrt(D/n_heads)``).

    Shape:
        ``(B, N, D) -> (B, N, D)``.
    """

    def __init__(self, emb_size: int, n_heads: int, dropout: float, scale: str = "emb") -> None:
        super().__init__()
        if emb_size % n_heads:
            raise ValueError(f"emb_size {emb_size} is not divisible by n_heads {n_heads}")
        self.emb_size = emb_size
        self.n_heads = n_heads
        self.head_dim = emb_size // n_heads
        self.dropout = dropout
        self.scale = 1.0 / math.sqrt(emb_size if scale == "emb" else self.head_dim)
        self.query = nn.Linear(emb_size, emb_size)
        self.key = nn.Linear(emb_size, emb_size)
        self.value = nn.Linear(emb_size, emb_size)
        self.proj = nn.Linear(emb_size, emb_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, D) -> (B, N, D)``."""
        b, n, d = x.shape
        q = self.query(x).view(b, n, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, N, Dh)
        k = self.key(x).view(b, n, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, N, Dh)
        v = self.value(x).view(b, n, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, N, Dh)
        o = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, scale=self.scale
        )  # (B, H, N, Dh)
        o = o.transpose(1, 2).reshape(b, n, self.n_heads * self.head_dim)  # (B, N, H*Dh); = D unless heads were cut
        return self.proj(o)  # (B, N, D)

    def extra_repr(self) -> str:
        return f"emb_size={self.emb_size}, n_heads={self.n_heads}, scale={self.scale:.4f}, dropout={self.dropout}"


class ConformerBlock(nn.Module):
    """Pre-LN transformer block of EEG Conformer / DBConformer (models.md 1.2).

    ``x = x + Dropout(MHA(LN(x)))``; ``x = x + Dropout(FFN(LN(x)))`` with
    ``FFN = Linear(D, 4D) -> GELU -> Dropout -> Linear(4D, D)``. One rate for all
    four dropouts (attention probabilities, after the MHA, inside and after the
    FFN), 0.5 in both papers. 19,720 parameters at ``D = 40``.

    Args:
        emb_size: token width ``D``.
        n_heads: attention heads.
        dropout: the shared dropout rate.
        scale: attention score scaling, see :class:`ConformerAttention`.
        expansion: FFN width factor.
    """

    def __init__(
        self, emb_size: int, n_heads: int, dropout: float, scale: str = "emb", expansion: int = 4
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(emb_size)
        self.attn = ConformerAttention(emb_size, n_heads, dropout, scale)
        self.attn_dropout = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(emb_size)
        self.ffn = nn.Sequential(
            nn.Linear(emb_size, expansion * emb_size),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(expansion * emb_size, emb_size),
        )
        self.ffn_dropout = nn.Dropout(dropout)

    def prunable(self, name: str) -> BlockSpec | None:
        """This block as a :class:`~models.base.BlockSpec` under the dotted path ``name`` (None once replaced)."""
        if not isinstance(self.attn, ConformerAttention | ZeroBranch):
            return None
        h = self.attn.head_dim if isinstance(self.attn, ConformerAttention) else 0
        return BlockSpec(
            name=name, attn_paths=(f"{name}.attn",), ffn_paths=(f"{name}.ffn",),
            heads=HeadSpec(module=f"{name}.attn", q=f"{name}.attn.query", k=f"{name}.attn.key",
                           v=f"{name}.attn.value", out=f"{name}.attn.proj", qk_dim=h, v_dim=h,
                           attrs={"n_heads": 1}) if h else None,
            ffn_in=f"{name}.ffn.0", ffn_out=f"{name}.ffn.3", identity_when_empty=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, D) -> (B, N, D)``."""
        x = x + self.attn_dropout(self.attn(self.norm1(x)))  # (B, N, D)
        return x + self.ffn_dropout(self.ffn(self.norm2(x)))  # (B, N, D)
