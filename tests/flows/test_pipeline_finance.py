"""The finance domain end to end: real Prefect flow run, real MLflow registry, scoring a mixed folder of reports."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from tasks import tracking

pytestmark = pytest.mark.slow


def test_finance_pipeline_registers_and_scores_a_mixed_folder(project, prefect_harness):
    from flows.pipeline import pipeline
    from flows.scoring import score_flow
    from tasks.domains.finance.synthetic import generate

    result = pipeline(domains=["finance"])["finance"]
    reg = result["register"]
    assert reg["promoted"] and reg["primary_metric"] == "f1"
    c = tracking.client()
    assert str(c.get_model_version_by_alias("formerflow-finance", "champion").version) == reg["version"]

    # Train: the shared loop with the paper's recipe (linear decay, best epoch by validation F1).
    train = json.loads((project / "reports/finance/train.json").read_text())
    assert train["key"] == "finance/text_encoder" and "best_val_f1" in train
    assert train["parameters"] == 22_713_216 + 770

    # Evaluate: encoder, int8 and baselines side by side, with the paper's extra checks.
    metrics = json.loads((project / "reports/finance/metrics.json").read_text())
    assert {"teacher", "int8", "tfidf_logreg", "keyword"} <= set(metrics["models"])
    for m in metrics["models"].values():
        assert 0.0 <= m["brier"] <= 1.0 and 0.0 <= m["precision"] <= 1.0 and 0.0 <= m["accuracy"] <= 1.0
    fin = metrics["finance"]
    assert {r["year"] for r in fin["years"]} == {2022, 2023}
    assert sum(r["n"] for r in fin["years"]) == metrics["n_test"]
    assert -1.0 <= fin["length_bias"]["r"] <= 1.0
    groups = {r["group"]: r for r in fin["edge_cases"]}
    assert set(groups) == {"typos", "paraphrase", "negation", "hard_negative", "all"}
    assert groups["all"]["n"] == 40 and 0.0 <= groups["all"]["teacher_accuracy"] <= 1.0
    assert "keyword_accuracy" in groups["all"]  # baselines scored on the edge cases in the train stage
    report = (project / "reports/finance/report.md").read_text()
    for section in ("## Calibration", "## Per-year slices", "## Sentence length vs P(AI)", "## Edge cases",
                    "## Token attributions", "| int8 | int8 |", "| keyword | TF-IDF / lexicon baseline |"):
        assert section in report
    html = (project / "reports/finance/attributions.html").read_text()
    assert html.count('class="line"') == 2 and "<script" not in html
    for plot in ("calibration.png", "length_bias.png", "roc.png"):
        assert (project / "reports/finance/plots" / plot).stat().st_size > 5000

    # Scoring: a mixed folder (TXT, HTML, PDF and one corrupt file) with the champion.
    gen = generate(project / "gen", n_institutions=3, years=(2021, 2022), seed=11, pdf_fraction=0.34,
                   html_fraction=0.33)
    new = project / "new"
    new.mkdir()
    for f in gen["files"]:
        shutil.copy2(f, new)
    assert {p.suffix for p in new.iterdir()} == {".txt", ".html", ".pdf"}
    (new / "broken-bank_2022.pdf").write_bytes(b"%PDF-1.7\n% truncated upload")
    out = project / "preds" / "finance.parquet"
    manifest = score_flow("finance", str(new), str(out))
    sentences = pl.read_parquet(out)
    assert set(sentences["document"].unique()) == {p.name for p in new.iterdir()} - {"broken-bank_2022.pdf"}
    assert sentences.columns[:6] == ["row", "document", "institution", "year", "sentence_id", "sentence"]
    assert ((sentences["p_ai"] >= 0) & (sentences["p_ai"] <= 1)).all()
    assert (sentences["prediction"] == (sentences["p_ai"] >= 0.5).cast(pl.Int64)).all()
    assert manifest["documents"] == 6 and [s["file"].rsplit("/", 1)[-1] for s in manifest["skipped"]] == [
        "broken-bank_2022.pdf"]
    docs = pl.read_csv(project / "preds" / "finance.documents.csv")
    assert docs.height == 6 and set(docs["year"]) == {2021, 2022}
    per_doc = sentences.group_by("document").agg(pl.len().alias("n"), pl.col("prediction").sum().alias("ai"))
    joined = docs.join(per_doc, on="document")
    assert (joined["sentences"] == joined["n"]).all() and (joined["ai_sentences"] == joined["ai"]).all()
    assert np.allclose(joined["ai_share"], joined["ai"] / joined["n"])
    assert (project / "preds" / "finance.intensity.png").stat().st_size > 5000
    md = (project / "preds" / "finance.report.md").read_text()
    assert "broken-bank_2022.pdf" in md and "not a readable PDF" in md and "1 document(s) skipped" in md

    # The Prefect artifact names the skipped file too.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as pc:
        arts = pc.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["finance-scoring"])))
    assert arts and "broken-bank_2022.pdf" in arts[0].data

    # A folder of nothing but bad documents: a clear error and no output file at all.
    from tasks.domains.finance.sources import NoDocumentsError
    from tasks.params import load_params
    from tasks.score import score

    bad = project / "bad"
    bad.mkdir()
    (bad / "a_2022.pdf").write_bytes(b"not a pdf")
    (bad / "b_2022.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(NoDocumentsError, match=r"no readable sentence in 2 document\(s\).*a_2022\.pdf"):
        score("finance", load_params(), str(bad), project / "preds2" / "scores.parquet")
    assert not (project / "preds2").exists() or not any((project / "preds2").iterdir())
