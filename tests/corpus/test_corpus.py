"""The bad-input corpus of issue 13, run through the command line: every case is a clear error that changes nothing.

Each case of :data:`tests.corpus.generate.CASES` writes its bad input into a folder outside the
project and runs the stage as DVC does, ``python -m tasks <stage> <domain> --set ...`` (the CLI's
``main`` in this process, with MLflow tracking on into the project's sqlite store). A project where
every domain was ingested from its good synthetic source, with a champion registered per domain,
is made once and copied for each case. Each case asserts:

1. the exit status: 1 for a stage that refuses its input, 2 for a bad param; for a finance document
   that is skipped (or hostile but readable), 0 with the batch ingested;
2. a message naming the file and the problem (case-specific substrings, the params key for a cap), the
   file as given (not a temporary copy of it, gone once the stage has failed);
3. no traceback in stdout or stderr (and no exception escaping ``main``);
4. ``data/`` byte for byte as before (finance's skip cases: the other domains' data, and the new
   ``data/raw/finance`` holding the good reports and not the bad one), the MLflow registry (models,
   versions, aliases, tags) as before;
5. no temporary or ``.old-`` folder left in the project, and nothing left in the temp directory.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from tasks import store
from tests.conftest import run_cli, setup_project
from tests.corpus.generate import BAD_DOCUMENTS, CASES, GOOD, HOSTILE_BUT_READABLE

DOMAINS = ("netflow", "eeg", "finance", "turbulence")


@dataclass(frozen=True)
class Expect:
    message: tuple[str, ...]
    """Substrings the output must hold: the file and the problem."""
    exit: int = 1
    stage: str = "ingest"
    prepare: bool = False
    """Ingest the same input first (it must succeed): the case is about a later stage."""
    skipped: str | None = None
    """finance: the document skipped while the rest of the batch is ingested (exit 0)."""
    read: tuple[str, ...] = ()
    """finance: sentences the hostile document must yield (exit 0, nothing skipped)."""
    absent: tuple[str, ...] = ()
    """Text the output must not hold (a decode error retried as transient says "failed after 4 tries")."""


def _skip(name: str, *reason: str) -> Expect:
    return Expect((f"finance: skipped {name}: ", *reason), exit=0, skipped=name)


EXPECT: dict[tuple[str, str], Expect] = {
    # ------------------------------------------------------------------ netflow
    # finding 7: decompression limits
    ("netflow", "gz-ratio-bomb"): Expect(("bomb.csv.gz: unpacks to more than 100 times its compressed size",
                                          "ingest.netflow.max_compression_ratio")),
    ("netflow", "gz-over-byte-cap"): Expect(("flows.csv.gz: unpacks to more than 100000 bytes, the cap "
                                             "ingest.netflow.max_extracted_bytes",)),
    # finding 10: reader errors, decode errors not retried (three retries would sleep 3.5 s)
    ("netflow", "not-gzip"): Expect(("flows.csv.gz: not a gzip file",), absent=("tries",)),
    ("netflow", "truncated-gz"): Expect(("cut.csv.gz: a damaged or truncated gzip file (EOFError",)),
    ("netflow", "parquet-list-column"): Expect(("nested.parquet: column(s) of list/struct/binary type {'IN_BYTES'",)),
    ("netflow", "not-parquet"): Expect(("flows.parquet: cannot read",)),
    # finding 9: labels
    ("netflow", "benign-case-difference"): Expect(("flows.csv: no row has Attack == 'benign'",
                                                   "did you mean 'Benign'?")),
    ("netflow", "benign-missing"): Expect(("normal.csv: no row has Attack == 'Benign'",
                                           "set ingest.netflow.allow_missing_benign=true")),
    ("netflow", "nan-labels"): Expect(("flows.csv: row 6, column Attack: null-like label 'NaN'", "(11 bad rows in all)")),
    ("netflow", "empty-labels"): Expect(("unlabelled.csv: row 8, column Attack: empty label",)),
    ("netflow", "duplicate-header"): Expect(("dup.csv: the header names the column(s) ['IN_BYTES'] more than once",)),
    ("netflow", "class-only-in-test"): Expect(("flows.parquet: class(es) ['Zeroday'] have no training window",
                                               "preprocess.netflow.unseen_classes"), stage="preprocess", prepare=True),
    ("netflow", "missing-label-column"): Expect(("nolabel.csv: missing required columns ['Attack']",)),
    ("netflow", "not-a-number"): Expect(("lots.csv: row 42, column OUT_PKTS: 'lots' is not a number",)),
    ("netflow", "header-only"): Expect(("header.csv: header only, no data rows",)),
    ("netflow", "empty-file"): Expect(("empty.csv: the file is empty (0 bytes)",)),
    # ------------------------------------------------------------------ eeg
    ("eeg", "zip-ratio-bomb"): Expect(("rec.zip: entry 'sub-01.edf' unpacks to 16777216 bytes",
                                       "ingest.eeg.max_compression_ratio")),
    ("eeg", "zip-over-byte-cap"): Expect(("rec.zip: the archive unpacks to",
                                          "more than the cap ingest.eeg.max_extracted_bytes (10000)")),
    ("eeg", "zip-path-traversal"): Expect(("upload.zip: unsafe archive entry '../../escaped.edf'",
                                           "nothing was extracted")),
    ("eeg", "mat-declares-128GiB"): Expect(("sub-01.mat: 'X': declares 137438953472 bytes", "ingest.eeg.max_array_bytes")),
    ("eeg", "mat-v5-over-cap"): Expect(("sub-01.mat: 'X': declares 19200 bytes", "ingest.eeg.max_array_bytes")),
    # finding 8: nothing from outside the source
    ("eeg", "symlink-out-of-source"): Expect(("sub-02.edf: a symbolic link to", "private.edf, outside the source")),
    ("eeg", "mat-external-storage"): Expect(("sub-01.mat: 'X' is stored outside the file (HDF5 external storage)",)),
    ("eeg", "mat-external-link"): Expect(("sub-01.mat: 'X' is an HDF5 external link",)),
    # finding 9: channels
    ("eeg", "mat-nan-channel"): Expect(("sub-01.mat: channel(s) ['EEG2'] hold non-finite values",)),
    ("eeg", "fif-nan-channel"): Expect(("sub-01_raw.fif: channel(s) ['C4'] hold non-finite values",)),
    ("eeg", "duplicate-channel-names"): Expect(("sub-01.edf: the channel name(s) ['C3'] appear more than once",)),
    # finding 10 and the readers' other refusals
    ("eeg", "not-an-edf"): Expect(("sub-02.edf: not a readable EDF file",)),
    ("eeg", "truncated-edf"): Expect(("sub-02.edf: not a readable EDF file: truncated",)),
    ("eeg", "no-events"): Expect(("sub-02.edf: no events (the file has no annotations)",)),
    ("eeg", "mat-label-not-in-map"): Expect(("sub-01.mat: label '3' in 'y' is not in label_map",)),
    ("eeg", "mat-missing-key"): Expect(("sub-01.mat: no data key 'X'",)),
    # ------------------------------------------------------------------ finance
    # finding 6 (and the finance parts of 7 and 10): a bad document is skipped and named, the batch ingested
    ("finance", "skip-nested-pdf"): _skip("nested-bank_2021.pdf", "not a readable PDF: objects nested too deeply"),
    ("finance", "skip-bomb-pdf"): _skip("bomb-bank_2021.pdf", "a PDF stream decompresses to more than 20000000 bytes",
                                        "ingest.finance.limits.max_pdf_stream_bytes = 20000000"),
    ("finance", "skip-deep-html"): _skip("deep-bank_2021.html", "HTML elements nested more than 512 deep",
                                         "ingest.finance.limits.max_html_depth = 512"),
    ("finance", "skip-fake-pdf"): _skip("fake-bank_2021.pdf", "not a PDF (no %PDF- header"),
    ("finance", "skip-big-txt"): _skip("big-bank_2021.txt", "2000000 bytes, over the limit "
                                       "ingest.finance.limits.max_document_bytes = 1000000"),
    ("finance", "skip-long-html"): _skip("long-bank_2021.html", "more than 10000 characters of text, over the limit "
                                         "ingest.finance.limits.max_chars = 10000"),
    ("finance", "skip-many-pdf"): _skip("many-bank_2021.pdf", "3 pages, over the limit "
                                        "ingest.finance.limits.max_pdf_pages = 2"),
    ("finance", "skip-heavy-pdf"): _skip("heavy-bank_2021.pdf", "page content decompresses to more than 1000000 bytes",
                                         "ingest.finance.limits.max_decompressed_bytes = 1000000"),
    ("finance", "skip-wide-html"): _skip("wide-bank_2021.html", "more than 1000 HTML elements, over the limit "
                                         "ingest.finance.limits.max_html_elements = 1000"),
    # finding 6: hostile but readable, in linear time (the quadratic code hung on each)
    **{("finance", f"read-{name.split('-bank')[0]}-{name.rsplit('.', 1)[1]}"):
       Expect(('"documents": 4',), exit=0, read=(name, *sentences))
       for name, (_, sentences) in HOSTILE_BUT_READABLE.items()},
    ("finance", "only-bad-documents"): Expect(("no readable document among 3: bomb-bank_2021.pdf: ",
                                               "fake-bank_2021.pdf: ", "nested-bank_2021.pdf: ")),
    ("finance", "malformed-metadata"): Expect(("metadata.csv: cannot read the metadata CSV",)),
    ("finance", "labels-list-column"): Expect(("list.parquet: column 'sentence' (List(String)) cannot be read as text",)),
    ("finance", "labels-binary-column"): Expect(("binary.parquet: column 'sentence' (Binary) cannot be read as text",)),
    ("finance", "labels-truncated-parquet"): Expect(("truncated.parquet: cannot read labelled sentences",)),
    ("finance", "labels-not-binary"): Expect(("labels.csv: column 'label' must be 0 or 1",)),
    ("finance", "labels-missing-column"): Expect(("tags.csv: missing required column(s) ['label']",)),
    # ------------------------------------------------------------------ turbulence
    # finding 7: allocation limits
    ("turbulence", "h5-declares-128GiB"): Expect(("huge.h5: velocity of shape", "declares 137438953472 bytes",
                                                  "ingest.turbulence.max_array_bytes")),
    ("turbulence", "npz-declares-128GiB"): Expect(("huge.npz: velocity of shape", "declares 137438953472 bytes",
                                                   "ingest.turbulence.max_array_bytes")),
    ("turbulence", "over-param-cap"): Expect(("field.h5: velocity",
                                              "more than the cap ingest.turbulence.max_array_bytes (1000 bytes)")),
    # finding 8
    ("turbulence", "h5-external-storage"): Expect(("ext.h5: variable velocity is HDF5 external storage",)),
    ("turbulence", "h5-external-link"): Expect(("link.h5: velocity is an HDF5 external link to", "other.h5")),
    ("turbulence", "h5-virtual-dataset"): Expect(("vds.h5: variable velocity is an HDF5 virtual dataset",)),
    ("turbulence", "zarr-symlinked-chunk"): Expect(("field.zarr: c/", "a symbolic link to", "outside the source")),
    # finding 9: values
    ("turbulence", "int16-without-scale"): Expect(("packed.h5: variable velocity stores integers (int16) without a "
                                                   "scale_factor",)),
    ("turbulence", "fill-value-1e38"): Expect(("fill.h5: velocity[1, 2, 3, 4, 0] = 1e+38, beyond",
                                               "ingest.turbulence.max_abs_value")),
    ("turbulence", "nan-value"): Expect(("nan.h5: velocity[2, 1, 5, 3, 1] = nan",)),
    ("turbulence", "report-steps-not-positive"): Expect(("evaluate.turbulence.report_steps",), exit=2, stage="evaluate"),
    # finding 10
    ("turbulence", "damaged-chunk"): Expect(("damaged.h5: cannot read variable velocity",)),
    ("turbulence", "not-hdf5"): Expect(("field.h5: cannot open as",)),
    ("turbulence", "missing-variable"): Expect(("miss.h5: variable 'velocity' not found; variables present: vel",)),
}

CASE_IDS = [(d, c) for d in CASES for c in CASES[d]]


# ============================================================================ helpers


def _data_tree(project: Path, skip: str | None = None) -> dict[str, str]:
    """Every path under data/ (hidden ones too) with the md5 of each file."""
    data = project / "data"
    return {p.relative_to(project).as_posix(): (store.file_md5(p) if p.is_file() else "dir")
            for p in sorted(data.rglob("*")) if skip is None or not p.relative_to(data).as_posix().startswith(skip)}


_TEMP_PATH = re.compile(r"/\.[^/\s]+\.[\w-]+\.tmp\b")
"""A path into one of store's temporary folders (``.<name>.<pid>-<n>.tmp``, before: ``.<name>.<random>.tmp``)."""
_LEFTOVER = re.compile(r"^\..+\.(.*\.tmp.*|tmp.*|old-.*)$")


