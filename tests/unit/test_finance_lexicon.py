"""Unit tests for the FinAI-BERT seed lexicon and keyword rule (:mod:`tasks.domains.finance.lexicon`)."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.domains.finance.lexicon import LEXICON_TERMS, SEED_LEXICON, candidates, keyword_rule, matched_terms


def test_lexicon_has_the_papers_categories_and_examples():
    assert [c.split(" (")[1].rstrip(")") for c in SEED_LEXICON] == [
        "AI",
        "ML",
        "DL",
        "GenAI",
        "NLP",
        "CV",
        "XAI",
    ]
    # the examples models.md section 3.2 quotes
    for term in (
        "artificial intelligence", "machine learning", "deep learning", "LSTM model", "random forest",
        "support vector machine", "large language models", "ChatGPT", "computer vision",
        "optical character recognition", "robotic process automation", "explainable AI",
        "shapley additive explanations",
    ):  # fmt: skip
        assert term in LEXICON_TERMS
    assert len(LEXICON_TERMS) == len(set(LEXICON_TERMS))


@pytest.mark.parametrize(
    "sentence",
    [
        "We use artificial intelligence to detect fraudulent card payments.",
        "Machine learning models now support the credit scoring of small business loans.",
        "Our chatbot is built on natural language processing.",
        "In 2023 we piloted generative AI for drafting customer letters.",
        "Convolutional neural networks read scanned cheques.",
        "Robotic process automation handles account closures.",
        "Explainable AI helps us justify credit decisions to customers.",
        "Staff tested ChatGPT-style tools in a sandbox.",
    ],
)
def test_matches_typical_disclosures(sentence):
    assert keyword_rule([sentence]).tolist() == [1]


@pytest.mark.parametrize(
    "sentence",
    [
        "Net interest income rose 7% to $412.5 million.",
        "The Board met 11 times during the year.",
        "We opened four new branches in the Midwest.",
        "Our market intelligence team tracks competitor deposit rates.",
        "Learning and development spending rose to $2.1 million.",
        "We replaced 12 ATM machines with cash recycling machines.",
        "The artificial reef we sponsor supports 30 species of fish.",
    ],
)
def test_no_match_on_unrelated_sentences(sentence):
    assert keyword_rule([sentence]).tolist() == [0]


def test_acronyms_match_in_upper_case_as_whole_words_only():
    assert matched_terms("We deployed AI systems across the bank.") == ["AI systems"]
    assert matched_terms("Board oversight of AI models increased.") == ["AI models"]
    assert matched_terms("we deployed ai systems") == []  # lower-case is not the acronym
    for s in ("The CEO said models were updated.", "We maintain systems in Dubai systems hubs.",
              "Thai models of branch banking", "The retail banks said: AIsystems"):  # fmt: skip
        assert keyword_rule([s]).tolist() == [0], s
    assert keyword_rule(["An LSTM model forecasts deposit outflows.", "an lstm model"]).tolist() == [1, 0]


def test_multi_word_phrases_whitespace_plurals_and_word_boundaries():
    assert matched_terms("Deep neural\n  networks flag anomalies.") == ["Deep neural\n  networks"]
    assert keyword_rule(["Support vector machines classify transactions."]).tolist() == [1]
    assert keyword_rule(["machine-learning based tools", "deep learner"]).tolist() == [0, 0]
    assert keyword_rule(["Unsupervised learning (clustering) groups customers."]).tolist() == [1]
    # the longest term wins: one span, the most specific phrase
    assert matched_terms("We use machine learning models daily.") == ["machine learning models"]


def test_naive_rule_fires_on_seed_terms_in_other_senses():
    # faithful to the paper's lexicon: these are not AI, but hold a seed term
    hard = ["Our learning models for staff combine coaching and e-learning.",
            "Complaints follow a documented decision tree.",
            "We upgraded cheque image processing at 5 branches."]  # fmt: skip
    assert keyword_rule(hard).tolist() == [1, 1, 1]
    # and it misses AI wordings outside the lexicon
    assert keyword_rule(
        ["Our AI-powered assistant answers enquiries.", "We use ML for pricing."]
    ).tolist() == [0, 0]


def test_candidates_and_output_types():
    sents = [
        "Net income rose.",
        "We adopted machine learning.",
        "The Board met.",
        "Generative AI pilots began.",
    ]
    assert candidates(sents) == [1, 3]
    out = keyword_rule(sents)
    assert out.dtype == np.int64 and out.shape == (4,)
    assert keyword_rule([]).shape == (0,) and candidates([]) == []
    assert keyword_rule(sents, terms=("net income",)).tolist() == [1, 0, 0, 0]
