"""The FinAI-BERT seed lexicon and the keyword rule built on it.

FinAI-BERT (Zafar 2025; ``shared/reference/models.md`` section 3.2) finds AI-disclosure
*candidates* in annual reports by matching a seed lexicon of seven categories (AI,
ML, DL, GenAI, NLP, CV, XAI); the candidates are then verified by hand. The same
match, used as a classifier, is the issue's keyword baseline: a sentence is AI-related
when it contains any seed term.

Matching. The reference notebook matches case-insensitive substrings. Here a term
matches as a whole word or phrase instead (no letter or digit directly before it,
an optional plural ``s``/``es`` and then no letter or digit after it), because a
substring match fires inside unrelated words ("Thai models" holds "ai models",
"Dubai systems" holds "ai systems"). Words of a phrase may be separated by any run of
whitespace (a phrase wrapped across lines still matches). Acronym tokens (two or more
capitals, optionally a plural ``s``: ``AI``, ``LSTM``, ``LLMs``, ``BP``) match in upper
case only, so "ai" inside "said" or "maintain", or a lower-case word, never counts as
the acronym. Otherwise matching is case-insensitive. Nothing else is added: the rule
is deliberately as naive as the paper's lexicon, so it misses wordings outside the
list (bare "AI", "ML", "NLP", "neural networks", "AI-powered") and fires on seed
terms used in other senses ("learning models" for staff training, a complaints
"decision tree", cheque "image processing").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

# The seed terms, verbatim and in order, from ``ai_seedwords.csv`` of the sister project
# bilalezafar/FinAI-BERT-IslamicBanks (MIT), which models.md section 3.2 cites as "the full
# list"; models.md itself only quotes examples. Gap filled: the list there is taken as the
# FinAI-BERT lexicon too (models.md: the pipeline is shared, "assumed identical"). Its
# oddities are kept on purpose ("LLMs models", "intelligence machine"; robotic process
# automation and OCR filed under Computer Vision), and there is no bare "AI" / "ML" term.
SEED_LEXICON: dict[str, tuple[str, ...]] = {
    "Artificial Intelligence (AI)": (
        "artificial intelligence", "artificial intelligence technology", "decision support system",
        "intelligence technology", "intelligence machine", "AI systems", "AI adoption", "AI technologies",
        "AI applications", "AI techniques", "AI models",
    ),
    "Machine Learning (ML)": (
        "machine learning", "learning algorithms", "learning models", "ensemble learning",
        "extreme learning", "learning classifiers", "predictive learning", "support vector machine",
        "decision tree", "random forest", "gradient boosting", "supervised learning",
        "unsupervised learning", "reinforcement learning", "Markov decision process",
        "machine learning algorithms", "machine learning models", "machine learning techniques",
        "traditional machine learning", "unsupervised machine learning",
    ),
    "Deep Learning (DL)": (
        "deep learning", "BP neural network", "LSTM model", "representation learning",
        "deep learning models", "deep learning algorithms", "deep reinforcement learning",
        "deep neural networks", "convolutional neural network", "recurrent neural network",
        "graph neural networks", "deep learning approach", "long short-term memory",
    ),
    "Generative AI (GenAI)": (
        "generative artificial intelligence", "generative adversarial networks", "large language models",
        "generative AI", "generative adversarial", "LLMs models", "contrastive learning", "ChatGPT",
    ),
    "Natural Language Processing (NLP)": (
        "natural language processing", "sentiment analysis", "named entity recognition",
        "bidirectional encoder representations",
    ),
    "Computer Vision (CV)": (
        "computer vision", "image processing", "face recognition", "object detection",
        "image classification", "character recognition", "optical character recognition",
        "handwritten character recognition", "robotic process automation",
    ),
    "Explainable AI (XAI)": (
        "explainable artificial intelligence", "shapley additive explanations",
        "interpretable machine learning", "explainable AI",
    ),
}  # fmt: skip

LEXICON_TERMS: tuple[str, ...] = tuple(dict.fromkeys(t for terms in SEED_LEXICON.values() for t in terms))

_ACRONYM = re.compile(r"^[A-Z]{2,}s?$")


def _term_pattern(term: str) -> str:
    parts = []
    for tok in term.split():
        esc = re.escape(tok)
        parts.append(f"(?-i:{esc})" if _ACRONYM.match(tok) else esc)
    return r"(?<![A-Za-z0-9])" + r"\s+".join(parts) + r"(?:e?s)?(?![A-Za-z0-9])"


@lru_cache(maxsize=8)
def _compile(terms: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so the reported match is the most specific term.
    ordered = sorted(terms, key=len, reverse=True)
    return re.compile("|".join(f"(?:{_term_pattern(t)})" for t in ordered), re.IGNORECASE)


def matched_terms(sentence: str, terms: Sequence[str] = LEXICON_TERMS) -> list[str]:
    """The spans of ``sentence`` that match a seed term, in order of appearance.

    Args:
        sentence: One sentence (any whitespace).
        terms: The lexicon to match; the paper's seed terms by default.

    Returns:
        The matched text spans (as written in the sentence, non-overlapping).
    """
    return [m.group(0) for m in _compile(tuple(terms)).finditer(sentence)]


def keyword_rule(sentences: Iterable[str], terms: Sequence[str] = LEXICON_TERMS) -> np.ndarray:
    """The seed-lexicon keyword baseline: 1 where a sentence contains a seed term, else 0.

    Args:
        sentences: The sentences to classify.
        terms: The lexicon to match; the paper's seed terms by default.

    Returns:
        An int64 array of 0/1 predictions, one per sentence.
    """
    pat = _compile(tuple(terms))
    return np.fromiter((pat.search(s) is not None for s in sentences), dtype=np.int64)


def candidates(sentences: Sequence[str], terms: Sequence[str] = LEXICON_TERMS) -> list[int]:
    """Indices of the sentences that match the seed lexicon: the paper's AI candidates for annotation.

    Args:
        sentences: The sentences of one or more reports.
        terms: The lexicon to match; the paper's seed terms by default.

    Returns:
        The indices, ascending, of the sentences holding a seed term.
    """
    return np.flatnonzero(keyword_rule(sentences, terms)).tolist()
