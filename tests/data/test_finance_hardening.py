"""Untrusted finance documents can neither crash nor hang ingest or scoring (issue 13, findings 6, 7, 10).

Every hostile document is generated in ``tmp_path`` (by the corpus's writers, tests/corpus/generate.py):
a PDF nested 20,000 arrays deep, a PDF decompression bomb, 1e6 nested ``<div>``, 400k blank lines,
malformed HTML the standard parser chokes on, a file named .pdf that is not one, and documents over each cap of
``ingest.finance.limits``. Each is read beside three good reports (TXT, HTML, PDF): the good
ones are ingested, the bad one is skipped and named with its reason (and, for a cap, the
param key and value), and nothing prints a traceback.

Linear time is checked without a clock: inputs of a few hundred thousand lines, abbreviations
or tags, which the quadratic code took minutes to hours on, must give the right result (the
test run finishing at all is the check; ``bench/finance_text.py`` prints the timings).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tasks.domains.finance.ingest import ingest
from tasks.domains.finance.scoring import read_scoring_input
from tasks.domains.finance.sources import NoDocumentsError
from tasks.domains.finance.text import (
    _is_heading,
    document_sentences,
    html_to_text,
    read_text,
    split_sentences,
)
from tasks.params import load_params
from tests.conftest import REPO
from tests.corpus.generate import BAD_DOCUMENTS, GOOD, HOSTILE_BUT_READABLE, bomb_pdf, write_good

# name: (writer, extra params, reason regex); writers and params from tests/corpus/generate.py
REASONS = {
    "nested-bank_2021.pdf": r"nested-bank_2021\.pdf: not a readable PDF: objects nested too deeply",
    "bomb-bank_2021.pdf": r"bomb-bank_2021\.pdf: a PDF stream decompresses to more than 20000000 "
                          r"bytes.*ingest\.finance\.limits\.max_pdf_stream_bytes = 20000000",
    "deep-bank_2021.html": r"deep-bank_2021\.html: HTML elements nested more than 512 deep, "
                           r"over the limit ingest\.finance\.limits\.max_html_depth = 512",
    "fake-bank_2021.pdf": r"fake-bank_2021\.pdf: not a PDF \(no %PDF- header in its first 1024 "
                          r"bytes; it starts with b'<html><body><p>T'\)",
    "big-bank_2021.txt": r"big-bank_2021\.txt: 2000000 bytes, over the limit "
                         r"ingest\.finance\.limits\.max_document_bytes = 1000000",
    "long-bank_2021.html": r"long-bank_2021\.html: more than 10000 characters of text, over the limit "
                           r"ingest\.finance\.limits\.max_chars = 10000",
    "many-bank_2021.pdf": r"many-bank_2021\.pdf: 3 pages, over the limit ingest\.finance\.limits\.max_pdf_pages = 2",
    "heavy-bank_2021.pdf": r"heavy-bank_2021\.pdf: page content decompresses to more than 1000000 bytes, over the "
                           r"limit ingest\.finance\.limits\.max_decompressed_bytes = 1000000",
    "wide-bank_2021.html": r"wide-bank_2021\.html: more than 1000 HTML elements, over the limit "
                           r"ingest\.finance\.limits\.max_html_elements = 1000",
}
BAD = {name: (writer, overrides, REASONS[name]) for name, (writer, overrides) in BAD_DOCUMENTS.items()}


def _params(folder: Path | str, *overrides: str):
    return load_params(overrides=[f"ingest.finance.source={folder}", *overrides])


def _good_sentences(frame: pl.DataFrame) -> None:
    got = dict(zip(frame["document"], frame["sentence"], strict=True))
    for name, sentence in GOOD.items():
        assert got.get(name) == sentence, (name, got.get(name))


# ----------------------------------------------------------------------------- ingest
@pytest.mark.parametrize("bad", list(BAD))
def test_a_bad_document_is_skipped_and_named_the_batch_is_ingested(project, capsys, bad):
    writer, overrides, reason = BAD[bad]
    docs = write_good(project / "docs")
    writer(docs / bad)
    m = ingest(_params(docs, *overrides))
    assert m["documents"] == 3
    assert [Path(s["file"]).name for s in m["skipped"]] == [bad]
    assert re.search(reason, m["skipped"][0]["reason"]), m["skipped"]
    manifest = json.loads((project / "data/raw/finance/manifest.json").read_text())
    assert manifest["skipped"] == m["skipped"]
    _good_sentences(pl.read_parquet(project / "data/raw/finance/documents.parquet"))
    err = capsys.readouterr().err
    assert f"finance: skipped {bad}: " in err and "Traceback" not in err


@pytest.mark.parametrize("name", list(HOSTILE_BUT_READABLE))
def test_hostile_but_readable_documents_are_read_in_linear_time(project, name):
    writer, sentences = HOSTILE_BUT_READABLE[name]
    docs = write_good(project / "docs")
    writer(docs / name)
    m = ingest(_params(docs))
    assert m["documents"] == 4 and m["skipped"] == []
    frame = pl.read_parquet(project / "data/raw/finance/documents.parquet")
    _good_sentences(frame)
    got = frame.filter(pl.col("document") == name)["sentence"].to_list()
    assert got[:len(sentences)] == sentences


def test_only_bad_documents_is_one_clear_error(project):
    docs = project / "docs"
    docs.mkdir()
    for name in ("nested-bank_2021.pdf", "bomb-bank_2021.pdf", "fake-bank_2021.pdf"):
        BAD[name][0](docs / name)
    with pytest.raises(NoDocumentsError, match=r"no readable document among 3: bomb-bank_2021\.pdf: .*; "
                                               r"fake-bank_2021\.pdf: .*; nested-bank_2021\.pdf: "):
        ingest(_params(docs))
    assert not (project / "data/raw/finance").exists()


def test_the_cli_names_the_bad_documents_without_a_traceback(project):
    docs = write_good(project / "docs")
    for name in ("nested-bank_2021.pdf", "bomb-bank_2021.pdf", "fake-bank_2021.pdf"):
        BAD[name][0](docs / name)
    env = {**os.environ, "PYTHONPATH": str(REPO), "FORMERFLOW_ROOT": str(project)}
    cmd = [sys.executable, "-m", "tasks", "ingest", "finance", "--no-track", "--set", f"ingest.finance.source={docs}"]
    done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    for name in ("nested-bank_2021.pdf", "bomb-bank_2021.pdf", "fake-bank_2021.pdf"):
        assert f"finance: skipped {name}: " in done.stderr
    assert '"documents": 3,' in done.stdout

    for good in GOOD:
        (docs / good).unlink()
    done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error in ingest finance: " in done.stderr and "no readable document among 3" in done.stderr


# ----------------------------------------------------------------------------- scoring
def test_scoring_skips_and_reports_bad_documents_and_reads_the_others(project, tmp_path):
    docs = write_good(project / "docs")
    for name in ("nested-bank_2021.pdf", "bomb-bank_2021.pdf", "deep-bank_2021.html", "fake-bank_2021.pdf"):
        BAD[name][0](docs / name)
    ip = load_params().ingest.finance
    scoring = read_scoring_input([str(docs)], ip, tmp_path / "cache")
    assert sorted(scoring.frame["document"].unique()) == sorted(GOOD)
    reasons = {Path(s["file"]).name: s["reason"] for s in scoring.notes["skipped"]}
    assert set(reasons) == {"nested-bank_2021.pdf", "bomb-bank_2021.pdf", "deep-bank_2021.html", "fake-bank_2021.pdf"}
    assert "max_pdf_stream_bytes" in reasons["bomb-bank_2021.pdf"]
    assert "max_html_depth" in reasons["deep-bank_2021.html"]


# ----------------------------------------------------------------------------- the algorithms, at sizes only linear code finishes
def test_document_sentences_of_200k_lines_are_right():
    lines = []
    for i in range(100_000):
        lines += [f"Branch number {i} opened this year.", ""]
    got = document_sentences("\n".join(lines))
    assert len(got) == 100_000 and got[0] == "Branch number 0 opened this year." and got[-1].startswith("Branch number 99999")


def test_headings_still_split_blocks_after_the_linear_lookahead():
    text = "STRATEGIC REPORT\n\n\n\nWe opened ten branches in\nTexas. Loans grew.\nRisk Management\n\n\nCredit risk fell."
    assert document_sentences(text) == ["STRATEGIC REPORT", "We opened ten branches in Texas.", "Loans grew.",
                                        "Risk Management", "Credit risk fell."]


def test_split_sentences_of_200k_abbreviations_is_right():
    text = "We thank " + "Acme Inc. " * 200_000 + "for everything. Next year is new."
    got = split_sentences(text)
    assert len(got) == 2 and got[0].endswith("Acme Inc. for everything.") and got[1] == "Next year is new."


def test_is_heading_on_a_long_punctuation_run():
    # The old regex r"[.!?:;,]\W*$" was retried from every dot: quadratic. The answers stay the same.
    assert _is_heading("." * 200_000 + "a")  # ends in a word character: no closing punctuation
    assert not _is_heading("Results" + "." * 200_000)
    assert not _is_heading("Results" + ".,;" * 100_000 + " \")")
    assert _is_heading("Risk Management \"") and not _is_heading("Risk Management.\"") and _is_heading("Risk_")


def test_html_parser_pathologies_are_linear_and_keep_the_text():
    assert html_to_text("<p>Kept text.</p>" + "<a" * 200_000).startswith("\nKept text.\n<a<a")
    assert html_to_text("<p>Costs &amp; fees</p> tail &amp; <b") == "\nCosts & fees\n tail & <b"
    assert "after" in html_to_text("<p>before</p><![if x]>" + "<![" * 1000 + "><p>after</p>")


def test_nesting_just_under_the_cap_is_read(tmp_path):
    ok = tmp_path / "ok.html"
    ok.write_text("<div>" * 500 + "<p>Inside five hundred divs is fine.</p>" + "</div>" * 500, encoding="utf-8")
    assert "Inside five hundred divs is fine." in read_text(ok)
    # Left-out end tags (<p>, <li>) close their siblings and a stray end tag closes nothing: no false depth.
    soup = tmp_path / "soup.html"
    soup.write_text("<ul>" + "<li><p>Item text here" * 5_000 + "</ul>" + "</span>" * 5_000 + "<p>End.", encoding="utf-8")
    assert read_text(soup).rstrip().endswith("End.")


def test_pypdf_limits_do_not_leak_out_of_the_reader(tmp_path):
    import pypdf

    bomb_pdf(tmp_path / "bomb.pdf")
    before = pypdf.get_configuration()
    with pytest.raises(ValueError, match="max_pdf_stream_bytes"):
        read_text(tmp_path / "bomb.pdf")
    assert pypdf.get_configuration() == before


def test_params_yaml_holds_the_limits_with_the_schema_defaults():
    import yaml

    from tasks.domains.finance.params import DocumentLimits

    data = yaml.safe_load((REPO / "params.yaml").read_text())["ingest"]["finance"]["limits"]
    assert data == DocumentLimits().model_dump()
    with pytest.raises(ValueError, match="max_pdf_pages"):
        load_params(overrides=["ingest.finance.limits.max_pdf_pages=0"])


def test_scoring_tokenizes_only_what_truncation_keeps():
    """A 3-million-character "sentence" is cut before the tokenizer splits all of it; the tokens kept are the same."""
    from tasks.domains.finance.encoder import load_tokenizer
    from tasks.domains.finance.preprocess import tokenize
    from tasks.domains.finance.scoring import CHARS_PER_TOKEN, scoring_text

    tokenizer = load_tokenizer(None)
    long = "The  bank\u00a0uses machine learning to detect fraud in card payments " * 50_000
    cut = scoring_text(long, 128)
    assert len(cut) == 128 * CHARS_PER_TOKEN and long.replace("\u00a0", " ").replace("  ", " ").startswith(cut)
    assert (tokenize(tokenizer, [cut], 128)["input_ids"] == tokenize(tokenizer, [long[:40_000]], 128)["input_ids"]).all()
    words = " ".join(["x" * 99] * 200)  # the longest words that are not one unknown token
    assert (tokenize(tokenizer, [scoring_text(words, 128)], 128)["input_ids"]
            == tokenize(tokenizer, [words], 128)["input_ids"]).all()
    assert scoring_text("Short  sentence\u00a0here.", 128) == "Short sentence here."


# ----------------------------------------------------------------------------- finding 10: reader errors are LabelsError, not tracebacks
@pytest.mark.parametrize(("name", "write", "match"), [
    ("list.parquet", lambda p: pl.DataFrame({"sentence": [["The bank", "uses AI."]], "label": [1]}).write_parquet(p),
     r"list\.parquet: column 'sentence' \(List\(String\)\) cannot be read as text"),
    ("binary.parquet", lambda p: pl.DataFrame({"sentence": [b"\xff\xfe"], "label": [1]}).write_parquet(p),
     r"binary\.parquet: column 'sentence' \(Binary\) cannot be read as text: invalid utf8"),
    ("truncated.parquet", lambda p: p.write_bytes(b"PAR1\x00\x00"),
     r"truncated\.parquet: cannot read labelled sentences: "),
])
def test_unreadable_label_files_are_labels_errors_and_nothing_is_written(project, name, write, match):
    from tasks import store
    from tasks.domains.finance.sources import LabelsError

    ingest(load_params())
    before = store.content_hash(project / "data/raw/finance")
    write(project / name)
    with pytest.raises(LabelsError, match=match):
        ingest(load_params(overrides=["ingest.finance.source=null", f"ingest.finance.labels={project / name}"]))
    assert store.content_hash(project / "data/raw/finance") == before


def test_a_malformed_metadata_sidecar_is_a_labels_error(project):
    from tasks.domains.finance.sources import LabelsError

    docs = write_good(project / "docs")
    (docs / "metadata.csv").write_text("file,institution,year\nalpha-bank_2022.txt,Alpha,2022,extra\n", encoding="utf-8")
    with pytest.raises(LabelsError, match=r"metadata\.csv: cannot read the metadata CSV: found more fields"):
        ingest(_params(docs))


def test_a_remote_document_over_the_size_cap_is_skipped(project):
    """An fsspec URL (memory://): the size fsspec reports is checked before the fetch, the file's after it."""
    import fsspec

    fs = fsspec.filesystem("memory")
    try:
        fs.pipe("/h13docs/alpha-bank_2022.txt", (GOOD["alpha-bank_2022.txt"] + "\n").encode())
        fs.pipe("/h13docs/huge-bank_2021.txt", b"Revenue rose on higher lending volumes. " * 50_000)
        m = ingest(_params("memory://h13docs", "ingest.finance.limits.max_document_bytes=1000000"))
    finally:
        fs.rm("/h13docs", recursive=True)
    assert m["documents"] == 1
    assert [(Path(s["file"]).name, s["reason"]) for s in m["skipped"]] == [(
        "huge-bank_2021.txt", "huge-bank_2021.txt: 2000000 bytes, over the limit "
                              "ingest.finance.limits.max_document_bytes = 1000000")]
