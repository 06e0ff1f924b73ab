"""int8 (tasks/compress/quantize*.py): torchao's int8 (``int8``) and torch.ao's eager int8 (``int8_eager``), their
safetensors round trips, and that a quantized model leaves its inputs alone."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import models
from tasks.compress import quantize, quantize_eager
from tasks.loop import save_model

KEY = "netflow/flowtransformer"
CONFIGS = {
    "record-basic-last": {},
    "none-gpt-featurewise": {"encoding": "none", "transformer": "gpt", "n_layers": 1, "n_heads": 2,
                             "internal_size": 32, "head": "featurewise"},
    "categorical-bert-cls-clean": {"encoding": "categorical", "transformer": "bert", "n_layers": 1, "n_heads": 2,
                                   "internal_size": 32, "head": "cls", "variant": "clean", "mlp_sizes": [32, 16]},
    "lookup-flatten-nobias": {"encoding": "categorical", "cat_embed_mode": "lookup", "head": "flatten",
                              "embed_bias": False, "featurewise_bias": False},
}
TINY_BERT = {"encoder": {"model_type": "bert", "vocab_size": 3000, "hidden_size": 32, "num_hidden_layers": 2,
                         "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64}}
EEG_KEYS = [k for k in models.list_models() if k.startswith("eeg/")]
EEG_SHAPE = {"n_chans": 22, "n_times": 301, "sfreq": 100.0, "n_outputs": 2}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared 2-core box: one intra-op thread avoids spin-wait contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(key: str, overrides: dict, seed: int = 0):
    torch.manual_seed(seed)
    return models.build(key, overrides).eval()


def run(model, inputs) -> torch.Tensor:
    with torch.inference_mode():
        return model(*inputs)


def qlinear_type():
    from torch.ao.nn.quantized.dynamic import Linear

    return Linear


# ----------------------------------------------------------------------------- int8_eager (torch.ao)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_eager_int8_replaces_every_linear_and_leaves_the_float_model(name):
    model = build(KEY, CONFIGS[name])
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantize_eager.apply(model)
    assert n_linear > 0 and not any(isinstance(m, nn.Linear) for m in q.modules())
    assert sum(isinstance(m, qlinear_type()) for m in q.modules()) == n_linear
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_eager_int8_round_trip_is_bit_identical(name, tmp_path):
    model = build(KEY, CONFIGS[name])
    q = quantize_eager.apply(model)
    quantize_eager.save(q, tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert not any(t.is_quantized for t in tensors.values())  # plain tensors only
    assert all(t.dtype == torch.int8 for k, t in tensors.items() if k.endswith(".weight.int8"))
    loaded = quantize_eager.load(build(KEY, CONFIGS[name], seed=99), tmp_path)  # every weight from the file
    inputs = model.example_inputs(32, seed=3)
    assert torch.equal(run(loaded, inputs), run(q, inputs))


def test_eager_int8_file_is_small_and_close(tmp_path):
    model = build(KEY, {})
    save_model(tmp_path, model, KEY)
    q = quantize_eager.apply(model)
    (tmp_path / "q").mkdir()
    quantize_eager.save(q, tmp_path / "q")
    assert (tmp_path / "q" / "model.safetensors").stat().st_size < 0.4 * (tmp_path / "model.safetensors").stat().st_size
    inputs = model.example_inputs(256, seed=1)
    assert (torch.sigmoid(run(model, inputs)) - torch.sigmoid(run(q, inputs))).abs().max() < 0.05


def test_eager_int8_load_rejects_unknown_tensors(tmp_path):
    quantize_eager.save(quantize_eager.apply(build(KEY, {})), tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    tensors["not.a.parameter"] = torch.zeros(3)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="unexpected tensors"):
        quantize_eager.load(build(KEY, {}), tmp_path)


def test_eager_int8_quantizes_the_vocabulary_table_only(tmp_path):
    """The text encoder: the word table becomes int8 per row; positions and token types stay float (tiny)."""
    from torch.ao.nn.quantized import Embedding as QEmbedding

    model = build("finance/text_encoder", TINY_BERT)
    q = quantize_eager.apply(model)
    emb = q.encoder.embeddings
    assert isinstance(emb.word_embeddings, QEmbedding)
    assert isinstance(emb.position_embeddings, nn.Embedding) and isinstance(emb.token_type_embeddings, nn.Embedding)
    quantize_eager.save(q, tmp_path)
    loaded = quantize_eager.load(build("finance/text_encoder", TINY_BERT, seed=5), tmp_path)
    ids = torch.randint(1000, 3000, (3, 9))
    mask = torch.ones_like(ids)
    assert torch.equal(run(loaded, (ids, mask)), run(q, (ids, mask)))
    assert (run(model, (ids, mask)) - run(q, (ids, mask))).abs().max() < 0.1


@pytest.mark.parametrize("key", EEG_KEYS)
def test_eager_int8_on_every_eeg_model(key, tmp_path):
    model = build(key, EEG_SHAPE)
    q = quantize_eager.apply(model)
    assert sum(isinstance(m, qlinear_type()) for m in q.modules()) == sum(
        isinstance(m, nn.Linear) for m in model.modules()) > 0
    quantize_eager.save(q, tmp_path)
    loaded = quantize_eager.load(build(key, EEG_SHAPE, seed=1), tmp_path)
    inputs = model.example_inputs(16, seed=2)
    assert torch.equal(run(loaded, inputs), run(q, inputs))
    assert (torch.softmax(run(model, inputs), 1) - torch.softmax(run(q, inputs), 1)).abs().max() < 0.05


# ----------------------------------------------------------------------------- int8 (torchao)
@pytest.mark.parametrize(("key", "config"), [(KEY, {}), ("eeg/dbconformer", EEG_SHAPE),
                                             ("finance/text_encoder", TINY_BERT)],
                         ids=["flowtransformer", "dbconformer", "text_encoder"])
def test_torchao_int8_round_trips_through_safetensors(key, config, tmp_path):
    """Tensor subclasses flattened to plain tensors + metadata, restored exactly into a fresh model.
    DBConformer has top-level parameters (pos_t), which torchao's unflatten cannot name by itself."""
    model = build(key, config)
    q = quantize.apply(model)
    quantize.save(q, tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert any(t.dtype == torch.int8 for t in tensors.values())
    loaded = quantize.load(build(key, config, seed=7), tmp_path)
    inputs = model.example_inputs(4, seed=1)
    assert torch.equal(run(loaded, inputs), run(q, inputs))
    float_out, q_out = run(model, inputs), run(q, inputs)
    assert (float_out - q_out).abs().max() < 0.1 * float_out.abs().max() + 0.05


@pytest.mark.parametrize("method", [quantize, quantize_eager], ids=["int8", "int8_eager"])
def test_quantized_model_does_not_write_into_its_input(method):
    """A known hazard of some compiled int8 paths (../shared/reference/compression.md): repeated calls on the same
    tensor drift. The inputs must be unchanged after a forward, and two calls must agree."""
    model = build(KEY, {})
    q = method.apply(model)
    inputs = model.example_inputs(8, seed=4)
    copies = [t.clone() for t in inputs]
    first, second = run(q, inputs), run(q, inputs)
    assert all(torch.equal(a, b) for a, b in zip(inputs, copies, strict=True))
    assert torch.equal(first, second)


def test_torchao_int8_quantizes_vocabularies_not_tiny_tables():
    """The word table becomes a torchao int8 tensor; positions, token types and categorical codes stay float."""
    q = quantize.apply(build("finance/text_encoder", TINY_BERT))
    emb = q.encoder.embeddings
    assert type(emb.word_embeddings.weight.data) is not torch.Tensor  # a torchao subclass
    assert type(emb.position_embeddings.weight.data) is torch.Tensor
    flow = quantize.apply(copy.deepcopy(build(KEY, CONFIGS["lookup-flatten-nobias"])))
    tables = [m for m in flow.modules() if isinstance(m, nn.Embedding)]
    assert tables and all(type(m.weight.data) is torch.Tensor for m in tables)
