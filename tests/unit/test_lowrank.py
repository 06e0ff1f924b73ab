"""Low-rank factorisation (tasks/compress/lowrank.py): the factorised layer, which Linears are factorised on every
architecture, the reload from config + plan + safetensors, the accuracy-driven rank search, the stage's step and
its chains with int8."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models
from models.base import BlockSpec
from tasks.compress import CompressContext, load_any, lowrank, quantize, quantize_eager, save_variant
from tasks.compress.prune import set_module
from tasks.loop import count_parameters
from tests.unit.test_prune import CASES

RANK_FRACTION = 0.25


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared 2-core box: one intra-op thread avoids spin-wait contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(key: str, config: dict, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return models.build(key, config).eval()


def run(model, inputs):
    with torch.inference_mode():
        return model(*inputs)


def factorise_all(model: nn.Module, fraction: float | None) -> tuple[nn.Module, list[dict]]:
    """A copy with every candidate factorised: at full rank (``fraction`` None) or at ``fraction`` of its bound."""
    out = copy.deepcopy(model)
    plan = []
    for path in lowrank.candidates(out):
        linear = out.get_submodule(path)
        rank = min(linear.weight.shape) if fraction is None else lowrank.rank_for(linear, fraction)
        plan.append({"op": "lowrank", "path": path, "rank": rank})
        set_module(out, path, lowrank.LowRankLinear.from_linear(linear, rank))  # the search's SVD init
    return out, plan


def test_replaying_a_plan_builds_the_layout_without_an_svd():
    """apply_op (what load replays before the saved factors overwrite the weights) makes the factor shapes
    of the plan, and does not factorise the weights it finds: a replayed layer is not the SVD of its input."""
    linear = nn.Linear(48, 32)
    model = nn.Sequential(linear)
    lowrank.apply_op(model, {"op": "lowrank", "path": "0", "rank": 5})
    layer = model[0]
    assert isinstance(layer, lowrank.LowRankLinear)
    assert (layer.first.weight.shape, layer.second.weight.shape) == ((5, 48), (32, 5))
    svd = lowrank.LowRankLinear.from_linear(linear, 5)
    assert not torch.allclose(layer.first.weight, svd.first.weight)
    with pytest.raises(ValueError, match=r"^0: rank must lie in \[1, 32\].*got 40"):
        lowrank.apply_op(nn.Sequential(nn.Linear(48, 32)), {"op": "lowrank", "path": "0", "rank": 40})


def variant_record(model: nn.Module, key: str, plan: list[dict], chain: list[str], quant: str | None) -> dict:
    """The ``config.json`` the compress stage writes for a variant (tasks.compress.compress)."""
    return {"key": key, "config": model.config_dict(), "plan": plan, "quant": quant, "chain": chain,
            "student": False, "compression": "+".join(chain), "compile": False, "description": "test"}


# ============================================================================ the layer
def test_the_factorised_layer_is_the_original_at_full_rank_and_its_svd_truncation_below():
    torch.manual_seed(0)
    linear = nn.Linear(24, 10)
    x = torch.randn(5, 24)
    full = lowrank.LowRankLinear.from_linear(linear, 10)
    assert (full.first.weight.shape, full.second.weight.shape) == ((10, 24), (10, 10))
    assert full.first.bias is None and torch.equal(full.second.bias, linear.bias)
    assert torch.allclose(full(x), linear(x), atol=1e-5)
    # Below full rank: the best rank-r approximation of W (Eckart-Young), whose error is the dropped singular values.
    low = lowrank.LowRankLinear.from_linear(linear, 3)
    s = torch.linalg.svdvals(linear.weight.detach())
    w_r = low.second.weight @ low.first.weight  # (out, in)
    assert torch.linalg.matrix_rank(w_r) == 3
    assert torch.linalg.matrix_norm(linear.weight - w_r).item() == pytest.approx(s[3:].norm().item(), rel=1e-4)
    assert count_parameters(low) == 3 * (24 + 10) + 10
    with pytest.raises(ValueError, match="rank must lie in"):
        lowrank.LowRankLinear.from_linear(linear, 11)


@pytest.mark.parametrize("case", list(CASES))
def test_every_model_at_full_rank_equals_the_original(case):
    key, config = CASES[case]
    model = build(key, config)
    full, plan = factorise_all(model, None)
    assert plan, f"{case}: no Linear to factorise"
    assert not any(type(m) is nn.Linear for p in lowrank.candidates(model)
                   for m in [full.get_submodule(p)]), "a candidate was left dense"
    inputs = model.example_inputs(3, seed=2)
    want, got = run(model, inputs), run(full, inputs)
    assert torch.allclose(got, want, atol=1e-4 * float(want.abs().max()) + 1e-7)


@pytest.mark.parametrize("case", list(CASES))
def test_a_lower_rank_shrinks_the_model_and_reloads_from_its_files_alone(case, tmp_path):
    key, config = CASES[case]
    model = build(key, config)
    low, plan = factorise_all(model, RANK_FRACTION)
    assert count_parameters(low) < count_parameters(model)
    save_variant(tmp_path / "teacher", model, variant_record(model, key, [], [], None))
    save_variant(tmp_path / "lowrank", low, variant_record(model, key, plan, ["lowrank"], None))
    size = {n: (tmp_path / n / "model.safetensors").stat().st_size for n in ("teacher", "lowrank")}
    assert size["lowrank"] < size["teacher"]
    # load_any builds the architecture from its config (new random weights), replays the plan, loads the factors.
    loaded, meta = load_any(tmp_path / "lowrank")
    assert meta["plan"] == plan and count_parameters(loaded) == count_parameters(low)
    assert isinstance(loaded.get_submodule(plan[0]["path"]), lowrank.LowRankLinear)
    inputs = model.example_inputs(3, seed=2)
    assert torch.equal(run(loaded, inputs), run(low, inputs))


# ============================================================================ which layers
class Toy(nn.Module):
    """One block with a Linear called normally, one read by ``.weight``, a tied pair, an MHA and a 2-wide output."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.block = nn.Module()
        self.block.called = nn.Linear(d, d)
        self.block.read = nn.Linear(d, d)  # used as F.linear(x, read.weight): its forward never runs
        self.block.tied_a = nn.Linear(d, d, bias=False)
        self.block.tied_b = nn.Linear(d, d, bias=False)
        self.block.tied_b.weight = self.block.tied_a.weight
        self.block.mha = nn.MultiheadAttention(d, 2, batch_first=True)
        self.block.narrow = nn.Linear(d, 2)  # break-even 32 // 18 = 1: no rank below it
        self.head = nn.Linear(2, 1)  # outside the blocks

    def prunable_blocks(self) -> list[BlockSpec]:
        return [BlockSpec(name="block")]

    def example_inputs(self, batch_size: int, seed: int = 0) -> tuple[torch.Tensor]:
        return (torch.randn(batch_size, 4, 16, generator=torch.Generator().manual_seed(seed)),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        h = b.called(x) + F.linear(x, b.read.weight) + b.tied_b(b.tied_a(x))  # (B, T, d)
        h = h + b.mha(h, h, h, need_weights=False)[0]  # (B, T, d)
        return self.head(b.narrow(h)).mean(1)  # (B, 1)


def test_only_linears_called_through_their_forward_and_not_tied_are_candidates():
    torch.manual_seed(0)
    toy = Toy().eval()
    assert lowrank.candidates(toy) == ["block.called", "block.narrow"]
    assert lowrank.ranks_to_try(toy.block.narrow, [0.25, 0.5, 0.75]) == []  # r >= break-even saves nothing
    assert lowrank.ranks_to_try(toy.block.called, [0.25, 0.5, 0.75]) == [2, 4, 6]  # bound 8
    with pytest.raises(ValueError, match="not an nn.Linear"):
        lowrank.apply_op(toy, {"op": "lowrank", "path": "block.mha", "rank": 2})


class Items:
    """A Dataset over fixed tensors (the loop's protocol)."""

    def __init__(self, inputs: tuple[torch.Tensor, ...], y: torch.Tensor):
        self.inputs, self.y = inputs, y
        self.labels = y.numpy() if y.dtype == torch.long else np.zeros(len(y), dtype=np.int64)

    def __len__(self):
        return len(self.y)

    def batch(self, idx):
        i = torch.as_tensor(idx)
        return tuple(t[i] for t in self.inputs), self.y[i]


def test_the_search_keeps_a_layer_dense_when_any_truncation_raises_the_loss():
    """An orthogonal 16 x 16 map with targets 2 f(x): any truncation P f gives ||P f - 2 f|| > ||f - 2 f||, so
    the loss must rise. With tolerance 0 the layer stays dense; with room for the rise it is factorised,
    the smallest rank first, and the search never touches the layer too small to gain or the model it got."""
    torch.manual_seed(0)
    toy = Toy().eval()
    with torch.no_grad():
        for lin in (toy.block.read, toy.block.tied_a, toy.block.narrow, toy.head):
            lin.weight.zero_()
        toy.block.mha.out_proj.weight.zero_()
        toy.block.mha.out_proj.bias.zero_()
        toy.block.called.weight.copy_(torch.linalg.qr(torch.randn(16, 16))[0])
        toy.block.called.bias.zero_()

    class Field(nn.Module):  # the regression target is the block's output, so the loss sees every direction
        def __init__(self, toy):
            super().__init__()
            self.toy = toy

        def prunable_blocks(self):
            return [BlockSpec(name="toy.block")]

        def example_inputs(self, batch_size, seed=0):
            return self.toy.example_inputs(batch_size, seed)

        def forward(self, x):
            return self.toy.block.called(x)  # (B, T, d)

    model = Field(toy).eval()
    x = model.example_inputs(64, seed=1)[0]
    with torch.no_grad():
        y = 2 * model(x).unsqueeze(1)  # (B, 1, T, d): the regression target is y[:, 0]
    val = Items((x,), y)
    strict = lowrank.rank_search(model, val, "regression", fractions=[0.25, 0.5, 0.75], tolerance=0.0)
    assert strict.plan == [] and strict.ranks == [0] and strict.candidates == ["toy.block.called"]
    assert strict.trials == 3 and not any(e["accepted"] for e in strict.log)
    assert all(e["loss"] > strict.base_loss for e in strict.log)
    assert strict.final_loss == strict.base_loss and type(strict.model.toy.block.called) is nn.Linear
    loose = lowrank.rank_search(model, val, "regression", fractions=[0.25, 0.5, 0.75], tolerance=10.0)
    assert loose.plan == [{"op": "lowrank", "path": "toy.block.called", "rank": 2}] and loose.trials == 1
    assert loose.final_loss > loose.base_loss
    assert isinstance(loose.model.toy.block.called, lowrank.LowRankLinear)
    assert type(model.toy.block.called) is nn.Linear  # the search works on a copy


# ============================================================================ the step and its chains
@pytest.fixture(scope="module")
def stepped(tmp_path_factory):
    """The stage's step on a small FlowTransformer: a real CompressContext on the repo's params (tiny loop),
    its splits set to fixed windows."""
    from tasks.params import load_params
    from tests.conftest import REPO

    params = load_params(REPO / "params.yaml", profiles=[], overrides=[
        "train.netflow.steps_per_epoch=2", "train.netflow.batch_size=16", "train.netflow.device=cpu",
        "compress.netflow.lowrank.tolerance=100.0", "compress.netflow.lowrank.max_val_items=48"])
    key, config = "netflow/flowtransformer", {"n_layers": 1, "internal_size": 32, "embed_dim": 16,
                                              "mlp_sizes": [16]}
    teacher = build(key, config)
    inputs = teacher.example_inputs(96, seed=3)
    with torch.inference_mode():
        y = (teacher(*inputs)[:, 0] > teacher(*inputs)[:, 0].median()).long()
    items = Items(inputs, y)
    context = CompressContext("netflow", params, teacher, key)
    context.__dict__["splits"] = {"train": items, "val": items, "search": items}  # the cached property's slot
    record = {"key": key, "config": teacher.config_dict(), "plan": [], "quant": None, "chain": ["lowrank"],
              "student": False}
    model = lowrank.step(teacher, record, context)
    return {"teacher": teacher, "model": model, "record": record, "key": key, "root": tmp_path_factory.mktemp("v")}


def test_the_step_records_its_plan_and_the_losses_before_and_after_fine_tuning(stepped):
    record, model, teacher = stepped["record"], stepped["model"], stepped["teacher"]
    stats = record["stats"]
    factorised, n_candidates = stats["lowrank_layers"]
    assert n_candidates == len(lowrank.candidates(teacher)) == 6 and factorised == len(record["plan"]) > 0
    assert all(op["op"] == "lowrank" for op in record["plan"])
    assert stats["lowrank_params"] == [count_parameters(teacher), count_parameters(model)]
    assert stats["lowrank_params"][1] < stats["lowrank_params"][0]
    assert len(stats["lowrank_val_loss"]) == 3 and stats["lowrank_finetune_epochs"] == 1
    assert stats["lowrank_ranks"].count(0) == n_candidates - factorised
    # the teacher itself is left as it was, on the CPU
    assert all(type(teacher.get_submodule(p)) is nn.Linear for p in lowrank.candidates(teacher))
    assert next(teacher.parameters()).device.type == "cpu"


@pytest.mark.parametrize("quant", [None, quantize_eager.NAME, quantize.NAME])
def test_lowrank_and_its_int8_chains_reload_with_the_same_outputs(stepped, quant):
    model, record = stepped["model"], dict(stepped["record"])
    chain = ["lowrank", *([quant] if quant else [])]
    if quant:
        model = (quantize_eager if quant == quantize_eager.NAME else quantize).step(model, record)
    record.update(chain=chain, compression="+".join(chain), compile=False, description="test")
    record.pop("_parameters", None)
    folder = stepped["root"] / "+".join(chain)
    save_variant(folder, model, record)
    loaded, meta = load_any(folder)
    assert meta["chain"] == chain and meta["quant"] == quant
    inputs = stepped["teacher"].example_inputs(8, seed=4)
    assert torch.equal(run(loaded, inputs), run(model, inputs))
    if quant == quantize_eager.NAME:  # the factors are plain Linears: both are int8 now
        first = loaded.get_submodule(record["plan"][0]["path"]).first
        assert type(first).__module__.startswith("torch.ao.nn.quantized")
