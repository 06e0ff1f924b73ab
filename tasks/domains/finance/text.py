"""Text of annual reports: extraction (TXT, HTML, PDF), cleaning and offline sentence segmentation.

Groundwork for the finance ingest / preprocess (issue 4), pure functions:

* :func:`read_text`: a document's text. TXT is decoded strictly (a wrong encoding is an
  error, not mojibake); HTML goes through the standard library's HTML parser with
  scripts, styles, navigation and tables dropped (tables hold figures, not sentences);
  PDF through pypdf. Encrypted, corrupt, empty or oversized documents raise
  :class:`DocumentError` naming the file, and so does any error of the readers: documents
  are untrusted input, so the caps of :class:`~tasks.domains.finance.params.DocumentLimits`
  (bytes, characters, PDF pages and decompressed streams, HTML nesting) bound the memory and
  time one of them can take.
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

Every step is linear in the length of the text (no rescanning of what is left per line,
per match or per tag), so a document under the caps cannot take quadratic time.
"""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

from tasks.domains.finance.params import DocumentLimits

ABBREVIATIONS = frozenset({
    "inc", "ltd", "co", "corp", "plc", "llc", "no", "nos", "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr",
    "vs", "etc", "e.g", "i.e", "approx", "dept", "est", "fig", "figs", "jan", "feb", "mar", "apr", "jun", "jul",
    "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "n.a", "s.a", "p.l.c",
})
"""Words that end with a full stop without ending a sentence (compared lower-case, final dot removed)."""

_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "nav", "table", "head", "svg"})
_BLOCK_TAGS = frozenset({"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
                         "header", "footer", "tr", "ul", "ol", "blockquote"})
_FLAT_TAGS = frozenset({
    # void: no end tag
    "area", "base", "basefont", "br", "col", "embed", "frame", "hr", "img", "input", "keygen", "link", "meta",
    "param", "source", "track", "wbr",
    # end tag optional (<p>a<p>b, <li>a<li>b): real pages leave them open by the thousand
    "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead", "tbody", "tfoot", "colgroup", "rp", "rt"})
"""Elements not counted in the nesting depth (tag soup leaves them open without nesting anything)."""
LIMITS_KEY = "ingest.finance.limits"
"""Where the caps of :class:`DocumentLimits` live in params.yaml (named in every "over a cap" message)."""


class DocumentError(ValueError):
    """A document cannot be read; the message names the file and why."""


def over_limit(name: str, what: str, cap: str, limits: DocumentLimits) -> DocumentError:
    """The error for a document over a cap: names the file, what went over, the param key and its value."""
    return DocumentError(f"{name}: {what}, over the limit {LIMITS_KEY}.{cap} = {getattr(limits, cap)}")


class _TextExtractor(HTMLParser):
    """Visible text of an HTML document, without scripts, styles, navigation and tables.

    Counts start tags and tracks the open elements to refuse documents nested deeper or holding
    more elements than ``limits`` allow. The depth counts elements whose end tag is required
    (div, span, table, ...; not p, li, td or br, see :data:`_FLAT_TAGS`); an end tag closes
    everything opened after its start tag, as a browser does, and a stray one closes nothing.
    """

    def __init__(self, name: str, limits: DocumentLimits) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._name, self._limits = name, limits
        self._open: list[str] = []
        self._open_count: dict[str, int] = {}  # tag -> how many are open: finding an end tag's start is O(1)
        self._elements = 0
        self._chars = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        self._elements += 1
        if self._elements > self._limits.max_html_elements:
            raise over_limit(self._name, f"more than {self._limits.max_html_elements} HTML elements",
                             "max_html_elements", self._limits)
        if tag not in _FLAT_TAGS:
            self._open.append(tag)
            self._open_count[tag] = self._open_count.get(tag, 0) + 1
            if len(self._open) > self._limits.max_html_depth:
                raise over_limit(self._name, f"HTML elements nested more than {self._limits.max_html_depth} deep",
                                 "max_html_depth", self._limits)
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._open_count.get(tag):
            while self._pop() != tag:
                pass
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def _pop(self) -> str:
        tag = self._open.pop()
        self._open_count[tag] -= 1
        return tag

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._chars += len(data)
            if self._chars > self._limits.max_chars:
                raise over_limit(self._name, f"more than {self._limits.max_chars} characters of text",
                                 "max_chars", self._limits)
            self.parts.append(data)

    def parse_marked_section(self, i: int, report: int = 1) -> int:
        # The standard library raises AssertionError on an unknown or malformed "<![" section;
        # HTML5 reads it as a bogus comment up to the next ">".
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            j = self.rawdata.find(">", i + 3)
            return -1 if j < 0 else j + 1


