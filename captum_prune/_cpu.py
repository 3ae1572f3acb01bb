r"""numpy fast paths for CPU tensors.

On the CPU, several of torch's kernels that the method leans on are far slower than numpy's
(measured with one thread on 77M-element rows: a boolean row count 290 ms against 6 ms,
``float32 *= bool`` 85 ms against 15 ms per 26M elements, a row sort of a 131k-column sample
83 ms against a 9 ms partition). A CPU tensor is a numpy array without a copy, so these helpers
take tensors, use numpy where it is faster and torch everywhere else (CUDA, half precision).

Five steps have a compiled form, :func:`bracket`, :func:`mask_`, :func:`abs_product_`,
:func:`zero_rows` and :func:`select_keep` (the last only there: the selection calls it where
the module is in use): they run in ``captum_prune._kernels`` (C, built at install where a
compiler is) when that module is there, and in numpy or torch otherwise, with the same results
bit for bit (tested against each other).

Per-layer work on large tensors is spread over the threads torch would use
(:func:`map_chunks`), from one pool that lives for one attribution call (:func:`workers`).
"""
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, TypeVar

import numpy
import torch
from torch import Tensor

#: ``CAPTUM_PRUNE_KERNELS=0`` in the environment switches the compiled module off (to time or
#: check the numpy path; the results are the same).
KERNELS_ENV = "CAPTUM_PRUNE_KERNELS"

try:
    from captum_prune import _kernels
except ImportError:  # installed without a C compiler: numpy computes the same, slower
    _kernels = None
if os.environ.get(KERNELS_ENV, "1") == "0":
    _kernels = None


def kernels_in_use() -> bool:
    r"""Whether the compiled module ``captum_prune._kernels`` is built and switched on."""
    return _kernels is not None


R = TypeVar("R")

_NUMPY_DTYPES = frozenset((torch.float32, torch.float64, torch.bool, torch.int64, torch.int32))


def on_numpy(*tensors: Tensor) -> bool:
    r"""Whether every tensor is a CPU tensor of a dtype numpy handles natively."""
    for t in tensors:
        if not t.is_cpu or t.dtype not in _NUMPY_DTYPES:
            return False
    return True


def count_rows(mask: Tensor) -> Tensor:
    r"""``(N,)`` int64: how many entries of each row of a 2-D bool tensor are True."""
    if not on_numpy(mask):
        return mask.sum(dim=1, dtype=torch.int64)
    array = mask.numpy()
    if array.flags.c_contiguous and array.shape[1] % 8 == 0 and hasattr(numpy, "bitwise_count"):
        # numpy's count_nonzero(axis=1) sums through intp; a popcount of 8 bools at a time
        # is about 4x faster (numpy >= 2).
        words = numpy.bitwise_count(array.view(numpy.uint64))
        return torch.from_numpy(words.sum(axis=1, dtype=numpy.int64))
    return torch.from_numpy(numpy.count_nonzero(array, axis=1).astype(numpy.int64))


_COMPARISONS = {
    ">": (numpy.greater, torch.gt),
    "<": (numpy.less, torch.lt),
    ">=": (numpy.greater_equal, torch.ge),
    "<=": (numpy.less_equal, torch.le),
    "==": (numpy.equal, torch.eq),
}


def compare(values: Tensor, op: str, other: Tensor) -> Tensor:
    r"""``values <op> other`` (broadcast) as a new bool tensor; ``op`` is ``>``, ``<``,
    ``>=``, ``<=`` or ``==``."""
    with_numpy, with_torch = _COMPARISONS[op]
    if on_numpy(values, other):
        return torch.from_numpy(with_numpy(values.numpy(), other.numpy()))
    return with_torch(values, other)


def and_(mask: Tensor, other: Tensor) -> None:
    r"""``mask &= other`` for bool tensors (numpy's on the CPU: safe in a pool's threads,
    where a large torch op could start a thread team of its own)."""
    if on_numpy(mask, other):
        numpy.logical_and(mask.numpy(), other.numpy(), out=mask.numpy())
    else:
        mask &= other


