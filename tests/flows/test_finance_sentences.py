"""Scoring single sentences end to end (issue 18, point 5): ``python -m tasks score finance --sentences FILE``.

One tiny finance project is trained, evaluated and registered once (real stages, real MLflow registry); the
tests score a TXT file (one sentence a line), a labelled CSV (metrics checked against scikit-learn on the same
predictions and against what evaluate measured on the same sentences), the saved baselines (``--model``), and
the bad inputs (empty, not UTF-8, a missing column, an unknown model): a clear error naming the user's file
and nothing written. Sentences are predicted at evaluate's threshold (``evaluate.finance.threshold``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm

from tests.conftest import enter, setup_project

pytestmark = pytest.mark.slow

D = "finance"
# The smallest run that registers a teacher: no compression, one short epoch, two baselines saved.
TINY = {"train": {D: {"epochs": 1, "steps_per_epoch": 2, "baselines": ["tfidf_logreg", "keyword"]}},
        "compress": {D: {"methods": []}}, "register": {D: {"model": "teacher"}}}

LINES = [
    "We deployed machine learning models to detect fraud in card payments",
    "",
    "Net interest income rose by four per cent over the year",
    "   ",
    # Full stops inside a line do not split it: one line, one sentence.
    "Our artificial intelligence programme expanded. It now covers credit decisions",
    "The board declared a final dividend",
    # The one 5,546-character "sentence": a long line is still one row, scored as one sentence.
    " ".join(["Operating expenses increased because of higher staff costs and investment in branches"] * 60),
    "",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finance project with a registered champion (the teacher) and the baselines the train stage saved."""
    from tasks.params import load_params
    from tasks.stages import run_stage

    with pytest.MonkeyPatch.context() as mp:
        root = setup_project(tmp_path_factory.mktemp("sentences") / "proj", mp, TINY)
        params = load_params()
        for stage in ("ingest", "preprocess", "train", "compress", "evaluate"):
            run_stage(stage, D, params, track=False)
        assert run_stage("register", D, params)["promoted"]
    return root


@pytest.fixture
def proj(trained, monkeypatch) -> Path:
    return enter(trained, monkeypatch)


def cli(*argv: str) -> int:
    from tasks.__main__ import main

    return main(["score", D, *argv])


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def manifest_of(printed: str) -> dict:
    """The JSON summary the CLI prints after the table of predictions."""
    return json.loads(printed[printed.index("\n{") + 1:])


def champion_p(sentences: list[str]) -> np.ndarray:
    """P(AI) of the registered champion, loaded and run directly (not through the score command)."""
    from tasks import serving

    model, _ = serving.load_registered("models:/formerflow-finance@champion")
    return model.predict(pl.DataFrame({"sentence": sentences}).to_pandas())["p_ai"].to_numpy()


def test_a_text_file_is_one_sentence_per_line(proj, capsys):
    src = proj / "data" / "incoming" / "sentences.txt"
    src.parent.mkdir(parents=True)
    src.write_text("\n".join(LINES))
    out = proj / "preds" / "sentences.parquet"
    assert cli("--sentences", str(src), "--output", str(out)) == 0
    printed = capsys.readouterr().out
    manifest = manifest_of(printed)
    preds = pl.read_parquet(out)
    kept = [(i, line.strip()) for i, line in enumerate(LINES, start=1) if line.strip()]
    assert preds.columns == ["line", "sentence", "p_ai", "prediction"]
    assert list(zip(preds["line"], preds["sentence"], strict=True)) == kept
    assert preds["sentence"].str.len_chars().max() == len(LINES[6]) > 5000
    assert np.allclose(preds["p_ai"].to_numpy(), champion_p([s for _, s in kept]), atol=1e-6)
    assert (preds["prediction"] == (preds["p_ai"] >= 0.5).cast(pl.Int64)).all()
    assert manifest["rows"] == 5 and manifest["skipped_blank"] == 2  # the last "" only ends line 7 and manifest["format"] == "txt"
    assert manifest["model_version"] == "1" and manifest["model_uri"] == "models:/formerflow-finance/1"
    assert manifest["flagged"] == int(preds["prediction"].sum()) and "metrics" not in manifest
    assert "  line    p_ai  pred  sentence" in printed and not list(out.parent.glob("*.metrics.json"))


