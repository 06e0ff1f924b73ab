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

The fitted baselines are kept beside the teacher (:func:`save_fitted`, called by the train stage through
the domain's ``extra_train``): ``artifacts/finance/baselines/models/<name>.skops`` for the TF-IDF models,
written with skops (a format that rebuilds only types it is told to trust, unlike pickle), and
``keyword.json`` (the seed terms) for the rule. ``formerflow score finance --sentences FILE --model <name>``
loads them (:func:`load_fitted`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline

from tasks.domains.finance import lexicon

BASELINES = ("tfidf_logreg", "tfidf_nb", "tfidf_rf", "keyword")
SAVED_DIR = "models"
"""The folder, inside the train stage's baselines folder, that holds the fitted baselines."""
TRUSTED_TYPES = frozenset({"sklearn.tree._tree.Tree"})
"""Types a saved baseline may hold beyond what skops trusts by default (scikit-learn's estimators, numpy, scipy):
the random forest's trees. A file asking for anything else is refused, not loaded."""


class UnknownBaselineError(ValueError):
    """A ``--model`` that names no saved baseline (the message lists the ones there are)."""


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


def save_fitted(fitted: dict, folder: Path) -> dict[str, str]:
    """Write each fitted baseline to ``folder/models/``: ``<name>.skops`` (TF-IDF models), ``keyword.json`` (the
    rule's terms). Returns ``{name: file name}``.

    skops, not pickle: loading a skops file rebuilds only the types it is allowed to (:data:`TRUSTED_TYPES`), so a
    swapped file cannot run code when ``score --model`` reads it.
    """
    import skops.io as sio  # lazy: only the train and score stages of finance need it

    out = Path(folder) / SAVED_DIR
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, est in fitted.items():
        if isinstance(est, KeywordRule):
            (out / "keyword.json").write_text(json.dumps({"terms": list(est.terms)}, indent=1) + "\n")
            files[name] = "keyword.json"
        else:
            sio.dump(est, out / f"{name}.skops")
            files[name] = f"{name}.skops"
    return files


def saved_names(folder: Path) -> list[str]:
    """The baselines saved in ``folder/models/`` (the train stage's baselines folder), sorted."""
    out = Path(folder) / SAVED_DIR
    if not out.is_dir():
        return []
    names = {f.stem for f in out.glob("*.skops")} | ({"keyword"} if (out / "keyword.json").is_file() else set())
    return sorted(names & set(BASELINES))


def load_fitted(name: str, folder: Path):
    """The baseline ``name`` that the train stage saved in ``folder/models/``, and its file's SHA-256.

    Raises:
        UnknownBaselineError: ``name`` is no saved baseline (lists the saved ones, and says to run train when
            there are none).
        ValueError: the file holds types that are not on the allowlist (names them; nothing is loaded).
    """
    saved = saved_names(folder)
    if name not in saved:
        known = ", ".join(saved) if saved else (
            f"none saved in {Path(folder) / SAVED_DIR} (run python -m tasks train finance; "
            f"train.finance.baselines picks them from {', '.join(BASELINES)})")
        raise UnknownBaselineError(f"unknown --model {name!r}; available: champion (the registered model), {known}")
    out = Path(folder) / SAVED_DIR
    path = out / ("keyword.json" if name == "keyword" else f"{name}.skops")
    data = path.read_bytes()  # read once: what is checked is what is loaded
    digest = hashlib.sha256(data).hexdigest()
    if name == "keyword":
        terms = json.loads(data)["terms"]
        return KeywordRule([str(t) for t in terms]), digest
    import skops.io as sio  # lazy: see save_fitted

    untrusted = set(sio.get_untrusted_types(data=data))
    if untrusted - TRUSTED_TYPES:
        raise ValueError(f"{path}: refusing to load baseline {name!r}: it holds types that are not on the allowlist "
                         f"({', '.join(sorted(untrusted - TRUSTED_TYPES))}); rerun the train stage to rewrite it")
    return sio.loads(data, trusted=sorted(untrusted)), digest
