"""FlowTransformer: encoding x transformer x head for flow-based network intrusion detection.

A PyTorch port of the Keras reference implementation (liamdm/FlowTransformer) of
Manocchio et al., "FlowTransformer: A Transformer Framework for Flow-based Network
Intrusion Detection Systems", Expert Systems with Applications 2024, arXiv 2304.14746.
See ``shared/reference/models.md`` section 2 for the facts this file reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import (
    BlockSpec,
    HeadSpec,
    RegisteredModel,
    as_int_list,
    check_bool,
    check_choice,
    check_int,
    check_rate,
)
from models.layers import KerasMultiHeadAttention, count_parameters, init_keras_
from models.registry import register

__all__ = [
    "ClassificationHead",
    "DecoderBlock",
    "EncoderBlock",
    "FlowInputEncoding",
    "FlowTransformer",
    "FlowTransformerConfig",
    "PreLNDecoderBlock",
    "PreLNEncoderBlock",
    "TRANSFORMER_PRESETS",
    "count_parameters",
    "transformer_parameters",
]

ENCODINGS = ("none", "record", "categorical")
CAT_EMBED_MODES = ("dense", "projection", "lookup")
TRANSFORMERS = ("basic", "gpt", "bert")
HEADS = ("last", "cls", "gap", "flatten", "featurewise")
VARIANTS = ("reference", "clean")

# The reference's named transformers (BasicTransformer(2, 128, 2), GPTSmallTransformer,
# BERTSmallTransformer). "gpt" stacks decoder blocks, "basic" and "bert" encoder blocks.
TRANSFORMER_PRESETS: dict[str, dict[str, Any]] = {
    "basic": {"n_layers": 2, "n_heads": 2, "internal_size": 128, "dropout": 0.1},
    "gpt": {"n_layers": 12, "n_heads": 12, "internal_size": 768, "dropout": 0.02},
    "bert": {"n_layers": 12, "n_heads": 12, "internal_size": 768, "dropout": 0.02},
}

LN_EPS = 1e-6  # Keras LayerNormalization(epsilon=1e-6) in both reference blocks


@dataclass
class FlowTransformerConfig:
    """Knobs of :class:`FlowTransformer`; defaults = record-level embedding + basic transformer + last token.

    Attributes:
        n_numeric: numeric features per flow (28 for the NetFlow-v2 spec).
        categorical_levels: one-hot width of each categorical feature, code 0
            ("other/unseen") included: top-32 levels + other = 33.
        window: flows per sample (W); the label belongs to the last one.
        n_outputs: 1 for the binary task (one logit), K for K-class.
        encoding: ``"none"`` (NoInputEncoder), ``"record"`` (RecordLevelEmbed) or
            ``"categorical"`` (CategoricalFeatureEmbed).
        embed_dim: width of the record-level embedding.
        embed_bias: bias in the record-level Dense; ``False`` = ``RecordLevelEmbed(project=True)``.
        cat_embed_dim: width of each categorical feature's embedding.
        cat_embed_mode: ``"dense"`` (one-hot -> Dense with bias), ``"projection"``
            (without bias) or ``"lookup"`` (integer code -> Embedding).
        transformer: ``"basic"``, ``"gpt"`` or ``"bert"``; see :data:`TRANSFORMER_PRESETS`.
        n_layers: blocks; ``None`` = preset (2 / 12 / 12). 0 = no blocks (ablation).
        n_heads: attention heads; ``None`` = preset (2 / 12 / 12).
        internal_size: FFN width, and the per-head key size of encoder blocks;
            ``None`` = preset (128 / 768 / 768).
        dropout: block dropout; ``None`` = preset (0.1 / 0.02 / 0.02).
        head: ``"last"``, ``"cls"``, ``"gap"``, ``"flatten"`` or ``"featurewise"``.
        featurewise_bias: bias in the featurewise Dense(1);
            ``False`` = ``FeaturewiseEmbedding(project=True)``.
        mlp_sizes: hidden widths of the MLP after the head (Dense + ReLU + Dropout each).
        mlp_dropout: dropout after each MLP hidden layer.
        variant: ``"reference"`` reproduces the Keras code and its quirks;
            ``"clean"`` is the textbook pre-LN transformer (see :class:`FlowTransformer`).
    """

    n_numeric: int = 28
    categorical_levels: list[int] = field(default_factory=lambda: [33] * 9)
    window: int = 8
    n_outputs: int = 1
    encoding: str = "record"
    embed_dim: int = 64
    embed_bias: bool = True
    cat_embed_dim: int = 16
    cat_embed_mode: str = "dense"
    transformer: str = "basic"
    n_layers: int | None = None
    n_heads: int | None = None
    internal_size: int | None = None
    dropout: float | None = None
    head: str = "last"
    featurewise_bias: bool = True
    mlp_sizes: list[int] = field(default_factory=lambda: [128])
    mlp_dropout: float = 0.1
    variant: str = "reference"

    def __post_init__(self) -> None:
        check_int(self, "n_numeric", 0)
        # Lists, not tuples, so that asdict() -> JSON -> Config round-trips to an equal config.
        self.categorical_levels = as_int_list(self, "categorical_levels", 1)
        check_int(self, "window", 1)
        check_int(self, "n_outputs", 1)
        check_choice(self, "encoding", ENCODINGS)
        check_int(self, "embed_dim", 1)
        check_int(self, "cat_embed_dim", 1)
        check_choice(self, "cat_embed_mode", CAT_EMBED_MODES)
        check_choice(self, "transformer", TRANSFORMERS)
        # None = the preset's value (transformer_settings).
        for name, minimum in (("n_layers", 0), ("n_heads", 1), ("internal_size", 1)):
            check_int(self, name, minimum, optional=True)
        check_rate(self, "dropout", optional=True)
        check_choice(self, "head", HEADS)
        check_bool(self, "embed_bias")
        check_bool(self, "featurewise_bias")
        self.mlp_sizes = as_int_list(self, "mlp_sizes", 1)
        check_rate(self, "mlp_dropout")
        check_choice(self, "variant", VARIANTS)
        if self.token_width < 1:
            raise ValueError(
                f"FlowTransformerConfig: encoding {self.encoding!r} with n_numeric={self.n_numeric} and "
                f"categorical_levels={self.categorical_levels} gives tokens of width 0"
            )

    @property
    def n_categorical(self) -> int:
        """Number of categorical features."""
        return len(self.categorical_levels)

    @property
    def token_width(self) -> int:
        """Per-token width ``d`` produced by the encoding (before a CLS column is added)."""
        if self.encoding == "none":
            return self.n_numeric + sum(self.categorical_levels)
        if self.encoding == "record":
            return self.embed_dim
        return self.n_numeric + self.n_categorical * self.cat_embed_dim

    def transformer_settings(self) -> dict[str, Any]:
        """Effective ``n_layers``, ``n_heads``, ``internal_size``, ``dropout``: preset + overrides."""
        settings = dict(TRANSFORMER_PRESETS[self.transformer])
        for name in settings:
            if getattr(self, name) is not None:
                settings[name] = getattr(self, name)
        return settings


class FlowInputEncoding(nn.Module):
    """The three input encodings of the reference: tokens ``(B, W, n_numeric)`` + codes -> ``(B, W, d)``.

    * ``"none"`` (NoInputEncoder): numerics and the one-hot of every categorical,
      concatenated; ``d = n_numeric + sum(categorical_levels)``.
    * ``"record"`` (RecordLevelEmbed): the same concatenation, then one
      ``Linear(., embed_dim, bias=embed_bias)``; ``d = embed_dim``.
    * ``"categorical"`` (CategoricalFeatureEmbed): each categorical gets its own
      ``Linear(levels, cat_embed_dim)`` on its one-hot (``"dense"`` with bias,
      ``"projection"`` without) or ``Embedding(levels, cat_embed_dim)`` on its code
      (``"lookup"``), concatenated after the raw numerics;
      ``d = n_numeric + n_categorical * cat_embed_dim``.

    Deliberate difference from the reference: the Keras pipeline one-hot encodes
    with ``pandas.get_dummies``, which creates columns only for the levels present
    in the data (<= 33 per feature), and its lookup table has ``n_observed + 1``
    rows. Here each feature always has ``levels`` columns / rows, so the model's
    shapes never depend on the data. With all 33 codes present in the training
    data (the usual case for the top-32 encoding) the one-hot widths are identical.
    """

    def __init__(self, config: FlowTransformerConfig) -> None:
        super().__init__()
        self.mode = config.encoding
        self.levels = list(config.categorical_levels)
        self.n_numeric = config.n_numeric
        self.out_dim = config.token_width
        self.embed: nn.Linear | None = None
        self.cat_embeds: nn.ModuleList | None = None
        if self.mode == "record":
            self.embed = nn.Linear(
                self.n_numeric + sum(self.levels), config.embed_dim, bias=config.embed_bias
            )
        elif self.mode == "categorical":
            if config.cat_embed_mode == "lookup":
                self.cat_embeds = nn.ModuleList(nn.Embedding(n, config.cat_embed_dim) for n in self.levels)
            else:
                bias = config.cat_embed_mode == "dense"
                self.cat_embeds = nn.ModuleList(
                    nn.Linear(n, config.cat_embed_dim, bias=bias) for n in self.levels
                )
        self.lookup = config.encoding == "categorical" and config.cat_embed_mode == "lookup"
        # Where each categorical's one-hot block starts among the record embedding's input columns, and the level
        # counts, for the row-lookup path of forward(); not saved (derived from the config).
        starts = [self.n_numeric + sum(self.levels[:i]) for i in range(len(self.levels))]
        self.register_buffer("starts", torch.tensor(starts, dtype=torch.long), persistent=False)
        self.register_buffer("n_levels", torch.tensor(self.levels, dtype=torch.long), persistent=False)

    @staticmethod
    def _float_weight(layer: nn.Module) -> torch.Tensor | None:
        """The weight of a plain float ``nn.Linear``; None for a quantized layer (torch.ao or torchao)."""
        if type(layer) is not nn.Linear:
            return None
        weight = layer.weight
        return weight if type(weight) in (nn.Parameter, torch.Tensor) and weight.is_floating_point() else None

    def _check_codes(self, x_cat: torch.Tensor) -> None:
        # one_hot refuses a code outside [0, levels); a row lookup would silently read another feature's row.
        if ((x_cat < 0) | (x_cat >= self.n_levels)).any():
            raise ValueError(f"categorical codes outside [0, levels) for levels {self.levels}")

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """Encode one window.

        Args:
            x_num: ``(B, W, n_numeric)`` float.
            x_cat: ``(B, W, n_categorical)`` integer codes in ``[0, levels)``.

        Returns:
            ``(B, W, d)``.
        """
        x_cat = x_cat.long()  # one_hot and Embedding want int64; a no-op for int64 inputs
        # A Linear on a one-hot is a row lookup: one_hot(c) @ W.T == W[:, c]. Float layers take the lookup, the
        # same function without building the (B, W, sum(levels)) one-hots: at batch 1 one_hot and its checks were
        # over half of a 1-block model's forward. Quantized layers keep the one-hot path.
        weight = self._float_weight(self.embed) if self.mode == "record" else None
        if weight is not None:
            self._check_codes(x_cat)
            rows = x_cat + self.starts  # (B, W, n_categorical) columns of W
            x = F.linear(x_num, weight[:, : self.n_numeric], self.embed.bias)  # (B, W, embed_dim)
            return x + F.embedding(rows, weight.t()).sum(dim=-2)  # (B, W, n_cat, embed_dim) -> (B, W, embed_dim)
        dense = self.mode == "categorical" and not self.lookup
        if dense and all(self._float_weight(layer) is not None for layer in self.cat_embeds):
            self._check_codes(x_cat)
        parts = [x_num]  # numeric first, then categorical (models.md 2.12)
        for i, n_levels in enumerate(self.levels):
            codes = x_cat[..., i]  # (B, W)
            if self.lookup:
                parts.append(self.cat_embeds[i](codes))  # (B, W, cat_embed_dim)
                continue
            layer = self.cat_embeds[i] if dense else None
            weight = self._float_weight(layer) if dense else None
            if weight is not None:  # the lookup again: Linear(one_hot(c)) == W.T[c] + b
                rows = F.embedding(codes, weight.t())  # (B, W, cat_embed_dim)
                parts.append(rows if layer.bias is None else rows + layer.bias)
                continue
            one_hot = F.one_hot(codes, n_levels).to(x_num.dtype)  # (B, W, levels_i)
            parts.append(one_hot if layer is None else layer(one_hot))
        x = torch.cat(parts, dim=-1)  # (B, W, n_numeric + sum(widths))
        if self.embed is not None:
            x = self.embed(x)  # (B, W, embed_dim)
        return x


class EncoderBlock(nn.Module):
    """Reference encoder block (``TransformerEncoderBlock``): post-LN, with the reference's quirks.

    ``a = Dropout(MHA(x, x))``; ``h = LN1(x + a)``;
    ``f = Dropout(ReLU(Linear(ReLU(Linear(h)))))``; output ``LN2(a + f)``.

    Quirks kept on purpose (they are what the paper evaluated): the second
    residual adds the attention output ``a``, not ``h`` or ``x``; the second FFN
    layer has a ReLU; the MHA's per-head ``key_dim`` is ``inner`` (128 or 768),
    not ``d / n_heads``.
    """

    def __init__(self, d: int, inner: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        # The reference builds keras MultiHeadAttention without `dropout`, so the attention
        # probabilities are not dropped (Keras default 0); the block's rate acts on the MHA output.
        self.attn = KerasMultiHeadAttention(d, n_heads, key_dim=inner)
        self.attn_dropout = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d, eps=LN_EPS)
        self.ffn = nn.Sequential(nn.Linear(d, inner), nn.ReLU(), nn.Linear(inner, d), nn.ReLU())
        self.ffn_dropout = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, d) -> (B, T, d)``."""
        a = self.attn_dropout(self.attn(x, x))  # (B, T, d)
        h = self.norm1(x + a)  # (B, T, d)
        f = self.ffn_dropout(self.ffn(h))  # (B, T, d)
        return self.norm2(a + f)  # (B, T, d); residual on `a`, as in the reference


