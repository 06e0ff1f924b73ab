"""Hand-written edge cases for the AI-disclosure classifiers (models.md section 3.6).

FinAI-BERT's card reports a hand-written adversarial set ("100 % correct in manual test");
its sister notebook has 40 sentences in 4 groups of 10 (edge cases, noise, paraphrase,
syntax) and reports accuracy per group. :data:`EDGE_CASES` is this project's version: 40
bank-annual-report sentences written for this repository, 10 per group:

* ``typos``: AI and non-AI sentences with misspellings, punctuation noise and odd casing
  ("machine lerning", "A.I.-driven", "ARTIFICIAL INTELLIGENCE").
* ``paraphrase``: AI disclosures worded without the usual terms ("algorithms that learn
  from historical transactions", "conversational assistant"), and non-AI sentences about
  neighbouring topics (automation, staff training, digital onboarding).
* ``negation``: sentences that refuse, postpone or deny AI, and negated non-AI sentences.
* ``hard_negative``: non-AI sentences that share words with AI terms ("learning and
  development", "ATM machines", "artificial reef", "business intelligence", "decision
  tree", "smart branches"), all label 0. Some of them trip the seed-lexicon keyword rule on purpose.

Labelling rule. Label 1 = the sentence is a *disclosure about AI or its techniques*
(machine learning, deep learning, NLP, computer vision, generative AI, ...), whether the
bank uses it, plans it, refuses it, governs it or reports it as a risk. Label 0 = anything
else. This is FinAI-BERT's target: the classifier finds where annual reports talk about
AI, and whether the talk is about adoption is a later, separate question. So "We do not
use artificial intelligence in credit decisions." is 1: it is an AI disclosure (a bank
stating its AI policy), and a detector that drops it would hide exactly the sentences a
reader of AI disclosure wants to compare across banks. A classifier that has learned
"negation = not AI" fails this group.

Labels overall: 18 of 40 are 1 (the hard negatives are all 0; the other groups are 6 / 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class EdgeCase:
    """One hand-written test sentence.

    Attributes:
        group: ``typos``, ``paraphrase``, ``negation`` or ``hard_negative``.
        sentence: The sentence, as it could appear in a bank's annual report.
        label: 1 = disclosure about AI (see the module docstring), 0 = not.
    """

    group: str
    sentence: str
    label: int


GROUPS: tuple[str, ...] = ("typos", "paraphrase", "negation", "hard_negative")

_CASES: dict[str, tuple[tuple[str, int], ...]] = {
    "typos": (
        ("The bank expanded its use of machine lerning to flag suspicious payments.", 1),
        ("Our A.I.-driven chatbot answered 1.2 million customer queries in 2023.", 1),
        ("ARTIFICIAL INTELLIGENCE tools now screen trade-finance documents for fraud!!", 1),
        ("We piloted a deep-lerning model , to forecast cash demand at branches.", 1),
        ("generative a.i. was used to draft first versions of customer letters ...", 1),
        ("Credit risk is scored with a gradiant boosting modle trained on past defaults.", 1),
        ("Net interst income rose by 4% on higher lending volums.", 0),
        ("The BOARD approved a final dividend of 12 cents per share !!", 0),
        ("Our branch netwrok was reduced to 210 outlets , mainly in rural areas.", 0),
        ("customer deposits grew by eight percent..despite tighter liquidity.", 0),
    ),
    "paraphrase": (
        ("We deployed algorithms that learn from historical transactions to spot unusual card spending.", 1),
        ("A conversational assistant in our mobile app now resolves most balance and card queries.", 1),
        ("Software that reads scanned cheques and extracts the amounts has replaced manual keying.", 1),
        ("Credit limits for small firms are set by self-improving statistical models trained on "
         "repayment histories.", 1),
        ("Our virtual agent understands customer requests written in everyday language.", 1),
        ("Systems that mimic human judgement now triage incoming trade-finance applications.", 1),
        ("Staff who answer customer calls received refresher training on complaint handling.", 0),
        ("Loans are approved by the credit committee after a review of the borrower's cash flows.", 0),
        ("Spreadsheets prepared by the finance team were reconciled to the general ledger every month.", 0),
        ("Customers can now open a savings account on their phone in under five minutes.", 0),
    ),
    "negation": (
        ("We do not use artificial intelligence in credit decisions.", 1),
        ("The bank has not yet adopted machine learning for loan underwriting.", 1),
        ("No generative AI tools are permitted for drafting customer correspondence.", 1),
        ("The Board decided against deploying facial recognition in branches.", 1),
        ("None of our credit scoring models rely on neural networks.", 1),
        ("Management does not consider AI to be material to the Group's operations at this stage.", 1),
        ("The bank did not open any new branches during the year.", 0),
        ("No dividend was declared for the 2020 financial year.", 0),
        ("We do not offer cryptocurrency custody services to retail clients.", 0),
        ("There were no material changes to the Group's accounting policies.", 0),
    ),
    "hard_negative": (
        ("Our learning and development programme trained 2,400 employees in 2023.", 0),
        ("We installed 35 new ATM machines in rural branches.", 0),
        ("The bank funded an artificial reef project to protect coastal fisheries.", 0),
        ("Our market intelligence unit tracks competitor deposit rates every week.", 0),
        ("Business intelligence dashboards give branch managers daily sales figures.", 0),
        ("Intelligent deposit machines accept cash and cheques around the clock.", 0),
        ("The Board reviewed the bank's vision statement and core values.", 0),
        ("The foundation sponsored research on neural development in premature infants.", 0),
        ("Complaints are escalated along a decision tree agreed with the regulator.", 0),
        ("Our smart branches offer self-service kiosks and video calls with advisers.", 0),
    ),
}  # fmt: skip

EDGE_CASES: tuple[EdgeCase, ...] = tuple(
    EdgeCase(group, sentence, label) for group in GROUPS for sentence, label in _CASES[group]
)
"""The 40 edge cases, grouped in the order of :data:`GROUPS`, 10 per group."""


def edge_case_table(
    groups: Sequence[str] | np.ndarray, y: np.ndarray, pred_by_model: dict[str, np.ndarray]
) -> pl.DataFrame:
    """Accuracy of each model per edge-case group, plus an ``all`` row.

    Args:
        groups: Group name of each sentence, ``(N,)``.
        y: True labels, ``(N,)`` of 0 / 1.
        pred_by_model: Model name -> predicted labels ``(N,)`` of 0 / 1.

    Returns:
        One row per group (in order of first appearance) and a last ``all`` row; columns
        ``group``, ``n`` and ``<model>_accuracy`` per model (in the dict's order).

    Raises:
        ValueError: When an array's length differs from ``groups``'.
    """
    groups = np.asarray(groups, dtype=object)
    y = np.asarray(y)
    n = len(groups)
    preds = {name: np.asarray(p) for name, p in pred_by_model.items()}
    for name, arr in (("y", y), *preds.items()):
        if arr.shape != (n,):
            raise ValueError(f"edge_case_table: {name} has shape {arr.shape}, expected ({n},) like groups")
    order = list(dict.fromkeys(groups.tolist()))
    rows = []
    for name, mask in [*((g, groups == g) for g in order), ("all", np.ones(n, dtype=bool))]:
        row: dict[str, object] = {"group": name, "n": int(mask.sum())}
        for model, p in preds.items():
            # an empty selection (no sentences at all) has no accuracy: null, not 0
            row[f"{model}_accuracy"] = float((p[mask] == y[mask]).mean()) if mask.any() else None
        rows.append(row)
    schema = {"group": pl.String, "n": pl.Int64, **{f"{m}_accuracy": pl.Float64 for m in preds}}
    return pl.DataFrame(rows, schema=schema)
