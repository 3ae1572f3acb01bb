r"""GridPG: the grid pointing game (Rao, Böhle, Schiele, CVPR 2022, arXiv 2205.10435).

``n x n`` grids (default 2 x 2) are built from images of *different* classes, each classified
correctly and confidently on its own. The model classifies the whole grid, so it must accept the
larger input (fully convolutional with global pooling). For the class of one cell, the score is
the positive attribution inside that cell divided by the total positive attribution; chance is
:math:`1/n^2`. Since every other cell holds a confidently recognised image of another class, a
map that spreads over the grid or marks the wrong object scores low.
"""

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from captum_prune.evaluation._explain import (
    attribute,
    batches,
    check_batch_size,
    check_explainer,
    check_images,
    check_map_matches,
    jsonable,
)
from captum_prune.evaluation.localisation import PARTS, attribution_mass_in_box
from captum_prune.evaluation.statistics import DEFAULT_N_BOOT, bootstrap_ci


@dataclass
class GridSet:
    r"""
    Grids built by :func:`make_grids`.

    Attributes:
        images (Tensor): ``G x C x nH x nW`` grid images.
        cell_classes (Tensor): ``G x n^2`` class of each cell, row-major.
        source_index (Tensor): ``G x n^2`` index of each cell's image in the source images.
        n (int): Cells per side.
    """

    images: Tensor
    cell_classes: Tensor
    source_index: Tensor
    n: int

    def cell_masks(self) -> Tensor:
        r"""Boolean ``n^2 x nH x nW`` masks of the cells, row-major."""
        h, w = self.images.shape[-2] // self.n, self.images.shape[-1] // self.n
        masks = torch.zeros(self.n * self.n, self.n * h, self.n * w, dtype=torch.bool)
        for cell in range(self.n * self.n):
            r, c = divmod(cell, self.n)
            masks[cell, r * h:(r + 1) * h, c * w:(c + 1) * w] = True
        return masks


def _probabilities(model: Any, images: Tensor, batch_size: int) -> Tensor:
    with torch.no_grad():
        return torch.cat([torch.softmax(model(images[s]), dim=1)
                          for s in batches(len(images), batch_size)])


def _check_grid_model(model: Any, grid: Tensor, n_classes: int) -> None:
    try:
        with torch.no_grad():
            out = model(grid)
    except RuntimeError as error:
        raise ValueError(
            f"the model does not accept a grid of shape {tuple(grid.shape[1:])}: the grid "
            "pointing game needs a model that takes larger inputs (fully convolutional with "
            f"global pooling, e.g. nn.AdaptiveAvgPool2d before the classifier). ({error})"
        ) from error
    if not isinstance(out, Tensor) or out.shape != (len(grid), n_classes):
        raise ValueError(
            f"on a grid the model returned shape {tuple(getattr(out, 'shape', ()))}, expected "
            f"{(len(grid), n_classes)}: it must pool globally over the grid"
        )