class DecoderBlock(nn.Module):
    """Reference "decoder" block (``TransformerDecoderBlock``), used by the GPT transformer.

    One MHA with per-head ``key_dim = d`` (the token width) is applied twice with
    shared weights, and ``LN2`` / ``dropout2`` are reused::

        out1 = LN1(x + Dropout1(MHA(x, x)))
        out2 = LN2(out1 + Dropout2(MHA(query=out1, key=value=x)))
        out  = LN2(out2 + Dropout2(FFN(out2)))      FFN = Linear(d, inner) + ReLU -> Linear(inner, d)

    There is no encoder, so the second ("cross") attention attends to the block
    input; there is no causal mask. Reusing ``Dropout2`` only means the same rate
    (dropout has no state); reusing ``LN2`` shares its affine parameters.
    The reference's ``head_size = internal_size / n_heads`` is reported but never
    used: ``key_dim`` is ``d``, which is what this block does.
    """

    def __init__(self, d: int, inner: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = KerasMultiHeadAttention(d, n_heads, key_dim=d)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d, eps=LN_EPS)
        self.ffn = nn.Sequential(nn.Linear(d, inner), nn.ReLU(), nn.Linear(inner, d))
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, d) -> (B, T, d)``."""
        out1 = self.norm1(x + self.dropout1(self.attn(x, x)))  # (B, T, d)
        out2 = self.norm2(out1 + self.dropout2(self.attn(out1, x)))  # (B, T, d); same MHA, query=out1
        return self.norm2(out2 + self.dropout2(self.ffn(out2)))  # (B, T, d); same LN2


class PreLNEncoderBlock(nn.Module):
    """Clean-variant encoder block: pre-LN, standard residuals, linear second FFN layer.

    ``x = x + Dropout(MHA(LN1(x)))``; ``x = x + Dropout(FFN(LN2(x)))`` with
    ``FFN = Linear(d, inner) + ReLU -> Linear(inner, d)``. The MHA keeps the
    reference's Keras-style ``key_dim = inner`` per head so that the clean and
    reference variants have the same attention capacity and parameter count.
    """

    def __init__(self, d: int, inner: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=LN_EPS)
        self.attn = KerasMultiHeadAttention(d, n_heads, key_dim=inner)
        self.attn_dropout = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d, eps=LN_EPS)
        self.ffn = nn.Sequential(nn.Linear(d, inner), nn.ReLU(), nn.Linear(inner, d))
        self.ffn_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, d) -> (B, T, d)``."""
        u = self.norm1(x)  # (B, T, d)
        x = x + self.attn_dropout(self.attn(u, u))  # (B, T, d)
        return x + self.ffn_dropout(self.ffn(self.norm2(x)))  # (B, T, d)


