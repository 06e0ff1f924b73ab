"""IFactFormer (turbulence/ifactformer): parameter counts, shapes, the axial kernels and the reference's quirks.

The parameter counts are those of models.md 4.3 / 4.4 for the paper's 32x33x16 channel
(dim 96, 5 heads of 96, kernel multiplier 3, d_lat 96); the arithmetic is spelled out
next to each constant. Everything else runs on small grids so that the file stays fast
on a shared 2-core machine.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from torch import nn

from models import build
from models.ifactformer import (
    PAPER,
    IFactFormer,
    IFactFormerConfig,
    LowRankKernel,
    apply_rope,
    channel_instance_norm,
    rope_tables,
    rotate_half,
    slice_instance_norm,
)

KEY = "turbulence/ifactformer"
TWO_PI = 2 * math.pi
SMALL_2D = {
    "grid": [32, 32],
    "lengths": [TWO_PI, TWO_PI],
    "n_channels": 2,
    "dim": 32,
    "heads": 2,
    "dim_head": 16,
    "n_layer": 4,
}
TINY_3D = {"grid": [8, 9, 4], "dim": 24, "heads": 2, "dim_head": 8, "latent_dim": 12, "n_layer": 2}

# ---- parameter arithmetic of the paper setting (models.md 4.3), d = 96, H = 5, d_h = 96, m = 3
D, H, DH, M, DLAT, C = 96, 5, 96, 3, 96, 3
LIFT = (
    48 + 48
) + 48 * D  # grouped 1x1 conv 3 -> 48 (1 weight + 1 bias per output), time conv 48 -> 96 no bias
POS_ENC = 2 * 48 * D + D  # Linear(96 -> 96) after [sin, cos] of 48 Fourier features
BLOCK_IN = 2 * D + D * H * DH + D * D  # LayerNorm, W_v (96 -> 480), W_in (96 -> 96)
REDUCERS = 3 * (
    D * D + 2 * D + (D * 2 * D + 2 * D) + (D * DLAT + DLAT)
)  # W_a, LN, Linear(d->2d), Linear(d->d_lat)
KERNELS = 3 * 2 * DLAT * H * M * DH  # per axis W_q, W_k: 96 -> 5 * 288, no bias
TO_OUT = 3 * H * DH * D + D * D  # Linear(1440 -> 96), Linear(96 -> 96), no bias
TO_OUT_1 = 2 * D * D  # original version only: Linear(96 -> 96), GELU, Linear(96 -> 96), no bias
HEAD = D * (D // 2) + (D // 2) * C + C  # Conv1d(96 -> 48) no bias, Conv1d(48 -> 3) with bias
FOURIER_B = 3 * 48  # the frozen Gaussian matrix: a parameter in the reference, a buffer here

HEAD_TRAINABLE = LIFT + POS_ENC + BLOCK_IN + REDUCERS + KERNELS + TO_OUT + HEAD
ORIGINAL_TRAINABLE = HEAD_TRAINABLE + TO_OUT_1


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models on a shared 2-core box: one intra-op thread avoids spin-wait contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(seed: int = 0, **overrides) -> IFactFormer:
    """The paper's 3-D setting (models.md 4.3) with ``overrides``."""
    torch.manual_seed(seed)
    return build(KEY, {**PAPER, **overrides})


