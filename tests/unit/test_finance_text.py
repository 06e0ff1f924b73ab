"""Finance text groundwork (tasks/domains/finance/text.py): extraction, cleaning, sentence splitting, bad documents."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tasks.domains.finance.synthetic import generate
from tasks.domains.finance.text import (
    DocumentError,
    clean,
    document_sentences,
    keep_sentence,
    read_text,
    split_sentences,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reports")
    generate(out, n_institutions=3)
    return out


@pytest.mark.parametrize("ext", ["txt", "html", "pdf"])
def test_labelled_sentences_are_recovered_from_every_format(corpus, ext):
    with open(corpus / "labels.csv", newline="", encoding="utf-8") as f:
        labels = list(csv.DictReader(f))
    files = sorted(corpus.glob(f"*.{ext}"))
    assert files
    for path in files:
        got = set(document_sentences(read_text(path)))
        want = [" ".join(r["sentence"].split()) for r in labels if r["file"] == path.name]
        found = sum(s in got for s in want)
        assert found / len(want) >= 0.95, (path.name, [s for s in want if s not in got][:3])


def test_html_drops_scripts_styles_navigation_and_tables(tmp_path):
    page = tmp_path / "r.html"
    page.write_text("<html><head><style>p{}</style><script>var ai = 'machine learning';</script></head><body>"
                    "<nav>Home | Careers</nav><p>We use machine learning to detect fraud.</p>"
                    "<table><tr><td>Net income</td><td>4.2</td></tr></table><p>Costs &amp; fees fell.</p></body>"
                    "</html>", encoding="utf-8")
    text = clean(read_text(page))
    assert text == "We use machine learning to detect fraud. Costs & fees fell."


def test_clean_rejoins_hyphenated_line_breaks_and_normalises():
    assert clean("data scienti-\nsts joined\u00a0the\n\n Group\uFB01") == "data scientists joined the Groupfi"
    assert clean("Ａ ｂank") == "A bank"  # NFKC folds full-width letters


def test_split_sentences_keeps_abbreviations_decimals_and_initials():
    text = ("We thank Mr. Smith of Acme Inc. for his service. Revenue rose 4.5% to $1.2 billion in the U.S. "
            "This year J. Doe joined, e.g. from a peer bank. \"AI is used widely.\" Next.")
    assert split_sentences(text) == [
        "We thank Mr. Smith of Acme Inc. for his service.",
        "Revenue rose 4.5% to $1.2 billion in the U.S. This year J. Doe joined, e.g. from a peer bank.",
        "\"AI is used widely.\"",
        "Next.",
    ]


def test_headings_do_not_glue_to_the_next_sentence():
    text = "STRATEGIC REPORT\nWe opened ten branches in\nTexas. Loans grew.\n\nRisk Management\nCredit risk fell."
    assert document_sentences(text) == ["STRATEGIC REPORT", "We opened ten branches in Texas.", "Loans grew.",
                                        "Risk Management", "Credit risk fell."]


def test_keep_sentence_is_the_reference_filter():
    assert keep_sentence("The bank launched a chatbot for customers.")
    assert not keep_sentence("Net income rose.")  # 3 words
    assert not keep_sentence("2023 2022 4,512 3,998 12.4%")  # table row: few letters


def test_bad_documents_are_named(tmp_path):
    import pypdf

    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(DocumentError, match=r"empty\.txt: empty"):
        read_text(empty)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Caf\u00e9 revenue rose.".encode("latin-1"))
    with pytest.raises(DocumentError, match=r"latin\.txt: not valid utf-8 text \(byte 3"):
        read_text(latin)
    assert read_text(latin, encoding="latin-1").startswith("Café")
    scripts = tmp_path / "scripts.html"
    scripts.write_text("<html><script>alert(1)</script><style>p{}</style></html>", encoding="utf-8")
    with pytest.raises(DocumentError, match=r"scripts\.html: no visible text"):
        read_text(scripts)
    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage")
    with pytest.raises(DocumentError, match=r"corrupt\.pdf: not a readable PDF"):
        read_text(corrupt)
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt("secret")
    locked = tmp_path / "locked.pdf"
    with open(locked, "wb") as f:
        writer.write(f)
    with pytest.raises(DocumentError, match=r"locked\.pdf: the PDF is encrypted"):
        read_text(locked)
    with pytest.raises(DocumentError, match=r"report\.docx: unsupported document type"):
        read_text(tmp_path / "report.docx")
