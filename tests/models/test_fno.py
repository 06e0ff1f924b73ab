"""Behavioural tests of the Fourier Neural Operator (``turbulence/fno``)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from models import build
from models.fno import FNO, FNOConfig, SpectralConv
from tasks.compress import quantize_eager as quantize

KEY = "turbulence/fno"
SMALL_2D = {
    "grid": [16, 12],
    "lengths": [2 * math.pi, 1.0],
    "n_channels": 2,
    "width": 8,
    "modes": [4, 3],
    "n_layers": 2,
    "projection_width": 16,
}
SMALL_3D = {
    "grid": [8, 9, 6],
    "lengths": [4 * math.pi, 2.0, 4 * math.pi / 3],
    "n_channels": 3,
    "width": 6,
    "modes": [3, 3, 2],
    "n_layers": 2,
    "projection_width": 16,
    "padding": [0, 3, 0],
}


def _model(overrides: dict, seed: int = 0) -> FNO:
    torch.manual_seed(seed)
    return build(KEY, overrides).eval()


def _waves(grid, modes, channels, n_waves, seed, kept):
    """Real field ``(1, *grid, channels)``: a sum of ``n_waves`` random plane waves ``cos(k . x + phase)``.

    ``x_a = 2 pi j / n_a`` (periodic samples). With ``kept=True`` every wavevector lies in the band
    the spectral conv keeps *and* so does its mirror ``-k`` (so ``|k_a| <= m_a - 1`` on every axis);
    with ``kept=False`` each wave has ``|k_a| >= m_a + 1`` on some non-last axis or ``|k_last| >= m_last``
    on the last, so neither it nor its mirror is kept.
    """
    gen = torch.Generator().manual_seed(seed)
    axes = [2 * math.pi * torch.arange(n, dtype=torch.float64) / n for n in grid]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (*grid, d)
    field = torch.zeros(*grid, channels, dtype=torch.float64)
    d = len(grid)
    for _ in range(n_waves):
        if kept:
            k = [int(torch.randint(-(m - 1), m, (1,), generator=gen)) for m in modes]
        else:
            # Any wavevector up to the grid's Nyquist, with one axis forced past the kept band.
            k = [int(torch.randint(-(n // 2 - 1), n // 2, (1,), generator=gen)) for n in grid]
            axis = int(torch.randint(0, d, (1,), generator=gen))
            lowest = modes[axis] + 1 if axis < d - 1 else modes[axis]
            k[axis] = int(torch.randint(lowest, grid[axis] // 2, (1,), generator=gen)) * (
                1 if k[axis] >= 0 else -1
            )
        phase = 2 * math.pi * torch.rand(channels, generator=gen, dtype=torch.float64)
        amp = torch.randn(channels, generator=gen, dtype=torch.float64)
        arg = (coords * torch.tensor(k, dtype=torch.float64)).sum(-1, keepdim=True)  # (*grid, 1)
        field += amp * torch.cos(arg + phase)
    return field.unsqueeze(0).float()


# ---------------------------------------------------------------------------- shapes and size


@pytest.mark.parametrize("cfg", [SMALL_2D, SMALL_3D], ids=["2d", "3d-padded"])
@pytest.mark.parametrize("t_in", [1, 3])
def test_output_shape(cfg, t_in):
    model = _model({**cfg, "t_in": t_in})
    (x,) = model.example_inputs(2)
    assert x.shape == (2, t_in, *cfg["grid"], cfg["n_channels"])
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, *cfg["grid"], cfg["n_channels"])
    assert y.dtype == torch.float32 and torch.isfinite(y).all()


def test_parameter_count_matches_hand_formula():
    """With d spatial axes, T_in snapshots of C channels, width W, modes m, L layers, projection P::

        lift        (T_in*C + d) * W + W
        per layer   2**(d-1) * prod(m) * W*W * 2     spectral: 2**(d-1) sign blocks, complex = 2 reals
                    + W*W + W                        pointwise Linear
        projection  W*P + P + P*C + C

    For d=2, T_in=3, C=2, W=8, m=(4, 3), L=2, P=16:
    (6+2)*8+8 = 72; 2 * (2*12*64*2 + 64+8) = 2 * (3072 + 72) = 6288; 8*16+16 + 16*2+2 = 178;
    total 6538. Padding and the normalisation buffers add no parameters.
    """
    model = _model({**SMALL_2D, "t_in": 3, "padding": [2, 2]})
    assert sum(p.numel() for p in model.parameters()) == 6538

    def formula(d, t_in, c, w, modes, layers, p):
        spectral = 2 ** (d - 1) * math.prod(modes) * w * w * 2
        return (t_in * c + d) * w + w + layers * (spectral + w * w + w) + w * p + p + p * c + c

    default = FNO(FNOConfig())
    assert sum(p.numel() for p in default.parameters()) == formula(2, 1, 2, 32, [12, 12], 4, 128) == 2_368_162
    cfg3 = FNOConfig(
        grid=[32, 33, 16],
        lengths=[4 * math.pi, 2.0, 4 * math.pi / 3],
        n_channels=3,
        width=20,
        modes=[8, 8, 6],
    )
    model3 = FNO(cfg3)
    assert sum(p.numel() for p in model3.parameters()) == formula(3, 1, 3, 20, [8, 8, 6], 4, 128) == 4_920_095


def test_spectral_weights_are_real_with_trailing_two():
    model = _model(SMALL_3D)
    w = model.spectral[0].weight
    assert w.dtype == torch.float32 and not w.is_complex()
    assert w.shape == (6, 6, 2, 6, 6, 2)  # (2 m1, 2 m2, m3, in, out, re/im)
    scale = 1.0 / (6 * 6)  # reference init: scale * U[0, 1) on both parts
    assert 0.0 <= w.min() and w.max() < scale


# ---------------------------------------------------------------------------- spectral truncation


@pytest.mark.parametrize(("grid", "modes"), [((16, 12), (4, 3)), ((12, 10, 8), (3, 2, 2))], ids=["2d", "3d"])
def test_spectral_conv_ignores_modes_above_truncation(grid, modes):
    torch.manual_seed(0)
    conv = SpectralConv(3, 4, modes)
    base = _waves(grid, modes, 3, 6, seed=1, kept=True) + 0.1 * torch.randn(1, *grid, 3)
    high = _waves(grid, modes, 3, 6, seed=2, kept=False)
    with torch.no_grad():
        y_base, y_both, y_high = conv(base), conv(base + high), conv(high)
    assert y_base.abs().max() > 1e-2
    torch.testing.assert_close(y_both, y_base, atol=1e-5, rtol=1e-5)
    assert y_high.abs().max() < 1e-5


def test_band_is_the_references_asymmetric_one():
    """Non-last axes keep wavenumbers 0..m-1 *and* -m..-1 (reference ``out_ft[:, :, -m:]``), so a
    real cos(m x) still reaches the output through its -m half; cos((m+1) x) does not."""
    torch.manual_seed(0)
    conv = SpectralConv(1, 1, (4, 3))
    x = 2 * math.pi * torch.arange(16) / 16
    for k, passes in ((4, True), (5, False)):
        field = torch.cos(k * x)[None, :, None, None].expand(1, 16, 12, 1)  # (1, 16, 12, 1)
        with torch.no_grad():
            out = conv(field).abs().max()
        assert (out > 1e-3) == passes, (k, out)


def test_model_first_spectral_layer_ignores_high_frequency_input_change():
    """The lift is affine per grid point, so a high-frequency change of the input stays high-frequency
    in the first Fourier layer's input and its spectral conv output does not move."""
    model = _model(SMALL_2D)
    outputs = []
    hook = model.spectral[0].register_forward_hook(lambda mod, args, out: outputs.append(out))
    (x,) = model.example_inputs(2)
    high = _waves(SMALL_2D["grid"], SMALL_2D["modes"], 2, 5, seed=3, kept=False)  # (1, *grid, C)
    with torch.no_grad():
        model(x)
        model(x + high.unsqueeze(1))
    hook.remove()
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------- resolution


