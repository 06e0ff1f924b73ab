"""int8 on the maintained path: torchao's ``quantize_`` (method ``int8``).

Linear layers get int8 dynamic activations and int8 weights
(``Int8DynamicActivationInt8WeightConfig``); embedding tables get int8 weights with one
scale per row (``IntxWeightOnlyConfig(int8, PerAxis(0))``), the text encoder's 11.9 M-parameter
word table among them. The quantized weights are torchao tensor subclasses, which
``safetensors`` cannot save as they are: torchao's ``flatten_tensor_state_dict`` turns them
into plain tensors plus JSON metadata, saved together in one safetensors file, and
``unflatten_tensor_state_dict`` restores them exactly (the API is a torchao prototype: the
version is pinned). :func:`load` quantizes a freshly built float model the same way and
assigns the saved tensors (``load_state_dict(assign=True)``).

Measured on the 2-core VM (docs/compression.md): without ``torch.compile`` torchao's int8
runs *slower* than fp32 on every model here (its int8 matmul is not fused in eager mode); with
it, the text encoder runs at 2.7 ms instead of 10.1 ms, but compiling costs about 33 s for the
first batch-1 call and 41 s more for the first batched one (dynamic shapes), in every process
that loads the model. So ``compress.<domain>.compile`` (default off) decides whether a loaded
``int8`` model is compiled; the chooser picks whatever measures best.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

# torchao's deprecation notes at import (its "failed to load" log lines: tasks/__init__.py).
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torchao.prototype.safetensors.safetensors_support import (
        flatten_tensor_state_dict,
        unflatten_tensor_state_dict,
    )
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerAxis

_PREFIX = "model."
VOCAB_ROWS = 1000
"""Embedding tables with at least this many rows are quantized (vocabularies), smaller ones stay float."""
NAME = "int8"
DESCRIPTION = "int8 dynamic activations + int8 weights (torchao quantize_), int8 weight-only embeddings"


def _is_linear(module: nn.Module, fqn: str) -> bool:
    return isinstance(module, nn.Linear)


def _is_embedding(module: nn.Module, fqn: str) -> bool:
    # Vocabulary tables only: positions, token types and categorical codes are tiny (and looked up with
    # strided indices by Hugging Face).
    return isinstance(module, nn.Embedding) and module.num_embeddings >= VOCAB_ROWS


def quantize_in_place(model: nn.Module) -> nn.Module:
    """torchao int8 on ``model`` itself: Linear layers (dynamic int8), embedding tables (int8 weights per row)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=_is_linear)
        if any(_is_embedding(m, "") for m in model.modules()):
            quantize_(model, IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0)),
                      filter_fn=_is_embedding)
    return model


def apply(model: nn.Module, context=None) -> nn.Module:
    """An int8 copy of ``model`` (CPU, eval); ``model`` is left unchanged."""
    return quantize_in_place(copy.deepcopy(model).cpu().eval())


def save(qmodel: nn.Module, folder: Path, meta: dict | None = None) -> Path:
    """Write the quantized weights as plain tensors + torchao's JSON metadata into ``model.safetensors``."""
    # torchao's unflatten splits every name at its last dot: a top-level parameter (DBConformer's ``pos_t``)
    # has none, so every name gets a prefix here and loses it in :func:`load`.
    tensors, metadata = flatten_tensor_state_dict({f"{_PREFIX}{k}": v for k, v in qmodel.state_dict().items()})
    path = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def load(float_model: nn.Module, folder: Path, meta: dict | None = None) -> nn.Module:
    """Quantize ``float_model`` (freshly built, pruned as recorded) and assign the saved int8 weights."""
    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    state, leftover = unflatten_tensor_state_dict(tensors, metadata)
    if leftover:
        raise ValueError(f"{path}: tensors that belong to no quantized weight: {sorted(leftover)[:5]}")
    state = {k.removeprefix(_PREFIX): v for k, v in state.items()}
    qmodel = quantize_in_place(float_model.cpu().eval())
    qmodel.load_state_dict(state, assign=True)
    if meta and meta.get("compile"):
        qmodel = torch.compile(qmodel, dynamic=True)
    return qmodel.eval()


def step(model, record: dict, context=None):
    """The chain's last step: record the float parameter count (a packed int8 module hides it), quantize."""
    record["_parameters"] = sum(p.numel() for p in model.parameters())
    record["quant"] = NAME
    return apply(model, context)
