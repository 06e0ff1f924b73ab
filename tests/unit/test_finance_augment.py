"""The finance training augmentation (tasks/domains/finance/augment.py) on the real sentence sets: the edge-case
set, its near copies and the held-out sentences never reach training; what is added is what was asked for."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from tasks.domains.finance import augment as A
from tasks.domains.finance import lexicon
from tasks.domains.finance.edge_cases import EDGE_CASES
from tasks.domains.finance.params import FinanceAugment, FinancePreprocess
from tasks.domains.finance.preprocess import prepare_labels, stratified_split
from tests.conftest import SHARED_DATA

REAL = SHARED_DATA / "finance" / "finai_islamic_banks.csv"
EDGE = [e.sentence for e in EDGE_CASES]
FULL = FinanceAugment(synthetic_disclosures=150, synthetic_hard_negatives=150, synthetic_plain=100, typos=0.5)


def _shares_run(sentence: str, n: int) -> bool:
    words = A.norm_key(sentence).split()
    runs = {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
    return any(runs & {tuple(w[i:i + n]) for w in [A.norm_key(e).split()] for i in range(len(w) - n + 1)}
               for e in EDGE)


@pytest.fixture(scope="module")
def pool():
    return A.synthetic_pool(FULL)


def test_the_generator_holds_near_copies_of_edge_cases_and_the_filter_catches_them(pool):
    """Without the filter the edge-case set would leak in: the generator writes near copies of some edge cases."""
    near = A.NearCopyFilter(EDGE, 4)
    caught = [s for p in pool.values() for s in p if near(s)]
    assert any("intelligent deposit machines" in A.norm_key(s) for s in caught)
    assert any("tracks competitor deposit rates" in A.norm_key(s) for s in caught)
    assert all(_shares_run(s, 4) for s in caught)
    # The exact normalised text is caught whatever the casing, spacing and punctuation.
    assert near("OUR learning-and-development programme trained 2,400 employees in 2023 !!")
    assert not A.NearCopyFilter(EDGE, 0)("Intelligent deposit machines at 15 branches accept cash and cheques.")
    assert not near("Net interest income rose by 9% to $1.2 billion.")


def test_augmented_training_keeps_edge_cases_and_held_out_sentences_out(pool):
    real = [s for p in (pool["synthetic_plain"][:60], pool["synthetic_disclosure"][-40:]) for s in p]
    y = np.array([0] * 60 + [1] * 40)
    held_out = real[:10]  # sentences that are also in the test split
    # A real training sentence equal (normalised) to an edge case or to a held-out one must leave training.
    train = [*real[10:], EDGE[0].upper(), " " + held_out[3].replace(",", " ,") + " "]
    labels = np.concatenate([y[10:], [1, y[3]]])
    text, out_y, counts = A.augment_training(train, labels, FULL, held_out=held_out)

    keys = [A.norm_key(s) for s in text]
    assert not set(keys) & {A.norm_key(e) for e in EDGE}
    assert not set(keys) & {A.norm_key(s) for s in held_out}
    assert counts["real_dropped_edge_case"] == 1 and counts["real_dropped_held_out"] == 1
    assert len(keys) == len(set(keys))  # nothing twice
    origin = counts["origin"]
    assert len(origin) == len(text) == len(out_y) == counts["total"]
    added = [(s, o) for s, o in zip(text, origin, strict=True) if o.startswith("synthetic")]
    assert not any(_shares_run(s, FULL.max_shared_words) for s, _ in added)  # no near copy of an edge case
    for name, n in (("synthetic_disclosure", 150), ("synthetic_hard_negative", 150), ("synthetic_plain", 100)):
        assert origin.count(name) == n == counts[name]["added"]
        assert counts[name]["near_edge_case"] >= (1 if name != "synthetic_plain" else 0)
    labels_of = {o: set(out_y[[i for i, x in enumerate(origin) if x == o]].tolist()) for o in set(origin)}
    assert labels_of["synthetic_disclosure"] == {1}
    assert labels_of["synthetic_hard_negative"] == labels_of["synthetic_plain"] == {0}
    disclosures = [s for s, o in added if o == "synthetic_disclosure"]
    assert not lexicon.keyword_rule(disclosures).any()  # worded without the seed lexicon
    # Typo copies: about half of the sentences, each with its source's label, all different from any source.
    typo = [i for i, o in enumerate(origin) if o == "typo"]
    n_base = len(text) - len(typo)
    assert 0.35 * n_base < len(typo) < 0.65 * n_base
    assert not {keys[i] for i in typo} & set(keys[:n_base])


def test_check_no_leak_raises_naming_the_set():
    train = ["Net interest income rose.", EDGE[5].lower().replace(".", " .")]
    with pytest.raises(A.LeakError, match=r"1 sentence\(s\) of the edge-case set"):
        A.check_no_leak(train, {"edge-case": EDGE})
    with pytest.raises(A.LeakError, match="test set"):
        A.check_no_leak(["Deposits grew by 4%."], {"test": ["deposits grew by 4 % !"]})
    A.check_no_leak(["Deposits grew by 5%."], {"edge-case": EDGE, "test": ["Deposits grew by 4%."]})


def test_typo_copy_misspells_the_lexicon_term_and_keeps_the_rest():
    rng = np.random.default_rng(3)
    s = "We expanded the use of machine learning to detect fraud in card payments."
    copies = [A.typo_copy(s, rng, word_rate=0.0) for _ in range(50)]
    changed = [c for c in copies if "machine learning" not in c]
    assert len(changed) >= 30  # the seed term is hit most of the time (0.8 per word)
    assert all(len(c.split()) == len(s.split()) for c in copies)  # letter-level noise: no word lost
    assert all(A.norm_key(c).split()[-3:] == ["in", "card", "payments"] for c in copies)


def test_too_many_asked_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match="hard_negatives=100000"):
        A.augment_training(["Deposits grew."], np.array([0]), FinanceAugment(synthetic_hard_negatives=100_000))


def test_default_is_off():
    assert not FinancePreprocess().augment.active
    assert FinanceAugment(typos=0.1).active


@pytest.mark.skipif(not REAL.exists(), reason="../shared/data/finance is not present")
def test_finai_profile_augmentation_on_the_real_split():
    """The finai profile's augmentation on the FinAI set's own split: no edge case, no val/test sentence in training
    (three FinAI training sentences equal test/val ones up to punctuation spacing: they leave training)."""
    from tasks.params import load_params

    pp = load_params(profiles=["finai", "finai-augment"]).preprocess.finance
    assert pp.augment.active
    frame, _ = prepare_labels(pl.read_csv(REAL), FinancePreprocess())
    parts = stratified_split(frame["label"].to_numpy(), pp.test_fraction, pp.val_fraction, pp.seed)
    train = frame[parts["train"].tolist()]
    held_out = [s for k in ("val", "test") for s in frame[parts[k].tolist()]["sentence"]]
    text, y, counts = A.augment_training(train["sentence"].to_list(), train["label"].to_numpy(), pp.augment,
                                         held_out)
    keys = {A.norm_key(s) for s in text}
    assert not keys & {A.norm_key(e) for e in EDGE}
    assert not keys & {A.norm_key(s) for s in held_out}
    assert counts["real_dropped_held_out"] >= 1  # the pre-existing punctuation-only duplicates across the split
    assert counts["real"] + counts["real_dropped_held_out"] + counts["real_dropped_edge_case"] == train.height
    json.dumps({k: v for k, v in counts.items() if k not in ("origin", "real_kept")})  # goes into schema.json


def test_preprocess_augments_the_training_split_only(project):
    """The stage on the synthetic corpus: validation and test splits as without augmentation, training grows
    by the augmentation with an ``origin`` column, and none of its sentences is held out or an edge case."""
    from tasks.domains.finance.ingest import ingest
    from tasks.domains.finance.preprocess import preprocess
    from tasks.params import load_params

    ingest(load_params())
    folder = project / "data/processed/finance"
    preprocess(load_params())
    plain = {n: pl.read_parquet(folder / f"{n}.parquet") for n in ("train", "val", "test")}
    sets = ["preprocess.finance.augment.synthetic_disclosures=20", "preprocess.finance.augment.synthetic_hard_negatives=20",
            "preprocess.finance.augment.typos=0.3"]
    preprocess(load_params(overrides=sets))
    aug = {n: pl.read_parquet(folder / f"{n}.parquet") for n in ("train", "val", "test")}
    schema = json.loads((folder / "schema.json").read_text())
    for n in ("val", "test"):
        assert aug[n].equals(plain[n])
    assert "origin" not in plain["train"].columns
    counts = aug["train"]["origin"].value_counts()
    by = dict(zip(counts["origin"], counts["count"], strict=True))
    assert by["synthetic_disclosure"] == by["synthetic_hard_negative"] == 20 and by["typo"] > 0
    assert by["real"] + schema["augment"]["real_dropped_held_out"] == plain["train"].height
    assert schema["splits"]["train"]["n"] == aug["train"].height == schema["augment"]["total"]
    keys = {A.norm_key(s) for s in aug["train"]["sentence"]}
    held = {A.norm_key(s) for n in ("val", "test") for s in aug[n]["sentence"]}
    assert not keys & held and not keys & {A.norm_key(e) for e in EDGE}
