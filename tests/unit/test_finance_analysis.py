"""Unit tests for the finance edge cases and analyses (:mod:`tasks.domains.finance.edge_cases`, :mod:`tasks.domains.finance.analysis`)."""

from __future__ import annotations

import html
import math
import re
import warnings

import numpy as np
import polars as pl
import pytest

from tasks.domains.finance.analysis import (
    length_bias,
    plot_calibration,
    render_attributions_html,
    token_attributions,
    top_tokens,
    year_slices,
)
from tasks.domains.finance.edge_cases import EDGE_CASES, GROUPS, EdgeCase, edge_case_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- edge cases
def test_edge_cases_are_40_in_4_groups_of_10():
    assert len(EDGE_CASES) == 40
    assert all(isinstance(e, EdgeCase) for e in EDGE_CASES)
    assert GROUPS == ("typos", "paraphrase", "negation", "hard_negative")
    for g in GROUPS:
        assert sum(e.group == g for e in EDGE_CASES) == 10
    assert {e.group for e in EDGE_CASES} == set(GROUPS)


def test_edge_case_labels():
    assert {e.label for e in EDGE_CASES} <= {0, 1}
    for g in ("typos", "paraphrase", "negation"):
        assert {e.label for e in EDGE_CASES if e.group == g} == {0, 1}, g
    assert all(e.label == 0 for e in EDGE_CASES if e.group == "hard_negative")
    # negated AI sentences are AI disclosures (the module's labelling rule)
    neg_ai = [e.sentence for e in EDGE_CASES if e.group == "negation" and e.label == 1]
    assert any("do not use artificial intelligence" in s for s in neg_ai)
    share = np.mean([e.label for e in EDGE_CASES])
    assert 0.35 <= share <= 0.65


def test_edge_cases_are_unique_clean_sentences():
    sentences = [e.sentence for e in EDGE_CASES]
    assert len({s.lower() for s in sentences}) == len(sentences)
    for s in sentences:
        assert s == s.strip() and "\n" not in s and len(s.split()) >= 5, s
    with pytest.raises(AttributeError):
        EDGE_CASES[0].label = 1  # type: ignore[misc]


def test_edge_case_table_values():
    groups = np.array(["a", "a", "b", "b", "b"])
    y = np.array([1, 0, 1, 1, 0])
    table = edge_case_table(groups, y, {"m1": np.array([1, 1, 1, 0, 0]), "m2": np.array([1, 0, 0, 0, 0])})
    assert table.columns == ["group", "n", "m1_accuracy", "m2_accuracy"]
    assert table["group"].to_list() == ["a", "b", "all"]
    assert table["n"].to_list() == [2, 3, 5]
    assert table["m1_accuracy"].to_list() == pytest.approx([0.5, 2 / 3, 3 / 5])
    assert table["m2_accuracy"].to_list() == pytest.approx([1.0, 1 / 3, 3 / 5])


def test_edge_case_table_on_the_real_set_and_bad_lengths():
    groups = [e.group for e in EDGE_CASES]
    y = np.array([e.label for e in EDGE_CASES])
    table = edge_case_table(groups, y, {"oracle": y, "never": np.zeros_like(y)})
    assert table["group"].to_list() == [*GROUPS, "all"]
    assert table["oracle_accuracy"].to_list() == [1.0] * 5
    assert table.filter(pl.col("group") == "hard_negative")["never_accuracy"].item() == 1.0
    assert table.filter(pl.col("group") == "all")["never_accuracy"].item() == pytest.approx(1 - y.mean())
    with pytest.raises(ValueError, match="m"):
        edge_case_table(groups, y, {"m": y[:-1]})


