"""Data tests for the synthetic annual-report generator (:mod:`tasks.domains.finance.synthetic`).

Besides the formats (every labelled sentence is recoverable from its TXT, HTML or PDF
file; the hand-written PDF is structurally valid; output is deterministic), the
behavioural tests check what the corpus is for: AI disclosure grows over the years,
and the seed-lexicon keyword rule is clearly imperfect on it (it misses AI wordings
outside the lexicon and fires on hard negatives).
"""

from __future__ import annotations

import csv
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tasks.domains.finance.lexicon import keyword_rule
from tasks.domains.finance.synthetic import generate, main, synthesize_report


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("finance")
    return out, generate(out)  # the default corpus: 4 institutions x 2019-2023


def _labels(out: Path) -> list[dict]:
    with open(out / "labels.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _norm(s: str) -> str:
    return " ".join(s.split())


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _html_text(path: Path) -> str:
    p = _Text()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return " ".join(p.parts)


_TJ = re.compile(rb"\(((?:\\.|[^\\)])*)\)\s*Tj")


def _pdf_lines(data: bytes) -> list[str]:
    lines = []
    for stream in re.findall(rb"stream\n(.*?)endstream", data, re.S):
        for m in _TJ.finditer(stream):
            lines.append(re.sub(rb"\\(.)", rb"\1", m.group(1)).decode("latin-1"))
    return lines


def _pdf_text(data: bytes) -> str:
    """The content streams' text, lines joined and hyphenation across line breaks undone."""
    text = ""
    for line in _pdf_lines(data):
        if re.search(r"[A-Za-z]-$", text):
            text = text[:-1] + line
        else:
            text = f"{text} {line}" if text else line
    return text


def test_files_metadata_and_manifest(corpus):
    out, m = corpus
    files = [Path(p) for p in m["files"]]
    assert m["n_documents"] == len(files) == 20 and all(p.is_file() for p in files)
    assert {p.suffix for p in files} == {".txt", ".html", ".pdf"} and m["formats"]["pdf"] == 4
    with open(out / "metadata.csv", newline="") as f:
        meta = list(csv.DictReader(f))
    assert [r["file"] for r in meta] == [p.name for p in files]
    for r in meta:
        mt = re.fullmatch(r"(?P<inst>[a-z-]+)_(?P<year>\d{4})\.(txt|html|pdf)", r["file"])
        assert mt and mt["inst"] == r["institution"] and mt["year"] == r["year"]
    assert len({r["institution"] for r in meta}) == 4 and {int(r["year"]) for r in meta} == set(
        range(2019, 2024)
    )
    rows = _labels(out)
    assert len(rows) == m["n_sentences"] and sum(int(r["label"]) for r in rows) == m["n_ai"]
    assert {r["file"] for r in rows} == {p.name for p in files}
    for name in {r["file"] for r in rows}:
        ids = [int(r["sentence_id"]) for r in rows if r["file"] == name]
        assert ids == list(range(len(ids))) and 32 <= len(ids) < 48


@pytest.mark.parametrize("ext", ["txt", "html", "pdf"])
def test_every_labelled_sentence_is_in_its_document(corpus, ext):
    out, _ = corpus
    rows = _labels(out)
    names = sorted({r["file"] for r in rows if r["file"].endswith(ext)})
    assert names
    for name in names:
        path = out / name
        if ext == "txt":
            text = path.read_text(encoding="utf-8")
        elif ext == "html":
            text = _html_text(path)
            assert "dataLayer" not in text and "font-family" not in text
        else:
            text = _pdf_text(path.read_bytes())
        text = _norm(text)
        for r in rows:
            if r["file"] == name:
                assert r["sentence"] in text, (name, r["sentence"])


def test_html_carries_markup_to_strip(corpus):
    out, m = corpus
    raw = next(Path(p) for p in m["files"] if p.endswith(".html")).read_text(encoding="utf-8")
    for tag in ("<script>", "<style>", "<nav>", "<table>", "<p>", "&copy;"):
        assert tag in raw
    assert "machine learning" in raw.split("</script>")[0]  # AI words inside a script


def test_pdf_is_structurally_valid_and_hyphenated(corpus):
    _, m = corpus
    n_hyphenated = 0
    for path in (Path(p) for p in m["files"] if p.endswith(".pdf")):
        data = path.read_bytes()
        assert data.startswith(b"%PDF-1.4\n") and data.rstrip().endswith(b"%%EOF")
        startxref = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data).group(1))
        assert data[startxref:].startswith(b"xref")
        head = re.match(rb"xref\s+0 (\d+)\s+", data[startxref:])
        n = int(head.group(1))
        entries = data[startxref + head.end() :].split(b"\n")[:n]
        assert entries[0] == b"0000000000 65535 f "
        for i, e in enumerate(entries[1:], start=1):
            assert len(e) + 1 == 20 and e.endswith(b" 00000 n ")
            off = int(e[:10])
            assert data[off:].startswith(f"{i} 0 obj".encode()), (path.name, i)
        assert f"/Size {n}".encode() in data and b"/Root 1 0 R" in data
        for length, body in re.findall(rb"<< /Length (\d+) >>\nstream\n(.*?)endstream", data, re.S):
            assert int(length) == len(body)
        assert b"BT" in data and b"ET" in data and b"/BaseFont /Helvetica" in data
        assert int(re.search(rb"/Count (\d+)", data).group(1)) == len(re.findall(rb"/Type /Page ", data))
        n_hyphenated += sum(bool(re.search(r"[a-z]-$", ln)) for ln in _pdf_lines(data))
    assert n_hyphenated >= 5


