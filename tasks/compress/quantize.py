"""Post-training int8 dynamic quantization of every ``nn.Linear`` (torch.ao).

Weights are stored as int8 with a per-tensor scale; activations are quantized
on the fly at inference. The quantized weights are saved in safetensors as
plain tensors (``<layer>.weight.int8``, ``.scale``, ``.zero_point``, ``.bias``)
next to the remaining float tensors, so nothing is pickled; :func:`load`
rebuilds the float architecture, quantizes it, and sets those weights.

torch 2.13 marks ``torch.ao.quantization`` eager mode as deprecated in favour
of torchao; it still works and needs no extra package, so we keep it and
silence the deprecation warnings here.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.ao.nn.quantized.dynamic import Linear
from torch.ao.quantization import quantize_dynamic
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

NAME = "int8"
DESCRIPTION = "int8 dynamic quantization of Linear layers (torch.ao.quantization.quantize_dynamic)"


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
        return quantize_dynamic(float_copy, {torch.nn.Linear}, dtype=torch.qint8)
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
    for key, value in qmodel.state_dict().items():
        owner = key.rsplit(".", 1)[0]
        if "_packed_params" in key or owner in qnames:
            continue
        if hasattr(value, "is_quantized") and not value.is_quantized:
            out[key] = value.detach().contiguous()
    return out


def save(qmodel, folder: Path) -> Path:
    path = folder / "model.safetensors"
    save_file(state_tensors(qmodel), str(path))
    return path


def load(float_model, folder: Path):
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
