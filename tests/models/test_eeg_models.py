"""EEG models (DBConformer, EEGNet, ShallowConvNet, EEG Conformer): shapes, gradients, parameter counts, quirks.

Parameter counts are checked exactly against the arithmetic on the layer shapes of
models.md 1.4 (D = 40, BNCI2014001 = 22 channels x 1001 samples, two classes):

* Conformer block: 2 LN (2 * 80) + MHA (4 * (40*40 + 40)) + FFN (40*160 + 160 + 160*40 + 40)
  = 160 + 6,560 + 13,000 = 19,720.
* DBConformer: stem 22*40 + 80 + 40*63 + 80 = 3,560; spatial embed 16*25 + 16 + 16*40 + 40 = 1,096;
  positions (8 + 22) * 40 = 1,200; 4 blocks = 78,880; channel attention 40*40 + 40 + 40 + 1 = 1,681;
  head 80*64 + 64 + 64*32 + 32 + 32*2 + 2 = 7,330; total 93,747.
* EEG Conformer: stem 40*25 + 40 + 40*40*22 + 40 + 80 + 40*40 + 40 = 38,000; 6 blocks = 118,320;
  N = (1001 - 24 - 75) // 15 + 1 = 61 tokens, head 2440*256 + 256 + 256*32 + 32 + 32*2 + 2 = 633,186;
  total 789,506 (models.md's "789.5 K plus 162": the reference's unused LN + Linear(40, 2) head).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from models import build, get, list_models
from models.dbconformer import ConformerAttention, ConformerBlock, DBConformer, EEGConfig, eeg_input
from models.eegnet import MaxNormConv2d, MaxNormLinear
from models.layers import count_parameters

KEYS = ["eeg/dbconformer", "eeg/eegnet", "eeg/shallowconvnet", "eeg/eegconformer"]
BNCI2014001 = {"n_chans": 22, "n_times": 1001, "sfreq": 250, "n_outputs": 2}
SHAPES = {
    "defaults": {},
    "bnci2014001": BNCI2014001,
    # an odd shape: 3 channels (BNCI2014004), 1126 samples, 4 classes
    "bnci2014004_4class": {"n_chans": 3, "n_times": 1126, "sfreq": 250, "n_outputs": 4},
}

BLOCK = 19_720
DBCONFORMER_BNCI2014001 = 93_747
EEGCONFORMER_BNCI2014001 = 789_506


def make(key: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return build(key, overrides)


# ---------------------------------------------------------------------------- every model


def test_all_four_are_registered():
    assert set(KEYS) <= set(list_models("eeg"))


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("key", KEYS)
def test_forward_shape_and_finite_gradients(key, shape):
    model = make(key, **shape).train()
    cfg = model.config
    (x,) = model.example_inputs(3)
    assert x.shape == (3, cfg.n_chans, cfg.n_times) and x.dtype == torch.float32
    out = model(x)
    assert out.shape == (3, cfg.n_outputs) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient (unused parameter?)"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("key", KEYS)
def test_shared_constructor_vocabulary(key):
    cls = get(key)
    assert issubclass(cls.Config, EEGConfig)
    names = [f.name for f in dataclasses.fields(cls.Config)]
    assert names[:4] == ["n_chans", "n_times", "sfreq", "n_outputs"]
    assert cls.Config() == cls.Config(**BNCI2014001)  # defaults = BNCI2014001
    assert isinstance(cls.Config(sfreq=250).sfreq, float)


def test_every_eeg_model_speaks_the_vocabulary():
    # Also covers eeg models registered later by others.
    for key in list_models("eeg"):
        fields = {f.name for f in dataclasses.fields(get(key).Config)}
        assert {"n_chans", "n_times", "sfreq", "n_outputs"} <= fields, key


@pytest.mark.parametrize("key", KEYS)
def test_accepts_reference_layout_and_rejects_wrong_shapes(key):
    model = make(key).eval()
    (x,) = model.example_inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x.unsqueeze(1)), model(x))  # (B, 1, C, T) == (B, C, T)
        with pytest.raises(ValueError, match="expected x of shape"):
            model(x[:, :-1])
        with pytest.raises(ValueError, match="expected x of shape"):
            model(x[..., :-1])


@pytest.mark.parametrize("key", KEYS)
def test_bf16_autocast(key):
    model = make(key).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*model.example_inputs(2))
    assert out.shape == (2, 2) and torch.isfinite(out.float()).all()


@pytest.mark.parametrize(
    "key, field, value",
    [
        ("eeg/dbconformer", "n_chans", 0),
        ("eeg/dbconformer", "n_outputs", True),
        ("eeg/dbconformer", "sfreq", -1.0),
        ("eeg/dbconformer", "attn_scale", "sqrt"),
        ("eeg/dbconformer", "n_heads", 7),  # 40 % 7 != 0
        ("eeg/dbconformer", "n_times", 100),  # shorter than one patch
        ("eeg/dbconformer", "dropout", 1.0),
        ("eeg/dbconformer", "pos_embed", "yes"),
        ("eeg/eegnet", "F1", 0),
        ("eeg/eegnet", "kernel_length", 0),
        ("eeg/eegnet", "n_times", 31),
        ("eeg/eegnet", "max_norm", 1),
        ("eeg/shallowconvnet", "pool_time_stride", 0),
        ("eeg/shallowconvnet", "n_times", 98),
        ("eeg/eegconformer", "depth", -1),
        ("eeg/eegconformer", "n_times", 98),
        ("eeg/eegconformer", "attn_scale", "none"),
    ],
)
def test_config_rejects_bad_values(key, field, value):
    with pytest.raises(ValueError, match=field):
        build(key, {field: value})


def test_config_error_lists_allowed_values():
    with pytest.raises(ValueError, match=r"\['emb', 'head'\]"):
        build("eeg/dbconformer", {"attn_scale": "x"})


# ---------------------------------------------------------------------------- parameter counts


def test_conformer_block_parameters():
    block = ConformerBlock(40, 10, 0.5)
    assert count_parameters(block.attn) == 6_560
    assert count_parameters(block.ffn) == 13_000
    assert count_parameters(block) == BLOCK


def test_dbconformer_bnci2014001_breakdown():
    model = make("eeg/dbconformer", **BNCI2014001)
    assert model.parameter_breakdown() == {
        "stem": 3_560,
        "spatial_embed": 1_096,
        "pos_emb": 1_200,
        "transformers": 4 * BLOCK,
        "chan_attn": 1_681,
        "head": 7_330,
        "total": DBCONFORMER_BNCI2014001,
    }
    # The derived count is exact arithmetic on the layer shapes, so the test is exact; against the
    # rounded "93.7 K" of the summary the tolerance is the rounding (0.05 K).
    assert count_parameters(model) == DBCONFORMER_BNCI2014001
    assert abs(count_parameters(model) - 93_700) <= 50


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"n_chans": 3, "n_times": 1126}, 92_267),  # BNCI2014004
        ({"n_chans": 14, "n_times": 1251}, 93_187),  # Zhou2016
        ({"n_chans": 14, "n_times": 1251, "tem_depth": 6, "chn_depth": 6}, 250_947),
        ({"n_chans": 59, "n_times": 750}, 96_627),  # Blankertz2007: no sample dropped, P = 6
        ({"n_chans": 59, "n_times": 750, "tem_depth": 6, "chn_depth": 6}, 254_387),
        (
            {"n_chans": 15, "n_times": 2561, "sfreq": 512, "patch_size": 128, "tem_depth": 4, "chn_depth": 4},
            172_547,
        ),
        ({"n_chans": 15, "n_times": 2561, "sfreq": 512, "patch_size": 128}, 93_667),  # BNCI2014002
        (
            {"n_chans": 15, "n_times": 2561, "sfreq": 512, "patch_size": 128, "tem_depth": 6, "chn_depth": 6},
            251_427,
        ),
    ],
)
def test_dbconformer_counts_match_models_md_table(overrides, expected):
    assert count_parameters(build("eeg/dbconformer", overrides)) == expected


def test_eegconformer_parameters_and_eight_times_claim():
    model = make("eeg/eegconformer", **BNCI2014001)
    assert model.config.n_tokens == 61 and model.head[0].in_features == 2_440
    assert count_parameters(model.blocks) == 6 * BLOCK
    assert count_parameters(model) == EEGCONFORMER_BNCI2014001
    assert abs(count_parameters(model) - 789_500) <= 50  # models.md: "≈789.5 K"
    db = count_parameters(make("eeg/dbconformer", **BNCI2014001))
    ratio = count_parameters(model) / db
    assert ratio > 8, "paper: DBConformer has > 8x fewer parameters than EEG Conformer"
    assert round(ratio, 1) == 8.4  # models.md 1.4


def test_baseline_parameter_counts():
    # ShallowConvNet: 40*25 + 40 + 40*40*22 (no bias) + 80 (BN) + 40*61*2 + 2
    assert count_parameters(make("eeg/shallowconvnet", **BNCI2014001)) == 41_202
    # EEGNet-8,2 at 250 Hz (K1 = 125, K2 = 31): 8*125 + 16 + 16*22 + 32 + 16*31 + 16*16 + 32 + 16*31*2 + 2
    assert count_parameters(make("eeg/eegnet", **BNCI2014001)) == 3_178
    # literal EEGNet-8,2 at 128 Hz kernels: 8*64 + 16 + 16*22 + 32 + 16*16 + 16*16 + 32 + 16*31*2 + 2
    literal = make("eeg/eegnet", kernel_length=64, separable_kernel_length=16)
    assert count_parameters(literal) == 2_450


# ---------------------------------------------------------------------------- DBConformer quirks


def test_attention_scales_scores_by_sqrt_emb_size():
    torch.manual_seed(0)
    attn = ConformerAttention(40, 10, dropout=0.5).eval()
    assert attn.head_dim == 4 and attn.scale == pytest.approx(1 / math.sqrt(40))
    x = torch.randn(2, 7, 40)

    def by_hand(divisor: float) -> torch.Tensor:
        q = attn.query(x).view(2, 7, 10, 4)
        k = attn.key(x).view(2, 7, 10, 4)
        v = attn.value(x).view(2, 7, 10, 4)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / divisor
        o = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(2, 7, 40)
        return attn.proj(o)

    with torch.no_grad():
        out = attn(x)
        torch.testing.assert_close(out, by_hand(math.sqrt(40)))
        assert not torch.allclose(out, by_hand(2.0), atol=1e-4)  # not sqrt(head_dim)
        textbook = ConformerAttention(40, 10, dropout=0.5, scale="head").eval()
        textbook.load_state_dict(attn.state_dict())
        torch.testing.assert_close(textbook(x), by_hand(2.0))


@pytest.mark.parametrize("key", ["eeg/dbconformer", "eeg/eegconformer"])
def test_models_use_ten_heads_and_the_quirk(key):
    attns = [m for m in make(key).modules() if isinstance(m, ConformerAttention)]
    assert attns and all(a.n_heads == 10 and a.scale == pytest.approx(40**-0.5) for a in attns)
    assert all(a.dropout == 0.5 for a in attns)


def test_block_is_pre_ln_with_residuals():
    torch.manual_seed(0)
    block = ConformerBlock(40, 10, 0.5).eval()
    x = torch.randn(2, 5, 40)
    with torch.no_grad():
        h = x + block.attn(block.norm1(x))
        torch.testing.assert_close(block(x), h + block.ffn(block.norm2(h)))


def test_dbconformer_structure_and_init():
    model = make("eeg/dbconformer")
    assert len(model.temporal_blocks) == 2 and len(model.spatial_blocks) == 2
    assert model.pos_t.shape == (1, 8, 40) and model.pos_s.shape == (1, 22, 40)
    # randn positional embeddings: std ~1, far from the usual 0.02
    assert 0.8 < torch.cat([model.pos_t.flatten(), model.pos_s.flatten()]).std() < 1.2
    assert model.temporal_embed.depthwise.weight.std() < 0.02  # trunc-normal(0.01) in the stem only
    assert model.temporal_embed.pointwise.bias is None and model.temporal_embed.depthwise.bias is None
    dropouts = {m.p for m in model.modules() if isinstance(m, nn.Dropout)}
    assert dropouts == {0.5, 0.3}
    assert make("eeg/dbconformer", pos_embed=False).pos_t is None


def test_channel_attention_weights_sum_to_one():
    model = make("eeg/dbconformer").eval()
    (x,) = model.example_inputs(4)
    assert model.last_channel_weights is None
    with torch.no_grad():
        out = model(x)
    w = model.last_channel_weights
    assert w.shape == (4, 22) and not w.requires_grad
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(dim=1), torch.ones(4))
    torch.testing.assert_close(model.channel_weights(x), w)
    # the spatial summary is the weighted sum of the channel tokens
    with torch.no_grad():
        s = model.spatial_blocks(model.spatial_embed(x) + model.pos_s)
        z, _ = model.forward_features(x)
        torch.testing.assert_close(z[:, 40:], (w.unsqueeze(-1) * s).sum(1))
        torch.testing.assert_close(model.head(z), out)


def test_dropping_the_last_sample_is_a_no_op():
    # The reference crops T = 1001 to 1000 after the stem's convs; floor pooling already ignores it.
    model = make("eeg/dbconformer").eval()
    emb = model.temporal_embed
    (x,) = model.example_inputs(2)
    with torch.no_grad():
        h = nn.functional.gelu(emb.bn2(emb.depthwise(emb.bn1(emb.pointwise(x)))))  # (B, D, 1001)
        cropped = nn.functional.avg_pool1d(h[..., :-1], 125).transpose(1, 2)  # (B, 8, D)
        torch.testing.assert_close(emb(x), cropped)


def test_spatial_embedding_is_shared_across_channels():
    # Swapping two channels swaps their tokens: the conv is shared, only pos_s tells electrodes apart.
    model = make("eeg/dbconformer").eval()
    (x,) = model.example_inputs(2)
    perm = torch.arange(22)
    perm[[0, 5]] = perm[[5, 0]]
    with torch.no_grad():
        torch.testing.assert_close(model.spatial_embed(x[:, perm]), model.spatial_embed(x)[:, perm])


def test_dbconformer_with_zero_depth_and_textbook_scale_builds():
    model = make("eeg/dbconformer", tem_depth=0, chn_depth=1, attn_scale="head")
    assert count_parameters(model) == DBCONFORMER_BNCI2014001 - 3 * BLOCK
    assert model(*model.example_inputs(2)).shape == (2, 2)


def test_dbconformer_rejects_wrong_config_type():
    with pytest.raises(TypeError, match="DBConformerConfig"):
        DBConformer(get("eeg/eegnet").Config())


def test_eeg_input_helper():
    cfg = EEGConfig(n_chans=4, n_times=10)
    x = torch.zeros(2, 1, 4, 10)
    assert eeg_input(x, cfg).shape == (2, 4, 10)
    with pytest.raises(ValueError):
        eeg_input(torch.zeros(2, 2, 4, 10), cfg)


# ---------------------------------------------------------------------------- baselines


def test_eegnet_kernels_follow_sfreq():
    assert make("eeg/eegnet", sfreq=128).temporal_conv.kernel_size == (1, 64)
    assert make("eeg/eegnet", sfreq=128).separable_depthwise.kernel_size == (1, 16)
    assert make("eeg/eegnet").temporal_conv.kernel_size == (1, 125)
    # Keras "same" padding: the even kernel's extra zero goes on the right, length is kept
    model = make("eeg/eegnet", sfreq=128)
    assert model.pad1.padding == (31, 32, 0, 0)


def test_eegnet_max_norm_constraints():
    model = make("eeg/eegnet")
    assert isinstance(model.spatial_conv, MaxNormConv2d) and isinstance(model.classifier, MaxNormLinear)
    with torch.no_grad():
        model.spatial_conv.weight.mul_(100)
        model.classifier.weight.mul_(100)
        before = model.spatial_conv.weight.clone()
    model.eval()
    model(*model.example_inputs(2))
    torch.testing.assert_close(model.spatial_conv.weight, before)  # eval never writes to weights
    model.train()
    model(*model.example_inputs(2))
    assert model.spatial_conv.weight.flatten(1).norm(dim=1).max() <= 1.0 + 1e-5
    assert model.classifier.weight.norm(dim=1).max() <= 0.25 + 1e-6
    plain = make("eeg/eegnet", max_norm=False)
    assert type(plain.spatial_conv) is nn.Conv2d and type(plain.classifier) is nn.Linear
    assert count_parameters(plain) == count_parameters(model)


def test_shallowconvnet_is_log_band_power():
    model = make("eeg/shallowconvnet").eval()
    (x,) = model.example_inputs(2)
    seen = {}
    model.classifier.register_forward_hook(lambda m, args, out: seen.__setitem__("in", args[0]))
    with torch.no_grad():
        model(x)
        h = model.bn(model.spatial_conv(model.temporal_conv(x.unsqueeze(1))).squeeze(2))
        power = nn.functional.avg_pool1d(h**2, 75, 15)
    assert power.shape == (2, 40, 61)
    torch.testing.assert_close(seen["in"], torch.log(power.clamp(min=1e-6)).flatten(1))
    assert model.spatial_conv.bias is None
