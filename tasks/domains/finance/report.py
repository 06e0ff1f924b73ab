"""The finance domain's report sections: evaluation extras (models.md 3.5-3.6) and the scoring summary.

:func:`evaluate_extras` runs in the evaluate stage after the generic metrics: the calibration
plot, per-year slices, sentence-length bias, the edge-case set per group and integrated-gradient
token attributions rendered as HTML (``reports/finance/attributions.html``). :func:`scoring_summary` turns scored sentences into the
per-document table and the AI-disclosure intensity plot. The numerical pieces live in
:mod:`tasks.domains.finance.analysis`; this module assembles them into markdown and files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from tasks import store
from tasks.domains import LoadedModel
from tasks.domains.finance import analysis
from tasks.domains.finance.data import load_split
from tasks.domains.finance.edge_cases import edge_case_table
from tasks.domains.finance.encoder import folder_tokenizer
from tasks.domains.finance.scoring import sentence_probs
from tasks.plotting import png_bytes, pyplot

if TYPE_CHECKING:
    from tasks.params import Params


def _md_table(frame, digits: int = 3) -> str:
    """A polars frame as a markdown table (floats rounded)."""
    cols = frame.columns
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in frame.iter_rows():
        cells = [(f"{v:.{digits}f}" if isinstance(v, float) else ("" if v is None else str(v))) for v in r]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


ATTRIBUTIONS_PAGE = "attributions.html"
"""The token-attribution page, in ``reports/finance/`` beside report.md (which links it) and logged to MLflow with
it; not in ``plots/``, which holds images only."""


def evaluate_extras(params: Params, result: dict[str, Any], plots_dir: Path,
                    scores: dict[str, tuple[np.ndarray, np.ndarray]],
                    models: dict[str, LoadedModel]) -> tuple[str, list[str]]:
    """Calibration, per-year slices, length bias, edge cases and token attributions of the finance models.

    Args:
        params: Project params (``evaluate.finance`` knobs).
        result: The evaluate stage's result; ``result["finance"]`` is added.
        plots_dir: Where the plots go (images only; the attribution page goes to ``reports/finance/``).
        scores: ``{model: (y_true, P(AI))}`` on the test split, from the stage.
        models: The encoders the stage loaded (teacher and compressed), with their folders (tokenizers).

    Returns:
        The markdown section and the file names written into ``plots_dir``.
    """
    p = params.evaluate.finance
    paths = store.domain_paths("finance")
    test = load_split("test")
    plots: list[str] = []
    extra: dict[str, Any] = {}
    md = ["## Calibration", ""]
    if scores:
        analysis.plot_calibration(scores, plots_dir / "calibration.png", "finance: reliability (test split)")
        plots.append("calibration.png")
        md += ["Brier score (lower is better; the paper reports 0.0000, its sister study 0.0027):", "",
               "| model | Brier |", "|---|---:|"]
        md += [f"| {m} | {result['models'][m].get('brier', float('nan')):.4f} |" for m in scores]
        md += ["", "![calibration](plots/calibration.png)", ""]

    # Per-year slices (the paper: F1 >= 0.99 in every year 2015-2023).
    probs = {m: s[1] for m, s in scores.items()}
    years = np.array([y if y is not None else -1 for y in test.years])
    md += ["## Per-year slices", ""]
    if (years >= 0).any():
        table = analysis.year_slices(np.array(test.years, dtype=object), test.labels, probs, p.threshold)
        extra["years"] = table.to_dicts()
        # F1 of every model per year (accuracy too in metrics.json), so the table stays readable.
        shown = table.select("year", "n", "ai_share", *[f"{m}_f1" for m in probs]).rename(
            {"ai_share": "AI share", **{f"{m}_f1": f"F1 {m}" for m in probs}})
        md += ["F1 (AI) per report year of the test sentences (FinAI-BERT: F1 >= 0.99 in every year 2015-2023).",
               "", _md_table(shown), ""]
    else:
        md += ["The labelled sentences carry no year, so there is no per-year slice.", ""]

    # Sentence-length bias of the encoder (the paper: Pearson r ~ 0.19).
    if "teacher" in probs:
        lb = analysis.length_bias(list(test.text), probs["teacher"], plots_dir / "length_bias.png",
                                  "finance: words vs P(AI), teacher (test split)")
        plots.append("length_bias.png")
        extra["length_bias"] = lb
        md += ["## Sentence length vs P(AI)", "",
               f"Pearson r = {lb['r']:.3f} (p = {lb['p_value']:.2g}, n = {lb['n']}) between word count and the teacher's "
               "P(AI) on the test split (FinAI-BERT: r = 0.19, 'no substantial bias'). Part of any correlation is "
               "real: in annual reports AI disclosures tend to be longer sentences than the average one.", "",
               "![length bias](plots/length_bias.png)", ""]

    loaded = {name: lm for name, lm in models.items() if name in scores}

    def encoder_probs(lm: LoadedModel, sentences: list[str]) -> np.ndarray:
        return sentence_probs(lm.model, folder_tokenizer(lm.folder), sentences, int(lm.meta["config"]["max_length"]))

    # Edge cases: hand-written typos, paraphrases, negations and hard negatives, per group.
    edge_file = paths.baselines / "edge_cases.parquet"
    if p.edge_cases and edge_file.exists():
        edge = pl.read_parquet(edge_file)
        preds = {name: (encoder_probs(m, edge["sentence"].to_list()) >= p.threshold).astype(int)
                 for name, m in loaded.items()}
        preds.update({c: (edge[c].to_numpy() >= p.threshold).astype(int) for c in edge.columns
                      if c not in ("group", "sentence", "label")})
        table = edge_case_table(edge["group"].to_numpy(), edge["label"].to_numpy(), preds)
        extra["edge_cases"] = table.to_dicts()
        wrong = [(g, s, int(lab)) for g, s, lab, ok in zip(edge["group"], edge["sentence"], edge["label"],
                                                           preds.get("teacher", edge["label"].to_numpy())
                                                           == edge["label"].to_numpy(), strict=True) if not ok]
        md += ["## Edge cases (accuracy per group)", "",
               "Hand-written sentences (tasks/domains/finance/edge_cases.py): typos and noise, paraphrases without the "
               "usual terms, negations (\"we do not use AI\" is a disclosure about AI, label 1) and hard "
               "negatives (\"learning and development\", \"ATM machines\", \"market intelligence\").", "",
               _md_table(table), ""]
        if wrong:
            md += ["Teacher's misses:", ""] + [f"- [{g}] (label {lab}) {s}" for g, s, lab in wrong] + [""]

    # Token attributions (integrated gradients, captum) for a sample of test sentences.
    if p.attribution_sentences and "teacher" in loaded and len(test):
        rng = np.random.default_rng(0)
        y = test.labels
        pred = (probs["teacher"] >= p.threshold).astype(int)
        wrong_idx = np.flatnonzero(pred != y)
        pick = list(wrong_idx[:2])  # errors are the most instructive
        for cls in (1, 0):
            pool = np.setdiff1d(np.flatnonzero((y == cls) & (pred == y)), pick)
            k = max(0, (p.attribution_sentences - len(pick)) // (2 if cls == 1 else 1))
            pick += list(rng.choice(pool, size=min(k, len(pool)), replace=False)) if len(pool) else []
        pick = sorted(int(i) for i in pick[: p.attribution_sentences])
        torch.manual_seed(0)
        teacher = loaded["teacher"]
        records = analysis.token_attributions(teacher.model, folder_tokenizer(teacher.folder),
                                              [str(test.text[i]) for i in pick], target=1, n_steps=p.attribution_steps)
        # Beside report.md, not in plots/: that folder is DVC's image plots, which `dvc plots show` cannot load a
        # page from (ATTRIBUTIONS_PAGE).
        analysis.render_attributions_html(records, paths.reports / ATTRIBUTIONS_PAGE,
                                          "finance: integrated-gradient attributions towards AI (teacher)")
        md += ["## Token attributions", "",
               "Integrated gradients (captum) of the teacher's AI output over the word embeddings, baseline = "
               "padding; words summed over their WordPieces. Red pushes towards AI, blue away. Highlighted "
               f"version: [{ATTRIBUTIONS_PAGE}]({ATTRIBUTIONS_PAGE}).", "",
               "| label | P(AI) | top words | sentence |", "|---:|---:|---|---|"]
        for i, rec in zip(pick, records, strict=True):
            sent = str(test.text[i])
            md.append(f"| {int(y[i])} | {rec['p_target']:.3f} | {', '.join(analysis.top_tokens(rec))} | "
                      f"{(sent[:160] + '...') if len(sent) > 160 else sent} |")
        md.append("")
    else:  # no attributions this run: a page from an earlier one would describe another teacher
        (paths.reports / ATTRIBUTIONS_PAGE).unlink(missing_ok=True)
    result["finance"] = extra
    return "\n".join(md), plots


# ============================================================================ scoring
def scoring_summary(out, notes: dict, output: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Per-document table, intensity plot and a short markdown report of a finance scoring run.

    See :func:`tasks.domains.finance.score_summary`.
    """
    stem = Path(output).name.removesuffix(".parquet")
    docs = (out.group_by("document", maintain_order=True)
            .agg(pl.col("institution").first(), pl.col("year").first(), pl.len().alias("sentences"),
                 pl.col("prediction").sum().alias("ai_sentences"), pl.col("p_ai").mean().alias("mean_p_ai"))
            .with_columns((pl.col("ai_sentences") / pl.col("sentences")).alias("ai_share"))
            .sort(["institution", "year", "document"], nulls_last=True))
    files: dict[str, bytes] = {f"{stem}.documents.csv": docs.write_csv().encode()}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    dated = docs.filter(pl.col("year").is_not_null())
    if dated.height:
        for inst, part in dated.group_by("institution", maintain_order=True):
            part = part.sort("year")
            ax.plot(part["year"], part["ai_share"], marker="o", alpha=0.6, label=str(inst[0]))
        overall = dated.group_by("year").agg(pl.col("ai_sentences").sum() / pl.col("sentences").sum()).sort("year")
        ax.plot(overall["year"], overall["ai_sentences"], color="black", lw=3, label="all documents")
        ax.set_xlabel("year")
        ax.xaxis.get_major_locator().set_params(integer=True)
    else:
        ax.bar(range(docs.height), docs["ai_share"].to_list())
        ax.set_xticks(range(docs.height), docs["document"].to_list(), rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of AI-disclosure sentences")
    ax.set_title("AI-disclosure intensity by institution and year")
    if dated.height:  # the undated bars carry no labels: a legend there is empty (and matplotlib warns)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    files[f"{stem}.intensity.png"] = png_bytes(fig)
    skipped = notes.get("skipped", [])
    md = [f"# Finance scoring: {Path(output).name}", "",
          f"{docs.height} document(s) scored, {out.height} sentences, {int(out['prediction'].sum())} AI disclosures; "
          f"{len(skipped)} document(s) skipped.", "",
          _md_table(docs.select("document", "institution", "year", "sentences", "ai_sentences", "ai_share")), "",
          f"![intensity]({stem}.intensity.png)", ""]
    if skipped:
        md += ["## Skipped documents", ""] + [f"- `{s['file']}`: {s['reason']}" for s in skipped] + [""]
    files[f"{stem}.report.md"] = "\n".join(md).encode()
    return {"documents": docs.height, "skipped": skipped,
            "extra_outputs": [str(Path(output).with_name(n)) for n in files]}, files
