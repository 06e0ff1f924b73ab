"""Hostile inputs to the netflow, eeg and turbulence readers (issue 13, findings 7-10).

Every case writes its bad input in a throw-away project, runs the domain's stage function
and asserts: the domain's own error type (not a traceback from a library), a message naming
the file and the problem (and the params key for a cap), ``data/`` exactly as before, and no
temporary folder left behind. Decompression bombs, files declaring huge arrays, links out of
the source, HDF5 data stored in other files, labels that go silently wrong, reader errors
that used to escape as library exceptions.
"""

from __future__ import annotations

import gzip
import io
import os
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest

from tasks import store
from tasks.domains.eeg.sources import EEGInputError
from tasks.domains.netflow.records import SchemaError
from tasks.domains.netflow.synthetic import generate as generate_flows
from tasks.domains.turbulence.layout import FieldError
from tasks.params import ParamsError, load_params

GiB = 2**30


# ============================================================================ helpers
def _tree(project: Path) -> dict[str, str]:
    """Every path under data/ (hidden ones too) with its file hash: temp leftovers show up here."""
    data = project / "data"
    if not data.exists():
        return {}
    return {str(p.relative_to(project)): (store.file_md5(p) if p.is_file() else "dir") for p in data.rglob("*")}


def _leftovers(project: Path) -> list[str]:
    """Temporary files or folders (store's ``.<name>.*.tmp``) anywhere in the project."""
    return sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.name.endswith(".tmp")
                  or ".tmp." in p.name)


def _flows(project: Path, n: int = 1000) -> pl.DataFrame:
    """A valid NF-v2 CSV (as strings) to damage."""
    path = generate_flows(project / "gen", n_flows=n, seed=3)[0]
    return pl.read_csv(path, infer_schema=False)


