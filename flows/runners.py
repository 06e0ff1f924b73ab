"""The Prefect task runner of ``pipeline.task_runner`` (docs/operations.md, "Scale out").

``threads`` (default) is Prefect's thread pool in this process. ``dask`` is prefect-dask's
``DaskTaskRunner``: on the scheduler at ``pipeline.address`` (a cluster someone runs: ``dask
scheduler`` + ``dask worker`` on other machines, dask-kubernetes, dask-jobqueue ...), or, without an
address, on a local cluster of ``pipeline.workers`` processes started for the run and stopped after.
Inside a stage, :mod:`tasks.fanout` sends the independent fits to the same cluster.

prefect-dask is the ``scale`` extra: asking for ``dask`` without it is an error that says what to
install, before any stage runs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner


def task_runner(settings: Any, max_workers: int) -> Any:
    """A fresh task runner for ``settings`` (``params.pipeline``); ``max_workers`` sizes the thread pool.

    Raises:
        RuntimeError: ``dask`` without prefect-dask installed.
    """
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=max_workers)
    try:
        from prefect_dask import DaskTaskRunner  # lazy: the scale extra, only with dask
    except ImportError as exc:
        raise RuntimeError("pipeline.task_runner is 'dask' but prefect-dask is not installed: "
                           "pip install 'formerflow[scale]' (or .venv/bin/python tools/install.py '.[dev,scale]')"
                           ) from exc
    if settings.address:
        return DaskTaskRunner(address=settings.address)
    # The local scheduler lives in this process: its per-client INFO lines (dozens a run) are not ours to print.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    return DaskTaskRunner(cluster_kwargs=local_cluster_kwargs(settings.workers))


def local_cluster_kwargs(workers: int) -> dict[str, Any]:
    """``distributed.LocalCluster`` settings for ``workers`` processes sharing this machine's cores.

    One task per worker at a time (a stage or a fit is already multi-threaded inside torch), and torch's
    threads per worker = cores // workers: Dask's nanny would otherwise pin every worker to one thread
    (``OMP_NUM_THREADS=1``), wasting cores when workers < cores. No dashboard (it needs bokeh and a port).
    """
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return {"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None,
            "silence_logs": logging.WARNING,
            "env": {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}}
