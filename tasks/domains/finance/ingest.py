"""The ``ingest`` stage of the ``finance`` domain: documents and / or labelled sentences into ``data/raw/finance``."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks import logs, store
from tasks.domains.finance.data import CLASSES, NAME
from tasks.domains.finance.sources import (
    NoDocumentsError,
    expand_documents,
    read_documents,
    read_labels,
    read_metadata,
)
from tasks.domains.finance.synthetic import generate

if TYPE_CHECKING:
    from tasks.params import Params
    from tasks.tracking import StageRun


log = logging.getLogger(__name__)


def _sizes(urls: list[str]) -> dict[str, int | None]:
    """Each document's size in bytes (None where it is remote or gone): for the ingest's summary line."""
    return {u: (Path(u).stat().st_size if not store.is_remote(u) and Path(u).is_file() else None) for u in urls}


def ingest(params: Params, run: StageRun | None = None) -> dict[str, Any]:
    """Read the documents and / or labelled sentences (or generate the synthetic corpus) into ``data/raw/finance``.

    The folder is replaced atomically: a failure leaves the previous contents untouched.

    Returns:
        The manifest: sources, documents read and skipped (with reasons), sentences, label counts.
    """
    ip = params.ingest.finance
    paths = store.domain_paths(NAME)
    with store.atomic_dir(paths.raw) as out, tempfile.TemporaryDirectory(dir=out) as tmp:
        cache = Path(tmp)
        labels_url = ip.labels
        if ip.source == "synthetic":
            s = ip.synthetic
            gen = generate(out / "source", n_institutions=s.n_institutions, years=tuple(s.years), seed=s.seed,
                           pdf_fraction=s.pdf_fraction, html_fraction=s.html_fraction)
            doc_urls, sidecars = list(gen["files"]), [gen["metadata"]]
            labels_url = labels_url or gen["labels"]
            fingerprint: Any = {"synthetic": s.model_dump()}
            shown = [str((paths.raw / Path(f).relative_to(out)).relative_to(paths.root)) for f in doc_urls]
        elif ip.source is not None:
            doc_urls, sidecars = expand_documents(ip.source, retries=ip.retries, delay_s=ip.retry_delay_s)
            fingerprint = [store.source_fingerprint(u) for u in doc_urls[:1000]]
            shown = doc_urls
        else:
            doc_urls, sidecars, fingerprint, shown = [], [], None, []
        sidecar: dict = {}
        for m in ([ip.metadata] if ip.metadata else sidecars):
            sidecar.update(read_metadata(store.fetch_to_cache(m, cache, retries=ip.retries, delay_s=ip.retry_delay_s), m))
        t_read = time.perf_counter()
        docs, skipped = read_documents(doc_urls, ip, cache=cache, sidecar=sidecar)
        if doc_urls:
            logs.report_read(log, "finance ingest", _sizes(doc_urls), rows=docs.height,
                             seconds=time.perf_counter() - t_read)
        if doc_urls and docs.height == 0:
            raise NoDocumentsError(f"{ip.source}: no readable document among {len(doc_urls)}: "
                                   + "; ".join(s["reason"] for s in skipped[:5]))
        docs.write_parquet(out / "documents.parquet")
        manifest: dict[str, Any] = {
            "stage": "ingest", "domain": NAME, "source": ip.source, "files": shown, "fingerprint": fingerprint,
            "documents": docs["document"].n_unique() if docs.height else 0, "document_sentences": docs.height,
            "skipped": [{"file": (s["file"] if ip.source != "synthetic" else Path(s["file"]).name),
                         "reason": s["reason"]} for s in skipped],
        }
        if labels_url is not None:
            local = store.fetch_to_cache(labels_url, cache, retries=ip.retries, delay_s=ip.retry_delay_s)
            shown_labels = (str((paths.raw / local.relative_to(out)).relative_to(paths.root))
                            if ip.source == "synthetic" and ip.labels is None else labels_url)
            labelled = read_labels(local, ip.spec, labels_url, sidecar, ip.name_pattern)
            labelled.write_parquet(out / "labels.parquet")
            counts = labelled["label"].value_counts().sort("label")
            manifest.update(labels=shown_labels, labelled_sentences=labelled.height,
                            label_counts={CLASSES[k]: int(n) for k, n in counts.iter_rows()},
                            labels_fingerprint=None if ip.source == "synthetic" and ip.labels is None
                            else store.source_fingerprint(labels_url))
        manifest["outputs"] = {f.name: store.content_hash(f) for f in sorted(out.glob("*.parquet"))}
        store.atomic_write_json(out / "manifest.json", store.redact(manifest))  # no credentials in URLs
    if skipped:
        print(f"finance ingest: skipped {len(skipped)} bad document(s): "
              + "; ".join(s["reason"] for s in manifest["skipped"]))
    if run is not None:
        run.log_params({"source": str(ip.source), "labels": str(labels_url)})
        run.log_metrics({"documents": manifest["documents"], "document_sentences": manifest["document_sentences"],
                         "skipped_documents": len(skipped), "labelled_sentences": manifest.get("labelled_sentences", 0)})
    return manifest