# ----------------------------------------------------------------------------- year slices
def test_year_slices_numbers_and_unknown_years():
    years = np.array([2021, 2020, 2021, None, 2020, 2021, float("nan")], dtype=object)
    y = np.array([1, 0, 0, 1, 1, 1, 0])
    probs = {
        "good": np.array([0.9, 0.2, 0.1, 0.0, 0.8, 0.7, 0.9]),
        "bad": np.array([0.1, 0.6, 0.6, 0.9, 0.5, 0.2, 0.0]),
    }
    out = year_slices(years, y, probs)
    assert out.columns == ["year", "n", "ai_share", "good_accuracy", "good_f1", "bad_accuracy", "bad_f1"]
    assert out["year"].to_list() == [2020, 2021]
    assert out["n"].to_list() == [2, 3]
    assert out["ai_share"].to_list() == pytest.approx([0.5, 2 / 3])
    assert out["good_accuracy"].to_list() == [1.0, 1.0]
    assert out["good_f1"].to_list() == [1.0, 1.0]
    # 2020: y [0, 1], pred [1, 1] (0.5 >= threshold) -> acc 0.5, F1 = 2*0.5*1/(1.5) = 2/3
    # 2021: y [1, 0, 1], pred [0, 1, 0] -> acc 0, F1 0
    assert out["bad_accuracy"].to_list() == pytest.approx([0.5, 0.0])
    assert out["bad_f1"].to_list() == pytest.approx([2 / 3, 0.0])
    # a higher threshold flips 2020's 0.5 prediction
    assert year_slices(years, y, probs, threshold=0.55)["bad_accuracy"].to_list() == pytest.approx([0.0, 0.0])


def test_year_slices_no_ai_in_a_year_gives_f1_zero_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = year_slices(np.array([2019.0, 2019.0]), np.array([0, 0]), {"m": np.array([0.1, 0.2])})
    assert out["year"].to_list() == [2019]
    assert out["m_f1"].to_list() == [0.0] and out["m_accuracy"].to_list() == [1.0]


def test_year_slices_empty_when_no_year_known():
    out = year_slices(np.array([None, None], dtype=object), np.array([0, 1]), {"m": np.array([0.2, 0.9])})
    assert out.height == 0
    assert out.columns == ["year", "n", "ai_share", "m_accuracy", "m_f1"]
    assert out.schema["year"] == pl.Int64 and out.schema["m_f1"] == pl.Float64


# ----------------------------------------------------------------------------- length bias
def test_length_bias_positive_r_and_png(tmp_path):
    rng = np.random.default_rng(0)
    sentences = [" ".join(["word"] * int(n)) for n in rng.integers(5, 60, size=80)]
    words = np.array([len(s.split()) for s in sentences])
    probs = np.clip(words / 60 + rng.normal(0, 0.05, size=80), 0, 1)  # longer -> more AI
    path = tmp_path / "len.png"
    out = length_bias(sentences, probs, path, "length bias")
    assert out["n"] == 80
    assert out["r"] > 0.8 and out["p_value"] < 1e-6
    assert path.read_bytes()[:8] == PNG_MAGIC
    flipped = length_bias(sentences, 1 - probs, None, "t")
    assert flipped["r"] == pytest.approx(-out["r"])


def test_length_bias_undefined_cases_are_nan_without_warnings(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        two = length_bias(["a b c", "a b c d e"], np.array([0.1, 0.9]), None, "t")
        constant_p = length_bias(["a", "a b", "a b c", "a b c d"], np.full(4, 0.3), None, "t")
        constant_len = length_bias(["a b", "c d", "e f"], np.array([0.1, 0.5, 0.9]), tmp_path / "c.png", "t")
    for out in (two, constant_p, constant_len):
        assert math.isnan(out["r"]) and math.isnan(out["p_value"])
    assert two["n"] == 2
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError):
        length_bias(["a b"], np.array([0.1, 0.2]), None, "t")