def test_a_labelled_csv_gets_the_metrics_table(proj, capsys):
    # The test split as a user's CSV: other column names, labels as words and numbers, one blank row.
    test = pl.read_parquet(proj / "data" / "processed" / D / "test.parquet")
    words = [("AI" if y else "non-AI") if i % 3 == 0 else str(y) for i, y in enumerate(test["label"])]
    table = pl.DataFrame({"id": range(test.height), "text": test["sentence"], "label": words})
    table = pl.concat([table, pl.DataFrame({"id": [999], "text": ["  "], "label": ["1"]})])
    src = proj / "data" / "incoming" / "labelled.csv"
    src.parent.mkdir(parents=True, exist_ok=True)
    table.write_csv(src)
    out = proj / "preds" / "labelled.csv"  # CSV out: the ending picks the format
    assert cli("--sentences", str(src), "--text-column", "text", "--output", str(out)) == 0
    printed = capsys.readouterr().out
    preds = pl.read_csv(out)
    assert preds.columns == ["row", "sentence", "p_ai", "prediction", "label"]
    assert preds["row"].to_list() == list(range(test.height)) and preds["label"].to_list() == test["label"].to_list()
    y, p, pred = preds["label"].to_numpy(), preds["p_ai"].to_numpy(), preds["prediction"].to_numpy()
    saved = json.loads((out.parent / "labelled.metrics.json").read_text())
    m = saved["metrics"]
    assert m["n"] == test.height and m["positives"] == int(y.sum())
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred, zero_division=0))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    # The same sentences through the evaluate stage: the same teacher, the same numbers.
    teacher = json.loads((proj / "reports" / D / "metrics.json").read_text())["models"]["teacher"]
    assert m["accuracy"] == pytest.approx(teacher["accuracy"]) and m["roc_auc"] == pytest.approx(teacher["roc_auc"])
    assert saved["skipped_blank"] == 1 and saved["label_column"] == "label" and saved["model_version"] == "1"
    assert f"| accuracy | {m['accuracy']:.4f} |" in printed and f"| roc_auc | {m['roc_auc']:.4f} |" in printed
    # Predicted at evaluate's threshold (params: 0.5), and it says so.
    assert saved["threshold"] == 0.5 and saved["threshold_param"] == "evaluate.finance.threshold"
    assert (pred == (p >= 0.5)).all() and "pred = 1 where p_ai >= 0.5 (evaluate.finance.threshold)" in printed

    # Another evaluate.finance.threshold moves the predictions with it: one between the smallest P(AI) above 0.5
    # and the next one up, so the sentence at that smallest P(AI) turns negative (or, none above 0.5, the top
    # sentence turns positive).
    u = np.unique(p)
    above = u[u > 0.5]
    thr = float((above[0] + (above[1] if len(above) > 1 else 1.0)) / 2 if len(above) else (u[-2] + u[-1]) / 2)
    out2 = proj / "preds" / "labelled_thr.parquet"
    assert cli("--sentences", str(src), "--text-column", "text", "--output", str(out2),
               "--set", f"evaluate.finance.threshold={thr!r}") == 0
    printed = capsys.readouterr().out
    preds2 = pl.read_parquet(out2)
    pred2 = preds2["prediction"].to_numpy()
    assert np.allclose(preds2["p_ai"].to_numpy(), p, atol=1e-6)  # the same scores, cut elsewhere
    assert (pred2 == (preds2["p_ai"].to_numpy() >= thr)).all() and (pred2 != pred).any()
    saved2 = json.loads((out2.parent / "labelled_thr.metrics.json").read_text())
    assert saved2["threshold"] == pytest.approx(thr) and manifest_of(printed)["threshold"] == pytest.approx(thr)
    assert saved2["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y, pred2))
    assert f"pred = 1 where p_ai >= {thr:g} (evaluate.finance.threshold)" in printed


def test_a_saved_baseline_scores_with_model(proj, capsys):
    from tasks.domains.finance import lexicon

    test = pl.read_parquet(proj / "data" / "processed" / D / "test.parquet")
    src = proj / "data" / "incoming" / "test.parquet"
    src.parent.mkdir(parents=True, exist_ok=True)
    test.select("sentence", "label").write_parquet(src)
    trained_preds = pl.read_parquet(proj / "artifacts" / D / "baselines" / "predictions.parquet")
    for name in ("tfidf_logreg", "keyword"):
        out = proj / "preds" / f"{name}.parquet"
        assert cli("--sentences", str(src), "--model", name, "--output", str(out)) == 0
        manifest = manifest_of(capsys.readouterr().out)
        preds = pl.read_parquet(out)
        # The model the train stage fitted: the same P(AI) as it gave the test split then.
        assert np.allclose(preds["p_ai"].to_numpy(), trained_preds[f"{name}.AI"].to_numpy())
        saved = json.loads((out.parent / f"{name}.metrics.json").read_text())
        file = Path(saved["baseline_file"])
        assert saved["model"] == name and saved["baseline_sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
        assert saved["metrics"]["accuracy"] == pytest.approx(
            skm.accuracy_score(preds["label"].to_numpy(), preds["prediction"].to_numpy()))
        assert manifest["model"] == name and "model_version" not in manifest and manifest["rows"] == test.height
        assert saved["threshold"] == 0.5 and (preds["prediction"] == (preds["p_ai"] >= 0.5).cast(pl.Int64)).all()
    kw = pl.read_parquet(proj / "preds" / "keyword.parquet")
    assert (kw["prediction"].to_numpy() == lexicon.keyword_rule(kw["sentence"].to_list())).all()

    before = listing(proj)
    assert cli("--sentences", str(src), "--model", "bert", "--output", str(proj / "preds" / "bert.parquet")) == 1
    err = capsys.readouterr().err
    assert "unknown --model 'bert'" in err and "champion" in err and "keyword, tfidf_logreg" in err
    assert listing(proj) == before


@pytest.mark.parametrize("content,message", [
    (b"", "no sentence to score: the file is empty"),
    (b"\n  \n\t\n", "no sentence to score: the file is empty (only blank lines)"),
    ("Our AI tools\nimproved r\u00e9sum\u00e9 screening\n".encode("latin-1"),
     "not UTF-8 text: byte 0xe9 at offset 23 (line 2)"),
])
def test_bad_sentence_files_are_named_and_nothing_is_written(proj, capsys, content, message):
    src = proj / "data" / "incoming" / "bad sentences.txt"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(content)
    (proj / "preds").mkdir(exist_ok=True)
    before = listing(proj)
    assert cli("--sentences", str(src), "--output", str(proj / "preds" / "bad.parquet")) == 1
    err = capsys.readouterr().err
    assert f"{src}: {message}" in err
    assert ".tmp" not in err.replace(str(src), "") and listing(proj) == before  # never a temporary copy


def test_a_table_without_the_text_column_names_its_columns(proj, capsys):
    src = proj / "data" / "incoming" / "columns.csv"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text("id,sentences,label\n1,We use AI,1\n")
    before = listing(proj)
    assert cli("--sentences", str(src), "--output", str(proj / "preds" / "cols.parquet")) == 1
    err = capsys.readouterr().err
    assert f"{src}: no text column 'sentence'; the file has columns ['id', 'sentences', 'label']" in err
    assert "did you mean 'sentences'? (--text-column sentences)" in err and listing(proj) == before
