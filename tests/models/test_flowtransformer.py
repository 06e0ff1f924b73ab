"""FlowTransformer: every encoding x transformer x head, parameter counts, and the reference's quirks.

Parameter counts are derived from the layer definitions in models.md 2.9 (d = 64 from
RecordLevelEmbed(64)); the arithmetic is spelled out next to each constant.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from models import build
from models.flowtransformer import (
    DecoderBlock,
    EncoderBlock,
    FlowInputEncoding,
    FlowTransformer,
    FlowTransformerConfig,
    PreLNDecoderBlock,
    PreLNEncoderBlock,
    count_parameters,
    transformer_parameters,
)
from models.layers import KerasMultiHeadAttention

KEY = "netflow/flowtransformer"
ENCODINGS = ["none", "record", "categorical"]
TRANSFORMERS = ["basic", "gpt", "bert"]
HEADS = ["last", "cls", "gap", "flatten", "featurewise"]


def make(**overrides) -> FlowTransformer:
    torch.manual_seed(0)
    return build(KEY, overrides)


def small(transformer: str, **overrides) -> FlowTransformer:
    """gpt/bert cut to 2 blocks to keep the sweep fast; the presets are used by the count tests."""
    if transformer != "basic":
        overrides.setdefault("n_layers", 2)
    return make(transformer=transformer, **overrides)


def check_forward_backward(model: FlowTransformer, batch_size: int = 2) -> None:
    model.train()
    x_num, x_cat = model.example_inputs(batch_size)
    out = model(x_num, x_cat)
    assert out.shape == (batch_size, model.config.n_outputs)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights).sum().backward()
    for name, p in model.named_parameters():
        assert p.requires_grad, name
        assert p.grad is not None, f"{name} got no gradient (unused parameter?)"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


def transformer_input_and_output(model: FlowTransformer, x_num, x_cat):
    seen = {}
    h1 = model.transformer.register_forward_pre_hook(lambda m, args: seen.__setitem__("in", args[0]))
    h2 = model.transformer.register_forward_hook(lambda m, args, out: seen.__setitem__("out", out))
    try:
        logits = model(x_num, x_cat)
    finally:
        h1.remove()
        h2.remove()
    return seen["in"], seen["out"], logits


# ---------------------------------------------------------------------------- sweep


@pytest.mark.parametrize("n_outputs", [1, 5])
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("transformer", TRANSFORMERS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_reference_combination_forward_backward(encoding, transformer, head, n_outputs):
    model = small(transformer, encoding=encoding, head=head, n_outputs=n_outputs)
    check_forward_backward(model)


@pytest.mark.parametrize("n_outputs", [1, 5])
@pytest.mark.parametrize("cat_embed_mode", ["dense", "projection", "lookup"])
def test_categorical_embed_modes(cat_embed_mode, n_outputs):
    model = make(encoding="categorical", cat_embed_mode=cat_embed_mode, n_outputs=n_outputs)
    assert model.encoding.out_dim == 28 + 9 * 16 == 172
    check_forward_backward(model)


@pytest.mark.parametrize(
    "overrides",
    [
        {"embed_bias": False},
        {"head": "featurewise", "featurewise_bias": False},
        {"mlp_sizes": [], "mlp_dropout": 0.0},
        {"mlp_sizes": [32, 16]},
        {"categorical_levels": [], "encoding": "categorical"},
        {"n_numeric": 0, "encoding": "none", "categorical_levels": [5, 7]},
        {"window": 1, "head": "cls"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_other_options(overrides):
    check_forward_backward(make(**overrides))


@pytest.mark.parametrize("head", ["last", "cls", "featurewise"])
@pytest.mark.parametrize("transformer", TRANSFORMERS)
def test_clean_variant_forward_backward(transformer, head):
    model = small(transformer, head=head, variant="clean", n_outputs=5)
    check_forward_backward(model)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_clean_variant_other_encodings(encoding):
    check_forward_backward(make(encoding=encoding, variant="clean", cat_embed_mode="lookup"))


# ---------------------------------------------------------------------------- parameter counts

# Encoder block, d=64, 2 heads, key_dim=128 (per head), inner=128:
#   MHA  = 3 * (64*256 + 256) + (256*64 + 64) = 3*16,640 + 16,448 = 66,368
#   LN   = 2 * (64 + 64)                                         =    256
#   FFN  = (64*128 + 128) + (128*64 + 64)  = 8,320 + 8,256        = 16,576
BASIC_MHA, BASIC_FFN, LN2X = 66_368, 16_576, 256
BASIC_BLOCK = BASIC_MHA + LN2X + BASIC_FFN  # 83,200
# BERT-small encoder block, 12 heads, key_dim=768 (per head -> 9,216 wide), inner=768:
#   MHA  = 3 * (64*9216 + 9216) + (9216*64 + 64) = 3*599,040 + 589,888 = 2,387,008
#   FFN  = (64*768 + 768) + (768*64 + 64) = 49,920 + 49,216             =    99,136
BERT_MHA, SMALL_FFN = 2_387_008, 99_136
BERT_BLOCK = BERT_MHA + SMALL_FFN + LN2X  # 2,486,400
# GPT-small decoder block, 12 heads, key_dim=d=64 (768 wide), inner=768, one shared MHA, two LNs:
#   MHA  = 3 * (64*768 + 768) + (768*64 + 64) = 3*49,920 + 49,216 = 198,976
GPT_MHA = 198_976
GPT_BLOCK = GPT_MHA + SMALL_FFN + LN2X  # 298,368
# RecordLevelEmbed(64) on F = 28 + 9*33 = 325 inputs: 325*64 + 64
RECORD_EMBED = 20_864
# Last-token head: MLP Dense(64->128) + Dense(128->1)
LAST_HEAD_MLP = 64 * 128 + 128 + 129  # 8,449


def test_parameter_count_arithmetic():
    assert BASIC_BLOCK == 83_200
    assert BERT_BLOCK == 2_486_400 and 12 * BERT_BLOCK == 29_836_800
    assert GPT_BLOCK == 298_368 and 12 * GPT_BLOCK == 3_580_416
    assert RECORD_EMBED == (28 + 9 * 33) * 64 + 64
    assert LAST_HEAD_MLP == 8_449


def test_basic_transformer_parameter_counts():
    model = make()
    for block in model.transformer:
        assert isinstance(block, EncoderBlock)
        assert count_parameters(block.attn) == BASIC_MHA
        assert count_parameters(block.ffn) == BASIC_FFN
        assert count_parameters(block) == BASIC_BLOCK == 83_200
    assert transformer_parameters(model) == 2 * BASIC_BLOCK == 166_400
    assert count_parameters(model.encoding) == RECORD_EMBED == 20_864
    assert count_parameters(model.mlp) == LAST_HEAD_MLP
    assert count_parameters(model.head) == 0
    assert count_parameters(model) == RECORD_EMBED + 166_400 + LAST_HEAD_MLP


def test_bert_small_parameter_counts():
    model = make(transformer="bert")
    assert len(model.transformer) == 12
    block = model.transformer[0]
    assert isinstance(block, EncoderBlock)
    assert block.attn.key_dim == 768 and block.attn.num_heads == 12
    assert count_parameters(block.attn) == BERT_MHA
    assert count_parameters(block) == BERT_BLOCK == 2_486_400
    assert transformer_parameters(model) == 29_836_800


def test_gpt_small_parameter_counts():
    model = make(transformer="gpt")
    assert len(model.transformer) == 12
    block = model.transformer[0]
    assert isinstance(block, DecoderBlock)
    assert block.attn.key_dim == 64 and block.attn.num_heads == 12
    assert count_parameters(block.attn) == GPT_MHA
    assert count_parameters(block) == GPT_BLOCK == 298_368
    assert transformer_parameters(model) == 3_580_416


def test_embedding_parameter_counts():
    assert count_parameters(make(embed_bias=False).encoding) == 325 * 64
    assert count_parameters(make(encoding="none").encoding) == 0
    assert count_parameters(make(encoding="categorical").encoding) == 9 * (33 * 16 + 16)
    assert count_parameters(make(encoding="categorical", cat_embed_mode="projection").encoding) == 9 * 33 * 16
    assert count_parameters(make(encoding="categorical", cat_embed_mode="lookup").encoding) == 9 * 33 * 16


def test_head_widths():
    # out_dim of the head = input width of the MLP
    assert make(head="last").head.out_dim == 64
    assert make(head="gap").head.out_dim == 64
    assert make(head="cls").head.out_dim == 65
    assert make(head="flatten").head.out_dim == 8 * 64
    assert make(head="featurewise").head.out_dim == 8
    assert count_parameters(make(head="featurewise").head) == 65
    assert count_parameters(make(head="featurewise", featurewise_bias=False).head) == 64
    assert make(encoding="none").encoding.out_dim == 325


def test_clean_variant_keeps_key_dim_and_counts():
    model = make(variant="clean")
    assert all(isinstance(b, PreLNEncoderBlock) for b in model.transformer[:-1])
    assert isinstance(model.transformer[-1], nn.LayerNorm)
    assert count_parameters(model.transformer[0]) == BASIC_BLOCK  # same layers, different wiring
    assert transformer_parameters(model) == 2 * BASIC_BLOCK + 128  # + final LayerNorm
    gpt = make(transformer="gpt", variant="clean", n_layers=1)
    assert isinstance(gpt.transformer[0], PreLNDecoderBlock)
    assert count_parameters(gpt.transformer[0]) == 2 * GPT_MHA + SMALL_FFN + 3 * 128


# ---------------------------------------------------------------------------- reference quirks


def test_encoder_block_second_residual_adds_attention_output():
    torch.manual_seed(0)
    block = EncoderBlock(d=16, inner=32, n_heads=2, dropout=0.1).eval()
    x = torch.randn(3, 5, 16)
    seen = {}
    block.attn.register_forward_hook(lambda m, args, out: seen.__setitem__("a", out))
    block.ffn.register_forward_hook(lambda m, args, out: seen.__setitem__("f", out))
    out = block(x)
    a, f = seen["a"], seen["f"]
    torch.testing.assert_close(out, block.norm2(a + f))
    # ...and not the textbook residual on the post-LN state
    h = block.norm1(x + a)
    assert not torch.allclose(out, block.norm2(h + f), atol=1e-3)
    # the second FFN layer has a ReLU
    assert isinstance(block.ffn[-1], nn.ReLU) and (f >= 0).all()


def test_encoder_block_with_zero_ffn_is_layernorm_of_attention():
    torch.manual_seed(0)
    block = EncoderBlock(d=16, inner=32, n_heads=2, dropout=0.1).eval()
    with torch.no_grad():
        for p in block.ffn.parameters():
            p.zero_()
    x = torch.randn(2, 4, 16)
    torch.testing.assert_close(block(x), block.norm2(block.attn(x, x)))


def test_decoder_block_reuses_one_mha_and_one_layernorm():
    torch.manual_seed(0)
    block = DecoderBlock(d=16, inner=32, n_heads=2, dropout=0.1).eval()
    assert sum(isinstance(m, KerasMultiHeadAttention) for m in block.modules()) == 1
    assert sum(isinstance(m, nn.LayerNorm) for m in block.modules()) == 2
    assert block.attn.key_dim == 16  # key_dim = d
    assert isinstance(block.ffn[-1], nn.Linear)  # no activation on the FFN's second layer
    calls = []
    block.attn.register_forward_pre_hook(lambda m, args: calls.append(args))
    x = torch.randn(3, 5, 16)
    out = block(x)
    assert len(calls) == 2
    assert calls[0][0] is x and calls[0][1] is x
    assert calls[1][1] is x  # second attention: key/value = block input
    with torch.no_grad():
        out1 = block.norm1(x + block.attn(x, x))
        out2 = block.norm2(out1 + block.attn(out1, x))
        expected = block.norm2(out2 + block.ffn(out2))
    torch.testing.assert_close(calls[1][0], out1)  # ...query = out1
    torch.testing.assert_close(out, expected)


def test_gpt_model_blocks_each_have_one_mha():
    model = small("gpt")
    for block in model.transformer:
        assert sum(isinstance(m, KerasMultiHeadAttention) for m in block.modules()) == 1


def _permute_tokens(x_num, x_cat, perm):
    return x_num[:, perm], x_cat[:, perm]


@pytest.mark.parametrize("transformer", TRANSFORMERS)
def test_reference_has_no_positional_encoding(transformer):
    model = small(transformer, head="gap").eval()
    assert model.pos_embed is None
    x_num, x_cat = model.example_inputs(4)
    perm = torch.tensor([3, 0, 7, 5, 1, 6, 2, 4])
    with torch.no_grad():
        torch.testing.assert_close(model(x_num, x_cat), model(*_permute_tokens(x_num, x_cat, perm)))


def test_reference_last_token_ignores_order_of_context():
    # No positions: only which flow is last matters, not the order of the W-1 before it.
    model = make(head="last").eval()
    x_num, x_cat = model.example_inputs(4)
    perm = torch.tensor([6, 2, 0, 4, 1, 5, 3, 7])
    with torch.no_grad():
        torch.testing.assert_close(model(x_num, x_cat), model(*_permute_tokens(x_num, x_cat, perm)))


@pytest.mark.parametrize("transformer", TRANSFORMERS)
def test_clean_variant_is_order_aware(transformer):
    model = small(transformer, head="gap", variant="clean").eval()
    assert model.pos_embed is not None and model.pos_embed.shape == (1, 8, 64)
    x_num, x_cat = model.example_inputs(4)
    perm = torch.tensor([3, 0, 7, 5, 1, 6, 2, 4])
    with torch.no_grad():
        assert not torch.allclose(model(x_num, x_cat), model(*_permute_tokens(x_num, x_cat, perm)), atol=1e-5)


@pytest.mark.parametrize("transformer", TRANSFORMERS)
def test_no_causal_mask(transformer):
    # Changing the LAST flow must change the transformer output at the FIRST token.
    model = small(transformer).eval()
    x_num, x_cat = model.example_inputs(2)
    x_num2 = x_num.clone()
    x_num2[:, -1] += 1.0
    with torch.no_grad():
        _, h1, _ = transformer_input_and_output(model, x_num, x_cat)
        _, h2, _ = transformer_input_and_output(model, x_num2, x_cat)
    assert not torch.allclose(h1[:, 0], h2[:, 0], atol=1e-5)


@pytest.mark.parametrize("transformer", TRANSFORMERS)
def test_cls_token_appended_at_end_with_indicator_column(transformer):
    model = small(transformer, head="cls").eval()
    x_num, x_cat = model.example_inputs(3)
    with torch.no_grad():
        encoded = model.encoding(x_num, x_cat)  # (B, W, d)
        seen_in, seen_out, logits = transformer_input_and_output(model, x_num, x_cat)
    b, w, d = encoded.shape
    assert (b, w, d) == (3, 8, 64)
    assert seen_in.shape == (3, w + 1, d + 1)  # the transformer sees W+1 tokens of width d+1
    assert seen_out.shape == (3, w + 1, d + 1)
    torch.testing.assert_close(seen_in[:, :w, :d], encoded)
    assert (seen_in[:, :w, d] == 0).all()
    assert (seen_in[:, w, :d] == 0).all() and (seen_in[:, w, d] == 1).all()
    first = model.transformer[0]
    assert first.attn.embed_dim == d + 1
    if transformer == "gpt":
        assert first.attn.key_dim == d + 1  # the decoder's key_dim follows the token width
    torch.testing.assert_close(logits, model.mlp(seen_out[:, -1]))


def test_featurewise_and_flatten_heads():
    model = make(head="featurewise").eval()
    h = torch.randn(2, 8, 64)
    torch.testing.assert_close(model.head(h), model.head.proj(h)[..., 0])
    flat = make(head="flatten").eval()
    torch.testing.assert_close(flat.head(h), h.reshape(2, 8 * 64))
    gap = make(head="gap").eval()
    torch.testing.assert_close(gap.head(h), h.mean(1))


# ---------------------------------------------------------------------------- encodings


def test_none_encoding_is_numerics_then_one_hots():
    model = make(encoding="none")
    x_num, x_cat = model.example_inputs(2)
    x = model.encoding(x_num, x_cat)  # (B, W, 325)
    assert x.shape == (2, 8, 325)
    torch.testing.assert_close(x[..., :28], x_num)
    one_hots = x[..., 28:].reshape(2, 8, 9, 33)
    assert (one_hots.sum(-1) == 1).all()
    assert (one_hots.argmax(-1) == x_cat).all()


def test_lookup_equals_projection_of_one_hot():
    cfg = dict(encoding="categorical", n_numeric=3, categorical_levels=[4, 6])
    proj = FlowInputEncoding(FlowTransformerConfig(**cfg, cat_embed_mode="projection"))
    lookup = FlowInputEncoding(FlowTransformerConfig(**cfg, cat_embed_mode="lookup"))
    with torch.no_grad():
        for emb, lin in zip(lookup.cat_embeds, proj.cat_embeds, strict=True):
            emb.weight.copy_(lin.weight.T)
    x_num = torch.rand(2, 8, 3)
    x_cat = torch.stack([torch.randint(0, 4, (2, 8)), torch.randint(0, 6, (2, 8))], -1)
    torch.testing.assert_close(lookup(x_num, x_cat), proj(x_num, x_cat))


def _one_hot_reference(enc: FlowInputEncoding, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
    """What the reference computes: the Linear layers applied to explicit one-hots."""
    one_hots = [torch.nn.functional.one_hot(x_cat[..., i], n).float() for i, n in enumerate(enc.levels)]
    if enc.mode == "record":
        return enc.embed(torch.cat([x_num, *one_hots], -1))
    return torch.cat([x_num, *(lin(oh) for lin, oh in zip(enc.cat_embeds, one_hots, strict=True))], -1)


@pytest.mark.parametrize("cfg", [{"encoding": "record"}, {"encoding": "record", "embed_bias": False},
                                 {"encoding": "categorical", "cat_embed_mode": "dense"},
                                 {"encoding": "categorical", "cat_embed_mode": "projection"}])
def test_row_lookup_equals_the_linear_on_one_hots_values_and_gradients(cfg):
    """forward() reads rows of the weight instead of multiplying one-hots: the same function and gradients."""
    enc = FlowInputEncoding(FlowTransformerConfig(n_numeric=3, categorical_levels=[4, 6, 2], embed_dim=5, **cfg))
    x_num = torch.rand(2, 8, 3)
    x_cat = torch.stack([torch.randint(0, n, (2, 8)) for n in (4, 6, 2)], -1)
    fast, slow = enc(x_num, x_cat), _one_hot_reference(enc, x_num, x_cat)
    torch.testing.assert_close(fast, slow)
    weights = torch.randn(fast.shape)
    grads_fast = torch.autograd.grad((fast * weights).sum(), list(enc.parameters()))
    grads_slow = torch.autograd.grad((slow * weights).sum(), list(enc.parameters()))
    for a, b in zip(grads_fast, grads_slow, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("encoding", ["record", "categorical"])
@pytest.mark.parametrize("code", [-1, 4])
def test_a_code_outside_its_levels_is_refused_not_read_from_another_feature(encoding, code):
    enc = FlowInputEncoding(FlowTransformerConfig(encoding=encoding, n_numeric=3, categorical_levels=[4, 6]))
    x_cat = torch.zeros(1, 8, 2, dtype=torch.long)
    x_cat[0, 3, 0] = code  # 4 would be feature 1's first row in the stacked lookup
    with pytest.raises(ValueError, match="outside"):
        enc(torch.rand(1, 8, 3), x_cat)


def test_int32_codes_are_accepted():
    model = make().eval()
    x_num, x_cat = model.example_inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x_num, x_cat.int()), model(x_num, x_cat))


def test_wrong_input_shape_raises():
    model = make()
    x_num, x_cat = model.example_inputs(2)
    with pytest.raises(ValueError, match="expected x_num"):
        model(x_num[:, :4], x_cat[:, :4])
    with pytest.raises(ValueError, match="expected x_num"):
        model(x_num[..., :5], x_cat)


# ---------------------------------------------------------------------------- config


def test_transformer_presets_and_overrides():
    assert FlowTransformerConfig().transformer_settings() == {
        "n_layers": 2,
        "n_heads": 2,
        "internal_size": 128,
        "dropout": 0.1,
    }
    assert FlowTransformerConfig(transformer="gpt").transformer_settings() == {
        "n_layers": 12,
        "n_heads": 12,
        "internal_size": 768,
        "dropout": 0.02,
    }
    cfg = FlowTransformerConfig(transformer="bert", n_layers=3, dropout=0.0)
    assert cfg.transformer_settings() == {"n_layers": 3, "n_heads": 12, "internal_size": 768, "dropout": 0.0}


@pytest.mark.parametrize(
    "field, value",
    [
        ("encoding", "onehot"),
        ("transformer", "gpt2"),
        ("head", "mean"),
        ("variant", "fixed"),
        ("cat_embed_mode", "sparse"),
        ("window", 0),
        ("n_outputs", 0),
        ("n_numeric", -1),
        ("categorical_levels", [33, 0]),
        ("dropout", 1.5),
        ("mlp_dropout", -0.1),
        ("n_heads", 0),
        ("embed_bias", "yes"),
        ("mlp_sizes", [128, 0]),
        ("window", True),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field.split("[")[0]):
        FlowTransformerConfig(**{field: value})


def test_config_rejects_empty_tokens():
    with pytest.raises(ValueError, match="width 0"):
        FlowTransformerConfig(encoding="none", n_numeric=0, categorical_levels=[])


def test_config_error_lists_allowed_values():
    with pytest.raises(ValueError, match=r"\['last', 'cls', 'gap', 'flatten', 'featurewise'\]"):
        FlowTransformerConfig(head="pool")


def test_config_dict_round_trip_preserves_weights_layout():
    model = make(encoding="categorical", cat_embed_mode="lookup", head="cls", variant="clean").eval()
    cfg = json.loads(json.dumps(model.config_dict()))
    clone = build(KEY, cfg).eval()
    assert clone.config == model.config
    clone.load_state_dict(model.state_dict())
    x = model.example_inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(clone(*x), model(*x))


# ---------------------------------------------------------------------------- deployment-facing


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_dynamic_int8_quantization_covers_every_linear():
    from torch.ao.quantization import quantize_dynamic

    model = make(head="cls").eval()
    x = model.example_inputs(4)
    with torch.no_grad():
        ref = model(*x)
    q = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    assert not any(type(m) is nn.Linear for m in q.modules())  # attention projections included
    with torch.no_grad():
        out = q(*x)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.5


@pytest.mark.parametrize("variant", ["reference", "clean"])
def test_bf16_autocast(variant):
    model = make(head="cls", variant=variant, encoding="categorical").eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*model.example_inputs(2))
    assert out.shape == (2, 1) and torch.isfinite(out.float()).all()


def test_keras_initialisation():
    model = make()
    mha = model.transformer[0].attn
    # Keras kernel (d, heads, key_dim): fan_in = d*heads, fan_out = d*key_dim
    bound = (6 / (64 * 2 + 64 * 128)) ** 0.5
    assert mha.q_proj.weight.abs().max() <= bound
    assert mha.q_proj.weight.abs().max() > 0.9 * bound
    assert all(
        (m.bias == 0).all() for m in model.modules() if isinstance(m, nn.Linear) and m.bias is not None
    )


def test_keras_mha_matches_torch_mha_when_key_dim_is_d_over_heads():
    torch.manual_seed(0)
    keras_mha = KerasMultiHeadAttention(embed_dim=8, num_heads=2, key_dim=4).eval()
    torch_mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    with torch.no_grad():
        torch_mha.in_proj_weight.copy_(
            torch.cat([keras_mha.q_proj.weight, keras_mha.k_proj.weight, keras_mha.v_proj.weight])
        )
        torch_mha.in_proj_bias.copy_(
            torch.cat([keras_mha.q_proj.bias, keras_mha.k_proj.bias, keras_mha.v_proj.bias])
        )
        torch_mha.out_proj.weight.copy_(keras_mha.out_proj.weight)
        torch_mha.out_proj.bias.normal_()
        keras_mha.out_proj.bias.copy_(torch_mha.out_proj.bias)
    q, kv = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(keras_mha(q, kv), torch_mha(q, kv, kv, need_weights=False)[0])


def test_keras_mha_key_dim_is_per_head():
    torch.manual_seed(0)
    mha = KerasMultiHeadAttention(embed_dim=6, num_heads=3, key_dim=10).eval()
    assert mha.q_proj.out_features == 30 and mha.out_proj.in_features == 30 and mha.out_proj.out_features == 6
    q, v = torch.randn(2, 4, 6), torch.randn(2, 5, 6)
    # explicit Keras computation: scale 1/sqrt(key_dim), softmax over keys
    qh = mha.q_proj(q).view(2, 4, 3, 10)
    kh = mha.k_proj(v).view(2, 5, 3, 10)
    vh = mha.v_proj(v).view(2, 5, 3, 10)
    scores = torch.einsum("bqhk,bthk->bhqt", qh, kh) / 10**0.5
    o = torch.einsum("bhqt,bthk->bqhk", scores.softmax(-1), vh).reshape(2, 4, 30)
    torch.testing.assert_close(mha(q, v), mha.out_proj(o))
