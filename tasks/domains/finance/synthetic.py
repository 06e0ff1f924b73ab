"""Synthetic bank annual reports: the offline default data source of the ``finance`` domain.

:func:`generate` writes one annual report per institution and year, as plain text
(``.txt``), HTML (``.html``) or PDF (``.pdf``), named ``<institution>_<year>.<ext>``
(the institution is a lower-case slug with hyphens, e.g. ``harbor-point-bancorp_2021.pdf``),
plus two sidecar CSV files:

* ``metadata.csv``: ``file,institution,year``, one row per document;
* ``labels.csv``: ``file,sentence_id,sentence,label,section,kind``, the ground truth of
  every body sentence written, in document order (``sentence_id`` counts from 0 per
  file). ``label`` is 1 for an AI disclosure; ``kind`` is ``ai``, ``hard_negative`` or
  ``plain``. Titles, section headings, table rows, navigation menus and scripts are not
  sentences and are not listed.

Report model
------------
**Institutions.** Each institution has a name (``Harbor Point Bancorp``, ...), a
region and an AI propensity ``m`` (log-normal, median 1, clipped to 0.5-1.6: leaders
and laggards). A report has 32-47 sentences in five sections: strategy, risk,
governance, financial review and ESG (a financial-highlights table sits in the
financial review). Every draw of a report comes from its own random stream seeded by
``(seed, institution index, year)``, so a report does not depend on how many other
institutions or years are generated; only the file format assignment (a shuffled
split by ``pdf_fraction`` / ``html_fraction``, at least one file of each requested
format when there are three or more reports) depends on the whole corpus.

**Sentences.** Every sentence is a template with randomised fillers (numbers,
amounts, regions, products, phrasings), so the same template reads differently
across reports; a report never repeats a sentence. Three kinds:

* ``ai`` (label 1): disclosures about the institution's use, plans, investment,
  governance or risks of AI: machine learning for credit scoring and anti-money
  laundering, deep learning for fraud detection, chatbots and virtual assistants,
  NLP on documents and complaints, computer vision and OCR, robotic process
  automation, generative AI and large language models (only from 2023, with a few
  pilots in 2022), explainability, AI talent and partnerships, industry statements
  about AI. About half of the wordings hold a seed term of the paper's lexicon
  (:mod:`tasks.domains.finance.lexicon`); the rest use wordings outside it ("AI-powered",
  bare "AI" / "ML", "neural networks", "self-learning algorithms").
* ``hard_negative`` (label 0): sentences that share vocabulary with AI without
  being about it. Some hold a seed term in another sense, so the keyword rule fires
  wrongly: staff "learning models", a complaints "decision tree", cheque "image
  processing", a rules-based "decision support system", "supervised learning" of
  trainees, "deep learning" in the educational sense, survey "sentiment analysis",
  "business intelligence technology". Others do not: "learning and development",
  "ATM machines", "artificial reef", "artificial inflation of prices", "market
  intelligence", "business model", "risk model", "neural development", branch
  "automation", "data-driven", "intelligent deposit machines", a "vision" statement.
* ``plain`` (label 0): ordinary report sentences of each section; they hold no seed
  term.

Labelling decisions (the paper's annotation protocol is not public): a sentence is
an AI disclosure when it is about artificial intelligence or one of its techniques
(ML, DL, NLP, CV, GenAI, XAI), whether used, planned, governed, invested in or named
as a risk. Robotic process automation counts, because the paper's seed lexicon lists
it. Business intelligence (dashboards, reporting) and market intelligence do not
count, nor do rules-based systems, statistical risk models or automation of branches
and ATMs.

**Trend.** The expected share of AI sentences in a report is
``clip(0.06 + 0.075 * (year - 2019), 0.02, 0.6) * m``: about 6 % in 2019 and 36 % in
2023 for a median institution, so AI-disclosure intensity grows over the years. Of the
other sentences about 20 % are hard negatives.

**Formats.** TXT: a title block, upper-case section headings, paragraphs wrapped at 78
columns, a fixed-width table. HTML: a ``<head>`` with ``<style>`` and ``<script>``
(whose text holds AI words, to catch naive tag strippers), a ``<nav>`` menu, one
``<section>`` per report section with ``<p>`` paragraphs (source lines wrapped,
entities escaped), a ``<table>``, a footer script. PDF 1.4 written by hand: Letter
pages, Helvetica 10 pt body and Helvetica-Bold headings, one uncompressed content
stream per page with ``BT``/``ET``, ``Tj`` and ``T*`` operators, a correct
cross-reference table; paragraphs are wrapped by approximate Helvetica widths and
about half of the words that overflow a line are hyphenated across the line break
(``docu-`` / ``ments``); paragraphs run on across pages. Text is ASCII.

**Why the task is not trivial.** Measured by ``tests/data/test_synthetic_finance.py``
on the default corpus (4 institutions x 2019-2023, seed 0: 20 reports, 794
sentences, 19.5 % AI; 5 %, 11 %, 17 %, 28 % and 38 % per year), the seed-lexicon
keyword rule reaches precision 0.65, recall 0.50 and F1 0.56 (0.58-0.63 for seeds
1-3): it misses the AI wordings outside the lexicon and fires on the
hard negatives that use a seed term in another sense. The labels are noise-free
functions of the wording, so a trained sentence classifier can do much better.

Usage::

    python -m tasks.domains.finance.synthetic OUT_DIR --n-institutions 4 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks import store

YEARS: tuple[int, ...] = (2019, 2020, 2021, 2022, 2023)
SECTIONS: tuple[str, ...] = ("strategy", "risk", "governance", "financial_review", "esg")
SECTION_TITLES: dict[str, str] = {
    "strategy": "Strategic Report",
    "risk": "Risk Management",
    "governance": "Corporate Governance",
    "financial_review": "Financial Review",
    "esg": "Environmental, Social and Governance",
}
_NAMES = (
    "Harbor Point", "First Meridian", "Cedar Valley", "Northgate", "Summit Ridge", "Lakeshore",
    "Pioneer Plains", "Granite State", "Blue Heron", "Old Mill", "Riverbend", "Westfield",
)  # fmt: skip
_SUFFIXES = ("Bancorp", "Financial", "Bank", "Bancshares")
_REGIONS = (
    "the Midwest", "New England", "the Pacific Northwest", "the Gulf Coast", "the Mid-Atlantic",
    "the Southeast", "the Mountain West", "Texas", "the Great Lakes region", "Northern California",
)  # fmt: skip
SHARE_AI_HARD = 0.2  # share of hard negatives among the non-AI sentences

# ----------------------------------------------------------------------------- fillers
# A slot ``{name}`` is replaced by a random choice from FILL[name] (values may hold slots
# themselves). Special slots: {bank} {Bank} {region} {year} {prev} {n} {n2} {num} {num_s} {pct}
# {pct2} {pct3} {eps} {amt} {amt_s}.
FILL: dict[str, tuple[str, ...]] = {
    # AI wordings: lexicon ones first, the rest are outside the seed lexicon.
    "ai": (
        "artificial intelligence", "machine learning", "machine learning models", "AI models", "AI technologies",
        "deep learning", "machine learning techniques", "artificial intelligence (AI)", "machine learning algorithms",
        "AI applications", "AI", "AI tools", "ML models", "neural networks", "AI-driven analytics", "self-learning algorithms",
        "predictive models that learn from data", "cognitive computing",
    ),
    "ml_model": (
        "machine learning models", "gradient boosting models", "a random forest model", "machine learning algorithms",
        "ML-based scorecards", "models trained on repayment histories with AI", "an AI credit decisioning engine",
        "self-learning models", "neural network scorecards", "machine learning techniques",
    ),
    "dl": (
        "deep learning models", "deep neural networks", "a recurrent neural network", "AI models",
        "a neural network", "self-learning algorithms", "AI-based anomaly detection",
        "anomaly detection models trained with machine learning",
    ),
    "chatbot": (
        "AI-powered virtual assistant", "chatbot built on natural language processing", "AI chatbot",
        "conversational assistant that uses machine learning", "intelligent virtual assistant",
        "chatbot powered by artificial intelligence",
        "NLP-based chatbot", "AI assistant",
    ),
    "nlp": (
        "natural language processing", "NLP tools", "AI language models", "text analytics based on machine learning",
        "named entity recognition models", "AI-based text mining",
    ),
    "nlp_task": (
        "extract key terms from commercial loan agreements", "classify customer complaints by root cause",
        "review trade finance documents", "summarise regulatory updates for our compliance team",
        "route incoming customer emails to the right team",
    ),
    "cv": (
        "Computer vision", "Optical character recognition", "Image recognition software trained with AI",
        "Facial recognition powered by AI", "AI-based document imaging", "Face recognition software",
    ),
    "cv_task": (
        "reads account opening documents in seconds", "verifies customer identity during mobile onboarding",
        "checks signatures on paper cheques", "extracts figures from scanned financial statements of borrowers",
    ),
    "genai": (
        "generative AI", "large language models", "a generative AI assistant", "GenAI tools", "an LLM-based assistant",
        "ChatGPT-style tools", "a large language model", "generative artificial intelligence", "generative AI models",
    ),
    "genai_task": (
        "draft responses to customer enquiries", "summarise credit memos for relationship managers",
        "help software engineers write and test code", "search our internal policy library",
        "prepare first drafts of marketing content",
    ),
    "xai": (
        "explainable AI techniques", "Shapley additive explanations", "interpretable machine learning methods",
        "explainability tools for our AI models", "SHAP values", "model explanation tools for AI-based decisions",
    ),
    "ai_gov": (
        "an artificial intelligence policy", "an AI governance framework", "a responsible AI framework",
        "standards for the use of machine learning models", "an AI ethics charter", "a charter for trustworthy AI",
    ),
    "ai_risk_subj": (
        "Our growing reliance on artificial intelligence", "The use of AI in lending decisions",
        "The use of artificial intelligence in lending decisions",
        "Algorithmic decision making based on machine learning", "Third party AI tools",
        "The adoption of generative models and other AI", "Automated decisions made by neural networks",
    ),
    "ai_invest": (
        "our AI centre of excellence", "a data science team building machine learning models",
        "AI research partnerships with two universities", "cloud infrastructure to train AI",
        "AI capabilities across the Bank", "an innovation lab focused on AI applications",
    ),
    "usecase": (
        "credit scoring", "fraud detection", "anti-money laundering monitoring", "customer service",
        "cash flow forecasting for business clients", "personalised product offers", "collections",
    ),
    "ai_verb": ("deployed", "expanded", "introduced", "scaled up", "piloted", "rolled out"),
    "rpa": (
        "robotic process automation", "robotic process automation (RPA)", "software robots that use AI", "intelligent automation", "RPA and AI",
        "AI-enabled process automation",
    ),
    "benefit": (
        "improved approval rates without increasing losses", "shortened decision times to minutes",
        "reduced manual reviews", "widened access to credit for thin-file applicants",
    ),
    "segment": ("small business loans", "credit cards", "consumer loans", "auto loans", "overdraft limits"),
    # Negatives
    "product": ("mortgage", "small business", "wealth management", "treasury management", "credit card", "deposit"),
    "sector": ("commercial real estate", "agriculture", "hospitality", "healthcare", "energy", "construction"),
    "focus": (
        "deepening relationships with small and medium enterprises", "growing low-cost deposits",
        "disciplined expense management", "expanding our wealth management franchise",
        "serving our communities through every economic cycle",
    ),
    "committee": ("Audit Committee", "Risk Committee", "Compensation Committee", "Nominating and Governance Committee"),
    "metric": ("Net interest income", "Non-interest income", "Total deposits", "Total loans", "Net income"),
    "coast": ("Florida", "Gulf", "Carolina", "Maine"),
    "training": ("classroom courses, mentoring and online modules", "coaching, job rotations and e-learning"),
    "hospital": ("the regional children's hospital", "a local university medical centre"),
}  # fmt: skip

# (section, first year, weight, template)
AI_TEMPLATES: tuple[tuple[str, int, float, str], ...] = (
    ("strategy", 0, 3, "During {year} we {ai_verb} the use of {ai} in {usecase}."),
    ("strategy", 0, 2, "{Bank} is exploring how {ai} can improve {usecase} and the efficiency of our operations."),
    ("strategy", 0, 2, "We {ai_verb} {ml_model} for the credit scoring of {segment}, which {benefit}."),
    ("strategy", 0, 2, "Our {chatbot} now answers {pct} of routine customer enquiries in our mobile app."),
    ("strategy", 0, 1, "Customers can check balances and block cards through our {chatbot}, available around the clock."),
    ("strategy", 0, 2, "We use {nlp} to {nlp_task}."),
    ("strategy", 0, 2, "{cv} {cv_task}."),
    ("strategy", 0, 2, "We automated {n} back-office processes with {rpa}, saving about {num_s} staff hours."),
    ("strategy", 2023, 4, "In {year} we piloted {genai} to {genai_task}."),
    ("strategy", 2023, 3, "We expect {genai} to change how we {genai_task}, and we are testing it in controlled settings."),
    ("strategy", 2022, 1, "A small team began experimenting with {genai} to {genai_task}."),
    ("strategy", 0, 1, "We invested {amt_s} in {ai_invest} this year."),
    ("strategy", 0, 1, "{n} data scientists joined {bank} to develop {ml_model} for {usecase}."),
    ("strategy", 0, 1, "Across the industry, the spread of {ai} is reshaping how banks serve customers and manage risk."),
    ("risk", 0, 2, "Fraud detection now relies on {dl} to flag suspicious card transactions in real time."),
    ("risk", 0, 2, "Our {usecase} uses {ml_model}, which cut false positive alerts by {pct}."),
    ("risk", 0, 2, "{ai_risk_subj} could expose us to model errors, bias and data privacy risks."),
    ("risk", 0, 1, "Model risk management now covers {ml_model}, including checks for drift and bias."),
    ("risk", 2023, 2, "The use of {genai} raises new risks of inaccurate output and data leakage, which we monitor."),
    ("governance", 0, 2, "The Board approved {ai_gov} that sets out accountability for every AI use case."),
    ("governance", 0, 1, "To meet supervisory expectations we use {xai} to explain individual credit decisions."),
    ("governance", 0, 1, "The {committee} received regular updates on the risks of our {ai} initiatives."),
    ("esg", 0, 1, "We assess the fairness of {ml_model} so that automated decisions do not disadvantage any group."),
    ("financial_review", 0, 1, "Efficiency gains from {ai} and automation reduced operating expenses by {amt_s}."),
)  # fmt: skip

# Hard negatives; the first group holds a seed term in another sense (the keyword rule fires).
HARD_TEMPLATES: tuple[tuple[str, int, float, str], ...] = (
    ("esg", 0, 1, "Our learning models for staff combine {training}."),
    ("risk", 0, 1, "Complaints follow a documented decision tree that sets out when cases go to senior managers."),
    ("strategy", 0, 1, "We upgraded cheque image processing at {n} branches, cutting clearing times by {pct}."),
    ("risk", 0, 1, "The rules-based decision support system for {product} lending was moved to a new platform."),
    ("esg", 0, 1, "Graduate trainees complete {n} months of supervised learning in branches before serving customers."),
    ("esg", 0, 1, "Our leadership academy promotes deep learning through case studies rather than short courses."),
    ("strategy", 0, 1, "Our economists publish a quarterly sentiment analysis of small business owners based on telephone surveys."),
    ("strategy", 0, 1, "We moved our reporting to a business intelligence technology platform used by every branch."),
    ("esg", 2020, 1, "Staff faced an extreme learning curve as branches moved to appointment-only service."),
    # vocabulary shared, no seed term
    ("esg", 0, 2, "Learning and development spending rose to {amt}, or {n2} hours of training per employee."),
    ("strategy", 0, 2, "We replaced {n} ATM machines with cash recycling machines that also accept deposits."),
    ("esg", 0, 1, "The artificial reef we sponsor off the {coast} coast now supports {n2} species of fish."),
    ("risk", 0, 1, "Regulators fined several market participants for the artificial inflation of prices in municipal bonds."),
    ("strategy", 0, 2, "Our market intelligence team tracks competitor deposit rates in {region} every week."),
    ("strategy", 0, 2, "Business intelligence dashboards give branch managers a daily view of the {product} pipeline."),
    ("strategy", 0, 2, "Our business model is built on relationship banking with families and local businesses."),
    ("risk", 0, 2, "The risk model for {sector} loans was recalibrated to reflect higher vacancy and default rates."),
    ("esg", 0, 1, "Our foundation funds research into neural development in premature infants at {hospital}."),
    ("strategy", 0, 2, "Branch automation, including self-service kiosks, reduced teller transactions by {pct}."),
    ("strategy", 0, 1, "We remain a data-driven organisation, and management information is reviewed every month."),
    ("strategy", 0, 1, "Intelligent deposit machines at {n} branches accept cash and cheques outside opening hours."),
    ("strategy", 0, 1, "Our vision is to be the most trusted community bank in {region}."),
    ("risk", 0, 1, "Automated clearing house volumes grew {pct} as more clients moved payments online."),
    ("governance", 0, 1, "Directors received training on the new capital rules, and lessons learned are recorded."),
)  # fmt: skip

PLAIN_TEMPLATES: tuple[tuple[str, int, float, str], ...] = (
    ("strategy", 0, 1, "We opened {n} new branches in {region} during {year}."),
    ("strategy", 0, 1, "Our strategy focuses on {focus}."),
    ("strategy", 0, 1, "Active digital banking users grew to {num} by the end of the year."),
    ("strategy", 0, 1, "We completed the acquisition of a community bank in {region}, adding {amt} in deposits."),
    ("strategy", 0, 1, "Mobile banking logins increased by {pct} compared with {prev}."),
    ("strategy", 0, 1, "We launched a new {product} offering for customers in {region}."),
    ("strategy", 0, 1, "Our priorities for the coming year are {focus} and investing in our people."),
    ("risk", 0, 1, "Credit risk remains our largest exposure, with {sector} lending the biggest concentration."),
    ("risk", 0, 1, "The allowance for credit losses increased to {amt} at year end."),
    ("risk", 0, 1, "Interest rate risk is managed through the mix of fixed and floating rate assets and hedges."),
    ("risk", 0, 1, "The liquidity coverage ratio stood at {pct2} at the end of {year}."),
    ("risk", 0, 1, "Phishing attempts against customers rose during the year, and we expanded our awareness campaigns."),
    ("risk", 0, 1, "Nonperforming assets were {pct3} of total assets, compared with {pct3} a year earlier."),
    ("risk", 0, 1, "Our operational resilience plans were tested through {n} exercises with key suppliers."),
    ("governance", 0, 1, "The Board met {n2} times during the year, and attendance was {pct2}."),
    ("governance", 0, 1, "The {committee} met {n} times and reported to the Board after each meeting."),
    ("governance", 0, 1, "{n} of our {n2} directors are independent under the listing standards."),
    ("governance", 0, 1, "Executive compensation is linked to return on equity and long-term shareholder value."),
    ("governance", 0, 1, "The external auditor was reappointed following a review of its independence."),
    ("financial_review", 0, 2, "{metric} rose {pct} to {amt}."),
    ("financial_review", 0, 1, "{metric} declined {pct} to {amt}, reflecting lower mortgage banking activity."),
    ("financial_review", 0, 1, "Return on average equity was {pct3}, compared with {pct3} in {prev}."),
    ("financial_review", 0, 1, "Diluted earnings per share were ${eps} for {year}."),
    ("financial_review", 0, 1, "The common equity tier 1 ratio was {pct3} at year end, well above regulatory minimums."),
    ("financial_review", 0, 1, "We returned {amt} to shareholders through dividends and share repurchases."),
    ("esg", 0, 1, "We financed {amt} of renewable energy projects in {region}."),
    ("esg", 0, 1, "Employees volunteered {num} hours in their communities."),
    ("esg", 0, 1, "Scope 1 and 2 emissions fell {pct} from the prior year."),
    ("esg", 0, 1, "Our foundation awarded {amt} in grants to affordable housing and financial education programs."),
    ("esg", 0, 1, "Women hold {pct2} of senior leadership positions."),
)  # fmt: skip

_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Institution:
    """One synthetic bank: name, file-name slug, home region and AI propensity."""

    name: str
    slug: str
    region: str
    ai_propensity: float


def institution(seed: int, index: int) -> Institution:
    """The ``index``-th institution of a corpus (at most 48 distinct names)."""
    if not 0 <= index < len(_NAMES) * len(_SUFFIXES):
        raise ValueError(f"institution index must be in [0, {len(_NAMES) * len(_SUFFIXES)}), got {index}")
    name = f"{_NAMES[index % len(_NAMES)]} {_SUFFIXES[(index + index // len(_NAMES)) % len(_SUFFIXES)]}"
    rng = np.random.default_rng([seed, index, 0])
    return Institution(
        name=name,
        slug=name.lower().replace(" ", "-"),
        region=_REGIONS[int(rng.integers(len(_REGIONS)))],
        ai_propensity=float(np.clip(np.exp(rng.normal(0.0, 0.35)), 0.5, 1.6)),
    )


def ai_share(year: int, propensity: float = 1.0) -> float:
    """Expected share of AI-disclosure sentences in a report of ``year``."""
    return float(np.clip(0.06 + 0.075 * (year - 2019), 0.02, 0.6) * propensity)


def _fill(rng: np.random.Generator, template: str, inst: Institution, year: int) -> str:
    def repl(m: re.Match[str]) -> str:
        key = m.group(1)
        if key == "bank":
            return str(rng.choice(["the Bank", "the Group", inst.name]))
        if key == "Bank":
            return str(rng.choice(["The Bank", "The Group", inst.name]))
        if key == "region":
            return inst.region if rng.random() < 0.6 else str(rng.choice(_REGIONS))
        if key == "year":
            return str(year)
        if key == "prev":
            return str(year - 1)
        if key == "n":
            return str(int(rng.integers(2, 20)))
        if key == "n2":
            return str(int(rng.integers(8, 40)))
        if key == "num":
            return f"{int(rng.integers(12, 900)) * 1000 + int(rng.integers(0, 1000)):,}"
        if key == "num_s":
            return f"{int(rng.integers(2, 60)) * 1000 + int(rng.integers(0, 1000)):,}"
        if key == "amt_s":
            return f"${rng.uniform(0.5, 40.0):.1f} million"
        if key == "pct":
            return f"{int(rng.integers(3, 45))}%"
        if key == "pct2":
            return f"{int(rng.integers(40, 140))}%"
        if key == "pct3":
            return f"{rng.uniform(0.2, 14.0):.2f}%"
        if key == "eps":
            return f"{rng.uniform(0.8, 9.5):.2f}"
        if key == "amt":
            if rng.random() < 0.5:
                return f"${rng.uniform(1.0, 99.0):.1f} million"
            return f"${rng.uniform(0.1, 4.0):.2f} billion"
        return _fill(rng, str(rng.choice(FILL[key])), inst, year)

    return _SLOT.sub(repl, template)


def _pick(rng: np.random.Generator, templates, year: int, n: int, inst: Institution, seen: set[str]):
    pool = [t for t in templates if year >= t[1]]
    w = np.array([t[2] for t in pool], dtype=float)
    out = []
    for _ in range(n):
        for _attempt in range(50):
            section, _, _, tpl = pool[int(rng.choice(len(pool), p=w / w.sum()))]
            s = _fill(rng, tpl, inst, year)
            s = s[0].upper() + s[1:]
            if s not in seen:
                break
        seen.add(s)
        out.append((section, s))
    return out


def synthesize_report(
    seed: int, index: int, year: int
) -> tuple[Institution, list[tuple[str, str, int, str]]]:
    """Draw one report's sentences.

    Args:
        seed: Corpus seed.
        index: Institution index.
        year: Report year.

    Returns:
        The institution and its ``(section, sentence, label, kind)`` rows in document order
        (sections in :data:`SECTIONS` order).
    """
    inst = institution(seed, index)
    rng = np.random.default_rng([seed, index, year])
    n = int(rng.integers(32, 48))
    n_ai = int(rng.binomial(n, ai_share(year, inst.ai_propensity)))
    n_hard = int(rng.binomial(n - n_ai, SHARE_AI_HARD))
    seen: set[str] = set()
    rows = [(sec, s, 1, "ai") for sec, s in _pick(rng, AI_TEMPLATES, year, n_ai, inst, seen)]
    rows += [(sec, s, 0, "hard_negative") for sec, s in _pick(rng, HARD_TEMPLATES, year, n_hard, inst, seen)]
    rows += [
        (sec, s, 0, "plain") for sec, s in _pick(rng, PLAIN_TEMPLATES, year, n - n_ai - n_hard, inst, seen)
    ]
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    rows.sort(key=lambda r: SECTIONS.index(r[0]))  # stable: random order within a section
    return inst, rows


def _highlights(rng: np.random.Generator, year: int) -> list[tuple[str, str, str]]:
    rows = [("($ millions)", str(year), str(year - 1))]
    for label in ("Net interest income", "Non-interest income", "Non-interest expense", "Net income"):
        cur = rng.uniform(20, 900)
        rows.append((label, f"{cur:,.1f}", f"{cur * rng.uniform(0.85, 1.1):,.1f}"))
    return rows


def _paragraphs(rows, rng: np.random.Generator) -> dict[str, list[str]]:
    """Group a report's sentences into paragraphs of 1-4 sentences per section."""
    out: dict[str, list[str]] = {s: [] for s in SECTIONS}
    for sec in SECTIONS:
        sents = [r[1] for r in rows if r[0] == sec]
        i = 0
        while i < len(sents):
            k = int(rng.integers(1, 5))
            out[sec].append(" ".join(sents[i : i + k]))
            i += k
    return out


