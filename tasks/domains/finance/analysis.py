"""Robustness, bias and interpretability analyses of the AI-disclosure classifiers.

FinAI-BERT (``shared/reference/models.md`` sections 3.5 and 3.6) backs its scores with
per-year slices, a sentence-length bias check (Pearson r between word count and P(AI),
scatter with a linear fit and a 25-bin average), a hand-written edge-case set
(:mod:`tasks.domains.finance.edge_cases`) and token attributions. Pure functions here:

* :func:`year_slices`: accuracy and F1 of each model per report year.
* :func:`length_bias`: Pearson r between word count and P(AI), optional scatter plot.
* :func:`plot_calibration`: reliability diagram with each model's Brier score.
* :func:`token_attributions`: integrated gradients with captum over the word
  embeddings, merged into whole words. The paper uses SHAP with a text masker;
  integrated gradients are used instead because they need one backward pass per step
  instead of thousands of masked forward passes on 2 CPU cores, and their attributions
  add up exactly (up to the integral's error, reported as ``delta``) to the change in
  P(target) from the baseline, so they read as "this word moved P(AI) by x".
* :func:`render_attributions_html`: the attributions as a self-contained HTML page.
* :func:`top_tokens`: the words that push hardest towards the target class.

captum and scipy.stats are imported where they are used (slow imports that only the
attributions and the length bias need).
"""

from __future__ import annotations

import html
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score

from tasks import store
from tasks.plotting import curve_style, pyplot, save_png, wrap_title


# ----------------------------------------------------------------------------- helpers
def _word_counts(sentences: list[str]) -> np.ndarray:
    return np.array([len(s.split()) for s in sentences], dtype=np.float64)  # (N,)


# ----------------------------------------------------------------------------- year slices
def year_slices(
    years: np.ndarray,
    y: np.ndarray,
    probs_by_model: dict[str, np.ndarray],
    threshold: float = 0.5,
) -> pl.DataFrame:
    """Per-year sample size, AI share, and each model's accuracy and F1 (models.md 3.6, temporal).

    Args:
        years: Report year of each sentence, ``(N,)``; None or NaN where unknown (those
            sentences are skipped).
        y: True labels, ``(N,)`` of 0 / 1.
        probs_by_model: Model name -> P(AI) ``(N,)``.
        threshold: A sentence is predicted AI when P(AI) >= threshold.

    Returns:
        One row per known year, sorted: ``year`` (Int64), ``n``, ``ai_share`` (mean of
        ``y``), then ``<model>_accuracy`` and ``<model>_f1`` per model (F1 of class 1,
        0 when a year has neither true nor predicted AI sentences). An empty frame with the
        same columns when no year is known.

    Raises:
        ValueError: When an array's length differs from ``years``'.
    """
    years = np.asarray(years, dtype=object)
    y = np.asarray(y)
    n = len(years)
    probs = {name: np.asarray(p, dtype=np.float64) for name, p in probs_by_model.items()}
    for name, arr in (("y", y), *probs.items()):
        if arr.shape != (n,):
            raise ValueError(f"year_slices: {name} has shape {arr.shape}, expected ({n},) like years")
    schema: dict[str, Any] = {"year": pl.Int64, "n": pl.Int64, "ai_share": pl.Float64}
    for name in probs:
        schema[f"{name}_accuracy"] = pl.Float64
        schema[f"{name}_f1"] = pl.Float64

    def known(v: object) -> bool:
        return v is not None and not (isinstance(v, float | np.floating) and math.isnan(v))

    known_mask = np.array([known(v) for v in years], dtype=bool)  # (N,)
    year_int = np.array([int(v) if k else -1 for v, k in zip(years, known_mask, strict=True)], dtype=np.int64)
    rows = []
    for year in sorted(set(year_int[known_mask].tolist())):
        m = known_mask & (year_int == year)
        row: dict[str, Any] = {"year": year, "n": int(m.sum()), "ai_share": float(y[m].mean())}
        for name, p in probs.items():
            pred = (p[m] >= threshold).astype(int)
            row[f"{name}_accuracy"] = float(accuracy_score(y[m], pred))
            row[f"{name}_f1"] = float(f1_score(y[m], pred, zero_division=0))
        rows.append(row)
    return pl.DataFrame(rows, schema=schema)