@pytest.mark.parametrize(("grid", "modes"), [((16, 12), (4, 3)), ((8, 10, 6), (3, 2, 2))], ids=["2d", "3d"])
def test_spectral_conv_is_discretisation_invariant(grid, modes):
    """A field band-limited to the kept modes, sampled at N and 2N: same output at the shared points."""
    torch.manual_seed(0)
    conv = SpectralConv(2, 3, modes)
    fine_grid = tuple(2 * n for n in grid)
    coarse = _waves(grid, modes, 2, 5, seed=4, kept=True)
    fine = _waves(fine_grid, modes, 2, 5, seed=4, kept=True)
    with torch.no_grad():
        y_coarse, y_fine = conv(coarse), conv(fine)
    assert y_fine.shape == (1, *fine_grid, 3)
    every_other = (slice(None), *(slice(None, None, 2) for _ in grid))
    torch.testing.assert_close(y_fine[every_other], y_coarse, atol=1e-5, rtol=1e-4)


def test_model_runs_at_other_resolutions_with_same_weights():
    model = _model(SMALL_3D)
    x = torch.randn(2, 1, 16, 18, 12, 3)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 16, 18, 12, 3) and torch.isfinite(y).all()
    # Padding scales with the grid so the padded box keeps its physical length.
    assert model.config.padding_for([16, 18, 12]) == [0, 6, 0]
    assert model.config.padding_for(SMALL_3D["grid"]) == [0, 3, 0]
    with pytest.raises(ValueError, match=r"modes\[0\] = 3"):
        model(torch.randn(1, 1, 4, 9, 6, 3))  # 2 * 3 modes do not fit 4 points


