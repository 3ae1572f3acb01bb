r"""Turning neuron scores into keep-masks.

All functions work on a score matrix of shape ``(N, n)``: one row per example, every neuron
of the pathway pooled along the row. Each row is handled on its own, with no Python loop over
examples.

Two threshold rules:

- ``"reference"`` (the paper's code): ``tau`` is numpy's default ("linear") percentile of the
  row at ``100 * sparsity``; neurons with ``score <= tau`` are pruned, ``tau`` being rounded to
  the scores' dtype before the comparison. Many scores are exactly zero (dead ReLUs, units a
  max-pool ignores), and all of them are pruned, so at low sparsity more neurons go than asked.
  ``sparsity=0`` prunes nothing.
- ``"exact"``: exactly ``round(sparsity * n)`` neurons are pruned per row: those with the
  lowest scores, ties broken by position (the later neuron in forward order is pruned first).
"""
import math
from typing import List, Sequence, Tuple

import numpy
import torch
from torch import Tensor

THRESHOLDS = ("reference", "exact")
SELECTIONS = ("global", "per_layer")


#: Rows longer than this are handled by sampling-based selection instead of a sort.
_SORT_LIMIT = 1 << 17
#: Sample size that brackets the wanted order statistics (the result is exact regardless).
_SAMPLE = 1 << 17
#: Half-width of the bracket, in standard deviations of the sampled rank (plus a few
#: positions): a miss only costs a slower fallback, never a wrong result.
_MARGIN_SDS = 6.0


def order_statistics(scores: Tensor, ranks: Sequence[int]) -> Tensor:
    r"""The ``ranks``-th smallest values (0-based) of every row, exactly.

    A full sort or ``kthvalue`` of millions of pooled scores per example is slow, so long
    rows go through a bracket: a fixed random sample of columns gives, per row, a value
    range that should hold the wanted ranks; exact counts confirm it, and only the few
    values inside it are sorted. If the bracket misses (it practically never does), or a
    row's bracket is one repeated value, the answer falls out exactly anyway.

    Args:

        scores (Tensor): ``(N, n)``.
        ranks (Sequence[int]): Ranks in ``[0, n)``, close together (the bracket spans them).

    Returns:
        Tensor: ``(N, len(ranks))`` values, in the scores' dtype.
    """
    n_rows, n = scores.shape
    device = scores.device
    wanted = torch.tensor(list(ranks), device=device)
    if n <= _SORT_LIMIT:
        return torch.sort(scores, dim=1).values.index_select(1, wanted)
    # A fixed generator: the bracket, and so the speed, is reproducible (the result is exact).
    columns = torch.randint(n, (_SAMPLE,), generator=torch.Generator().manual_seed(0))
    sample = scores.index_select(1, columns.to(device)).sort(dim=1).values
    first, last = min(ranks), max(ranks)
    fraction = first / (n - 1)
    margin = _MARGIN_SDS * math.sqrt(_SAMPLE * fraction * (1 - fraction)) + 16
    low_at = min(math.floor(fraction * (_SAMPLE - 1) - margin), _SAMPLE - 1)
    high_at = max(math.ceil(last / (n - 1) * (_SAMPLE - 1) + margin), 0)
    unbounded = torch.full((n_rows,), math.inf, dtype=scores.dtype, device=device)
    low = (sample[:, low_at] if low_at >= 0 else -unbounded).unsqueeze(1)
    high = (sample[:, high_at] if high_at < _SAMPLE else unbounded).unsqueeze(1)
    below, at_or_below_high = _count_below(scores, low, high)
    hit = (below <= first) & (at_or_below_high > last)
    if not bool(hit.all()):
        return torch.stack(
            [torch.kthvalue(scores, r + 1, dim=1).values for r in ranks], dim=1
        )
    # Rows whose bracket is a single value (e.g. all-zero scores) need no extraction.
    single = (low == high).squeeze(1)
    between, counts = _values_between(scores, low, high, ~single.unsqueeze(1))
    # Lay each row's few bracketed values out in a padded matrix and sort that.
    width = max(int(counts.max()), 1)
    rows = torch.repeat_interleave(torch.arange(n_rows, device=device), counts)
    start = torch.cumsum(counts, 0) - counts
    padded = torch.full((n_rows, width), math.inf, dtype=scores.dtype, device=device)
    padded[rows, torch.arange(rows.numel(), device=device) - start[rows]] = between
    padded = padded.sort(dim=1).values
    at = (wanted.unsqueeze(0) - below.unsqueeze(1)).clamp(0, width - 1)
    values = padded.gather(1, at)
    return torch.where(single.unsqueeze(1), low.expand_as(values), values)


