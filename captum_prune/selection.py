r"""Turning neuron scores into keep-masks.

Scores come per layer call: a tensor, or a list of tensors whose first dimension is the batch
(``N``). Example ``i``'s neurons are row ``i`` of every chunk, pooled in list order, which is
forward order; the pooled ``(N, n)`` matrix is never built, as it would copy every score. Each
row is handled on its own, with no Python loop over examples. Masks come back in the form of
the scores: one bool tensor per chunk, of the chunk's shape (or a tensor for a tensor).

Two threshold rules:

- ``"reference"`` (the paper's code): ``tau`` is numpy's default ("linear") percentile of the
  row at ``100 * sparsity``; neurons with ``score <= tau`` are pruned, ``tau`` being rounded to
  the scores' dtype before the comparison. Many scores are exactly zero (dead ReLUs, units a
  max-pool ignores), and all of them are pruned, so at low sparsity more neurons go than asked.
  ``sparsity=0`` prunes nothing.
- ``"exact"``: exactly ``round(sparsity * n)`` neurons are pruned per row: those with the
  lowest scores, ties broken by position (the later neuron in forward order is pruned first).
"""
import functools
import math
from typing import Any, Callable, ClassVar, List, Optional, Sequence, Tuple, Union

import numpy
import torch
from torch import Tensor

from captum_prune import _cpu
from captum_prune._registry import Registry

#: A score tensor, or row-aligned score chunks (one per layer call).
Scores = Union[Tensor, Sequence[Tensor]]

#: Rows longer than this are handled by sampling-based selection instead of a sort.
_SORT_LIMIT = 1 << 17
#: Rows up to this long go through the compiled selection where it is built (measured faster
#: than the numpy bracket up to a few million scores per example: CIFAR ResNet-8's 295k at
#: batch 1, 0.35 ms against 1.04 ms; ResNet18's 2.3M, 2.4 ms against 3.0 ms; equal at
#: ResNet50's 9.6M).
_COMPILED_ROW_LIMIT = 1 << 22
#: Sample size that brackets the wanted order statistics (the result is exact regardless).
_SAMPLE = 1 << 17
#: Half-width of the bracket, in standard deviations of the sampled rank (plus a few
#: positions): a miss only costs a slower fallback, never a wrong result.
_MARGIN_SDS = 6.0
#: The bracket of :func:`_bracketed_keep` is given up (for the general path) when the sample
#: says it would hold more than this share of a row (ties at a bound, low sparsities).
_BRACKET_MAX_SHARE = 0.25


def _rows(scores: Scores) -> List[Tensor]:
    """The chunks as ``(N, n_l)`` tensors (views where the chunks are contiguous)."""
    chunks = [scores] if isinstance(scores, Tensor) else list(scores)
    if not chunks or any(c.dim() == 0 or c.shape[0] != chunks[0].shape[0] for c in chunks):
        raise ValueError("scores: expected tensors whose first dimension is the batch")
    return [c.reshape(c.shape[0], -1) for c in chunks]


def _like(scores: Scores, masks: List[Tensor]) -> Union[Tensor, List[Tensor]]:
    """Masks in the form of ``scores``."""
    if isinstance(scores, Tensor):
        return masks[0].view(scores.shape)
    return [m.view(c.shape) for m, c in zip(masks, scores)]


def promoted_dtype(tensors: Sequence[Tensor]) -> torch.dtype:
    r"""The dtype all of ``tensors`` promote to: the one scale scores are compared on."""
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def _width(rows: List[Tensor]) -> int:
    return sum(row.shape[1] for row in rows)


def _ends(rows: List[Tensor]) -> List[int]:
    """Where each chunk ends in the pooled row."""
    ends, end = [], 0
    for row in rows:
        end += row.shape[1]
        ends.append(end)
    return ends


