"""Process-group helpers for data-parallel training under ``torchrun`` (DDP; gloo on CPU, nccl on CUDA).

``torchrun --nproc_per_node N -m tasks train <domain>`` starts N copies of the command with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in their environment. :func:`session`
joins them into one process group for the life of the stage; :func:`tasks.loop.fit` called with
``distributed=True`` then trains the model wrapped in ``DistributedDataParallel``, each rank on its
shard of every batch. Everything that writes (the domain's lock, checkpoints, MLflow, the stage's
outputs) runs on rank 0 alone (:func:`is_main`); its decisions reach the other ranks by
:func:`broadcast`.

A plain process (no ``WORLD_SIZE``, or ``WORLD_SIZE=1``) never creates a process group: every helper
here is then a no-op that returns what a single process would, so the default run is untouched.

A low-level module like :mod:`tasks.loop`: it imports nothing of the project. torch is imported
inside the functions that need a process group (``# lazy``): the command line imports this module
(through :mod:`tasks.stages`) and answers ``--help`` without torch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

LAUNCH_HINT = ("start it with torchrun, e.g. torchrun --standalone --nproc_per_node 2 -m tasks train <domain> "
               "(docs/operations.md, \"Scale out\")")
TIMEOUT = timedelta(minutes=30)
"""How long a rank waits in a collective for the others (rank 0 validates and fits the baselines meanwhile)."""


class DistributedError(RuntimeError):
    """A distributed run that cannot start as asked (no torchrun environment, a bad variable)."""


@dataclass(frozen=True)
class World:
    """Where this process sits in the launch: global rank, number of processes, rank on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0


def launched() -> World:
    """The ranks torchrun set in the environment (``World()``, one process, when it did not).

    Raises:
        DistributedError: ``WORLD_SIZE``, ``RANK`` or ``LOCAL_RANK`` is not an integer in range (names it).
    """
    values = {}
    for name, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
        raw = os.environ.get(name, default)
        try:
            values[name] = int(raw)
        except ValueError:
            raise DistributedError(f"${name} is {raw!r}, not an integer (torchrun sets it)") from None
    world = World(rank=values["RANK"], size=values["WORLD_SIZE"], local_rank=values["LOCAL_RANK"])
    if world.size < 1 or not 0 <= world.rank < world.size or world.local_rank < 0:
        raise DistributedError(f"$RANK={world.rank} $WORLD_SIZE={world.size} $LOCAL_RANK={world.local_rank} "
                               "are not a valid launch (0 <= RANK < WORLD_SIZE)")
    return world


def is_launched() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    return launched().size > 1


def active() -> bool:
    """Whether a process group of more than one process is initialised here."""
    if not is_launched():
        return False  # a plain process: no group, and no torch import for the command line's sake
    import torch.distributed as dist  # lazy: see the module docstring

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank in the group (0 without one)."""
    if not active():
        return 0
    import torch.distributed as dist  # lazy: see the module docstring

    return dist.get_rank()


def world_size() -> int:
    """The number of processes in the group (1 without one)."""
    if not active():
        return 1
    import torch.distributed as dist  # lazy: see the module docstring

    return dist.get_world_size()


def is_main() -> bool:
    """Rank 0, or a single process: the one that writes."""
    return rank() == 0


def device(setting: str = "auto") -> str:
    """The torch device of this rank: ``cuda:<LOCAL_RANK>`` when training on CUDA, else ``cpu``."""
    import torch  # lazy: see the module docstring

    use_cuda = setting == "cuda" or (setting == "auto" and torch.cuda.is_available())
    if not use_cuda:
        return "cpu"
    if not torch.cuda.is_available():
        raise DistributedError("train.*.device is 'cuda' but no CUDA device is available")
    return f"cuda:{launched().local_rank}" if active() or is_launched() else "cuda"


@contextlib.contextmanager
def session(device_setting: str = "auto") -> Iterator[World]:
    """Join torchrun's process group for the body (gloo on CPU, nccl on CUDA), and leave it after.

    A single process (no torchrun) gets ``World()`` and no process group. On CUDA each rank uses the
    GPU of its ``LOCAL_RANK``. The group is destroyed at the end, also when the body raises.

    Raises:
        DistributedError: torchrun's variables are malformed, or CUDA was asked for and is missing.
    """
    world = launched()
    if world.size == 1 or active():
        yield world
        return
    import torch  # lazy: see the module docstring
    import torch.distributed as dist  # lazy: see the module docstring

    on_cuda = device(device_setting).startswith("cuda")
    if on_cuda:
        torch.cuda.set_device(world.local_rank)  # before the group: nccl binds each rank to its device
    dist.init_process_group(backend="nccl" if on_cuda else "gloo", timeout=TIMEOUT)
    try:
        yield world
    finally:
        dist.destroy_process_group()


def require_launch(what: str) -> None:
    """Refuse ``what`` (a distributed run asked for by flag) when torchrun did not start this process.

    Raises:
        DistributedError: naming how to start it.
    """
    if not is_launched():
        raise DistributedError(f"{what} asked for distributed training but this process was not started by "
                               f"torchrun ($WORLD_SIZE is {os.environ.get('WORLD_SIZE', 'unset')}): {LAUNCH_HINT}")


def broadcast(obj: Any, src: int = 0) -> Any:
    """``obj`` as rank ``src`` holds it, on every rank (pickled; for small decisions and checkpoints)."""
    if not active():
        return obj
    import torch.distributed as dist  # lazy: see the module docstring

    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_sum(values: list[float]) -> list[float]:
    """The element-wise sum of ``values`` over all ranks (float64; every rank passes the same length)."""
    if not active():
        return list(values)
    import torch  # lazy: see the module docstring
    import torch.distributed as dist  # lazy: see the module docstring

    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def shard(idx, rank_: int | None = None, size: int | None = None):
    """This rank's part of one global batch of indices: every ``size``-th item from ``rank``.

    The loop draws the same global batches as a single process and each rank takes its strided part
    (a distributed sampler over the batch): together the ranks see exactly the single process's batch.
    """
    r = rank() if rank_ is None else rank_
    n = world_size() if size is None else size
    return idx[r::n]


def barrier() -> None:
    """Wait until every rank gets here (nothing without a group)."""
    if active():
        import torch.distributed as dist  # lazy: see the module docstring

        dist.barrier()
