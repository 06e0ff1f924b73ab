"""Every report plot, rendered from small synthetic inputs and checked as a reader would look at it.

Issue 19, point 4. Each plot function runs for real (matplotlib on Agg, MNE for the topomap, the
turbulence evaluation on tiny fields); only ``pyplot.close`` is held back, so the figures the functions
save can be inspected afterwards. The checks:

* every text a reader needs (titles, suptitle, axis labels, tick labels, legends, annotations) lies inside
  the canvas (matplotlib's tight bbox of the figure within ``fig.bbox``);
* curves drawn from identical data (a float model and its int8 copy) differ in line style or marker and
  are both named in the legend;
* the EEG bar chart's error bars are the ``± std`` its per-subject table prints, and the axis says which std;
* vorticity images have a colour bar that carries their colour scale.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tasks.plotting import overflowing_text, pyplot

TOL_PX = 1.0  # anti-aliasing slack at the canvas edge


@contextmanager
def captured_figures():
    """``{file name: figure}`` of every figure saved inside the block; all figures closed on exit.

    ``pyplot.close`` becomes a no-op so the figures outlive the plot functions, and ``Figure.savefig``
    records which figure went to which file (then saves as usual).
    """
    from matplotlib.figure import Figure

    plt = pyplot()
    saved: dict[str, object] = {}
    real_savefig, real_close = Figure.savefig, plt.close

    def savefig(fig, fname, *args, **kwargs):
        name = Path(fname).name if isinstance(fname, str | Path) else f"<buffer {len(saved)}>"
        saved[name] = fig
        return real_savefig(fig, fname, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(Figure, "savefig", savefig)
    mp.setattr(plt, "close", lambda *a, **k: None)
    try:
        yield saved
    finally:
        mp.undo()
        real_close("all")


@pytest.fixture
def figures():
    with captured_figures() as saved:
        yield saved


def only(saved: dict) -> object:
    assert len(saved) == 1, f"expected one saved figure, got {list(saved)}"
    return next(iter(saved.values()))


def assert_text_inside(fig, what: str) -> None:
    """Every text artist and the figure's tight bbox lie within the canvas."""
    fig.canvas.draw()  # the layout engines run at draw time: measure the final positions
    bad = overflowing_text(fig, tol=TOL_PX)
    assert not bad, f"{what}: text outside the {fig.bbox.width:.0f}x{fig.bbox.height:.0f} px canvas: {bad}"


def lines_labelled(fig, names) -> dict[str, object]:
    """The Line2D of each model name (label ``name`` or ``name (...)``), per axes: {f"{i}:{name}": line}."""
    out = {}
    for i, ax in enumerate(fig.axes):
        for line in ax.get_lines():
            label = line.get_label()
            for name in names:
                if label == name or label.startswith(name + " ("):
                    out[f"{i}:{name}"] = line
    return out


def assert_distinguishable(fig, names, what: str, per_axes: bool = True) -> None:
    """Curves of different models on one axes differ in line style or marker; the legend names each."""
    lines = lines_labelled(fig, names)
    by_axes: dict[str, list] = {}
    for key, line in lines.items():
        by_axes.setdefault(key.split(":")[0], []).append((key, line))
    assert by_axes, f"{what}: no curve labelled with {names}"
    for group in by_axes.values():
        if per_axes:
            assert {k.split(":", 1)[1] for k, _ in group} == set(names), f"{what}: curves {[k for k, _ in group]}"
        looks = {k: (line.get_linestyle(), line.get_marker()) for k, line in group}
        assert len(set(looks.values())) == len(looks), f"{what}: identical-looking curves {looks}"
        for _, line in group:  # a marker that is never drawn does not tell curves apart
            if line.get_marker() not in (None, "None", "", " "):
                assert line.get_markevery() is not None or len(line.get_xdata()) < 50
    legend_texts = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    for name in names:
        assert any(t == name or t.startswith(name + " (") for t in legend_texts), (
            f"{what}: legend {legend_texts} does not name {name}"
        )


# ============================================================================ shared: ROC and confusion
MODELS = ["teacher", "teacher_int8"]  # same scores: the int8 model matches its float model


