"""Independent fits inside a stage, fanned out on the configured engine (``pipeline.task_runner``).

A stage with several fits that do not depend on each other (the EEG protocol's models x seeds x
folds, the compression variants) hands them to :func:`fan_out` as one function and a list of
argument tuples. With ``threads`` (the default) they run one after another in this process, exactly
as before this module existed. With ``dask`` they become tasks of the Dask cluster the stage itself
runs on (prefect-dask puts the stage there): from inside a worker, :func:`distributed.worker_client`
submits them to the same scheduler and gives the stage's worker slot back while it waits, so the
fits spread over every worker. A stage started outside the cluster (``python -m tasks``, ``dvc
repro``) joins ``pipeline.address`` when one is set and runs the fits here otherwise.

The function and its arguments travel by pickle: a top-level function, plain data or torch modules
and params (no open files, no locks). Results come back in the order of ``items`` whatever order the
workers finish in, and every fit seeds itself, so the numbers do not depend on the engine beyond
floating-point round-off of a different thread count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def _dask_client(address: str | None) -> contextlib.AbstractContextManager | None:
    """The Dask client to submit fits with: the worker's own when in one, else ``address``'s, else None."""
    try:
        from distributed import Client, get_worker, worker_client  # lazy: the scale extra, only with dask
    except ImportError as exc:  # the `scale` extra is not installed
        raise RuntimeError("pipeline.task_runner is 'dask' but dask.distributed is not installed: "
                           "pip install 'formerflow[scale]' (prefect-dask)") from exc
    try:
        get_worker()
    except ValueError:  # not in a worker: a stage run from the command line or dvc repro
        return Client(address) if address else None
    return worker_client()  # secedes from the worker's thread pool while the fits run


def fan_out(fn: Callable[..., T], items: Sequence[tuple], settings: Any = None, *, what: str = "fits",
            progress: bool = True) -> list[T]:
    """``[fn(*args) for args in items]``, on the engine of ``settings`` (``params.pipeline``).

    Args:
        fn: A top-level (picklable) function; each call must be independent of the others.
        items: One argument tuple per call.
        settings: The pipeline section of the params (``task_runner``, ``address``); None: in this process.
        what: Names the calls on the progress bar.
        progress: Show a tqdm bar (on a terminal).

    Returns:
        The results, in the order of ``items``.
    """
    runner = getattr(settings, "task_runner", "threads")
    client_cm = _dask_client(getattr(settings, "address", None)) if runner == "dask" else None
    bar = tqdm(total=len(items), desc=what, unit="fit", disable=None if progress else True, leave=False)
    try:
        if client_cm is None:
            out = []
            for args in items:
                out.append(fn(*args))
                bar.update(1)
            return out
        with client_cm as client:
            return list(_gather(client, fn, items, bar))
    finally:
        bar.close()


def _gather(client: Any, fn: Callable[..., T], items: Sequence[tuple], bar: Any) -> Iterator[T]:
    from distributed import as_completed  # lazy: the scale extra, only with dask

    # pure=False: two calls with equal arguments (the same fold twice) are still two fits.
    futures = [client.submit(fn, *args, pure=False) for args in items]
    try:
        for _ in as_completed(futures):
            bar.update(1)
        yield from client.gather(futures)  # raises the first failure, with its traceback
    finally:
        client.cancel([f for f in futures if not f.done()])
