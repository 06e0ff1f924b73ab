"""Post-training int8 dynamic quantization of every ``nn.Linear`` with torch.ao's eager API (method ``int8_eager``).

Weights are stored as int8 with a per-tensor scale; activations are quantized
on the fly at inference. The quantized weights are saved in safetensors as
plain tensors (``<layer>.weight.int8``, ``.scale``, ``.zero_point``, ``.bias``)
next to the remaining float tensors, so nothing is pickled; :func:`load`
rebuilds the float architecture, quantizes it, and sets those weights.

torch 2.13 marks ``torch.ao.quantization`` eager mode as deprecated in favour
of torchao (:mod:`tasks.compress.quantize`, method ``int8``). It is kept behind
its own method name while it exists because, measured here, it is the int8 path
that pays without ``torch.compile``: its fused dynamic-int8 Linear kernels beat
fp32 on the text encoder, where torchao's eager int8 is slower than fp32
(docs/compression.md). The deprecation warnings are silenced here.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.ao.nn.quantized import Embedding as QEmbedding
from torch.ao.nn.quantized.dynamic import Linear
from torch.ao.quantization import default_dynamic_qconfig, float_qparams_weight_only_qconfig, quantize_dynamic
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

VOCAB_ROWS = 1000
"""Embedding tables with at least this many rows are quantized (vocabularies), smaller ones stay float."""
NAME = "int8_eager"
DESCRIPTION = "int8 dynamic quantization of Linear layers (torch.ao.quantization.quantize_dynamic, eager)"


def _quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    return ctx


def apply(model, context=None):
    """Return an int8 dynamically quantized copy of ``model`` (CPU); ``model`` is left unchanged."""
    ctx = _quiet()
    try:
        float_copy = _plain_linears(copy.deepcopy(model).cpu().eval())
        # Vocabulary tables: int8 weights with a float scale / offset per row (torch.ao's weight-only
        # embedding); the text encoder's 11.9 M-parameter word table is half its size. Small tables
        # (positions, token types, categorical codes) stay float: they are tiny, and Hugging Face looks
        # them up with strided index tensors, which the int8 lookup kernel refuses.
        spec: dict = {torch.nn.Linear: default_dynamic_qconfig}
        spec.update({name: float_qparams_weight_only_qconfig for name, m in float_copy.named_modules()
                     if isinstance(m, torch.nn.Embedding) and m.num_embeddings >= VOCAB_ROWS})
        return quantize_dynamic(float_copy, qconfig_spec=spec, dtype=torch.qint8)
    finally:
        ctx.__exit__(None, None, None)


def _plain_linears(model):
    """Replace ``nn.Linear`` subclasses by plain ``nn.Linear`` with the same weights, in place.

    quantize_dynamic matches module types exactly, so a subclass (EEGNet's max-norm classifier)
    would stay float. At inference such a layer is a plain linear (the constraint acts on training
    updates; its forward only re-applies a norm the trained weights already satisfy).
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            # nn.MultiheadAttention reads its out_proj's weight directly: that one must stay float.
            if (isinstance(child, torch.nn.Linear) and type(child) is not torch.nn.Linear
                    and not isinstance(child, NonDynamicallyQuantizableLinear)):
                plain = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                plain.load_state_dict(child.state_dict())
                setattr(parent, name, plain)
    return model


def _qlinear_type():
    return Linear


def state_tensors(qmodel) -> dict:
    """Plain tensors that fully describe a dynamically quantized model."""
    out = {}
    qlinear = _qlinear_type()
    qnames = set()
    for name, mod in qmodel.named_modules():
        if isinstance(mod, qlinear):
            w, b = mod._packed_params._weight_bias()
            out[f"{name}.weight.int8"] = w.int_repr().contiguous()
            out[f"{name}.weight.scale"] = torch.tensor([w.q_scale()], dtype=torch.float64)
            out[f"{name}.weight.zero_point"] = torch.tensor([w.q_zero_point()])
            if b is not None:
                out[f"{name}.bias"] = b.detach().contiguous()
            qnames.add(name)
        elif isinstance(mod, QEmbedding):
            w = mod.weight()  # per-row quantized (quint8, float scales and offsets)
            out[f"{name}.weight.int8"] = w.int_repr().contiguous()
            out[f"{name}.weight.scales"] = w.q_per_channel_scales().contiguous()
            out[f"{name}.weight.zero_points"] = w.q_per_channel_zero_points().contiguous()
            qnames.add(name)
    for key, value in qmodel.state_dict().items():
        owner = key.rsplit(".", 1)[0]
        if "_packed_params" in key or owner in qnames:
            continue
        if hasattr(value, "is_quantized") and not value.is_quantized:
            out[key] = value.detach().contiguous()
    return out


def save(qmodel, folder: Path, meta: dict | None = None) -> Path:
    path = folder / "model.safetensors"
    save_file(state_tensors(qmodel), str(path))
    return path


def load(float_model, folder: Path, meta: dict | None = None):
    """Quantize ``float_model`` (freshly built from the config) and load the saved int8 weights into it."""
    tensors = load_file(str(folder / "model.safetensors"))
    qmodel = apply(float_model)
    qlinear = _qlinear_type()
    ctx = _quiet()
    try:
        for name, mod in qmodel.named_modules():
            if isinstance(mod, qlinear):
                q = torch._make_per_tensor_quantized_tensor(
                    tensors.pop(f"{name}.weight.int8"),
                    float(tensors.pop(f"{name}.weight.scale")),
                    int(tensors.pop(f"{name}.weight.zero_point")),
                )
                mod.set_weight_bias(q, tensors.pop(f"{name}.bias", None))
            elif isinstance(mod, QEmbedding):
                q = torch._make_per_channel_quantized_tensor(
                    tensors.pop(f"{name}.weight.int8"), tensors.pop(f"{name}.weight.scales"),
                    tensors.pop(f"{name}.weight.zero_points"), 0)
                mod.set_weight(q)
        # The remaining float tensors (LayerNorms, embeddings, biases of non-Linear layers) are copied
        # one by one: load_state_dict on the whole model would ask every quantized Linear for keys
        # (scale, zero_point) of the packed format that this file deliberately does not use.
        targets = dict(qmodel.named_parameters()) | dict(qmodel.named_buffers())
        unexpected = sorted(set(tensors) - set(targets))
        if unexpected:
            raise ValueError(f"{folder}: unexpected tensors in the int8 model file: {unexpected[:5]}")
        with torch.no_grad():
            for key, value in tensors.items():
                targets[key].copy_(value)
    finally:
        ctx.__exit__(None, None, None)
    return qmodel.eval()


def step(model, record: dict, context=None):
    """The chain's last step: record the float parameter count (a packed int8 module hides it), quantize."""
    record["_parameters"] = sum(p.numel() for p in model.parameters())
    record["quant"] = NAME
    return apply(model, context)