def test_roc_of_identical_models_shows_both_curves(figures, tmp_path):
    from tasks.evaluate import plot_roc

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    score = np.clip(y * 0.3 + rng.random(400), 0, 1)
    curves = {name: (y, score) for name in MODELS} | {"xgboost": (y, rng.random(400))}
    plot_roc(curves, tmp_path / "roc.png", "netflow-botiot: ROC, attack vs benign (test split, 10 families)",
             "attack", "benign")
    fig = only(figures)
    assert (tmp_path / "roc.png").read_bytes().startswith(b"\x89PNG")
    assert_text_inside(fig, "roc.png")
    assert_distinguishable(fig, [*MODELS, "xgboost"], "roc.png")


def test_confusion_matrix_with_many_long_class_names_fits(figures, tmp_path):
    from tasks.evaluate import plot_confusion

    names = ["Benign", "Exploits", "Reconnaissance", "DoS", "Generic", "Shellcode", "Backdoor", "Fuzzers",
             "Worms", "Analysis"]
    cm = np.random.default_rng(1).integers(0, 5000, (10, 10)).tolist()
    plot_confusion(cm, names, "netflow: student_int8 (test split)", tmp_path / "confusion.png")
    fig = only(figures)
    assert_text_inside(fig, "confusion.png")
    ax = fig.axes[0]
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    for a, b in zip(labels, labels[1:], strict=False):
        box_a, box_b = a.get_window_extent(r), b.get_window_extent(r)
        angle = math.radians(a.get_rotation())
        if angle == 0:  # side by side: the boxes must not overlap
            assert box_a.x1 <= box_b.x0 + TOL_PX, f"confusion.png: {a.get_text()!r} overlaps {b.get_text()!r}"
        else:  # slanted: parallel strips, one line high, whose distance is the anchors' gap x sin(angle)
            gap = (a.get_position()[0] - b.get_position()[0], 0)
            step = abs(ax.transData.transform((gap[0], 0))[0] - ax.transData.transform((0, 0))[0])
            height = a.get_fontsize() * fig.dpi / 72
            assert step * math.sin(angle) >= height, f"confusion.png: slanted {a.get_text()!r} touches the next"


# ============================================================================ EEG
def eeg_summary(n_seeds: int, subjects=("S01", "S02", "S03", "S04")) -> dict:
    from tasks.domains.eeg.protocol import summarize

    rng = np.random.default_rng(n_seeds)
    rows = []
    for model, skill in (("dbconformer", 0.9), ("eegnet", 0.5)):
        for seed in range(1, n_seeds + 1):
            for si, subject in enumerate(subjects):
                y = rng.integers(0, 2, 60)
                # a subject-dependent and seed-dependent skill, so both stds are non-zero and differ
                p = np.clip(0.5 + (y - 0.5) * skill * (0.3 + 0.15 * si + 0.1 * seed) + rng.normal(0, 0.3, 60), 0, 1)
                rows += [{"model": model, "seed": seed, "fold": f"LOSO-{subject}", "subject": subject,
                          "y": int(a), "p1": float(b)} for a, b in zip(y, p, strict=True)]
    return summarize(pl.DataFrame(rows), 2)


def table_std(summary: dict, metric: str = "balanced_accuracy") -> dict[str, float]:
    """The ``± std`` of each model as the per-subject table prints it (parsed from its markdown)."""
    from tasks.domains.eeg.protocol import per_subject_table

    md = per_subject_table(summary, metric)
    row = next(line for line in md.splitlines() if line.startswith("| mean ± std |"))
    cells = [c.strip() for c in row.strip("|").split("|")[1:]]
    return {m: float(re.fullmatch(r"[\d.]+ ± ([\d.]+)", c).group(1)) for m, c in zip(summary["models"], cells,
                                                                                      strict=True)}


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_eeg_bar_errors_are_the_tables_std(figures, tmp_path, n_seeds):
    from matplotlib.container import ErrorbarContainer

    from tasks.domains.eeg.protocol import plot_model_bars

    summary = eeg_summary(n_seeds)
    expected = table_std(summary)
    assert all(v > 0.005 for v in expected.values()), expected  # a zero std could not tell stds apart
    plot_model_bars(summary, tmp_path / "bars.png", "balanced_accuracy", "eeg LOSO: balanced accuracy per subject")
    fig = only(figures)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == len(summary["models"])
    for model, container in zip(summary["models"], bars, strict=True):
        (segment,) = container.lines[2][0].get_segments()  # [[x, y - err], [x, y + err]]
        half = (segment[1][1] - segment[0][1]) / 2
        assert half == pytest.approx(expected[model], abs=5e-4), f"{model}: bar ± {half:.4f}, table ± {expected[model]}"
    kind = "seeds" if n_seeds > 1 else "subjects"
    labels = " ".join([ax.get_ylabel(), ax.get_xlabel(), ax.get_title(), *(t.get_text() for t in fig.texts)])
    assert f"std over {kind}" in labels, labels
    assert_text_inside(fig, "protocol_bars.png")


