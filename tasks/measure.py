"""Measurements shared by the compress and evaluate stages: latency and size on disk."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch


def latency_ms(model, inputs: tuple, repeats: int = 50, warmup: int = 5, threads: int | None = 1) -> dict[str, float]:
    """Median and p90 wall time (ms) of ``model(*inputs)`` on CPU under ``inference_mode``.

    Latency is measured on one intra-op thread by default: that is how a scoring
    worker runs a small model, and on a shared 2-core machine multi-threaded
    timings of millisecond-scale calls are dominated by thread contention.

    Args:
        model: A module in eval mode.
        inputs: Its positional inputs (on CPU).
        repeats: Timed calls.
        warmup: Untimed calls first (allocator and kernel selection).
        threads: torch intra-op threads during the measurement (None: leave as is).

    Returns:
        ``{"median_ms", "p90_ms", "per_item_ms"}`` where per-item divides by the batch size.
    """
    model.eval()
    times = []
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                t0 = time.perf_counter()
                model(*inputs)
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(before)
    times.sort()
    batch = int(inputs[0].shape[0]) if inputs else 1
    med = statistics.median(times)
    return {"median_ms": med, "p90_ms": times[int(0.9 * (len(times) - 1))], "per_item_ms": med / batch}


def size_on_disk(path: str | Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