def _write_csv(df: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_csv(path)
    return path


def _edf(path: Path, ch_names=("C3", "Cz", "C4"), seconds: float = 30.0) -> Path:
    import mne

    sfreq = 250.0
    rng = np.random.default_rng(0)
    raw = mne.io.RawArray(rng.normal(0, 10e-6, (len(ch_names), int(seconds * sfreq))),
                          mne.create_info(list(ch_names), sfreq, "eeg"), verbose="error")
    events = [(2.0 + 5 * i, "left_hand" if i % 2 == 0 else "right_hand") for i in range(4)]
    raw.set_annotations(mne.Annotations([o for o, _ in events], [4.0] * 4, [d for _, d in events]))
    path.parent.mkdir(parents=True, exist_ok=True)
    mne.export.export_raw(path, raw, fmt="edf", physical_range=(-800.0, 800.0), overwrite=True, verbose="error")
    return path


def _mat73(path: Path, x: np.ndarray | None = None, **datasets) -> Path:
    """A MATLAB v7.3 file (HDF5): X (trials, channels, samples) in MATLAB order, so h5py holds it reversed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if x is not None:
            f["X"] = x.T
        f["y"] = np.array([[1.0, 2.0, 1.0, 2.0]])
        for k, v in datasets.items():
            v(f, k)
    return path


MAT_OVERRIDES = ["ingest.eeg.spec.mat.sfreq=100", "ingest.eeg.spec.label_map={'1': left_hand, '2': right_hand}"]


def _field(shape=(3, 4, 8, 8, 2), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _h5_field(path: Path, make: Callable[[h5py.File], None] | None = None, vel: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if make is not None:
            make(f)
        else:
            f["velocity"] = _field() if vel is None else vel
        f.attrs["dt"] = 0.5
    return path


# ============================================================================ the cases
@dataclass
class Case:
    id: str
    domain: str
    make: Callable[[Path], list[str]]
    """Writes the bad input under the project; returns the params overrides that point the stage at it."""
    error: type[Exception]
    match: str
    """Regex the message must match: the file and the problem."""
    stage: str = "ingest"
    prepare: Callable[[Path], list[str]] | None = None
    """A good run of ingest first (for a preprocess case); returns its overrides."""


# ---------------------------------------------------------------------------- netflow
def nf_gz_ratio_bomb(project: Path) -> list[str]:
    df = _flows(project, 50)
    line = df.head(1).write_csv(include_header=False).encode()
    body = df.head(0).write_csv().encode() + line * (24 * 2**20 // len(line))  # 24 MiB of one repeated row
    path = project / "in" / "bomb.csv.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(body, compresslevel=9))
    return [f"ingest.netflow.source={path}"]


def nf_gz_over_bytes(project: Path) -> list[str]:
    csv = _write_csv(_flows(project), project / "in" / "flows.csv")
    gz = csv.with_suffix(".csv.gz")
    gz.write_bytes(gzip.compress(csv.read_bytes()))
    return [f"ingest.netflow.source={gz}", "ingest.netflow.max_extracted_bytes=100000"]


def nf_not_gzip(project: Path) -> list[str]:
    csv = _write_csv(_flows(project), project / "in" / "flows.csv")
    fake = project / "in" / "flows.csv.gz"
    fake.write_bytes(csv.read_bytes())  # a plain CSV named .gz
    return [f"ingest.netflow.source={fake}"]


def nf_truncated_gz(project: Path) -> list[str]:
    csv = _write_csv(_flows(project), project / "in" / "flows.csv")
    data = gzip.compress(csv.read_bytes())
    gz = project / "in" / "cut.csv.gz"
    gz.write_bytes(data[: len(data) // 2])
    return [f"ingest.netflow.source={gz}"]


def nf_parquet_list_column(project: Path) -> list[str]:
    df = _flows(project).with_columns(pl.col("IN_BYTES").map_elements(lambda v: [v, v],
                                                                       return_dtype=pl.List(pl.String)))
    path = project / "in" / "nested.parquet"
    path.parent.mkdir(parents=True)
    df.write_parquet(path)
    return [f"ingest.netflow.source={path}"]


def nf_benign_case(project: Path) -> list[str]:
    path = _write_csv(_flows(project), project / "in" / "flows.csv")
    return [f"ingest.netflow.source={path}", "ingest.netflow.spec.benign_value=benign"]


def nf_nan_labels(project: Path) -> list[str]:
    df = _flows(project).with_row_index("i").with_columns(
        pl.when(pl.col("i") % 97 == 5).then(pl.lit("NaN")).otherwise(pl.col("Attack")).alias("Attack")).drop("i")
    return [f"ingest.netflow.source={_write_csv(df, project / 'in' / 'flows.csv')}"]


def nf_duplicate_header(project: Path) -> list[str]:
    df = _flows(project)
    text = df.write_csv()
    header, rest = text.split("\n", 1)
    names = header.split(",")
    j = names.index("IN_BYTES")
    lines = [header + ",IN_BYTES"] + [ln + "," + ln.split(",")[j] for ln in rest.splitlines()]
    path = project / "in" / "dup.csv"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n")
    return [f"ingest.netflow.source={path}"]


def nf_class_only_in_test(project: Path) -> list[str]:
    df = _flows(project).with_row_index("i")
    df = df.with_columns(pl.when(pl.col("i") >= df.height - 40).then(pl.lit("Zeroday"))
                         .otherwise(pl.col("Attack")).alias("Attack")).drop("i")
    return [f"ingest.netflow.source={_write_csv(df, project / 'in' / 'flows.csv')}"]


# ---------------------------------------------------------------------------- eeg
def eeg_zip_ratio_bomb(project: Path) -> list[str]:
    path = project / "in" / "rec.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("sub-01.edf", b"\0" * (16 * 2**20))  # 16 MiB that packs to ~16 kB
    return [f"ingest.eeg.source={path}"]


def eeg_zip_over_bytes(project: Path) -> list[str]:
    edf = _edf(project / "gen" / "sub-01.edf")
    path = project / "in" / "rec.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(edf, "sub-01.edf")
    return [f"ingest.eeg.source={path}", "ingest.eeg.max_extracted_bytes=10000"]


def eeg_symlink_out_of_source(project: Path) -> list[str]:
    _edf(project / "in" / "sub-01.edf")
    secret = _edf(project / "elsewhere" / "private.edf")
    os.symlink(secret, project / "in" / "sub-02.edf")
    return [f"ingest.eeg.source={project / 'in'}"]


def eeg_mat_declares_huge(project: Path) -> list[str]:
    def huge(f, k):  # 128 GiB declared, nothing written: the file stays a few kB
        f.create_dataset("X", shape=(2**20, 64, 256), dtype="f8", chunks=(1, 64, 256))

    _mat73(project / "in" / "sub-01.mat", X=huge)
    return [f"ingest.eeg.source={project / 'in'}", *MAT_OVERRIDES]


def eeg_mat_external_storage(project: Path) -> list[str]:
    x = np.random.default_rng(0).normal(size=(4, 3, 200))
    outside = project / "elsewhere" / "raw.bin"
    outside.parent.mkdir(parents=True)
    outside.write_bytes(np.ascontiguousarray(x.T).tobytes())

    def ext(f, k):
        f.create_dataset("X", shape=x.T.shape, dtype="f8", external=[(str(outside), 0, x.nbytes)])

    _mat73(project / "in" / "sub-01.mat", X=ext)
    return [f"ingest.eeg.source={project / 'in'}", *MAT_OVERRIDES]


def eeg_mat_external_link(project: Path) -> list[str]:
    x = np.random.default_rng(0).normal(size=(4, 3, 200))
    other = project / "elsewhere" / "other.h5"
    other.parent.mkdir(parents=True)
    with h5py.File(other, "w") as f:
        f["X"] = x.T

    def link(f, k):
        f["X"] = h5py.ExternalLink(str(other), "/X")

    _mat73(project / "in" / "sub-01.mat", X=link)
    return [f"ingest.eeg.source={project / 'in'}", *MAT_OVERRIDES]


def eeg_mat_nan_channel(project: Path) -> list[str]:
    x = np.random.default_rng(0).normal(size=(4, 3, 200))
    x[:, 1, :] = np.nan  # channel EEG2 dead
    _mat73(project / "in" / "sub-01.mat", x)
    return [f"ingest.eeg.source={project / 'in'}", *MAT_OVERRIDES]


def eeg_fif_nan_channel(project: Path) -> list[str]:
    import mne

    sfreq = 250.0
    data = np.random.default_rng(0).normal(0, 10e-6, (3, int(30 * sfreq)))
    data[2] = np.nan
    raw = mne.io.RawArray(data, mne.create_info(["C3", "Cz", "C4"], sfreq, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([2.0, 7.0], [4.0, 4.0], ["left_hand", "right_hand"]))
    path = project / "in" / "sub-01_raw.fif"
    path.parent.mkdir(parents=True)
    raw.save(path, verbose="error")
    return [f"ingest.eeg.source={project / 'in'}"]


def eeg_duplicate_channel_names(project: Path) -> list[str]:
    path = _edf(project / "in" / "sub-01.edf")
    data = bytearray(path.read_bytes())
    ns = int(data[252:256].decode())
    labels = [data[256 + 16 * i: 256 + 16 * (i + 1)].decode().strip() for i in range(ns)]
    j = labels.index("C4")
    data[256 + 16 * j: 256 + 16 * (j + 1)] = b"C3".ljust(16)  # C3, Cz, C3
    path.write_bytes(bytes(data))
    return [f"ingest.eeg.source={project / 'in'}"]


# ---------------------------------------------------------------------------- turbulence
def tb_h5_declares_huge(project: Path) -> list[str]:
    path = _h5_field(project / "in" / "huge.h5", lambda f: f.create_dataset(
        "velocity", shape=(256, 1024, 256, 256, 2), dtype="f4", chunks=(1, 1, 64, 64, 2)))  # 128 GiB declared
    assert path.stat().st_size < 100_000
    return [f"ingest.turbulence.source={path}"]


def tb_npz_declares_huge(project: Path) -> list[str]:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": (256, 1024, 256, 256, 2)})
    path = project / "in" / "huge.npz"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("velocity.npy", buf.getvalue() + b"\0" * 1024)
    return [f"ingest.turbulence.source={path}"]


def tb_h5_over_param_cap(project: Path) -> list[str]:
    path = _h5_field(project / "in" / "field.h5")
    return [f"ingest.turbulence.source={path}", "ingest.turbulence.max_array_bytes=1000"]


def tb_h5_external_storage(project: Path) -> list[str]:
    vel = _field()
    outside = project / "elsewhere" / "velocity.bin"
    outside.parent.mkdir(parents=True)
    outside.write_bytes(vel.tobytes())
    path = _h5_field(project / "in" / "ext.h5", lambda f: f.create_dataset(
        "velocity", shape=vel.shape, dtype="f4", external=[(str(outside), 0, vel.nbytes)]))
    return [f"ingest.turbulence.source={path}"]


def tb_h5_external_link(project: Path) -> list[str]:
    other = _h5_field(project / "elsewhere" / "other.h5")

    def link(f):
        f["velocity"] = h5py.ExternalLink(str(other), "/velocity")

    return [f"ingest.turbulence.source={_h5_field(project / 'in' / 'link.h5', link)}"]


def tb_h5_virtual_dataset(project: Path) -> list[str]:
    other = _h5_field(project / "elsewhere" / "other.h5")

    def virtual(f):
        layout = h5py.VirtualLayout(shape=(3, 4, 8, 8, 2), dtype="f4")
        layout[...] = h5py.VirtualSource(str(other), "velocity", shape=(3, 4, 8, 8, 2))
        f.create_virtual_dataset("velocity", layout)

    return [f"ingest.turbulence.source={_h5_field(project / 'in' / 'vds.h5', virtual)}"]


def tb_zarr_symlinked_chunk(project: Path) -> list[str]:
    import zarr

    store_path = project / "in" / "field.zarr"
    z = zarr.open_array(str(store_path), mode="w", shape=(3, 4, 8, 8, 2), chunks=(1, 4, 8, 8, 2), dtype="f4")
    z[...] = _field()
    chunk = next(p for p in sorted(store_path.rglob("*")) if p.is_file() and p.name == "0" and "c" in p.parts)
    outside = project / "elsewhere" / "chunk"
    outside.parent.mkdir(parents=True)
    outside.write_bytes(chunk.read_bytes())
    chunk.unlink()
    os.symlink(outside, chunk)
    return [f"ingest.turbulence.source={store_path}"]


def tb_int16_without_scale(project: Path) -> list[str]:
    vel = (_field() * 1000).astype(np.int16)
    return [f"ingest.turbulence.source={_h5_field(project / 'in' / 'packed.h5', vel=vel)}"]


def tb_fill_value_1e38(project: Path) -> list[str]:
    vel = _field()
    vel[1, 2, 3, 4, 0] = 1e38
    return [f"ingest.turbulence.source={_h5_field(project / 'in' / 'fill.h5', vel=vel)}"]


def tb_damaged_chunk(project: Path) -> list[str]:
    path = project / "in" / "damaged.h5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("velocity", data=_field(), chunks=(1, 4, 8, 8, 2), compression="gzip")
        f.attrs["dt"] = 0.5
        offset = f["velocity"].id.get_chunk_info(1).byte_offset
    data = bytearray(path.read_bytes())
    data[offset: offset + 64] = b"\xff" * 64  # a chunk that no longer inflates
    path.write_bytes(bytes(data))
    return [f"ingest.turbulence.source={path}"]


CASES = [
    # finding 7: decompression and allocation limits
    Case("netflow-gz-ratio-bomb", "netflow", nf_gz_ratio_bomb, SchemaError,
         r"bomb\.csv\.gz: unpacks to more than 100 times .*ingest\.netflow\.max_compression_ratio"),
    Case("netflow-gz-over-byte-cap", "netflow", nf_gz_over_bytes, SchemaError,
         r"flows\.csv\.gz: unpacks to more than 100000 bytes, the cap ingest\.netflow\.max_extracted_bytes"),
    Case("eeg-zip-ratio-bomb", "eeg", eeg_zip_ratio_bomb, EEGInputError,
         r"rec\.zip: entry 'sub-01\.edf' unpacks to 16777216 bytes .*ingest\.eeg\.max_compression_ratio"),
    Case("eeg-zip-over-byte-cap", "eeg", eeg_zip_over_bytes, EEGInputError,
         r"rec\.zip: the archive unpacks to \d+ bytes, more than the cap ingest\.eeg\.max_extracted_bytes"),
    Case("eeg-mat-declares-128GiB", "eeg", eeg_mat_declares_huge, EEGInputError,
         r"sub-01\.mat: 'X': declares 137438953472 bytes .*ingest\.eeg\.max_array_bytes"),
    Case("turbulence-h5-declares-128GiB", "turbulence", tb_h5_declares_huge, FieldError,
         r"huge\.h5: velocity of shape .* declares 137438953472 bytes .*ingest\.turbulence\.max_array_bytes"),
    Case("turbulence-npz-declares-128GiB", "turbulence", tb_npz_declares_huge, FieldError,
         r"huge\.npz: velocity of shape .* declares 137438953472 bytes .*ingest\.turbulence\.max_array_bytes"),
    Case("turbulence-over-param-cap", "turbulence", tb_h5_over_param_cap, FieldError,
         r"field\.h5: velocity .* more than the cap ingest\.turbulence\.max_array_bytes \(1000 bytes\)"),
    # finding 8: nothing from outside the source
    Case("eeg-symlink-out-of-source", "eeg", eeg_symlink_out_of_source, EEGInputError,
         r"sub-02\.edf: a symbolic link to .*private\.edf, outside the source"),
    Case("eeg-mat-external-storage", "eeg", eeg_mat_external_storage, EEGInputError,
         r"sub-01\.mat: 'X' is stored outside the file \(HDF5 external storage\)"),
    Case("eeg-mat-external-link", "eeg", eeg_mat_external_link, EEGInputError,
         r"sub-01\.mat: 'X' is an HDF5 external link"),
    Case("turbulence-h5-external-storage", "turbulence", tb_h5_external_storage, FieldError,
         r"ext\.h5: variable velocity is HDF5 external storage"),
    Case("turbulence-h5-external-link", "turbulence", tb_h5_external_link, FieldError,
         r"link\.h5: velocity is an HDF5 external link to .*other\.h5"),
    Case("turbulence-h5-virtual-dataset", "turbulence", tb_h5_virtual_dataset, FieldError,
         r"vds\.h5: variable velocity is an HDF5 virtual dataset"),
    Case("turbulence-zarr-symlinked-chunk", "turbulence", tb_zarr_symlinked_chunk, FieldError,
         r"field\.zarr: c/.*0: a symbolic link to .*elsewhere/chunk, outside the source"),
    # finding 9: labels and values that go silently wrong
    Case("netflow-benign-case-difference", "netflow", nf_benign_case, SchemaError,
         r"flows\.csv: no row has Attack == 'benign' .*did you mean 'Benign'\?"),
    Case("netflow-nan-labels", "netflow", nf_nan_labels, SchemaError,
         r"flows\.csv: row 6, column Attack: null-like label 'NaN'.*\(11 bad rows in all\)"),
    Case("netflow-duplicate-header", "netflow", nf_duplicate_header, SchemaError,
         r"dup\.csv: the header names the column\(s\) \['IN_BYTES'\] more than once"),
    Case("netflow-class-only-in-test", "netflow", nf_class_only_in_test, SchemaError,
         r"flows\.parquet: class\(es\) \['Zeroday'\] have no training window .*preprocess\.netflow\.unseen_classes",
         stage="preprocess", prepare=nf_class_only_in_test),
    Case("eeg-mat-nan-channel", "eeg", eeg_mat_nan_channel, EEGInputError,
         r"sub-01\.mat: channel\(s\) \['EEG2'\] hold non-finite values"),
    Case("eeg-fif-nan-channel", "eeg", eeg_fif_nan_channel, EEGInputError,
         r"sub-01_raw\.fif: channel\(s\) \['C4'\] hold non-finite values"),
    Case("eeg-duplicate-channel-names", "eeg", eeg_duplicate_channel_names, EEGInputError,
         r"sub-01\.edf: the channel name\(s\) \['C3'\] appear more than once"),
    Case("turbulence-int16-without-scale", "turbulence", tb_int16_without_scale, FieldError,
         r"packed\.h5: variable velocity stores integers \(int16\) without a scale_factor"),
    Case("turbulence-fill-value-1e38", "turbulence", tb_fill_value_1e38, FieldError,
         r"fill\.h5: velocity\[1, 2, 3, 4, 0\] = 1e\+38, beyond .*ingest\.turbulence\.max_abs_value"),
    # finding 10: reader errors as the domain's error, not a library traceback
    Case("netflow-not-gzip", "netflow", nf_not_gzip, SchemaError, r"flows\.csv\.gz: not a gzip file"),
    Case("netflow-truncated-gz", "netflow", nf_truncated_gz, SchemaError,
         r"cut\.csv\.gz: a damaged or truncated gzip file \(EOFError"),
    Case("netflow-parquet-list-column", "netflow", nf_parquet_list_column, SchemaError,
         r"nested\.parquet: column\(s\) of list/struct/binary type \{'IN_BYTES'"),
    Case("turbulence-damaged-chunk", "turbulence", tb_damaged_chunk, FieldError,
         r"damaged\.h5: cannot read variable velocity"),
]


def _run(domain: str, stage: str, overrides: list[str]):
    import importlib

    module = importlib.import_module(f"tasks.domains.{domain}.{stage}")
    params = load_params(overrides=[*overrides, f"ingest.{domain}.retry_delay_s=0.01"])
    return getattr(module, stage)(params)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_clear_error_and_changes_nothing(project, case):
    if case.prepare is not None:
        overrides = case.prepare(project)
        _run(case.domain, "ingest", overrides)
    else:
        overrides = case.make(project)
    before = _tree(project)
    t0 = time.perf_counter()
    with pytest.raises(case.error, match=case.match) as info:
        _run(case.domain, case.stage, overrides)
    assert time.perf_counter() - t0 < 60
    assert type(info.value).__module__.startswith("tasks.domains.")  # the domain's own error, not a library's
    assert _tree(project) == before, "a failed stage changed data/"
    assert not _leftovers(project), f"temporary files left: {_leftovers(project)}"


# ============================================================================ outside the stages
def test_not_gzip_is_not_retried(tmp_path):
    """A decode error fails at once: the same bytes fail again, waiting does not help (finding 10)."""
    fake = tmp_path / "flows.csv.gz"
    fake.write_text("a,b\n1,2\n")
    t0 = time.perf_counter()
    with pytest.raises(gzip.BadGzipFile):
        store.fetch_to_cache(str(fake), tmp_path / "cache", gunzip=True, retries=3, delay_s=0.5)
    assert time.perf_counter() - t0 < 0.5  # four tries would wait 0.5 + 1 + 2 s
    assert not list((tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else True
    assert store.is_permanent(gzip.BadGzipFile("x")) and not store.is_permanent(ConnectionError("x"))


def test_report_steps_must_be_positive(project):
    """``report_steps`` of 0 or below named a step that never exists and was dropped without notice (finding 9)."""
    with pytest.raises(ParamsError, match=r"evaluate\.turbulence\.report_steps"):
        load_params(overrides=["evaluate.turbulence.report_steps=[-5, 0]"])
    assert load_params(overrides=["evaluate.turbulence.report_steps=[1, 10]"]).evaluate.turbulence.report_steps == [1, 10]


def test_documented_switches_let_the_data_through(project, capsys):
    """The switches of finding 9 turn the errors into loud warnings, as params.yaml documents."""
    from tasks.domains.netflow.ingest import ingest
    from tasks.domains.netflow.preprocess import preprocess

    df = _flows(project)
    df = df.with_columns(pl.when(pl.col("Attack") == "Benign").then(pl.lit("Normal"))
                         .otherwise(pl.col("Attack")).alias("Attack"))
    path = _write_csv(df, project / "in" / "flows.csv")
    base = [f"ingest.netflow.source={path}", "ingest.netflow.retry_delay_s=0.01"]
    with pytest.raises(SchemaError, match="allow_missing_benign"):
        ingest(load_params(overrides=base))
    ingest(load_params(overrides=[*base, "ingest.netflow.allow_missing_benign=true"]))
    assert "no row has Attack == 'Benign'" in capsys.readouterr().out

    overrides = nf_class_only_in_test(project)
    ingest(load_params(overrides=overrides))
    manifest = preprocess(load_params(overrides=[*overrides, "preprocess.netflow.unseen_classes=warn"]))
    assert "Zeroday" in capsys.readouterr().out
    assert manifest["splits"]["train"]["class_windows"]["Zeroday"] == 0


def test_links_inside_the_source_are_fine(project):
    """Only links that leave the source are refused: a link to a file in the same folder is read."""
    from tasks.domains.eeg.ingest import ingest

    real = _edf(project / "in" / "sub-01.edf")
    os.symlink(real, project / "in" / "sub-02.edf")
    manifest = ingest(load_params(overrides=[f"ingest.eeg.source={project / 'in'}"]))
    assert len(manifest["files"]) == 2


def test_size_caps_leave_genuine_files_alone(project):
    """A compressible but genuine .gz (well under the ratio cap) still ingests: the caps are not a blanket refusal."""
    from tasks.domains.netflow.ingest import ingest

    csv = _write_csv(_flows(project, 8000), project / "in" / "flows.csv")
    gz = csv.with_suffix(".csv.gz")
    gz.write_bytes(gzip.compress(csv.read_bytes()))
    assert csv.stat().st_size > store.RATIO_FLOOR_BYTES
    manifest = ingest(load_params(overrides=[f"ingest.netflow.source={gz}"]))
    assert manifest["rows"] == 8000
