"""The finance domain's ingest and preprocess: real readers on real files, the split, the annotation
round trip, and every bad input named without leaving anything partial behind."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from tasks import store
from tasks.domains.finance.data import load_split
from tasks.domains.finance.ingest import ingest
from tasks.domains.finance.preprocess import preprocess
from tasks.domains.finance.sources import LabelsError, NoDocumentsError
from tasks.domains.finance.text import DocumentError
from tasks.params import load_params
from tests.conftest import SHARED_DATA, setup_project

REAL = SHARED_DATA / "finance" / "finai_islamic_banks.csv"


def _params(*overrides: str):
    return load_params(overrides=list(overrides))


def _bad_documents(folder):
    """One of each bad document the issue names, beside two good reports."""
    import pypdf

    from tasks.domains.finance.synthetic import generate

    gen = generate(folder / "gen", n_institutions=1, years=(2022, 2023), seed=3)
    docs = folder / "docs"
    docs.mkdir()
    for f in gen["files"]:
        shutil.copy2(f, docs)
    (docs / "corrupt-bank_2021.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage")
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt("secret")
    with open(docs / "locked-bank_2021.pdf", "wb") as f:
        writer.write(f)
    (docs / "empty-bank_2021.txt").write_text(" \n", encoding="utf-8")
    (docs / "latin-bank_2021.txt").write_bytes("Caf\u00e9 revenue rose by ten percent this year.".encode("latin-1"))
    (docs / "script-bank_2021.html").write_text("<html><script>var x = 1;</script></html>", encoding="utf-8")
    return docs, gen


def test_synthetic_ingest_and_preprocess(project):
    params = _params()
    m = ingest(params)
    assert m["documents"] == 4 and m["skipped"] == [] and m["labelled_sentences"] > 100
    assert set(m["label_counts"]) == {"non-AI", "AI"}
    docs = pl.read_parquet(project / "data/raw/finance/documents.parquet")
    assert set(docs["format"].unique()) <= {"txt", "html", "pdf"} and docs["year"].is_not_null().all()
    labels = pl.read_parquet(project / "data/raw/finance/labels.parquet")
    assert set(labels["year"].unique()) == {2022, 2023}  # from metadata.csv through the label file's `file`

    out = preprocess(params)
    schema = json.loads((project / "data/processed/finance/schema.json").read_text())
    assert schema["splits"]["test"]["n"] == out["splits"]["test"]["n"]
    parts = {n: pl.read_parquet(project / f"data/processed/finance/{n}.parquet") for n in ("train", "val", "test")}
    keys = {n: {s.casefold() for s in f["sentence"]} for n, f in parts.items()}
    assert not (keys["train"] & keys["test"]) and not (keys["val"] & keys["test"]) and not (keys["train"] & keys["val"])
    total = sum(f.height for f in parts.values())
    assert total == schema["dedup"]["labelled"] - schema["dedup"]["duplicates"] - schema["dedup"]["conflicting"]
    assert abs(parts["test"].height / total - 0.2) < 0.01
    share = {n: f["label"].mean() for n, f in parts.items()}  # stratified: the AI share is kept
    assert abs(share["test"] - share["train"]) < 0.03
    test = load_split("test")
    ids, mask = test.batch(np.arange(len(test)))[0]
    assert ids.shape == mask.shape and ids.shape[1] <= 128 and (mask.sum(1) > 2).all()
    assert list(test.text) == parts["test"]["sentence"].to_list()
    cands = pl.read_csv(project / "data/processed/finance/candidates.csv")
    assert cands.columns == ["document", "institution", "year", "sentence", "candidate", "matched_terms", "label"]
    n_ai = int((cands["candidate"] == 1).sum())
    assert n_ai > 0 and int((cands["candidate"] == 0).sum()) == n_ai
    assert (cands.filter(pl.col("candidate") == 1)["matched_terms"].str.len_chars() > 0).all()
    assert cands["label"].null_count() == cands.height  # left for the annotator


def test_split_is_reproducible_and_seeded(project):
    ingest(_params())
    preprocess(_params())
    first = pl.read_parquet(project / "data/processed/finance/test.parquet")["sentence"].to_list()
    preprocess(_params())
    assert pl.read_parquet(project / "data/processed/finance/test.parquet")["sentence"].to_list() == first
    preprocess(_params("preprocess.finance.seed=7"))
    assert pl.read_parquet(project / "data/processed/finance/test.parquet")["sentence"].to_list() != first


def test_annotated_candidates_are_reimported_as_labels(project):
    """Export -> annotate -> ingest as labels -> preprocess: the annotation loop of the paper."""
    ingest(_params())
    preprocess(_params())
    cands = pl.read_csv(project / "data/processed/finance/candidates.csv")
    truth = pl.read_parquet(project / "data/raw/finance/labels.parquet").select("sentence", "label")
    # The "annotator" labels each candidate from the generator's ground truth (keyword hit if unknown).
    lookup = dict(zip(truth["sentence"], truth["label"], strict=True))
    annotated = cands.with_columns(label=pl.Series([lookup.get(s, c) for s, c in zip(
        cands["sentence"], cands["candidate"], strict=True)]))
    path = project / "annotated.csv"
    annotated.write_csv(path)
    params = _params("ingest.finance.source=null", f"ingest.finance.labels={path}")
    m = ingest(params)
    assert m["labelled_sentences"] == cands.height and m["documents"] == 0
    out = preprocess(params)
    assert sum(v["n"] for v in out["splits"].values()) == cands.height  # candidates are already unique
    assert set(pl.read_parquet(project / "data/processed/finance/train.parquet")["year"].unique()) <= {2022, 2023}


def test_unannotated_candidates_are_refused_with_the_rows(project):
    ingest(_params())
    preprocess(_params())
    path = project / "data/processed/finance/candidates.csv"
    with pytest.raises(LabelsError, match=r"candidates\.csv: column 'label' must be 0 or 1; got None at lines 2, 3"):
        ingest(_params("ingest.finance.source=null", f"ingest.finance.labels={path}"))


def test_bad_documents_are_skipped_counted_and_named(project):
    docs, gen = _bad_documents(project)
    params = _params(f"ingest.finance.source={docs}", f"ingest.finance.labels={gen['labels']}")
    m = ingest(params)
    assert m["documents"] == 2  # the two good reports
    reasons = {s["file"].rsplit("/", 1)[-1]: s["reason"] for s in m["skipped"]}
    assert set(reasons) == {"corrupt-bank_2021.pdf", "locked-bank_2021.pdf", "empty-bank_2021.txt",
                            "latin-bank_2021.txt", "script-bank_2021.html"}
    assert "not a readable PDF" in reasons["corrupt-bank_2021.pdf"]
    assert "encrypted" in reasons["locked-bank_2021.pdf"]
    assert "empty" in reasons["empty-bank_2021.txt"]
    assert "not valid utf-8" in reasons["latin-bank_2021.txt"]
    assert "no visible text" in reasons["script-bank_2021.html"]
    manifest = json.loads((project / "data/raw/finance/manifest.json").read_text())
    assert len(manifest["skipped"]) == 5
    docs_read = pl.read_parquet(project / "data/raw/finance/documents.parquet")
    assert sorted(docs_read["document"].unique()) == sorted(p.rsplit("/", 1)[-1] for p in gen["files"])


def test_bad_document_in_error_mode_stops_and_keeps_the_previous_data(project):
    ingest(_params())
    before = store.content_hash(project / "data/raw/finance")
    docs, gen = _bad_documents(project)
    params = _params(f"ingest.finance.source={docs}", "ingest.finance.on_bad_document=error")
    with pytest.raises(DocumentError, match=r"corrupt-bank_2021\.pdf"):
        ingest(params)
    assert store.content_hash(project / "data/raw/finance") == before
    assert not [p for p in (project / "data/raw").iterdir() if p.name.startswith(".")]  # no temp folder left


def test_only_bad_documents_is_an_error(project):
    docs, _ = _bad_documents(project)
    for good in list(docs.glob("*_2022.*")) + list(docs.glob("*_2023.*")):
        good.unlink()
    with pytest.raises(NoDocumentsError, match="no readable document among 5"):
        ingest(_params(f"ingest.finance.source={docs}"))
    assert not (project / "data/raw/finance").exists()


@pytest.mark.parametrize(("content", "match"), [
    ("text,label\nThe bank uses AI to score loans today.,1\n", r"bad\.csv: missing required column\(s\) \['sentence'\]"),
    ("sentence,tag\nThe bank uses AI to score loans today.,1\n", r"bad\.csv: missing required column\(s\) \['label'\]"),
    ("sentence,label\nThe bank uses AI to score loans today.,1\nNet income rose by four percent.,2\n"
     "Deposits grew in every region.,yes\n", r"bad\.csv: column 'label' must be 0 or 1; got '2' at lines 3, 4"),
    ("sentence,label\n,1\n", r"bad\.csv: column 'sentence' is empty at line 2"),
    ("sentence,label\n", r"bad\.csv: no labelled rows"),
    ("", r"bad\.csv: the file is empty"),
])
def test_bad_label_files_are_named_and_nothing_is_written(project, content, match):
    ingest(_params())
    before = store.content_hash(project / "data/raw/finance")
    bad = project / "bad.csv"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(LabelsError, match=match):
        ingest(_params("ingest.finance.source=null", f"ingest.finance.labels={bad}"))
    assert store.content_hash(project / "data/raw/finance") == before


def test_parquet_labels_with_years_and_a_too_small_split(project):
    frame = pl.DataFrame({"sentence": ["We deploy machine learning models for fraud detection.",
                                       "Net interest income rose on higher lending volumes.",
                                       "Our chatbot answered most customer queries.",
                                       "The board met eleven times during the year."] * 3,
                          "label": [1, 0, 1, 0] * 3, "year": ["2021", "2022", None, "2023"] * 3})
    path = project / "labels.parquet"
    frame.write_parquet(path)
    params = _params("ingest.finance.source=null", f"ingest.finance.labels={path}")
    m = ingest(params)
    assert m["labelled_sentences"] == 12 and m["label_counts"] == {"non-AI": 6, "AI": 6}
    years = pl.read_parquet(project / "data/raw/finance/labels.parquet")["year"]
    assert years.dtype == pl.Int64 and years.null_count() == 3
    with pytest.raises(ValueError, match=r"cannot split 4 labelled sentences \(2 non-AI, 2 AI\)"):
        preprocess(params)  # 20 % of 4 sentences cannot hold both labels
    out = preprocess(_params("ingest.finance.source=null", f"ingest.finance.labels={path}",
                             "preprocess.finance.test_fraction=0.5", "preprocess.finance.val_fraction=0"))
    assert out["dedup"]["duplicates"] == 8  # 12 rows, 4 distinct sentences
    assert out["splits"]["train"]["n"] == out["splits"]["test"]["n"] == 2
    assert out["splits"]["test"]["ai"] == 1


def test_conflicting_duplicates_are_dropped(project):
    path = project / "labels.csv"
    rows = ["We deploy machine learning models for fraud detection.,1",
            "we deploy  MACHINE learning models for fraud detection.,0",  # same sentence, other label
            "Net interest income rose on higher lending volumes.,0",
            "Our chatbot answered most customer queries this year.,1",
            "Our chatbot answered most customer queries this year.,1",
            "The board met eleven times during the year.,0",
            "A virtual assistant now handles card disputes.,1",
            "Deposits grew in every region we serve.,0"]
    path.write_text("sentence,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    params = _params("ingest.finance.source=null", f"ingest.finance.labels={path}",
                     "preprocess.finance.val_fraction=0", "preprocess.finance.test_fraction=0.4")
    ingest(params)
    out = preprocess(params)
    assert out["dedup"] == {"labelled": 8, "empty_after_cleaning": 0, "duplicates": 1, "conflicting": 2}
    kept = pl.concat([pl.read_parquet(project / f"data/processed/finance/{n}.parquet") for n in ("train", "test")])
    assert kept.height == 5 and not kept["sentence"].str.contains("(?i)fraud detection").any()


def test_documents_metadata_from_pattern_and_sidecar(project):
    from tasks.domains.finance.sources import document_metadata

    pattern = _params().ingest.finance.name_pattern
    assert document_metadata("harbor-point-bancorp_2021.pdf", {}, pattern) == ("harbor-point-bancorp", 2021)
    assert document_metadata("Bank Alpha 2019 annual report.txt", {}, pattern) == ("Bank Alpha", 2019)
    assert document_metadata("report.txt", {}, pattern) == (None, None)
    assert document_metadata("x.txt", {"x.txt": ("Bank X", 2020)}, pattern) == ("Bank X", 2020)


@pytest.mark.skipif(not REAL.exists(), reason="../shared/data/finance is not present")
def test_real_finai_sentences_split_as_the_paper(project):
    """FinAI-BERT-IslamicBanks: 2,632 sentences, 7 repeats; stratified 80/20 with seed 42; TF-IDF LR on it."""
    from sklearn.metrics import accuracy_score

    from tasks.domains.finance.baselines import fit_baselines

    params = _params("ingest.finance.source=null", f"ingest.finance.labels={REAL}")
    m = ingest(params)
    assert m["labelled_sentences"] == 2632 and m["label_counts"] == {"non-AI": 1316, "AI": 1316}
    out = preprocess(params)
    assert out["dedup"]["duplicates"] == 7 and out["dedup"]["conflicting"] == 0
    assert out["splits"]["test"]["n"] == 525 and out["has_year"] is False
    train, test = load_split("train"), load_split("test")
    assert abs(test.labels.mean() - 0.5) < 0.01
    fitted = fit_baselines(["tfidf_logreg", "keyword"], train.text, train.labels)
    acc = {n: accuracy_score(test.labels, e.predict_proba(test.text)[:, 1] >= 0.5) for n, e in fitted.items()}
    assert acc["tfidf_logreg"] > 0.93  # the sister study: LR 0.97
    # The set was built by the lexicon (AI = verified candidates holding a seed term, non-AI = sampled
    # sentences holding none, models.md 3.2), so the keyword rule is near perfect on it by construction.
    assert acc["keyword"] > 0.97


def test_setup_project_is_isolated(tmp_path, monkeypatch):
    """A second project does not see the first one's finance data (the fixture's contract)."""
    a = setup_project(tmp_path / "a", monkeypatch)
    ingest(_params())
    b = setup_project(tmp_path / "b", monkeypatch)
    assert (a / "data/raw/finance/manifest.json").exists() and not (b / "data/raw/finance").exists()
