"""Fourier Neural Operator (Li et al. 2021) on 2-D and 3-D grids: the turbulence baseline.

Z. Li, N. Kovachki, K. Azizzadenesheli, B. Liu, K. Bhattacharya, A. Stuart, A. Anandkumar,
"Fourier Neural Operator for Parametric Partial Differential Equations", ICLR 2021,
arXiv 2010.08895 (reference code: ``zongyi-li/fourier_neural_operator``, ``fourier_2d_time.py``
and ``fourier_3d.py``). It is the baseline IFactFormer-m is compared with (Yang, Wang, Wang 2026,
arXiv 2412.18840; ``shared/reference/models.md`` section 4.6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.base import RegisteredModel, as_float_list, as_int_list, check_bool, check_int
from models.layers import check_field_statistics, register_field_normalisation
from models.registry import register

__all__ = ["FNO", "FNOConfig", "OUTPUT_FILTERS", "SpectralConv", "check_modes_fit", "spectral_filter"]

OUTPUT_FILTERS = ("none", "dealias", "exp")
"""Filters a field operator may apply to its prediction (:func:`spectral_filter`); ``none`` is the papers'."""



def check_modes_fit(modes: Sequence[int], grid: Sequence[int]) -> None:
    """Raise ``ValueError`` unless the kept Fourier modes fit a grid of (padded) size ``grid``.

    A non-last axis keeps wavenumbers ``0..m-1`` and ``-m..-1`` (the two blocks of the
    reference), which must not overlap: ``2 m <= n``. The last axis goes through
    ``rfftn`` and keeps ``0..m-1`` of its ``n // 2 + 1`` coefficients.

    Args:
        modes: kept modes per spatial axis.
        grid: grid size per spatial axis, padding included.
    """
    last = len(grid) - 1
    for axis, (m, n) in enumerate(zip(modes, grid, strict=True)):
        limit = n // 2 + 1 if axis == last else n // 2
        if m > limit:
            rule = "n // 2 + 1 (rfft axis)" if axis == last else "n // 2 (both signs are kept)"
            raise ValueError(
                f"modes[{axis}] = {m} does not fit grid axis {axis} of size n = {n} "
                f"(padding included): need modes <= {rule} = {limit}; modes {list(modes)}, grid {list(grid)}"
            )



def spectral_filter(y: torch.Tensor, kind: str, order: float = 8.0) -> torch.Tensor:
    """Damp the grid-scale Fourier modes of a periodic field ``(B, *grid, C)`` (2 or 3 grid axes).

    Not part of any paper: an autoregressive surrogate that puts a little energy near the grid scale
    each step, with nothing in the data to take it out again, grows checkerboard noise within a few
    dozen steps (the default run's rollouts did, from about step 15). Spectral solvers remove it with
    the same two tools (Boyd, "Chebyshev and Fourier Spectral Methods", 2001, ch. 11):

    * ``dealias``: Orszag's 2/3 rule, every mode with ``|k_a| > N_a / 3`` on some axis set to zero;
    * ``exp``: the smooth exponential filter ``prod_a exp(-36 (|k_a| / (N_a / 2)) ** order)``, 1 at
      ``k = 0``, machine zero at the Nyquist wavenumber, close to 1 below about half of it for
      ``order = 8`` (a higher order is sharper, approaching a cut at the Nyquist wavenumber).

    The mean (``k = 0``) passes unchanged, so the filter never shifts the field's average.

    Args:
        y: ``(B, *grid, C)`` real field, channels last, periodic on every grid axis.
        kind: One of :data:`OUTPUT_FILTERS`; ``none`` returns ``y`` itself.
        order: The exponent of ``exp`` (ignored otherwise), > 0.

    Returns:
        ``(B, *grid, C)``, the filtered field in ``y``'s dtype.
    """
    if kind == "none":
        return y
    if kind not in OUTPUT_FILTERS:
        raise ValueError(f"output filter {kind!r} is not one of {list(OUTPUT_FILTERS)}")
    grid = tuple(y.shape[1:-1])
    dims = tuple(range(1, len(grid) + 1))
    weight = torch.ones((), device=y.device)
    for axis, n in enumerate(grid):
        last = axis == len(grid) - 1  # rfftn keeps 0..n//2 on the last axis
        k = (torch.fft.rfftfreq(n, device=y.device) if last else torch.fft.fftfreq(n, device=y.device)).abs() * n
        eta = k / (n / 2)  # 0 at the mean, 1 at the Nyquist wavenumber
        w = (k <= n / 3).float() if kind == "dealias" else torch.exp(-36.0 * eta ** order)
        shape = [1] * (len(grid) + 1)
        shape[axis] = -1
        weight = weight * w.reshape(shape)  # broadcast to (*grid_rfft, 1)
    with torch.autocast(device_type=y.device.type, enabled=False):  # no bf16 FFTs (see SpectralConv)
        y_ft = torch.fft.rfftn(y.float(), dim=dims)  # (B, n_1, ..., n_d // 2 + 1, C) complex
        out = torch.fft.irfftn(y_ft * weight, s=grid, dim=dims)  # (B, *grid, C)
    return out.to(y.dtype)


