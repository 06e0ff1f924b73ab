"""Ingest says what it read: one INFO line per ingest with the files, bytes and rows (issue 19, progress and logs);
EEG's names its recordings and their bytes, no rows."""

from __future__ import annotations

import logging
import re

import pytest

from tasks import logs
from tasks.params import load_params
from tasks.stages import run_stage


@pytest.mark.parametrize(("domain", "rows_key"), [("netflow", "rows"), ("finance", "document_sentences"),
                                                  ("turbulence", None), ("eeg", None)])
def test_ingest_logs_one_summary_line(project, caplog, domain, rows_key):
    params = load_params()
    with caplog.at_level(logging.INFO, logger=f"tasks.domains.{domain}.ingest"):
        manifest = run_stage("ingest", domain, params, track=False)
    lines = [r.getMessage() for r in caplog.records if r.name == f"tasks.domains.{domain}.ingest"
             and r.levelno == logging.INFO and " ingest: read " in r.getMessage()]
    assert len(lines) == 1, lines
    m = re.search(r"read ([\d,]+) files?, ([\d.]+ [KMG]?i?B)", lines[0])
    assert m, lines[0]
    assert int(m.group(1).replace(",", "")) >= 1
    if rows_key:  # the rows it names are the rows the manifest counts
        assert f"{manifest[rows_key]:,} rows" in lines[0], (lines[0], manifest[rows_key])
    assert re.search(r" in \d+\.\d s$", lines[0])
    if domain == "eeg":  # every recording the manifest lists, and their bytes as they lie in data/raw
        raw = project / "data" / "raw" / "eeg"  # the manifest's paths are relative to it (source/<file>)
        size = sum(raw.joinpath(f["path"]).stat().st_size for f in manifest["files"])
        assert f"read {len(manifest['files']):,} files, {logs.human_bytes(size)} in " in lines[0], lines[0]
        assert " rows" not in lines[0]  # a recording is a signal, not rows