class PreLNDecoderBlock(nn.Module):
    """Clean-variant decoder block: the reference's dataflow with the weight sharing removed.

    Keeps the reference's two attentions (the second queries the updated state
    against the block input) but gives each its own MHA and each sub-layer its own
    LayerNorm, pre-LN, with standard residuals::

        u = LN1(x)
        x = x + Dropout(MHA1(u, u))
        x = x + Dropout(MHA2(query=LN2(x), key=value=u))
        x = x + Dropout(FFN(LN3(x)))

    Per-head ``key_dim = d`` as in the reference. Not causal: FlowTransformer
    classifies a whole window (and the CLS token sits at the end), so every token
    may see every other one.
    """

    def __init__(self, d: int, inner: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=LN_EPS)
        self.self_attn = KerasMultiHeadAttention(d, n_heads, key_dim=d)
        self.norm2 = nn.LayerNorm(d, eps=LN_EPS)
        self.cross_attn = KerasMultiHeadAttention(d, n_heads, key_dim=d)
        self.norm3 = nn.LayerNorm(d, eps=LN_EPS)
        self.ffn = nn.Sequential(nn.Linear(d, inner), nn.ReLU(), nn.Linear(inner, d))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, d) -> (B, T, d)``."""
        u = self.norm1(x)  # (B, T, d)
        x = x + self.dropout(self.self_attn(u, u))  # (B, T, d)
        x = x + self.dropout(self.cross_attn(self.norm2(x), u))  # (B, T, d)
        return x + self.dropout(self.ffn(self.norm3(x)))  # (B, T, d)


class ClassificationHead(nn.Module):
    """The reference's classification heads: transformer output ``(B, T, d) -> (B, out_dim)``.

    * ``"last"``: token ``T-1`` -> ``(B, d)``.
    * ``"cls"``: :meth:`before_transformer` appends an all-zero token at the
      **end** and an indicator column that is 1 only at that token
      (``(B, W, d) -> (B, W+1, d+1)``); afterwards the last token is taken.
    * ``"gap"``: mean over tokens -> ``(B, d)``.
    * ``"flatten"``: ``(B, T*d)``.
    * ``"featurewise"``: ``Linear(d, 1)`` per token, flattened -> ``(B, T)``.

    Args:
        kind: one of the names above.
        d: width of the transformer's tokens (already ``d+1`` for ``"cls"``).
        n_tokens: tokens the transformer sees (already ``W+1`` for ``"cls"``).
        featurewise_bias: bias of the featurewise ``Linear(d, 1)``.
    """

    def __init__(self, kind: str, d: int, n_tokens: int, featurewise_bias: bool = True) -> None:
        super().__init__()
        self.kind = kind
        self.proj = nn.Linear(d, 1, bias=featurewise_bias) if kind == "featurewise" else None
        self.out_dim = {"flatten": n_tokens * d, "featurewise": n_tokens}.get(kind, d)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, out_dim={self.out_dim}"

    def before_transformer(self, x: torch.Tensor) -> torch.Tensor:
        """Append the CLS token for ``"cls"``; identity for the other heads.

        Args:
            x: ``(B, W, d)`` encoded window.

        Returns:
            ``(B, W+1, d+1)`` for ``"cls"``, else ``x``.
        """
        if self.kind != "cls":
            return x
        b, w, _ = x.shape
        x = torch.cat([x, x.new_zeros(b, 1, x.shape[-1])], dim=1)  # (B, W+1, d); zero token at the end
        flag = torch.cat([x.new_zeros(b, w, 1), x.new_ones(b, 1, 1)], dim=1)  # (B, W+1, 1)
        return torch.cat([x, flag], dim=-1)  # (B, W+1, d+1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, T, d) -> (B, out_dim)``."""
        if self.kind in ("last", "cls"):
            return h[:, -1]  # (B, d)
        if self.kind == "gap":
            return h.mean(dim=1)  # (B, d)
        if self.kind == "flatten":
            return h.flatten(1)  # (B, T*d)
        return self.proj(h).squeeze(-1)  # (B, T)