def test_rollout_may_feed_the_output_back():
    model = _model(SMALL_2D)
    (x,) = model.example_inputs(2)
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(model(y), model(y.unsqueeze(1)))


def test_wrong_input_shape_is_rejected():
    model = _model(SMALL_2D)
    with pytest.raises(ValueError, match="T_in=1"):
        model(torch.randn(1, 2, 16, 12, 2))
    with pytest.raises(ValueError, match="C=2"):
        model(torch.randn(1, 1, 16, 12, 3))


# ---------------------------------------------------------------------------- normalisation


def _affine(values, a, b=None):
    out = a * torch.tensor(values) + (0.0 if b is None else b)
    return out.tolist()


@pytest.mark.parametrize("separate_out", [False, True], ids=["shared-stats", "out-stats"])
def test_normalisation_makes_units_irrelevant(separate_out):
    """Same weights, inputs in other units (x' = a x + b per channel) and matching statistics
    (mean' = a mean + b, std' = a std, for the input and the output stats): y' = a y + b."""
    stats = {"norm_mean": [0.5, -1.0], "norm_std": [2.0, 0.25]}
    if separate_out:
        stats |= {"out_mean": [0.7, -0.9], "out_std": [1.5, 0.5]}
    a, b = torch.tensor([3.0, 0.1]), torch.tensor([-4.0, 7.0])
    moved = {k: _affine(v, a, b if k.endswith("mean") else None) for k, v in stats.items()}
    model = _model({**SMALL_2D, **stats})
    other = build(KEY, {**SMALL_2D, **moved}).eval()
    other.load_state_dict(model.state_dict())  # weights only: the stats come from the config
    (x,) = model.example_inputs(2)
    with torch.no_grad():
        y, y_other = model(x), other(a * x + b)
    torch.testing.assert_close(y_other, a * y + b, atol=1e-4, rtol=1e-4)


def test_normalisation_comes_from_the_config_not_the_state_dict():
    plain = _model(SMALL_2D)
    assert not any(k.endswith(("_mean", "_std")) for k in plain.state_dict())
    torch.testing.assert_close(plain.in_mean, torch.zeros(2))
    torch.testing.assert_close(plain.out_std, torch.ones(2))
    model = _model({**SMALL_2D, "norm_mean": [1.0, 2.0], "norm_std": [3.0, 4.0]})
    assert model.out_mean.tolist() == [1.0, 2.0] and model.out_std.tolist() == [3.0, 4.0]
    (x,) = model.example_inputs(4096)
    assert torch.allclose(x.mean(dim=(0, 1, 2, 3)), torch.tensor([1.0, 2.0]), atol=0.03)
    assert torch.allclose(x.std(dim=(0, 1, 2, 3)), torch.tensor([3.0, 4.0]), atol=0.03)


# ---------------------------------------------------------------------------- training and tools


