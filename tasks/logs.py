"""Logging for formerflow's programs: one format, one level switch, a stage's lines kept for its MLflow run.

Every module logs through the standard library, on a logger named after itself
(``logging.getLogger(__name__)``: ``tasks.loop``, ``tasks.domains.netflow.ingest``), so one line reaches
every place a reader looks:

* the terminal and a captured ``make run`` log: :func:`setup_logging`, called by the command lines
  (``python -m tasks``, ``python -m flows.pipeline``), gives the package loggers their level
  (``--quiet``: WARNING, ``--verbose``: DEBUG, INFO otherwise) and, when nothing prints log records yet,
  one stderr handler with the time and the logger's name. Under Prefect, whose console handler sits on
  the root logger already, that handler prints them (no second handler, no doubled lines);
* Prefect's run logs: :mod:`flows.pipeline` adds Prefect's API handler to the package loggers (this
  module imports no Prefect: the layer rules keep it out of ``tasks``);
* what an ingest read: :func:`report_read` (one summary line: files, bytes, rows);
* MLflow: :func:`capture` keeps the lines a stage logs while its run is open, and
  :func:`tasks.tracking.start_run` stores them as the run's ``logs/<run name>.log`` artifact.

Progress bars are for terminals only: the training bar is tqdm's with ``disable=None`` (off when the
output is not a TTY), and :func:`silence_progress_bars` switches off the bars of MLflow's artifact
downloads and of Hugging Face's downloads and weight loading when stderr is not a TTY, where they would
only print hundreds of carriage-return frames into a log.

This module is a leaf: it imports nothing of the project.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import logging
import os
import sys
from collections.abc import Iterator, Mapping

PACKAGES = ("tasks", "flows", "models")
"""The loggers this project owns (every module's logger is a child of one of them)."""

FORMAT = "%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"
"""Prefect's console layout, so that a pipeline's lines and a stage CLI's lines read alike."""
DATEFMT = "%H:%M:%S"

_HANDLER_MARK = "_formerflow_handler"
_capture: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("formerflow_log_capture", default=None)


def level_from_flags(quiet: bool = False, verbose: bool = False) -> int:
    """The log level the ``--quiet`` / ``--verbose`` flags ask for (WARNING / DEBUG; INFO without either).

    Raises:
        ValueError: both flags at once.
    """
    if quiet and verbose:
        raise ValueError("--quiet and --verbose contradict each other: pass one of them")
    return logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO


def setup_logging(level: int | str = logging.INFO) -> None:
    """Configure this project's loggers for a command-line run. Safe to call more than once.

    Sets the level of the package loggers (:data:`PACKAGES`; other libraries' loggers keep theirs) and,
    when the root logger has no handler yet (a stage CLI; not under Prefect or pytest, which install
    their own), adds one that writes ``HH:MM:SS | LEVEL | logger - message`` to stderr. Also switches
    off third-party download bars when stderr is not a terminal (:func:`silence_progress_bars`).

    Args:
        level: A ``logging`` level, or its name (``"DEBUG"``).
    """
    if isinstance(level, str):
        named = logging.getLevelName(level.upper())
        if not isinstance(named, int):
            raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
        level = named
    for name in PACKAGES:
        logging.getLogger(name).setLevel(level)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    silence_progress_bars()


def _default_levels() -> None:
    # Without setup_logging (a stage called from a test, a Prefect worker importing the flow) the package
    # loggers would inherit the root's WARNING, and their INFO lines (the epoch lines) would not even be
    # created, so neither Prefect's handlers nor capture() would see them. INFO unless someone chose.
    for name in PACKAGES:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


_default_levels()


def silence_progress_bars() -> None:
    """Switch off MLflow's and Hugging Face's progress bars when stderr is not a terminal.

    MLflow draws a bar for every artifact download (``Downloading artifacts: 10%|...``), and
    ``huggingface_hub`` / ``transformers`` for downloads and ``Loading weights``; in a log file each is a
    run of carriage-return frames. The variables are only defaults: one set by the user wins. Libraries
    that read theirs at import (``huggingface_hub``) are also told directly when already imported.
    """
    if _isatty(sys.stderr):
        return
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"].lower() not in ("1", "true", "yes", "on"):
        return  # the user asked for Hugging Face's bars
    if "huggingface_hub" in sys.modules:  # read its variable at import: tell it now
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:  # likewise (its own switch copies the hub's at import)
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class _CaptureHandler(logging.Handler):
    """Appends the formatted records of the code running inside :func:`capture` to its list."""

    def emit(self, record: logging.LogRecord) -> None:
        lines = _capture.get()
        if lines is None:
            return
        try:
            lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a log line that cannot be formatted must not fail the stage
            self.handleError(record)


_capture_handler = _CaptureHandler(logging.INFO)
_capture_handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))


@contextlib.contextmanager
def capture() -> Iterator[list[str]]:
    """Collect the project's log lines (INFO and above) emitted by the code inside the block.

    Only this context's lines: a stage running beside another in the next thread (the pipeline fans
    domains out) does not collect the other's. Threads a stage starts itself without copying its
    context (a pool of fits) log to the terminal but not into the list. Nested blocks each get the lines
    of their own extent.

    Yields:
        The list the lines are appended to (formatted like the terminal's).
    """
    lines: list[str] = []
    outer = _capture.get()
    token = _capture.set(lines)
    for name in PACKAGES:
        logger = logging.getLogger(name)
        if _capture_handler not in logger.handlers:
            logger.addHandler(_capture_handler)  # stays: it does nothing outside a capture block
    try:
        yield lines
    finally:
        _capture.reset(token)
        if outer is not None:
            outer.extend(lines)


def add_log_options(ap: argparse.ArgumentParser) -> None:
    """``-q`` / ``-v``: warnings only, or debug lines too (the default: one line per epoch and stage)."""
    noise = ap.add_mutually_exclusive_group()
    noise.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    noise.add_argument("-v", "--verbose", action="store_true", help="log debug lines too")


# ----------------------------------------------------------------------------- what an ingest read
def human_bytes(n: float) -> str:
    """``512 B``, ``3.4 MB``, ``1.20 GB`` (powers of 1024, as ``ls -h`` and ``du -h``)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}" if unit != "GB" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def report_read(logger: logging.Logger, what: str, sizes: Mapping[str, int | None], rows: int | None = None,
                seconds: float | None = None) -> None:
    """Log one summary line of an ingest: ``netflow ingest: read 12 files, 1.20 GB, 2,390,275 rows in 41.2 s``.

    Args:
        logger: The ingest module's logger.
        what: Who reads.
        sizes: Every file read -> its size in bytes (None where unknown: left out of the total).
        rows: Rows (records, segments, snapshots) read, when the domain counts them.
        seconds: How long the reading took.
    """
    total = sum(v for v in sizes.values() if v is not None)
    unknown = sum(v is None for v in sizes.values())
    parts = [f"{len(sizes):,} file{'s' if len(sizes) != 1 else ''}", human_bytes(total)
             + (f" (+{unknown} of unknown size)" if unknown else "")]
    if rows is not None:
        parts.append(f"{rows:,} rows")
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    logger.info("%s: read %s%s", what, ", ".join(parts), took)
