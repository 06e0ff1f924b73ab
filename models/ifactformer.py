"""IFactFormer: implicit factorized transformer neural operator for turbulent flow on a grid.

A re-implementation from the description in ``shared/reference/models.md`` section 4
(H. Yang, Y. Wang, J. Wang, "Implicit factorized transformer approach to fast
prediction of turbulent channel flows", Sci. China Phys. Mech. Astron. 69(1):214606,
2026, arXiv 2412.18840; it builds on the factorized attention of FactFormer, Z. Li,
D. Shu, A. Barati Farimani, NeurIPS 2023, arXiv 2305.17560). Nothing is copied from
the reference code.

The model maps the last ``t_in`` velocity snapshots on a 2-D or 3-D grid to the
field one step later, channels last and in physical units::

    x (B, T_in, *grid, C) -> z-score -> lift -> u (B, *grid, dim) -> + PE(coords)
    repeat n_layer times, one shared block F:   u <- u + F(u) / n_layer
    u -> Linear, GELU, Linear -> (B, *grid, C) -> de-normalise

The block ``F`` replaces full attention over the ``N = prod(grid)`` points by one
low-rank kernel per axis (``N_a x N_a``), built from a pooled 1-D "sub-function"
of the field; ``variant="m"`` applies the axis kernels in parallel and
concatenates them (IFactFormer-m, the paper's model), ``variant="o"`` chains
them (IFactFormer-o, the original FactFormer product kernel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.base import (
    BlockSpec,
    RegisteredModel,
    ZeroBranch,
    as_float_list,
    as_int_list,
    check_bool,
    check_choice,
    check_int,
    check_positive,
)
from models.fno import check_output_filter, spectral_filter
from models.layers import check_field_statistics, register_field_normalisation
from models.registry import register

__all__ = [
    "FactorizedBlock",
    "FourierPositionalEncoding",
    "IFactFormer",
    "IFactFormerConfig",
    "LowRankKernel",
    "PoolingReducer",
    "apply_rope",
    "channel_instance_norm",
    "rope_tables",
    "rotate_half",
    "slice_instance_norm",
]

VARIANTS = ("m", "o")
VERSIONS = ("original", "head")
# InstanceNorm's default eps; both reference versions use nn.InstanceNorm3d with defaults.
_NORM_EPS = 1e-5
_ROPE_BASE = 10000.0
_AXIS_LETTERS = "ijklmn"  # einsum letters of the grid axes; "z" is the contracted one


# ---------------------------------------------------------------------------- config


PAPER = {"grid": [32, 33, 16], "lengths": [4 * math.pi, 2.0, 4 * math.pi / 3], "n_channels": 3, "dim": 96,
         "heads": 5, "dim_head": 96, "latent_dim": 96, "n_layer": 10}
"""The paper's Re_tau 180 channel setting (models.md 4.3): ``build(KEY, PAPER)``. The box is 4pi x 2 x 4pi/3
(streamwise, wall-normal, spanwise). About 8 s per forward pass at batch 1 on a 2-core CPU, so the
dataclass defaults are a small 2-D setting instead."""


def _small_grid() -> list[int]:
    return [32, 32]


def _small_lengths() -> list[float]:
    return [2 * math.pi, 2 * math.pi]


@dataclass
class IFactFormerConfig:
    """Knobs of :class:`IFactFormer`; defaults = a small 2-D periodic setting (the paper's 3-D one is :data:`PAPER`).

    Attributes:
        grid: points per axis, 2 or 3 axes (``[32, 33, 16]`` = x, y, z of the paper).
        lengths: physical box length per axis. The coordinates are
            ``linspace(0, L_a, N_a)`` per axis, as in the reference, which passes the
            stretched wall-normal axis as if it were uniform (models.md 4.3); they
            feed both the Fourier positional encoding and the axial RoPE.
        n_channels: velocity components ``C`` (3 in 3-D, usually 2 in 2-D).
        t_in: input snapshots ``T_in`` (the time window of the lifting conv).
        dim: width ``d`` of the latent field.
        heads: heads ``H`` of the factorized attention.
        dim_head: value channels ``d_h`` per head.
        kernel_multiplier: ``m``; the q/k width per head is ``m * d_h`` (3 -> 288).
        latent_dim: width ``d_lat`` of the pooled 1-D sub-functions.
        n_layer: times the single weight-shared block is applied (Euler step ``1/L``).
            Changing it does not change the parameters.
        variant: ``"m"`` parallel axial kernels, concatenated (IFactFormer-m) or
            ``"o"`` chained kernels (IFactFormer-o / FactFormer).
        version: ``"original"`` = the Feb-2025 code the paper and the notebook's
            1,181,763 parameters come from (InstanceNorm on the channel-last tensor,
            i.e. per x-slice, and the extra ``to_out_1`` MLP); ``"head"`` = the
            current reference code (true per-channel instance norm, no ``to_out_1``),
            models.md 4.4.
        fourier_sigma: std of the frozen Gaussian matrix ``B`` of the Fourier features.
        fourier_features: columns of ``B`` (the encoding has twice as many, sin and
            cos). ``None`` = ``dim // 2`` as the reference (48 for ``dim = 96``).
        lift_dim: channels of the grouped per-component 1x1 conv of the lifting
            (and the hidden width of the projection head is ``dim // 2`` as in the
            reference). ``None`` = ``dim // 2`` as the reference (48 = 16 per
            component in the paper); must be a multiple of ``n_channels``.
        rope_min_freq: RoPE wavelength unit: angle = coordinate / min_freq * inv_freq.
        norm_mean, norm_std: per-channel z-score of the input (train-set statistics,
            physical units). ``None`` = identity.
        out_mean, out_std: per-channel de-normalisation of the output (the reference
            fits them on the train targets). ``None`` = reuse ``norm_mean``/``norm_std``.
        seed_fourier: seed of the generator that draws ``B``, so that the frozen
            encoding is a function of the config alone.
        residual: predict the increment over the last input snapshot (output = last
            snapshot + de-normalised head output, with ``out_mean`` / ``out_std`` the
            increments' statistics). Off by default: the reference predicts the field
            itself. A deliberate option for short training budgets, where learning the
            increment starts from persistence instead of from zero (the reference saves
            increment statistics to ``norm.pkl`` but does not use them).
        output_filter: :func:`models.fno.spectral_filter` on the head's output (the increment when
            ``residual``): ``none`` (the paper), ``dealias`` (2/3 rule) or ``exp``. A deliberate,
            optional difference from the paper: it keeps CPU-trained rollouts free of grid-scale noise.
        filter_order: The ``exp`` filter's order.
    """

    grid: list[int] = field(default_factory=_small_grid)
    lengths: list[float] = field(default_factory=_small_lengths)
    n_channels: int = 2
    t_in: int = 1
    dim: int = 32
    heads: int = 2
    dim_head: int = 16
    kernel_multiplier: int = 3
    latent_dim: int = 32
    n_layer: int = 4
    variant: str = "m"
    version: str = "original"
    fourier_sigma: float = 8.0
    fourier_features: int | None = None
    lift_dim: int | None = None
    rope_min_freq: float = 1 / 64
    norm_mean: list[float] | None = None
    norm_std: list[float] | None = None
    out_mean: list[float] | None = None
    out_std: list[float] | None = None
    seed_fourier: int = 0
    residual: bool = False
    output_filter: str = "none"
    filter_order: float = 8.0

    def __post_init__(self) -> None:
        # A 1-point axis has no kernel to learn (and the instance norms need > 1 value).
        self.grid = as_int_list(self, "grid", 2, length=(2, 3))
        self.lengths = as_float_list(self, "lengths", length=len(self.grid), positive=True)
        for name in ("n_channels", "t_in", "heads", "dim_head", "kernel_multiplier", "latent_dim", "n_layer"):
            check_int(self, name, 1)
        check_int(self, "dim", 2)  # the projection head is dim -> dim // 2 -> C
        for name in ("fourier_features", "lift_dim"):
            check_int(self, name, 1, optional=True)  # None = dim // 2, as the reference
        check_int(self, "seed_fourier", 0)
        check_bool(self, "residual")
        check_output_filter(self)
        check_positive(self, "fourier_sigma")
        check_positive(self, "rope_min_freq")
        check_choice(self, "variant", VARIANTS)
        check_choice(self, "version", VERSIONS)
        if self.lifting_dim % self.n_channels:
            raise ValueError(
                f"IFactFormerConfig.lift_dim ({self.lifting_dim}, dim // 2 when unset) must be a multiple of "
                f"n_channels ({self.n_channels}): the lifting conv has one group per component"
            )
        check_field_statistics(self)

    @property
    def n_fourier(self) -> int:
        """Columns of the Fourier matrix ``B`` (``fourier_features`` or ``dim // 2``)."""
        return self.dim // 2 if self.fourier_features is None else self.fourier_features

    @property
    def lifting_dim(self) -> int:
        """Channels after the grouped 1x1 conv of the lifting (``lift_dim`` or ``dim // 2``)."""
        return self.dim // 2 if self.lift_dim is None else self.lift_dim

    @property
    def kernel_width(self) -> int:
        """q/k width per head, ``m * d_h``."""
        return self.kernel_multiplier * self.dim_head

    @property
    def attn_width(self) -> int:
        """Channels entering the block's output norm: ``n_axes * H * d_h`` (m) or ``H * d_h`` (o)."""
        paths = len(self.grid) if self.variant == "m" else 1
        return paths * self.heads * self.dim_head


# ---------------------------------------------------------------------------- rotary embedding


def rope_tables(
    coords: torch.Tensor, width: int, min_freq: float, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine tables of the 1-D rotary embedding at physical coordinates.

    ``angle[n, i] = coords[n] / min_freq * base^(-2i / width)`` for the ``width // 2``
    frequencies, duplicated to the full width (the "rotate-half" layout).

    Args:
        coords: ``(N,)`` coordinates along one axis.
        width: rotated width (``m * d_h``); must be even.
        min_freq: wavelength unit (1/64 in the reference).
        dtype: dtype of the returned tables.

    Returns:
        ``(cos, sin)``, each ``(N, width)``.
    """
    if width % 2:
        raise ValueError(f"the rotary width must be even, got {width}")
    # float64: angles reach coord * 64 ~ 800 rad on the paper's box, where float32 tables are off by ~4e-5.
    inv_freq = _ROPE_BASE ** (-torch.arange(0, width, 2, dtype=torch.float64) / width)  # (width/2,)
    angles = torch.outer(coords.to(torch.float64) / min_freq, inv_freq)  # (N, width/2)
    angles = torch.cat([angles, angles], dim=-1)  # (N, width)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(t: torch.Tensor) -> torch.Tensor:
    """``[t1, t2] -> [-t2, t1]`` on the last axis (the rotary pair of channel i is i + width/2)."""
    t1, t2 = t.chunk(2, dim=-1)
    return torch.cat([-t2, t1], dim=-1)


def apply_rope(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``t (..., N, width)`` by the tables ``(N, width)`` of :func:`rope_tables`."""
    return t * cos + rotate_half(t) * sin


# ---------------------------------------------------------------------------- instance norms


def channel_instance_norm(u: torch.Tensor, eps: float = _NORM_EPS) -> torch.Tensor:
    """Per-channel instance norm of a channel-last field, no affine (version ``"head"``).

    Equal to ``nn.InstanceNorm3d(C)`` on the channel-first tensor: each sample's
    channel is normalised over all grid points, biased variance.

    Args:
        u: ``(B, *grid, C)``.
        eps: added to the variance.
    """
    b, c = u.shape[0], u.shape[-1]
    rows = u.reshape(b, -1, c)  # (B, N, C)
    # Batch norm in training mode on one sample's (N, C) rows = instance norm of that sample, and it
    # reads the channel-last layout as is: ~2x faster on CPU than a reduction over the grid dims or
    # instance_norm on a channel-first copy (the tensor is N x 3 H d_h, the block's largest).
    out = torch.stack([F.batch_norm(rows[i], None, None, training=True, eps=eps) for i in range(b)])
    return out.view(u.shape)  # (B, *grid, C)


def slice_instance_norm(u: torch.Tensor, eps: float = _NORM_EPS) -> torch.Tensor:
    """The original version's quirk: InstanceNorm applied to the channel-last tensor.

    PyTorch's instance norm takes dim 1 as the channel axis, so on ``(B, X, *rest, C)``
    each x-slice is normalised over all its remaining grid points *and* channels
    together, whatever ``num_features`` said (models.md 4.4). Reproduced with
    :func:`torch.nn.functional.instance_norm` on that very layout.

    Args:
        u: ``(B, X, *rest, C)``.
        eps: added to the variance.
    """
    return F.instance_norm(u, eps=eps)


# ---------------------------------------------------------------------------- building blocks


class FourierPositionalEncoding(nn.Module):
    """Gaussian Fourier features of the grid coordinates followed by a trainable Linear.

    ``PE(p) = Linear([sin(2 pi p B), cos(2 pi p B)])`` with ``B`` ``(n_axes, F)`` drawn
    once from ``N(0, sigma^2)`` and frozen. ``B`` is a (persistent) buffer drawn by a
    generator seeded from the config, so it is saved with the weights *and*
    rebuilt identically from the config. The reference stores it as a frozen
    ``nn.Parameter`` instead, which is why its parameter count includes it.

    Args:
        n_axes: coordinate dimensions (2 or 3).
        n_features: columns ``F`` of ``B``.
        sigma: std of the entries of ``B``.
        dim: output width.
        seed: seed of ``B``.
    """

    def __init__(self, n_axes: int, n_features: int, sigma: float, dim: int, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        # Drawn on the CPU from a private generator: the same B whatever the global RNG state.
        self.register_buffer("B", torch.randn(n_axes, n_features, generator=generator) * sigma)
        self.proj = nn.Linear(2 * n_features, dim)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """``(N, n_axes)`` coordinates -> ``(N, dim)`` encoding."""
        angles = 2 * math.pi * (coords @ self.B)  # (N, F)
        return self.proj(torch.cat([angles.sin(), angles.cos()], dim=-1))  # (N, dim)


class PoolingReducer(nn.Module):
    """Learnable projection of the field onto one axis: a 1-D "sub-function".

    ``phi_a = Linear(GeGLU(Linear(LN(mean_{other axes}(Z) W_a))))`` with
    ``W_a`` ``d -> d`` without bias, ``Linear(d -> 2d)``, GeGLU (GELU of the first
    half times the second half) and ``Linear(d -> d_lat)``.

    The reference projects every grid point with ``W_a`` and then averages; the
    mean is taken by the caller *before* ``W_a`` here. ``W_a`` (and the block's
    ``W_in`` before it) has no bias, so both orders give the same result, but this
    one costs ``N_a`` instead of ``N`` matrix-vector products.

    Args:
        dim: width ``d`` of the pooled field.
        latent_dim: width ``d_lat`` of the sub-function.
    """

    def __init__(self, dim: int, latent_dim: int) -> None:
        super().__init__()
        self.to_in = nn.Linear(dim, dim, bias=False)
        self.norm = nn.LayerNorm(dim)
        self.ff_in = nn.Linear(dim, 2 * dim)
        self.ff_out = nn.Linear(dim, latent_dim)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, N_a, d)`` axis means -> ``(B, N_a, d_lat)``."""
        h = self.norm(self.to_in(pooled))  # (B, N_a, d)
        a, gate = self.ff_in(h).chunk(2, dim=-1)  # (B, N_a, d) each
        return self.ff_out(F.gelu(a) * gate)  # (B, N_a, d_lat)


class LowRankKernel(nn.Module):
    """Per-head kernel along one axis: ``K = scale * RoPE(phi W_q) RoPE(phi W_k)^T``.

    No softmax, no quadrature weight, no diagonal residual. ``W_q``/``W_k`` are
    Xavier-uniform with gain 0.02, which keeps the un-normalised kernels small at
    initialisation so that the looped residual starts close to the identity.

    Args:
        latent_dim: width of the sub-function ``phi``.
        width: q/k width per head (``m * d_h``).
        heads: number of heads ``H``.
        scale: factor on the kernel (1.0 in the paper's setting).
    """

    def __init__(self, latent_dim: int, width: int, heads: int, scale: float) -> None:
        super().__init__()
        self.heads = heads
        self.width = width
        self.scale = scale
        self.to_q = nn.Linear(latent_dim, heads * width, bias=False)
        self.to_k = nn.Linear(latent_dim, heads * width, bias=False)
        nn.init.xavier_uniform_(self.to_q.weight, gain=0.02)
        nn.init.xavier_uniform_(self.to_k.weight, gain=0.02)

    def forward(self, phi: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """``phi (B, N_a, d_lat)`` and RoPE tables ``(N_a, width)`` -> ``K (B, H, N_a, N_a)``."""
        b, n, _ = phi.shape
        q = self.to_q(phi).view(b, n, self.heads, self.width).transpose(1, 2)  # (B, H, N_a, w)
        k = self.to_k(phi).view(b, n, self.heads, self.width).transpose(1, 2)  # (B, H, N_a, w)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return torch.einsum("bhid,bhjd->bhij", q, k) * self.scale  # (B, H, N_a, N_a)


class FactorizedBlock(nn.Module):
    """The factorized-attention block ``F``, applied ``n_layer`` times with shared weights.

    ``ũ = LN(u)``; values ``V = ũ W_v`` (``H`` heads of ``d_h``); one sub-function and
    kernel per axis from ``Z = ũ W_in``; the kernels act on ``V`` along their axis,
    in parallel (``"m"``: ``[K_x x_x V, K_y x_y V, (K_z x_z V)]`` concatenated per
    head) or chained (``"o"``: ``K_x x_x K_y x_y K_z x_z V``); then an instance norm
    (per ``version``), ``Linear(-> d)``, GELU, ``Linear(d -> d)`` (all without bias),
    and in the original version one more ``Linear, GELU, Linear`` (``to_out_1``).

    Args:
        config: the model's :class:`IFactFormerConfig`.
    """

    def __init__(self, config: IFactFormerConfig) -> None:
        super().__init__()
        d, h, dh = config.dim, config.heads, config.dim_head
        self.n_axes = len(config.grid)
        self.heads, self.dim_head = h, dh
        self.parallel = config.variant == "m"
        self.original = config.version == "original"
        self.in_norm = nn.LayerNorm(d)
        self.to_v = nn.Linear(d, h * dh, bias=False)
        self.to_in = nn.Linear(d, d, bias=False)
        self.reducers = nn.ModuleList(PoolingReducer(d, config.latent_dim) for _ in range(self.n_axes))
        # The reference only switches to 1/sqrt(m d_h) for m > 4 (or softmax, which is off).
        scale = 1 / math.sqrt(config.kernel_width) if config.kernel_multiplier > 4 else 1.0
        self.kernels = nn.ModuleList(
            LowRankKernel(config.latent_dim, config.kernel_width, h, scale) for _ in range(self.n_axes)
        )
        self.to_out = nn.Sequential(
            nn.Linear(config.attn_width, d, bias=False), nn.GELU(), nn.Linear(d, d, bias=False)
        )
        if self.original:
            # No activation between to_out's last Linear and this one's first, as in the Feb-2025 code.
            self.to_out_1 = nn.Sequential(nn.Linear(d, d, bias=False), nn.GELU(), nn.Linear(d, d, bias=False))
        else:
            self.to_out_1 = None
        self._einsums = [self._axis_einsum(a) for a in range(self.n_axes)]

    def _axis_einsum(self, axis: int) -> str:
        """einsum applying a ``(B, H, N_a, N_a)`` kernel along grid ``axis`` of ``(B, *grid, H, c)``."""
        letters = _AXIS_LETTERS[: self.n_axes]
        source = letters[:axis] + "z" + letters[axis + 1 :]
        return f"bh{letters[axis]}z,b{source}hc->b{letters}hc"

    def mix(self, kernels: list[torch.Tensor], v: torch.Tensor) -> torch.Tensor:
        """Apply the axis kernels to the values, in parallel (``"m"``) or chained (``"o"``).

        Args:
            kernels: per axis ``(B, H, N_a, N_a)``.
            v: ``(B, *grid, H, d_h)``.

        Returns:
            ``(B, *grid, attn_width)``; channels head-major as in the reference,
            per head ``[K_x x_x V, K_y x_y V, (K_z x_z V)]`` for ``"m"``.
        """
        if self.parallel:
            paths = [torch.einsum(self._einsums[a], kernels[a], v) for a in range(self.n_axes)]
            att = torch.cat(paths, dim=-1)  # (B, *grid, H, n_axes * d_h)
        else:
            att = v
            for a in range(self.n_axes):
                att = torch.einsum(self._einsums[a], kernels[a], att)  # (B, *grid, H, d_h)
        return att.reshape(*v.shape[:-2], -1)  # (B, *grid, attn_width)

    def forward(self, u: torch.Tensor, rope: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """One application ``F(u)``.

        Args:
            u: ``(B, *grid, d)``.
            rope: per axis the ``(cos, sin)`` tables ``(N_a, m d_h)``.

        Returns:
            ``(B, *grid, d)``, the update (the caller adds ``F(u) / n_layer``).
        """
        b, *grid, _ = u.shape
        h = self.in_norm(u)  # (B, *grid, d)
        v = self.to_v(h).view(b, *grid, self.heads, self.dim_head)  # (B, *grid, H, d_h)
        kernels = []
        for a in range(self.n_axes):
            others = tuple(1 + o for o in range(self.n_axes) if o != a)
            pooled = self.to_in(h.mean(dim=others))  # (B, N_a, d) = mean of Z over the other axes
            phi = self.reducers[a](pooled)  # (B, N_a, d_lat)
            kernels.append(self.kernels[a](phi, *rope[a]))  # (B, H, N_a, N_a)
        att = self.mix(kernels, v)  # (B, *grid, attn_width)
        att = slice_instance_norm(att) if self.original else channel_instance_norm(att)
        out = self.to_out(att)  # (B, *grid, d)
        if self.to_out_1 is not None:
            out = self.to_out_1(out)  # (B, *grid, d)
        return out


# ---------------------------------------------------------------------------- the model


@register("turbulence/ifactformer")
class IFactFormer(RegisteredModel):
    """IFactFormer-m / -o: a weight-shared factorized-attention neural operator for one time step.

    IFactFormer (Yang, Wang & Wang, Sci. China PMA 2026, arXiv 2412.18840; facts in
    models.md section 4) predicts the filtered velocity of turbulent channel flow
    one step ahead and is rolled out autoregressively. Network (models.md 4.3, 4.8):

    * per-channel z-score (buffers from the config), so the model takes and
      returns physical units and the loss can be computed in them;
    * lifting: grouped 1x1 conv, one group per component (``C -> lift_dim``, bias),
      GELU, conv over the time window (``lift_dim -> dim``, kernel ``(T_in, 1)``, no
      bias), the reference's own ``nn.Conv2d`` layout ``(B, C, T_in, N)``;
    * Gaussian Fourier positional encoding of the coordinates, added **once**;
    * one :class:`FactorizedBlock` applied ``n_layer`` times, ``u <- u + F(u)/L``
      (forward Euler with step ``1/L``: the "implicit" in the name);
    * projection head ``Linear(dim -> dim//2, no bias)``, GELU,
      ``Linear(dim//2 -> C)``: the reference's per-point ``Conv1d`` kernel-1 layers
      written as ``nn.Linear`` (same parameters, same default initialisation), so
      int8 dynamic quantization covers them.

    Parameters at the default (paper) config (``dim`` 96, 5 heads of 96, ``m`` 3,
    ``d_lat`` 96, 3 axes; the grid size does not enter the count, only its number
    of axes): 1,181,619 trainable in the ``"original"`` version and 1,163,187 in ``"head"``
    (the 18,432 difference is ``to_out_1``, two bias-free 96x96 Linears). The
    reference prints 1,181,763 (models.md 4.3) and 1,163,331 is derived for its
    HEAD code: both are 144 more, the 3x48 Fourier matrix ``B`` that the reference
    keeps as a frozen ``nn.Parameter`` (its ``count_params`` counts every
    parameter, frozen or not); here ``B`` is a buffer. :meth:`reference_param_count`
    adds it back.

    Deliberate differences from the reference:

    * The reference leaves normalisation to the training script; here it is
      inside the model (buffers from ``norm_*`` / ``out_*``), so rollouts feed
      predictions back in physical units.
    * The pooled sub-functions take the mean before the bias-free projections
      (exactly equal, cheaper; see :class:`PoolingReducer`).
    * RoPE tables are computed in float64 then cast (the reference computes the
      angles in float32; the tables differ by up to ~4e-5).
    * Only ``depth = 1`` (the IFactFormer setting); FactFormer's explicit stack of
      distinct layers, each with its own positional encoding, is not built.
    * ``B`` is a buffer drawn from ``seed_fourier``, not a frozen parameter drawn
      from the global RNG (same values for the same config, 144 fewer "parameters").
    * The Fourier encoding is computed in float32 even under bf16 autocast.
    * ``to_out_1`` follows ``to_out`` inside the block, as models.md 4.4 describes
      the Feb-2025 code; only its parameter count (18,432) could be checked.
    * 2-D grids use the same block with two axes (the reference code is 3-D).

    Input:
        x: ``(B, T_in, *grid, C)`` velocity snapshots in physical units, oldest
        first; ``(B, *grid, C)`` is accepted when ``t_in == 1``.

    Output:
        ``(B, *grid, C)``: the field at the next step, physical units.

    Args:
        config: an :class:`IFactFormerConfig`.
    """

    Config = IFactFormerConfig

    def __init__(self, config: IFactFormerConfig) -> None:
        super().__init__(config)
        c, d = config.n_channels, config.dim
        self.lift = nn.Sequential(
            nn.Conv2d(c, config.lifting_dim, kernel_size=1, groups=c),
            nn.GELU(),
            nn.Conv2d(config.lifting_dim, d, kernel_size=(config.t_in, 1), bias=False),
        )
        self.pos_enc = FourierPositionalEncoding(
            len(config.grid), config.n_fourier, config.fourier_sigma, d, config.seed_fourier
        )
        self.block = FactorizedBlock(config)
        self.head = nn.Sequential(nn.Linear(d, d // 2, bias=False), nn.GELU(), nn.Linear(d // 2, c))

        # Derived from the config alone, so not saved (persistent=False): the config is their source of truth.
        for a, (n, length) in enumerate(zip(config.grid, config.lengths, strict=True)):
            coords = torch.linspace(0.0, length, n, dtype=torch.float64)
            self.register_buffer(f"coords_{a}", coords.float(), persistent=False)
            cos, sin = rope_tables(coords, config.kernel_width, config.rope_min_freq)
            self.register_buffer(f"rope_cos_{a}", cos, persistent=False)
            self.register_buffer(f"rope_sin_{a}", sin, persistent=False)
        register_field_normalisation(self, config)  # in_mean, in_std, out_mean, out_std: (C,)

    # ------------------------------------------------------------------ helpers

    @property
    def n_axes(self) -> int:
        """Grid dimensions (2 or 3)."""
        return len(self.config.grid)

    def coordinates(self) -> list[torch.Tensor]:
        """Per-axis coordinates ``linspace(0, L_a, N_a)``, each ``(N_a,)``."""
        return [getattr(self, f"coords_{a}") for a in range(self.n_axes)]

    def rope(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-axis RoPE ``(cos, sin)`` tables, each ``(N_a, m d_h)``."""
        return [(getattr(self, f"rope_cos_{a}"), getattr(self, f"rope_sin_{a}")) for a in range(self.n_axes)]

    def positional_encoding(self) -> torch.Tensor:
        """The encoding added once after the lifting, ``(*grid, dim)``."""
        mesh = torch.meshgrid(*self.coordinates(), indexing="ij")  # n_axes x (*grid)
        points = torch.stack(mesh, dim=-1).reshape(-1, self.n_axes)  # (N, n_axes)
        # The angles 2 pi p B reach ~2000 rad on the paper's box: in bf16 (autocast) they would be off by
        # several radians, so the encoding is always computed in float32.
        with torch.autocast(device_type=points.device.type, enabled=False):
            pe = self.pos_enc(points.float())  # (N, dim)
        return pe.view(*self.config.grid, -1)  # (*grid, dim)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        expected = (cfg.t_in, *cfg.grid, cfg.n_channels)
        if cfg.t_in == 1 and x.dim() == len(expected) and tuple(x.shape[1:]) == expected[1:]:
            x = x.unsqueeze(1)  # (B, 1, *grid, C): a rollout feeds its own output back
        if x.dim() != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"IFactFormer expects x of shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        return x

    # ------------------------------------------------------------------ forward

    def lift_input(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise and lift: ``(B, T_in, *grid, C)`` physical -> ``(B, *grid, dim)``."""
        b, t, *grid, c = x.shape
        x = (x - self.in_mean) / self.in_std  # (B, T, *grid, C), z-scores
        x = x.reshape(b, t, -1, c).permute(0, 3, 1, 2)  # (B, C, T, N)
        u = self.lift(x)  # (B, dim, 1, N)
        return u.squeeze(2).transpose(1, 2).reshape(b, *grid, -1)  # (B, *grid, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict the next snapshot.

        Args:
            x: ``(B, T_in, *grid, C)`` (or ``(B, *grid, C)`` when ``t_in == 1``), physical units.

        Returns:
            ``(B, *grid, C)`` in physical units.
        """
        x = self._check_input(x)
        u = self.lift_input(x) + self.positional_encoding()  # (B, *grid, dim)
        rope = self.rope()
        steps = self.config.n_layer
        for _ in range(steps):
            u = u + self.block(u, rope) / steps  # (B, *grid, dim); the same weights every step
        y = self.head(u) * self.out_std + self.out_mean  # (B, *grid, C), physical units
        y = spectral_filter(y, self.config.output_filter, self.config.filter_order)  # "none": unchanged
        return x[:, -1] + y if self.config.residual else y  # residual: y is the increment

    # ------------------------------------------------------------------ registry contract

    def example_inputs(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor]:
        """``(x,)``, ``x`` ``(B, T_in, *grid, C)`` float32 on the model's device.

        Standard normal, scaled and shifted by the input statistics when the
        config has them (so the inputs look like physical velocities).
        """
        cfg = self.config
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(batch_size, cfg.t_in, *cfg.grid, cfg.n_channels, generator=generator)
        x = x * self.in_std.cpu() + self.in_mean.cpu()
        return (x.to(self.in_mean.device),)

    def prunable_blocks(self) -> list[BlockSpec]:
        """The shared block: removable as a whole (every loop then adds nothing), and the hidden units of its
        output MLP (``to_out``). Its heads are not cut one by one: the instance norm mixes them."""
        if isinstance(self.block, ZeroBranch):
            return [BlockSpec(name="block", attn_paths=("block",))]
        return [BlockSpec(name="block", attn_paths=("block",), ffn_in="block.to_out.0", ffn_out="block.to_out.2")]

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters per component (the frozen Fourier ``B`` is a buffer, not counted)."""
        block = self.block
        parts = {
            "lift": _numel(self.lift),
            "pos_enc": _numel(self.pos_enc),
            "block_in": _numel(block.in_norm) + _numel(block.to_v) + _numel(block.to_in),
            "reducers": _numel(block.reducers),
            "kernels": _numel(block.kernels),
            "to_out": _numel(block.to_out),
            "to_out_1": _numel(block.to_out_1) if block.to_out_1 is not None else 0,
            "head": _numel(self.head),
        }
        parts["total"] = sum(parts.values())
        return parts

    def reference_param_count(self) -> int:
        """Parameters as the reference's ``count_params`` counts them: ours plus the frozen ``B``.

        The reference keeps ``B`` as ``nn.Parameter(requires_grad=False)`` and counts
        every parameter, so its printed 1,181,763 (models.md 4.3) includes the
        ``n_axes x F`` entries of ``B``.
        """
        return _numel(self) + self.pos_enc.B.numel()


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
