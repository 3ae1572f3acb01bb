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
  lowest scores, ties broken by position (the earlier neuron in forward order is pruned first).
"""
import math
from typing import List

import torch
from torch import Tensor

THRESHOLDS = ("reference", "exact")
SELECTIONS = ("global", "per_layer")


def _order_statistic(scores: Tensor, index: int) -> Tensor:
    """The ``index``-th smallest value (0-based) of every row, as float64."""
    return torch.kthvalue(scores, index + 1, dim=1).values.double()


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
    low = _order_statistic(scores, below)
    if below + 1 >= n or gamma == 0.0:
        return low
    high = _order_statistic(scores, below + 1)
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

    The lowest scores are pruned; among neurons tied at the cut, the earliest are pruned first.
    """
    n = scores.shape[1]
    n_prune = int(math.floor(sparsity * n + 0.5))
    if n_prune == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    cut = torch.kthvalue(scores, n_prune, dim=1).values.unsqueeze(1)
    keep = scores > cut
    tied = scores == cut
    # How many tied neurons must survive so that exactly n - n_prune are kept.
    spare = (n - n_prune) - keep.sum(dim=1, keepdim=True)
    # Keep the *last* tied neurons, i.e. prune the earliest ones first.
    rank_from_end = tied.flip(1).cumsum(dim=1).flip(1)
    return keep | (tied & (rank_from_end <= spare))


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
