"""Inference throughput (sentences/s) of the finance models on CPU: encoder, int8 encoder, baselines.

The finance domain classifies annual-report sentences as AI disclosure or not. This times,
on the CPU, at each ``--batches`` size (1 and 64 by default):

* ``finance/text_encoder``: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) + pooler + a
  2-class head, built as the finance domain builds it: ``models.build("finance/text_encoder", {})``
  (the architecture, from the config alone) with the pre-trained encoder weights handed over
  (``load_encoder_state(tasks.domains.finance.encoder.pretrained_state(None))``). Throughput does
  not depend on the fine-tuned weights, so the pretrained encoder with its fresh (untrained)
  head is timed; no training run is needed. Sentences are tokenized with the encoder's
  tokenizer (``tasks.domains.finance.encoder.load_tokenizer(None)``), as preprocess and scoring do.
* ``... int8``: the same model after the compress stage's int8 dynamic quantization
  (``tasks.compress.quantize.apply``: every ``nn.Linear`` int8, activations quantized on
  the fly).
* the four baselines of ``tasks.domains.finance.baselines`` (``tfidf_logreg``, ``tfidf_nb``,
  ``tfidf_rf``, ``keyword``), fitted on the labelled sentences, through ``predict_proba``.

Inputs are realistic sentences: the synthetic annual reports of
``tasks.domains.finance.synthetic.generate(tmp, n_institutions=2, seed=0)`` (its ``labels.csv``),
cycled so that each timed batch holds different sentences. Two timings per row:

* **end-to-end**: raw strings in, class scores out. For the encoders this includes the
  WordPiece tokenization and padding to the longest sentence of the batch (what a service
  pays); for the TF-IDF baselines it includes the vectorizer; ``keyword`` is the regex rule.
* **model-only**: the same batches tokenized (or TF-IDF-vectorized) once, outside the
  timer; only the network (or the scikit-learn head) is timed. Not applicable to ``keyword``.

Each figure is the median over ``--repeats`` batches (default 30 at batch 1, 10 otherwise),
after ``--warmup`` untimed batches, under ``torch.inference_mode()``. The timings compared
with each other (float and int8, end-to-end and model-only) take turns batch by batch, so
load from other processes hits them alike. Size is the
safetensors file the pipeline would write (``tasks.loop.save_model`` for the float model,
``quantize.save`` for int8), computed in memory.

Run it: ``python bench/finance_infer.py`` (``--batches 1 64 --warmup 3 --threads 0`` by
default; 0 = torch's default thread count). Prints one table and the int8/float speed-ups,
and writes ``bench/results/finance_infer.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from _common import bench_tmp, machine, table, write_json  # noqa: E402

ENCODER = "finance/text_encoder"
BASELINE_NAMES = ["tfidf_logreg", "tfidf_nb", "tfidf_rf", "keyword"]


def load_sentences(seed: int) -> tuple[list[str], list[int]]:
    """Sentences and labels of the synthetic corpus (2 institutions x 2019-2023)."""
    import polars as pl

    from tasks.domains.finance import synthetic

    with tempfile.TemporaryDirectory(prefix="bench-finance-", dir=bench_tmp()) as tmp:
        manifest = synthetic.generate(tmp, n_institutions=2, seed=seed)
        df = pl.read_csv(manifest["labels"])
    return df["sentence"].to_list(), df["label"].to_list()


def batches_of(sentences: list[str], batch: int, n: int) -> list[list[str]]:
    """``n`` batches of ``batch`` consecutive sentences, cycling through the corpus."""
    total = len(sentences)
    return [[sentences[(k * batch + i) % total] for i in range(batch)] for k in range(n)]


def interleaved_medians(fns: dict[str, Callable[[object], object]], inputs: dict[str, list], warmup: int
                        ) -> dict[str, float]:
    """Median seconds of each ``fns[k](x)`` over ``inputs[k][warmup:]``, after ``warmup`` untimed calls.

    The functions take turns on each repeat (in a rotating order), so a burst of load from
    another process hits all of them alike and their ratios stay meaningful.
    """
    keys = list(fns)
    for i in range(warmup):
        for k in keys:
            fns[k](inputs[k][i])
    times: dict[str, list[float]] = {k: [] for k in keys}
    for i in range(warmup, len(next(iter(inputs.values())))):
        shift = i % len(keys)
        for k in keys[shift:] + keys[:shift]:
            t0 = time.perf_counter()
            fns[k](inputs[k][i])
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def busy_cpus(interval: float = 0.5) -> float:
    """CPUs kept busy by other processes over ``interval`` seconds (/proc/stat; the load average elsewhere)."""
    def sample() -> list[int]:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]

    try:
        a = sample()
        time.sleep(interval)
        b = sample()
    except OSError:
        return os.getloadavg()[0]
    delta = [y - x for x, y in zip(a, b, strict=True)]
    idle = delta[3] + (delta[4] if len(delta) > 4 else 0)  # idle + iowait
    return (1 - idle / max(sum(delta), 1)) * (os.cpu_count() or 1)


def safetensors_mb(state: dict) -> float:
    from safetensors.torch import save

    return len(save(state)) / 1e6


def measure_encoders(named: dict, tokenize: Callable, sentences: list[str], batch: int, repeats: int,
                     warmup: int) -> list[dict]:
    """End-to-end (tokenize + forward) and model-only (forward) timings of each model, interleaved."""
    import torch

    texts = batches_of(sentences, batch, warmup + repeats)
    tokenized = [tokenize(b) for b in texts]
    fns: dict[str, Callable] = {}
    inputs: dict[str, list] = {}
    for name, model in named.items():
        fns[f"{name}|e2e"] = lambda b, m=model: m(*tokenize(b))
        fns[f"{name}|only"] = lambda t, m=model: m(*t)
        inputs[f"{name}|e2e"], inputs[f"{name}|only"] = texts, tokenized
    with torch.inference_mode():
        med = interleaved_medians(fns, inputs, warmup)
    padded = statistics.mean(t[0].shape[1] for t in tokenized[warmup:])
    return [{"model": name, "batch": batch, "repeats": repeats, "e2e_s": med[f"{name}|e2e"],
             "model_only_s": med[f"{name}|only"], "e2e_sent_per_s": batch / med[f"{name}|e2e"],
             "model_only_sent_per_s": batch / med[f"{name}|only"],
             "ms_per_sentence": med[f"{name}|e2e"] / batch * 1e3, "mean_padded_length": padded}
            for name in named]


def measure_baseline(name: str, est, sentences: list[str], batch: int, repeats: int, warmup: int) -> dict:
    """``predict_proba`` on raw sentences; for a Pipeline also its last step on pre-computed TF-IDF features."""
    import numpy as np

    texts = [np.asarray(b, dtype=object) for b in batches_of(sentences, batch, warmup + repeats)]
    fns: dict[str, Callable] = {"e2e": est.predict_proba}
    inputs: dict[str, list] = {"e2e": texts}
    if hasattr(est, "steps"):  # a scikit-learn Pipeline: TF-IDF outside the timer, the head inside
        fns["only"], inputs["only"] = est[-1].predict_proba, [est[:-1].transform(x) for x in texts]
    med = interleaved_medians(fns, inputs, warmup)
    only = med.get("only")
    return {"model": name, "batch": batch, "repeats": repeats, "e2e_s": med["e2e"], "model_only_s": only,
            "e2e_sent_per_s": batch / med["e2e"], "model_only_sent_per_s": batch / only if only else None,
            "ms_per_sentence": med["e2e"] / batch * 1e3}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed batches per row (default: 30 at batch 1, 10 otherwise)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = default)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus and the baselines")
    ap.add_argument("--no-baselines", action="store_true")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    import numpy as np
    import torch

    import models
    from tasks.compress import quantize
    from tasks.domains.finance.baselines import fit_baselines
    from tasks.domains.finance.encoder import load_tokenizer, pretrained_state

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    busy = busy_cpus()
    if torch.get_num_threads() > 1 and busy > 0.5:
        print(f"[finance_infer] warning: {busy:.1f} CPUs busy before the run, {torch.get_num_threads()} torch threads; "
              "a busy core makes torch's OpenMP team spin-wait (5-25x slower forwards measured on a 2-core VM): "
              "use --threads 1 or OMP_WAIT_POLICY=PASSIVE", file=sys.stderr, flush=True)

    def repeats(batch: int) -> int:
        return args.repeats or (30 if batch == 1 else 10)

    print("[finance_infer] synthetic corpus ...", file=sys.stderr, flush=True)
    sentences, labels = load_sentences(args.seed)

    print("[finance_infer] encoder + int8 ...", file=sys.stderr, flush=True)
    float_model = models.build(ENCODER, {})
    float_model.load_encoder_state(pretrained_state(None))
    float_model.eval()
    tokenizer = load_tokenizer(None)
    max_length = float_model.config.max_length

    def tokenize(batch: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """WordPiece ids and mask ``(B, L)``, padded to the longest sentence, truncated to ``max_length``
        (as ``tasks.domains.finance.preprocess.tokenize``, as tensors)."""
        enc = tokenizer(list(batch), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    int8_model = quantize.apply(float_model, None)  # context is not used by int8 quantization
    n_params = sum(p.numel() for p in float_model.parameters())
    float_state = {k: v.detach().contiguous() for k, v in float_model.state_dict().items()}
    sizes = {ENCODER: safetensors_mb(float_state),
             f"{ENCODER} int8": safetensors_mb(quantize.state_tensors(int8_model))}
    lengths = tokenizer(sentences, truncation=True, max_length=max_length, return_length=True)["length"]
    with torch.inference_mode():  # how far int8 moves the scores (fresh head: agreement, not accuracy)
        check = tokenize(sentences[:256])
        lf, lq = float_model(*check), int8_model(*check)
    agreement = float((lf.argmax(1) == lq.argmax(1)).float().mean())
    max_abs_diff = float((lf - lq).abs().max())

    rows = []
    for batch in args.batches:
        print(f"[finance_infer] encoder float + int8, batch {batch} ...", file=sys.stderr, flush=True)
        # One tokenizer for both: the encoder's, which the int8 copy shares.
        named = {ENCODER: float_model, f"{ENCODER} int8": int8_model}
        rows += [r | {"size_mb": sizes[r["model"]]}
                 for r in measure_encoders(named, tokenize, sentences, batch, repeats(batch), args.warmup)]

    fit_s = None
    if not args.no_baselines:
        print("[finance_infer] baselines ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        fitted = fit_baselines(BASELINE_NAMES, sentences, np.asarray(labels), seed=args.seed)
        fit_s = time.perf_counter() - t0
        for batch in args.batches:
            for name, est in fitted.items():
                rows.append(measure_baseline(name, est, sentences, batch, repeats(batch), args.warmup)
                            | {"size_mb": None})

    order = [ENCODER, f"{ENCODER} int8", *BASELINE_NAMES]
    rows.sort(key=lambda r: (order.index(r["model"]), r["batch"]))
    headers = ["model", "batch", "end-to-end sent/s", "model-only sent/s", "ms/sentence", "size MB"]
    body = [[r["model"], r["batch"], r["e2e_sent_per_s"], r["model_only_sent_per_s"], r["ms_per_sentence"],
             r["size_mb"]] for r in rows]
    title = (f"## Finance models, CPU, {torch.get_num_threads()} threads; {len(sentences)} synthetic "
             f"sentences, mean {statistics.mean(lengths):.1f} tokens (max {max(lengths)})")
    print(f"\n{title}\n\n{table(headers, body)}\n")

    by = {(r["model"], r["batch"]): r for r in rows}
    print("encoder input, mean padded length (tokens/sentence): "
          + ", ".join(f"batch {b} {by[(ENCODER, b)]['mean_padded_length']:.1f}" for b in args.batches))
    speedups = []
    for batch in args.batches:
        f, q = by[(ENCODER, batch)], by[(f"{ENCODER} int8", batch)]
        speedups.append({"batch": batch, "end_to_end": f["e2e_s"] / q["e2e_s"],
                         "model_only": f["model_only_s"] / q["model_only_s"]})
        print(f"int8 / float speed-up at batch {batch}: end-to-end {speedups[-1]['end_to_end']:.2f}x, "
              f"model-only {speedups[-1]['model_only']:.2f}x")
    print(f"int8 size: {sizes[f'{ENCODER} int8']:.1f} MB vs {sizes[ENCODER]:.1f} MB float "
          f"({sizes[ENCODER] / sizes[f'{ENCODER} int8']:.2f}x smaller); "
          f"argmax agreement with float on 256 sentences {agreement:.3f}, max |logit diff| {max_abs_diff:.4f}")
    total_s = time.perf_counter() - t_start
    path = write_json("finance_infer", {
        "machine": machine(), "args": vars(args), "device": "cpu", "threads": torch.get_num_threads(),
        "corpus": {"n_sentences": len(sentences), "n_ai": int(sum(labels)),
                   "mean_tokens": statistics.mean(lengths), "max_tokens": max(lengths)},
        "encoder": {"parameters": n_params, "size_mb": sizes, "int8_argmax_agreement": agreement,
                    "int8_max_abs_logit_diff": max_abs_diff},
        "baselines_fit_s": fit_s, "rows": rows, "int8_speedup": speedups, "total_s": total_s,
    })
    print(f"[finance_infer] {total_s:.0f} s; wrote "
          f"{path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