def nonzero_rows(tensors: Sequence[Tensor]) -> Tensor:
    r"""``(N,)`` bool: whether example ``i`` (row ``i`` of the first dimension) has an entry
    other than 0 in any of ``tensors`` (NaN counts as one; ``-0.0`` does not)."""
    n = tensors[0].shape[0]
    if on_numpy(*tensors):
        found = numpy.zeros(n, dtype=bool)
        for t in tensors:
            counts = numpy.count_nonzero(t.detach().numpy().reshape(n, -1), axis=1)
            numpy.logical_or(found, counts > 0, out=found)
        return torch.from_numpy(found)
    found = torch.zeros(n, dtype=torch.bool, device=tensors[0].device)
    for t in tensors:
        found |= t.reshape(n, -1).ne(0).any(dim=1)
    return found


def zero_rows(tensors: Sequence[Tensor]) -> List[int]:
    r"""The examples (rows ``i`` of the first dimension) whose entries are all 0 in every one
    of ``tensors`` (NaN is not 0; ``-0.0`` is), ascending: :func:`nonzero_rows`'s False ones."""
    n = tensors[0].shape[0]
    if _kernels is not None and all(
        t.dtype in (torch.float32, torch.float64) and t.is_cpu and t.is_contiguous()
        for t in tensors
    ):
        # The compiled check stops at each row's first entry that is not 0.
        empty = _kernels.zero_rows(tensors[0].detach().numpy(), n)
        for t in tensors[1:]:
            if not empty:
                break
            also = set(_kernels.zero_rows(t.detach().numpy(), n))
            empty = [i for i in empty if i in also]
        return empty
    return (~nonzero_rows(tensors)).nonzero().flatten().tolist()


def clear_rows(mask: Tensor, rows: Tensor) -> None:
    r"""Sets every entry of the rows where the bool ``(N,)`` ``rows`` is True to False."""
    if on_numpy(mask, rows):
        mask.numpy()[rows.numpy()] = False
    else:
        mask[rows] = False


def take_flat(values: Tensor, index: Tensor) -> Tensor:
    r"""``values.reshape(-1)[index]``."""
    if on_numpy(values, index):
        return torch.from_numpy(values.numpy().reshape(-1)[index.numpy()])
    return values.reshape(-1)[index]


def mask_(values: Tensor, keep: Tensor) -> None:
    r"""Zeroes ``values`` in place where the bool ``keep`` (same shape) is False (as
    ``values *= keep``: NaN and infinities become NaN, negatives ``-0.0``)."""
    if not (on_numpy(values, keep) and values.dtype.is_floating_point and _flat(values, keep)):
        values.mul_(keep)
    elif _kernels is not None:
        _kernels.mask(values.numpy(), keep.numpy())  # one compiled pass (contiguous: _flat)
    else:
        # numpy casts the 0/1 factors in a buffered loop (49 ms against the compiled 32 ms for
        # ResNet-50's 77M ReLU outputs at batch 8); from uint8 faster than from bool.
        array = values.numpy()
        with numpy.errstate(invalid="ignore"):  # inf * 0 is NaN, silently, as in torch
            numpy.multiply(array, keep.numpy().view(numpy.uint8), out=array)


#: Elements up to which the compiled ``|a * g|`` beats torch's two ops when torch has more than
#: one thread (larger tensors: torch's two passes run on all threads, the C pass on one).
_ABS_PRODUCT_MAX_ELEMENTS = 1 << 20


def abs_product_(values: Tensor, other: Tensor) -> Tensor:
    r"""``values = |values * other|`` in place, each product rounded once (as torch's
    ``mul`` then ``abs_``); returns ``values``."""
    if (
        _kernels is not None
        and on_numpy(values, other)
        and values.dtype == other.dtype
        and values.dtype.is_floating_point
        and _flat(values, other)
        and (values.numel() <= _ABS_PRODUCT_MAX_ELEMENTS or torch.get_num_threads() == 1)
        # The C loop assumes two separate buffers (torch's ops do not).
        and values.untyped_storage().data_ptr() != other.untyped_storage().data_ptr()
    ):
        _kernels.abs_product(values.numpy(), other.numpy())
        return values
    return torch.mul(values, other, out=values).abs_()


def _flat(*tensors: Tensor) -> bool:
    """Contiguous tensors of one size: their flat arrays are views, and line up."""
    return all(t.is_contiguous() and t.numel() == tensors[0].numel() for t in tensors)


