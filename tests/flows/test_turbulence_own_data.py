"""Issue 18, turbulence: gridded velocity fields as text tables and Tecplot ASCII, brought in by a profile alone.

Small files of each layout are generated (a 16 x 16 grid, an analytic field) where the example profiles of
``profiles/examples/`` point, and ``python -m tasks ingest|preprocess turbulence --profile ...`` runs on them
(the CLI's ``main`` in this process). The bad inputs of the issue (points that do not form a grid, a Tecplot zone
whose size does not match its data) must fail with a message naming the user's file and the zone, and leave
``data/`` as it was. Unit checks: the Hann-windowed spectrum of a grid that is not periodic, the report's note,
and the hit-slice check reading its file through a layout spec.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from tasks.domains.turbulence import physics
from tasks.domains.turbulence.evaluate import Persistence, evaluate_fields, hit_slice_check
from tasks.domains.turbulence.layout import FieldError, FieldLayout
from tasks.domains.turbulence.readers import read_fields
from tests.conftest import data_tree, leftovers, run_cli, setup_project

HIT_SLICE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "turbulence" / "hit_slice.nc"
N, DX, DT = 16, 0.1, 0.01
_TEMP_PATH = re.compile(r"/\.[^/\s]+\.[\w-]+\.tmp\b")


def field(run: int, step: int, n: int = N) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x, y, u, v`` on an ``n x n`` grid (``(n, n)`` each, indexed [x, y]): an analytic, non-periodic field."""
    x, y = np.meshgrid(0.5 + DX * np.arange(n), -0.3 + DX * np.arange(n), indexing="ij")
    t = DT * step
    u = np.sin(2 * x + 30 * t + run) * np.cos(y) + 0.2 * run
    v = np.cos(x - 20 * t) * np.sin(2 * y + run)
    return x, y, u, v