def order_statistics(scores: Scores, ranks: Sequence[int]) -> Tensor:
    r"""The ``ranks``-th smallest values (0-based) of every pooled row, exactly.

    A full sort or ``kthvalue`` of millions of pooled scores per example is slow, so long
    rows go through a bracket: a fixed random sample of columns gives, per row, a value
    range that should hold the wanted ranks; one counting pass confirms it and collects the
    few values inside it (about 1%), and one partition of those places the wanted ranks. If
    the bracket misses (it practically never does), the answer falls out exactly anyway.

    Args:

        scores (Tensor or list[Tensor]): Scores, the batch first (see the module docstring).
        ranks (Sequence[int]): Ranks in ``[0, n)``, close together (the bracket spans them).

    Returns:
        Tensor: ``(N, len(ranks))`` values, in the scores' (promoted) dtype.
    """
    rows = _rows(scores)
    n, dtype = _width(rows), promoted_dtype(rows)
    device = rows[0].device
    wanted = torch.tensor(list(ranks), device=device)
    if n <= _SORT_LIMIT:
        # A fresh buffer of our own (cat copies), sorted in place.
        pooled = torch.cat([row.to(dtype) for row in rows], dim=1)
        return _cpu.sort_rows_(pooled).index_select(1, wanted)
    sample = _sample_columns(rows, n, dtype)
    first, last = min(ranks), max(ranks)
    fraction = first / (n - 1)
    margin = _MARGIN_SDS * math.sqrt(_SAMPLE * fraction * (1 - fraction)) + 16
    low_at = min(math.floor(fraction * (_SAMPLE - 1) - margin), _SAMPLE - 1)
    high_at = max(math.ceil(last / (n - 1) * (_SAMPLE - 1) + margin), 0)
    inner = [at for at in (low_at, high_at) if 0 <= at < _SAMPLE]
    if inner:
        positions = torch.tensor([inner], device=device).expand(sample.shape[0], -1)
        quantiles = _cpu.ranked(sample, positions)
    unbounded = torch.full((sample.shape[0], 1), math.inf, dtype=dtype, device=device)
    low = quantiles[:, :1] if low_at >= 0 else -unbounded
    high = quantiles[:, -1:] if high_at < _SAMPLE else unbounded
    # Rows whose bracket is a single value (e.g. all-zero scores) need no values collected.
    single = (low == high).squeeze(1)
    below, counts, found = _bracket(rows, low, high, single)
    if not bool(((below <= first) & (below + counts > last)).all()):
        pooled = torch.cat([row.to(dtype) for row in rows], dim=1)
        return torch.stack([torch.kthvalue(pooled, r + 1, dim=1).values for r in ranks], dim=1)
    padded = _padded(found, low.shape[0], dtype)
    at = (wanted.unsqueeze(0) - below.unsqueeze(1)).clamp(0, padded.shape[1] - 1)
    values = _cpu.ranked(padded, at)
    return torch.where(single.unsqueeze(1), low.expand_as(values), values)


def _padded(found: List[Tuple[Tensor, Tensor]], n_rows: int, dtype: torch.dtype) -> Tensor:
    """``(N, width)``: each row's values from ``found`` (row index, value) pairs, padded with
    ``inf``. Within each pair of tensors the rows come in ascending order."""
    device = found[0][1].device
    filled = torch.zeros(n_rows, dtype=torch.int64, device=device)
    placed = []
    for row_ids, values in found:
        per_row = torch.bincount(row_ids, minlength=n_rows)
        first_of_row = torch.cumsum(per_row, 0) - per_row
        position = torch.arange(row_ids.numel(), device=device) - first_of_row[row_ids]
        placed.append((row_ids, filled[row_ids] + position, values))
        filled += per_row
    padded = torch.full(
        (n_rows, max(int(filled.max()), 1)), math.inf, dtype=dtype, device=device
    )
    for row_ids, position, values in placed:
        padded[row_ids, position] = values.to(dtype)
    return padded


@functools.lru_cache(maxsize=64)
def _columns(n: int, size: int, ends: Tuple[int, ...]) -> Tuple[Tensor, List[int]]:
    """``size`` sorted random columns of ``[0, n)`` and where each chunk's start among them."""
    # A fixed generator: the bracket, and so the speed, is reproducible (the result is exact).
    columns = torch.randint(n, (size,), generator=torch.Generator().manual_seed(0))
    columns = columns.sort().values
    bounds = torch.searchsorted(columns, torch.tensor((0,) + ends)).tolist()
    return columns, bounds