def sort_rows(values: Tensor) -> Tensor:
    r"""Each row of a 2-D tensor sorted ascending."""
    if on_numpy(values):
        return torch.from_numpy(numpy.sort(values.numpy(), axis=1))
    return torch.sort(values, dim=1).values


def sort_rows_(values: Tensor) -> Tensor:
    r"""Sorts each row of a contiguous 2-D tensor ascending, in place (no copy on numpy);
    returns it."""
    if on_numpy(values) and values.is_contiguous():
        values.numpy().sort(axis=1)
        return values
    return values.copy_(torch.sort(values, dim=1).values)


def ranked(values: Tensor, ranks: Tensor) -> Tensor:
    r"""``(N, k)``: the ``ranks[i, j]``-th smallest value (0-based) of row ``i`` of ``values``.

    On numpy, one partition of all rows at every rank asked for anywhere (a few) places each
    of them as a full sort would, in linear time.
    """
    if on_numpy(values, ranks):
        parted = numpy.partition(values.numpy(), numpy.unique(ranks.numpy()), axis=1)
        return torch.from_numpy(numpy.take_along_axis(parted, ranks.numpy(), axis=1))
    return torch.sort(values, dim=1).values.gather(1, ranks)


def nonzero_flat(mask: Tensor) -> Tensor:
    r"""Flat (row-major) indices of the True entries of a contiguous bool tensor."""
    if on_numpy(mask):
        return torch.from_numpy(numpy.flatnonzero(mask.numpy()))
    return mask.reshape(-1).nonzero().squeeze(1)


#: A uint64 of eight True bools: a word of a bool array with no False entry.
_ALL_TRUE = numpy.frombuffer(b"\x01" * 8, dtype=numpy.uint64)[0]


def false_positions(mask: Any) -> Any:
    r"""Flat (row-major, ascending) indices of the False entries of a numpy bool array.

    Fast where they are few: the array is read as 8-byte words first, and only the words
    that are not all True are unpacked (measured 23 ms for ``flatnonzero`` of the 77M-entry
    bracket masks of ResNet-50 at batch 8, with a few % False)."""
    flat = numpy.ascontiguousarray(mask).reshape(-1)
    whole = flat.size - flat.size % 8
    words = flat[:whole].view(numpy.uint64)
    partial = numpy.flatnonzero(words != _ALL_TRUE)
    inside = numpy.flatnonzero(~flat[:whole].reshape(-1, 8)[partial])
    found = partial[inside >> 3] * 8 + (inside & 7)
    if whole == flat.size:
        return found
    return numpy.concatenate([found, numpy.flatnonzero(~flat[whole:]) + whole])


def bracket(values: Any, low: Any, high: Any) -> Tuple[Any, Any, Any, Any]:
    r"""Splits each row of a 2-D float32/float64 numpy array by a per-row range.

    Args:

        values: ``(N, n)`` array.
        low, high: ``(N,)`` arrays of ``values``' dtype (``-inf`` / ``inf`` for no bound).

    Returns:
        ``(below, keep, inside, found)``: ``(N,)`` int64 counts of ``values < low``; the bool
        array ``values > high``; the flat (row-major, ascending) positions of the entries
        that are neither, NaN among them; and the values there.

    One read of ``values`` in the compiled kernel (a contiguous array); two comparisons, an
    "or", a scan of it and a gather in numpy.
    """
    num_rows, width = values.shape
    # Both paths compare in the values' dtype.
    low = numpy.ascontiguousarray(low, dtype=values.dtype)
    high = numpy.ascontiguousarray(high, dtype=values.dtype)
    if _kernels is not None and values.flags.c_contiguous:
        keep = numpy.empty(values.shape, dtype=bool)
        below = numpy.empty(num_rows, dtype=numpy.int64)
        inside, found = _kernels.bracket(values, low, high, keep, below, num_rows, width)
        inside = numpy.frombuffer(inside, dtype=numpy.int64)
        return below, keep, inside, numpy.frombuffer(found, dtype=values.dtype)
    lower = numpy.less(values, low.reshape(-1, 1))
    below = count_rows(torch.from_numpy(lower)).numpy()
    keep = numpy.greater(values, high.reshape(-1, 1))
    # In between: neither below nor kept (NaN among them), a few % of the row.
    outside = numpy.logical_or(lower, keep, out=lower)
    inside = false_positions(outside)
    return below, keep, inside, values.take(inside)