BCI2A = "Fz FC3 FC1 FCz FC2 FC4 C5 C3 C1 Cz C2 C4 C6 CP3 CP1 CPz CP2 CP4 P1 Pz P2 POz".split()


@pytest.mark.parametrize("dropped", [0, 2])
def test_eeg_topomap_title_fits(figures, tmp_path, dropped):
    from tasks.domains.eeg.protocol import plot_channel_topomap

    names = BCI2A + [f"X{i}" for i in range(dropped)]  # X*: no 10-20 position, so the title says so
    w = np.random.default_rng(0).random(len(names))
    plot_channel_topomap(w, names, tmp_path / "topo.png",
                         "DBConformer (dbconformer_noea): attention change left_hand vs right_hand")
    fig = only(figures)
    title = " ".join(ax.get_title() for ax in fig.axes) + " ".join(t.get_text() for t in fig.texts)
    assert "right_hand" in title and ("dropped" in title) == bool(dropped)
    assert_text_inside(fig, "channel_attention.png")


def test_eeg_single_channel_bars_fit(figures, tmp_path):
    from tasks.domains.eeg.protocol import plot_channel_topomap

    plot_channel_topomap(np.array([1.0]), ["EEG"], tmp_path / "topo.png",
                         "DBConformer (dbconformer_noea): mean channel attention")
    assert_text_inside(only(figures), "channel_attention_mean.png (bars)")


# ============================================================================ finance
def test_finance_calibration_shows_identical_models_and_fits(figures, tmp_path):
    from tasks.domains.finance.analysis import plot_calibration

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.7 * y + 0.3 * rng.random(300), 0, 1)
    plot_calibration({"teacher": (y, p), "teacher_int8": (y, p)}, tmp_path / "cal.png",
                     "finance: reliability (test split)")
    fig = only(figures)
    assert_text_inside(fig, "calibration.png")
    assert_distinguishable(fig, MODELS, "calibration.png")


def test_finance_length_bias_fits(figures, tmp_path):
    from tasks.domains.finance.analysis import length_bias

    rng = np.random.default_rng(4)
    sentences = [" ".join(["word"] * int(n)) for n in rng.integers(3, 80, 200)]
    length_bias(sentences, rng.random(200), tmp_path / "lb.png", "finance: words vs P(AI), teacher (test split)")
    assert_text_inside(only(figures), "length_bias.png")


# ============================================================================ turbulence
@pytest.fixture(scope="module")
def turbulence_plots(tmp_path_factory):
    """The turbulence evaluation's figures for a float model and its identical int8 copy."""
    import torch

    from tasks.domains.turbulence.evaluate import evaluate_fields

    class Persistence(torch.nn.Module):
        def forward(self, x):  # (B, T, X, Y, C) -> the last snapshot: the same prediction for both names
            return x[:, -1]

    n = 16
    k = np.fft.fftfreq(n, 1 / n)
    kx, ky = np.meshgrid(k, k, indexing="ij")
    rng = np.random.default_rng(0)
    psi = np.fft.ifft2((rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) * (np.hypot(kx, ky) <= 4))
    u, v = np.fft.ifft2(1j * ky * np.fft.fft2(psi)).real, np.fft.ifft2(-1j * kx * np.fft.fft2(psi)).real
    field = np.stack([u, v], -1) / np.sqrt(np.mean(u**2 + v**2))
    test = np.asarray([[np.roll(field, t, axis=0) for t in range(10)]], dtype=np.float32)  # (1, 10, 16, 16, 2)

    with captured_figures() as saved:
        evaluate_fields({"teacher": Persistence(), "teacher_int8": Persistence()}, test, t_in=1,
                        lengths=[2 * math.pi] * 2, dt_model=0.1, rollout_steps=8, report_steps=[1, 5],
                        blowup_factor=1e6, plots_dir=tmp_path_factory.mktemp("plots"), latency_repeats=0,
                        gif=False)
        yield saved


