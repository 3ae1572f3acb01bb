r"""``torch.distributed`` for :func:`~captum_prune.attribute_dataset`: launcher detection, the
process group, and the disjoint split of the work.

Any launcher that sets ``RANK`` and ``WORLD_SIZE`` (and ``MASTER_ADDR`` / ``MASTER_PORT``, as
``torchrun`` does) is supported. A process group that the caller already initialised is used
as it is and left alone; one created here is destroyed when the work is done.
"""
import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, List, Sequence, TypeVar

import torch
import torch.distributed as dist

__all__ = ["Group", "process_group", "split"]

T = TypeVar("T")


@dataclass
class Group:
    r"""This process's place in the job: ``rank`` of ``world_size`` (1 without a launcher)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if not self.distributed:
            return
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()

    def all_ok(self, ok: bool) -> bool:
        r"""Whether ``ok`` holds on every rank (a collective: every rank must call it)."""
        if not self.distributed:
            return ok
        flag = torch.tensor([0 if ok else 1], device=self.device)
        dist.all_reduce(flag)
        return int(flag.item()) == 0


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[Group]:
    r"""
    Yields this process's :class:`Group`. Under a launcher (``WORLD_SIZE`` > 1) without an
    initialised process group, one is created with the ``nccl`` backend when ``device`` is a
    CUDA device and ``gloo`` otherwise, and destroyed on exit.
    """
    if dist.is_available() and dist.is_initialized():
        yield Group(dist.get_rank(), dist.get_world_size(), device)
        return
    if "WORLD_SIZE" not in os.environ or _env_int("WORLD_SIZE") <= 1:
        yield Group(0, 1, device)
        return
    world_size = _env_int("WORLD_SIZE")
    rank = _env_int("RANK") if "RANK" in os.environ else None
    if rank is None or not 0 <= rank < world_size:
        raise ValueError(f"WORLD_SIZE is {world_size} but RANK is {os.environ.get('RANK')!r}; "
                         "start the processes with torchrun or set RANK for each")
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE is {world_size} but {' and '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not set; start the processes "
                         "with torchrun, which sets them")
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    try:
        yield Group(rank, world_size, device)
    finally:
        dist.destroy_process_group()


def split(items: Sequence[T], rank: int, world_size: int) -> List[T]:
    r"""
    This rank's share of ``items``: every ``world_size``-th item from ``rank``. The shares are
    disjoint and together cover ``items`` exactly (no padding duplicates, unlike the default
    of :class:`torch.utils.data.distributed.DistributedSampler`).

    Examples::

        >>> from captum_prune.maps.distributed import split
        >>> split(range(5), 0, 2), split(range(5), 1, 2)
        ([0, 2, 4], [1, 3])
    """
    return list(items)[rank::world_size]