def check_output_filter(config) -> None:
    """Validate ``config.output_filter`` / ``config.filter_order`` (FNO, IFactFormer), naming the bad value."""
    name = type(config).__name__
    if config.output_filter not in OUTPUT_FILTERS:
        raise ValueError(f"{name}.output_filter must be one of {list(OUTPUT_FILTERS)}, got {config.output_filter!r}")
    if isinstance(config.filter_order, bool) or not isinstance(config.filter_order, (int, float)) \
            or not config.filter_order > 0:
        raise ValueError(f"{name}.filter_order must be a number > 0, got {config.filter_order!r}")
    config.filter_order = float(config.filter_order)


@dataclass
class FNOConfig:
    """Knobs of :class:`FNO`; the defaults are a small 2-D periodic setting that runs fast on CPU.

    Attributes:
        grid: grid points per spatial axis, e.g. ``[32, 32]`` (2-D) or ``[32, 33, 16]`` (3-D).
            The model is built for this grid (``example_inputs``, padding); ``forward``
            also accepts other resolutions of the same box (see :class:`FNO`).
        lengths: physical box length per axis. The coordinates ``linspace(0, L, N)`` of
            every axis are appended to the input features, as the reference does (with
            ``L = 1`` there).
        n_channels: field components C (2 velocity components in 2-D, 3 in 3-D).
        t_in: input snapshots T_in stacked on the feature axis (the reference's
            ``fourier_2d_time`` uses 10; IFactFormer-m uses 1).
        width: channels of the Fourier layers (32 in 2-D, 20 in 3-D in the reference).
        modes: Fourier modes kept per axis, e.g. ``[12, 12]`` or ``[8, 8, 6]``; see
            :func:`check_modes_fit` for the limits.
        n_layers: Fourier layers (4).
        projection_width: hidden width of the output MLP (128).
        padding: zero cells appended at the end of each axis before the Fourier layers,
            for non-periodic axes (the reference pads 6-8 cells); ``None`` = no padding,
            right for periodic axes. For a channel flow, e.g. ``[0, 8, 0]``.
        norm_mean, norm_std: per-channel z-score of the input (train-set statistics,
            physical units), applied inside the model so losses and rollouts stay in
            physical units. ``None`` = identity. Given together.
        out_mean, out_std: per-channel de-normalisation of the output (IFactFormer's
            recipe fits them on the train targets). ``None`` = reuse ``norm_mean`` /
            ``norm_std``. Given together. Same fields and meaning as
            :class:`~models.ifactformer.IFactFormerConfig`.
        residual: predict the increment: output = last input snapshot + de-normalised network
            output (then ``out_mean`` / ``out_std`` are the increments' statistics). Off by
            default (the reference predicts the field itself); see IFactFormerConfig.residual.
        output_filter: :func:`spectral_filter` applied to the network's output (the increment when
            ``residual``) before it is returned: ``none`` (the reference), ``dealias`` or ``exp``. A
            deliberate, optional difference from the paper that keeps long rollouts free of grid-scale noise.
        filter_order: The ``exp`` filter's order (8: close to 1 below half the Nyquist wavenumber).
    """

    grid: list[int] = field(default_factory=lambda: [32, 32])
    lengths: list[float] = field(default_factory=lambda: [2 * math.pi, 2 * math.pi])
    n_channels: int = 2
    t_in: int = 1
    width: int = 32
    modes: list[int] = field(default_factory=lambda: [12, 12])
    n_layers: int = 4
    projection_width: int = 128
    padding: list[int] | None = None
    norm_mean: list[float] | None = None
    norm_std: list[float] | None = None
    out_mean: list[float] | None = None
    out_std: list[float] | None = None
    residual: bool = False
    output_filter: str = "none"
    filter_order: float = 8.0

    def __post_init__(self) -> None:
        check_bool(self, "residual")
        check_output_filter(self)
        # Tuples are accepted but stored as lists, so config_dict() equals its own JSON round trip.
        self.grid = as_int_list(self, "grid", 1, length=(2, 3))
        n_dims = len(self.grid)
        self.lengths = as_float_list(self, "lengths", length=n_dims, positive=True)
        self.modes = as_int_list(self, "modes", 1, length=n_dims)
        for name in ("n_channels", "t_in", "width", "n_layers", "projection_width"):
            check_int(self, name, 1)
        self.padding = as_int_list(self, "padding", 0, length=n_dims, optional=True)
        check_field_statistics(self)
        check_modes_fit(self.modes, self.padded_grid(self.grid))

    @property
    def n_dims(self) -> int:
        """Spatial dimensions (2 or 3)."""
        return len(self.grid)

    def padding_for(self, grid: Sequence[int]) -> list[int]:
        """Zero cells appended per axis for an input of size ``grid``.

        At the configured grid this is ``padding``. At another resolution it is scaled
        with the grid (rounded), so the padded box keeps the same physical length and
        the kept modes keep meaning the same physical wavenumbers.
        """
        if self.padding is None:
            return [0] * len(grid)
        return [round(p * n / n0) for p, n, n0 in zip(self.padding, grid, self.grid, strict=True)]

    def padded_grid(self, grid: Sequence[int]) -> list[int]:
        """``grid`` plus :meth:`padding_for` ``(grid)``: the size the FFTs see."""
        return [n + p for n, p in zip(grid, self.padding_for(grid), strict=True)]