def run(model: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(*inputs)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------- parameter counts


def test_paper_parameter_arithmetic():
    assert HEAD_TRAINABLE == 1_163_187
    assert ORIGINAL_TRAINABLE == 1_181_619
    assert ORIGINAL_TRAINABLE - HEAD_TRAINABLE == 18_432  # models.md 4.3: "+18,432"


@pytest.mark.parametrize(
    ("version", "trainable", "reference"),
    [("original", 1_181_619, 1_181_763), ("head", 1_163_187, 1_163_331)],
)
def test_paper_parameter_count(version, trainable, reference):
    """The default config is the paper's; models.md 4.3 gives 1,181,763 (original) and 1,163,331 (HEAD).

    * ``"original"`` (Feb-2025 code, the notebook's printed count and the paper's
      results) = ``"head"`` + ``to_out_1`` (two bias-free 96x96 Linears = 18,432).
    * Both reference numbers are exactly 144 above our trainable count: the reference
      keeps the Fourier matrix ``B`` (3 x 48) as ``nn.Parameter(requires_grad=False)``,
      and its ``count_params`` sums every parameter, frozen or not. Here ``B`` is a
      buffer (saved with the weights, never trained), so ``parameters()`` leaves it out
      and :meth:`IFactFormer.reference_param_count` adds it back. No other layer differs.
    """
    model = make(version=version)
    assert model.config.grid == [32, 33, 16] and model.config.n_layer == 10
    assert n_params(model) == trainable
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable
    assert model.reference_param_count() == reference == trainable + FOURIER_B
    assert model.pos_enc.B.shape == (3, 48)
    assert "pos_enc.B" in model.state_dict()
    assert "pos_enc.B" not in dict(model.named_parameters())

    parts = model.parameter_breakdown()
    expected = {
        "lift": LIFT,
        "pos_enc": POS_ENC,
        "block_in": BLOCK_IN,
        "reducers": REDUCERS,
        "kernels": KERNELS,
        "to_out": TO_OUT,
        "to_out_1": TO_OUT_1 if version == "original" else 0,
        "head": HEAD,
    }
    assert {k: v for k, v in parts.items() if k != "total"} == expected
    assert parts["total"] == trainable


def test_parameters_do_not_depend_on_grid_size():
    # The count depends on the number of axes (one reducer and kernel per axis), not on their lengths.
    assert n_params(make(grid=[16, 17, 8])) == n_params(make())


# ---------------------------------------------------------------------------- shapes


def test_output_shape_2d():
    model = make(**SMALL_2D)
    (x,) = model.example_inputs(2)
    assert x.shape == (2, 1, 32, 32, 2)
    y = run(model, x)
    assert y.shape == (2, 32, 32, 2)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    # A rollout may feed the (B, *grid, C) prediction straight back when t_in == 1.
    torch.testing.assert_close(run(model, x[:, 0]), y)


def test_output_shape_3d_and_time_window():
    model = make(**TINY_3D, t_in=3)
    (x,) = model.example_inputs(2)
    assert x.shape == (2, 3, 8, 9, 4, 3)
    assert run(model, x).shape == (2, 8, 9, 4, 3)
    assert model.lift[2].weight.shape == (24, 12, 3, 1)  # time conv: kernel (T_in, 1) over the window


@pytest.mark.parametrize("shape", [(2, 1, 32, 31, 2), (2, 1, 32, 32, 3), (2, 2, 32, 32, 2), (32, 32, 2)])
def test_wrong_input_shape_is_named(shape):
    model = make(**SMALL_2D)
    with pytest.raises(ValueError, match="expects x of shape"):
        model(torch.zeros(shape))


def test_lifting_is_grouped_per_component():
    # Output channel o of the grouped 1x1 conv reads only component o // (lift_dim / C).
    model = make(**SMALL_2D)
    conv = model.lift[0]
    assert conv.groups == 2 and conv.weight.shape == (16, 1, 1, 1) and conv.bias is not None
    x = torch.zeros(1, 2, 1, 5)
    x[:, 1] = 1.0  # only component 1 is non-zero
    out = conv(x)[0, :, 0, 0]
    torch.testing.assert_close(out[:8], conv.bias[:8].detach())
    torch.testing.assert_close(out[8:], (conv.weight[8:, 0, 0, 0] + conv.bias[8:]).detach())


# ---------------------------------------------------------------------------- variants


def test_variant_o_vs_m_block_width():
    m2, o2 = make(**SMALL_2D, variant="m"), make(**SMALL_2D, variant="o")
    m3, o3 = make(variant="m"), make(variant="o")
    assert m2.block.to_out[0].in_features == 2 * 2 * 16 and o2.block.to_out[0].in_features == 2 * 16
    assert m3.block.to_out[0].in_features == 3 * 5 * 96 == 1440 and o3.block.to_out[0].in_features == 480
    assert n_params(m3) - n_params(o3) == (3 - 1) * H * DH * D  # only the first output Linear differs
    assert run(o2, *o2.example_inputs(1)).shape == (1, 32, 32, 2)


def _dense_axis(k: torch.Tensor, axis: int, grid: tuple[int, ...]) -> torch.Tensor:
    """The (N, N) matrix of one head's kernel k (N_a, N_a) acting along ``axis`` of a C-ordered grid."""
    mats = [k if a == axis else torch.eye(n, dtype=k.dtype) for a, n in enumerate(grid)]
    out = mats[0]
    for mat in mats[1:]:
        out = torch.kron(out, mat)
    return out


@pytest.mark.parametrize("variant", ["m", "o"])
def test_kernel_application_matches_dense_operators(variant):
    """m = concat over axes of one-axis integrals; o = the separable product K_x (x) K_y (x) K_z."""
    grid = (4, 5, 3)
    model = make(**{**TINY_3D, "grid": list(grid)}, variant=variant).double()
    gen = torch.Generator().manual_seed(0)
    kernels = [torch.randn(1, 2, n, n, generator=gen, dtype=torch.float64) for n in grid]
    v = torch.randn(1, *grid, 2, 8, generator=gen, dtype=torch.float64)  # (B, *grid, H, d_h)
    att = model.block.mix(kernels, v)  # (1, *grid, width)
    n = math.prod(grid)
    for h in range(2):
        vh = v[0, ..., h, :].reshape(n, 8)  # (N, d_h)
        dense = [_dense_axis(kernels[a][0, h], a, grid) for a in range(3)]
        if variant == "m":
            expected = torch.cat([d @ vh for d in dense], dim=-1)  # (N, 3 d_h), per head [x, y, z]
            got = att[0].reshape(n, 2, 3 * 8)[:, h]
        else:
            expected = dense[0] @ dense[1] @ dense[2] @ vh  # (N, d_h)
            got = att[0].reshape(n, 2, 8)[:, h]
        torch.testing.assert_close(got, expected)


# ---------------------------------------------------------------------------- weight sharing


def test_weight_sharing_across_n_layer():
    a, b = make(**SMALL_2D), make(**{**SMALL_2D, "n_layer": 8})
    assert n_params(a) == n_params(b)
    b.load_state_dict(a.state_dict())  # strict: the very same tensors
    (x,) = a.example_inputs(2)
    ya, yb = run(a, x), run(b, x)
    assert not torch.allclose(ya, yb)

    # The forward is u <- u + F(u) / L with one block: rebuild it by hand.
    with torch.no_grad():
        u = a.lift_input(x) + a.positional_encoding()
        for _ in range(4):
            u = u + a.block(u, a.rope()) / 4
        manual = a.head(u) * a.out_std + a.out_mean
    torch.testing.assert_close(manual, ya)


def test_one_block_only():
    model = make(**SMALL_2D)
    blocks = [m for m in model.modules() if type(m).__name__ == "FactorizedBlock"]
    assert len(blocks) == 1
    # Looping the block does not copy it: the parameters are those of a single block.
    assert n_params(model.block) == n_params(make(**{**SMALL_2D, "n_layer": 1}).block)


# ---------------------------------------------------------------------------- rotary embedding


def test_rope_tables_definition():
    coords = torch.tensor([0.0, 0.5, 2.0])
    cos, sin = rope_tables(coords, 8, 1 / 64)
    inv_freq = 10000.0 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    angles = coords.double()[:, None] * 64 * inv_freq  # coordinate / min_freq * inv_freq
    torch.testing.assert_close(cos, torch.cat([angles, angles], -1).cos().float())
    torch.testing.assert_close(sin, torch.cat([angles, angles], -1).sin().float())
    t = torch.arange(1.0, 9.0)
    torch.testing.assert_close(rotate_half(t), torch.tensor([-5.0, -6, -7, -8, 1, 2, 3, 4]))


def test_rope_is_a_rotation_of_pairs_i_and_i_plus_half():
    coords = torch.linspace(0, 4 * math.pi, 7, dtype=torch.float64)
    cos, sin = rope_tables(coords, 12, 1 / 64, dtype=torch.float64)
    t = torch.randn(3, 7, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    r = apply_rope(t, cos, sin)
    pair_norm = lambda z: z[..., :6] ** 2 + z[..., 6:] ** 2  # noqa: E731
    torch.testing.assert_close(pair_norm(r), pair_norm(t))


def test_rope_kernel_depends_only_on_coordinate_differences():
    """q_i . k_j after RoPE depends on x_i - x_j: shifting every coordinate leaves K unchanged."""
    torch.manual_seed(0)
    kernel = LowRankKernel(latent_dim=6, width=12, heads=2, scale=1.0).double()
    phi = torch.randn(2, 9, 6, dtype=torch.float64)
    coords = torch.linspace(0, 2.0, 9, dtype=torch.float64)
    k0 = kernel(phi, *rope_tables(coords, 12, 1 / 64, dtype=torch.float64))
    k1 = kernel(phi, *rope_tables(coords + 0.37, 12, 1 / 64, dtype=torch.float64))
    torch.testing.assert_close(k0, k1)
    # ... whereas stretching the coordinates (other differences) changes it.
    k2 = kernel(phi, *rope_tables(coords * 1.5, 12, 1 / 64, dtype=torch.float64))
    assert not torch.allclose(k0, k2)
    # No softmax, scale 1: a plain bilinear form, so it is linear in each of q and k.
    assert (k0 < 0).any()


def test_kernel_init_and_scale():
    model = make()
    kernel = model.block.kernels[0]
    assert kernel.scale == 1.0  # m = 3 <= 4: the reference keeps scale 1
    fan_in, fan_out = DLAT, H * M * DH
    bound = 0.02 * math.sqrt(6 / (fan_in + fan_out))  # Xavier-uniform, gain 0.02
    assert kernel.to_q.weight.abs().max() <= bound and kernel.to_k.weight.abs().max() <= bound
    assert kernel.to_q.weight.abs().max() > 0.9 * bound
    assert make(kernel_multiplier=5, dim_head=8).block.kernels[0].scale == pytest.approx(1 / math.sqrt(40))


def test_model_coordinates_are_uniform_linspace():
    model = make()
    xs, ys, zs = model.coordinates()
    torch.testing.assert_close(xs, torch.linspace(0, 4 * math.pi, 32))
    torch.testing.assert_close(ys, torch.linspace(0, 2, 33))  # wall-normal passed as uniform (models.md 4.3)
    torch.testing.assert_close(zs, torch.linspace(0, 4 * math.pi / 3, 16))
    assert model.rope()[1][0].shape == (33, 288)


# ---------------------------------------------------------------------------- the two versions


def test_original_instance_norm_normalises_each_x_slice():
    """The Feb-2025 code applied InstanceNorm3d(C) to a channel-last (B, X, Y, Z, C) tensor."""
    u = torch.randn(2, 4, 5, 3, 6, generator=torch.Generator().manual_seed(0)) * 3 + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that dim 1 (X = 4) is not num_features (6)
        literal = nn.InstanceNorm3d(6)(u)  # exactly the reference's call
    quirk = slice_instance_norm(u)
    torch.testing.assert_close(quirk, literal)
    # Per (sample, x-slice): zero mean, unit variance over (y, z, channels) together ...
    torch.testing.assert_close(quirk.mean(dim=(2, 3, 4)), torch.zeros(2, 4), atol=1e-5, rtol=0)
    torch.testing.assert_close(quirk.var(dim=(2, 3, 4), unbiased=False), torch.ones(2, 4), atol=1e-3, rtol=0)
    # ... but not per channel, which is what the HEAD code does.
    assert quirk.mean(dim=(1, 2, 3)).abs().max() > 1e-2

    fixed = channel_instance_norm(u)
    torch.testing.assert_close(fixed, nn.InstanceNorm3d(6)(u.movedim(-1, 1)).movedim(1, -1))
    torch.testing.assert_close(fixed.mean(dim=(1, 2, 3)), torch.zeros(2, 6), atol=1e-5, rtol=0)
    assert not torch.allclose(quirk, fixed, atol=1e-2)


def test_versions_differ_in_norm_and_to_out_1_only():
    original, head = make(**SMALL_2D, version="original"), make(**SMALL_2D, version="head")
    assert isinstance(original.block.to_out_1, nn.Sequential) and head.block.to_out_1 is None
    missing, unexpected = original.load_state_dict(head.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("block.to_out_1.") for k in missing) and missing
    (x,) = head.example_inputs(1)
    assert not torch.allclose(run(original, x), run(head, x))
    original.block.to_out_1 = nn.Identity()  # left: the norm alone still changes the output
    assert not torch.allclose(run(original, x), run(head, x))


def test_2d_original_norm_uses_channel_last_dim_1_too():
    model = make(**SMALL_2D, version="original")
    u = torch.randn(1, 32, 32, model.config.attn_width)
    torch.testing.assert_close(slice_instance_norm(u).mean(dim=(2, 3)), torch.zeros(1, 32), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------- the pooled sub-functions


def test_pooling_before_projection_equals_reference_order():
    """The reference averages Z W_a over the other axes; we average first (W_in and W_a have no bias)."""
    model = make(**TINY_3D).double()
    block = model.block
    u = torch.randn(2, 8, 9, 4, 24, dtype=torch.float64)
    with torch.no_grad():
        h = block.in_norm(u)
        z = block.to_in(h)  # (B, X, Y, Z, d): the reference's Z
        for a, others in enumerate([(2, 3), (1, 3), (1, 2)]):
            reducer = block.reducers[a]
            ref_pooled = reducer.to_in(z).mean(dim=others)  # reference: project every point, then pool
            ours = reducer(block.to_in(h.mean(dim=others)))
            hidden = reducer.norm(ref_pooled)
            gate_a, gate_b = reducer.ff_in(hidden).chunk(2, dim=-1)
            reference = reducer.ff_out(torch.nn.functional.gelu(gate_a) * gate_b)
            torch.testing.assert_close(ours, reference)
            assert ours.shape == (2, u.shape[1 + a], model.config.latent_dim)


# ---------------------------------------------------------------------------- normalisation and units


def test_affine_change_of_units_is_equivariant():
    """With matching statistics, a per-channel change of units y = a x + b commutes with the model."""
    a = torch.tensor([2.5, 0.5])
    b = torch.tensor([-1.0, 3.0])
    mean, std = [0.3, -0.2], [1.5, 0.8]
    model = make(**SMALL_2D, norm_mean=mean, norm_std=std)
    scaled = make(
        **SMALL_2D,
        norm_mean=(a * torch.tensor(mean) + b).tolist(),
        norm_std=(a * torch.tensor(std)).tolist(),
        seed=5,
    )
    scaled.load_state_dict(model.state_dict())  # the statistics come from the config, not the weights
    (x,) = model.example_inputs(2)
    torch.testing.assert_close(run(scaled, a * x + b), a * run(model, x) + b, rtol=1e-4, atol=1e-4)


def test_normalisation_buffers_apply_in_and_out():
    plain = make(**SMALL_2D)
    normed = make(
        **SMALL_2D, norm_mean=[1.0, 2.0], norm_std=[2.0, 4.0], out_mean=[0.5, -0.5], out_std=[3.0, 1.0]
    )
    normed.load_state_dict(plain.state_dict())
    (z,) = plain.example_inputs(2)
    x = z * torch.tensor([2.0, 4.0]) + torch.tensor([1.0, 2.0])  # physical units
    expected = run(plain, z) * torch.tensor([3.0, 1.0]) + torch.tensor([0.5, -0.5])
    torch.testing.assert_close(run(normed, x), expected)
    assert not any(k.endswith(("in_mean", "in_std", "out_mean", "out_std")) for k in normed.state_dict())
    assert normed.example_inputs(64)[0].mean(dim=(0, 1, 2, 3)).sub(torch.tensor([1.0, 2.0])).abs().max() < 0.1


# ---------------------------------------------------------------------------- training and reproducibility


@pytest.mark.parametrize("overrides", [SMALL_2D, {**TINY_3D, "variant": "o", "version": "head"}])
def test_gradients_reach_every_parameter(overrides):
    model = make(**overrides).train()
    (x,) = model.example_inputs(2)
    target = torch.randn(x.shape[:1] + x.shape[2:], generator=torch.Generator().manual_seed(1))
    out = model(x)
    loss = (
        torch.linalg.vector_norm((out - target).flatten(1), dim=1)
        / torch.linalg.vector_norm(target.flatten(1), dim=1)
    ).mean()  # the reference's relative L2
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, f"{name} has an all-zero gradient"
    assert model.pos_enc.B.grad is None


def test_fourier_matrix_is_reproducible_from_the_config():
    torch.manual_seed(123)
    a = build(KEY, SMALL_2D)
    torch.manual_seed(456)
    b = build(KEY, SMALL_2D)
    torch.testing.assert_close(a.pos_enc.B, b.pos_enc.B, rtol=0, atol=0)  # independent of the global RNG
    assert a.pos_enc.B.shape == (2, 16)
    assert abs(a.pos_enc.B.std().item() - 8.0) < 3.0  # N(0, sigma^2), sigma = 8
    other = make(**SMALL_2D, seed_fourier=1)
    assert not torch.equal(other.pos_enc.B, a.pos_enc.B)
    assert not torch.equal(make(**SMALL_2D, fourier_sigma=2.0).pos_enc.B, a.pos_enc.B)


def test_config_dict_round_trip():
    model = make(**SMALL_2D, norm_mean=[0.1, 0.2], norm_std=[1.0, 2.0], variant="o")
    cfg = json.loads(json.dumps(model.config_dict()))
    clone = build(KEY, cfg)
    assert clone.config == model.config
    torch.testing.assert_close(clone.pos_enc.B, model.pos_enc.B, rtol=0, atol=0)
    clone.load_state_dict(model.state_dict())
    (x,) = model.example_inputs(2)
    torch.testing.assert_close(run(clone, x), run(model, x), rtol=0, atol=0)
    # The paper box lengths survive JSON exactly.
    assert json.loads(json.dumps(make().config_dict()))["lengths"] == [4 * math.pi, 2.0, 4 * math.pi / 3]


def test_bf16_autocast_keeps_the_fourier_angles_in_float32():
    model = make(**SMALL_2D).eval()
    with torch.no_grad():
        pe = model.positional_encoding()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pe_bf16 = model.positional_encoding()
            y = model(*model.example_inputs(1))
    assert pe_bf16.dtype == torch.float32
    torch.testing.assert_close(pe_bf16, pe)
    assert y.shape == (1, 32, 32, 2) and torch.isfinite(y).all()


def test_same_seed_same_model():
    x = make(**SMALL_2D).example_inputs(1)[0]
    torch.testing.assert_close(run(make(**SMALL_2D), x), run(make(**SMALL_2D), x), rtol=0, atol=0)


def test_int8_dynamic_quantization():
    from tasks.compress import quantize_eager as quantize

    model = make(**SMALL_2D).eval()
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    q = quantize.apply(model)
    assert not any(isinstance(m, nn.Linear) for m in q.modules())
    # pos_enc, W_v + W_in, 3 per reducer and 2 per kernel on 2 axes, to_out, to_out_1, head
    assert n_linear == 1 + 2 + 2 * (3 + 2) + 2 + 2 + 2
    (x,) = model.example_inputs(2)
    y, yq = run(model, x), run(q, x)
    assert torch.isfinite(yq).all()
    assert ((yq - y).norm() / y.norm()).item() < 0.1


# ---------------------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"grid": [32]}, "grid"),
        ({"grid": [4, 4, 4, 4]}, "grid"),
        ({"grid": [32, 32, 16]}, "lengths"),  # the default's two lengths do not fit a 3-D grid
        ({"lengths": [1.0, -2.0, 1.0]}, "lengths"),
        ({"variant": "x"}, "variant"),
        ({"version": "new"}, "version"),
        ({"dim": 32}, "lift_dim"),  # dim // 2 = 16 channels cannot be split into 3 groups
        ({"norm_mean": [0.0, 0.0, 0.0]}, "together"),
        ({"norm_mean": [0.0], "norm_std": [1.0]}, "norm_mean"),
        ({"norm_mean": [0.0] * 3, "norm_std": [1.0, 0.0, 1.0]}, "norm_std"),
        ({"n_layer": 0}, "n_layer"),
        ({"heads": True}, "heads"),
        ({"fourier_sigma": 0}, "fourier_sigma"),
    ],
)
def test_bad_config_is_named(overrides, match):
    """Each bad value on top of the paper's 3-D setting (except the grid/lengths mismatch) names its field."""
    base = {} if "grid" in overrides else PAPER
    with pytest.raises(ValueError, match=match):
        IFactFormerConfig(**{**base, **overrides})


def test_optional_widths():
    model = make(**SMALL_2D, lift_dim=8, fourier_features=5)
    assert model.lift[0].out_channels == 8 and model.pos_enc.proj.in_features == 10
    assert run(model, *model.example_inputs(1)).shape == (1, 32, 32, 2)


def test_residual_adds_the_last_snapshot():
    """residual=True (our CPU-budget default, not the paper's): output = last snapshot + increment."""
    import models

    cfg = {"grid": [8, 6], "dim": 16, "heads": 1, "dim_head": 8, "latent_dim": 8, "n_layer": 2, "t_in": 2}
    torch.manual_seed(0)
    plain = models.build("turbulence/ifactformer", cfg)
    resid = models.build("turbulence/ifactformer", {**cfg, "residual": True})
    resid.load_state_dict(plain.state_dict())
    (x,) = plain.example_inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(resid(x), x[:, -1] + plain(x))
