"""MatFormer nested widths (tasks/compress/nested.py): nesting without new keys, extraction that equals the nested
model at its width and reloads from config + safetensors, the importance reordering, the joint step (every
granularity, one optimizer step), Mix'n'Match picks, and variant names that parse. Tiny models of every
architecture the registry has with an FFN (the cases of tests/unit/test_prune.py)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from tasks.compress import load_any, nested, parse_chain, save_variant
from tasks.loop import count_parameters
from tasks.params_base import NESTED_TOKEN, CompressSection, NestedSettings, TrainLoopParams, method_of
from tests.unit.test_prune import CASES, build, run

WIDTHS = [1.0, 0.5, 0.25, 0.125]


class Inputs:
    """A Dataset (the loop's protocol) over fixed model inputs, labelled by the model itself."""

    def __init__(self, inputs: tuple[torch.Tensor, ...], labels: np.ndarray):
        self.inputs, self.labels = inputs, labels

    def __len__(self):
        return len(self.labels)

    def batch(self, idx):
        idx = torch.as_tensor(np.asarray(idx))
        return tuple(t[idx] for t in self.inputs), torch.as_tensor(self.labels[np.asarray(idx)])


def data_for(model: nn.Module, n: int = 24, seed: int = 3) -> Inputs:
    inputs = model.example_inputs(n, seed=seed)
    out = run(model, inputs)
    labels = out.argmax(1).numpy() if out.ndim == 2 and out.shape[1] > 1 else (out[:, 0] > 0).long().numpy()
    return Inputs(inputs, labels)


def nested_at(model: nn.Module, width, inputs) -> torch.Tensor:
    with nested.at_width(model, width):
        return run(model, inputs)


# ============================================================================ nesting and extraction
@pytest.mark.parametrize("case", list(CASES))
def test_nesting_keeps_the_state_dict_and_full_width_is_the_model(case):
    model = build(*CASES[case])
    inputs = model.example_inputs(3, seed=1)
    ref = run(model, inputs)
    wrapped = nested.nest(copy.deepcopy(model))
    assert any(isinstance(m, nested.NestedLinear) for m in wrapped.modules())
    assert list(wrapped.state_dict()) == list(model.state_dict())
    assert torch.equal(nested_at(wrapped, 1.0, inputs), ref)
    assert not torch.equal(nested_at(wrapped, 0.5, inputs), ref)  # a narrower width is another model
    plain = nested.unnest(wrapped)
    assert not nested.is_nested(plain)
    assert all(type(plain.get_submodule(s.ffn_in)) is nn.Linear for s in nested.nested_specs(plain))
    assert torch.equal(run(plain, inputs), ref)


@pytest.mark.parametrize("case", list(CASES))
def test_an_extracted_sub_model_is_the_nested_model_at_that_width(case):
    model = build(*CASES[case])
    inputs = model.example_inputs(3, seed=1)
    wrapped = nested.nest(copy.deepcopy(model))
    blocks = list(nested.units(model))
    picks = nested.mix_widths(blocks, [1, 2, 4, 8])
    sizes = []
    for width in [*WIDTHS, *picks]:
        sub = nested.extract(model, width)
        assert not nested.is_nested(sub)
        assert torch.allclose(run(sub, inputs), nested_at(wrapped, width, inputs), rtol=1e-5, atol=1e-6)
        sizes.append(count_parameters(sub))
    assert sizes[0] == count_parameters(model)
    assert sizes[: len(WIDTHS)] == sorted(sizes[: len(WIDTHS)], reverse=True) and sizes[1] < sizes[0]
    n = nested.units(model)
    assert nested.units(nested.extract(model, 0.25)) == {b: max(1, round(k / 4)) for b, k in n.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_every_extracted_size_reloads_alone(case, tmp_path):
    """Each width (and each Mix'n'Match pick): config + plan + safetensors rebuild it on a fresh model."""
    key, config = CASES[case]
    full = build(key, config)
    record = {"key": key, "config": full.config_dict(), "plan": [], "quant": None, "chain": [nested.NAME],
              "nested": {"granularities": [1, 2, 4, 8], "units": nested.units(full),
                         "mixes": {f"nested-mix{k}": p for k, p in
                                   enumerate(nested.mix_widths(list(nested.units(full)), [1, 2, 4, 8]), 1)}}}
    inputs = full.example_inputs(2, seed=4)
    tokens = [f"nested-w{nested.fmt_width(w)}" for w in WIDTHS] + list(record["nested"]["mixes"])
    for token in tokens:
        rec = {**record, "chain": [token], "compression": token, "plan": []}
        sub = nested.token_step(token, full, rec, None)
        save_variant(tmp_path / token, sub, rec)
        loaded, meta = load_any(tmp_path / token)
        assert torch.equal(run(loaded, inputs), run(sub, inputs)), token
        assert meta["nested"]["blocks"] == rec["nested"]["blocks"]
        assert json.loads((tmp_path / token / "config.json").read_text())["plan"] == rec["plan"]
    assert record["nested"].get("width") is None  # the shared record is not written by a token step
    assert nested.available_widths(record) == WIDTHS


def test_nested_w1_is_the_un_nested_model_exactly():
    full = build(*CASES["flowtransformer"])
    rec = {"plan": [], "nested": {"granularities": [1, 2], "units": nested.units(full)}}
    sub = nested.token_step("nested-w1", full, rec, None)
    assert rec["plan"] == [] and rec["nested"]["width"] == 1.0
    inputs = full.example_inputs(4, seed=2)
    assert torch.equal(run(sub, inputs), run(full, inputs))
    assert list(sub.state_dict()) == list(full.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(sub.state_dict().values(), full.state_dict().values(), strict=True))


# ============================================================================ importance reordering
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("with_data", [True, False])
def test_the_importance_permutation_preserves_outputs(case, with_data):
    model = build(*CASES[case])
    inputs = model.example_inputs(3, seed=1)
    ref = run(model, inputs)
    data = data_for(model) if with_data else None
    orders = nested.reorder(model, data, items=16, batch_size=8)
    assert any(order != sorted(order) for order in orders.values())  # something moved
    assert torch.allclose(run(model, inputs), ref, rtol=1e-5, atol=1e-5)
    for score in nested.importance(model, data, items=16, batch_size=8).values():  # now most important first
        assert torch.all(score[:-1] >= score[1:] - 1e-5 * score.max())


def test_reordering_moves_dead_units_behind_the_prefix():
    """Units whose output column is zero add nothing: placed first in the teacher, they end up last, so the
    narrowest prefix keeps only live units (DynaBERT's rewiring; MatFormer trains nested from scratch)."""
    model = build(*CASES["flowtransformer"])
    specs = nested.nested_specs(model)
    dead = list(range(0, 128, 2))[:64]
    with torch.no_grad():
        for spec in specs:
            model.get_submodule(spec.ffn_out).weight[:, dead] = 0
    nested.reorder(model, data_for(model), items=16)
    for spec in specs:
        w_out = model.get_submodule(spec.ffn_out).weight
        assert torch.all(w_out[:, :64].abs().sum(0) > 0) and torch.all(w_out[:, 64:] == 0)


def test_reordering_is_deterministic():
    """The nested fine-tune and every independent student must slice the same units."""
    a, b = build(*CASES["dbconformer"]), build(*CASES["dbconformer"])
    data = data_for(a)
    assert nested.reorder(a, data, items=12) == nested.reorder(b, data, items=12)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


# ============================================================================ the joint step
def loop_cfg(steps: int = 3) -> TrainLoopParams:
    return TrainLoopParams(epochs=1, steps_per_epoch=steps, batch_size=8, eval_batch_size=64, lr=3e-3,
                           balanced_batches=False, resume=False, device="cpu", patience=5)


def test_the_joint_loss_gives_the_summed_gradients_of_every_granularity():
    teacher = build(*CASES["flowtransformer"])
    model = nested.nest(copy.deepcopy(teacher)).train()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # a student that differs from its teacher
    data = data_for(teacher, n=8)
    inputs, y = data.batch(np.arange(8))
    grans = [1, 2, 4, 8]
    model.eval()  # no dropout: the two ways must see the same function
    nested.joint_loss(copy.deepcopy(teacher), "binary", grans, temperature=2.0, alpha=0.5)(model, inputs, y).backward()
    joint = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    for f in grans:  # MatFormer-OLMo: one backward per granularity, gradients accumulated
        nested.joint_loss(copy.deepcopy(teacher), "binary", [f], temperature=2.0, alpha=0.5)(model, inputs, y).backward()
    for name, p in model.named_parameters():
        assert torch.allclose(joint[name], p.grad, rtol=1e-4, atol=1e-7), name


def test_the_joint_step_trains_every_granularity_with_one_optimizer_step_per_batch():
    teacher = build(*CASES["flowtransformer"])
    model = copy.deepcopy(teacher)
    nested.reorder(model, data_for(teacher), items=16)
    reordered = copy.deepcopy(model)
    data = data_for(teacher, n=32)
    grans = [1, 2, 4, 8]
    steps, widths_seen = [], []
    handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: steps.append(1))
    spec = nested.nested_specs(model)[0]
    nested.nest(model)  # joint_finetune keeps these modules: watch the width the first block's FFN runs at
    model.get_submodule(spec.ffn_in).register_forward_pre_hook(
        lambda mod, args: widths_seen.append(mod.active) if mod.training else None)
    try:
        result = nested.joint_finetune(model, teacher, data, data, loop_cfg(3), task="binary", granularities=grans,
                                       temperature=2.0, alpha=0.5)
    finally:
        handle.remove()
    assert len(steps) == 3 and result.epochs_run == 1
    assert widths_seen == [None, 64, 32, 16] * 3  # every granularity on every batch (None: the full 128)
    assert not nested.is_nested(model) and list(model.state_dict()) == list(teacher.state_dict())
    inputs = teacher.example_inputs(4, seed=9)
    w_in, w_out = model.get_submodule(spec.ffn_in).weight, model.get_submodule(spec.ffn_out).weight
    before_in = reordered.get_submodule(spec.ffn_in).weight
    for lo, hi in ((0, 16), (16, 32), (32, 64), (64, 128)):  # the units of each granularity alone were trained
        assert not torch.equal(w_in[lo:hi], before_in[lo:hi]), (lo, hi)
    assert not torch.equal(w_out, reordered.get_submodule(spec.ffn_out).weight)
    for width in (1.0, 0.5, 0.25, 0.125):
        assert not torch.allclose(run(nested.extract(model, width), inputs),
                                  run(nested.extract(reordered, width), inputs)), width


def test_val_losses_has_one_entry_per_granularity_and_leaves_the_model_plain():
    model = build(*CASES["dbconformer"])
    data = data_for(model)
    losses = nested.val_losses(model, data, "multiclass", [1, 2, 4])
    assert list(losses) == ["1", "0.5", "0.25"] and all(np.isfinite(v) for v in losses.values())
    assert not nested.is_nested(model)


# ============================================================================ Mix'n'Match and names
@pytest.mark.parametrize("case", list(CASES))
def test_mix_n_match_widths_are_non_decreasing_with_depth(case):
    model = build(*CASES[case])
    specs = nested.nested_specs(model)
    blocks = [s.name for s in specs]
    picks = nested.mix_widths(blocks, [8, 1, 4, 2])
    if len(specs) == 1:
        assert picks == []  # IFactFormer-m's one shared block: nothing to mix
        return
    assert len(picks) == 3
    for pick, (small, large) in zip(picks, [(0.125, 0.25), (0.25, 0.5), (0.5, 1.0)], strict=True):
        assert set(pick.values()) == {small, large}
        depth = {b: nested._depth(b, i) for i, b in enumerate(blocks)}
        ordered = [pick[b] for b in sorted(blocks, key=lambda b: depth[b])]
        assert ordered == sorted(ordered)
        for a in blocks:  # blocks at the same depth (DBConformer's two branches) share a width
            assert all(pick[a] == pick[b] for b in blocks if depth[a] == depth[b])
    sizes = [count_parameters(nested.extract(model, p)) for p in picks]
    uniform = [count_parameters(nested.extract(model, w)) for w in (0.125, 0.25, 0.5, 1.0)]
    assert all(uniform[i] < sizes[i] < uniform[i + 1] for i in range(3))  # each mix between its neighbours


@pytest.mark.parametrize("case", list(CASES))
def test_expand_names_parse_and_validate(case):
    model = build(*CASES[case])
    names = nested.expand(model, NestedSettings())
    single = len(nested.nested_specs(model)) == 1
    assert names == ["nested-w1", "nested-w0.5", "nested-w0.25", "nested-w0.125",
                     *([] if single else ["nested-mix1", "nested-mix2", "nested-mix3"]),
                     "indep-w0.5", "indep-w0.25", "indep-w0.125"]
    for name in names:
        assert NESTED_TOKEN.match(name) and method_of(name) == "nested"
        kind, value = nested.parse(name)
        assert name.endswith(nested.fmt_width(value) if kind != "mix" else str(value))
        assert nested.describe(name)
    CompressSection(methods=[*names, "nested-w0.5+int8_eager", "nested-mix1+distill"])
    assert parse_chain("nested-w0.5+int8_eager") == ["nested", "nested-w0.5", "int8_eager"]
    assert nested.expand(model, NestedSettings(mix=False, compare_independent=False, granularities=[1, 3])) == \
        ["nested-w1", "nested-w0.333333"]
    assert nested.parse("nested-w0.333333") == ("width", 1 / 3)


def test_bad_tokens_are_refused():
    for bad in ("nested-w0", "nested-w1.5", "nested-mix0"):
        with pytest.raises(ValueError):
            nested.parse(bad)
    assert NESTED_TOKEN.match("nested-w0.5.1") is None and NESTED_TOKEN.match("nested-w.") is None
    full = build(*CASES["ifactformer"])
    rec = {"plan": [], "nested": {"granularities": [1, 2], "units": nested.units(full), "mixes": {}}}
    with pytest.raises(ValueError, match="no such Mix'n'Match pick"):
        nested.token_step("nested-mix1", full, rec, None)
