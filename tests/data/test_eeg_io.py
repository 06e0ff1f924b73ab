"""Data tests for the EEG sources and readers (:mod:`tasks.domains.eeg.sources`, :mod:`tasks.domains.eeg.readers`).

Every format is written by a real writer (MNE's FIF/EDF/BDF writers, SciPy's and
h5py's MAT writers) or, where the project has none (GDF, BrainVision), by hand after
the format's specification, and read back; bad inputs must raise
:class:`EEGInputError` naming the file and what is wrong. The real data sets under
``shared/data/eeg`` are checked when present.
"""

from __future__ import annotations

import io
import re
import stat
import struct
import time
import uuid
import zipfile
from collections import Counter
from pathlib import Path

import fsspec
import h5py
import mne
import numpy as np
import pytest
import scipy.io

from tasks.domains.eeg.readers import read_ascii_segments, read_mat, read_recording
from tasks.domains.eeg.sources import EEGInputError, describe, fetch_sources, format_of
from tasks.domains.eeg.synthetic import CLASSES, MI_CHANNELS, synthesize_recording
from tasks.domains.eeg.synthetic import generate as generate_eeg
from tests.conftest import SHARED_DATA

BONN_ZIP = SHARED_DATA / "eeg" / "bonn_eeg.zip"
EEGMMIDB = SHARED_DATA / "eeg" / "eegmmidb_S001"
MI_MAP = {c: c for c in CLASSES}
TPC = 3  # trials per class in the synthetic recordings


# ----------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> list[Path]:
    """Two subjects x one session of synthetic motor-imagery EDF+ (3 trials per class)."""
    t0 = time.perf_counter()
    paths = generate_eeg(tmp_path_factory.mktemp("syn"), n_subjects=2, n_sessions=1, trials_per_class=TPC)
    assert time.perf_counter() - t0 < 20, "the synthetic fixture should stay small"
    return paths


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    target, cache = tmp_path / "target", tmp_path / "cache"
    target.mkdir()
    cache.mkdir()
    return target, cache


def _raw(n_ch: int = 3, sfreq: float = 100.0, seconds: float = 10.0, seed: int = 0) -> mne.io.RawArray:
    """Random EEG in volts (about 20 uV)."""
    rng = np.random.default_rng(seed)
    info = mne.create_info([f"E{i + 1}" for i in range(n_ch)], sfreq, ch_types="eeg", verbose="error")
    return mne.io.RawArray(20e-6 * rng.standard_normal((n_ch, int(seconds * sfreq))), info, verbose="error")


EVENTS = [(1.0, "a"), (2.5, "b"), (4.0, "a"), (6.2, "rest"), (7.0, "b")]  # (onset s, description)


def _annotate(raw, events=EVENTS):
    on, de = zip(*events, strict=True)
    raw.set_annotations(mne.Annotations(list(on), [0.5] * len(on), list(de)))
    return raw


def _assert_ab_events(rec, sfreq: float, events=EVENTS):
    kept = [(o, d) for o, d in events if d in ("a", "b")]
    assert rec.labels == [{"a": "A", "b": "B"}[d] for _, d in kept]
    np.testing.assert_array_equal(rec.onsets, [round(o * sfreq) for o, _ in kept])


def _write_gdf(path: Path, data_uv: np.ndarray, sfreq: int, ch_names: list[str], events) -> None:
    """A minimal GDF 1.25 file: int16 samples, 1 s records, event table mode 1 (position, type).

    Layout after the GDF 1.x specification (Schloegl, "GDF - A general dataformat for
    biosignals"), as MNE's ``_read_gdf_header`` reads it: a 256-byte fixed header, 256
    bytes per channel, the records, then the event table.
    """
    n_ch, n_t = data_uv.shape
    n_rec = n_t // sfreq
    head = b"GDF 1.25" + b"X X".ljust(80) + b"".ljust(80) + b"2020010112000000"
    head += struct.pack("<q", 256 * (n_ch + 1)) + bytes(24) + bytes(20)
    head += struct.pack("<qIII", n_rec, 1, 1, n_ch)  # records, duration 1/1 s, channels
    assert len(head) == 256
    var = b"".join(n.encode().ljust(16) for n in ch_names) + b" " * 80 * n_ch
    var += b"uV".ljust(8) * n_ch
    var += struct.pack(f"<{n_ch}d", *[-3276.7] * n_ch) + struct.pack(f"<{n_ch}d", *[3276.7] * n_ch)
    var += struct.pack(f"<{n_ch}q", *[-32767] * n_ch) + struct.pack(f"<{n_ch}q", *[32767] * n_ch)
    var += b" " * 80 * n_ch + struct.pack(f"<{n_ch}i", *[sfreq] * n_ch)
    var += struct.pack(f"<{n_ch}i", *[3] * n_ch) + bytes(32 * n_ch)  # GDF type 3 = int16
    assert len(var) == 256 * n_ch
    digital = np.round(data_uv[:, : n_rec * sfreq] * 10).astype("<i2")  # 0.1 uV per step
    records = (
        digital.reshape(n_ch, n_rec, sfreq).transpose(1, 0, 2).tobytes()
    )  # per record: channel by channel
    pos, typ = zip(*events, strict=True)
    table = bytes([1]) + int(sfreq).to_bytes(3, "little") + struct.pack("<I", len(pos))
    table += np.asarray(pos, "<u4").tobytes() + np.asarray(typ, "<u2").tobytes()  # positions 1-based
    path.write_bytes(head + var + records + table)