# ----------------------------------------------------------------------------- length bias
def length_bias(sentences: list[str], probs: np.ndarray, path: Path | None, title: str) -> dict[str, Any]:
    """Pearson correlation between sentence length (words) and P(AI) (models.md 3.6).

    A classifier that learned "long sentence = AI disclosure" would show a strong positive
    r; the FinAI-BERT card reports r ≈ 0.19 and calls it weak.

    Args:
        sentences: The sentences, ``N`` of them; length = whitespace-separated words.
        probs: P(AI) per sentence, ``(N,)``.
        path: Where to save the scatter plot (PNG: points, least-squares line, average
            P(AI) in 25 equal-width word-count bins); None = no plot.
        title: The plot's title.

    Returns:
        ``{"r", "p_value", "n"}``; r and p_value are NaN with fewer than 3 sentences or
        when either variable is constant (r undefined).

    Raises:
        ValueError: When ``probs`` does not have one value per sentence.
    """
    from scipy import stats  # lazy: scipy.stats is slow to import; only the length bias needs it

    words = _word_counts(sentences)  # (N,)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != words.shape:
        raise ValueError(f"length_bias: probs has shape {probs.shape}, expected ({len(sentences)},)")
    n = len(words)
    r = p_value = float("nan")
    # constant input makes r 0/0; checked here rather than silencing scipy's warning after the fact
    if n >= 3 and np.ptp(words) > 0 and np.ptp(probs) > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # near-constant input can still warn about precision
            res = stats.pearsonr(words, probs)
        r, p_value = float(res.statistic), float(res.pvalue)
    if path is not None:
        _plot_length_bias(words, probs, r, Path(path), title)
    return {"r": r, "p_value": p_value, "n": n}


