"""Time of the finance text steps on hostile inputs as they grow: linear code keeps microseconds per unit flat.

Issue 13 measured the old line joining of ``tasks/domains/finance/text.py`` at 4 / 16 / 39 s
for 20k / 40k / 80k lines (quadratic). This times, at each ``--sizes`` n (default 20k, 40k,
80k, 200k), on inputs built in memory:

* ``lines``: :func:`document_sentences` of n lines, a sentence and a blank line in turn;
* ``blank lines``: :func:`document_sentences` of a sentence, n blank lines, a sentence;
* ``abbreviations``: :func:`split_sentences` of n "Acme Inc." in one sentence;
* ``punctuation line``: :func:`document_sentences` of one line of n dots and a letter (the heading test);
* ``nested div``: :func:`html_to_text` then :func:`document_sentences` of n nested ``<div>`` (2n lines;
  the depth cap raised out of the way, ingest refuses more than 512);
* ``open tags``: :func:`html_to_text` of n ``<a`` that never close (the standard parser's quadratic case).

Run it: ``python bench/finance_text.py`` (``--sizes 20000 40000 80000 200000``). Prints one
table (seconds, and microseconds per unit: flat across sizes = linear) and writes
``bench/results/finance_text.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine, table, write_json  # noqa: E402
from tasks.domains.finance.params import DocumentLimits  # noqa: E402
from tasks.domains.finance.text import document_sentences, html_to_text, split_sentences  # noqa: E402

NO_DEPTH_CAP = DocumentLimits(max_html_depth=10**9, max_html_elements=10**9, max_chars=10**9)

CASES = {
    "lines": lambda n: (document_sentences, "\n".join(["Branch number one opened this year.", ""] * (n // 2))),
    "blank lines": lambda n: (document_sentences, "Loans grew this year.\n" + "\n" * n + "Deposits rose.\n"),
    "abbreviations": lambda n: (split_sentences, "We thank " + "Acme Inc. " * n + "for everything. Next year."),
    "punctuation line": lambda n: (document_sentences, "." * n + "a"),
    "nested div": lambda n: (lambda h: document_sentences(html_to_text(h, NO_DEPTH_CAP)),
                             "<div>" * n + "x" + "</div>" * n),
    "open tags": lambda n: (lambda h: html_to_text(h, NO_DEPTH_CAP), "<p>Kept.</p>" + "<a" * n),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 40_000, 80_000, 200_000])
    args = ap.parse_args(argv)
    rows, raw = [], []
    for case, build in CASES.items():
        for n in args.sizes:
            fn, data = build(n)
            t0 = time.perf_counter()
            fn(data)
            s = time.perf_counter() - t0
            rows.append([case, n, s, s / n * 1e6])
            raw.append({"case": case, "n": n, "seconds": s})
    print(table(["input", "n", "seconds", "us per unit"], rows))
    path = write_json("finance_text", {"machine": machine(), "results": raw})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
