"""Building blocks shared by several models.

* :class:`KerasMultiHeadAttention`: multi-head attention with the semantics of
  ``keras.layers.MultiHeadAttention`` (per-head ``key_dim`` independent of the
  model width), for ports of Keras/TensorFlow reference code.
* :func:`init_keras_`: Keras default initialisation (Glorot-uniform kernels,
  zero biases, U(-0.05, 0.05) embeddings) for such ports.
* :func:`check_field_statistics` / :func:`register_field_normalisation`: the
  per-channel input / output statistics of a field operator (FNO, IFactFormer),
  validated in its config and held as buffers in the model.
* :func:`count_parameters`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.base import as_float_list, check_given_together


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (shared parameters counted once).

    Args:
        module: any module.
        trainable_only: count only parameters with ``requires_grad``.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def keras_glorot_uniform_(weight: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
    """Glorot-uniform fill with explicit fans, as Keras computes them for its kernel shape.

    Keras derives the fans from its own kernel layout, which for multi-axis kernels
    (``EinsumDense``) differs from what ``nn.init.xavier_uniform_`` infers from the
    2-D torch weight, hence the explicit arguments.
    """
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


class KerasMultiHeadAttention(nn.Module):
    """Multi-head attention with ``keras.layers.MultiHeadAttention`` semantics.

    Differences from ``nn.MultiheadAttention`` that matter when porting Keras code:

    * ``key_dim`` is the size of **each** head and is independent of the model
      width: Q/K/V project ``embed_dim -> num_heads * key_dim`` and the output
      projection maps ``num_heads * value_dim`` back to ``output_dim``
      (``embed_dim`` by default). Scores are scaled by ``1 / sqrt(key_dim)``.
    * The call order is ``(query, value, key=None)``; ``key`` defaults to ``value``
      and ``value`` to ``query``.
    * ``dropout`` acts on the attention probabilities (Keras default 0); there is
      no dropout on the output.
    * ``attn_mask`` follows Keras: boolean, ``True`` = may attend. No causal mask
      is ever added implicitly.

    All four projections are plain ``nn.Linear`` layers, so
    ``torch.ao.quantization.quantize_dynamic`` quantizes every one of them, and
    pruning / low-rank code sees ordinary linears.

    Args:
        embed_dim: width of the query input (and of the output unless ``output_dim``).
        num_heads: number of heads.
        key_dim: size of each query/key head.
        value_dim: size of each value head (default ``key_dim``).
        dropout: dropout on the attention probabilities.
        bias: use biases in all projections (Keras ``use_bias``).
        output_dim: width of the output (default ``embed_dim``).
        kv_dim: width of the key/value input (default ``embed_dim``).

    Shape:
        query ``(B, Tq, embed_dim)``, value/key ``(B, Tk, kv_dim)`` ->
        ``(B, Tq, output_dim)``.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        output_dim: int | None = None,
        kv_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = key_dim if value_dim is None else value_dim
        self.output_dim = embed_dim if output_dim is None else output_dim
        self.kv_dim = embed_dim if kv_dim is None else kv_dim
        self.dropout = dropout
        self.scale = 1.0 / math.sqrt(key_dim)
        self.q_proj = nn.Linear(embed_dim, num_heads * key_dim, bias=bias)
        self.k_proj = nn.Linear(self.kv_dim, num_heads * key_dim, bias=bias)
        self.v_proj = nn.Linear(self.kv_dim, num_heads * self.value_dim, bias=bias)
        self.out_proj = nn.Linear(num_heads * self.value_dim, self.output_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras initialisation: Glorot-uniform with the fans of Keras' 3-D kernels, zero biases.

        Keras stores the Q kernel as ``(embed_dim, heads, key_dim)`` and the output
        kernel as ``(heads, value_dim, output_dim)``; its fan rule multiplies the
        last two axes by the product of the leading ones.
        """
        h = self.num_heads
        keras_glorot_uniform_(self.q_proj.weight, self.embed_dim * h, self.embed_dim * self.key_dim)
        keras_glorot_uniform_(self.k_proj.weight, self.kv_dim * h, self.kv_dim * self.key_dim)
        keras_glorot_uniform_(self.v_proj.weight, self.kv_dim * h, self.kv_dim * self.value_dim)
        keras_glorot_uniform_(self.out_proj.weight, h * self.value_dim, h * self.output_dim)
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)

    def _split_heads(self, x: torch.Tensor, head_dim: int) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, head_dim).transpose(1, 2)  # (B, H, T, head_dim)

    def forward(
        self,
        query: torch.Tensor,
        value: torch.Tensor | None = None,
        key: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: ``(B, Tq, embed_dim)``.
            value: ``(B, Tk, kv_dim)``; defaults to ``query`` (self-attention).
            key: ``(B, Tk, kv_dim)``; defaults to ``value``.
            attn_mask: optional boolean ``(Tq, Tk)`` or ``(B, 1|H, Tq, Tk)``, True = attend.

        Returns:
            ``(B, Tq, output_dim)``.
        """
        value = query if value is None else value
        key = value if key is None else key
        q = self._split_heads(self.q_proj(query), self.key_dim)  # (B, H, Tq, key_dim)
        k = self._split_heads(self.k_proj(key), self.key_dim)  # (B, H, Tk, key_dim)
        v = self._split_heads(self.v_proj(value), self.value_dim)  # (B, H, Tk, value_dim)
        o = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.scale,
        )  # (B, H, Tq, value_dim)
        b, _, tq, _ = o.shape
        o = o.transpose(1, 2).reshape(b, tq, self.num_heads * self.value_dim)  # (B, Tq, H*value_dim)
        return self.out_proj(o)  # (B, Tq, output_dim)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, key_dim={self.key_dim}, "
            f"value_dim={self.value_dim}, output_dim={self.output_dim}, dropout={self.dropout}"
        )


