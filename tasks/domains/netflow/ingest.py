"""The ``ingest`` stage of the ``netflow`` domain: the configured source (or the synthetic one) to validated Parquet."""

from __future__ import annotations

import difflib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from tasks import store
from tasks.domains.netflow.data import NAME, RAW_FILE
from tasks.domains.netflow.records import LABEL, EmptySourceError, SchemaError, write_flows
from tasks.domains.netflow.synthetic import generate

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


def ingest(params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """Fetch the configured source (or generate the synthetic one) and write validated Parquet.

    Output folder ``data/raw/netflow/``: ``flows.parquet`` (time order kept),
    ``source/`` (the synthetic CSVs, when the source is synthetic) and
    ``manifest.json``. The folder is replaced atomically, so a failure leaves
    the previous contents untouched.

    Returns:
        The manifest: source, files, rows, class counts, output hash.
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
        write_flows(urls, p.spec, target, fmt=p.format, cache=Path(cache), retries=p.retries,
                    delay_s=p.retry_delay_s, max_rows=p.max_rows, max_bytes=p.max_extracted_bytes,
                    max_ratio=p.max_compression_ratio)
        counts = (
            pl.scan_parquet(target).group_by(LABEL).agg(pl.len().alias("n")).sort(LABEL).collect()
        )
        n_rows = int(counts["n"].sum()) if counts.height else 0
        if n_rows == 0:
            raise EmptySourceError(f"{p.source}: no data rows")
        class_counts = dict(zip(counts[LABEL].to_list(), [int(x) for x in counts["n"]], strict=True))
        if p.spec.benign_value not in class_counts:
            _missing_benign(p, class_counts)
        manifest = {
            "stage": "ingest", "domain": NAME, "source": p.source, "files": shown,
            "fingerprint": fingerprint, "rows": n_rows, "class_counts": class_counts,
            "spec": p.spec.name, "outputs": {"flows": store.content_hash(target)},
        }
        store.atomic_write_json(out / "manifest.json", store.redact(manifest))  # no credentials in URLs
    if run is not None:
        run.log_params({"source": p.source, "spec": p.spec.name, "files": len(urls)})
        run.log_metrics({"rows": n_rows, **{f"class_rows.{k}": v for k, v in class_counts.items()}})
    return manifest


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
