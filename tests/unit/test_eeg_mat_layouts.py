"""MATLAB layouts without a label variable (issue 18, point 3): the reader and the path labels, on real files.

Files are written with SciPy (v5) and h5py (v7.3, as MATLAB lays them out) and read with
:func:`tasks.domains.eeg.readers.read_mat` and :func:`tasks.domains.eeg.ingest.read_sources`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from pydantic import ValidationError

from tasks.domains.eeg.ingest import read_sources
from tasks.domains.eeg.params import EEGSpec, MatLayout
from tasks.domains.eeg.readers import read_mat
from tasks.domains.eeg.sources import EEGInputError, describe

h5py = pytest.importorskip("h5py")


def _v73(path: Path, variables: dict) -> Path:
    """A MATLAB v7.3 file: userblock, axes reversed, MATLAB_class attributes and an (empty) #refs# group."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, value in variables.items():
            arr = np.asarray(value)
            ds = f.create_dataset(key, data=arr.T)
            ds.attrs["MATLAB_class"] = np.bytes_("int16" if arr.dtype == np.int16 else "double")
        f.create_group("#refs#")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .")
    return path


def _v5(path: Path, variables: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, variables)
    return path


def test_vector_is_one_single_channel_segment(tmp_path):
    seg = np.random.default_rng(0).normal(0, 30, 300)
    # 1-D numpy is saved as MATLAB's 1 x T row; a T x 1 column and an h5py 1-D dataset are the same segment
    for path in (_v5(tmp_path / "row.mat", {"seg": seg}), _v5(tmp_path / "col.mat", {"seg": seg[:, None]}),
                 _v73(tmp_path / "v73.mat", {"seg": seg})):
        ep = read_mat(path, data_key="seg", label_key=None, label="ictal", sfreq=173.61)
        assert ep.data.shape == (1, 1, 300), path.name
        np.testing.assert_array_equal(ep.data[0, 0], seg)
        assert (ep.labels, ep.ch_names, ep.dtype) == (["ictal"], ["EEG1"], "float64")
    # a 1-D dataset with any layout: the layout describes 3-D data, a vector is one segment whatever it says
    ep = read_mat(tmp_path / "v73.mat", data_key="seg", label_key=None, label="x", sfreq=1.0,
                  layout="samples,trials,channels")
    assert ep.data.shape == (1, 1, 300)


def test_integer_data_are_read_as_float_and_recorded(tmp_path):
    counts = np.random.default_rng(1).integers(-2000, 2000, (1, 4097)).astype(np.int16)
    for path in (_v5(tmp_path / "Z001.mat", {"Z": counts.T}), _v73(tmp_path / "Z002.mat", {"Z": counts})):
        ep = read_mat(path, data_key="*", label_key=None, label="healthy", sfreq=173.61)
        assert ep.data.dtype == np.float64 and ep.data.shape == (1, 1, 4097)
        np.testing.assert_array_equal(ep.data[0, 0], counts[0].astype(np.float64))  # unscaled
        assert (ep.dtype, ep.variable) == ("int16", "Z"), path.name


def test_several_segments_per_file_with_folder_label(tmp_path):
    x = np.random.default_rng(2).normal(0, 10, (3, 2, 50))
    _v5(tmp_path / "a.mat", {"trials": x, "fs": 100.0})
    ep = read_mat(tmp_path / "a.mat", data_key="*", label_key=None, label="rest", sfreq_key="fs")
    np.testing.assert_array_equal(ep.data, x)
    assert ep.labels == ["rest"] * 3 and ep.variable == "trials" and ep.sfreq == 100.0  # fs: named by sfreq_key


@pytest.mark.parametrize("writer", [_v5, _v73])
def test_data_key_star_and_patterns(tmp_path, writer):
    seg = np.arange(64, dtype=np.float64)
    path = writer(tmp_path / "f.mat", {"seg_017": seg, "fs": [[128.0]]})
    for key in ("seg_*", "seg_0??", "re:seg_\\d+"):
        ep = read_mat(path, data_key=key, label_key=None, label="a", sfreq_key="fs")
        assert ep.variable == "seg_017" and ep.data.shape == (1, 1, 64), key
    # '*' takes the one variable no other key names: fs is the sampling rate here, so seg_017 is the data
    assert read_mat(path, data_key="*", label_key=None, label="a", sfreq_key="fs").variable == "seg_017"
    with pytest.raises(EEGInputError, match=r"f\.mat: data_key '\*' takes the one data variable of the file, "
                                            r"but the file holds 2: \['fs', 'seg_017'\]"):
        read_mat(path, data_key="*", label_key=None, label="a", sfreq=128.0)
    with pytest.raises(EEGInputError, match=r"f\.mat: data_key 'eeg_\*' must match exactly one variable of the "
                                            r"file, but matches none; variables: \['fs', 'seg_017'\]"):
        read_mat(path, data_key="eeg_*", label_key=None, label="a", sfreq=128.0)
    with pytest.raises(EEGInputError, match=r"f\.mat: data_key 're:seg' must match .* none"):
        read_mat(path, data_key="re:seg", label_key=None, label="a", sfreq=128.0)  # a full match, not a search