@register("netflow/flowtransformer")
class FlowTransformer(RegisteredModel):
    """FlowTransformer: a transformer over a window of network flows, for intrusion detection.

    FlowTransformer (Manocchio et al., "FlowTransformer: A Transformer Framework
    for Flow-based Network Intrusion Detection Systems", Expert Systems with
    Applications 2024, arXiv 2304.14746; Keras code liamdm/FlowTransformer) is a
    framework of four swappable parts: an input encoding of each flow, a stack of
    transformer blocks over the ``W`` flows of a window, a classification head that
    turns the ``W`` tokens into one vector, and an MLP. The label of a window is
    the label of its last flow. This class builds any combination::

        encoding   none | record | categorical      (FlowInputEncoding)
        transformer basic | gpt | bert               (EncoderBlock / DecoderBlock)
        head       last | cls | gap | flatten | featurewise   (ClassificationHead)
        MLP        [Linear + ReLU + Dropout] * len(mlp_sizes) -> Linear(n_outputs)

    ``variant="reference"`` reproduces the Keras code, quirks included (the one
    deliberate difference, data-independent one-hot widths, is described in
    :class:`FlowInputEncoding`):
    post-LN blocks whose second residual adds the attention output, a ReLU on the
    FFN's second layer, a decoder that applies one MHA twice and reuses one
    LayerNorm, Keras ``key_dim`` = ``internal_size`` per head (encoder) or ``d``
    (decoder), Keras initialisation, **no positional encoding and no causal
    mask**. Without positional information the transformer treats the window as a
    set: only the head (last token, CLS at the end, flatten, featurewise) sees
    order. ``variant="clean"`` is the textbook alternative tracked as its own
    configuration: pre-LN blocks with standard residuals, a linear second FFN
    layer, separate attentions in the decoder (:class:`PreLNDecoderBlock`), a
    learned positional embedding (N(0, 0.02), one per token including the CLS
    token) added after the encoding, and a final LayerNorm. Both variants keep
    the Keras-style ``key_dim``, so parameter counts stay comparable.

    A "basic decoder" (the reference's ``BasicTransformer(is_decoder=True)``) is
    ``transformer="gpt"`` with ``n_layers=2, n_heads=2, internal_size=128, dropout=0.1``.

    Inputs (numeric first, then categorical, as in the reference's input order):
        x_num: ``(B, W, n_numeric)`` float32, the preprocessed numeric features
            (``log(v - min + 1) / log(range + 1)``).
        x_cat: ``(B, W, n_categorical)`` int64, codes ``0..levels-1`` per
            categorical feature (0 = other/unseen, 1..32 = top-32 levels).

    Output:
        ``(B, n_outputs)`` logits: one logit for the binary task (apply a sigmoid
        outside; the reference ends in ``Dense(1, sigmoid)``), ``K`` for K classes.

    Args:
        config: a :class:`FlowTransformerConfig`.
    """

    Config = FlowTransformerConfig

    def __init__(self, config: FlowTransformerConfig) -> None:
        super().__init__(config)
        settings = config.transformer_settings()
        self.encoding = FlowInputEncoding(config)
        cls_token = config.head == "cls"
        d_model = config.token_width + int(cls_token)  # the CLS indicator column widens every token
        n_tokens = config.window + int(cls_token)
        if config.variant == "clean":
            self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens, d_model))
        else:
            self.register_parameter("pos_embed", None)
        if config.variant == "reference":
            block_cls = DecoderBlock if config.transformer == "gpt" else EncoderBlock
        else:
            block_cls = PreLNDecoderBlock if config.transformer == "gpt" else PreLNEncoderBlock
        blocks: list[nn.Module] = [
            block_cls(d_model, settings["internal_size"], settings["n_heads"], settings["dropout"])
            for _ in range(settings["n_layers"])
        ]
        if config.variant == "clean":
            blocks.append(nn.LayerNorm(d_model, eps=LN_EPS))  # pre-LN stacks need a final norm
        self.transformer = nn.Sequential(*blocks)
        self.head = ClassificationHead(config.head, d_model, n_tokens, config.featurewise_bias)
        mlp: list[nn.Module] = []
        width = self.head.out_dim
        for size in config.mlp_sizes:
            mlp += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(config.mlp_dropout)]
            width = size
        mlp.append(nn.Linear(width, config.n_outputs))
        self.mlp = nn.Sequential(*mlp)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras default initialisation everywhere (both variants, so they differ only in architecture)."""
        init_keras_(self)
        if self.pos_embed is not None:
            nn.init.normal_(self.pos_embed, std=0.02)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """Classify windows of flows.

        Args:
            x_num: ``(B, W, n_numeric)`` float.
            x_cat: ``(B, W, n_categorical)`` integer codes.

        Returns:
            ``(B, n_outputs)`` logits.
        """
        cfg = self.config
        expected_num, expected_cat = (cfg.window, cfg.n_numeric), (cfg.window, cfg.n_categorical)
        if x_num.shape[1:] != expected_num or x_cat.shape[1:] != expected_cat:
            raise ValueError(
                f"expected x_num (B, {cfg.window}, {cfg.n_numeric}) and x_cat (B, {cfg.window}, "
                f"{cfg.n_categorical}), got {tuple(x_num.shape)} and {tuple(x_cat.shape)}"
            )
        x = self.encoding(x_num, x_cat)  # (B, W, d)
        x = self.head.before_transformer(x)  # (B, T, d'); T = W+1, d' = d+1 for the CLS head
        if self.pos_embed is not None:
            x = x + self.pos_embed  # (B, T, d')
        h = self.transformer(x)  # (B, T, d')
        z = self.head(h)  # (B, head.out_dim)
        return self.mlp(z)  # (B, n_outputs)

    def prunable_blocks(self) -> list[BlockSpec]:
        """The encoder blocks (``basic`` / ``bert``; the GPT blocks share one attention between two calls and
        are not cut): FFN, attention and single heads of each."""
        specs = []
        for i, block in enumerate(self.transformer):
            if not isinstance(block, EncoderBlock | PreLNEncoderBlock):
                continue
            name, attn = f"transformer.{i}", block.attn
            heads = None
            if isinstance(attn, KerasMultiHeadAttention):  # a removed attention is a ZeroBranch
                heads = HeadSpec(module=f"{name}.attn", q=f"{name}.attn.q_proj", k=f"{name}.attn.k_proj",
                                 v=f"{name}.attn.v_proj", out=f"{name}.attn.out_proj", qk_dim=attn.key_dim,
                                 v_dim=attn.value_dim, attrs={"num_heads": 1})
            specs.append(BlockSpec(
                name=name, attn_paths=(f"{name}.attn",), ffn_paths=(f"{name}.ffn",), heads=heads,
                ffn_in=f"{name}.ffn.0", ffn_out=f"{name}.ffn.2",
                # Pre-LN: x + 0 + 0 = x. The reference block's output is LN2(attn + ffn): not the identity.
                identity_when_empty=isinstance(block, PreLNEncoderBlock)))
        return specs

    def example_inputs(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Valid dummy inputs on the model's device.

        Args:
            batch_size: B.
            seed: seed of the CPU generator, so repeated calls give the same tensors.

        Returns:
            ``(x_num (B, W, n_numeric) float32, x_cat (B, W, n_categorical) int64)``.
        """
        cfg = self.config
        gen = torch.Generator().manual_seed(seed)
        x_num = torch.rand(batch_size, cfg.window, cfg.n_numeric, generator=gen)  # (B, W, n_numeric)
        x_cat = torch.zeros(batch_size, cfg.window, cfg.n_categorical, dtype=torch.long)  # (B, W, n_cat)
        for i, n_levels in enumerate(cfg.categorical_levels):
            x_cat[..., i] = torch.randint(0, n_levels, (batch_size, cfg.window), generator=gen)
        device = next(self.parameters()).device
        return x_num.to(device), x_cat.to(device)


def transformer_parameters(model: FlowTransformer) -> int:
    """Parameters of the transformer blocks alone (encoding, positional embedding, head and MLP excluded).

    For the clean variant this includes the final LayerNorm.
    """
    return count_parameters(model.transformer)