class SpectralConv(nn.Module):
    """Fourier integral operator of the FNO: ``irfftn(W * rfftn(x))`` on the lowest modes.

    Channels-last. The kept block of the spectrum has ``2 m`` entries on every non-last
    axis (wavenumbers ``0..m-1`` then ``-m..-1``, the reference's ``weights1/2``, or its four
    corner weights in 3-D) and ``m`` on the last (rfft) axis; each entry has its own complex
    ``(in, out)`` matrix. Everything above is zeroed, so the layer sees only those modes.

    The complex weights are stored as a real parameter with a trailing dimension of 2
    (``torch.view_as_complex`` in ``forward``), so safetensors, optimizers with real-only
    state, the int8 path (which only quantizes ``nn.Linear``, leaving this one float) and
    every other generic tool handle it as an ordinary tensor.

    The layer is discretisation invariant: ``rfftn`` then ``irfftn`` scale by ``1 / N``
    overall (whatever the ``norm`` pair), so the weights act on Fourier coefficients
    of the function, not of its samples. For a field band-limited to the kept modes,
    sampling it at N or at 2N points gives the same output at the shared points.

    Args:
        in_channels: input channels I.
        out_channels: output channels O.
        modes: kept modes per spatial axis, ``(m_1, ..., m_d)``.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: Sequence[int]) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.modes = tuple(int(m) for m in modes)
        block = tuple(2 * m for m in self.modes[:-1]) + (self.modes[-1],)
        # Reference init: scale * U[0, 1) for the real and the imaginary part, scale = 1 / (in * out).
        scale = 1.0 / (in_channels * out_channels)
        self.weight = nn.Parameter(scale * torch.rand(*block, in_channels, out_channels, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *grid, I)`` -> ``(B, *grid, O)``."""
        grid = tuple(x.shape[1:-1])
        d = len(self.modes)
        if len(grid) != d:
            raise ValueError(
                f"SpectralConv with {d} modes needs (B, *grid, C) with {d} grid axes, got {tuple(x.shape)}"
            )
        check_modes_fit(self.modes, grid)
        dims = tuple(range(1, d + 1))
        # cuFFT has no bf16 and only power-of-two fp16: keep the spectral path in fp32 whatever
        # the autocast setting (train.py runs bf16 autocast on GPUs).
        with torch.autocast(device_type=x.device.type, enabled=False):
            x_ft = torch.fft.rfftn(x.float(), dim=dims)  # (B, n_1, ..., n_d//2+1, I) complex
            low = self._gather(x_ft)  # (B, 2m_1, ..., m_d, I)
            w = torch.view_as_complex(self.weight)  # (2m_1, ..., m_d, I, O)
            block = low.shape[1:-1]
            # Every kept mode p has its own (I, O) matrix: a batched matmul over P = prod(block).
            low_flat, w_flat = low.flatten(1, -2), w.flatten(0, -3)  # (B, P, I), (P, I, O)
            y_low = torch.einsum("bpi,pio->bpo", low_flat, w_flat)  # (B, P, O)
            y_low = y_low.reshape(x.shape[0], *block, self.out_channels)  # (B, 2m_1, ..., m_d, O)
            y_ft = self._scatter(y_low, grid)  # (B, n_1, ..., n_d//2+1, O)
            y = torch.fft.irfftn(y_ft, s=grid, dim=dims)  # (B, *grid, O)
        return y.to(x.dtype)

    def _gather(self, x_ft: torch.Tensor) -> torch.Tensor:
        """Kept block of the spectrum: ``[:m] ++ [-m:]`` on non-last axes, ``[:m]`` on the last."""
        last = len(self.modes)
        for axis, m in enumerate(self.modes, start=1):
            if axis == last:
                x_ft = x_ft.narrow(axis, 0, m)
            else:
                n = x_ft.shape[axis]
                x_ft = torch.cat([x_ft.narrow(axis, 0, m), x_ft.narrow(axis, n - m, m)], dim=axis)
        return x_ft

    def _scatter(self, y: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """Inverse of :meth:`_gather`: put the block back into a zero spectrum of size ``grid``."""
        last = len(self.modes)
        for axis, (m, n) in enumerate(zip(self.modes, grid, strict=True), start=1):
            full = n // 2 + 1 if axis == last else n
            gap = full - (m if axis == last else 2 * m)
            if gap == 0:
                continue
            zeros = y.new_zeros(*y.shape[:axis], gap, *y.shape[axis + 1 :])
            if axis == last:
                y = torch.cat([y, zeros], dim=axis)
            else:  # the zeros go between the positive and the negative wavenumbers
                y = torch.cat([y.narrow(axis, 0, m), zeros, y.narrow(axis, m, m)], dim=axis)
        return y

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, modes={self.modes}"


@register("turbulence/fno")
class FNO(RegisteredModel):
    """Fourier Neural Operator for next-step prediction of a velocity field on a 2-D/3-D grid.

    The FNO (Li et al., ICLR 2021) learns the solution operator of a PDE as a stack
    of Fourier layers, each a global convolution parameterised in Fourier space and
    truncated to the lowest modes, plus a pointwise linear map. It is the standard
    neural-operator baseline of IFactFormer-m (models.md section 4.6)::

        normalise (per-channel z-score) -> stack T_in snapshots on the features
        -> append coordinates linspace(0, L, N) per axis -> Linear(T_in*C + d, width)
        -> zero-pad non-periodic axes
        -> n_layers x [SpectralConv(width, width, modes) + Linear(width, width)], GELU but after the last
        -> crop -> Linear(width, 128) -> GELU -> Linear(128, C) -> de-normalise

    With the defaults (2-D, 32 x 32, width 32, modes 12 x 12, 4 layers) it has
    2,368,162 real parameters (each complex spectral weight counts twice); the 3-D
    setting 32 x 33 x 16, width 20, modes 8 x 8 x 6 has 4,920,095.

    Differences from the reference code, all deliberate:

    * Channels-last vector fields with T_in snapshots of C components (the reference
      2-D code takes one scalar with T_in steps); features are ordered ``t * C + c``.
    * Physical coordinates ``linspace(0, L, N)`` instead of ``linspace(0, 1, N)``.
    * The 1 x 1 convolutions are ``nn.Linear`` on the channel axis (same maths), so
      int8 dynamic quantization reaches them; the spectral weights stay float.
    * Per-channel normalisation inside the model (input and output statistics from
      the config); the reference normalises outside with its ``UnitGaussianNormalizer``.
    * Padding (per axis, in cells) is scaled with the resolution when evaluating on
      another grid (see :meth:`FNOConfig.padding_for`).

    Resolution: ``forward`` accepts any grid with the configured number of axes
    whose (padded) size fits the modes. The spectral layers are discretisation
    invariant; the whole network only approximately so, because the pointwise
    GELUs create modes above the truncation that depend on the sampling.

    Input:
        x: ``(B, T_in, *grid, C)`` float, physical units; ``(B, *grid, C)`` is also
        accepted when ``t_in == 1``, so a rollout can feed the output straight back.

    Output:
        ``(B, *grid, C)``: the field at the next step, physical units.

    Args:
        config: an :class:`FNOConfig`.
    """

    Config = FNOConfig

    def __init__(self, config: FNOConfig) -> None:
        super().__init__(config)
        c, w = config.n_channels, config.width
        register_field_normalisation(self, config)  # in_mean, in_std, out_mean, out_std: (C,)
        self.lift = nn.Linear(config.t_in * c + config.n_dims, w)
        self.spectral = nn.ModuleList(SpectralConv(w, w, config.modes) for _ in range(config.n_layers))
        self.pointwise = nn.ModuleList(nn.Linear(w, w) for _ in range(config.n_layers))
        self.project_hidden = nn.Linear(w, config.projection_width)
        self.project_out = nn.Linear(config.projection_width, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict the next field: ``(B, T_in, *grid, C)`` -> ``(B, *grid, C)``, physical units."""
        cfg = self.config
        d = cfg.n_dims
        if cfg.t_in == 1 and x.ndim == d + 2:
            x = x.unsqueeze(1)  # (B, 1, *grid, C): a rollout feeds its own output back
        if x.ndim != d + 3 or x.shape[1] != cfg.t_in or x.shape[-1] != cfg.n_channels:
            raise ValueError(
                f"FNO expects x of shape (B, T_in={cfg.t_in}, *grid ({d} axes), C={cfg.n_channels}), "
                f"got {tuple(x.shape)}"
            )
        batch, grid = x.shape[0], tuple(x.shape[2:-1])
        pads = cfg.padding_for(grid)
        check_modes_fit(cfg.modes, [n + p for n, p in zip(grid, pads, strict=True)])

        last = x[:, -1]  # (B, *grid, C), physical units
        x = (x - self.in_mean) / self.in_std  # (B, T, *grid, C), z-scores
        h = x.movedim(1, -2).flatten(-2)  # (B, *grid, T*C)
        coords = self._coordinates(grid, x.device, h.dtype)  # (*grid, d)
        h = torch.cat([h, coords.expand(batch, *grid, d)], dim=-1)  # (B, *grid, T*C + d)
        h = self.lift(h)  # (B, *grid, W)
        if any(pads):
            # F.pad lists (left, right) pairs from the last dim backwards: channels first (none).
            spec = [0, 0] + [v for p in reversed(pads) for v in (0, p)]
            h = F.pad(h, spec)  # (B, *padded, W)
        for i, (spectral, pointwise) in enumerate(zip(self.spectral, self.pointwise, strict=True)):
            h = spectral(h) + pointwise(h)  # (B, *padded, W)
            if i < cfg.n_layers - 1:
                h = F.gelu(h)
        if any(pads):
            h = h[(slice(None), *(slice(0, n) for n in grid))]  # (B, *grid, W)
        y = self.project_out(F.gelu(self.project_hidden(h)))  # (B, *grid, C), z-scores
        y = y * self.out_std + self.out_mean  # (B, *grid, C), physical units
        y = spectral_filter(y, cfg.output_filter, cfg.filter_order)  # (B, *grid, C); "none": unchanged
        return last + y if cfg.residual else y  # residual: y is the increment over the last snapshot

    def _coordinates(self, grid: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``(*grid, d)`` physical coordinates, ``linspace(0, L, N)`` per axis (end point included)."""
        axes = [
            torch.linspace(0.0, float(length), n, device=device)
            for length, n in zip(self.config.lengths, grid, strict=True)
        ]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).to(dtype)

    def example_inputs(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor]:
        """``(x,)``: ``x`` ``(B, T_in, *grid, C)`` float32, Gaussian with the input statistics.

        Args:
            batch_size: B.
            seed: seed of the CPU generator, so repeated calls give the same tensor.
        """
        cfg = self.config
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(batch_size, cfg.t_in, *cfg.grid, cfg.n_channels, generator=gen)  # (B, T, *grid, C)
        x = z * self.in_std.cpu() + self.in_mean.cpu()
        return (x.to(self.in_mean.device),)
