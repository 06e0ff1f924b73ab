"""EEG "your own data" (issue 18, point 3): MATLAB layouts ingested and preprocessed from a profile alone.

Each test writes a small dataset of one layout where the example profile's ``source`` points
(``data/incoming/...`` in a tiny project) and runs ``python -m tasks ingest|preprocess eeg --profile
examples/<profile>`` (the CLI's ``main`` in this process), as the README shows; no code, no ``--set``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from safetensors.numpy import load_file

from tests.conftest import data_tree, run_cli

pytestmark = pytest.mark.slow

h5py = pytest.importorskip("h5py")




def _segment(rng: np.random.Generator, n: int, ictal: bool) -> np.ndarray:
    """A noisy segment; ictal ones carry a large 3 Hz rhythm (uV)."""
    t = np.arange(n) / 173.61
    return rng.normal(0, 20, n) + (300 * np.sin(2 * np.pi * 3 * t) if ictal else 0)


def _bonn_like(root: Path, per_class: int = 6, n: int = 1024) -> Path:
    """``Z/Z001.mat`` ... ``S/S006.mat``: one int16 segment per file in a variable named after the class.

    Written as MATLAB does: v5 files of a T x 1 column, and the last seizure segment as a v7.3 (HDF5)
    file of a 1 x T row, so the one profile covers both readers.
    """
    rng = np.random.default_rng(7)
    for folder in ("Z", "S"):
        (root / folder).mkdir(parents=True)
        for i in range(1, per_class + 1):
            x = np.round(_segment(rng, n, folder == "S")).astype(np.int16)
            path = root / folder / f"{folder}{i:03d}.mat"
            if folder == "S" and i == per_class:
                with h5py.File(path, "w", userblock_size=512) as f:
                    ds = f.create_dataset(folder, data=x[:, None])  # MATLAB's 1 x T, reversed by HDF5
                    ds.attrs["MATLAB_class"] = np.bytes_("int16")
                with open(path, "r+b") as fh:
                    fh.write(b"MATLAB 7.3 MAT-file, HDF5 schema 1.00 .")
            else:
                scipy.io.savemat(path, {folder: x[:, None]})
    return root


def test_mat_folders_profile(project, capfd):
    _bonn_like(project / "data/incoming/eeg-mat")
    rc, out = run_cli(["ingest", "eeg", "--profile", "examples/eeg-mat-folders"], capfd)
    assert rc == 0, out
    assert "MAT data stored as int16 are read as numbers in ingest.eeg.spec.epoch_units=uV" in out
    manifest = json.loads((project / "data/raw/eeg/manifest.json").read_text())
    assert manifest["class_counts"] == {"non_seizure": 6, "seizure": 6}
    assert manifest["subjects"] == ["all"] and manifest["channels"] == ["EEG1"] and manifest["sfreqs"] == [173.61]
    assert manifest["epoch_units"].startswith("uV")
    files = {f["path"]: f for f in manifest["files"]}
    assert len(files) == 12
    assert files["source/S/S006.mat"]["variable"] == "S" and files["source/Z/Z001.mat"]["dtype"] == "int16"
    assert {f["dtype"] for f in files.values()} == {"int16"}

    rc, out = run_cli(["preprocess", "eeg", "--profile", "examples/eeg-mat-folders"], capfd)
    assert rc == 0, out
    schema = json.loads((project / "data/processed/eeg/schema.json").read_text())
    # 1024 samples at 173.61 Hz = 5.9 s: one 4 s window at 128 Hz per segment, none rejected (saturation off)
    assert (schema["n_epochs"], schema["n_times"], schema["sfreq"]) == (12, 512, 128.0)
    assert schema["class_counts"] == {"non_seizure": 6, "seizure": 6}
    test = load_file(str(project / "data/processed/eeg/test.safetensors"))
    train = load_file(str(project / "data/processed/eeg/train.safetensors"))
    # the deployment split holds every class on both sides (one subject "all", the last segment of each class)
    assert sorted(test["y"].tolist()) == [0, 1] and sorted(set(train["y"].tolist())) == [0, 1]
    # the seizure windows carry the 300 uV rhythm: the counts were read as microvolts, unscaled
    x = np.concatenate([train["x"], test["x"]])
    y = np.concatenate([train["y"], test["y"]])
    assert x[y == 1].std() > 5 * x[y == 0].std() and 100 < x[y == 1].std() < 400


def test_mat_names_profile_one_dimensional_floats_and_pattern_key(project, capfd):
    """A flat folder, the class and the subject in the file name, 1-D doubles under a varying variable name."""
    src = project / "data/incoming/eeg-mat-names"
    src.mkdir(parents=True)
    rng = np.random.default_rng(3)
    n = 0
    for subject in ("p01", "p02"):
        for label in ("interictal", "ictal"):
            for _ in range(3):
                n += 1
                seg = _segment(rng, 256 * 4, label == "ictal")  # 4 s at 256 Hz, float64, 1-D
                scipy.io.savemat(src / f"{subject}_{label}_{n:03d}.mat",
                                 {f"seg_{n:03d}": seg, "note": "exported", "fs": 256.0}, oned_as="row")
    rc, out = run_cli(["ingest", "eeg", "--profile", "examples/eeg-mat-names"], capfd)
    assert rc == 0, out
    manifest = json.loads((project / "data/raw/eeg/manifest.json").read_text())
    assert manifest["subjects"] == ["p01", "p02"]
    assert manifest["class_counts"] == {"interictal": 6, "ictal": 6}
    assert {f["variable"] for f in manifest["files"]} == {f"seg_{i:03d}" for i in range(1, 13)}
    assert "no scale factor" not in out  # doubles: nothing to say about counts
    rc, out = run_cli(["preprocess", "eeg", "--profile", "examples/eeg-mat-names"], capfd)
    assert rc == 0, out
    schema = json.loads((project / "data/processed/eeg/schema.json").read_text())
    # two 2 s windows per 4 s segment, at 128 Hz
    assert (schema["n_epochs"], schema["n_times"], schema["subjects"]) == (24, 256, ["p01", "p02"])


_TEMP_PATH = re.compile(r"/\.[^/\s]+\.[\w-]+\.tmp\b")
_LEFTOVER = re.compile(r"^\..+\.(.*\.tmp.*|tmp.*|old-.*)$")




def test_mat_folder_with_two_variables_is_refused(project, capfd):
    src = _bonn_like(project / "data/incoming/eeg-mat", per_class=3, n=800)
    assert run_cli(["ingest", "eeg", "--profile", "examples/eeg-mat-folders"], capfd)[0] == 0
    before = data_tree(project)
    assert "data/raw/eeg/manifest.json" in before
    bad = src / "Z" / "Z004.mat"
    scipy.io.savemat(bad, {"Z": np.zeros((800, 1), np.int16), "Z_annot": np.ones((800, 1), np.int16)})

    rc, out = run_cli(["ingest", "eeg", "--profile", "examples/eeg-mat-folders"], capfd)
    assert rc == 1, out
    # the user's file (as given, absolute), the problem and the variables; no temporary copy, no traceback
    assert (f"{bad}: data_key '*' takes the one data variable of the file, but the file holds 2: "
            "['Z', 'Z_annot']; name the one to read in ingest.eeg.spec.mat.data_key") in out
    assert not _TEMP_PATH.search(out), out
    assert "Traceback" not in out
    # nothing partial: data/ byte for byte as before, no temporary or displaced folder anywhere
    assert data_tree(project) == before
    assert not [p for p in project.rglob("*") if _LEFTOVER.match(p.name)]
