"""Structured pruning (tasks/compress/prune.py): physical cuts per architecture, the plan replayed from config +
safetensors, the cuts meaning what AxFormer's masks mean, and the greedy search's acceptance rule."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import models
from models.base import ZeroBranch
from tasks.compress import prune
from tasks.loop import count_parameters

TINY_BERT = {"encoder": {"model_type": "bert", "vocab_size": 3000, "hidden_size": 32, "num_hidden_layers": 2,
                         "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64}}
EEG = {"n_chans": 22, "n_times": 301, "sfreq": 100.0, "n_outputs": 2}
FIELD = {"grid": [16, 16], "lengths": [6.28, 6.28], "n_channels": 2, "dim": 16, "heads": 2, "dim_head": 8,
         "latent_dim": 8, "n_layer": 2}
CASES = {
    "flowtransformer": ("netflow/flowtransformer", {}),
    "flowtransformer-clean": ("netflow/flowtransformer", {"variant": "clean"}),
    "dbconformer": ("eeg/dbconformer", EEG),
    "text_encoder": ("finance/text_encoder", TINY_BERT),
    "ifactformer": ("turbulence/ifactformer", FIELD),
}


def build(key: str, config: dict, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return models.build(key, config).eval()


def run(model, inputs):
    with torch.inference_mode():
        return model(*inputs)


def plan_for(model: nn.Module) -> list[dict]:
    """Every kind of cut the model allows: the last block's FFN, the first block's attention (or its units and heads)."""
    specs = model.prunable_blocks()
    last, first = specs[-1], specs[0]
    plan = []
    if last.ffn_paths:
        plan.append({"op": "branch", "block": last.name, "branch": "ffn"})
    elif last.ffn_in:
        n = prune.n_units(model, last)
        plan.append({"op": "units", "block": last.name, "keep": list(range(0, n, 2))})
    if first.heads is not None and len(specs) > 1:
        plan.append({"op": "heads", "block": first.name, "keep": [0]})
    if first.ffn_in and len(specs) > 1:
        n = prune.n_units(model, first)
        plan.append({"op": "units", "block": first.name, "keep": list(range(n // 2))})
    return plan


@pytest.mark.parametrize("case", list(CASES))
def test_cuts_are_physical_and_reload_from_config_and_plan(case, tmp_path):
    key, config = CASES[case]
    model = build(key, config)
    plan = plan_for(model)
    assert plan, f"{case}: nothing to cut"
    pruned = prune.apply_plan(copy.deepcopy(model), plan)
    assert count_parameters(pruned) < count_parameters(model)
    save_file({k: v.contiguous() for k, v in pruned.state_dict().items()}, str(tmp_path / "p.safetensors"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "t.safetensors"))
    assert (tmp_path / "p.safetensors").stat().st_size < (tmp_path / "t.safetensors").stat().st_size
    # A fresh build with other random weights, the plan replayed, the saved weights loaded: the same model.
    fresh = prune.apply_plan(build(key, config, seed=11), plan)
    fresh.load_state_dict(load_file(str(tmp_path / "p.safetensors")))
    inputs = model.example_inputs(3, seed=2)
    assert torch.equal(run(fresh, inputs), run(pruned, inputs))


def test_a_removed_branch_is_what_axformer_masks():
    """Removing the FFN of a BERT layer = zeroing its output dense (AxFormer: output = LN(attention output))."""
    model = build("finance/text_encoder", TINY_BERT)
    spec = model.prunable_blocks()[1]
    masked = copy.deepcopy(model)
    dense = masked.get_submodule(spec.ffn_out)
    dense.register_forward_hook(lambda mod, inp, out: torch.zeros_like(out))
    cut = copy.deepcopy(model)
    prune.remove_branch(cut, spec, "ffn")
    assert isinstance(cut.get_submodule(spec.ffn_out), ZeroBranch)
    inputs = model.example_inputs(2, seed=1)
    assert torch.allclose(run(cut, inputs), run(masked, inputs), atol=1e-6)


def test_cut_heads_equal_zeroed_heads():
    """Slicing a head out of q/k/v/out = zeroing its columns of the output projection (the head contributes 0)."""
    model = build("eeg/dbconformer", EEG)
    spec = model.prunable_blocks()[0]
    h, dim = spec.heads, spec.heads.v_dim
    masked = copy.deepcopy(model)
    out = masked.get_submodule(h.out)
    with torch.no_grad():
        out.weight[:, dim:] = 0  # every head but head 0
    cut = copy.deepcopy(model)
    prune.cut_heads(cut, h, [0])
    assert cut.get_submodule(h.module).n_heads == 1
    inputs = model.example_inputs(2, seed=1)
    assert torch.allclose(run(cut, inputs), run(masked, inputs), atol=1e-5)


def test_an_emptied_pre_ln_block_becomes_the_identity():
    model = build("eeg/dbconformer", EEG)
    spec = model.prunable_blocks()[0]
    prune.remove_branch(model, spec, "ffn")
    prune.remove_branch(model, spec, "attn")
    assert isinstance(model.get_submodule(spec.name), nn.Identity)
    assert all(s.name != spec.name for s in model.prunable_blocks())


class Items:
    """A Dataset over fixed tensors (the loop's protocol)."""

    def __init__(self, x: torch.Tensor, y: np.ndarray):
        self.x, self.labels = x, y

    def __len__(self):
        return len(self.labels)

    def batch(self, idx):
        return (self.x[torch.as_tensor(idx)],), torch.as_tensor(self.labels[idx])


def test_search_keeps_harmless_cuts_and_refuses_harmful_ones():
    """A DBConformer whose temporal blocks' FFNs output nothing (zero weights) loses them; a useful attention
    (its removal raises the loss) stays, unless the tolerance allows it."""
    model = build("eeg/dbconformer", {**EEG, "n_outputs": 2})
    with torch.no_grad():
        for block in model.temporal_blocks:
            block.ffn[3].weight.zero_()
            block.ffn[3].bias.zero_()
    x = torch.randn(64, 22, 301, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        y = model(x).argmax(1).numpy()  # labels the model gets right: any real change raises the loss
    val = Items(x, y)
    result = prune.axformer_search(model, val, "multiclass", heads=False)
    cut_ffn = {op["block"] for op in result.plan if op["op"] == "branch" and op["branch"] == "ffn"}
    assert {"temporal_blocks.0", "temporal_blocks.1"} <= cut_ffn
    assert result.final_loss <= result.base_loss + 1e-9  # the paper's rule: never above the start
    assert count_parameters(result.model) < count_parameters(model)
    for entry in result.log:  # every accepted trial met both halves of the rule
        if entry["accepted"]:
            assert entry["no_worse"] > 0.5 * len(y)
    # the model itself is untouched (the search cuts copies)
    assert all(isinstance(b.ffn, nn.Sequential) for b in model.temporal_blocks)


def test_search_tolerance_admits_a_small_rise():
    model = build("netflow/flowtransformer", {})
    x_num, x_cat = model.example_inputs(128, seed=5)

    class Windows:
        labels = np.zeros(128, dtype=np.int64)

        def __len__(self):
            return 128

        def batch(self, idx):
            i = torch.as_tensor(idx)
            return (x_num[i], x_cat[i]), torch.as_tensor(self.labels[idx])

    strict = prune.axformer_search(model, Windows(), "binary", tolerance=0.0)
    loose = prune.axformer_search(model, Windows(), "binary", tolerance=10.0)
    assert len(loose.plan) >= len(strict.plan)
    assert loose.trials > 0 and all("loss" in e for e in loose.log)