def test_metadata_is_not_a_variable(tmp_path):
    # loadmat adds __header__, __version__, __globals__; v7.3 files hold #refs#: none is a candidate for '*'
    for path in (_v5(tmp_path / "v5.mat", {"S": np.ones((1, 10))}), _v73(tmp_path / "v73.mat", {"S": np.ones(10)})):
        assert read_mat(path, data_key="*", label_key=None, label="a", sfreq=1.0).variable == "S"


def test_no_label_source_is_an_error(tmp_path):
    path = _v5(tmp_path / "n.mat", {"X": np.ones((1, 10))})
    with pytest.raises(EEGInputError, match=r"n\.mat: no label_key, and no class"):
        read_mat(path, data_key="X", label_key=None, sfreq=1.0)


def _spec(**mat) -> EEGSpec:
    return EEGSpec(name="t", classes=["healthy", "seizure"], event_map={},
                   mat=MatLayout(data_key="*", label_key=None, sfreq=100.0, **mat))


def test_read_sources_labels_from_folders_and_skips_unmapped(tmp_path, capsys):
    src = tmp_path / "src"
    for folder, n in (("Z", 2), ("S", 3), ("O", 1)):
        for i in range(n):
            _v5(src / folder / f"{folder}{i:03d}.mat", {folder: np.random.default_rng(i).normal(0, 20, (1, 200))})
    spec = _spec().model_copy(update={"label_map": {"Z": "healthy", "S": "seizure"}})
    items = read_sources(src, spec)
    assert [obj.labels[0] for _, obj in items] == ["seizure"] * 3 + ["healthy"] * 2
    # one segment per file is no subject of its own: all files are subject "all", run = the file's stem
    assert {info.subject for info, _ in items} == {"all"}
    assert [info.run for info, _ in items][:2] == ["S000", "S001"]
    assert "skipped MAT files whose folders are not in ingest.eeg.spec.label_map: O (1)" in capsys.readouterr().out
    # without a map the folder must be a class
    with pytest.raises(EEGInputError, match=r"O/O000\.mat: its folder gives the label 'O', which is not in "
                                            r"ingest\.eeg\.spec\.classes \['healthy', 'seizure'\]"):
        read_sources(src, _spec())
    with pytest.raises(EEGInputError, match=r"no MAT file under the EEG source has a label of ingest\.eeg\.spec"
                                            r"\.label_map \['X'\]; folders found: \['O', 'S', 'Z'\]"):
        read_sources(src, spec.model_copy(update={"label_map": {"X": "healthy"}}))


def test_read_sources_labels_from_regex_and_subjects_from_names(tmp_path):
    src = tmp_path / "src"
    for name in ("p01_healthy_1", "p01_seizure_2", "p02_healthy_3"):
        _v5(src / f"{name}.mat", {"seg": np.random.default_rng(0).normal(0, 20, 100)})
    spec = _spec(label_regex=r"_(?P<label>healthy|seizure)_").model_copy(
        update={"name_pattern": r"^(?P<subject>p\d+)_"})
    items = read_sources(src, spec)
    assert [(info.subject, obj.labels) for info, obj in items] == [
        ("p01", ["healthy"]), ("p01", ["seizure"]), ("p02", ["healthy"])]
    _v5(src / "p03_unknown.mat", {"seg": np.ones(100)})
    with pytest.raises(EEGInputError, match=r"p03_unknown\.mat: ingest\.eeg\.spec\.mat\.label_regex .* does not "
                                            r"match its path 'p03_unknown\.mat'"):
        read_sources(src, spec)
    # folder labels need a folder: a file at the top of the source has none
    with pytest.raises(EEGInputError, match=r"p01_healthy_1\.mat: with ingest\.eeg\.spec\.mat\.label_key null the "
                                            r"class is the name of the file's folder, but it lies in no folder"):
        read_sources(src, _spec())


def test_describe_path_labels(tmp_path):
    p = tmp_path / "S" / "S001.mat"
    assert describe(p, tmp_path).subject == "S001"  # a MAT file with its own labels: a recording per subject
    info = describe(p, tmp_path, path_labels=True)
    assert (info.subject, info.session, info.run, info.folder_label) == ("all", "S", "S001", "S")


@pytest.mark.parametrize("kwargs, message", [
    ({"label_key": "y", "label_regex": "(a)"}, r"label_regex '\(a\)' applies only with label_key: null"),
    ({"label_key": None, "label_regex": "(a)(b)"}, "must have one group"),
    ({"label_key": None, "label_regex": "(a"}, "not a valid regular expression"),
    ({"data_key": "re:(x"}, "data_key 're:\\(x' is not a valid regular expression"),
    ({"data_key": " "}, "data_key is empty"),
])
def test_mat_layout_params(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        MatLayout(**kwargs)