def _on_numpy(scores: Tensor) -> bool:
    # numpy's comparisons and counts are several times faster than torch's bool reductions
    # on the CPU, and a CPU tensor is a numpy array without a copy.
    return scores.device.type == "cpu" and scores.dtype in (torch.float32, torch.float64)


def _count_below(scores: Tensor, low: Tensor, high: Tensor) -> Tuple[Tensor, Tensor]:
    """Per row: how many scores are ``< low`` and how many are ``<= high``."""
    if _on_numpy(scores):
        a, lo, hi = scores.detach().numpy(), low.numpy(), high.numpy()
        below = numpy.count_nonzero(a < lo, axis=1)
        upto = numpy.count_nonzero(a <= hi, axis=1)
        return torch.from_numpy(below).long(), torch.from_numpy(upto).long()
    return (
        (scores < low).sum(dim=1, dtype=torch.int64),
        (scores <= high).sum(dim=1, dtype=torch.int64),
    )


def _values_between(
    scores: Tensor, low: Tensor, high: Tensor, rows_wanted: Tensor
) -> Tuple[Tensor, Tensor]:
    """Every score in ``[low, high]`` of the wanted rows (row-major), and how many per row."""
    if _on_numpy(scores):
        a = scores.detach().numpy()
        inside = numpy.greater_equal(a, low.numpy())
        inside &= numpy.less_equal(a, high.numpy())  # in place: one bool temporary, not three
        if not bool(rows_wanted.all()):
            inside &= rows_wanted.numpy()
        counts = numpy.count_nonzero(inside, axis=1)
        return torch.from_numpy(a[inside]), torch.from_numpy(counts).long()
    inside = (scores >= low) & (scores <= high) & rows_wanted
    return scores[inside], inside.sum(dim=1)


def reference_threshold(scores: Tensor, sparsity: float) -> Tensor:
    r"""numpy's ``percentile(row, 100 * sparsity)`` (method "linear") for every row.

    Computed from two order statistics found by selection (no sort), in float64 with numpy's
    interpolation formula, so it equals ``numpy.percentile`` on the float64 row.

    Args:

        scores (Tensor): ``(N, n)`` scores.
        sparsity (float): The fraction in ``[0, 1]``.

    Returns:
        Tensor: ``(N,)`` float64 thresholds.
    """
    n = scores.shape[1]
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


def reference_keep(scores: Tensor, sparsity: float) -> Tensor:
    r"""Keep-mask of the paper's rule: prune ``score <= tau``, ``tau`` in the scores' dtype.

    ``sparsity == 0`` keeps every neuron, so that it always gives the plain gradient. (The
    authors' code would still prune the neurons tied at the minimum score; in real networks
    those are zero-score neurons whose removal changes nothing, but with tied weights, as in
    Captum's all-ones test models, it would.)
    """
    if sparsity == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    tau = reference_threshold(scores, sparsity).to(scores.dtype)
    return scores > tau.unsqueeze(1)


def exact_keep(scores: Tensor, sparsity: float) -> Tensor:
    r"""Keep-mask that prunes exactly ``round(sparsity * n)`` neurons of every row.

    The lowest scores are pruned; among neurons tied at the cut, the earliest in forward order
    are kept and the later ones pruned.
    """
    n = scores.shape[1]
    n_prune = int(math.floor(sparsity * n + 0.5))
    if n_prune == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    cut = order_statistics(scores, [n_prune - 1])
    keep = scores > cut
    tied = scores == cut
    # How many tied neurons must survive so that exactly n - n_prune are kept.
    spare = (n - n_prune) - keep.sum(dim=1, keepdim=True)
    if bool((spare == 0).all()):
        return keep
    return keep | (tied & (tied.cumsum(dim=1, dtype=torch.int32) <= spare))


def select(
    scores: Tensor,
    layer_sizes: List[int],
    sparsity: float,
    selection: str = "global",
    threshold: str = "reference",
) -> Tensor:
    r"""Keep-mask for pooled scores.

    Args:

        scores (Tensor): ``(N, sum(layer_sizes))`` scores, layers side by side in forward order.
        layer_sizes (list[int]): Neurons per layer call, per example.
        sparsity (float): Fraction of neurons to prune, ``0 <= sparsity < 1``.
        selection (str): ``"global"`` (one threshold over all layers, the paper's) or
                    ``"per_layer"`` (each layer call pruned by the same fraction).
        threshold (str): ``"reference"`` or ``"exact"`` (see the module docstring).

    Returns:
        Tensor: bool ``(N, n)``, True where the neuron is kept.
    """
    keep_rule = reference_keep if threshold == "reference" else exact_keep
    if selection == "global":
        return keep_rule(scores, sparsity)
    keep = torch.empty_like(scores, dtype=torch.bool)
    start = 0
    for size in layer_sizes:
        keep[:, start : start + size] = keep_rule(scores[:, start : start + size], sparsity)
        start += size
    return keep