# ----------------------------------------------------------------------------- calibration
def test_plot_calibration_writes_png(tmp_path):
    rng = np.random.default_rng(1)
    p = rng.uniform(size=200)
    y = (rng.uniform(size=200) < p).astype(int)
    path = tmp_path / "sub" / "calibration.png"
    curves = {
        "calibrated": (y, p),
        "overconfident": (y, (p > 0.5).astype(float)),
        "one class only": (np.zeros(5, dtype=int), np.linspace(0, 1, 5)),  # a slice without AI sentences
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_calibration(curves, path, "cal")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [f.name for f in path.parent.iterdir()] == ["calibration.png"]  # no temp file left behind


# ----------------------------------------------------------------------------- top tokens / html (no model)
def test_top_tokens_positive_only_deduplicated():
    rec = {
        "tokens": ["AI", "helps", "ai", "fraud", "the", "bank", "."],
        "scores": [0.9, -1.0, 1.0, 0.2, 0.0, 0.5, 0.95],
    }
    assert top_tokens(rec, k=2) == ["ai", "bank"]  # "AI" (0.9) and "ai" (1.0) count once, at 1.0
    assert top_tokens(rec, k=10) == ["ai", "bank", "fraud"]
    assert top_tokens({"tokens": ["x"], "scores": [-0.3]}) == []


def test_render_html_escapes_and_keeps_spacing(tmp_path):
    rec = {
        "sentence": "We <use> A&I models.",
        "tokens": ["We", "<", "use", ">", "A", "&", "I"],
        "scores": [0.1, -0.5, 1.0, 0.0, -1.0, 0.2, 0.9],
        "offsets": [(0, 2), (3, 4), (4, 7), (7, 8), (9, 10), (10, 11), (11, 12)],
        "target": 1,
        "p_target": 0.75,
    }
    path = tmp_path / "attr.html"
    render_attributions_html([rec], path, "Attributions <test>")
    text = path.read_text(encoding="utf-8")
    assert "<script" not in text.lower() and "http" not in text
    assert "<title>Attributions &lt;test&gt;</title>" in text
    assert ">&lt;</span>" in text and ">&amp;</span>" in text and "<use>" not in text
    assert text.count('class="w"') == 7
    assert "P(AI) = 0.750" in text
    assert 'title="+1.000"' in text and 'title="-1.000"' in text
    assert "rgba(220, 38, 38" in text and "rgba(37, 99, 235" in text
    # "A&I" has no gap inside, "We" and "<" do; the words after the last attributed one are shown greyed
    assert re.search(r">A</span><span", text) and re.search(r">We</span> <span", text)
    assert '<span class="rest">models.</span>' in text
    assert [f.name for f in tmp_path.iterdir()] == ["attr.html"]


# ----------------------------------------------------------------------------- attributions (real model)
ATTR_SENTENCES = [
    "The bank deployed machine learning models to detect fraudulent card transactions.",
    "Net interest income rose by four percent on higher lending volumes.",
    "We do not use artificial intelligence in credit decisions.",
    "Our A.I.-driven chatbot answered 1.2 million queries in Zürich 🤖.",  # the emoji is [UNK]
]


@pytest.fixture(scope="module")
def encoder():
    import torch

    import models
    from tasks.domains.finance.encoder import pretrained_state

    torch.manual_seed(0)
    model = models.build("finance/text_encoder", {})
    model.load_encoder_state(pretrained_state(None))  # all-MiniLM-L6-v2's weights, as the domain builds it
    # The untrained head (std 0.02) keeps P(AI) near 0.5 for every input, so completeness would hold
    # trivially; a wider head makes P(AI) move by ~0.3-0.6 between baseline and input (a much wider one
    # saturates P at 0 or 1 for both, trivial again).
    torch.manual_seed(0)
    torch.nn.init.normal_(model.classifier.weight, std=1.0)
    model.train()  # token_attributions must switch dropout off itself and restore this
    return model


@pytest.fixture(scope="module")
def tokenizer():
    from tasks.domains.finance.encoder import load_tokenizer

    return load_tokenizer(None)


@pytest.fixture(scope="module")
def records(encoder, tokenizer):
    return token_attributions(encoder, tokenizer, ATTR_SENTENCES, target=1, n_steps=32, batch_size=3)


def _pretokenized(sentence: str) -> list[str]:
    # BERT's pre-tokenizer: runs of word characters, or single punctuation marks
    return re.findall(r"\w+|[^\w\s]", sentence)


@pytest.mark.slow
def test_attribution_words_reassemble_the_sentence(records, encoder, tokenizer):
    assert encoder.training  # mode restored
    assert [r["sentence"] for r in records] == ATTR_SENTENCES
    for rec in records:
        assert rec["tokens"] == _pretokenized(rec["sentence"])
        assert [rec["sentence"][s:e] for s, e in rec["offsets"]] == rec["tokens"]
        assert not any(t.startswith("##") or t in ("[CLS]", "[SEP]", "[PAD]") for t in rec["tokens"])
        # the uncased tokenizer sees the same words, lower-cased and without accents
        pieces = tokenizer.tokenize(rec["sentence"])
        words = "".join("[UNK]" if t == "🤖" else t.lower().replace("ü", "u") for t in rec["tokens"])
        assert "".join(p.removeprefix("##") for p in pieces) == words


@pytest.mark.slow
def test_attribution_scores_normalised_and_complete(records):
    for rec in records:
        scores = np.array(rec["scores"])
        assert len(scores) == len(rec["tokens"]) and np.isfinite(scores).all()
        assert np.abs(scores).max() == pytest.approx(1.0)
        assert 0.0 <= rec["p_target"] <= 1.0 and 0.0 <= rec["p_baseline"] <= 1.0
        # completeness: raw attributions add up to P(input) - P(baseline); Gauss-Legendre with 32 steps
        # lands within ~3e-4 here, the bound leaves room for other machines' arithmetic
        assert abs(rec["delta"]) < 0.01
        assert rec["total"] - (rec["p_target"] - rec["p_baseline"]) == pytest.approx(rec["delta"], abs=1e-4)
    # the check has teeth only if the probability actually moved
    assert max(abs(r["p_target"] - r["p_baseline"]) for r in records) > 0.2


@pytest.mark.slow
def test_attribution_p_target_matches_the_model_and_batching(records, encoder, tokenizer):
    import torch

    from tasks.domains.finance.preprocess import tokenize

    enc = tokenize(tokenizer, ATTR_SENTENCES, encoder.config.max_length)
    ids = torch.as_tensor(enc["input_ids"], dtype=torch.int64)  # (B, L)
    mask = torch.as_tensor(enc["attention_mask"], dtype=torch.int64)  # (B, L)
    tok = tokenizer
    # the baseline: [CLS] and [SEP] kept, every word piece replaced by [PAD]
    is_word = (ids != tok.cls_token_id) & (ids != tok.sep_token_id) & (mask == 1)
    baseline = torch.where(is_word, torch.full_like(ids, tok.pad_token_id), ids)
    encoder.eval()
    try:
        with torch.no_grad():
            p = torch.softmax(encoder(ids, mask), -1)[:, 1].numpy()
            p_base = torch.softmax(encoder(baseline, mask), -1)[:, 1].numpy()
    finally:
        encoder.train()
    assert [r["p_target"] for r in records] == pytest.approx(p.tolist(), abs=1e-5)
    assert [r["p_baseline"] for r in records] == pytest.approx(p_base.tolist(), abs=1e-5)
    # alone (no padding) the last sentence gets the same attributions as inside a padded batch
    alone = token_attributions(encoder, tokenizer, ATTR_SENTENCES[-1:], n_steps=32)[0]
    assert alone["tokens"] == records[-1]["tokens"]
    assert alone["scores"] == pytest.approx(records[-1]["scores"], abs=1e-3)
    # explaining class 0 instead: P(0) = 1 - P(1), and every raw attribution flips sign
    other = token_attributions(encoder, tokenizer, ATTR_SENTENCES[-1:], target=0, n_steps=32)[0]
    assert other["p_target"] == pytest.approx(1 - records[-1]["p_target"], abs=1e-5)
    assert other["scores"] == pytest.approx([-s for s in records[-1]["scores"]], abs=1e-3)


@pytest.mark.slow
def test_attribution_html_from_real_records(records, tmp_path):
    path = tmp_path / "attr.html"
    render_attributions_html(records, path, "AI disclosure attributions")
    text = path.read_text(encoding="utf-8")
    assert "<span" in text and "<script" not in text.lower()
    for rec in records:
        for word in rec["tokens"]:
            assert f">{html.escape(word)}</span>" in text
    assert text.count('class="line"') == len(records)
    assert all(1 <= len(top_tokens(r)) <= 3 for r in records)