def html_to_text(html: str, limits: DocumentLimits | None = None, name: str = "<html>") -> str:
    """Visible text of ``html`` (blocks separated by newlines).

    Raises:
        DocumentError: nested deeper, with more elements or more text than ``limits`` allow.
    """
    limits = limits or DocumentLimits()
    # A "<" never followed by ">" makes the standard parser rescan the rest of the document from
    # every such "<" (quadratic: a few MB of "<a" take hours). A tag cannot end after the last
    # ">", so what follows it is text: escaped, it is parsed in one pass.
    end = html.rfind(">") + 1
    if "<" in html[end:]:
        html = html[:end] + html[end:].replace("<", "&lt;")
    parser = _TextExtractor(name, limits)
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def _pdf_configuration(limits: DocumentLimits) -> dict[str, int]:
    """pypdf's decoder output limits, all set to ``limits.max_pdf_stream_bytes`` (pypdf's default is 75 MB)."""
    n = limits.max_pdf_stream_bytes
    return {k: n for k in ("zlib_maximum_output_length", "lzw_maximum_output_length",
                           "run_length_maximum_output_length", "brotli_maximum_output_length",
                           "array_based_stream_maximum_output_length", "jbig2_maximum_output_length")}


def pdf_to_text(path: Path, limits: DocumentLimits | None = None) -> str:
    """Text of every page of a PDF (pypdf), pages separated by newlines.

    Raises:
        DocumentError: not a PDF, encrypted (and not openable with an empty password), unreadable
            (any error of pypdf: it parses untrusted bytes), or over one of ``limits``.
    """
    import pypdf  # lazy: pypdf is needed for PDF documents only
    from pypdf.errors import LimitReachedError  # lazy: PDF documents only

    limits = limits or DocumentLimits()
    path = Path(path)
    name = path.name
    with open(path, "rb") as f:
        head = f.read(1024)
    if b"%PDF-" not in head:  # readers accept the header anywhere in the first 1024 bytes
        raise DocumentError(f"{name}: not a PDF (no %PDF- header in its first 1024 bytes; it starts with "
                            f"{head[:16]!r})")
    try:
        with pypdf.apply_configuration(**_pdf_configuration(limits)):
            reader = pypdf.PdfReader(path)
            if reader.is_encrypted and not reader.decrypt(""):
                raise DocumentError(f"{name}: the PDF is encrypted (password protected); it cannot be read")
            n_pages = len(reader.pages)
            if n_pages > limits.max_pdf_pages:
                raise over_limit(name, f"{n_pages} pages", "max_pdf_pages", limits)
            parts: list[str] = []
            content = chars = 0
            for page in reader.pages:
                # Page content decompressed, summed before its text is extracted: many pages each under the
                # per-stream cap must not add up to hours of parsing.
                stream = page.get_contents()
                content += len(stream.get_data()) if stream is not None else 0
                if content > limits.max_decompressed_bytes:
                    raise over_limit(name, f"page content decompresses to more than {limits.max_decompressed_bytes} "
                                     "bytes", "max_decompressed_bytes", limits)
                parts.append(page.extract_text() or "")
                chars += len(parts[-1]) + 1
                if chars > limits.max_chars:
                    raise over_limit(name, f"more than {limits.max_chars} characters of text", "max_chars", limits)
            return "\n".join(parts)
    except DocumentError:
        raise
    except LimitReachedError as exc:
        if "decompress" in str(exc).lower():
            raise over_limit(name, f"a PDF stream decompresses to more than {limits.max_pdf_stream_bytes} bytes "
                             f"(a decompression bomb?)", "max_pdf_stream_bytes", limits) from None
        raise DocumentError(f"{name}: the PDF goes over one of pypdf's safety limits: {exc}") from None
    except RecursionError:
        raise DocumentError(f"{name}: not a readable PDF: objects nested too deeply to parse") from None
    except MemoryError:
        raise DocumentError(f"{name}: not a readable PDF: it needs more memory than is available") from None
    except Exception as exc:  # pypdf raises many types on malformed input; each is this document's fault
        raise DocumentError(f"{name}: not a readable PDF: {type(exc).__name__}: {exc}") from None


