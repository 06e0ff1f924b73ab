"""The ``ingest`` stage of the ``netflow`` domain: the configured source (or the synthetic one) to validated Parquet."""

from __future__ import annotations

import difflib
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from tasks import logs, store
from tasks.domains.netflow.data import NAME, RAW_FILE, RAW_TEST_FILE
from tasks.domains.netflow.records import LABEL, EmptySourceError, SchemaError, write_flows
from tasks.domains.netflow.synthetic import generate

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


log = logging.getLogger(__name__)


def ingest(params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """Fetch the configured source (or generate the synthetic one) and write validated Parquet.

    Output folder ``data/raw/netflow/``: ``flows.parquet`` (time order kept; a ``source_file`` column names
    the file of every row), ``test_flows.parquet`` (the rows of ``ingest.netflow.test_source`` when one is set,
    read through the same spec and refused when its columns differ from the training source's),
    ``source/`` (the synthetic CSVs, when the source is synthetic) and ``manifest.json``. The folder is replaced
    atomically, so a failure leaves the previous contents untouched.

    Returns:
        The manifest: source, files, rows, class counts, output hashes, ``one_capture`` (windows may cross
        the files), the keep columns found, and for a test source its files, rows and class counts.
    """
    p = params.ingest.netflow
    paths = store.domain_paths(NAME)
    with store.atomic_dir(paths.raw) as out, tempfile.TemporaryDirectory(dir=out) as cache:
        if p.source == "synthetic":
            s = p.synthetic
            files = generate(out / "source", n_flows=s.n_flows, seed=s.seed, n_files=s.n_files,
                             attack_fraction=s.attack_fraction)
            urls = [str(f) for f in files]
            # Record where the files will live once the folder is swapped in, not the temp folder,
            # so the manifest (and the DVC hash of data/raw) is the same on every run.
            shown = [str((paths.raw / f.relative_to(out)).relative_to(paths.root)) for f in files]
            fingerprint: Any = {"synthetic": s.model_dump()}
        else:
            urls = store.retry(lambda: store.expand_urls(p.source), retries=p.retries, delay_s=p.retry_delay_s,
                               what=f"ingest.netflow.source {p.source}")
            fingerprint = [store.source_fingerprint(u) for u in urls] if len(urls) <= 1000 else {"n": len(urls)}
            shown = urls
        target = out / RAW_FILE
        read = dict(fmt=p.format, cache=Path(cache), retries=p.retries, delay_s=p.retry_delay_s,
                    max_bytes=p.max_extracted_bytes, max_ratio=p.max_compression_ratio)
        t0 = time.perf_counter()
        # source_file: the synthetic files by their place in data/raw; a user's by their path below the files'
        # common folder (records.source_names: no bucket, host or credential in the data)
        first = write_flows(urls, p.spec, target, max_rows=p.max_rows,
                            shown=shown if p.source == "synthetic" else None, **read)
        n_rows, class_counts = _class_counts(target)
        # One line of what was read (the files' sizes as fingerprinted: a 2 GB capture says so in the log).
        sizes = {str(f.get("url")): int(f["size"]) if f.get("size") is not None else None
                 for f in (fingerprint if isinstance(fingerprint, list) else [])} or \
            {u: Path(u).stat().st_size for u in urls if Path(u).exists()}
        logs.report_read(log, "netflow ingest", sizes, rows=n_rows, seconds=time.perf_counter() - t0)
        if n_rows == 0:
            raise EmptySourceError(f"{p.source}: no data rows")
        if p.spec.benign_value not in class_counts:
            _missing_benign(p, class_counts)
        manifest = {
            "stage": "ingest", "domain": NAME, "source": p.source, "files": shown,
            "fingerprint": fingerprint, "rows": n_rows, "class_counts": class_counts,
            "spec": p.spec.name, "keep_columns": first.keep,
            # The synthetic files are chunks of one generated capture: windows run across them, as before.
            "one_capture": p.one_capture or p.source == "synthetic",
            "outputs": {"flows": store.content_hash(target)},
        }
        if p.test_source:
            test = _ingest_test_source(p, out, first, read)
            manifest["outputs"]["test_flows"] = test.pop("hash")
            manifest.update(test)
        store.atomic_write_json(out / "manifest.json", store.redact(manifest))  # no credentials in URLs
    if run is not None:
        run.log_params({"source": p.source, "spec": p.spec.name, "files": len(urls),
                        **({"test_source": p.test_source} if p.test_source else {})})
        run.log_metrics({"rows": n_rows, **{f"class_rows.{k}": v for k, v in class_counts.items()}})
    return manifest


def _class_counts(path: Path) -> tuple[int, dict[str, int]]:
    counts = pl.scan_parquet(path).group_by(LABEL).agg(pl.len().alias("n")).sort(LABEL).collect()
    n_rows = int(counts["n"].sum()) if counts.height else 0
    return n_rows, dict(zip(counts[LABEL].to_list(), [int(x) for x in counts["n"]], strict=True))


def _ingest_test_source(p: Any, out: Path, first: Any, read: dict[str, Any]) -> dict[str, Any]:
    """Read ``ingest.netflow.test_source`` through the training source's spec into ``test_flows.parquet``.

    Every test file must have the training source's columns (compared with its first file, after renames) and
    gets the same keep columns, so the two parquet files have one schema. ``max_rows`` is not applied: the test
    set is scored whole.
    """
    urls = store.retry(lambda: store.expand_urls(p.test_source), retries=p.retries, delay_s=p.retry_delay_s,
                       what=f"ingest.netflow.test_source {p.test_source}")
    target = out / RAW_TEST_FILE
    write_flows(urls, p.spec, target, keep=first.keep, same_columns_as=(first.name, first.columns), **read)
    n_rows, class_counts = _class_counts(target)
    if n_rows == 0:
        raise EmptySourceError(f"{p.test_source}: no data rows")
    fingerprint = [store.source_fingerprint(u) for u in urls] if len(urls) <= 1000 else {"n": len(urls)}
    return {"test_source": p.test_source, "test_files": urls, "test_fingerprint": fingerprint,
            "test_rows": n_rows, "test_class_counts": class_counts, "hash": store.content_hash(target)}


def _missing_benign(p: Any, class_counts: dict[str, int]) -> None:
    """No row carries the benign value: every row would become an attack. An error unless allowed."""
    near = [c for c in class_counts if c.strip().lower() == p.spec.benign_value.strip().lower()]
    near = near or difflib.get_close_matches(p.spec.benign_value, list(class_counts), n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    what = (f"{p.source}: no row has {p.spec.label_column} == {p.spec.benign_value!r} "
            f"(ingest.netflow.spec.benign_value), so every row would be an attack; "
            f"labels found: {sorted(class_counts)[:10]}{hint}")
    if near or not p.allow_missing_benign:
        # A near match is a spelling or case difference, never an all-attack capture.
        raise SchemaError(what + ("" if near else " (set ingest.netflow.allow_missing_benign=true for a "
                                                  "capture with no benign traffic)"))
    print(f"warning: {what}")
