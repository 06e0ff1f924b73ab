"""The processed splits of the ``finance`` domain as the training loop reads them: tokenized sentences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch
from safetensors.numpy import load_file

from tasks import store

NAME = "finance"
CLASSES = ["non-AI", "AI"]


class Sentences:
    """Tokenized sentences as the training loop wants them: ``labels`` and ``batch(idx) -> ((ids, mask), y)``.

    Batches are cut to their longest sentence: the paper pads every sentence to 128
    tokens; with BERT's attention mask the logits are the same, and short batches are
    several times faster on a CPU.

    Attributes:
        labels: (N,) int64, 1 = AI disclosure.
        text: (N,) the cleaned sentences (object array), for the TF-IDF baselines.
        years: (N,) int year or None per sentence.
    """

    def __init__(self, input_ids: np.ndarray, attention_mask: np.ndarray, y: np.ndarray,
                 sentences: list[str], years: list[int | None] | None = None) -> None:

        self.ids = torch.as_tensor(np.asarray(input_ids, dtype=np.int64))  # (N, L)
        self.mask = torch.as_tensor(np.asarray(attention_mask, dtype=np.int64))  # (N, L)
        self.labels = np.asarray(y, dtype=np.int64)
        self.text = np.asarray(sentences, dtype=object)
        self.years = list(years) if years is not None else [None] * len(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: np.ndarray):

        t = torch.as_tensor(idx, dtype=torch.int64)
        mask = self.mask[t]  # (B, L)
        width = max(int(mask.sum(1).max()), 1) if len(t) else 1
        # contiguous: the int8 embedding kernel (quantized embedding_byte) refuses strided indices
        return (self.ids[t][:, :width].contiguous(), mask[:, :width].contiguous()), torch.as_tensor(self.labels[idx])


def load_schema(root: Path | None = None) -> dict:
    return store.read_json(store.domain_paths(NAME, root).processed / "schema.json")


def load_split(name: str, task: str = "multiclass", root: Path | None = None) -> Sentences:
    """One tokenized split (``train``, ``val`` or ``test``) with its text and years."""

    folder = store.domain_paths(NAME, root).processed
    path = folder / f"{name}.safetensors"
    if not path.exists():
        note = store.read_json(folder / "schema.json").get("note") if (folder / "schema.json").exists() else None
        raise FileNotFoundError(f"{path} does not exist: " + (note or "run preprocess first "
                                                                "(python -m tasks preprocess finance)"))
    t = load_file(str(path))
    meta = pl.read_parquet(folder / f"{name}.parquet")
    years = meta["year"].to_list() if "year" in meta.columns else None
    return Sentences(t["input_ids"], t["attention_mask"], t["y"], meta["sentence"].to_list(), years)