def _write_brainvision(folder: Path, vhdr_name: str, stem: str, data_uv: np.ndarray, sfreq: float, markers):
    """A BrainVision triplet after the Brain Products "Brain Vision Data Exchange" spec 1.0.

    The header names its data and marker files (``stem.eeg``, ``stem.vmrk``), which need
    not share the header's name. Data: IEEE float32, multiplexed, microvolts.
    """
    n_ch = data_uv.shape[0]
    chans = "\n".join(f"Ch{i + 1}=E{i + 1},,1,µV" for i in range(n_ch))
    (folder / vhdr_name).write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n; written by test_eeg_io\n\n"
        f"[Common Infos]\nCodepage=UTF-8\nDataFile={stem}.eeg\nMarkerFile={stem}.vmrk\n"
        f"DataFormat=BINARY\nDataOrientation=MULTIPLEXED\nNumberOfChannels={n_ch}\n"
        f"SamplingInterval={1e6 / sfreq:g}\n\n[Binary Infos]\nBinaryFormat=IEEE_FLOAT_32\n\n"
        f"[Channel Infos]\n{chans}\n",
        encoding="utf-8",
    )
    marks = "\n".join(
        f"Mk{i + 2}=Stimulus,{desc},{pos + 1},1,0" for i, (pos, desc) in enumerate(markers)
    )  # positions are 1-based
    (folder / f"{stem}.vmrk").write_text(
        "Brain Vision Data Exchange Marker File Version 1.0\n\n"
        f"[Common Infos]\nCodepage=UTF-8\nDataFile={stem}.eeg\n\n"
        f"[Marker Infos]\nMk1=New Segment,,1,1,0,20200101120000000000\n{marks}\n",
        encoding="utf-8",
    )
    (folder / f"{stem}.eeg").write_bytes(data_uv.T.astype("<f4").tobytes())  # (T, C) multiplexed


def _bonn_tree(root: Path, folders=("A_Z", "E_S"), n_files: int = 3, n: int = 50) -> dict[str, np.ndarray]:
    """A tiny Bonn-like layout: one integer per line, CRLF line ends as in the original files."""
    rng = np.random.default_rng(1)
    out = {}
    for folder in folders:
        (root / folder).mkdir(parents=True)
        for i in range(n_files):
            x = rng.integers(-500, 500, n)
            name = f"{folder}/{folder[-1]}{i + 1:03d}.txt"
            (root / name).write_bytes(b"".join(b"%d\r\n" % v for v in x))
            out[name] = x
    return out


def _zip(path: Path, entries: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            if name in symlinks:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)
    return path


# ----------------------------------------------------------------------------- naming
@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.edf", "edf"),
        ("A.EDF", "edf"),
        ("a.bdf", "bdf"),
        ("a.gdf", "gdf"),
        ("a_raw.fif", "fif"),
        ("a_raw.fif.gz", "fif"),
        ("a.vhdr", "brainvision"),
        ("a.mat", "mat"),
        ("Z001.txt", "ascii"),
        ("N001.TXT", "ascii"),
        ("a.asc", "ascii"),
        ("a.vmrk", None),
        ("a.eeg", None),
        ("README", None),
        ("README.txt", None),
        ("._S001R04.edf", None),
        ("chb01_03.edf.seizures", None),
        ("data.zip", None),
    ],
)
def test_format_of(name, fmt):
    assert format_of(Path(name)) == fmt


