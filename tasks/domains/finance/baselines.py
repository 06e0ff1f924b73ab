"""The finance baselines of FinAI-BERT (models.md 3.4): TF-IDF + scikit-learn, and the seed-lexicon rule.

* ``tfidf_logreg``: TF-IDF (1-2 grams, 5,000 features) + logistic regression (max_iter 1000);
* ``tfidf_nb``: the same features + multinomial naive Bayes;
* ``tfidf_rf``: the same features + random forest (100 trees, random_state = seed);
* ``keyword``: the paper's candidate-extraction rule used as a classifier: a sentence
  holding any seed-lexicon term is called AI (:mod:`tasks.domains.finance.lexicon`).

XGBoost, the paper's fourth baseline, is left out: it is one more compiled dependency
for a model that the paper's sister run placed between RF and LR.

Every baseline takes raw sentences (an array of ``str``) and has ``predict_proba``, so
the generic train stage scores them like any scikit-learn estimator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline

from tasks.domains.finance import lexicon

BASELINES = ("tfidf_logreg", "tfidf_nb", "tfidf_rf", "keyword")


class KeywordRule:
    """The seed-lexicon rule with the scikit-learn classifier interface (no fitting needed).

    ``predict_proba`` is 1.0 for the AI class where a seed term occurs (whole word,
    acronyms upper-case), 0.0 otherwise: a hard rule, so its ROC curve is one point.
    """

    classes_ = np.array([0, 1])

    def __init__(self, terms: Sequence[str] = lexicon.LEXICON_TERMS) -> None:
        self.terms = tuple(terms)

    def fit(self, sentences, y=None) -> KeywordRule:  # noqa: ARG002 - the rule has nothing to learn
        return self

    def predict_proba(self, sentences) -> np.ndarray:
        hit = lexicon.keyword_rule(list(sentences), self.terms).astype(np.float64)  # (N,)
        return np.stack([1.0 - hit, hit], axis=1)  # (N, 2)

    def predict(self, sentences) -> np.ndarray:
        return lexicon.keyword_rule(list(sentences), self.terms)


def make_baseline(name: str, seed: int = 42):
    """An unfitted baseline by name (one of :data:`BASELINES`)."""
    if name == "keyword":
        return KeywordRule()

    heads = {
        "tfidf_logreg": lambda: LogisticRegression(max_iter=1000),
        "tfidf_nb": MultinomialNB,
        # n_jobs=1: the stage may run beside other work on a small machine.
        "tfidf_rf": lambda: RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1),
    }
    if name not in heads:
        raise ValueError(f"unknown finance baseline {name!r}; known: {', '.join(BASELINES)}")
    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), max_features=5000), heads[name]())


def fit_baselines(names: Sequence[str], sentences: Sequence[str], labels: np.ndarray, seed: int = 42) -> dict:
    """Fit the named baselines on ``sentences`` / ``labels`` (0/1). Returns ``{name: fitted estimator}``."""
    x = np.asarray(list(sentences), dtype=object)
    y = np.asarray(labels, dtype=np.int64)
    if len(np.unique(y)) < 2:
        raise ValueError(f"finance baselines need both labels in the training sentences, got only {np.unique(y)}")
    return {name: make_baseline(name, seed).fit(x, y) for name in names}