def test_gradients_flow_to_every_parameter_and_the_input():
    model = _model(SMALL_3D).train()
    (x,) = model.example_inputs(2)
    x.requires_grad_(True)
    target = torch.randn(2, *SMALL_3D["grid"], 3)
    loss = ((model(x) - target) ** 2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_bf16_autocast_keeps_the_fft_in_fp32():
    model = _model(SMALL_2D)
    (x,) = model.example_inputs(2)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
    assert torch.isfinite(y).all()
    assert ((y.float() - ref).norm() / ref.norm()) < 0.05


def test_int8_dynamic_quantization_round_trip(tmp_path):
    model = _model(SMALL_3D)
    (x,) = model.example_inputs(2)
    qmodel = quantize.apply(model)
    qlinear = quantize._qlinear_type()
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert (
        sum(isinstance(m, qlinear) for m in qmodel.modules()) == n_linear == 1 + 2 + 2
    )  # lift, 2 pointwise, 2 projection
    # The spectral weights are not Linear: they stay float and identical.
    torch.testing.assert_close(qmodel.spectral[1].weight, model.spectral[1].weight)
    with torch.no_grad():
        y, yq = model(x), qmodel(x)
    assert ((yq - y).norm() / y.norm()) < 0.1

    path = quantize.save(qmodel, tmp_path)
    from safetensors.torch import load_file

    saved = load_file(str(path))
    assert saved["spectral.0.weight"].shape == model.spectral[0].weight.shape
    reloaded = quantize.load(build(KEY, json.loads(json.dumps(model.config_dict()))), tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), yq)


# ---------------------------------------------------------------------------- config


def test_config_round_trip_normalises_tuples():
    model = _model({**SMALL_3D, "grid": (8, 9, 6), "lengths": (1, 2, 3), "modes": (3, 3, 2)})
    cfg = model.config_dict()
    assert cfg == json.loads(json.dumps(cfg))
    assert cfg["lengths"] == [1.0, 2.0, 3.0]
    assert build(KEY, cfg).config == model.config


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"grid": [32]}, "grid"),
        ({"grid": [32, 32, 32, 32]}, "grid"),
        ({"lengths": [1.0]}, "lengths"),
        ({"lengths": [1.0, -1.0]}, "lengths"),
        ({"modes": [17, 12]}, r"modes\[0\] = 17"),
        ({"modes": [12, 18]}, r"modes\[1\] = 18"),
        ({"modes": [12, 0]}, "modes"),
        ({"width": 0}, "width"),
        ({"t_in": True}, "t_in"),
        ({"padding": [0]}, "padding"),
        ({"padding": [0, -1]}, "padding"),
        ({"norm_mean": [0.0, 0.0], "norm_std": [1.0, 0.0]}, "norm_std"),
        ({"norm_mean": [0.0], "norm_std": [1.0]}, "norm_mean"),
        ({"norm_mean": [0.0, float("nan")], "norm_std": [1.0, 1.0]}, "norm_mean"),
        ({"norm_mean": [0.0, 1.0]}, "given together"),
        ({"out_std": [1.0, 1.0]}, "given together"),
        ({"out_mean": [0.0, 0.0], "out_std": [1.0, -1.0]}, "out_std"),
    ],
)
def test_bad_config_is_named(overrides, match):
    with pytest.raises(ValueError, match=match):
        build(KEY, overrides)


def test_padding_lets_more_modes_fit():
    # 12 modes on both signs need 24 points: a 20-point wall-normal axis fits once padded by 4.
    with pytest.raises(ValueError, match="padding included"):
        FNOConfig(grid=[32, 20], modes=[12, 12])
    assert FNOConfig(grid=[32, 20], modes=[12, 12], padding=[0, 4]).padded_grid([32, 20]) == [32, 24]


def test_residual_adds_the_last_snapshot():
    """residual=True: the same network's output becomes an increment over the last input snapshot."""
    import models

    cfg = {"grid": [8, 8], "width": 8, "modes": [3, 3], "n_layers": 2, "t_in": 2}
    torch.manual_seed(0)
    plain = models.build("turbulence/fno", cfg)
    resid = models.build("turbulence/fno", {**cfg, "residual": True})
    resid.load_state_dict(plain.state_dict())
    (x,) = plain.example_inputs(3)
    with torch.no_grad():
        torch.testing.assert_close(resid(x), x[:, -1] + plain(x))
    with pytest.raises(ValueError, match="residual must be true or false"):
        models.build("turbulence/fno", {**cfg, "residual": "yes"})