def _leftovers(project: Path) -> list[str]:
    """Temporaries (``.<name>.<pid>-*.tmp*``) and displaced folders (``.<name>.old-*``) anywhere in the project."""
    return sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if _LEFTOVER.match(p.name))


def _registry() -> dict:
    """The MLflow registry: every model with its aliases and tags, every version with its run, source and tags."""
    from tasks import tracking

    c = tracking.client()
    out = {}
    for rm in c.search_registered_models():
        versions = c.search_model_versions(f"name='{rm.name}'")
        out[rm.name] = {"aliases": dict(rm.aliases), "tags": dict(rm.tags), "description": rm.description,
                        "versions": sorted((v.version, v.run_id, v.source, v.status, sorted(v.tags.items()))
                                           for v in versions)}
    return out


def _seed_registry(root: Path) -> None:
    """One registered version per domain, aliased champion and candidate: the registry a bad input must not touch."""
    from tasks import tracking

    c = tracking.client()
    for d in DOMAINS:
        name = tracking.registered_model_name(d)
        model = root / "seed" / d
        model.mkdir(parents=True)
        (model / "MLmodel").write_text("flavors: {}\n")
        c.create_registered_model(name, description=f"corpus seed for {d}")
        mv = c.create_model_version(name, source=str(model), tags={"gate.decision": "promoted"})
        c.set_registered_model_alias(name, "champion", mv.version)
        c.set_registered_model_alias(name, "candidate", mv.version)


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Path:
    """A project with every domain ingested from its good synthetic source and a champion per domain."""
    root = tmp_path_factory.mktemp("corpus") / "golden"
    with pytest.MonkeyPatch.context() as mp:
        setup_project(root, mp)
        from tasks.__main__ import main

        for d in DOMAINS:
            assert main(["ingest", d]) == 0, d
        _seed_registry(root)
        assert len(_registry()) == len(DOMAINS)
    assert not _leftovers(root)
    return root


