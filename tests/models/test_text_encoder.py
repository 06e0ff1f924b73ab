"""The finance text encoder (models/text_encoder.py): all-MiniLM-L6-v2 from the PyPI package, offline.

Parameter count of the MiniLM-L6 BERT encoder (hidden 384, 6 layers, FFN 1536, vocab 30,522, 512 positions):
embeddings 30,522*384 + 512*384 + 2*384 + 2*384 = 11,918,592; per layer 4*(384*384 + 384) + 2*384
+ (384*1536 + 1536) + (1536*384 + 384) + 2*384 = 1,774,464, times 6 = 10,646,784; pooler 384*384 + 384 =
147,840; total 22,713,216, plus the classifier 384*2 + 2 = 770.
"""

from __future__ import annotations

import pytest
import torch

import models

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return models.build("finance/text_encoder", {}).eval()


def test_minilm_parameter_count(encoder):
    assert sum(p.numel() for p in encoder.encoder.parameters()) == 22_713_216
    assert sum(p.numel() for p in encoder.parameters()) == 22_713_216 + 770


def test_logits_shape_and_truncation(encoder):
    ids, mask = encoder.tokenize(["short", "a very long sentence " * 100])
    assert ids.shape == mask.shape and ids.shape[1] == encoder.config.max_length == 128
    assert mask[0].sum() < mask[1].sum() == 128
    with torch.inference_mode():
        assert encoder(ids, mask).shape == (2, 2)


def test_pretrained_weights_are_loaded(encoder):
    """Real MiniLM weights put paraphrases close and unrelated sentences apart; a random init does not."""
    sents = ["The bank uses machine learning to detect fraud.",
             "We apply artificial intelligence models to spot fraudulent payments.",
             "Dividends per share increased to 45 cents."]

    def sims(model):
        with torch.inference_mode():
            e = torch.nn.functional.normalize(model.embed(*model.tokenize(sents)), dim=1)
        return e @ e.T

    s = sims(encoder)
    assert s[0, 1] > 0.5 and s[0, 2] < 0.2 and s[1, 2] < 0.2
    torch.manual_seed(0)
    random = models.build("finance/text_encoder", {"pretrained": False}).eval()
    r = sims(random)
    assert not (r[0, 1] - r[0, 2] > 0.3)  # no such structure without the weights


def test_missing_model_dir_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*no config\.json"):
        models.build("finance/text_encoder", {"model_dir": str(tmp_path / "nowhere")})


def test_loads_without_network(monkeypatch, encoder):
    """Everything comes from the installed package: offline mode changes nothing."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    again = models.build("finance/text_encoder", {}).eval()
    ids, mask = encoder.example_inputs(2)
    with torch.inference_mode():
        torch.testing.assert_close(again.embed(ids, mask), encoder.embed(ids, mask))


def test_int8_encoder_tokenizes_and_tracks_the_float_model(encoder):
    """The compress stage's int8 model: its classifier has no ``weight`` tensor, tokenizing must still work."""
    import copy

    from tasks.compress import quantize

    q = quantize.apply(copy.deepcopy(encoder), None)
    ids, mask = q.example_inputs(4)
    with torch.inference_mode():
        fp, i8 = encoder(ids, mask), q(ids, mask)
    assert i8.shape == (4, 2) and torch.allclose(fp, i8, atol=0.1)
    assert not any(type(m) is torch.nn.Linear for m in q.encoder.modules())  # every Linear quantized