def write_table(path: Path, run: int, step: int, *, sep: str = " ", drop: int | None = None,
                seed: int = 0) -> Path:
    """One snapshot as a text table, rows shuffled (any order is allowed); ``drop`` removes one row."""
    x, y, u, v = (a.ravel() for a in field(run, step))
    rows = np.stack([x, y, u, v], 1)[np.random.default_rng(seed + 10 * run + step).permutation(N * N)]
    if drop is not None:
        rows = np.delete(rows, drop, axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [sep.join(["x", "y", "u", "v"])] + [sep.join(f"{val:.6f}" for val in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_tecplot(path: Path, steps: int, *, bad_zone: int | None = None) -> Path:
    """One Tecplot ASCII file, a zone per step, POINT and BLOCK packing alternating (old and new keywords).

    ``bad_zone``: that zone (1-based) declares J one larger than the data it holds.
    """
    out = ['TITLE = "generated PIV"', 'VARIABLES = "X", "Y"', '"U" "V"']  # names continued on a line
    for s in range(steps):
        x, y, u, v = field(0, s)
        # Tecplot's ordered zones run I fastest: I along x, J along y
        cols = [a.T.ravel() for a in (x, y, u, v)]
        j = N + 1 if bad_zone == s + 1 else N
        if s % 2 == 0:
            out.append(f'ZONE T="t={s * DT:.2f}", I={N}, J={j}, DATAPACKING=POINT, SOLUTIONTIME={s * DT:.4f}')
            out += [" ".join(f"{c[i]:.6E}" for c in cols) for i in range(N * N)]
        else:
            out.append(f'ZONE T="t={s * DT:.2f}", I={N}, J={j}, F=BLOCK')
            out.append(f"SOLUTIONTIME={s * DT:.4f}")  # a ZONE record continued on the next line
            for c in cols:
                out += [" ".join(f"{val:.6E}" for val in c[i:i + 8]) for i in range(0, N * N, 8)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    return path








def _profile(name: str) -> dict:
    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[2] / "profiles/examples" / f"{name}.yaml").read_text())


# ============================================================================ the profiles, end to end


def test_text_table_profile_ingests_and_preprocesses(tmp_path, monkeypatch, capfd):
    root = setup_project(tmp_path / "proj", monkeypatch)
    assert _profile("turbulence-text-table")["ingest"]["turbulence"]["source"] == "data/incoming/piv/run*/*.txt"
    for run in range(3):
        for step in range(6):
            # frame_2 before frame_10: natural order, not the file names' lexical order
            write_table(root / f"data/incoming/piv/run{run + 1}/frame_{2 * step + 2}.txt", run, step)
    profile = ["--profile", "examples/turbulence-text-table"]

    rc, out = run_cli(["ingest", "turbulence", *profile], capfd)
    assert rc == 0, out
    manifest = json.loads((root / "data/raw/turbulence/manifest.json").read_text())
    assert manifest["format"] == "table" and manifest["periodic"] is False, manifest
    assert manifest["shape"] == [3, 6, N, N, 2] and manifest["components"] == ["u", "v"]
    assert manifest["dt"] == pytest.approx(DT)
    assert manifest["lengths"] == pytest.approx([N * DX, N * DX], rel=1e-4)
    assert len(list((root / "data/raw/turbulence/fields").rglob("*.txt"))) == 18

    rc, out = run_cli(["preprocess", "turbulence", *profile], capfd)
    assert rc == 0, out
    schema = json.loads((root / "data/processed/turbulence/schema.json").read_text())
    assert schema["grid"] == [N, N] and schema["periodic"] is False
    assert schema["trajectories"] == {"train": [0], "val": [1], "test": [2]}
    from safetensors.numpy import load_file

    test = load_file(str(root / "data/processed/turbulence/test.safetensors"))["fields"]  # (1, 6, N, N, 2)
    for step in (0, 4, 5):  # the run's files in natural order, rows back on the grid
        _, _, u, v = field(2, step)
        np.testing.assert_allclose(test[0, step, ..., 0], u, atol=2e-6)
        np.testing.assert_allclose(test[0, step, ..., 1], v, atol=2e-6)
    assert not leftovers(root)


def test_tecplot_profile_ingests_and_preprocesses(tmp_path, monkeypatch, capfd):
    root = setup_project(tmp_path / "proj", monkeypatch)
    write_tecplot(root / _profile("turbulence-tecplot")["ingest"]["turbulence"]["source"], 18)
    profile = ["--profile", "examples/turbulence-tecplot"]

    rc, out = run_cli(["ingest", "turbulence", *profile], capfd)
    assert rc == 0, out
    manifest = json.loads((root / "data/raw/turbulence/manifest.json").read_text())
    assert manifest["format"] == "tecplot" and manifest["periodic"] is False
    assert manifest["shape"] == [1, 18, N, N, 2]
    assert manifest["dt"] == pytest.approx(DT, rel=1e-6)  # from SOLUTIONTIME

    rc, out = run_cli(["preprocess", "turbulence", *profile], capfd)
    assert rc == 0, out
    schema = json.loads((root / "data/processed/turbulence/schema.json").read_text())
    assert schema["trajectories"] == {"train": [0], "val": [1], "test": [2]} and schema["snapshots"] == 6
    from safetensors.numpy import load_file

    test = load_file(str(root / "data/processed/turbulence/test.safetensors"))["fields"]  # (1, 6, N, N, 2)
    for step in (0, 1):  # zones 13 (POINT) and 14 (BLOCK): the last segment
        _, _, u, v = field(0, 12 + step)
        np.testing.assert_allclose(test[0, step, ..., 0], u, atol=1e-5)
        np.testing.assert_allclose(test[0, step, ..., 1], v, atol=1e-5)


# ============================================================================ bad inputs


def _assert_refused(root: Path, capfd, args: list[str], *texts: str) -> str:
    before = data_tree(root)
    rc, out = run_cli(args, capfd)
    assert rc == 1, out
    for text in texts:
        assert text in out, f"{text!r} not in:\n{out}"
    assert "Traceback" not in out, out
    assert not _TEMP_PATH.search(out), f"the message names a temporary copy:\n{out}"
    assert data_tree(root) == before, "the stage changed data/"
    assert not leftovers(root), leftovers(root)
    return out


def test_a_table_whose_points_do_not_form_a_grid_is_refused(tmp_path, monkeypatch, capfd):
    root = setup_project(tmp_path / "proj", monkeypatch)
    rc, out = run_cli(["ingest", "turbulence"], capfd)  # a good synthetic ingest: what must stay as it was
    assert rc == 0, out
    for run in range(3):
        for step in range(6):
            write_table(root / f"data/incoming/piv/run{run + 1}/frame_{step}.txt", run, step,
                        drop=17 if (run, step) == (1, 3) else None)
    _assert_refused(root, capfd, ["ingest", "turbulence", "--profile", "examples/turbulence-text-table"],
                    "data/incoming/piv/run2/frame_3.txt: the points do not form a regular grid: 255 rows",
                    "1 missing (first at x=")


def test_a_tecplot_zone_size_that_does_not_match_its_data_is_refused(tmp_path, monkeypatch, capfd):
    root = setup_project(tmp_path / "proj", monkeypatch)
    rc, out = run_cli(["ingest", "turbulence"], capfd)
    assert rc == 0, out
    write_tecplot(root / "data/incoming/tecplot/piv.dat", 18, bad_zone=4)
    _assert_refused(root, capfd, ["ingest", "turbulence", "--profile", "examples/turbulence-tecplot"],
                    "data/incoming/tecplot/piv.dat: zone 4 ('t=0.03')",
                    f"zone size I={N}, J={N + 1}, K=1 with 4 variables needs {N * (N + 1) * 4} values "
                    f"(DATAPACKING=BLOCK), the zone holds {N * N * 4}")


@pytest.mark.parametrize(("case", "message"), [
    ("duplicate", "1 given more than once (first at x="),
    ("uneven", "uneven spacing along y (column 'y')"),
    ("nan", "row 5: u = nan"),
    ("bad-number", "'abc'"),
])
def test_table_errors_name_the_file_and_the_problem(tmp_path, case, message):
    path = write_table(tmp_path / "in" / "frame.csv", 0, 0, sep=",")
    lines = path.read_text().splitlines()
    if case == "duplicate":  # 257 rows: one point twice
        lines.append(lines[1])
    elif case == "uneven":  # every row of the largest y moved off the grid by 5 % of the spacing
        top = f"{-0.3 + DX * (N - 1):.6f}"
        lines = [ln.replace(f",{top},", f",{float(top) + 0.05 * DX:.6f},", 1) for ln in lines]
    elif case == "nan":
        parts = lines[5].split(",")
        lines[5] = ",".join([*parts[:2], "nan", parts[3]])
    else:
        lines[3] = lines[3].rsplit(",", 1)[0] + ",abc"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FieldError) as err:
        read_fields(path, FieldLayout(variables=["u", "v"], coords={"x": "x", "y": "y"}),
                    display="my/frame.csv")
    assert str(err.value).startswith("my/frame.csv: ") and message in str(err.value), str(err.value)


# ============================================================================ non-periodic spectra, hit slice


def test_hann_window_removes_the_edge_leakage_of_a_non_periodic_field():
    x = np.arange(32) / 32
    u = np.broadcast_to(3.0 * x[:, None] + 1.0, (32, 32)).copy()  # a ramp: a jump between opposite edges
    v = np.zeros_like(u)
    lengths = (1.0, 1.0)
    k, plain = physics.energy_spectrum(u, v, lengths=lengths)
    _, hann = physics.energy_spectrum(u, v, lengths=lengths, window="hann")
    high = k > 0.5 * k.max()
    assert hann[high].sum() < 1e-3 * plain[high].sum()  # the jump's k^-2 tail is gone
    assert hann[0] == pytest.approx(0.5 * u.mean() ** 2)  # the mean flow, unwindowed, in shell 0
    # the window is scaled to unit mean square: a statistically homogeneous field keeps its energy
    noise = np.random.default_rng(0).normal(size=(2, 64, 64))
    _, e = physics.energy_spectrum(noise[0], noise[1], lengths=lengths, window="hann")
    assert e.sum() == pytest.approx(0.5 * (noise**2).sum(0).mean(), rel=0.05)


def test_the_report_says_the_spectra_are_windowed():
    test = np.stack([np.stack([np.stack(field(r, s)[2:], -1) for s in range(6)]) for r in range(2)])
    test = test.astype(np.float32)  # (2, 6, N, N, 2)
    common = {"t_in": 1, "lengths": [N * DX, N * DX], "dt_model": DT, "rollout_steps": 3, "report_steps": [1, 3],
              "blowup_factor": 5.0, "plots_dir": None, "latency_repeats": 0}
    m_per, md_per, _ = evaluate_fields({"persistence": Persistence()}, test, **common)
    m_win, md_win, _ = evaluate_fields({"persistence": Persistence()}, test, periodic=False, **common)
    assert "Spectra windowed (Hann): the grid is not periodic" in md_win
    assert "windowed" not in md_per
    # the same rollout, other spectra: the window changes the spectral distance, not the pointwise error
    assert m_win["persistence"]["rollout_rel_l2_3"] == m_per["persistence"]["rollout_rel_l2_3"]
    assert m_win["persistence"]["spectrum_lsd"] != m_per["persistence"]["spectrum_lsd"]


@pytest.mark.skipif(not HIT_SLICE.exists(), reason="../shared/data/turbulence/hit_slice.nc is absent")
def test_hit_slice_check_takes_a_layout_spec(tmp_path):
    from tasks.params import load_params

    # the params' default spec reproduces the built-in layout of hit_slice.nc
    p = load_params(overrides=[]).evaluate.turbulence
    base, _, _ = hit_slice_check(HIT_SLICE, tmp_path / "a")
    spec, md, _ = hit_slice_check(HIT_SLICE, tmp_path / "b", layout=p.hit_slice_spec.to_layout(),
                                  format=p.hit_slice_format)
    assert spec == base and base["periodic"] is True and "windowed" not in md

    # the same slice as a text table (columns named by the spec, another order): periodic as given -> the same
    # slope; auto (a text table is not periodic) -> a windowed spectrum, said in the section
    f = read_fields(HIT_SLICE, FieldLayout(variables=["velocity_x", "velocity_y", "velocity_z"], axes="z,y,x"))
    a = f.data[0, 0]  # (n, n, 3), x then y
    n = a.shape[0]
    dx = f.lengths[0] / n
    xi, yi = np.meshgrid(np.arange(n) * dx, np.arange(n) * dx, indexing="ij")
    table = np.stack([yi.ravel(), xi.ravel(), *(a[..., c].ravel() for c in range(3))], 1)
    path = tmp_path / "slice.csv"
    path.write_text("Y,X,U,V,W\n" + "\n".join(",".join(f"{v:.9g}" for v in r) for r in table) + "\n")
    layout = {"variables": ["U", "V", "W"], "coords": {"x": "X", "y": "Y"}, "axes": "x,y"}
    given, _, _ = hit_slice_check(path, tmp_path / "c", layout=FieldLayout(**layout, periodic=True))
    assert given["slope"] == pytest.approx(base["slope"], abs=1e-4) and given["periodic"] is True
    auto, md_auto, _ = hit_slice_check(path, tmp_path / "d", layout=FieldLayout(**layout), display="my/slice.csv")
    assert auto["periodic"] is False and auto["window"] == "hann"
    assert "Spectra windowed (Hann): the grid is not periodic" in md_auto
    assert math.isfinite(auto["slope"]) and auto["slope"] != given["slope"]


def test_a_time_column_orders_the_snapshots_of_one_table(tmp_path):
    rows = []
    for step in (2, 0, 1):  # out of order in the file: the time column orders them
        x, y, u, v = (a.ravel() for a in field(0, step))
        rows += [f"{step * DT:.4f};{a:.6f};{b:.6f};{c:.6f};{d:.6f}" for a, b, c, d in zip(x, y, u, v, strict=True)]
    path = tmp_path / "all" / "steps.dat"
    path.parent.mkdir()
    path.write_text("# t;x;y;u;v\n" + "\n".join(rows) + "\n")
    f = read_fields(tmp_path / "all", FieldLayout(variables=["u", "v"], time="t", delimiter=";"))  # a folder source
    assert f.data.shape == (1, 3, N, N, 2) and f.dt == pytest.approx(DT) and f.attrs["format"] == "table"
    np.testing.assert_allclose(f.coords["time"], [0, DT, 2 * DT], atol=1e-9)
    np.testing.assert_allclose(f.data[0, 1, ..., 0], field(0, 1)[2], atol=2e-6)
