r"""Pixel ranking shared by every ordering protocol (LeRF/MoRF, ROAR, ROAD, SRG).

Sparse maps hold many exactly equal scores (a pathway gradient at sparsity 0.95 on a 28 x 28
image leaves a quarter to a half of the pixels at exactly 0). How those ties are broken decides
which pixels go first, so it is a stated part of every protocol:

- ``tie_break="random"`` (default): tied pixels are ordered by a seeded random permutation.
  The permutation of example ``i`` is drawn from ``numpy.random.default_rng([*seed, i])``, so it
  does not depend on the batch size or on which other examples are ranked, and the same example
  is ranked the same way by every protocol and fraction that uses the same seed.
- ``tie_break="position"``: the rule of earlier versions of this package, kept to reproduce older
  numbers; among equal scores the pixel earlier in row-major order comes first, in both
  directions. It flatters sparse maps on LeRF (the zero pixels removed first are whatever sits at
  the top of the image, usually background).

With ``"random"``, the least-relevant-first order is the exact reverse of the
most-relevant-first order, so LeRF and MoRF (and SRG) use one ordering.
"""

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor

from captum_prune.evaluation._explain import reduce_channels

TIE_BREAKS = ("random", "position")
SeedType = Union[int, Sequence[int]]


def check_tie_break(tie_break: str) -> str:
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    return tie_break


def _seed_words(seed: SeedType) -> list:
    words = [seed] if isinstance(seed, (int, np.integer)) else list(seed)
    if not words or any(isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 0
                        for w in words):
        raise ValueError(f"seed must be a non-negative int or a sequence of them, got {seed!r}")
    return [int(w) for w in words]


def tied_share(scores: Tensor) -> Tensor:
    r"""
    Share of the pixels of each map whose score equals the score of at least one other pixel
    of the same map, shape ``N`` (float64). ``scores`` is ``N x H x W`` (or ``N x P``).
    """
    flat = scores.reshape(scores.shape[0], -1)
    s = torch.sort(flat, dim=1).values
    same = s[:, 1:] == s[:, :-1]
    tied = torch.zeros_like(s, dtype=torch.bool)
    tied[:, 1:] |= same
    tied[:, :-1] |= same
    return tied.double().mean(dim=1).cpu()


@dataclass
class PixelRanking:
    r"""
    Outcome of :func:`rank_pixels`.

    Attributes:
        rank (Tensor): ``N x H x W`` position of every pixel in removal order (0 = first).
        tied_share (Tensor): ``N`` share of pixels whose score is tied with another pixel
                    (see :func:`tied_share`), float64 on the CPU.
        tie_break (str): The rule used, ``"random"`` or ``"position"``.
    """

    rank: Tensor
    tied_share: Tensor
    tie_break: str

    def removed(self, k: int) -> Tensor:
        r"""Boolean ``N x H x W`` mask of the first ``k`` pixels in removal order."""
        return self.rank < k


def rank_pixels(
    attributions: Tensor,
    largest: bool = True,
    tie_break: str = "random",
    seed: SeedType = 0,
    *,
    index_offset: int = 0,
    reduction: str = "max_abs",
) -> PixelRanking:
    r"""
    Ranks the pixels of every map in removal order, breaking ties by a stated rule.

    Pixels are scored by ``reduce_channels(attributions, reduction)`` (default
    :math:`\max_c |A_c|`). With ``largest=True`` the highest score comes first (MoRF, ROAR);
    otherwise the lowest (LeRF).

    Args:

        attributions (Tensor): Maps of shape ``N x C x H x W`` or ``N x H x W``.
        largest (bool, optional): Most important first (``True``) or least important first.
                    Default: ``True``
        tie_break (str, optional): ``"random"``: ties in a seeded random order, the LeRF order
                    being the exact reverse of the MoRF order; ``"position"``: ties in row-major
                    order in both directions (the old rule). Default: ``"random"``
        seed (int or sequence of int, optional): Seed of the random tie-break; example ``i``
                    uses ``numpy.random.default_rng([*seed, index_offset + i])``. Default: 0
        index_offset (int, optional): Index of the first map in the whole data set, so that
                    ranking in batches gives the same result as ranking all at once.
                    Default: 0
        reduction (str, optional): Channel reduction, see :func:`reduce_channels`.
                    Default: ``"max_abs"``

    Returns:
        :class:`PixelRanking` with the ``N x H x W`` ranks and the tied share per example.

    Examples::

        >>> import torch
        >>> from captum_prune.evaluation import rank_pixels
        >>> maps = torch.tensor([[[3.0, 0.0], [0.0, 0.0]]])  # 1 x 2 x 2, three tied zeros
        >>> ranking = rank_pixels(maps)
        >>> ranking.rank[0, 0, 0].item(), sorted(ranking.rank.flatten().tolist())
        (0, [0, 1, 2, 3])
        >>> ranking.tied_share.tolist()
        [0.75]
        >>> torch.equal(rank_pixels(maps, seed=5).rank, rank_pixels(maps, seed=5).rank)
        True
        >>> rank_pixels(maps, tie_break="position").rank.flatten().tolist()
        [0, 1, 2, 3]
    """
    check_tie_break(tie_break)
    if isinstance(index_offset, bool) or not isinstance(index_offset, int) or index_offset < 0:
        raise ValueError(f"index_offset must be a non-negative int, got {index_offset!r}")
    scores = reduce_channels(attributions, reduction)
    n, h, w = scores.shape
    flat = scores.reshape(n, h * w)
    if tie_break == "position":
        order = torch.sort(flat, dim=1, descending=largest, stable=True).indices
    else:
        words = _seed_words(seed)
        perm = torch.as_tensor(np.stack([
            np.random.default_rng(words + [index_offset + i]).permutation(h * w)
            for i in range(n)
        ]) if n else np.zeros((0, h * w), dtype=np.int64), device=flat.device)
        # Stable sort of the permuted scores: ties keep their random order.
        within = torch.sort(flat.gather(1, perm), dim=1, descending=True, stable=True).indices
        order = perm.gather(1, within)
        if not largest:
            order = order.flip(1)
    positions = torch.arange(h * w, device=order.device).expand(n, h * w)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    return PixelRanking(rank.reshape(n, h, w), tied_share(flat), tie_break)