def _plot_length_bias(words: np.ndarray, probs: np.ndarray, r: float, path: Path, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.scatter(words, probs, s=8, alpha=0.35, c="tab:grey", label="sentences")
    if len(words) >= 2 and np.ptp(words) > 0:
        slope, intercept = np.polyfit(words, probs, deg=1)
        xs = np.array([words.min(), words.max()])
        ax.plot(xs, slope * xs + intercept, c="tab:red", lw=1.5, label=f"linear fit (r = {r:.3f})")
        # 25 equal-width bins over word count, as the reference; empty bins are skipped
        edges = np.linspace(words.min(), words.max(), 26)  # (26,)
        idx = np.clip(np.digitize(words, edges[1:-1]), 0, 24)  # (N,) bin of each sentence
        centres = (edges[:-1] + edges[1:]) / 2  # (25,)
        filled = [b for b in range(25) if (idx == b).any()]
        means = [probs[idx == b].mean() for b in filled]
        ax.plot(centres[filled], means, "o-", c="tab:blue", ms=3, lw=1, label="25-bin average")
    ax.set_xlabel("words per sentence")
    ax.set_ylabel("P(AI)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(wrap_title(title, fig))
    ax.legend(loc="best", fontsize=8)
    save_png(fig, path)  # atomically, so a crash never leaves a half-written PNG for DVC to track


# ----------------------------------------------------------------------------- calibration
def plot_calibration(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str, n_bins: int = 10
) -> None:
    """Reliability diagram: observed AI share against mean P(AI), per model.

    Args:
        curves: Model name -> ``(y_true (N,), p_positive (N,))``.
        path: PNG to write.
        title: The plot's title.
        n_bins: Equal-width probability bins (``strategy="uniform"``); empty bins are
            left out by scikit-learn.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8, label="perfectly calibrated", zorder=1)
    for i, (name, (y, p)) in enumerate(curves.items()):
        y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
        frac_pos, mean_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
        # labels=[0, 1]: a slice with one class only is still scored, not rejected
        brier = brier_score_loss(y, p, labels=[0, 1])
        # a float model and its int8 copy often coincide: own line style and marker, later ones on top
        ax.plot(mean_pred, frac_pos, label=f"{name} (Brier {brier:.3f})", **curve_style(i, len(mean_pred)))
    # a little margin, so points on 0 and 1 are not cut in half by the frame
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("mean predicted P(AI)")
    ax.set_ylabel("fraction of AI sentences")
    ax.set_title(wrap_title(title, fig))
    ax.legend(loc="upper left", fontsize=8)
    save_png(fig, Path(path))


# ----------------------------------------------------------------------------- attributions
def token_attributions(
    model, tokenizer, sentences: list[str], target: int = 1, n_steps: int = 32, batch_size: int = 8
) -> list[dict[str, Any]]:
    """Integrated-gradients attribution of each word to P(target) (captum).

    ``captum.attr.LayerIntegratedGradients`` integrates the gradient along the straight
    line from a baseline to the input in the space of
    ``model.encoder.embeddings.word_embeddings``'s output. The baseline is the same
    sequence with every token but [CLS], [SEP] and padding replaced by the pad id ([UNK]
    too: it stands for a word), so only the words' identities are attributed, not
    position or sentence length.

    The attributed function is the softmax **probability** of class ``target`` (not the
    logit): by completeness the raw attributions of a sentence sum to
    ``p_target - p_baseline - delta``, in probability units a reader of P(AI) understands.
    The model runs in eval mode (no dropout) and its previous mode is restored.

    Sub-word pieces are summed into the words of the tokenizer's pre-tokenizer (split on
    whitespace and punctuation, so "A.I.-driven" is "A", ".", "I", ".", "-", "driven");
    each word's text is cut from the original sentence with the tokenizer's offsets, so it
    keeps its case and accents. Words cut off by truncation (``max_length``) are missing.

    Args:
        model: A :class:`models.text_encoder.TextEncoder` (``encoder``,
            ``forward(input_ids, attention_mask) -> (B, C)`` logits).
        tokenizer: Its tokenizer (the one its model folder carries).
        sentences: The sentences to explain.
        target: The class whose probability is explained (1 = AI).
        n_steps: Integration steps (Gauss-Legendre, captum's default method).
        batch_size: Sentences per captum call (each call runs ``n_steps * batch_size``
            sequences through the model).

    Returns:
        Per sentence: ``sentence``, ``tokens`` (the words), ``scores`` (per word, summed
        over the embedding dimension and divided by the largest ``|score|`` so the
        strongest word is ±1; all 0 when every raw score is 0), ``offsets`` (``(start,
        end)`` of each word in ``sentence``), ``target``, ``p_target`` (P(target | input)),
        ``p_baseline`` (P(target | baseline)), ``total`` (the raw attributions' sum) and
        ``delta`` (captum's convergence delta: ``total - (p_target - p_baseline)``).
    """
    from captum.attr import LayerIntegratedGradients  # lazy: slow import, attributions only

    tok = tokenizer
    # only the sequence's frame stays in the baseline; [UNK] is a word of the sentence (an emoji, a
    # rare symbol) and is attributed like any other
    frame_ids = torch.tensor([tok.cls_token_id, tok.sep_token_id, tok.pad_token_id])
    was_training = model.training
    model.eval()

    def p_target_of(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(input_ids, attention_mask), dim=-1)[:, target]  # (B,)

    lig = LayerIntegratedGradients(p_target_of, model.encoder.embeddings.word_embeddings)
    records: list[dict[str, Any]] = []
    try:
        for start in range(0, len(sentences), batch_size):
            chunk = list(sentences[start : start + batch_size])
            enc = tok(
                chunk,
                padding=True,
                truncation=True,
                max_length=model.config.max_length,
                return_offsets_mapping=True,
                return_tensors="pt",
            )
            device = model.classifier.weight.device
            ids = enc["input_ids"].to(device)  # (B, L)
            mask = enc["attention_mask"].to(device)  # (B, L)
            keep = torch.isin(ids, frame_ids.to(device))  # (B, L): [CLS], [SEP], [PAD] stay as they are
            baseline = torch.where(keep, ids, torch.full_like(ids, tok.pad_token_id))  # (B, L)
            attr, delta = lig.attribute(
                ids,
                baselines=baseline,
                additional_forward_args=(mask,),
                n_steps=n_steps,
                return_convergence_delta=True,
            )  # (B, L, H), (B,)
            with torch.no_grad():
                p_in = p_target_of(ids, mask)  # (B,)
                p_base = p_target_of(baseline, mask)  # (B,)
            raw = attr.sum(dim=-1).detach().cpu().double().numpy()  # (B, L)
            for b, sentence in enumerate(chunk):
                words, scores, offsets = _merge_words(
                    enc.word_ids(b), enc["offset_mapping"][b].tolist(), raw[b], sentence
                )
                peak = max((abs(s) for s in scores), default=0.0)
                records.append({
                    "sentence": sentence,
                    "tokens": words,
                    "scores": [s / peak if peak > 0 else 0.0 for s in scores],
                    "offsets": offsets,
                    "target": target,
                    "p_target": float(p_in[b]),
                    "p_baseline": float(p_base[b]),
                    "total": float(raw[b].sum()),
                    "delta": float(delta[b]),
                })  # fmt: skip
    finally:
        model.train(was_training)
    return records


def _merge_words(
    word_ids: list[int | None], offsets: list[list[int]], raw: np.ndarray, sentence: str
) -> tuple[list[str], list[float], list[tuple[int, int]]]:
    """Sum the pieces of each pre-tokenizer word; special and pad tokens (word id None) are dropped."""
    spans: dict[int, list[int]] = {}
    totals: dict[int, float] = {}
    for pos, wid in enumerate(word_ids):
        if wid is None:
            continue
        s, e = offsets[pos]
        if wid in spans:
            spans[wid][1] = max(spans[wid][1], e)
            totals[wid] += float(raw[pos])
        else:
            spans[wid] = [s, e]
            totals[wid] = float(raw[pos])
    order = sorted(spans)
    words = [sentence[spans[w][0] : spans[w][1]] for w in order]
    return words, [totals[w] for w in order], [(spans[w][0], spans[w][1]) for w in order]


def top_tokens(record: dict[str, Any], k: int = 3) -> list[str]:
    """The ``k`` words with the largest positive scores, strongest first.

    A word that occurs several times is listed once (its best score), so a markdown cell
    reads "AI, models, fraud" rather than "AI, AI, models". Fewer than ``k`` words come
    back when fewer have a positive score. Punctuation marks are skipped.
    """
    best: dict[str, tuple[float, str]] = {}
    for word, score in zip(record["tokens"], record["scores"], strict=True):
        key = word.lower()
        # punctuation is a "word" to the pre-tokenizer but says nothing in a table
        if not any(c.isalnum() for c in word):
            continue
        if score > 0 and (key not in best or score > best[key][0]):
            best[key] = (score, word)
    ranked = sorted(best.values(), key=lambda t: -t[0])  # stable: ties keep sentence order
    return [word for _, word in ranked[:k]]


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; line-height: 2.1; color: #111; }
h1 { font-size: 1.3em; }
.legend span, .line span.w { padding: 0.1em 0.15em; border-radius: 0.2em; }
.line { margin: 0.3em 0; }
.p { display: inline-block; min-width: 8.5em; font-family: monospace; color: #444; }
.rest { color: #888; }
"""


def _colour(score: float) -> str:
    # red towards the target class, blue against; opacity grows with |score| (0.85 at most, text stays legible)
    alpha = round(0.85 * min(1.0, abs(score)), 3)
    return f"rgba(220, 38, 38, {alpha})" if score >= 0 else f"rgba(37, 99, 235, {alpha})"


def render_attributions_html(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Write the attributions as one self-contained HTML page (inline CSS, no scripts, no assets).

    One line per sentence: its P(target), then each word in a ``<span>`` coloured red
    (pushes towards the target class) or blue (pushes away), opacity by ``|score|``, with
    the score in a ``title`` tooltip. Text is HTML-escaped. Written atomically
    (:func:`tasks.store.atomic_write_text`).

    Args:
        records: Output of :func:`token_attributions` (``offsets`` optional: without them
            words are joined by single spaces).
        path: The ``.html`` file to write.
        title: Page title and heading.
    """
    esc = html.escape
    lines = []
    for rec in records:
        target = rec.get("target", 1)
        label = "P(AI)" if target == 1 else f"P(class {target})"
        parts = [f'<span class="p">{label} = {rec["p_target"]:.3f}</span>']
        offsets = rec.get("offsets")
        sentence = rec["sentence"]
        prev_end = None
        for i, (word, score) in enumerate(zip(rec["tokens"], rec["scores"], strict=True)):
            # keep the sentence's own spacing: "A.I.-driven" stays one run, words keep their gap
            if offsets is not None:
                start, end = offsets[i]
                gap = prev_end is not None and start > prev_end
                prev_end = end
            else:
                gap = i > 0
            parts.append(
                (" " if gap else "") + f'<span class="w" style="background: {_colour(score)}" '
                f'title="{esc(f"{score:+.3f}")}">{esc(word)}</span>'
            )
        if offsets is not None and prev_end is not None and sentence[prev_end:].strip():
            # the tail dropped by truncation is shown greyed, unattributed
            parts.append(f' <span class="rest">{esc(sentence[prev_end:].strip())}</span>')
        lines.append(f'<div class="line">{"".join(parts)}</div>')
    cls = "AI" if all(rec.get("target", 1) == 1 for rec in records) else "the explained class"
    legend = (
        f'<p class="legend">Integrated gradients over the word embeddings. '
        f'<span style="background: {_colour(1.0)}">towards {cls}</span> '
        f'<span style="background: {_colour(-1.0)}">away from {cls}</span>; '
        "colour strength = |attribution| relative to the sentence's strongest word "
        "(hover a word for its score).</p>"
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n{legend}\n" + "\n".join(lines) + "\n</body>\n</html>\n"
    )
    store.atomic_write_bytes(Path(path), page.encode("utf-8"))
