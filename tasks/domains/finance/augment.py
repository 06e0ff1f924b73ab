"""Training-split augmentation of the finance domain, with the edge-case set and held-out sentences kept out.

An encoder fine-tuned on lexicon-selected sentences (the FinAI set: every positive holds a
seed term, no negative does) learns the lexicon: it misreads "machine lerning", AI
worded without a seed term, and seed-like words used in other senses (docs/finance.md, "Results on
real data: FinAI"). ``preprocess.finance.augment`` mixes into the **training split only**:

* ``synthetic_disclosures``: AI disclosures from the synthetic annual-report generator
  (:mod:`.synthetic`) that hold **no** seed-lexicon term ("AI-powered virtual assistant",
  "self-learning algorithms", "neural network scorecards", ...), label 1;
* ``synthetic_hard_negatives``: the generator's hard negatives ("learning and development",
  "artificial reef", a complaints "decision tree", cheque "image processing", ...), label 0;
* ``synthetic_plain``: ordinary report sentences of the generator, label 0 (they balance
  the synthetic positives, so the origin of a sentence does not predict its label);
* ``typos``: the share of training sentences (real and synthetic) added once more with
  spelling noise (:func:`typo_copy`): dropped, swapped, doubled or replaced letters in
  about one word in six, always in a seed-lexicon term when the sentence holds one (so the
  term's exact spelling stops being the signal), dotted or spaced acronyms ("A.I.",
  "a.i."), spaced or doubled punctuation. The label is kept.

The generator's sentences are drawn from reports of all 48 institutions and ``years``
with their own seed (``augment.seed``), independent of ``ingest.finance.synthetic``.

What never reaches training (:func:`augment_training`):

1. **The edge-case set** (:data:`.edge_cases.EDGE_CASES`), which measures generalisation.
   A generated sentence whose normalised text (:func:`norm_key`: case-folded, letters and
   digits only) equals an edge case, or that shares a run of ``max_shared_words``
   consecutive words with one (a near copy: the generator's "Intelligent deposit machines
   ... accept cash and cheques" and the edge case "Intelligent deposit machines accept cash
   and cheques around the clock"), is dropped before sampling. Then
   :func:`check_no_leak` verifies the whole augmented training split, real sentences
   included: any normalised-text match with an edge case is a :class:`LeakError`.
2. **Held-out sentences** (validation and test split): generated sentences matching one are
   dropped, and :func:`check_no_leak` raises on any that is left.

The counts of each step (drawn, dropped as near copies, added) go into ``schema.json``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from tasks.domains.finance import lexicon, synthetic, text
from tasks.domains.finance.edge_cases import EDGE_CASES
from tasks.domains.finance.params import FinanceAugment

ORIGINS = ("real", "synthetic_disclosure", "synthetic_hard_negative", "synthetic_plain", "typo")
"""Values of the ``origin`` column of an augmented training split."""

_N_INSTITUTIONS = 48  # every name the generator has: the widest pool of wordings
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


class LeakError(ValueError):
    """A sentence of the edge-case set or of a held-out split is in the training sentences."""


def norm_key(sentence: str) -> str:
    """The text two sentences must share to count as the same: cleaned, case-folded, letters and digits.

    Stricter than the de-duplication key: "A.I.-driven chatbot!!" and "a i driven chatbot" are one sentence here.
    """
    return _NON_ALNUM.sub(" ", text.clean(sentence).casefold()).strip()


def _words(sentence: str) -> list[str]:
    return norm_key(sentence).split()


def _runs(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def edge_case_keys() -> set[str]:
    """Normalised text of the 40 edge cases."""
    return {norm_key(e.sentence) for e in EDGE_CASES}


class NearCopyFilter:
    """Tells whether a sentence is (nearly) one of a protected set: same normalised text or a shared word run.

    Args:
        protected: The sentences to protect (the edge cases).
        max_shared_words: A sentence sharing this many consecutive normalised words with a protected
            one is a near copy; 0 = only the exact normalised text counts.
    """

    def __init__(self, protected: Iterable[str], max_shared_words: int) -> None:
        self.n = max_shared_words
        protected = list(protected)
        self.keys = {norm_key(s) for s in protected}
        self.runs: set[tuple[str, ...]] = set()
        if self.n:
            for s in protected:
                self.runs |= _runs(_words(s), self.n)

    def __call__(self, sentence: str) -> bool:
        if norm_key(sentence) in self.keys:
            return True
        return bool(self.n) and not self.runs.isdisjoint(_runs(_words(sentence), self.n))


def check_no_leak(train_sentences: Iterable[str], held_out: dict[str, Iterable[str]]) -> None:
    """Raise when a training sentence equals (normalised text) a sentence of a held-out set.

    Args:
        train_sentences: The (augmented) training sentences.
        held_out: Name -> sentences that must stay out of training (``edge cases``, ``test``, ``val``).

    Raises:
        LeakError: Naming the set, how many sentences leaked and up to three of them.
    """
    train_keys = {norm_key(s) for s in train_sentences}
    for name, sentences in held_out.items():
        leaked = [s for s in sentences if norm_key(s) in train_keys]
        if leaked:
            shown = "; ".join(repr(s) for s in leaked[:3])
            raise LeakError(f"{len(leaked)} sentence(s) of the {name} set are in the training split "
                            f"(normalised text): {shown}")


# ----------------------------------------------------------------------------- synthetic sentences
def synthetic_pool(aug: FinanceAugment) -> dict[str, list[str]]:
    """Distinct generator sentences by origin, in a fixed order (the draw does not depend on the counts asked).

    Disclosures are the generator's AI sentences without any seed-lexicon term; hard negatives
    and plain sentences are its ``hard_negative`` and ``plain`` kinds.
    """
    return {k: list(v) for k, v in _pool(aug.seed, tuple(aug.years)).items()}


@functools.lru_cache(maxsize=4)
def _pool(seed: int, years: tuple[int, ...]) -> dict[str, tuple[str, ...]]:
    # Cached: drawing 240 reports takes seconds, and cross-validation asks once per fold.
    pool: dict[str, dict[str, None]] = {"synthetic_disclosure": {}, "synthetic_hard_negative": {},
                                        "synthetic_plain": {}}
    origin_of = {"ai": "synthetic_disclosure", "hard_negative": "synthetic_hard_negative", "plain": "synthetic_plain"}
    for index in range(_N_INSTITUTIONS):
        for year in years:
            _, rows = synthetic.synthesize_report(seed, index, year)
            for _section, sentence, _label, kind in rows:
                pool[origin_of[kind]][sentence] = None
    ai = list(pool["synthetic_disclosure"])
    hit = lexicon.keyword_rule(ai) if ai else np.zeros(0, dtype=np.int64)
    return {"synthetic_disclosure": tuple(s for s, h in zip(ai, hit, strict=True) if not h),
            "synthetic_hard_negative": tuple(pool["synthetic_hard_negative"]),
            "synthetic_plain": tuple(pool["synthetic_plain"])}


# ----------------------------------------------------------------------------- typos
_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS = {c: row[max(i - 1, 0):i] + row[i + 1:i + 2] for row in _KEY_ROWS for i, c in enumerate(row)}
"""Keys beside each letter on its keyboard row: the letter a slipping finger types instead."""


def _misspell(word: str, rng: np.random.Generator) -> str:
    """One letter-level error in a word of 4+ letters: drop, swap, double or hit a neighbouring key."""
    letters = [i for i, c in enumerate(word) if c.isalpha()]
    if len(letters) < 4:
        return word
    i = int(rng.choice(letters[1:]))  # the first letter stays: typos rarely hit it
    op = int(rng.integers(4))
    if op == 0:
        return word[:i] + word[i + 1:]
    if op == 1 and i + 1 < len(word) and word[i + 1].isalpha():
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == 2:
        return word[:i] + word[i] + word[i:]
    near = _NEIGHBOURS.get(word[i].lower(), "")
    return word[:i] + (str(rng.choice(list(near))) if near else word[i]) + word[i + 1:]


def typo_copy(sentence: str, rng: np.random.Generator, word_rate: float = 0.15) -> str:
    """A noisy copy of a sentence (same meaning, same label); may equal the input when nothing applied.

    Misspells about ``word_rate`` of the words of 4+ letters and always one word of each
    seed-lexicon term the sentence holds; writes acronyms dotted or lower-case ("A.I.",
    "a.i.") and punctuation spaced or doubled, each now and then.
    """
    words = sentence.split(" ")
    term_words = {w.casefold() for t in lexicon.matched_terms(sentence) for w in t.split() if len(w) >= 4}
    hit_terms: set[str] = set()
    out = []
    for w in words:
        core = w.strip(".,;:!?()\"'")
        if core.casefold() in term_words and core.casefold() not in hit_terms and rng.random() < 0.8:
            hit_terms.add(core.casefold())
            w = w.replace(core, _misspell(core, rng), 1)
        elif re.fullmatch(r"[A-Z]{2,3}s?", core) and rng.random() < 0.5:
            dotted = ".".join(core) + "."
            w = w.replace(core, dotted.lower() if rng.random() < 0.5 else dotted, 1)
        elif rng.random() < word_rate:
            w = w.replace(core, _misspell(core, rng), 1) if core else w
        out.append(w)
    s = " ".join(out)
    r = rng.random()
    if r < 0.15:
        s = re.sub(r"([,.])(?=\s)", r" \1", s, count=1)
    elif r < 0.25:
        s = re.sub(r"[.!]$", "!!", s)
    elif r < 0.3:
        s = s[:1].lower() + s[1:]
    return s


# ----------------------------------------------------------------------------- the augmentation
def augment_training(sentences: Sequence[str], labels: np.ndarray, aug: FinanceAugment,
                     held_out: Sequence[str] = ()) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """The training sentences with the augmentation of ``aug`` added after them.

    Args:
        sentences: The real training sentences.
        labels: Their labels, (N,) 0/1.
        aug: ``preprocess.finance.augment``.
        held_out: Sentences that must not enter training (the validation and test splits).

    Returns:
        ``(sentences, labels, counts)``: the real sentences first, in order, then the added ones. A real
        sentence whose normalised text is held out or an edge case is left out (counted). ``counts`` holds,
        per origin, what was available, dropped as (near) copies of the edge cases or the held-out
        sentences, and added; ``origin``: the origin of every returned sentence; ``real_kept``: the indices
        of the real sentences returned.

    Raises:
        LeakError: An edge case or a held-out sentence is in the result (:func:`check_no_leak`), which
            the filters above should make impossible: the last line of defence.
        ValueError: More synthetic sentences asked for than the generator's pool holds after filtering.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(sentences):
        raise ValueError(f"augment: {len(sentences)} sentences but {len(labels)} labels")
    rng = np.random.default_rng(aug.seed)
    near_edge = NearCopyFilter((e.sentence for e in EDGE_CASES), aug.max_shared_words)
    # A real training sentence whose normalised text is held out (the de-duplication key keeps punctuation:
    # "two- factor" and "two-factor" are two sentences to it) or is an edge case leaves training.
    out_keys = {norm_key(s) for s in held_out}
    edge_keys = edge_case_keys()
    keys = [norm_key(s) for s in sentences]
    real_kept = [i for i, k in enumerate(keys) if k not in out_keys and k not in edge_keys]
    blocked = set(keys) | out_keys  # no repeat of a real sentence, none held out
    out_text, out_y = [sentences[i] for i in real_kept], labels[real_kept].tolist()
    origin = ["real"] * len(out_text)
    counts: dict[str, Any] = {"real": len(out_text),
                              "real_dropped_held_out": sum(k in out_keys for k in keys),
                              "real_dropped_edge_case": sum(k in edge_keys and k not in out_keys for k in keys)}
    wanted = {"synthetic_disclosure": aug.synthetic_disclosures, "synthetic_hard_negative": aug.synthetic_hard_negatives,
              "synthetic_plain": aug.synthetic_plain}
    if any(wanted.values()):
        for name, pool in synthetic_pool(aug).items():
            n = wanted[name]
            near = [s for s in pool if near_edge(s)]
            kept = [s for s in pool if not near_edge(s) and norm_key(s) not in blocked]
            counts[name] = {"pool": len(pool), "near_edge_case": len(near),
                            "held_out_or_repeat": len(pool) - len(near) - len(kept), "added": n}
            if n > len(kept):
                raise ValueError(f"preprocess.finance.augment: {name.removeprefix('synthetic_')}s={n} but the "
                                 f"generator offers {len(kept)} after filtering; ask for fewer or add years")
            for i in np.sort(rng.choice(len(kept), n, replace=False)):
                out_text.append(kept[i])
                out_y.append(0 if name != "synthetic_disclosure" else 1)
                origin.append(name)
                blocked.add(norm_key(kept[i]))
    if aug.typos > 0:
        added = near_copy = 0
        base = list(zip(out_text, out_y, strict=True))
        for s, y in base:
            if rng.random() >= aug.typos:
                continue
            noisy = typo_copy(s, rng, aug.typo_word_rate)
            if norm_key(noisy) in blocked:
                continue  # unchanged, or it happens to spell a sentence already there / held out
            if near_edge(noisy):
                near_copy += 1
                continue
            out_text.append(noisy)
            out_y.append(y)
            origin.append("typo")
            blocked.add(norm_key(noisy))
            added += 1
        counts["typo"] = {"added": added, "near_edge_case": near_copy}
    check_no_leak(out_text, {"edge-case": [e.sentence for e in EDGE_CASES], "held-out (val/test)": held_out})
    counts["total"] = len(out_text)
    counts["ai"] = int(np.sum(out_y))
    counts["origin"] = origin
    counts["real_kept"] = real_kept
    return out_text, np.asarray(out_y, dtype=np.int64), counts
