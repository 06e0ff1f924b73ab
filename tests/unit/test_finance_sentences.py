"""The sentence-file reader of ``score finance --sentences`` and the saved baselines, without a trained model
(the end-to-end test with a registered champion is tests/flows/test_finance_sentences.py)."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from tasks.domains.finance import baselines
from tasks.domains.finance.sentences import SentenceFileError, read_sentences


def test_text_lines_keep_their_editor_numbers(tmp_path):
    src = tmp_path / "s.txt"
    # A byte-order mark, Windows line ends, a form feed inside a line: none of them splits or shifts a line.
    src.write_bytes("\ufeffFirst line\r\n\r\nSecond\x0cstill second. Third part\r\n".encode())
    got = read_sentences(str(src))
    assert got.frame.to_dicts() == [{"line": 1, "sentence": "First line"},
                                    {"line": 3, "sentence": "Second\x0cstill second. Third part"}]
    assert got.notes["skipped_blank"] == 1 and got.notes["format"] == "txt"


def test_tsv_labels_as_words_numbers_and_booleans(tmp_path):
    src = tmp_path / "s.tsv"
    src.write_text("text\tlabel\nWe use AI\tAI\nDividend paid\tnon-ai\nML in credit\t1\nCosts fell\tFALSE\n\t1\n")
    got = read_sentences(str(src), text_column="text")
    assert got.frame["label"].to_list() == [1, 0, 1, 0] and got.frame["row"].to_list() == [0, 1, 2, 3]
    assert got.notes["skipped_blank"] == 1 and got.notes["label_column"] == "label"


def test_parquet_with_an_explicit_label_column(tmp_path):
    src = tmp_path / "s.parquet"
    pl.DataFrame({"sentence": ["a b c", "d e f"], "is_ai": [True, False], "label": ["x", "y"]}).write_parquet(src)
    got = read_sentences(str(src), label_column="is_ai")
    assert got.frame["label"].to_list() == [1, 0]
    with pytest.raises(SentenceFileError, match=r"label column 'label' has 2 value\(s\) that are not a label "
                                                r"\(row 0: 'x'; row 1: 'y'\)"):
        read_sentences(str(src))  # the default label column, when present, must hold labels


@pytest.mark.parametrize("content,kwargs,message", [
    ("id,Sentence\n1,a\n", {}, r"no text column 'sentence'; the file has columns \['id', 'Sentence'\]; "
                               r"did you mean 'Sentence'\? \(--text-column Sentence\)"),
    ("id,txt\n1,a\n", {"text_column": "text"}, r"no text column 'text'.*did you mean 'txt'"),
    ("sentence\na\n", {"label_column": "lable"}, r"no label column 'lable'; the file has columns \['sentence'\]; "
                                                 r"name it with --label-column"),
    ("sentence,label\n", {}, r"the table has no rows"),
    ("sentence\n\"\"\n\" \"\n", {}, r"column 'sentence' is empty in all 2 row\(s\)"),
    ("sentence,label\nAI here,yes\n", {}, r"'yes'.*labels are 0/1, false/true or non-AI/AI"),
])
def test_table_errors_name_the_file_and_the_fix(tmp_path, content, kwargs, message):
    src = tmp_path / "t.csv"
    src.write_text(content)
    with pytest.raises(SentenceFileError, match=rf"^{re.escape(str(src))}: (no sentence to score: |.*)?{message}"):
        read_sentences(str(src), **kwargs)


def test_a_csv_that_is_not_utf8_names_the_offset(tmp_path):
    src = tmp_path / "t.csv"
    src.write_bytes(b"sentence\nok\nna\xefve\n")
    with pytest.raises(SentenceFileError, match=rf"^{src}: not UTF-8 text: byte 0xef at offset 14 \(line 3\)"):
        read_sentences(str(src))


def test_text_options_are_refused_for_a_text_file(tmp_path):
    src = tmp_path / "s.txt"
    src.write_text("a sentence\n")
    with pytest.raises(SentenceFileError, match="--text-column 'text' is for CSV/TSV/Parquet"):
        read_sentences(str(src), text_column="text")
    with pytest.raises(FileNotFoundError, match="no such sentence file"):
        read_sentences(str(tmp_path / "missing.txt"))


def test_saved_baselines_round_trip_and_untrusted_files_are_refused(tmp_path):
    x = ["we use artificial intelligence", "machine learning scores loans", "the bank paid a dividend",
         "revenue grew this year"] * 3
    y = np.array([1, 1, 0, 0] * 3)
    fitted = baselines.fit_baselines(["tfidf_logreg", "tfidf_rf", "keyword"], x, y)
    baselines.save_fitted(fitted, tmp_path)
    assert baselines.saved_names(tmp_path) == ["keyword", "tfidf_logreg", "tfidf_rf"]
    for name, est in fitted.items():
        loaded, digest = baselines.load_fitted(name, tmp_path)
        assert np.array_equal(loaded.predict_proba(np.asarray(x, dtype=object)),
                              est.predict_proba(np.asarray(x, dtype=object))) and len(digest) == 64
    with pytest.raises(baselines.UnknownBaselineError, match=r"unknown --model 'tfidf_nb'; available: champion "
                                                             r"\(the registered model\), keyword, tfidf_logreg, tfidf_rf"):
        baselines.load_fitted("tfidf_nb", tmp_path)
    with pytest.raises(baselines.UnknownBaselineError, match="none saved in .*run python -m tasks train finance"):
        baselines.load_fitted("keyword", tmp_path / "empty")

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    # A file that asks to rebuild a function (what a swapped file would do to run code) is not loaded.
    sio.dump(FunctionTransformer(print), tmp_path / baselines.SAVED_DIR / "tfidf_nb.skops")
    with pytest.raises(ValueError, match=r"refusing to load baseline 'tfidf_nb'.*\(builtins\.print\)"):
        baselines.load_fitted("tfidf_nb", tmp_path)


def test_sentence_scoring_refuses_what_it_cannot_do(tmp_path):
    from tasks.params import Params
    from tasks.score import score_sentences

    src = tmp_path / "s.txt"
    src.write_text("a sentence\n")
    params = Params()
    with pytest.raises(ValueError, match="the netflow domain does not score single sentences; domains that do: "
                                         "finance"):
        score_sentences("netflow", params, str(src), tmp_path / "p.parquet")
    with pytest.raises(ValueError, match=r"sentence scores are written as \.parquet or \.csv"):
        score_sentences("finance", params, str(src), tmp_path / "p.json")
    with pytest.raises(ValueError, match="--model keyword is a baseline; --model-uri and --width"):
        score_sentences("finance", params, str(src), tmp_path / "p.parquet", model="keyword", width=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.txt"]