def make_grids(
    model: Any,
    images: Tensor,
    labels: Tensor,
    n_grids: int,
    n: int = 2,
    confidence: float = 0.9,
    seed: int = 0,
    batch_size: int = 64,
) -> GridSet:
    r"""
    Builds ``n x n`` grids of correctly and confidently classified images of different classes.

    An image is a candidate when the model's arg-max class equals its label and the softmax
    probability of that class is at least ``confidence``. Each grid takes ``n^2`` distinct
    classes at random and one candidate image of each, in random cells; the draws come from
    ``numpy.random.default_rng(seed)``, so the grids are reproducible. An image may appear in
    several grids, never twice in one.

    Args:

        model (nn.Module or callable): The classifier (logits); it must also accept the grid.
        images (Tensor): ``N x C x H x W`` source images.
        labels (Tensor): ``N`` integer labels.
        n_grids (int): Number of grids.
        n (int, optional): Cells per side. Default: 2
        confidence (float, optional): Minimum softmax probability of the correct class, in
                    [0, 1). Default: 0.9
        seed (int, optional): Seed of the grid construction. Default: 0
        batch_size (int, optional): Images per forward pass. Default: 64

    Returns:
        :class:`GridSet` with the grids, the class and source index of every cell.
    """
    images = check_images(images, "images")
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or len(labels) != len(images):
        raise ValueError("labels must be a 1-D tensor with one label per image")
    for name, value, low in (("n_grids", n_grids, 1), ("n", n, 2), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not isinstance(confidence, (int, float)) or not 0 <= confidence < 1:
        raise ValueError(f"confidence must lie in [0, 1), got {confidence!r}")
    batch_size = check_batch_size(batch_size)
    prob = _probabilities(model, images, batch_size).cpu()
    _, c, h, w = images.shape
    _check_grid_model(model, images.new_zeros(1, c, n * h, n * w), prob.shape[1])
    labels = labels.cpu().long()
    p_label = prob.gather(1, labels.view(-1, 1)).squeeze(1)
    ok = (prob.argmax(dim=1) == labels) & (p_label >= confidence)
    by_class = {int(c): torch.nonzero(ok & (labels == c)).flatten().numpy()
                for c in labels[ok].unique()}
    k = n * n
    if len(by_class) < k:
        raise ValueError(
            f"a {n} x {n} grid needs {k} classes with confidently and correctly classified "
            f"images (probability >= {confidence}); found {len(by_class)}: lower confidence "
            "or pass more images"
        )
    rng = np.random.default_rng(seed)
    classes = np.array(sorted(by_class))
    cell_classes = np.zeros((n_grids, k), dtype=np.int64)
    source = np.zeros((n_grids, k), dtype=np.int64)
    for g in range(n_grids):
        chosen = rng.choice(classes, size=k, replace=False)  # in random cell order
        cell_classes[g] = chosen
        source[g] = [rng.choice(by_class[int(c)]) for c in chosen]
    cells = images.detach()[torch.as_tensor(source.reshape(-1), device=images.device)]
    grids = (cells.view(n_grids, n, n, c, h, w).permute(0, 3, 1, 4, 2, 5)
             .reshape(n_grids, c, n * h, n * w))
    return GridSet(grids, torch.as_tensor(cell_classes), torch.as_tensor(source), n)


@dataclass
class GridPointingResult:
    r"""
    Outcome of :func:`grid_pointing_game`.

    Attributes:
        n (int): Cells per side; chance is ``1 / n**2``.
        part (str): ``"positive"`` or ``"abs"`` (the part of the map that counts).
        scores (Tensor): ``G x K`` share of the map's mass inside the explained cell, per grid
                    and explained cell (NaN where the map has no mass: undefined).
        cells (list of int): The explained cells (row-major indices).
        cell_classes (Tensor): ``G x n^2`` class of every cell.
    """

    n: int
    part: str
    scores: Tensor
    cells: List[int]
    cell_classes: Tensor

    @property
    def chance(self) -> float:
        return 1.0 / (self.n * self.n)

    @property
    def mean(self) -> float:
        r"""Mean score over grids and explained cells, ignoring undefined ones."""
        return float(np.nanmean(self.scores.numpy())) if self.n_defined else math.nan

    @property
    def n_defined(self) -> int:
        return int(torch.isfinite(self.scores).sum())

    def per_grid(self) -> np.ndarray:
        r"""``G`` mean score per grid over its explained cells (NaN if none is defined)."""
        scores = self.scores.numpy()
        counts = np.isfinite(scores).sum(axis=1)
        sums = np.where(np.isfinite(scores), scores, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / counts, np.nan)

    def ci(self, n_boot: int = DEFAULT_N_BOOT, level: float = 0.95, seed: int = 0) -> Any:
        r"""Bootstrap CI over grids of :meth:`per_grid` (grids are the independent units)."""
        return bootstrap_ci(self.per_grid(), n_boot, level, seed)

    def to_dict(self, per_example: bool = False) -> Dict[str, Any]:
        r"""JSON-ready summary with the CI; ``per_example=True`` adds the ``G x K`` scores."""
        out = {
            "protocol": "grid_pointing_game",
            "grid": f"{self.n}x{self.n}",
            "part": self.part,
            "chance": self.chance,
            "n_grids": int(self.scores.shape[0]),
            "cells": list(self.cells),
            "n_undefined": int(self.scores.numel() - self.n_defined),
            "mean": jsonable(self.mean),
            "ci": self.ci().to_dict(),
        }
        if per_example:
            out["scores"] = jsonable(self.scores)
            out["cell_classes"] = jsonable(self.cell_classes)
        return out


def grid_pointing_game(
    grids: GridSet,
    attributions: Any,
    cells: Union[str, Sequence[int]] = "all",
    part: str = "positive",
    *,
    batch_size: int = 16,
    attribute_kwargs: Optional[Dict[str, Any]] = None,
) -> GridPointingResult:
    r"""
    Grid pointing game (Rao, Böhle, Schiele, CVPR 2022) on grids from :func:`make_grids`.

    For every grid and every explained cell, the map of the cell's class is computed on the
    whole grid and scored by the share of its mass inside that cell
    (:func:`attribution_mass_in_box` with the cell as the box). By default the mass is the
    positive part, :math:`\max_c \max(A_c, 0)`, i.e. evidence *for* the class. Chance is
    :math:`1/n^2`; 1 is perfect.

    Args:

        grids (GridSet): Grids from :func:`make_grids`.
        attributions (method, callable or Tensor): An attribution method (``.attribute(inputs,
                    target=...)``) or callable ``f(inputs, target)`` run on the grids, or
                    precomputed maps: ``G * K`` maps, grid-major (all explained cells of grid
                    0, then of grid 1, ...).
        cells (str or sequence of int, optional): ``"all"`` or row-major indices of the cells
                    whose class is explained. Default: ``"all"``
        part (str, optional): ``"positive"`` or ``"abs"``. Default: ``"positive"``
        batch_size (int, optional): Maps per attribution call. Default: 16
        attribute_kwargs (dict, optional): Extra keyword arguments for the method.
                    Default: ``None``

    Returns:
        :class:`GridPointingResult` with per-grid, per-cell scores, ``mean``, ``chance`` and a
        CI over grids.

    Examples::

        >>> import torch
        >>> from captum.attr import InputXGradient
        >>> from captum_prune.evaluation import grid_pointing_game, make_grids
        >>> # Class k lights up channel k; the model pools each channel globally.
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1, bias=False),
        ...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        >>> with torch.no_grad():
        ...     _ = model[0].weight.copy_(10 * torch.eye(4).view(4, 4, 1, 1))
        >>> labels = torch.arange(8) % 4
        >>> images = torch.nn.functional.one_hot(labels, 4).float().view(8, 4, 1, 1)
        >>> images = images.expand(8, 4, 6, 6).contiguous()
        >>> grids = make_grids(model, images, labels, n_grids=3)
        >>> grids.images.shape
        torch.Size([3, 4, 12, 12])
        >>> result = grid_pointing_game(grids, InputXGradient(model))
        >>> result.scores.shape, result.mean, result.chance
        (torch.Size([3, 4]), 1.0, 0.25)
    """
    if not isinstance(grids, GridSet):
        raise TypeError(f"grids must be a GridSet from make_grids, got {type(grids).__name__}")
    if part not in PARTS:
        raise ValueError(f"part must be one of {tuple(PARTS)}, got {part!r}")
    k_all = grids.n * grids.n
    if isinstance(cells, str):
        if cells != "all":
            raise ValueError(f"cells must be 'all' or a sequence of cell indices, got {cells!r}")
        cells = list(range(k_all))
    cells = [int(c) for c in cells]
    if not cells or any(not 0 <= c < k_all for c in cells) or len(set(cells)) != len(cells):
        raise ValueError(f"cells must be distinct indices in [0, {k_all}), got {cells}")
    batch_size = check_batch_size(batch_size)
    g, k = len(grids.images), len(cells)
    grid_of = torch.arange(g).repeat_interleave(k)
    cell_of = torch.tensor(cells).repeat(g)
    inputs = grids.images[grid_of]
    target = grids.cell_classes[grid_of, cell_of].to(inputs.device)
    precomputed = check_explainer(attributions, inputs)
    maps = []
    for rows in batches(len(inputs), batch_size):
        if precomputed:
            a = attributions[rows]
        else:
            a = attribute(attributions, inputs[rows], target[rows], **(attribute_kwargs or {}))
            check_map_matches(a, inputs[rows], "attributions")
        maps.append(a.detach().cpu())
    masks = grids.cell_masks()[cell_of]
    share = attribution_mass_in_box(torch.cat(maps), masks, part).values
    return GridPointingResult(grids.n, part, share.view(g, k), cells, grids.cell_classes)
