"""Generators of the bad-input corpus: every hostile or broken input of issue 13, written on demand.

Nothing here is committed as a binary: each generator writes its input (a few kB, at most a few
MB) into the folder it is given and returns the ``--set`` overrides that point the stage at it
(``ingest.<domain>.source=...`` and, where the case is about a cap, the cap lowered to fit a tiny
file). :data:`CASES` lists them by domain; ``tests/corpus/test_corpus.py`` runs each through the
command line, ``tests/data/test_reader_hardening.py`` and ``tests/data/test_finance_hardening.py``
through the stage functions and readers.

Files that a case must not let in (a link target, HDF5 external storage) are written under
``<folder>/elsewhere``, outside the source.

Write the whole corpus into a folder to try it by hand::

    python -m tests.corpus.generate /tmp/corpus     # one subfolder per domain and case, its overrides in `overrides`
    mapfile -t o < /tmp/corpus/netflow/truncated-gz/overrides; python -m tasks ingest netflow "${o[@]/#/--set=}"
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import polars as pl

from tasks.domains.netflow.synthetic import generate as generate_flows

Generator = Callable[[Path], list[str]]
"""Writes one bad input under the folder given; returns the params overrides (``key=value``) of the run."""


# ============================================================================ helpers
def flows_frame(folder: Path, n: int = 1000) -> pl.DataFrame:
    """A valid NF-v2 CSV (as strings) to damage."""
    path = generate_flows(folder / "gen", n_flows=n, seed=3)[0]
    return pl.read_csv(path, infer_schema=False)


def write_csv(df: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_csv(path)
    return path


def write_edf(path: Path, ch_names=("C3", "Cz", "C4"), seconds: float = 30.0) -> Path:
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


def write_mat73(path: Path, x: np.ndarray | None = None, **datasets) -> Path:
    """A MATLAB v7.3 file (HDF5): X (trials, channels, samples) in MATLAB order, so h5py holds it reversed.

    ``datasets``: name -> ``fn(file, name)`` writing that entry (the labels ``y`` default to 1, 2, 1, 2).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if x is not None:
            f["X"] = x.T
        if "y" not in datasets:
            f["y"] = np.array([[1.0, 2.0, 1.0, 2.0]])
        for k, v in datasets.items():
            v(f, k)
    return path


MAT_OVERRIDES = ["ingest.eeg.spec.mat.sfreq=100", "ingest.eeg.spec.label_map={'1': left_hand, '2': right_hand}"]