#: Scores sampled per row by the compiled selection's bracket, and its half-width in standard
#: deviations of a sampled rank (a miss costs a slower exact pass, never a different mask).
_SELECT_SAMPLE = 4096
_SELECT_MARGIN = 3.0
#: Pooled scores from which the rows of one compiled selection are spread over the pool.
_SELECT_POOL_MIN_ELEMENTS = 1 << 19


def select_keep(arrays: Sequence[Any], rank: int, two: bool, gamma: float) -> List[Any]:
    r"""The reference rule's keep-masks in one call of the compiled module (which must be
    in use: :func:`kernels_in_use`).

    Args:

        arrays: C-contiguous float32 or float64 numpy arrays (one dtype) whose first dimension
                    is the batch: row ``i`` of the pooled scores is every ``arrays[l][i]``,
                    flattened, in turn.
        rank, two, gamma: The order statistic ``rank`` of each pooled row (NaN largest), and
                    with ``two`` numpy's linear interpolation to ``rank + 1`` by ``gamma``.

    Returns:
        One bool array per chunk, of its shape: ``array > tau``, ``tau`` the interpolated value
        rounded to the arrays' dtype; what numpy's sort of each pooled row gives, bit for bit.
    """
    num_rows = arrays[0].shape[0]
    n = sum(a.size for a in arrays) // num_rows
    # One buffer for all masks, each chunk's (N, n_l) block contiguous in it.
    flat = numpy.empty(num_rows * n, dtype=bool)
    keep, at = [], 0
    for a in arrays:
        keep.append(flat[at : at + a.size].reshape(a.shape))
        at += a.size
    args = (tuple(arrays), tuple(keep), num_rows)
    tail = (rank, two, gamma, min(_SELECT_SAMPLE, n), _SELECT_MARGIN)
    pool = getattr(_local, "pool", None)
    if pool is None or num_rows < 2 or num_rows * n < _SELECT_POOL_MIN_ELEMENTS:
        _kernels.select_keep(*args, 0, num_rows, *tail)
        return keep
    bounds = numpy.linspace(0, num_rows, torch.get_num_threads() + 1).astype(int).tolist()
    spans = [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
    list(pool.map(lambda span: _kernels.select_keep(*args, *span, *tail), spans))
    return keep


#: Mean elements per chunk from which a thread pool pays (measured: it halves the time of
#: ResNet50's selection at batch 8, 1.6M per chunk, and slows it at batch 1, 0.2M).
_POOL_MIN_ELEMENTS = 1 << 20


_local = threading.local()


@contextlib.contextmanager
def workers() -> Iterator[Optional[ThreadPoolExecutor]]:
    r"""A thread pool for the CPU work of one call, shut down (its threads joined) on exit.

    It has as many threads as torch uses. Nested uses share the outer pool; with one torch
    thread there is none.
    """
    threads = torch.get_num_threads()
    if getattr(_local, "pool", None) is not None or threads < 2:
        yield getattr(_local, "pool", None)
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="captum-prune")
    _local.pool = pool
    try:
        yield pool
    finally:
        _local.pool = None
        pool.shutdown(wait=True)


def map_chunks(fn: Callable[..., R], chunks: Sequence[Tensor], *args: Sequence) -> List[R]:
    r"""``[fn(c, *a) for c, *a in zip(chunks, *args)]``, spread over torch's intra-op thread
    count for large CPU tensors.

    numpy runs one thread per call but releases the GIL inside its loops, so per-layer work
    on large CPU tensors (comparisons, counts) is spread over a pool that lives for this call
    only, using the threads that torch would use for its own kernels. ``fn`` should run numpy,
    not large torch ops, which could start thread teams of their own from the pool's threads.
    """
    threads = min(torch.get_num_threads(), len(chunks))
    large = sum(c.numel() for c in chunks) >= _POOL_MIN_ELEMENTS * len(chunks)
    if threads < 2 or not large or chunks[0].device.type != "cpu":
        return list(map(fn, chunks, *args))
    pool = getattr(_local, "pool", None)
    if pool is not None:
        return list(pool.map(fn, chunks, *args))
    with ThreadPoolExecutor(threads, thread_name_prefix="captum-prune") as pool:
        return list(pool.map(fn, chunks, *args))