def test_describe(tmp_path):
    r = tmp_path
    bids = describe(r / "sub-07" / "ses-2" / "eeg" / "sub-07_ses-2_task-mi_run-3_eeg.edf", r)
    assert (bids.subject, bids.session, bids.run, bids.format) == ("07", "2", "3", "edf")
    assert (describe(r / "sub-01_ses-01.edf", r).session, describe(r / "sub-01.gdf", r).session) == (
        "01",
        "1",
    )
    phys = describe(r / "S001R04.edf", r)
    assert (phys.subject, phys.session, phys.run, phys.folder_label) == ("001", "1", "04", None)
    plain = describe(r / "x" / "A01T.gdf", r)
    assert (plain.subject, plain.session, plain.run) == ("A01T", "1", "1")
    assert describe(r / "rec_raw.fif.gz", r).subject == "rec_raw"
    pat = describe(r / "A01T.gdf", r, name_pattern=r"A(?P<subject>\d+)(?P<session>[TE])")
    assert (pat.subject, pat.session, pat.run) == ("01", "T", "1")
    bonn = describe(r / "bonn" / "E_S" / "S001.txt", r)
    assert (bonn.subject, bonn.session, bonn.run, bonn.folder_label) == ("all", "E_S", "S001", "E_S")
    assert describe(r / "E_S" / "S001.txt", r, name_pattern=r"(?P<subject>S\d)").subject == "S0"
    with pytest.raises(EEGInputError, match=r"A01T\.gdf.*name_pattern"):
        describe(r / "A01T.gdf", r, name_pattern=r"sub(?P<subject>\d+)")
    with pytest.raises(EEGInputError, match=r"a\.vmrk"):
        describe(r / "a.vmrk", r)


# ----------------------------------------------------------------------------- MNE formats
def test_edf_synthetic(synthetic, tmp_path):
    target, cache = _dirs(tmp_path)
    files = fetch_sources(str(synthetic[0].parent), target, cache)
    assert [f.name for f in files] == ["sub-01_ses-01.edf", "sub-02_ses-01.edf"]
    for k, f in enumerate(files):
        info = describe(f, target)
        assert (info.subject, info.session, info.run) == (f"{k + 1:02d}", "01", "1")
        rec = read_recording(f, info.format, event_map=MI_MAP)
        _, events = synthesize_recording(k, 0, trials_per_class=TPC)  # what the generator wrote
        assert rec.labels == [d for _, _, d in events]
        assert Counter(rec.labels) == {"left_hand": TPC, "right_hand": TPC}
        np.testing.assert_array_equal(rec.onsets, [round(o * 250) for o, _, _ in events])
        assert rec.raw.ch_names == list(MI_CHANNELS) and rec.raw.info["sfreq"] == 250
        assert rec.raw.preload and rec.source == f.name


def test_fif_round_trip(tmp_path):
    raw = _annotate(_raw())
    raw.save(tmp_path / "x_raw.fif", verbose="error")
    rec = read_recording(tmp_path / "x_raw.fif", "fif", event_map={"a": "A", "b": "B"})
    _assert_ab_events(rec, 100.0)
    np.testing.assert_allclose(rec.raw.get_data(), raw.get_data(), rtol=1e-6, atol=1e-12)


def test_fif_with_offset_first_samp(tmp_path):
    """A cropped FIF keeps its first_samp; onsets are counted from the first sample read."""
    raw = _annotate(_raw(seconds=12.0))
    raw.save(tmp_path / "full_raw.fif", verbose="error")
    cropped = mne.io.read_raw_fif(tmp_path / "full_raw.fif", preload=True, verbose="error").crop(tmin=2.0)
    cropped.save(tmp_path / "crop_raw.fif", verbose="error")
    rec = read_recording(tmp_path / "crop_raw.fif", "fif", event_map={"a": "A", "b": "B"})
    shifted = [(o - 2.0, d) for o, d in EVENTS if o >= 2.0]
    _assert_ab_events(rec, 100.0, shifted)


def test_bdf_round_trip(tmp_path):
    raw = _annotate(_raw(sfreq=128.0))
    mne.export.export_raw(tmp_path / "x.bdf", raw, fmt="bdf", verbose="error")
    rec = read_recording(tmp_path / "x.bdf", "bdf", event_map={"a": "A", "b": "B"})
    _assert_ab_events(rec, 128.0)
    assert rec.raw.ch_names == raw.ch_names
    np.testing.assert_allclose(rec.raw.get_data(), raw.get_data(), atol=0.1e-6)  # 24-bit resolution