def test_deterministic_and_seed_dependent(tmp_path):
    kw = dict(n_institutions=2, years=(2020, 2023))
    a, b, c = (generate(tmp_path / d, seed=s, **kw) for d, s in (("a", 3), ("b", 3), ("c", 4)))
    names = sorted(Path(p).name for p in a["files"]) + ["labels.csv", "metadata.csv"]
    assert names == sorted(Path(p).name for p in b["files"]) + ["labels.csv", "metadata.csv"]
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    assert (tmp_path / "a" / "labels.csv").read_bytes() != (tmp_path / "c" / "labels.csv").read_bytes()
    # a report does not depend on how many institutions are generated
    assert synthesize_report(3, 0, 2020) == synthesize_report(3, 0, 2020)
    one = generate(tmp_path / "one", seed=3, n_institutions=1, years=(2020, 2023))
    sents = [r["sentence"] for r in _labels(tmp_path / "one")]
    assert sents == [r["sentence"] for r in _labels(tmp_path / "a") if r["file"].startswith("harbor-point")]
    assert one["n_documents"] == 2


def test_stale_reports_are_removed_and_bad_arguments_rejected(tmp_path):
    generate(tmp_path, n_institutions=2, years=(2021, 2022))
    m = generate(tmp_path, n_institutions=1, years=(2021,))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [Path(m["files"][0]).name, "labels.csv", "metadata.csv"]
    )
    with pytest.raises(ValueError):
        generate(tmp_path, n_institutions=0)
    with pytest.raises(ValueError):
        generate(tmp_path, pdf_fraction=0.7, html_fraction=0.5)
    with pytest.raises(ValueError):
        generate(tmp_path, years=())


def test_class_balance_and_kinds(corpus):
    out, m = corpus
    rows = _labels(out)
    y = np.array([int(r["label"]) for r in rows])
    assert 0.1 <= y.mean() <= 0.4
    kinds = {k: [r for r in rows if r["kind"] == k] for k in ("ai", "hard_negative", "plain")}
    assert all(len(v) >= 50 for v in kinds.values())
    assert all(r["label"] == "1" for r in kinds["ai"]) and all(
        r["label"] == "0" for r in rows if r["kind"] != "ai"
    )
    assert len({r["sentence"] for r in kinds["ai"]}) >= 0.8 * len(kinds["ai"])  # wording varies


def test_ai_share_grows_over_the_years(corpus):
    out, m = corpus
    rows = _labels(out)
    year = {r["file"]: int(re.search(r"_(\d{4})\.", r["file"]).group(1)) for r in rows}
    docs = sorted(year)
    share = np.array([np.mean([int(r["label"]) for r in rows if r["file"] == d]) for d in docs])
    yrs = np.array([year[d] for d in docs])
    assert np.corrcoef(yrs, share)[0, 1] > 0.5
    by_year = m["ai_share_by_year"]
    assert by_year[2023] > by_year[2021] > by_year[2019]
    assert np.mean(np.diff([by_year[y] for y in sorted(by_year)])) > 0.03


def test_keyword_rule_is_clearly_imperfect(corpus):
    out, _ = corpus
    rows = _labels(out)
    y = np.array([int(r["label"]) for r in rows])
    p = keyword_rule([r["sentence"] for r in rows])
    tp, fp, fn = (
        int(((p == 1) & (y == 1)).sum()),
        int(((p == 1) & (y == 0)).sum()),
        int(((p == 0) & (y == 1)).sum()),
    )
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall)
    print(f"keyword rule: P={precision:.3f} R={recall:.3f} F1={f1:.3f} (n={len(y)}, AI share {y.mean():.3f})")
    assert 0.3 < f1 < 0.9
    kind = np.array([r["kind"] for r in rows])
    assert ((p == 1) & (kind == "hard_negative")).sum() >= 10  # fires wrongly on hard negatives
    assert ((p == 0) & (kind == "hard_negative")).sum() >= 10  # shared vocabulary the rule gets right
    assert p[kind == "plain"].sum() == 0
    assert fn >= 10  # AI wordings outside the lexicon


def test_cli(tmp_path, capsys):
    main([str(tmp_path), "--n-institutions", "1", "--years", "2022", "2023", "--seed", "5"])
    assert "2 reports" in capsys.readouterr().out
    assert (tmp_path / "labels.csv").is_file() and len(list(tmp_path.glob("*_202[23].*"))) == 2


def test_pdfs_open_in_a_real_pdf_reader(corpus):
    """pypdf (the reader the finance ingest will use) extracts every labelled sentence of every PDF,
    once the hyphenation across line breaks is undone."""
    import pypdf

    out, _ = corpus
    labels = _labels(out)
    pdfs = sorted(out.glob("*.pdf"))
    assert pdfs
    for pdf in pdfs:
        reader = pypdf.PdfReader(pdf)
        text = "\n".join(page.extract_text() for page in reader.pages)
        flat = re.sub(r"\s+", " ", re.sub(r"(?<=[A-Za-z])-\n(?=[a-z])", "", text))
        sentences = [r["sentence"] for r in labels if r["file"] == pdf.name]
        missing = [s for s in sentences if s not in flat]
        assert sentences and not missing, (pdf.name, missing[:2])