def read_text(path: str | Path, encoding: str = "utf-8", limits: DocumentLimits | None = None) -> str:
    """The text of one document (``.txt``, ``.html`` / ``.htm``, ``.pdf``), not yet cleaned.

    Args:
        path: A local file.
        encoding: Encoding of ``.txt`` / ``.html`` files.
        limits: Caps on the document (default: :class:`DocumentLimits`'s defaults).

    Raises:
        DocumentError: unknown suffix, undecodable text (names the byte offset), an HTML
            page with no visible text, an encrypted, corrupt or fake PDF, an empty document,
            or one over a cap of ``limits`` (names the cap's param key and value).
    """
    limits = limits or DocumentLimits()
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".pdf", ".txt", ".html", ".htm"):
        raise DocumentError(f"{path.name}: unsupported document type {suffix!r} (txt, html, htm, pdf)")
    size = path.stat().st_size
    if size > limits.max_document_bytes:
        raise over_limit(path.name, f"{size} bytes", "max_document_bytes", limits)
    try:
        if suffix == ".pdf":
            text = pdf_to_text(path, limits)
        else:
            with open(path, "rb") as f:
                raw = f.read(limits.max_document_bytes + 1)  # the file may have grown since stat
            if len(raw) > limits.max_document_bytes:
                raise over_limit(path.name, f"more than {limits.max_document_bytes} bytes", "max_document_bytes",
                                 limits)
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise DocumentError(f"{path.name}: not valid {encoding} text (byte {exc.start}: "
                                    f"{raw[exc.start:exc.start + 1]!r}); give the file's encoding") from None
            del raw
            if suffix == ".txt":
                if len(text) > limits.max_chars:
                    raise over_limit(path.name, f"{len(text)} characters of text", "max_chars", limits)
            else:
                text = html_to_text(text, limits, path.name)
    except (DocumentError, OSError):
        raise
    except (RecursionError, MemoryError) as exc:
        raise DocumentError(f"{path.name}: cannot be read: {type(exc).__name__}") from None
    except Exception as exc:  # a reader's error on malformed input is this document's fault, not the batch's
        raise DocumentError(f"{path.name}: cannot be read: {type(exc).__name__}: {exc}") from None
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
        # The word ending at the punctuation: scanned back to the whitespace before it, not re-split from the
        # sentence start (that was quadratic in a run of abbreviations such as "Inc. Inc. Inc. ...").
        end = k = m.start() + 1
        while k > start and not text[k - 1].isspace():
            k -= 1
        word = text[k:end].rstrip(".!?\"'”’)").lower()
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
    if not 0 < len(words) <= 10:
        return False
    # Closing punctuation followed only by non-word characters (quotes, brackets). A scan back from the end:
    # the regex r"[.!?:;,]\W*$" retried from every position is quadratic in a long run of punctuation.
    i = len(line)
    while i and not (line[i - 1].isalnum() or line[i - 1] == "_"):
        i -= 1
    if any(c in ".!?:;," for c in line[i:]):
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
    # The next non-blank line after each line, in one pass from the end (searching forward from every
    # line was quadratic in runs of blank lines).
    following = [""] * len(lines)
    nxt = ""
    for i in range(len(lines) - 1, -1, -1):
        following[i] = nxt
        nxt = lines[i] or nxt
    blocks: list[list[str]] = [[]]
    for line, nxt in zip(lines, following, strict=True):
        if not line:
            if blocks[-1]:
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
