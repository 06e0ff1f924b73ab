"""What keeps turbulence rollouts physical (issue 17): the spectral output filter of the field operators and the
training noise of the regression loss. Real models and the real loop, no mocks."""

from __future__ import annotations

import math

import pytest
import torch

import models
from models.fno import OUTPUT_FILTERS, spectral_filter
from tasks.loop import regression_loss, validate_regression


def _mode(n: int, kx: int, ky: int) -> torch.Tensor:
    """``(1, n, n, 1)``: cos(kx x + ky y) on an n x n periodic grid."""
    x = torch.arange(n, dtype=torch.float32) * 2 * math.pi / n
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    return torch.cos(kx * xx + ky * yy)[None, :, :, None]


def _energy(u: torch.Tensor) -> float:
    return float(u.pow(2).mean())


@pytest.mark.parametrize("kind", ["dealias", "exp"])
def test_the_filter_removes_grid_scale_energy_and_keeps_the_large_scales(kind):
    n = 32
    smooth = _mode(n, 2, 1) + 0.5 * _mode(n, 0, 3) + 1.5  # large scales and a mean
    checker = _mode(n, 16, 16)  # the grid-scale checkerboard (-1)^(i+j)
    near = _mode(n, 14, 0)  # close to the Nyquist wavenumber on one axis
    out = spectral_filter(smooth + checker + near, kind)
    assert out.shape == smooth.shape and out.dtype == smooth.dtype
    # The checkerboard and the near-Nyquist mode are gone (below 1e-6 of their energy) ...
    assert _energy(out - smooth) < 1e-6 * _energy(checker + near)
    # ... and the large scales and the mean pass within 1 % (the exponential filter's order-8 roll-off).
    assert _energy(spectral_filter(smooth, kind) - smooth) < 1e-4 * _energy(smooth)
    assert float(out.mean()) == pytest.approx(1.5, abs=1e-5)


def test_the_filter_is_a_no_op_when_off_and_works_in_3d_and_per_channel():
    torch.manual_seed(0)
    u = torch.randn(2, 8, 8, 8, 3)
    assert spectral_filter(u, "none") is u
    d = spectral_filter(u, "dealias")
    assert d.shape == u.shape
    # 2/3 rule on 8 points: |k| <= 2 kept per axis; the energy that is left is exactly the kept modes'.
    ft = torch.fft.fftn(d, dim=(1, 2, 3))
    k = torch.fft.fftfreq(8).abs() * 8
    high = (k > 8 / 3)
    assert float(ft[:, high].abs().max()) < 1e-4
    assert float(ft[:, :, high].abs().max()) < 1e-4 and float(ft[:, :, :, high].abs().max()) < 1e-4
    assert 0.0 < _energy(d) < _energy(u)
    with pytest.raises(ValueError, match="output filter 'lowpass'"):
        spectral_filter(u, "lowpass")


@pytest.mark.parametrize("key", ["turbulence/ifactformer", "turbulence/fno"])
def test_the_models_default_to_the_papers_unfiltered_output(key):
    """The filter is an option: off by default (the paper's forward), on it changes only the grid scales."""
    small = {"grid": [16, 16], "residual": True}
    small |= {"dim": 16, "latent_dim": 16, "n_layer": 2} if key.endswith("ifactformer") else {"width": 8, "modes": [4, 4]}
    torch.manual_seed(0)
    plain = models.build(key, small)
    assert plain.config.output_filter == "none"
    torch.manual_seed(0)
    filtered = models.build(key, {**small, "output_filter": "exp"})
    assert filtered.config_dict()["output_filter"] == "exp"  # saved with the model, rebuilt from its config
    filtered.load_state_dict(plain.state_dict())  # no parameters of its own
    (x,) = plain.example_inputs(2)
    with torch.no_grad():
        a, b = plain(x), filtered(x)
    # Residual: both add the same last snapshot; they differ by the filtered-out part of the increment only.
    assert not torch.allclose(a, b)
    assert torch.allclose(spectral_filter(a - x[:, -1], "exp"), b - x[:, -1], atol=1e-5)
    with pytest.raises(ValueError, match="output_filter must be one of"):
        models.build(key, {**small, "output_filter": "box"})
    with pytest.raises(ValueError, match="filter_order must be a number > 0"):
        models.build(key, {**small, "output_filter": "exp", "filter_order": 0})
    assert set(OUTPUT_FILTERS) == {"none", "dealias", "exp"}


def _tiny_fno():
    torch.manual_seed(0)
    return models.build("turbulence/fno", {"grid": [8, 8], "width": 8, "modes": [3, 3], "n_layers": 2,
                                           "projection_width": 16, "residual": True})


def test_training_noise_is_relative_and_leaves_the_clean_loss_alone():
    model = _tiny_fno()
    x = torch.randn(4, 1, 8, 8, 2)
    y = torch.randn(4, 2, 8, 8, 2)
    with torch.no_grad():
        clean = float(regression_loss(model, x, y, 2))
        assert float(regression_loss(model, x, y, 2, 0.0)) == clean  # 0 = off: exactly the loss without noise
        torch.manual_seed(1)
        assert float(regression_loss(model, x, y, 2, 0.1)) != pytest.approx(clean, rel=1e-4)
        # Relative to each sample's rms: the identity map's error is the noise level, at any amplitude.
        identity = lambda w: w[:, -1]  # noqa: E731
        big = 100.0 * torch.randn(8, 1, 16, 16, 2)
        kept = big.clone()
        assert float(regression_loss(identity, big, big.clone(), 1, 0.05)) == pytest.approx(0.05, rel=0.1)
        assert torch.equal(big, kept)  # the batch itself is not changed in place


def test_training_noise_changes_training_and_nothing_else():
    """Through the real loop and the turbulence train section: the noise moves the training loss (and so the
    weights); validation scores the same clean pairs; 0 trains exactly as before the option existed."""
    from tasks.domains.turbulence.data import FieldPairs
    from tasks.domains.turbulence.params import TurbulenceTrain
    from tasks.loop import fit

    gen = torch.Generator().manual_seed(0)
    fields = torch.randn(3, 6, 8, 8, 2, generator=gen)
    train, val = FieldPairs(fields[:2], 1), FieldPairs(fields[2:], 1)
    runs = {}
    for noise in (None, 0.0, 0.2):
        extra = {} if noise is None else {"input_noise": noise}
        cfg = TurbulenceTrain(epochs=2, steps_per_epoch=3, batch_size=4, lr=1e-2, device="cpu", resume=False, **extra)
        model = _tiny_fno()
        result = fit(model, train, val, cfg, task="regression", progress=False)
        runs[noise] = (result.history, {k: v.clone() for k, v in model.state_dict().items()}, model)
    base_hist, base_w, _ = runs[None]
    assert [h["train_loss"] for h in runs[0.0][0]] == [h["train_loss"] for h in base_hist]
    assert all(torch.equal(base_w[k], runs[0.0][1][k]) for k in base_w)
    noisy_hist, noisy_w, noisy_model = runs[0.2]
    assert noisy_hist[0]["train_loss"] != pytest.approx(base_hist[0]["train_loss"], rel=1e-3)
    assert any(not torch.equal(base_w[k], noisy_w[k]) for k in base_w)
    # Validation is the clean one-step error of the weights it ends with: recomputed here, equal.
    best = min(h["val_rel_l2"] for h in noisy_hist)
    assert validate_regression(noisy_model, val, 32, "cpu") == pytest.approx(best, rel=1e-5)
    with pytest.raises(ValueError, match="input_noise"):
        TurbulenceTrain(input_noise=-0.1)