@pytest.fixture
def project(golden, tmp_path, monkeypatch) -> Path:
    """A copy of the golden project (its MLflow store shared: the registry is compared, not copied)."""
    root = tmp_path / "proj"
    shutil.copytree(golden, root, symlinks=True, ignore=shutil.ignore_patterns("mlflow.db", ".locks"))
    monkeypatch.setenv("FORMERFLOW_ROOT", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{golden / 'mlflow.db'}")
    monkeypatch.delenv("FORMERFLOW_PROFILE", raising=False)
    monkeypatch.delenv("FORMERFLOW_PARENT_RUN_ID", raising=False)
    monkeypatch.chdir(root)
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return root


# ============================================================================ the tests
def test_every_case_has_its_expectation():
    assert sorted(EXPECT) == sorted(CASE_IDS)
    for d in DOMAINS:
        assert len(CASES[d]) >= 12, d


@pytest.mark.parametrize(("domain", "case"), CASE_IDS, ids=[f"{d}-{c}" for d, c in CASE_IDS])
def test_bad_input(project, tmp_path, capfd, domain, case):
    from tests.corpus.generate import write_case

    expect = EXPECT[(domain, case)]
    sets = [a for o in write_case(domain, case, tmp_path / "input") for a in ("--set", o)]
    if expect.prepare:
        rc, out = run_cli(["ingest", domain, *sets], capfd)
        assert rc == 0, out
    finance_written = expect.exit == 0 and domain == "finance"
    before = _data_tree(project, skip="raw/finance" if finance_written else None)
    registry = _registry()

    rc, out = run_cli([expect.stage, domain, *sets], capfd)

    assert rc == expect.exit, out
    for text in expect.message:
        assert text in out, f"{text!r} not in:\n{out}"
    if expect.exit == 1:
        assert f"error in {expect.stage} {domain}: " in out
    assert "Traceback" not in out, out
    assert not _TEMP_PATH.search(out), f"the message names a temporary copy, gone after the failure:\n{out}"
    for text in expect.absent:  # e.g. a decode error retried as if transient says "failed after 4 tries"
        assert text not in out, out
    assert _data_tree(project, skip="raw/finance" if finance_written else None) == before, "the stage changed data/"
    assert _registry() == registry, "the stage changed the registry"
    assert not _leftovers(project), _leftovers(project)
    assert not list((tmp_path / "tmpdir").iterdir()), "temporary files left behind"
    if finance_written:
        _check_finance_batch(project, expect)


def _check_finance_batch(project: Path, expect: Expect) -> None:
    """The good reports ingested, the bad one named in the manifest and absent from the sentences."""
    raw = project / "data/raw/finance"
    manifest = json.loads((raw / "manifest.json").read_text())
    frame = pl.read_parquet(raw / "documents.parquet")
    got = dict(zip(frame["document"], frame["sentence"], strict=True))
    for name, sentence in GOOD.items():
        assert got.get(name) == sentence, (name, got.get(name))
    skipped = [Path(s["file"]).name for s in manifest["skipped"]]
    if expect.skipped is not None:
        assert expect.skipped in BAD_DOCUMENTS
        assert skipped == [expect.skipped]
        assert expect.skipped not in set(frame["document"])
    else:
        name, *sentences = expect.read
        assert skipped == []
        assert frame.filter(pl.col("document") == name)["sentence"].to_list()[:len(sentences)] == sentences


def test_the_checks_see_what_they_guard(project, capfd):
    """The checks are not vacuous: a good ingest changes the data tree, a temporary folder and a new version are seen."""
    from tasks import tracking

    before, registry = _data_tree(project), _registry()
    assert any(k.startswith("data/raw/netflow/") for k in before)
    rc, out = run_cli(["ingest", "netflow", "--set", "ingest.netflow.synthetic.n_flows=3000"], capfd)
    assert rc == 0, out
    assert _data_tree(project) != before
    (project / "data/raw/.netflow.123-4_5.tmp").mkdir()
    (project / "data/raw/.eeg.old-123-4").mkdir()
    assert _leftovers(project) == ["data/raw/.eeg.old-123-4", "data/raw/.netflow.123-4_5.tmp"]
    assert _TEMP_PATH.search("error: /p/data/raw/.turbulence.123-4_5.tmp/nan.h5: ...")
    assert not _TEMP_PATH.search("error: /work/.tmp/pytest-of-root/input/in/nan.h5: ...")
    tracking.client().set_registered_model_alias("formerflow-netflow", "extra", "1")
    try:
        assert _registry() != registry
    finally:
        tracking.client().delete_registered_model_alias("formerflow-netflow", "extra")
    assert _registry() == registry
