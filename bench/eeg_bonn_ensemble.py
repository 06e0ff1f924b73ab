"""Seizure detection on the Bonn set: the protocol's test predictions read per window, per seed
ensemble and per segment.

The ``bonn`` profile cuts each 23.6 s segment into five 4 s windows and scores every window on
its own (the table in docs/eeg.md). A clinician's unit is the segment, and the protocol already
trains several seeds; this reads the train stage's ``protocol.parquet`` (every test window of
every fold, seed and model) with the preprocess stage's ``meta.parquet`` (which segment a window
came from) and reports, per model, balanced accuracy / accuracy / ROC-AUC:

* ``window``: one seed's window predictions (mean ± std over seeds: docs/eeg.md's table);
* ``window, seed ensemble``: the probabilities averaged over seeds, per window;
* ``segment``: the windows' probabilities averaged over the segment (mean ± std over seeds);
* ``segment, seed ensemble``: both averages.

Nothing is refitted: the folds are the protocol's (grouped, so a segment's windows are all in
one test fold). Run after the bonn profile's train stage::

    python -m tasks ingest eeg --profile bonn && python -m tasks preprocess eeg --profile bonn
    python -m tasks train eeg --profile bonn --set 'train.eeg.protocol.models=[dbconformer]'
    python bench/eeg_bonn_ensemble.py            # reads data/ and artifacts/ of this project

Prints one table and writes ``bench/results/eeg_bonn_ensemble.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench._common import machine, table, write_json  # noqa: E402


def _metrics(y: np.ndarray, p1: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    pred = (p1 >= 0.5).astype(int)
    return {"balanced_accuracy": float(balanced_accuracy_score(y, pred)), "accuracy": float((pred == y).mean()),
            "roc_auc": float(roc_auc_score(y, p1)) if len(np.unique(y)) == 2 else float("nan"), "n": int(len(y))}


def views(pred, groups: np.ndarray) -> dict[str, dict[str, dict[str, float]]]:
    """Per model, the four readings of the module docstring (mean and std over seeds where one seed is read).

    Args:
        pred: ``protocol.parquet`` (model, seed, index, y, p1).
        groups: (N,) the segment of every window, indexed by ``pred["index"]``.
    """
    import polars as pl

    pred = pred.with_columns(pl.Series("group", groups[pred["index"].to_numpy()]))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for model in sorted(pred["model"].unique().to_list()):
        m = pred.filter(pl.col("model") == model)
        seeds = sorted(m["seed"].unique().to_list())
        per_seed_w = [_metrics(s["y"].to_numpy(), s["p1"].to_numpy())
                      for s in (m.filter(pl.col("seed") == k).sort("index") for k in seeds)]
        seg = [m.filter(pl.col("seed") == k).group_by("group").agg(pl.col("y").first(), pl.col("p1").mean())
               for k in seeds]
        per_seed_s = [_metrics(s["y"].to_numpy(), s["p1"].to_numpy()) for s in seg]
        ens_w = m.group_by("index").agg(pl.col("y").first(), pl.col("p1").mean(), pl.col("group").first())
        ens_s = ens_w.group_by("group").agg(pl.col("y").first(), pl.col("p1").mean())

        def agg(rows: list[dict[str, float]]) -> dict[str, float]:
            return {**{k: float(np.mean([r[k] for r in rows])) for k in ("balanced_accuracy", "accuracy", "roc_auc")},
                    "std_seeds": float(np.std([r["balanced_accuracy"] for r in rows])), "n": rows[0]["n"],
                    "seeds": len(rows)}

        out[model] = {"window": agg(per_seed_w),
                      "window, seed ensemble": _metrics(ens_w["y"].to_numpy(), ens_w["p1"].to_numpy()),
                      "segment": agg(per_seed_s),
                      "segment, seed ensemble": _metrics(ens_s["y"].to_numpy(), ens_s["p1"].to_numpy())}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=".", help="project root holding data/processed/eeg and artifacts/eeg")
    args = ap.parse_args(argv)
    import polars as pl

    root = Path(args.root)
    meta_path = root / "data" / "processed" / "eeg" / "meta.parquet"
    pred_path = root / "artifacts" / "eeg" / "baselines" / "protocol.parquet"
    for p in (meta_path, pred_path):
        if not p.exists():
            print(f"error: {p} does not exist: run the bonn profile's ingest, preprocess and train first",
                  file=sys.stderr)
            return 2
    meta = pl.read_parquet(meta_path)
    pred = pl.read_parquet(pred_path)
    if "p1" not in pred.columns:
        print(f"error: {pred_path} is not a binary task (no p1 column)", file=sys.stderr)
        return 2
    res = views(pred, meta["group"].to_numpy())
    rows = []
    for model, v in res.items():
        for view, m in v.items():
            std = f" ± {m['std_seeds']:.3f}" if "std_seeds" in m else ""
            rows.append([model, view, m["n"], f"{m['balanced_accuracy']:.4f}{std}", f"{m['accuracy']:.4f}",
                         f"{m['roc_auc']:.4f}"])
    print(table(["model", "reading", "n", "balanced accuracy", "accuracy", "ROC-AUC"], rows))
    print(f"wrote {write_json('eeg_bonn_ensemble', {'machine': machine(), 'root': str(root.resolve()), 'results': res})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