def test_brainvision_round_trip_brings_sidecars(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = np.random.default_rng(2).normal(0, 20, (3, 500))
    markers = [(100, "S  1"), (200, "S  2"), (300, "S  1"), (400, "S 99")]
    _write_brainvision(src, "sub-03_task-mi_eeg.vhdr", "blob", data, 250.0, markers)
    (src / "notes.pdf").write_bytes(b"%PDF")  # not a recording: not fetched
    target, cache = _dirs(tmp_path)
    files = fetch_sources(str(src / "*.vhdr"), target, cache)  # the glob names only the header
    assert files == [target / "sub-03_task-mi_eeg.vhdr"]
    assert sorted(p.name for p in target.iterdir()) == ["blob.eeg", "blob.vmrk", "sub-03_task-mi_eeg.vhdr"]
    assert describe(files[0], target).subject == "03"
    rec = read_recording(files[0], "brainvision", event_map={"Stimulus/S  1": "A", "Stimulus/S  2": "B"})
    assert rec.labels == ["A", "B", "A"]
    np.testing.assert_array_equal(rec.onsets, [100, 200, 300])
    np.testing.assert_allclose(rec.raw.get_data(), data * 1e-6, rtol=1e-6)  # float32 uV -> volts


def test_brainvision_missing_sidecar(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _write_brainvision(src, "rec.vhdr", "rec", np.zeros((2, 100)), 100.0, [(10, "S  1")])
    (src / "rec.eeg").unlink()
    target, cache = _dirs(tmp_path)
    with pytest.raises(EEGInputError, match=r"rec\.vhdr.*'rec\.eeg'.*missing"):
        fetch_sources(str(src), target, cache)


def test_gdf_hand_written(tmp_path):
    data = np.random.default_rng(3).normal(0, 30, (4, 1000))  # uV
    events = [(101, 769), (301, 770), (501, 768), (701, 769)]  # 1-based positions, GDF codes
    _write_gdf(tmp_path / "A01T.gdf", data, 250, ["C3", "Cz", "C4", "Pz"], events)
    rec = read_recording(tmp_path / "A01T.gdf", "gdf", event_map={"769": "left_hand", "770": "right_hand"})
    assert rec.labels == ["left_hand", "right_hand", "left_hand"]
    np.testing.assert_array_equal(rec.onsets, [100, 300, 700])
    assert rec.raw.ch_names == ["C3", "Cz", "C4", "Pz"] and rec.raw.info["sfreq"] == 250
    np.testing.assert_allclose(rec.raw.get_data(), data * 1e-6, atol=0.051e-6)  # 0.1 uV steps


def test_stim_channel(tmp_path):
    raw = _raw(n_ch=2)
    stim = np.zeros((1, raw.n_times))
    for i, code, n in [(0, 2, 5), (100, 1, 5), (300, 2, 1), (500, 3, 5), (700, 1, 5)]:
        stim[0, i : i + n] = code  # an event at the first sample and a one-sample pulse are events too
    info = mne.create_info(["STI 014", "EOG1"], raw.info["sfreq"], ch_types=["stim", "eog"], verbose="error")
    raw.add_channels([mne.io.RawArray(np.vstack([stim, np.zeros_like(stim)]), info, verbose="error")])
    raw.save(tmp_path / "stim_raw.fif", verbose="error")
    rec = read_recording(
        tmp_path / "stim_raw.fif", "fif", event_map={"1": "A", "2": "B"}, stim_channel="STI 014"
    )
    assert rec.labels == ["B", "A", "B", "A"]
    np.testing.assert_array_equal(rec.onsets, [0, 100, 300, 700])
    assert rec.raw.ch_names == ["E1", "E2"]  # stim and EOG dropped after the events were read
    with pytest.raises(EEGInputError, match=r"stim_raw\.fif.*no stim channel 'TRIG'.*STI 014"):
        read_recording(tmp_path / "stim_raw.fif", "fif", event_map={"1": "A"}, stim_channel="TRIG")
    with pytest.raises(
        EEGInputError, match=r"stim_raw\.fif: no events among \['7'\]; found: \['1', '2', '3'\]"
    ):
        read_recording(tmp_path / "stim_raw.fif", "fif", event_map={"7": "A"}, stim_channel="STI 014")


# ----------------------------------------------------------------------------- bad recordings
def test_no_events(tmp_path):
    _raw().save(tmp_path / "quiet_raw.fif", verbose="error")
    with pytest.raises(EEGInputError, match=r"quiet_raw\.fif: no events"):
        read_recording(tmp_path / "quiet_raw.fif", "fif", event_map={"a": "A"})


def test_only_unmapped_events(tmp_path):
    raw = _annotate(_raw(), [(1.0, "T0"), (3.0, "T0")])
    mne.export.export_raw(tmp_path / "rest.edf", raw, fmt="edf", verbose="error")
    with pytest.raises(EEGInputError, match=r"rest\.edf: no events among \['T1', 'T2'\]; found: \['T0'\]"):
        read_recording(tmp_path / "rest.edf", "edf", event_map={"T1": "left_hand", "T2": "right_hand"})


def test_truncated_and_corrupt_edf(synthetic, tmp_path):
    good = synthetic[0].read_bytes()
    cases = {
        "short.edf": good[:100],  # cut inside the header
        "halved.edf": good[: len(good) // 2],  # header intact, half of the data records missing
        "corrupt.edf": good[:252] + b"abcd" + good[256:],  # the number-of-signals field
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(EEGInputError, match=re.escape(name) + ": not a readable EDF file"):
            read_recording(tmp_path / name, "edf", event_map=MI_MAP)


def test_read_recording_rejects_wrong_format(tmp_path):
    with pytest.raises(EEGInputError, match=r"x\.mat: read_recording reads"):
        read_recording(tmp_path / "x.mat", "mat", event_map={"a": "A"})


# ----------------------------------------------------------------------------- MAT
LAYOUTS = ["trials,channels,samples", "channels,samples,trials", "samples,channels,trials"]


def _epochs(n=6, c=3, t=40) -> np.ndarray:
    return np.random.default_rng(4).normal(0, 10, (n, c, t))  # (n, C, T) in MATLAB order when saved


def _to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """(n, C, T) -> the axes ``layout`` names."""
    src = ["trials", "channels", "samples"]
    return np.transpose(x, [src.index(a) for a in layout.split(",")])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mat_v5_layouts(tmp_path, layout):
    x = _epochs()
    labels = np.array([[1], [2], [1], [2], [2], [1]], dtype=np.uint8)  # column vector, as MATLAB saves it
    names = np.array(["C3", "Cz", "C4"], dtype=object)  # a cell of strings
    scipy.io.savemat(
        tmp_path / "ep.mat", {"X": _to_layout(x, layout), "y": labels, "fs": 128.0, "chans": names}
    )
    ep = read_mat(
        tmp_path / "ep.mat",
        data_key="X",
        label_key="y",
        sfreq_key="fs",
        layout=layout,
        ch_names_key="chans",
        label_map={"1": "left_hand", "2": "right_hand"},
    )
    np.testing.assert_array_equal(ep.data, x)
    assert ep.data.dtype == np.float64 and ep.data.flags.c_contiguous
    assert ep.labels == ["left_hand", "right_hand", "left_hand", "right_hand", "right_hand", "left_hand"]
    assert (ep.sfreq, ep.ch_names, ep.source) == (128.0, ["C3", "Cz", "C4"], "ep.mat")


def test_mat_v5_struct_and_text_labels(tmp_path):
    x = _epochs(n=4, c=1, t=30)[:, 0, :]  # one channel: MATLAB keeps [trials x samples]
    eeg = {"X": x, "labels": np.array(["left ", "right", "left ", "right"])}  # a char matrix
    scipy.io.savemat(tmp_path / "s.mat", {"eeg": eeg})
    ep = read_mat(
        tmp_path / "s.mat",
        data_key="eeg.X",
        label_key="eeg.labels",
        sfreq=100.0,
        layout="trials,samples,channels",
    )
    assert ep.data.shape == (4, 1, 30) and ep.ch_names == ["EEG1"]
    np.testing.assert_array_equal(ep.data[:, 0], x)
    assert ep.labels == ["left", "right", "left", "right"]
    with pytest.raises(
        EEGInputError, match=r"s\.mat: no data key 'eeg\.Y' in 'eeg'; keys: \['X', 'labels'\]"
    ):
        read_mat(tmp_path / "s.mat", data_key="eeg.Y", label_key="eeg.labels", sfreq=100.0)


def _h5_mat(path: Path, variables: dict, cellstr: dict[str, list[str]] = ()) -> None:
    """A MATLAB v7.3 file: 512-byte userblock, arrays stored with their axes reversed, MATLAB_class attrs."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, value in variables.items():
            arr = np.asarray(value)
            ds = f.create_dataset(key, data=arr.T)  # h5py/C order sees MATLAB's column-major axes reversed
            ds.attrs["MATLAB_class"] = np.bytes_("double")
        refs = f.create_group("#refs#")
        for key, strings in dict(cellstr).items():
            items = []
            for i, s in enumerate(strings):
                d = refs.create_dataset(f"{key}{i}", data=np.array([[ord(ch)] for ch in s], dtype=np.uint16))
                d.attrs["MATLAB_class"] = np.bytes_("char")
                items.append(d.ref)
            ds = f.create_dataset(key, data=np.array([items], dtype=h5py.ref_dtype))  # a 1 x n cell, reversed
            ds.attrs["MATLAB_class"] = np.bytes_("cell")
    with open(path, "r+b") as fh:  # MATLAB's text header in the userblock
        fh.write(
            b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
        )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mat_v73_layouts(tmp_path, layout):
    pytest.importorskip("h5py")
    x = _epochs(n=5, c=2, t=20)
    labels = ["rest", "seizure", "rest", "rest", "seizure"]
    _h5_mat(tmp_path / "v73.mat", {"X": _to_layout(x, layout), "fs": [[256.0]]}, cellstr={"y": labels})
    ep = read_mat(tmp_path / "v73.mat", data_key="X", label_key="y", sfreq_key="fs", layout=layout)
    np.testing.assert_array_equal(ep.data, x)
    assert ep.labels == labels and ep.sfreq == 256.0


def test_mat_v73_numeric_labels_and_missing_key(tmp_path):
    pytest.importorskip("h5py")
    x = _epochs(n=3, c=2, t=10)
    _h5_mat(tmp_path / "n.mat", {"data": x, "lab": [[1.0], [0.0], [1.0]]})
    ep = read_mat(tmp_path / "n.mat", data_key="data", label_key="lab", sfreq=100.0)
    assert ep.labels == ["1", "0", "1"]
    with pytest.raises(EEGInputError, match=r"n\.mat: no labels key 'y'; keys: \['data', 'lab'\]"):
        read_mat(tmp_path / "n.mat", data_key="data", label_key="y", sfreq=100.0)


def test_mat_errors(tmp_path):
    p = tmp_path / "bad.mat"
    scipy.io.savemat(
        p,
        {
            "X": _epochs(n=4),
            "y": np.arange(3),
            "y4": np.arange(4),
            "fs": [[0.0]],
            "flat": np.zeros((2, 3, 4, 5)),
        },
    )
    cases = [
        (
            dict(data_key="data", label_key="y", sfreq=100.0),
            r"bad\.mat: no data key 'data'; keys: \['X', 'flat', 'fs', 'y', 'y4'\]",
        ),
        (dict(data_key="X", label_key="lab", sfreq=100.0), r"bad\.mat: no labels key 'lab'; keys:"),
        (
            dict(data_key="X", label_key="y", sfreq=100.0),
            r"bad\.mat: 'y' holds 3 labels but 'X' has 4 trials",
        ),
        (dict(data_key="X", label_key="y"), r"bad\.mat: give sfreq or sfreq_key"),
        (dict(data_key="X", label_key="y", sfreq_key="rate"), r"bad\.mat: no sfreq key 'rate'"),
        (dict(data_key="X", label_key="y4", sfreq_key="fs"), r"bad\.mat: 'fs' must hold one positive number"),
        (dict(data_key="flat", label_key="y", sfreq=1.0), r"bad\.mat: 'flat' has 4 dimensions"),
        (dict(data_key="X", label_key="y", sfreq=1.0, layout="trials,samples"), r"bad\.mat: layout"),
    ]
    for kwargs, message in cases:
        with pytest.raises(EEGInputError, match=message):
            read_mat(p, **kwargs)
    scipy.io.savemat(p, {"X": _epochs(n=3), "y": np.array([1, 2, 5])})
    with pytest.raises(EEGInputError, match=r"bad\.mat: label '5' in 'y' is not in label_map"):
        read_mat(p, data_key="X", label_key="y", sfreq=1.0, label_map={"1": "a", "2": "b"})
    p.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(EEGInputError, match=r"bad\.mat: not a readable MATLAB file"):
        read_mat(p, data_key="X", label_key="y", sfreq=1.0)


# ----------------------------------------------------------------------------- ASCII segments
def test_ascii_bonn_like(tmp_path):
    written = _bonn_tree(tmp_path / "bonn", folders=("A_Z", "D_F", "E_S"))
    (tmp_path / "bonn" / "README.txt").write_text("Bonn EEG, folder = set\n")
    (tmp_path / "bonn" / ".dvc").mkdir()
    (tmp_path / "bonn" / ".dvc" / "Z999.txt").write_text("1\n")  # hidden folders are not walked
    target, cache = _dirs(tmp_path)
    files = fetch_sources(tmp_path / "bonn", target, cache)  # a Path is fine too
    assert len(files) == 9 and not (target / "README.txt").exists()
    ep = read_ascii_segments(files, target, sfreq=173.61)
    assert ep.data.shape == (9, 1, 50) and ep.ch_names == ["EEG"] and ep.sfreq == 173.61
    assert ep.labels == ["A_Z"] * 3 + ["D_F"] * 3 + ["E_S"] * 3
    np.testing.assert_array_equal(ep.data[-1, 0], written["E_S/S003.txt"])
    two = read_ascii_segments(files, target, sfreq=173.61, label_map={"A_Z": "healthy", "E_S": "seizure"})
    assert two.labels == ["healthy"] * 3 + ["seizure"] * 3  # D_F skipped
    np.testing.assert_array_equal(two.data[0, 0], written["A_Z/Z001.txt"])


def test_ascii_errors(tmp_path):
    _bonn_tree(tmp_path, folders=("A_Z",), n_files=2)
    (tmp_path / "A_Z" / "Z002.txt").write_bytes(b"1\r\n2\r\n")  # shorter
    files = sorted(tmp_path.rglob("*.txt"))
    with pytest.raises(EEGInputError, match=r"A_Z/Z002\.txt: 2 samples, but A_Z/Z001\.txt has 50"):
        read_ascii_segments(files, tmp_path, sfreq=100.0)
    (tmp_path / "A_Z" / "Z002.txt").write_bytes(b"1\n2\n\n3\nabc\n5\n")
    with pytest.raises(EEGInputError, match=r"A_Z/Z002\.txt: line 5 is not a number: 'abc'"):
        read_ascii_segments(files, tmp_path, sfreq=100.0)
    (tmp_path / "A_Z" / "Z002.txt").write_bytes(b"1\n2 3\n")
    with pytest.raises(EEGInputError, match=r"A_Z/Z002\.txt: line 2 is not a number: '2 3'"):
        read_ascii_segments(files, tmp_path, sfreq=100.0)
    with pytest.raises(EEGInputError, match=r"no ASCII segment .*folders found: \['A_Z'\]"):
        read_ascii_segments(files, tmp_path, sfreq=100.0, label_map={"E_S": "seizure"})


# ----------------------------------------------------------------------------- fetching
def test_fetch_zip_and_glob_keep_structure(tmp_path):
    _bonn_tree(tmp_path / "bonn")
    entries = {
        p.relative_to(tmp_path / "bonn").as_posix(): p.read_bytes()
        for p in (tmp_path / "bonn").rglob("*.txt")
    }
    entries["__MACOSX/A_Z/._Z001.txt"] = b"resource fork"
    _zip(tmp_path / "bonn_eeg.zip", entries)
    target, cache = _dirs(tmp_path)
    files = fetch_sources(
        [str(tmp_path / "bonn_eeg.zip"), str(tmp_path / "bonn" / "*" / "*1.txt")], target, cache
    )
    rel = [f.relative_to(target).as_posix() for f in files]
    assert rel == ["A_Z/Z001.txt", "E_S/S001.txt"] + [
        f"bonn_eeg/{k}" for k in sorted(entries) if "MACOSX" not in k
    ]
    assert not (target / "bonn_eeg" / "__MACOSX").exists()


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("../evil.txt", "has a '..' component"),
        ("A_Z/../../../evil.txt", "has a '..' component"),
        ("/tmp/evil.txt", "has an absolute path"),
        ("C:/evil.txt", "has a drive letter"),
        ("A_Z/link.txt", "is a symbolic link"),
    ],
)
def test_fetch_rejects_unsafe_zip(tmp_path, bad, why):
    work = tmp_path / "work"
    work.mkdir()
    target, cache = _dirs(work)
    archive = _zip(
        tmp_path / "evil.zip",
        {"A_Z/Z001.txt": b"1\n2\n", bad: b"/etc/passwd"},
        symlinks=(bad,) * ("link" in bad),
    )
    before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(EEGInputError, match=rf"evil\.zip: unsafe archive entry '{bad}' {why}"):
        fetch_sources(str(archive), target, cache)
    assert {p for p in tmp_path.rglob("*")} == before  # nothing outside target, nothing in it either
    assert list(target.iterdir()) == [] and not Path("/tmp/evil.txt").exists()


def test_fetch_errors(tmp_path):
    target, cache = _dirs(tmp_path)
    with pytest.raises(EEGInputError, match=r"nothing_here.*\*\.edf.*matches no file"):
        fetch_sources(str(tmp_path / "nothing_here" / "*.edf"), target, cache)
    with pytest.raises(EEGInputError, match=r"missing\.edf.*no such file"):
        fetch_sources(str(tmp_path / "missing.edf"), target, cache)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "README.md").write_text("no data")
    with pytest.raises(EEGInputError, match=r"no EEG recording found in \[.*docs"):
        fetch_sources(str(tmp_path / "docs"), target, cache)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "sub-01.edf").write_bytes(b"0")
    with pytest.raises(EEGInputError, match=r"two sources give the file 'sub-01\.edf'"):
        fetch_sources([str(tmp_path / "a"), str(tmp_path / "b")], target, cache)
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(EEGInputError, match=r"broken\.zip: not a readable zip archive"):
        fetch_sources(str(tmp_path / "broken.zip"), target, cache)


def test_fetch_remote_memory_fs_is_cached(synthetic, tmp_path, monkeypatch):
    """A remote (fsspec) source is downloaded into the cache, retried on a dropped connection, then read."""
    fs = fsspec.filesystem("memory")
    root = f"/eeg-{uuid.uuid4().hex}"
    try:
        edf = synthetic[1].read_bytes()
        fs.pipe(f"{root}/mi/sub-02_ses-01.edf", edf)
        fs.pipe(f"{root}/mi/notes.txt.bak", b"x")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("E_S/S001.txt", b"1\n2\n3\n")
            zf.writestr("A_Z/Z001.txt", b"4\n5\n6\n")
        fs.pipe(f"{root}/bonn.zip", buf.getvalue())

        real_open, calls = fs.open, []

        def flaky_open(path, mode="rb", *args, **kwargs):
            if "r" in mode:  # the downloads (tasks.store.fetch_to_cache opens the remote file to read it)
                calls.append(path)
                if len(calls) == 1:
                    raise ConnectionError("connection reset by peer")
            return real_open(path, mode, *args, **kwargs)

        monkeypatch.setattr(fs, "open", flaky_open)  # fsspec caches the instance: the one the download uses
        target, cache = _dirs(tmp_path)
        files = fetch_sources([f"memory://{root}/mi", f"memory://{root}/*.zip"], target, cache, delay_s=0.0)
        assert [f.relative_to(target).as_posix() for f in files] == [
            "bonn/A_Z/Z001.txt",
            "bonn/E_S/S001.txt",
            "sub-02_ses-01.edf",
        ]
        assert len(calls) == 3  # one dropped connection, retried; then the zip
        assert (cache / "sub-02_ses-01.edf").read_bytes() == edf and (cache / "bonn.zip").is_file()
        rec = read_recording(target / "sub-02_ses-01.edf", "edf", event_map=MI_MAP)
        assert Counter(rec.labels) == {"left_hand": TPC, "right_hand": TPC}
        ep = read_ascii_segments(files[:2], target / "bonn", sfreq=10.0)
        assert ep.labels == ["A_Z", "E_S"] and ep.data[:, 0].tolist() == [[4, 5, 6], [1, 2, 3]]
        with pytest.raises(EEGInputError, match=rf"memory://{root}/none/\*\.edf.*matches no file"):
            fetch_sources(f"memory://{root}/none/*.edf", target, cache)
    finally:
        fs.rm(root, recursive=True)


# ----------------------------------------------------------------------------- real data (when present)
@pytest.mark.skipif(not BONN_ZIP.exists(), reason="shared/data/eeg/bonn_eeg.zip not present")
def test_bonn_zip(tmp_path):
    target, cache = _dirs(tmp_path)
    t0 = time.perf_counter()
    files = fetch_sources(str(BONN_ZIP), target, cache)
    ep = read_ascii_segments(files, target / "bonn_eeg", sfreq=173.61)
    elapsed = time.perf_counter() - t0
    assert ep.data.shape == (500, 1, 4097)
    assert Counter(ep.labels) == {k: 100 for k in ("A_Z", "B_O", "C_N", "D_F", "E_S")}
    assert describe(files[0], target / "bonn_eeg").folder_label == "A_Z"
    assert np.isfinite(ep.data).all() and ep.data.std() > 10  # microvolts as stored
    assert elapsed < 10, f"fetching and reading Bonn took {elapsed:.1f} s"  # about 1 s unloaded


@pytest.mark.skipif(not EEGMMIDB.exists(), reason="shared/data/eeg/eegmmidb_S001 not present")
def test_eegmmidb_imagery_runs(tmp_path):
    target, cache = _dirs(tmp_path)
    files = fetch_sources(str(EEGMMIDB / "S001R*.edf"), target, cache)
    assert [f.name for f in files] == ["S001R04.edf", "S001R08.edf", "S001R12.edf"]
    total: Counter = Counter()
    for f in files:
        info = describe(f, target)
        assert info.subject == "001" and info.run == f.stem[-2:]
        rec = read_recording(f, info.format, event_map={"T1": "left_hand", "T2": "right_hand"})
        assert len(rec.raw.ch_names) == 64 and rec.raw.info["sfreq"] == 160
        assert np.all(np.diff(rec.onsets) > 0) and rec.onsets[-1] < rec.raw.n_times
        total.update(rec.labels)
    assert total == {"left_hand": 23, "right_hand": 22}