@pytest.mark.parametrize("name", ["spectra.png", "error_vs_time.png", "snapshots.png", "pdfs.png",
                                  "rms_enstrophy.png", "rollout_strip.png"])
def test_turbulence_plot_text_fits(turbulence_plots, name):
    assert name in turbulence_plots, sorted(turbulence_plots)
    assert_text_inside(turbulence_plots[name], name)


@pytest.mark.parametrize("name", ["spectra.png", "error_vs_time.png", "pdfs.png", "rms_enstrophy.png"])
def test_turbulence_identical_models_are_distinguishable(turbulence_plots, name):
    fig = turbulence_plots[name]
    # pdfs: the legend is on the first panel only; each panel's curves must still differ
    assert_distinguishable(fig, MODELS, name)


@pytest.mark.parametrize("name", ["snapshots.png", "rollout_strip.png"])
def test_vorticity_panels_have_a_colour_bar(turbulence_plots, name):
    fig = turbulence_plots[name]
    images = [im for ax in fig.axes for im in ax.get_images()]
    assert images, f"{name}: no image"
    bars = [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]
    assert bars, f"{name}: no colour bar"
    scales = {(round(b.mappable.norm.vmin, 6), round(b.mappable.norm.vmax, 6)) for b in bars}
    for im in images:  # every panel's colours are read off some colour bar
        assert (round(im.norm.vmin, 6), round(im.norm.vmax, 6)) in scales, (name, im.norm.vmin, im.norm.vmax)
    assert all(b.ax.get_ylabel() or b.ax.get_xlabel() for b in bars), f"{name}: colour bar without a label"


HIT_SLICE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "turbulence" / "hit_slice.nc"


@pytest.mark.skipif(not HIT_SLICE.exists(), reason=f"{HIT_SLICE} not available")
def test_hit_slice_spectrum_fits(figures, tmp_path):
    from tasks.domains.turbulence.evaluate import hit_slice_check

    hit_slice_check(HIT_SLICE, tmp_path)
    assert_text_inside(figures["hit_slice_spectrum.png"], "hit_slice_spectrum.png")


# ============================================================================ compression: Pareto and nested plots
def _compress_rows() -> dict[str, dict]:
    rows = {"teacher": {"balanced_accuracy": 0.93, "latency_ms": 0.8, "bytes": 750_000, "parameters": 185_601}}
    for i, name in enumerate(["distill+int8_eager_with_a_long_name", "prune+distill+int8_eager", "lowrank+int8_eager",
                              "nested-w0.5", "indep-w0.5", "nested-w0.25", "indep-w0.25", "int8_eager"]):
        rows[name] = {"balanced_accuracy": 0.90 + 0.004 * i, "latency_ms": 0.2 + 0.1 * i, "bytes": 60_000 * (i + 1),
                      "parameters": 20_000 * (i + 1)}
    return rows


def test_compress_pareto_plots_keep_names_and_titles_on_the_canvas(figures, tmp_path):
    from tasks.compress.choose import pareto_plots

    rows = _compress_rows()
    files = pareto_plots(rows, {"variant": "distill+int8_eager_with_a_long_name"}, "balanced_accuracy", True,
                         tmp_path, "a_domain_with_a_rather_long_name")
    assert files == ["compress_latency.png", "compress_size.png"]
    # save_png renders to a buffer first: the figures come in the order of the files.
    assert len(figures) == 2
    for name, fig in zip(files, figures.values(), strict=True):  # the variant names beside the points too
        assert_text_inside(fig, name)


def test_compress_nested_plot_title_fits(figures, tmp_path):
    from tasks.compress.choose import nested_plot

    rows = _compress_rows()
    files = nested_plot(rows, {}, "balanced_accuracy", True, tmp_path, "a_domain_with_a_rather_long_name")
    assert files == ["compress_nested.png"]
    assert_text_inside(only(figures), "compress_nested.png")