def random_field(shape=(3, 4, 8, 8, 2), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def write_h5_field(path: Path, make: Callable[[h5py.File], None] | None = None, vel: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if make is not None:
            make(f)
        else:
            f["velocity"] = random_field() if vel is None else vel
        f.attrs["dt"] = 0.5
    return path


# ---------------------------------------------------------------------------- netflow
def nf_gz_ratio_bomb(folder: Path) -> list[str]:
    df = flows_frame(folder, 50)
    line = df.head(1).write_csv(include_header=False).encode()
    body = df.head(0).write_csv().encode() + line * (24 * 2**20 // len(line))  # 24 MiB of one repeated row
    path = folder / "in" / "bomb.csv.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(body, compresslevel=9))
    return [f"ingest.netflow.source={path}"]


def nf_gz_over_bytes(folder: Path) -> list[str]:
    csv = write_csv(flows_frame(folder), folder / "in" / "flows.csv")
    gz = csv.with_suffix(".csv.gz")
    gz.write_bytes(gzip.compress(csv.read_bytes()))
    return [f"ingest.netflow.source={gz}", "ingest.netflow.max_extracted_bytes=100000"]


def nf_not_gzip(folder: Path) -> list[str]:
    csv = write_csv(flows_frame(folder), folder / "in" / "flows.csv")
    fake = folder / "in" / "flows.csv.gz"
    fake.write_bytes(csv.read_bytes())  # a plain CSV named .gz
    return [f"ingest.netflow.source={fake}"]


def nf_truncated_gz(folder: Path) -> list[str]:
    csv = write_csv(flows_frame(folder), folder / "in" / "flows.csv")
    data = gzip.compress(csv.read_bytes())
    gz = folder / "in" / "cut.csv.gz"
    gz.write_bytes(data[: len(data) // 2])
    return [f"ingest.netflow.source={gz}"]


def nf_parquet_list_column(folder: Path) -> list[str]:
    df = flows_frame(folder).with_columns(pl.col("IN_BYTES").map_elements(lambda v: [v, v],
                                                                       return_dtype=pl.List(pl.String)))
    path = folder / "in" / "nested.parquet"
    path.parent.mkdir(parents=True)
    df.write_parquet(path)
    return [f"ingest.netflow.source={path}"]


def nf_benign_case(folder: Path) -> list[str]:
    path = write_csv(flows_frame(folder), folder / "in" / "flows.csv")
    return [f"ingest.netflow.source={path}", "ingest.netflow.spec.benign_value=benign"]


def nf_nan_labels(folder: Path) -> list[str]:
    df = flows_frame(folder).with_row_index("i").with_columns(
        pl.when(pl.col("i") % 97 == 5).then(pl.lit("NaN")).otherwise(pl.col("Attack")).alias("Attack")).drop("i")
    return [f"ingest.netflow.source={write_csv(df, folder / 'in' / 'flows.csv')}"]


def nf_duplicate_header(folder: Path) -> list[str]:
    df = flows_frame(folder)
    text = df.write_csv()
    header, rest = text.split("\n", 1)
    names = header.split(",")
    j = names.index("IN_BYTES")
    lines = [header + ",IN_BYTES"] + [ln + "," + ln.split(",")[j] for ln in rest.splitlines()]
    path = folder / "in" / "dup.csv"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n")
    return [f"ingest.netflow.source={path}"]


def nf_class_only_in_test(folder: Path) -> list[str]:
    df = flows_frame(folder).with_row_index("i")
    df = df.with_columns(pl.when(pl.col("i") >= df.height - 40).then(pl.lit("Zeroday"))
                         .otherwise(pl.col("Attack")).alias("Attack")).drop("i")
    return [f"ingest.netflow.source={write_csv(df, folder / 'in' / 'flows.csv')}"]


def nf_not_parquet(folder: Path) -> list[str]:
    path = folder / "in" / "flows.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(flows_frame(folder, 50).write_csv().encode())  # CSV text under a .parquet name
    return [f"ingest.netflow.source={path}"]


def nf_benign_missing(folder: Path) -> list[str]:
    df = flows_frame(folder).with_columns(pl.when(pl.col("Attack") == "Benign").then(pl.lit("Normal"))
                                          .otherwise(pl.col("Attack")).alias("Attack"))
    return [f"ingest.netflow.source={write_csv(df, folder / 'in' / 'normal.csv')}"]


def nf_empty_labels(folder: Path) -> list[str]:
    df = flows_frame(folder).with_row_index("i").with_columns(
        pl.when(pl.col("i") == 7).then(pl.lit("")).otherwise(pl.col("Attack")).alias("Attack")).drop("i")
    return [f"ingest.netflow.source={write_csv(df, folder / 'in' / 'unlabelled.csv')}"]


def nf_missing_label_column(folder: Path) -> list[str]:
    return [f"ingest.netflow.source={write_csv(flows_frame(folder).drop('Attack'), folder / 'in' / 'nolabel.csv')}"]


def nf_not_a_number(folder: Path) -> list[str]:
    df = flows_frame(folder).with_row_index("i").with_columns(
        pl.when(pl.col("i") == 41).then(pl.lit("lots")).otherwise(pl.col("OUT_PKTS")).alias("OUT_PKTS")).drop("i")
    return [f"ingest.netflow.source={write_csv(df, folder / 'in' / 'lots.csv')}"]


def nf_header_only(folder: Path) -> list[str]:
    return [f"ingest.netflow.source={write_csv(flows_frame(folder, 50).head(0), folder / 'in' / 'header.csv')}"]


def nf_empty_file(folder: Path) -> list[str]:
    path = folder / "in" / "empty.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    return [f"ingest.netflow.source={path}"]


# ---------------------------------------------------------------------------- eeg
def eeg_zip_ratio_bomb(folder: Path) -> list[str]:
    path = folder / "in" / "rec.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("sub-01.edf", b"\0" * (16 * 2**20))  # 16 MiB that packs to ~16 kB
    return [f"ingest.eeg.source={path}"]


def eeg_zip_over_bytes(folder: Path) -> list[str]:
    edf = write_edf(folder / "gen" / "sub-01.edf")
    path = folder / "in" / "rec.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(edf, "sub-01.edf")
    return [f"ingest.eeg.source={path}", "ingest.eeg.max_extracted_bytes=10000"]


def eeg_symlink_out_of_source(folder: Path) -> list[str]:
    write_edf(folder / "in" / "sub-01.edf")
    secret = write_edf(folder / "elsewhere" / "private.edf")
    os.symlink(secret, folder / "in" / "sub-02.edf")
    return [f"ingest.eeg.source={folder / 'in'}"]


def eeg_mat_declares_huge(folder: Path) -> list[str]:
    def huge(f, k):  # 128 GiB declared, nothing written: the file stays a few kB
        f.create_dataset("X", shape=(2**20, 64, 256), dtype="f8", chunks=(1, 64, 256))

    write_mat73(folder / "in" / "sub-01.mat", X=huge)
    return [f"ingest.eeg.source={folder / 'in'}", *MAT_OVERRIDES]


def eeg_mat_v5_over_cap(folder: Path) -> list[str]:
    """A zlib-compressed MATLAB v5 file: loadmat would inflate it whole; its header declares the size."""
    import scipy.io

    path = folder / "in" / "sub-01.mat"
    path.parent.mkdir(parents=True)
    x = np.zeros((4, 3, 200))  # 19,200 bytes of float64, compressing to a few hundred
    scipy.io.savemat(path, {"X": x, "y": np.array([[1.0, 2.0, 1.0, 2.0]])}, do_compression=True)
    return [f"ingest.eeg.source={folder / 'in'}", *MAT_OVERRIDES, "ingest.eeg.max_array_bytes=10000"]


def eeg_mat_external_storage(folder: Path) -> list[str]:
    x = np.random.default_rng(0).normal(size=(4, 3, 200))
    outside = folder / "elsewhere" / "raw.bin"
    outside.parent.mkdir(parents=True)
    outside.write_bytes(np.ascontiguousarray(x.T).tobytes())

    def ext(f, k):
        f.create_dataset("X", shape=x.T.shape, dtype="f8", external=[(str(outside), 0, x.nbytes)])

    write_mat73(folder / "in" / "sub-01.mat", X=ext)
    return [f"ingest.eeg.source={folder / 'in'}", *MAT_OVERRIDES]


def eeg_mat_external_link(folder: Path) -> list[str]:
    x = np.random.default_rng(0).normal(size=(4, 3, 200))
    other = folder / "elsewhere" / "other.h5"
    other.parent.mkdir(parents=True)
    with h5py.File(other, "w") as f:
        f["X"] = x.T

    def link(f, k):
        f["X"] = h5py.ExternalLink(str(other), "/X")

    write_mat73(folder / "in" / "sub-01.mat", X=link)
    return [f"ingest.eeg.source={folder / 'in'}", *MAT_OVERRIDES]


def eeg_mat_nan_channel(folder: Path) -> list[str]:
    x = np.random.default_rng(0).normal(size=(4, 3, 200))
    x[:, 1, :] = np.nan  # channel EEG2 dead
    write_mat73(folder / "in" / "sub-01.mat", x)
    return [f"ingest.eeg.source={folder / 'in'}", *MAT_OVERRIDES]


def eeg_fif_nan_channel(folder: Path) -> list[str]:
    import mne

    sfreq = 250.0
    data = np.random.default_rng(0).normal(0, 10e-6, (3, int(30 * sfreq)))
    data[2] = np.nan
    raw = mne.io.RawArray(data, mne.create_info(["C3", "Cz", "C4"], sfreq, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations([2.0, 7.0], [4.0, 4.0], ["left_hand", "right_hand"]))
    path = folder / "in" / "sub-01_raw.fif"
    path.parent.mkdir(parents=True)
    raw.save(path, verbose="error")
    return [f"ingest.eeg.source={folder / 'in'}"]


def eeg_duplicate_channel_names(folder: Path) -> list[str]:
    path = write_edf(folder / "in" / "sub-01.edf")
    data = bytearray(path.read_bytes())
    ns = int(data[252:256].decode())
    labels = [data[256 + 16 * i: 256 + 16 * (i + 1)].decode().strip() for i in range(ns)]
    j = labels.index("C4")
    data[256 + 16 * j: 256 + 16 * (j + 1)] = b"C3".ljust(16)  # C3, Cz, C3
    path.write_bytes(bytes(data))
    return [f"ingest.eeg.source={folder / 'in'}"]


def eeg_zip_path_traversal(folder: Path) -> list[str]:
    edf = write_edf(folder / "gen" / "sub-01.edf")
    path = folder / "in" / "upload.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(edf, "sub-01.edf")
        zf.writestr("../../escaped.edf", edf.read_bytes())
    return [f"ingest.eeg.source={path}"]


def eeg_not_an_edf(folder: Path) -> list[str]:
    write_edf(folder / "in" / "sub-01.edf")
    path = folder / "in" / "sub-02.edf"
    path.write_bytes(b"<html><body>404 Not Found</body></html>" * 20)  # an error page saved as .edf
    return [f"ingest.eeg.source={folder / 'in'}"]


def eeg_truncated_edf(folder: Path) -> list[str]:
    write_edf(folder / "in" / "sub-01.edf")
    path = write_edf(folder / "in" / "sub-02.edf")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a download cut in the middle of the data records
    return [f"ingest.eeg.source={folder / 'in'}"]


def eeg_no_events(folder: Path) -> list[str]:
    import mne

    write_edf(folder / "in" / "sub-01.edf")
    raw = mne.io.RawArray(np.random.default_rng(1).normal(0, 10e-6, (3, 7500)),
                          mne.create_info(["C3", "Cz", "C4"], 250.0, "eeg"), verbose="error")
    mne.export.export_raw(folder / "in" / "sub-02.edf", raw, fmt="edf", physical_range=(-800.0, 800.0),
                          verbose="error")
    return [f"ingest.eeg.source={folder / 'in'}"]


def eeg_mat_label_not_in_map(folder: Path) -> list[str]:
    x = np.random.default_rng(0).normal(size=(4, 3, 200))
    write_mat73(folder / "in" / "sub-01.mat", x, y=lambda f, k: f.__setitem__(k, np.array([[1.0, 2.0, 3.0, 1.0]])))
    return [f"ingest.eeg.source={folder / 'in'}", *MAT_OVERRIDES]


def eeg_mat_missing_key(folder: Path) -> list[str]:
    write_mat73(folder / "in" / "sub-01.mat", None, data=lambda f, k: f.__setitem__(k, np.zeros((200, 3, 4))))
    return [f"ingest.eeg.source={folder / 'in'}", *MAT_OVERRIDES]


# ---------------------------------------------------------------------------- turbulence
def tb_h5_declares_huge(folder: Path) -> list[str]:
    path = write_h5_field(folder / "in" / "huge.h5", lambda f: f.create_dataset(
        "velocity", shape=(256, 1024, 256, 256, 2), dtype="f4", chunks=(1, 1, 64, 64, 2)))  # 128 GiB declared
    assert path.stat().st_size < 100_000
    return [f"ingest.turbulence.source={path}"]


def tb_npz_declares_huge(folder: Path) -> list[str]:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": (256, 1024, 256, 256, 2)})
    path = folder / "in" / "huge.npz"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("velocity.npy", buf.getvalue() + b"\0" * 1024)
    return [f"ingest.turbulence.source={path}"]


def tb_h5_over_param_cap(folder: Path) -> list[str]:
    path = write_h5_field(folder / "in" / "field.h5")
    return [f"ingest.turbulence.source={path}", "ingest.turbulence.max_array_bytes=1000"]


def tb_h5_external_storage(folder: Path) -> list[str]:
    vel = random_field()
    outside = folder / "elsewhere" / "velocity.bin"
    outside.parent.mkdir(parents=True)
    outside.write_bytes(vel.tobytes())
    path = write_h5_field(folder / "in" / "ext.h5", lambda f: f.create_dataset(
        "velocity", shape=vel.shape, dtype="f4", external=[(str(outside), 0, vel.nbytes)]))
    return [f"ingest.turbulence.source={path}"]


def tb_h5_external_link(folder: Path) -> list[str]:
    other = write_h5_field(folder / "elsewhere" / "other.h5")

    def link(f):
        f["velocity"] = h5py.ExternalLink(str(other), "/velocity")

    return [f"ingest.turbulence.source={write_h5_field(folder / 'in' / 'link.h5', link)}"]


def tb_h5_virtual_dataset(folder: Path) -> list[str]:
    other = write_h5_field(folder / "elsewhere" / "other.h5")

    def virtual(f):
        layout = h5py.VirtualLayout(shape=(3, 4, 8, 8, 2), dtype="f4")
        layout[...] = h5py.VirtualSource(str(other), "velocity", shape=(3, 4, 8, 8, 2))
        f.create_virtual_dataset("velocity", layout)

    return [f"ingest.turbulence.source={write_h5_field(folder / 'in' / 'vds.h5', virtual)}"]


def tb_zarr_symlinked_chunk(folder: Path) -> list[str]:
    import zarr

    store_path = folder / "in" / "field.zarr"
    z = zarr.open_array(str(store_path), mode="w", shape=(3, 4, 8, 8, 2), chunks=(1, 4, 8, 8, 2), dtype="f4")
    z[...] = random_field()
    chunk = next(p for p in sorted(store_path.rglob("*")) if p.is_file() and p.name == "0" and "c" in p.parts)
    outside = folder / "elsewhere" / "chunk"
    outside.parent.mkdir(parents=True)
    outside.write_bytes(chunk.read_bytes())
    chunk.unlink()
    os.symlink(outside, chunk)
    return [f"ingest.turbulence.source={store_path}"]


def tb_int16_without_scale(folder: Path) -> list[str]:
    vel = (random_field() * 1000).astype(np.int16)
    return [f"ingest.turbulence.source={write_h5_field(folder / 'in' / 'packed.h5', vel=vel)}"]


def tb_fill_value_1e38(folder: Path) -> list[str]:
    vel = random_field()
    vel[1, 2, 3, 4, 0] = 1e38
    return [f"ingest.turbulence.source={write_h5_field(folder / 'in' / 'fill.h5', vel=vel)}"]


def tb_damaged_chunk(folder: Path) -> list[str]:
    path = folder / "in" / "damaged.h5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("velocity", data=random_field(), chunks=(1, 4, 8, 8, 2), compression="gzip")
        f.attrs["dt"] = 0.5
        offset = f["velocity"].id.get_chunk_info(1).byte_offset
    data = bytearray(path.read_bytes())
    data[offset: offset + 64] = b"\xff" * 64  # a chunk that no longer inflates
    path.write_bytes(bytes(data))
    return [f"ingest.turbulence.source={path}"]


def tb_nan_value(folder: Path) -> list[str]:
    vel = random_field()
    vel[2, 1, 5, 3, 1] = np.nan
    return [f"ingest.turbulence.source={write_h5_field(folder / 'in' / 'nan.h5', vel=vel)}"]


def tb_not_hdf5(folder: Path) -> list[str]:
    path = folder / "in" / "field.h5"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"velocity,x,y\n1,2,3\n" * 50)  # a CSV export under an .h5 name
    return [f"ingest.turbulence.source={path}"]


def tb_missing_variable(folder: Path) -> list[str]:
    def other_name(f):
        f["vel"] = random_field()

    return [f"ingest.turbulence.source={write_h5_field(folder / 'in' / 'miss.h5', other_name)}"]


def tb_report_steps_not_positive(folder: Path) -> list[str]:
    """Not a file: report steps that never exist used to be dropped without notice (finding 9)."""
    return ["evaluate.turbulence.report_steps=[-5, 0]"]


# ---------------------------------------------------------------------------- finance
GOOD = {
    "alpha-bank_2022.txt": "Alpha Bank uses machine learning models to detect card fraud.",
    "beta-bank_2022.html": "Beta Bank deployed a chatbot that answers customer questions.",
    "gamma-bank_2022.pdf": "Gamma Bank opened twelve new branches across the region.",
}


# ----------------------------------------------------------------------------- document builders
def pdf_bytes(objects: list[bytes]) -> bytes:
    """A PDF of ``objects`` (numbered from 1, object 1 the catalog) with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def text_pdf(pages: list[bytes], *, flate: bool = False) -> bytes:
    """A PDF with one page per content stream in ``pages`` (Helvetica as /F1), Flate-compressed if asked."""
    n = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n)).encode()
    font = 3 + 2 * n
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, n)]
    for i, content in enumerate(pages):
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 %d 0 R >> "
                       b">> /Contents %d 0 R >>" % (font, 4 + 2 * i))
        data = zlib.compress(content) if flate else content
        objects.append(b"<< /Length %d%s >>\nstream\n" % (len(data), b" /Filter /FlateDecode" if flate else b"")
                       + data + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return pdf_bytes(objects)


def show(sentence: str) -> bytes:
    """A content stream that shows ``sentence``."""
    return b"BT /F1 12 Tf 72 720 Td (" + sentence.encode() + b") Tj ET"


def write_good(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, sentence in GOOD.items():
        path = folder / name
        if name.endswith(".txt"):
            path.write_text(sentence + "\n", encoding="utf-8")
        elif name.endswith(".html"):
            path.write_text(f"<html><body><p>{sentence}</p></body></html>", encoding="utf-8")
        else:
            path.write_bytes(text_pdf([show(sentence)]))
    return folder


def nested_pdf(path: Path) -> None:
    """20,000 nested arrays in a page's content stream: pypdf's recursive parser hit RecursionError."""
    path.write_bytes(text_pdf([show("Nested arrays follow this sentence here.") + b" " + b"[" * 20_000
                               + b"]" * 20_000]))


def bomb_pdf(path: Path) -> None:
    """A 80 KB PDF whose content stream inflates to 80 MB (over pypdf's own 75 MB: LimitReachedError)."""
    z = zlib.compressobj(9)
    data = z.compress(show("A bomb hides behind this sentence here.") + b" ")
    chunk = b" " * 1_000_000
    data += b"".join(z.compress(chunk) for _ in range(80)) + z.flush()
    path.write_bytes(pdf_bytes([
        b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]))
    assert path.stat().st_size < 200_000


def nested_html(path: Path) -> None:
    """1e6 nested ``<div>`` (11 MB): 2e6 lines of extracted text, which the quadratic line joining never finished."""
    path.write_text("<html><body><p>Deep nesting starts after this sentence.</p>" + "<div>" * 1_000_000 + "x"
                    + "</div>" * 1_000_000 + "</body></html>", encoding="utf-8")


def not_a_pdf(path: Path) -> None:
    path.write_text("<html><body><p>This page was saved with the wrong suffix.</p></body></html>", encoding="utf-8")


# The bad documents (finding 6, the finance parts of 7 and 10): each is skipped by ingest and scoring, named with its
# reason, while the good reports of the batch are read. name -> (writer, the overrides that lower a cap to the file).
def big_txt(path: Path) -> None:
    path.write_text("Revenue rose on higher lending volumes. " * 50_000, encoding="utf-8")


def long_html(path: Path) -> None:
    path.write_text("<p>" + "Revenue rose again this year. " * 2_000 + "</p>", encoding="utf-8")


def many_pages_pdf(path: Path) -> None:
    path.write_bytes(text_pdf([show(f"Page {i} of a long report here.") for i in range(3)]))


def heavy_pdf(path: Path) -> None:
    path.write_bytes(text_pdf([show("Heavy page content follows here.") + b" " * 600_000 for _ in range(2)], flate=True))


def wide_html(path: Path) -> None:
    path.write_text("<p>Wide pages hold many elements here.</p>" + "<br>" * 5_000, encoding="utf-8")


BAD_DOCUMENTS: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "nested-bank_2021.pdf": (nested_pdf, []),
    "bomb-bank_2021.pdf": (bomb_pdf, []),
    "deep-bank_2021.html": (nested_html, []),
    "fake-bank_2021.pdf": (not_a_pdf, []),
    "big-bank_2021.txt": (big_txt, ["ingest.finance.limits.max_document_bytes=1000000"]),
    "long-bank_2021.html": (long_html, ["ingest.finance.limits.max_chars=10000"]),
    "many-bank_2021.pdf": (many_pages_pdf, ["ingest.finance.limits.max_pdf_pages=2"]),
    "heavy-bank_2021.pdf": (heavy_pdf, ["ingest.finance.limits.max_decompressed_bytes=1000000"]),
    "wide-bank_2021.html": (wide_html, ["ingest.finance.limits.max_html_elements=1000"]),
}


# Hostile documents that must be read (in linear time), not skipped: name -> (writer, sentences they yield).
def blank_lines_txt(path: Path) -> None:
    path.write_text("Loans grew in every region this year.\n" + "\n" * 400_000
                    + "Deposits rose by four percent overall.\n", encoding="utf-8")


def unclosed_tags_html(path: Path) -> None:
    path.write_text("<p>Tags that never close follow here.</p>" + "<a" * 500_000, encoding="utf-8")


def marked_section_html(path: Path) -> None:
    path.write_text("<p>A malformed marked section follows.</p><![x y]><p>The text after it is still read.</p>",
                    encoding="utf-8")


HOSTILE_BUT_READABLE: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "blank-bank_2021.txt": (blank_lines_txt, ["Loans grew in every region this year.",
                                              "Deposits rose by four percent overall."]),
    "tags-bank_2021.html": (unclosed_tags_html, ["Tags that never close follow here."]),
    "marked-bank_2021.html": (marked_section_html, ["A malformed marked section follows.",
                                                    "The text after it is still read."]),
}


def batch_with(name: str, writer: Callable[[Path], None], overrides: tuple[str, ...] | list[str] = ()) -> Generator:
    """A generator of the three good reports plus document ``name`` written by ``writer``."""

    def make(folder: Path) -> list[str]:
        docs = write_good(folder / "docs")
        writer(docs / name)
        return [f"ingest.finance.source={docs}", *overrides]

    make.__name__ = f"fin_batch_with_{name}"
    return make


def fin_only_bad_documents(folder: Path) -> list[str]:
    docs = folder / "docs"
    docs.mkdir(parents=True)
    for name in ("nested-bank_2021.pdf", "bomb-bank_2021.pdf", "fake-bank_2021.pdf"):
        BAD_DOCUMENTS[name][0](docs / name)
    return [f"ingest.finance.source={docs}"]


def fin_malformed_metadata(folder: Path) -> list[str]:
    docs = write_good(folder / "docs")
    (docs / "metadata.csv").write_text("file,institution,year\nalpha-bank_2022.txt,Alpha,2022,extra\n",
                                       encoding="utf-8")
    return [f"ingest.finance.source={docs}"]


def _labels(folder: Path, name: str, write: Callable[[Path], None]) -> list[str]:
    path = folder / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    return ["ingest.finance.source=null", f"ingest.finance.labels={path}"]


def fin_labels_list_column(folder: Path) -> list[str]:
    return _labels(folder, "list.parquet", lambda p: pl.DataFrame(
        {"sentence": [["The bank", "uses AI."]], "label": [1]}).write_parquet(p))


def fin_labels_binary_column(folder: Path) -> list[str]:
    return _labels(folder, "binary.parquet", lambda p: pl.DataFrame(
        {"sentence": [b"\xff\xfe"], "label": [1]}).write_parquet(p))


def fin_labels_truncated_parquet(folder: Path) -> list[str]:
    return _labels(folder, "truncated.parquet", lambda p: p.write_bytes(b"PAR1\x00\x00"))


def fin_labels_not_binary(folder: Path) -> list[str]:
    rows = "".join(f"The bank reported item {i} this year.,{i % 2}\n" for i in range(6))
    return _labels(folder, "labels.csv", lambda p: p.write_text(
        "sentence,label\n" + rows + "The bank uses a chatbot.,2\nThe bank uses AI.,yes\n", encoding="utf-8"))


def fin_labels_missing_column(folder: Path) -> list[str]:
    return _labels(folder, "tags.csv", lambda p: p.write_text(
        "sentence,tag\nThe bank uses AI.,1\nLoans grew.,0\n", encoding="utf-8"))


# ============================================================================ the corpus
CASES: dict[str, dict[str, Generator]] = {
    "netflow": {
        "gz-ratio-bomb": nf_gz_ratio_bomb,
        "gz-over-byte-cap": nf_gz_over_bytes,
        "not-gzip": nf_not_gzip,
        "truncated-gz": nf_truncated_gz,
        "parquet-list-column": nf_parquet_list_column,
        "not-parquet": nf_not_parquet,
        "benign-case-difference": nf_benign_case,
        "benign-missing": nf_benign_missing,
        "nan-labels": nf_nan_labels,
        "empty-labels": nf_empty_labels,
        "duplicate-header": nf_duplicate_header,
        "class-only-in-test": nf_class_only_in_test,
        "missing-label-column": nf_missing_label_column,
        "not-a-number": nf_not_a_number,
        "header-only": nf_header_only,
        "empty-file": nf_empty_file,
    },
    "eeg": {
        "zip-ratio-bomb": eeg_zip_ratio_bomb,
        "zip-over-byte-cap": eeg_zip_over_bytes,
        "zip-path-traversal": eeg_zip_path_traversal,
        "mat-declares-128GiB": eeg_mat_declares_huge,
        "mat-v5-over-cap": eeg_mat_v5_over_cap,
        "symlink-out-of-source": eeg_symlink_out_of_source,
        "mat-external-storage": eeg_mat_external_storage,
        "mat-external-link": eeg_mat_external_link,
        "mat-nan-channel": eeg_mat_nan_channel,
        "fif-nan-channel": eeg_fif_nan_channel,
        "duplicate-channel-names": eeg_duplicate_channel_names,
        "not-an-edf": eeg_not_an_edf,
        "truncated-edf": eeg_truncated_edf,
        "no-events": eeg_no_events,
        "mat-label-not-in-map": eeg_mat_label_not_in_map,
        "mat-missing-key": eeg_mat_missing_key,
    },
    "finance": {
        **{f"skip-{name.split('-bank')[0]}-{name.rsplit('.', 1)[1]}": batch_with(name, w, o)
           for name, (w, o) in BAD_DOCUMENTS.items()},
        **{f"read-{name.split('-bank')[0]}-{name.rsplit('.', 1)[1]}": batch_with(name, w)
           for name, (w, _) in HOSTILE_BUT_READABLE.items()},
        "only-bad-documents": fin_only_bad_documents,
        "malformed-metadata": fin_malformed_metadata,
        "labels-list-column": fin_labels_list_column,
        "labels-binary-column": fin_labels_binary_column,
        "labels-truncated-parquet": fin_labels_truncated_parquet,
        "labels-not-binary": fin_labels_not_binary,
        "labels-missing-column": fin_labels_missing_column,
    },
    "turbulence": {
        "h5-declares-128GiB": tb_h5_declares_huge,
        "npz-declares-128GiB": tb_npz_declares_huge,
        "over-param-cap": tb_h5_over_param_cap,
        "h5-external-storage": tb_h5_external_storage,
        "h5-external-link": tb_h5_external_link,
        "h5-virtual-dataset": tb_h5_virtual_dataset,
        "zarr-symlinked-chunk": tb_zarr_symlinked_chunk,
        "int16-without-scale": tb_int16_without_scale,
        "fill-value-1e38": tb_fill_value_1e38,
        "nan-value": tb_nan_value,
        "report-steps-not-positive": tb_report_steps_not_positive,
        "damaged-chunk": tb_damaged_chunk,
        "not-hdf5": tb_not_hdf5,
        "missing-variable": tb_missing_variable,
    },
}
"""domain -> case name -> generator."""


def write_case(domain: str, case: str, folder: Path) -> list[str]:
    """Write case ``case`` of ``domain`` into ``folder`` (created, must not exist); the overrides of its run."""
    folder.mkdir(parents=True)
    return CASES[domain][case](folder)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.corpus.generate", description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder to write <domain>/<case>/ into (replaced if it exists)")
    ap.add_argument("--domain", action="append", choices=sorted(CASES), help="only these domains (repeatable)")
    args = ap.parse_args(argv)
    out = args.out.resolve()  # the sources and links written are absolute paths
    for domain in args.domain or CASES:
        for case in CASES[domain]:
            folder = out / domain / case
            shutil.rmtree(folder, ignore_errors=True)
            overrides = write_case(domain, case, folder)
            (folder / "overrides").write_text("".join(f"{o}\n" for o in overrides))
            print(f"{domain}/{case}: {' '.join(overrides)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