def init_keras_(module: nn.Module) -> nn.Module:
    """Re-initialise ``module`` in place with Keras' default initialisers.

    ``nn.Linear``: Glorot-uniform kernel, zero bias (Keras ``Dense``);
    ``nn.Embedding``: U(-0.05, 0.05); :class:`KerasMultiHeadAttention`: its own
    :meth:`~KerasMultiHeadAttention.reset_parameters`. LayerNorm (ones/zeros) is
    already the same in both frameworks.

    Returns:
        ``module``, for chaining.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.uniform_(m.weight, -0.05, 0.05)
    # Second pass: the attention projections need Keras' 3-D-kernel fans, not the Dense ones above.
    for m in module.modules():
        if isinstance(m, KerasMultiHeadAttention):
            m.reset_parameters()
    return module


def check_field_statistics(config) -> None:
    """Validate the ``norm_mean``, ``norm_std``, ``out_mean``, ``out_std`` fields of a field operator's config.

    For the config's ``__post_init__``: each mean / std pair is given together or
    not at all; a mean is ``n_channels`` finite numbers, a std ``n_channels``
    numbers > 0. Given lists are stored back as lists of floats.

    Raises:
        ValueError: naming the offending field (:mod:`models.base` messages).
    """
    c = config.n_channels
    for mean, std in (("norm_mean", "norm_std"), ("out_mean", "out_std")):
        check_given_together(config, mean, std)
        setattr(config, mean, as_float_list(config, mean, length=c, optional=True))
        setattr(config, std, as_float_list(config, std, length=c, positive=True, optional=True))


def register_field_normalisation(module: nn.Module, config) -> None:
    """Per-channel input / output statistics of a field operator as buffers ``in_mean``, ``in_std``,
    ``out_mean``, ``out_std`` (each ``(C,)``), from ``config.norm_*`` / ``config.out_*`` (FNO, IFactFormer).

    Missing input statistics mean identity; missing output statistics reuse the input's. The buffers are
    not persistent: the config is their one source, so a state dict carries weights only and
    ``build(key, config_dict())`` restores the physical units.
    """
    c = config.n_channels
    in_mean = config.norm_mean if config.norm_mean is not None else [0.0] * c
    in_std = config.norm_std if config.norm_std is not None else [1.0] * c
    out_mean = config.out_mean if config.out_mean is not None else in_mean
    out_std = config.out_std if config.out_std is not None else in_std
    for name, values in (("in_mean", in_mean), ("in_std", in_std), ("out_mean", out_mean), ("out_std", out_std)):
        module.register_buffer(name, torch.tensor(values, dtype=torch.float32), persistent=False)  # (C,)