def _sample_columns(
    rows: List[Tensor], n: int, dtype: torch.dtype, size: Optional[int] = None
) -> Tensor:
    """``(N, size)`` (default ``_SAMPLE``): the same random pooled columns of every row."""
    ends = _ends(rows)
    columns, bounds = _columns(n, size or _SAMPLE, tuple(ends))
    # Chunk i holds pooled columns starts[i]..ends[i], and sampled columns bounds[i]..bounds[i+1].
    starts = [end - row.shape[1] for end, row in zip(ends, rows)]
    spans = list(zip(rows, bounds, bounds[1:], starts))
    if _cpu.on_numpy(*rows) and all(row.dtype == dtype for row in rows):
        # numpy's take, spread over the threads: the gather is bound by memory latency.
        local = [columns[a:b].numpy() - start for _, a, b, start in spans]
        parts = _cpu.map_chunks(lambda row, at: row.numpy().take(at, axis=1), rows, local)
        return torch.from_numpy(numpy.concatenate(parts, axis=1))
    columns = columns.to(rows[0].device)
    parts = [row.index_select(1, columns[a:b] - start).to(dtype)
             for row, a, b, start in spans if b > a]
    return torch.cat(parts, dim=1)


def _bracket(
    rows: List[Tensor], low: Tensor, high: Tensor, skip: Tensor
) -> Tuple[Tensor, Tensor, List[Tuple[Tensor, Tensor]]]:
    """One pass over the scores. Per row: how many are ``< low``, how many in
    ``[low, high]``; and per chunk, the (row index, value) of those in ``[low, high]`` in the
    rows not in ``skip``."""
    skip_any = bool(skip.any())

    def count(row: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        # NaN is neither below nor inside: above everything, where a sort puts it.
        below = _cpu.count_rows(_cpu.compare(row, "<", low))
        inside = _cpu.compare(row, ">=", low)
        _cpu.and_(inside, _cpu.compare(row, "<=", high))
        counts = _cpu.count_rows(inside)
        if skip_any:
            _cpu.clear_rows(inside, skip)
        flat = _cpu.nonzero_flat(inside)
        return below, counts, flat, _cpu.take_flat(row, flat)

    per_chunk = _cpu.map_chunks(count, rows)
    below = torch.stack([c[0] for c in per_chunk]).sum(dim=0)
    counts = torch.stack([c[1] for c in per_chunk]).sum(dim=0)
    # Row indices here, not in the pool: torch ops in its threads could start thread teams.
    return below, counts, [(c[2] // row.shape[1], c[3]) for c, row in zip(per_chunk, rows)]


def _greater(rows: List[Tensor], threshold: Tensor) -> List[Tensor]:
    """``row > threshold`` for every chunk (``threshold`` is ``(N, 1)``)."""
    return _cpu.map_chunks(lambda row: _cpu.compare(row, ">", threshold), rows)


def reference_threshold(scores: Scores, sparsity: float) -> Tensor:
    r"""numpy's ``percentile(row, 100 * sparsity)`` (method "linear") for every pooled row.

    Computed from two order statistics found by selection (no sort), in float64 with numpy's
    interpolation formula, so it equals ``numpy.percentile`` on the float64 row.

    Args:

        scores (Tensor or list[Tensor]): Scores, the batch first.
        sparsity (float): The fraction in ``[0, 1]``.

    Returns:
        Tensor: ``(N,)`` float64 thresholds.
    """
    n = _width(_rows(scores))
    # numpy: virtual index (n - 1) * q, where q is the percentile divided by 100.
    virtual = (n - 1) * ((100.0 * sparsity) / 100.0)
    below = math.floor(virtual)
    gamma = virtual - below
    if below + 1 >= n or gamma == 0.0:
        return order_statistics(scores, [below])[:, 0].double()
    low, high = order_statistics(scores, [below, below + 1]).double().unbind(1)
    diff = high - low
    # numpy's _lerp: interpolate from the nearer end for accuracy.
    if gamma >= 0.5:
        return high - diff * (1.0 - gamma)
    return low + diff * gamma


def reference_keep(scores: Scores, sparsity: float) -> Union[Tensor, List[Tensor]]:
    r"""Keep-masks of the paper's rule: prune ``score <= tau``, ``tau`` in the scores' dtype.

    ``sparsity == 0`` keeps every neuron, so that it always gives the plain gradient. (The
    authors' code would still prune the neurons tied at the minimum score; in real networks
    those are zero-score neurons whose removal changes nothing, but with tied weights, as in
    Captum's all-ones test models, it would.)
    """
    compiled = _compiled_reference_keep(scores, sparsity)
    if compiled is not None:
        return compiled
    rows = _rows(scores)
    if sparsity == 0:
        return _like(scores, [torch.ones_like(row, dtype=torch.bool) for row in rows])
    keep = _reference_keep_numpy(rows, sparsity)
    if keep is not None:
        return _like(scores, keep)
    tau = reference_threshold(rows, sparsity).to(promoted_dtype(rows)).unsqueeze(1)
    return _like(scores, _greater(rows, tau))


def _compiled_reference_keep(
    scores: Scores, sparsity: float
) -> Optional[Union[Tensor, List[Tensor]]]:
    """:func:`reference_keep` in one call of the compiled selection
    (:func:`captum_prune._cpu.select_keep`), for contiguous CPU float32/float64 chunks of one
    dtype whose pooled rows are at most ``_COMPILED_ROW_LIMIT`` long; ``None`` where that does
    not apply (and where the module is not built). Few steps: at batch 1 on a small network
    the Python around a selection costs as much as the selection."""
    chunks = [scores] if isinstance(scores, Tensor) else scores
    if sparsity == 0 or not chunks or not _cpu.kernels_in_use():
        return None
    dtype, first = chunks[0].dtype, chunks[0]
    num_rows = first.shape[0] if first.dim() else 0
    if dtype not in (torch.float32, torch.float64) or num_rows == 0 or not _cpu.on_numpy(*chunks):
        return None
    for chunk in chunks:
        if (
            chunk.dtype != dtype
            or chunk.dim() == 0
            or chunk.shape[0] != num_rows
            or not chunk.is_contiguous()
        ):
            return None
    n = sum(chunk.numel() for chunk in chunks) // num_rows
    if n == 0 or n > _COMPILED_ROW_LIMIT:
        return None
    ranks, gamma = _reference_ranks(n, sparsity)
    arrays = [chunk.detach().numpy() for chunk in chunks]
    keep = [torch.from_numpy(k) for k in _cpu.select_keep(arrays, ranks[0], len(ranks) == 2, gamma)]
    return keep[0] if isinstance(scores, Tensor) else keep


def _reference_ranks(n: int, sparsity: float) -> Tuple[List[int], float]:
    """The order statistics numpy's linear percentile reads, and its interpolation weight."""
    virtual = (n - 1) * ((100.0 * sparsity) / 100.0)
    below = math.floor(virtual)
    gamma = virtual - below
    if below + 1 >= n or gamma == 0.0:
        return [below], gamma
    return [below, below + 1], gamma


def _lerp(low: Any, high: Any, gamma: float) -> Any:
    """numpy's _lerp, as :func:`reference_threshold`: from the nearer end, in float64
    (silently NaN for infinities of both signs, as in torch)."""
    with numpy.errstate(invalid="ignore"):
        diff = high - low
        return high - diff * (1.0 - gamma) if gamma >= 0.5 else low + diff * gamma


def _reference_keep_numpy(rows: List[Tensor], sparsity: float) -> Optional[List[Tensor]]:
    """:func:`reference_keep` for CPU rows of one float32/float64 dtype, in numpy from end to
    end (the same values as the torch path, without its per-op overhead); ``None`` where it
    does not apply.

    Rows longer than ``_SORT_LIMIT`` take a bracket (:func:`_bracketed_keep`), shorter ones a
    sort of one pooled copy, in place (faster than any bracket in numpy there, measured).
    """
    dtype = rows[0].dtype
    if (
        dtype not in (torch.float32, torch.float64)
        or any(row.dtype != dtype for row in rows)
        or not _cpu.on_numpy(*rows)
    ):
        return None
    n = _width(rows)
    ranks, gamma = _reference_ranks(n, sparsity)
    if n > _SORT_LIMIT:
        return _bracketed_keep(rows, n, ranks, gamma)
    arrays = [row.numpy() for row in rows]
    found = _sorted_ranks(arrays, n, ranks)
    low = found[:, 0].astype(numpy.float64)
    tau = low if len(ranks) == 1 else _lerp(low, found[:, 1].astype(numpy.float64), gamma)
    threshold = tau.astype(found.dtype).reshape(-1, 1)
    return [torch.from_numpy(numpy.greater(array, threshold)) for array in arrays]


def _sorted_ranks(arrays: List[Any], n: int, ranks: List[int]) -> Any:
    """``(N, len(ranks))``: the ``ranks``-th values of each pooled row, by a sort of the row.

    One example at a time, in one row buffer that stays in cache (a sort of all rows at once
    needs a fresh pooled copy of every score: measured 10 ms against 8 ms for 64 x 72k)."""
    num_rows = arrays[0].shape[0]
    row = numpy.empty(n, dtype=arrays[0].dtype)
    found = numpy.empty((num_rows, len(ranks)), dtype=row.dtype)
    wanted = numpy.asarray(ranks)
    for i in range(num_rows):
        start = 0
        for array in arrays:
            width = array.shape[1]
            row[start : start + width] = array[i]
            start += width
        row.sort()
        found[i] = row[wanted]
    return found


def _bracketed_keep(
    rows: List[Tensor], n: int, ranks: List[int], gamma: float
) -> Optional[List[Tensor]]:
    """The reference rule's masks from one classifying pass per chunk, without a full sort.

    A sorted sample of the same columns of every row gives per row a value range
    ``[low, high]`` that should hold the wanted order statistics. Each chunk is classified
    once: ``< low`` (counted: pruned whatever the threshold), ``> high`` (kept whatever it is:
    this is the mask) and the few in between (NaN among them), whose values are collected and
    sorted per row to place the wanted ranks. The masks of those few are set once the
    threshold is known. Exact whenever the counts confirm the bracket; ``None`` otherwise,
    and when the sample says the bracket would hold too many values (ties at a bound, low
    sparsities), so that the caller sorts instead.
    """
    num_rows = rows[0].shape[0]
    size = _SAMPLE
    sample = _sample_columns(rows, n, rows[0].dtype, size).numpy()
    sample.sort(axis=1)
    first, last = ranks[0], ranks[-1]
    fraction = first / (n - 1)
    margin = _MARGIN_SDS * math.sqrt(size * fraction * (1 - fraction)) + 16
    low_at = math.floor(fraction * (size - 1) - margin)
    high_at = math.ceil(last / (n - 1) * (size - 1) + margin)
    unbounded = numpy.full(num_rows, numpy.inf, dtype=sample.dtype)
    low = numpy.ascontiguousarray(sample[:, low_at]) if low_at >= 0 else -unbounded
    high = numpy.ascontiguousarray(sample[:, high_at]) if high_at < size else unbounded
    inside = size - numpy.count_nonzero(sample < low[:, None], axis=1)
    inside -= numpy.count_nonzero(sample > high[:, None], axis=1)
    if int(inside.max()) > _BRACKET_MAX_SHARE * size:
        return None

    classified = _cpu.map_chunks(lambda row: _cpu.bracket(row.numpy(), low, high), rows)
    below = sum(c[0] for c in classified)
    if int(below.max()) > first:
        return None
    # Where each row's positions start and end (they are ascending, row-major).
    edges = [
        numpy.searchsorted(flat, numpy.arange(num_rows + 1) * row.shape[1])
        for (_, _, flat, _), row in zip(classified, rows)
    ]
    taus = numpy.empty(num_rows, dtype=numpy.float64)
    for i in range(num_rows):
        values = numpy.concatenate(
            [c[3][e[i] : e[i + 1]] for c, e in zip(classified, edges)]
        )
        # A sort (SIMD in numpy >= 2) beats a partition of these ~50k values (measured).
        values.sort()  # NaN last: finite ones first
        finite = values.size - int(numpy.count_nonzero(numpy.isnan(values)))
        at = [r - int(below[i]) for r in ranks]
        if at[-1] >= finite:
            return None
        low_value = numpy.float64(values[at[0]])
        taus[i] = low_value if len(at) == 1 else _lerp(
            low_value, numpy.float64(values[at[1]]), gamma
        )
    threshold = taus.astype(sample.dtype)
    # The masks outside the bracket ("> high" kept, "< low" pruned) hold only for a tau inside
    # it: not for a NaN one (-inf and a finite value interpolated prune everything).
    if not bool(numpy.all((threshold >= low) & (threshold <= high))):
        return None

    def settle(_row: Tensor, found: Tuple[Any, Any, Any, Any], ends: Any) -> Tensor:
        _, keep, flat, values = found
        keep.reshape(-1)[flat] = values > numpy.repeat(threshold, numpy.diff(ends))
        return torch.from_numpy(keep)

    return _cpu.map_chunks(settle, rows, classified, edges)


def exact_keep(scores: Scores, sparsity: float) -> Union[Tensor, List[Tensor]]:
    r"""Keep-masks that prune exactly ``round(sparsity * n)`` neurons of every pooled row.

    The lowest scores are pruned; among neurons tied at the cut, the earliest in forward order
    are kept and the later ones pruned.
    """
    rows = _rows(scores)
    n = _width(rows)
    n_prune = int(math.floor(sparsity * n + 0.5))
    if n_prune == 0:
        return _like(scores, [torch.ones_like(row, dtype=torch.bool) for row in rows])
    cut = order_statistics(rows, [n_prune - 1])
    keep = _greater(rows, cut)
    # How many tied neurons must survive so that exactly n - n_prune are kept.
    spare = (n - n_prune) - sum(_cpu.count_rows(k) for k in keep)
    if bool((spare == 0).all()):
        return _like(scores, keep)
    tied_before = torch.zeros_like(spare)
    for row, kept in zip(rows, keep):
        if row.shape[1] == 0:
            continue
        tied = _cpu.compare(row, "==", cut)
        rank = tied.cumsum(dim=1, dtype=torch.int64) + tied_before.unsqueeze(1)
        kept |= tied & (rank <= spare.unsqueeze(1))
        tied_before = rank[:, -1]
    return _like(scores, keep)


# ---------------------------------------------------------------- the registered rules

#: A fraction for every example, or one ``(N,)`` tensor of per-example fractions.
Sparsity = Union[float, Tensor]


class ThresholdRule:
    r"""How the neurons of one pool (a row of pooled scores per example) are pruned.

    Subclass, implement :meth:`keep` and register it with :func:`register_threshold`; its name
    is then accepted as ``threshold=...``.
    """

    name: ClassVar[str] = ""

    def keep(self, scores: Scores, sparsity: float) -> Union[Tensor, List[Tensor]]:
        r"""Keep-masks (True: kept) in the form of ``scores`` for one ``sparsity``."""
        raise NotImplementedError


class Selection:
    r"""Which pools a threshold rule is applied to (all layer calls together, or each).

    Subclass, implement :meth:`keep` and register it with :func:`register_selection`.
    """

    name: ClassVar[str] = ""

    def keep(self, scores: List[Tensor], sparsity: float, rule: ThresholdRule) -> List[Tensor]:
        r"""One keep-mask per chunk of ``scores`` (batch first) for one ``sparsity``."""
        raise NotImplementedError


#: ``threshold=...`` names and their classes.
THRESHOLD_RULES: Registry = Registry("threshold")
#: ``selection=...`` names and their classes.
SELECTION_RULES: Registry = Registry("selection")


def register_threshold(name: str) -> Callable[[type], type]:
    r"""A class decorator: registers a :class:`ThresholdRule` subclass as
    ``threshold=name``."""
    return THRESHOLD_RULES.register(name)


def register_selection(name: str) -> Callable[[type], type]:
    r"""A class decorator: registers a :class:`Selection` subclass as ``selection=name``."""
    return SELECTION_RULES.register(name)

#: The accepted names, live (a tuple-like sequence).
THRESHOLDS = THRESHOLD_RULES.names
SELECTIONS = SELECTION_RULES.names


@register_threshold("reference")
class ReferenceThreshold(ThresholdRule):
    r"""The authors' rule: numpy's linear percentile, ``score <= tau`` pruned
    (:func:`reference_keep`)."""

    def keep(self, scores: Scores, sparsity: float) -> Union[Tensor, List[Tensor]]:
        return reference_keep(scores, sparsity)


@register_threshold("exact")
class ExactThreshold(ThresholdRule):
    r"""Exactly ``round(sparsity * n)`` pruned, ties by forward order (:func:`exact_keep`)."""

    def keep(self, scores: Scores, sparsity: float) -> Union[Tensor, List[Tensor]]:
        return exact_keep(scores, sparsity)


@register_selection("global")
class GlobalSelection(Selection):
    r"""One pool per example over every layer call (the paper's)."""

    def keep(self, scores: List[Tensor], sparsity: float, rule: ThresholdRule) -> List[Tensor]:
        return list(rule.keep(list(scores), sparsity))


@register_selection("per_layer")
class PerLayerSelection(Selection):
    r"""Each layer call pruned by ``sparsity`` on its own."""

    def keep(self, scores: List[Tensor], sparsity: float, rule: ThresholdRule) -> List[Tensor]:
        return [rule.keep(chunk, sparsity) for chunk in scores]


def select(
    scores: Scores,
    sparsity: Sparsity,
    selection: str = "global",
    threshold: str = "reference",
) -> Union[Tensor, List[Tensor]]:
    r"""Keep-masks for the scores of a batch.

    Args:

        scores (Tensor or list[Tensor]): Scores, one chunk per layer call in forward order,
                    the batch first.
        sparsity (float or Tensor): Fraction of neurons to prune, ``0 <= sparsity < 1``: one
                    for all examples, or a ``(N,)`` tensor with one per example (examples
                    that share a value are selected together).
        selection (str): A registered :class:`Selection`: ``"global"`` (one threshold over
                    all chunks, the paper's) or ``"per_layer"`` (each chunk pruned by the same
                    fraction).
        threshold (str): A registered :class:`ThresholdRule`: ``"reference"`` or ``"exact"``
                    (see the module docstring).

    Returns:
        Bool masks in the form of ``scores``, True where the neuron is kept.
    """
    rule = THRESHOLD_RULES.get(threshold)()
    chooser = SELECTION_RULES.get(selection)()
    chunks = [scores] if isinstance(scores, Tensor) else list(scores)
    if isinstance(sparsity, Tensor):
        masks = _per_example(chunks, sparsity, chooser, rule)
    else:
        masks = chooser.keep(chunks, float(sparsity), rule)
    return masks[0] if isinstance(scores, Tensor) else masks


def _per_example(
    chunks: List[Tensor], sparsity: Tensor, chooser: Selection, rule: ThresholdRule
) -> List[Tensor]:
    """Masks with example ``i`` pruned by ``sparsity[i]``: the rows of each distinct value
    are selected together and put back in place."""
    num_examples = chunks[0].shape[0] if chunks and chunks[0].dim() else 0
    if sparsity.dim() != 1 or sparsity.shape[0] != num_examples:
        raise ValueError(
            f"sparsity: a tensor sparsity needs one value per example ({num_examples}), got "
            f"shape {tuple(sparsity.shape)}"
        )
    values = sparsity.detach().double().cpu()
    distinct = torch.unique(values)
    if distinct.numel() == 1:
        return chooser.keep(chunks, float(distinct[0]), rule)
    masks = [torch.empty(c.shape, dtype=torch.bool, device=c.device) for c in chunks]
    for value in distinct.tolist():
        rows = (values == value).nonzero().flatten()
        part = [c.index_select(0, rows.to(c.device)) for c in chunks]
        for mask, kept in zip(masks, chooser.keep(part, value, rule)):
            mask[rows.to(mask.device)] = kept
    return masks
