"""The decision threshold of a ``netflow`` model, chosen on the validation split and stored in its folder.

The reference trains on class-balanced batches (each class an equal share), so a model's P(attack) is calibrated
for a world where benign flows are half of all flows (1/K of them for K classes). On a capture where they are
0.4 % (NF-BoT-IoT-v2), 0.5 is the wrong operating point. :func:`calibrate` applies the rule of
``train.netflow.threshold`` (recorded in the folder's ``config.json`` as ``threshold_rule`` when the model is
written) to the model's scores on the validation split (never test), and writes the result into the same
``config.json``: ``threshold`` (what evaluate, the registered pyfunc and ``python -m tasks score`` apply to
P(attack), or for a multi-class model to its most probable family against Benign,
:func:`tasks.loop.positive_scores`) and ``threshold_choice`` (the rule, the split, its size, the objective there, and which
model it was chosen for).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tasks import store
from tasks.domains.netflow import data
from tasks.loop import choose_threshold, predict, probabilities

RULE_NAMES = {"f1_benign": "f1_negative"}
"""The netflow words for the generic rules of :func:`tasks.loop.choose_threshold`."""


def meta_threshold(meta: dict[str, Any]) -> float | None:
    """The validation-chosen threshold a model folder's ``config.json`` holds; None for a folder written before
    thresholds were chosen (its ``threshold`` is the evaluate section's fixed value)."""
    return float(meta["threshold"]) if meta.get("threshold_choice") else None


def calibrate(folder: Path, model: torch.nn.Module, root: Path | None = None) -> dict[str, Any] | None:
    """Choose the threshold of the model in ``folder`` on the validation split and record it in its config.json.

    Args:
        folder: A model folder whose ``config.json`` holds ``threshold_rule`` (the teacher's, or a compressed
            variant's, which copies the teacher's record).
        model: The folder's model, loaded (a compressed variant as the compress stage made it).
        root: The project root (default: the current one).

    Returns:
        The ``threshold_choice`` recorded, or None when the folder names no rule (nothing is changed).
    """
    meta = store.read_json(folder / "config.json")
    rule = meta.get("threshold_rule")
    if rule is None:
        return None
    task = meta.get("task", "binary")
    paths = store.domain_paths(data.NAME, root)
    chosen_for = meta.get("compression", "teacher")
    if not (paths.processed / "val.safetensors").exists():  # val_fraction 0: nothing to choose on
        fixed = rule if isinstance(rule, float) else 0.5
        choice = {"rule": rule, "split": None, "n": 0, "objective": None, "chosen_for": chosen_for,
                  "note": f"no validation split: the fixed threshold {fixed}"}
        threshold = float(fixed)
    else:
        val = data.load_split("val", task, root)
        with torch.inference_mode():
            probs = probabilities(predict(model.eval(), val, 2048), task)
        prior = None
        if rule == "prior":
            train_classes = data.load_split("train", task, root).classes
            prior = float((train_classes == 0).mean())
        picked = choose_threshold(val.labels, probs, task, RULE_NAMES.get(rule, rule) if isinstance(rule, str)
                                  else rule, train_negative_fraction=prior)
        threshold = picked["threshold"]
        choice = {"rule": rule, "split": "val", "n": picked["n"], "objective": picked["objective"],
                  "chosen_for": chosen_for, **({"train_benign_fraction": prior} if prior is not None else {})}
    store.atomic_write_json(folder / "config.json", {**meta, "threshold": threshold, "threshold_choice": choice})
    return choice

