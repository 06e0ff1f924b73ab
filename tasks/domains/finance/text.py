"""Text of annual reports: extraction (TXT, HTML, PDF), cleaning and offline sentence segmentation.

Groundwork for the finance ingest / preprocess (issue 4), pure functions:

* :func:`read_text`: a document's text. TXT is decoded strictly (a wrong encoding is an
  error, not mojibake); HTML goes through the standard library's HTML parser with
  scripts, styles, navigation and tables dropped (tables hold figures, not sentences);
  PDF through pypdf. Encrypted, corrupt or empty documents raise :class:`DocumentError`
  naming the file.
* :func:`clean`: Unicode NFKC, words hyphenated across PDF line breaks re-joined,
  whitespace collapsed (the reference uses unidecode + whitespace collapsing).
* :func:`split_sentences`: a rule-based splitter that needs no downloaded model (the
  reference uses NLTK's punkt, which would have to be fetched at run time): a boundary
  is ``.``, ``!`` or ``?`` followed by space and an upper-case letter, digit or quote,
  unless the word before is a known abbreviation (``Inc.``, ``U.S.``, ``e.g.``) or an
  initial.
* :func:`document_sentences`: the two together for a whole document, keeping headings
  and paragraphs apart.
* :func:`keep_sentence`: the reference's filter for sentences (>= 5 words, letter ratio
  >= 0.5), which drops table rows and page furniture.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

ABBREVIATIONS = frozenset({
    "inc", "ltd", "co", "corp", "plc", "llc", "no", "nos", "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr",
    "vs", "etc", "e.g", "i.e", "approx", "dept", "est", "fig", "figs", "jan", "feb", "mar", "apr", "jun", "jul",
    "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "n.a", "s.a", "p.l.c",
})
"""Words that end with a full stop without ending a sentence (compared lower-case, final dot removed)."""

_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "nav", "table", "head", "svg"})
_BLOCK_TAGS = frozenset({"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
                         "header", "footer", "tr", "ul", "ol", "blockquote"})


class DocumentError(ValueError):
    """A document cannot be read; the message names the file and why."""


class _TextExtractor(HTMLParser):
    """Visible text of an HTML document, without scripts, styles, navigation and tables."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Visible text of ``html`` (blocks separated by newlines)."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def pdf_to_text(path: Path) -> str:
    """Text of every page of a PDF (pypdf), pages separated by newlines.

    Raises:
        DocumentError: encrypted (and not openable with an empty password) or unreadable.
    """
    import pypdf  # lazy: pypdf is needed for PDF documents only
    from pypdf.errors import PdfReadError  # lazy: PDF documents only

    name = Path(path).name
    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{name}: the PDF is encrypted (password protected); it cannot be read")
        return "\n".join(page.extract_text() or "" for page in reader.pages)
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DocumentError(f"{name}: not a readable PDF: {type(exc).__name__}: {exc}") from None


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The text of one document (``.txt``, ``.html`` / ``.htm``, ``.pdf``), not yet cleaned.

    Raises:
        DocumentError: unknown suffix, undecodable text (names the byte offset), an HTML
            page with no visible text, an encrypted or corrupt PDF, or an empty document.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        text = pdf_to_text(path)
    elif suffix in (".txt", ".html", ".htm"):
        raw = path.read_bytes()
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{path.name}: not valid {encoding} text (byte {exc.start}: "
                                f"{raw[exc.start:exc.start + 1]!r}); give the file's encoding") from None
        if suffix != ".txt":
            text = html_to_text(text)
    else:
        raise DocumentError(f"{path.name}: unsupported document type {suffix!r} (txt, html, htm, pdf)")
    if not text.strip():
        what = "no visible text (only scripts, styles or markup)" if suffix in (".html", ".htm") else "empty"
        raise DocumentError(f"{path.name}: {what}")
    return text


def _normalize(text: str) -> str:
    """NFKC, soft hyphens removed, words hyphenated across line breaks re-joined; line structure kept."""
    text = unicodedata.normalize("NFKC", text).replace("\u00ad", "")
    # "scienti-\nsts" -> "scientists": a hyphen at a line end between lower-case letters is a break,
    # not a compound (a compound split exactly there is rare enough to accept the ambiguity).
    return re.sub(r"(?<=[a-z])-[ \t]*\n[ \t]*(?=[a-z])", "", text)


def clean(text: str) -> str:
    """NFKC, re-join words hyphenated across line breaks, collapse whitespace."""
    return re.sub(r"\s+", " ", _normalize(text)).strip()


_BOUNDARY = re.compile(r"[.!?][\"'”’)]*\s+(?=[\"'“‘(]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Sentences of cleaned text, offline (no model download). Abbreviations and initials do not split."""
    out, start = [], 0
    for m in _BOUNDARY.finditer(text):
        before = text[start:m.start() + 1].rsplit(None, 1)[-1] if text[start:m.start() + 1].split() else ""
        word = before.rstrip(".!?\"'”’)").lower()
        if text[m.start()] == "." and (word in ABBREVIATIONS or re.fullmatch(r"[a-z]", word)
                                       or re.fullmatch(r"(?:[a-z]\.)+[a-z]", word)):
            continue
        out.append(text[start:m.end()].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if s]


def _is_heading(line: str) -> bool:
    """A short title-case or upper-case line without closing punctuation (section titles, report headers).

    Title case (every word of four letters or more capitalised) separates "Risk Management"
    from a wrapped sentence fragment such as "We opened ten branches in".
    """
    words = line.split()
    if not 0 < len(words) <= 10 or re.search(r"[.!?:;,]\W*$", line):
        return False
    return all(w[0].isupper() or w[0].isdigit() or len(w) < 4 for w in words if w[0].isalnum())


def document_sentences(text: str) -> list[str]:
    """Sentences of a whole document: blocks first (blank lines, headings), then :func:`split_sentences`.

    Extracted text keeps line structure that :func:`clean` would erase: a heading has no full
    stop, so without this step it would be glued to the first sentence of its section. A line
    ends a block when it is blank or a heading followed by a capitalised line; a wrapped line
    that continues in lower case never does.
    """
    lines = [ln.strip() for ln in _normalize(text).splitlines()]
    blocks: list[list[str]] = [[]]
    for i, line in enumerate(lines):
        nxt = next((ln for ln in lines[i + 1:] if ln), "")
        if not line:
            blocks.append([])
            continue
        if _is_heading(line) and (not nxt or nxt[0].isupper() or nxt[0].isdigit()):
            blocks += [[line], []]
            continue
        blocks[-1].append(line)
    out: list[str] = []
    for block in blocks:
        if block:
            out += split_sentences(clean(" ".join(block)))
    return out


def keep_sentence(sentence: str, min_words: int = 5, min_letter_ratio: float = 0.5) -> bool:
    """The reference's filter: at least ``min_words`` words and a share of letters >= ``min_letter_ratio``."""
    s = sentence.strip()
    if len(s.split()) < min_words or not s:
        return False
    return sum(c.isalpha() for c in s) / len(s) >= min_letter_ratio