# ----------------------------------------------------------------------------- writers
def _wrap(text: str, width: int) -> list[str]:
    lines, cur = [], ""
    for w in text.split():
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    return lines + ([cur] if cur else [])


def _render_txt(inst: Institution, year: int, paras, table) -> bytes:
    out = [inst.name, f"Annual Report {year}", ""]
    for sec in SECTIONS:
        out += [SECTION_TITLES[sec].upper(), ""]
        for p in paras[sec]:
            out += _wrap(p, 78) + [""]
        if sec == "financial_review":
            out += ["Financial highlights"] + [f"{a:<28}{b:>12}{c:>12}" for a, b, c in table] + [""]
    return ("\n".join(out) + "\n").encode("utf-8")


_HTML_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{name} Annual Report {year}</title>
<style>
body {{ font-family: Georgia, serif; margin: 2em; }}
nav ul {{ list-style: none; display: flex; }}
.ai-banner::after {{ content: "Artificial intelligence at {name}"; }}
</style>
<script>
window.dataLayer = window.dataLayer || [];
function track(e) {{ dataLayer.push({{event: e, topic: "machine learning", page: "annual-report-{year}"}}); }}
</script>
</head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/investors">Investor Relations</a></li>
<li><a href="/careers">Careers</a></li><li><a href="/innovation">AI and Innovation</a></li></ul></nav>
<header><h1>{name}</h1><p class="subtitle">Annual Report {year}</p></header>
<main>
"""


def _render_html(inst: Institution, year: int, paras, table) -> bytes:
    out = [_HTML_HEAD.format(name=html.escape(inst.name), year=year)]
    for sec in SECTIONS:
        out.append(f'<section id="{sec}">\n<h2>{html.escape(SECTION_TITLES[sec])}</h2>')
        for p in paras[sec]:
            out.append("<p>" + "\n".join(_wrap(html.escape(p, quote=False), 100)) + "</p>")
        if sec == "financial_review":
            out.append("<table>\n<caption>Financial highlights</caption>")
            for i, row in enumerate(table):
                tag = "th" if i == 0 else "td"
                out.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in row) + "</tr>")
            out.append("</table>")
        out.append("</section>")
    out.append(
        "</main>\n<footer><p>&copy; " + f"{year} {html.escape(inst.name)}</p></footer>\n"
        '<script>track("report-view"); document.querySelectorAll("nav a").forEach(a => a.dataset.ai = "1");</script>\n'
        "</body>\n</html>\n"
    )
    return "\n".join(out).encode("utf-8")


# Approximate Helvetica advance widths (1/1000 em) for line wrapping.
_NARROW, _WIDE = set("fijlrtI.,;:'!|()[] -"), set("mwMW@%")


def _text_width(s: str, size: float) -> float:
    w = 0
    for ch in s:
        if ch in _NARROW:
            w += 278
        elif ch in _WIDE:
            w += 833
        elif ch.isupper():
            w += 667
        else:
            w += 556
    return w * size / 1000


def _wrap_hyphenate(text: str, width: float, size: float, rng: np.random.Generator) -> list[str]:
    """Greedy wrap; about half of the alphabetic words that overflow a line are hyphenated."""
    lines, cur = [], ""
    words = text.split()
    i = 0
    while i < len(words):
        w = words[i]
        cand = f"{cur} {w}" if cur else w
        if _text_width(cand, size) <= width or not cur:
            cur, i = cand, i + 1
            continue
        if w.isalpha() and len(w) >= 7 and rng.random() < 0.5:
            cut = 0
            for k in range(len(w) - 3, 2, -1):
                if _text_width(f"{cur} {w[:k]}-", size) <= width:
                    cut = k
                    break
            if cut:
                lines.append(f"{cur} {w[:cut]}-")
                words[i] = w[cut:]
                cur = ""
                continue
        lines.append(cur)
        cur = ""
    return lines + ([cur] if cur else [])


def _pdf_str(s: str) -> str:
    return "(" + s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _render_pdf(inst: Institution, year: int, paras, table, rng: np.random.Generator) -> bytes:
    size, lead, top, left, bottom = 10.0, 14.0, 720.0, 72.0, 72.0
    per_page = int((top - bottom) // lead)
    # (font, text) lines; None = blank line
    lines: list[tuple[str, str] | None] = [("F2", inst.name), ("F2", f"Annual Report {year}"), None]
    for sec in SECTIONS:
        lines += [("F2", SECTION_TITLES[sec]), None]
        for p in paras[sec]:
            lines += [("F1", ln) for ln in _wrap_hyphenate(p, 612 - 2 * left, size, rng)] + [None]
        if sec == "financial_review":
            lines += [("F2", "Financial highlights")]
            lines += [("F1", f"{a}    {b}    {c}") for a, b, c in table] + [None]
    pages = [lines[i : i + per_page] for i in range(0, len(lines), per_page)]
    streams = []
    for page in pages:
        ops = [f"BT\n/F1 {size:g} Tf\n{lead:g} TL\n{left:g} {top:g} Td"]
        font = "F1"
        for item in page:
            if item is None:
                ops.append("T*")
                continue
            f, text = item
            if f != font:
                ops.append(f"/{f} {size + 1 if f == 'F2' else size:g} Tf")
                font = f
            ops.append(f"{_pdf_str(text)} Tj T*")
        ops.append("ET")
        streams.append(("\n".join(ops) + "\n").encode("latin-1"))

    n_pages = len(pages)
    kids = " ".join(f"{5 + 2 * k} 0 R" for k in range(n_pages))
    objs: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
    ]
    for k, st in enumerate(streams):
        objs.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R "
            f"/F2 4 0 R >> >> /Contents {6 + 2 * k} 0 R >>".encode()
        )
        objs.append(f"<< /Length {len(st)} >>\nstream\n".encode() + st + b"endstream")
    title = _pdf_str(f"{inst.name} Annual Report {year}")
    objs.append(f"<< /Title {title} /Producer (formerflow synthetic finance) >>".encode("latin-1"))
    buf = io.BytesIO()
    buf.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, start=1):
        offsets.append(buf.tell())
        buf.write(f"{i} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = buf.tell()
    buf.write(f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        buf.write(f"{off:010d} 00000 n \n".encode())
    buf.write(f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R /Info {len(objs)} 0 R >>\n".encode())
    buf.write(f"startxref\n{xref}\n%%EOF\n".encode())
    return buf.getvalue()


def _csv_bytes(header: list[str], rows) -> bytes:
    s = io.StringIO()
    w = csv.writer(s, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return s.getvalue().encode("utf-8")


def _formats(n: int, pdf_fraction: float, html_fraction: float, rng: np.random.Generator) -> list[str]:
    if pdf_fraction < 0 or html_fraction < 0 or pdf_fraction + html_fraction > 1:
        raise ValueError(
            f"need 0 <= pdf_fraction, html_fraction and their sum <= 1, got {pdf_fraction}, {html_fraction}"
        )
    n_pdf, n_html = round(pdf_fraction * n), round(html_fraction * n)
    if n >= 3:
        n_pdf = max(n_pdf, int(pdf_fraction > 0))
        n_html = max(n_html, int(html_fraction > 0))
        if pdf_fraction + html_fraction < 1:
            while n - n_pdf - n_html < 1:
                if n_html >= n_pdf:
                    n_html -= 1
                else:
                    n_pdf -= 1
    n_html = min(n_html, n - n_pdf)
    fmts = ["pdf"] * n_pdf + ["html"] * n_html + ["txt"] * (n - n_pdf - n_html)
    return [fmts[i] for i in rng.permutation(n)]


def generate(
    out_dir: str | Path,
    *,
    n_institutions: int = 4,
    years: tuple[int, ...] = YEARS,
    seed: int = 0,
    pdf_fraction: float = 0.2,
    html_fraction: float = 0.4,
) -> dict:
    """Write a synthetic corpus of bank annual reports with sentence labels into ``out_dir``.

    Files are written under temporary names and renamed. Report files of an earlier run
    (``*_<year>.txt|html|pdf``) that this run does not write are removed. The same
    arguments give byte-identical files.

    Args:
        out_dir: Folder to write into (created if missing).
        n_institutions: Number of banks (1-48).
        years: Report years; one report per institution and year.
        seed: Random seed.
        pdf_fraction: Share of reports written as PDF.
        html_fraction: Share of reports written as HTML (the rest are TXT).

    Returns:
        A manifest: ``files`` (report paths, by institution then year), ``metadata`` and
        ``labels`` (CSV paths), ``n_documents``, ``n_sentences``, ``n_ai``, ``formats``
        (count per extension) and ``ai_share_by_year``.
    """
    if n_institutions < 1:
        raise ValueError(f"n_institutions must be >= 1, got {n_institutions}")
    years = tuple(int(y) for y in years)
    if not years or len(set(years)) != len(years):
        raise ValueError(f"years must be non-empty and distinct, got {years}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = [(i, y) for i in range(n_institutions) for y in years]
    fmts = _formats(len(docs), pdf_fraction, html_fraction, np.random.default_rng([seed, 999_999]))
    paths, meta, labels = [], [], []
    by_year: dict[int, list[int]] = {y: [0, 0] for y in years}
    for (i, year), ext in zip(docs, fmts, strict=True):
        inst, rows = synthesize_report(seed, i, year)
        lay = np.random.default_rng([seed, i, year, 1])  # layout stream: paragraphs, table, hyphenation
        paras, table = _paragraphs(rows, lay), _highlights(lay, year)
        if ext == "txt":
            data = _render_txt(inst, year, paras, table)
        elif ext == "html":
            data = _render_html(inst, year, paras, table)
        else:
            data = _render_pdf(inst, year, paras, table, lay)
        path = out / f"{inst.slug}_{year}.{ext}"
        store.atomic_write_bytes(path, data)
        paths.append(path)
        meta.append((path.name, inst.slug, year))
        labels += [(path.name, k, s, lab, sec, kind) for k, (sec, s, lab, kind) in enumerate(rows)]
        by_year[year][0] += sum(r[2] for r in rows)
        by_year[year][1] += len(rows)
    store.atomic_write_bytes(out / "metadata.csv", _csv_bytes(["file", "institution", "year"], meta))
    store.atomic_write_bytes(
        out / "labels.csv",
        _csv_bytes(["file", "sentence_id", "sentence", "label", "section", "kind"], labels),
    )
    pattern = re.compile(r".+_\d{4}\.(txt|html|pdf)$")
    for stale in sorted(p for p in out.iterdir() if pattern.match(p.name) and p not in set(paths)):
        stale.unlink()
    n_ai = sum(r[3] for r in labels)
    return {
        "files": [str(p) for p in paths],
        "metadata": str(out / "metadata.csv"),
        "labels": str(out / "labels.csv"),
        "n_documents": len(paths),
        "n_sentences": len(labels),
        "n_ai": n_ai,
        "formats": {e: fmts.count(e) for e in ("txt", "html", "pdf")},
        "ai_share_by_year": {y: a / max(n, 1) for y, (a, n) in by_year.items()},
    }


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m tasks.domains.finance.synthetic OUT_DIR --n-institutions N --seed S``."""
    ap = argparse.ArgumentParser(
        description="Write a synthetic corpus of bank annual reports (TXT/HTML/PDF)."
    )
    ap.add_argument("out_dir")
    ap.add_argument("--n-institutions", type=int, default=4)
    ap.add_argument("--years", type=int, nargs="+", default=list(YEARS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pdf-fraction", type=float, default=0.2)
    ap.add_argument("--html-fraction", type=float, default=0.4)
    a = ap.parse_args(argv)
    m = generate(
        a.out_dir,
        n_institutions=a.n_institutions,
        years=tuple(a.years),
        seed=a.seed,
        pdf_fraction=a.pdf_fraction,
        html_fraction=a.html_fraction,
    )
    print(f"{m['n_documents']} reports {m['formats']}, {m['n_sentences']} sentences, {m['n_ai']} AI")


if __name__ == "__main__":
    main()
