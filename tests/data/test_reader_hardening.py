"""Hostile inputs to the netflow, eeg and turbulence readers (issue 13, findings 7-10).

Every case writes its bad input (a generator of the corpus, tests/corpus/generate.py) in a
throw-away project, runs the domain's stage function and asserts: the domain's own error type
(not a traceback from a library), a message naming the file and the problem (and the params key
for a cap), ``data/`` exactly as before, and no temporary folder left behind. Decompression bombs, files declaring huge arrays, links out of
the source, HDF5 data stored in other files, labels that go silently wrong, reader errors
that used to escape as library exceptions.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tasks import store
from tasks.domains.eeg.sources import EEGInputError
from tasks.domains.netflow.records import SchemaError
from tasks.domains.turbulence.layout import FieldError
from tasks.params import ParamsError, load_params
from tests.corpus.generate import (
    eeg_duplicate_channel_names,
    eeg_fif_nan_channel,
    eeg_mat_declares_huge,
    eeg_mat_external_link,
    eeg_mat_external_storage,
    eeg_mat_nan_channel,
    eeg_mat_v5_over_cap,
    eeg_symlink_out_of_source,
    eeg_zip_over_bytes,
    eeg_zip_ratio_bomb,
    flows_frame,
    nf_benign_case,
    nf_class_only_in_test,
    nf_duplicate_header,
    nf_gz_over_bytes,
    nf_gz_ratio_bomb,
    nf_nan_labels,
    nf_not_gzip,
    nf_parquet_list_column,
    nf_truncated_gz,
    tb_damaged_chunk,
    tb_fill_value_1e38,
    tb_h5_declares_huge,
    tb_h5_external_link,
    tb_h5_external_storage,
    tb_h5_over_param_cap,
    tb_h5_virtual_dataset,
    tb_int16_without_scale,
    tb_npz_declares_huge,
    tb_zarr_symlinked_chunk,
    write_csv,
    write_edf,
)


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


# The generators (tests/corpus/generate.py) write each input under the project; the same inputs run
# through the command line in tests/corpus/test_corpus.py.
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
    Case("eeg-mat-v5-over-cap", "eeg", eeg_mat_v5_over_cap, EEGInputError,
         r"sub-01\.mat: 'X': declares 19200 bytes .*ingest\.eeg\.max_array_bytes"),
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
    with pytest.raises(case.error, match=case.match) as info:
        _run(case.domain, case.stage, overrides)
    assert type(info.value).__module__.startswith("tasks.domains.")  # the domain's own error, not a library's
    assert _tree(project) == before, "a failed stage changed data/"
    assert not _leftovers(project), f"temporary files left: {_leftovers(project)}"


# ============================================================================ outside the stages
def test_not_gzip_is_not_retried(tmp_path, monkeypatch):
    """A decode error fails at once: the same bytes fail again, waiting does not help (finding 10)."""
    fake = tmp_path / "flows.csv.gz"
    fake.write_text("a,b\n1,2\n")
    waits: list[float] = []  # store.retry sleeps before each new try: record instead of waiting
    monkeypatch.setattr(store.time, "sleep", waits.append)
    with pytest.raises(gzip.BadGzipFile):
        store.fetch_to_cache(str(fake), tmp_path / "cache", gunzip=True, retries=3, delay_s=0.5)
    assert waits == []  # before: three waits (0.5, 1, 2 s) and four tries
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

    df = flows_frame(project)
    df = df.with_columns(pl.when(pl.col("Attack") == "Benign").then(pl.lit("Normal"))
                         .otherwise(pl.col("Attack")).alias("Attack"))
    path = write_csv(df, project / "in" / "flows.csv")
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

    real = write_edf(project / "in" / "sub-01.edf")
    os.symlink(real, project / "in" / "sub-02.edf")
    manifest = ingest(load_params(overrides=[f"ingest.eeg.source={project / 'in'}"]))
    assert len(manifest["files"]) == 2


def test_size_caps_leave_genuine_files_alone(project):
    """A compressible but genuine .gz (well under the ratio cap) still ingests: the caps are not a blanket refusal."""
    from tasks.domains.netflow.ingest import ingest

    csv = write_csv(flows_frame(project, 8000), project / "in" / "flows.csv")
    gz = csv.with_suffix(".csv.gz")
    gz.write_bytes(gzip.compress(csv.read_bytes()))
    assert csv.stat().st_size > store.RATIO_FLOOR_BYTES
    manifest = ingest(load_params(overrides=[f"ingest.netflow.source={gz}"]))
    assert manifest["rows"] == 8000
