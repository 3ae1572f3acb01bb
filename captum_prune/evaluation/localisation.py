r"""Localisation metrics: attribution mass inside the object and the pointing game.

Maps are first reduced to one channel with :func:`reduce_channels`: ``part="positive"``
(default) uses :math:`\max_c \max(A_c, 0)`, i.e. evidence *for* the target only;
``part="abs"`` uses :math:`\max_c |A_c|`, for maps whose sign is not meaningful.
"""

from dataclasses import dataclass
from typing import Any, Dict

import torch
from torch import Tensor

from captum_prune._shared import is_number
from captum_prune.evaluation._explain import jsonable, mean_std, reduce_channels
from captum_prune.evaluation.statistics import DEFAULT_N_BOOT, bootstrap_ci

PARTS = {"positive": "max_positive", "abs": "max_abs"}


@dataclass
class LocalisationResult:
    r"""
    Per-example localisation scores.

    Attributes:
        metric (str): ``"mass_in_box"`` or ``"pointing_game"``.
        part (str): ``"positive"`` or ``"abs"``.
        values (Tensor): One score per example (a share in [0, 1], NaN where the map has no
                    mass; or 1.0 / 0.0 for a pointing-game hit / miss).
    """

    metric: str
    part: str
    values: Tensor

    @property
    def mean(self) -> float:
        r"""Mean over examples, ignoring NaN."""
        return float(mean_std(self.values.numpy())[0])

    @property
    def std(self) -> float:
        r"""Sample standard deviation over examples, ignoring NaN."""
        return float(mean_std(self.values.numpy())[1])

    def ci(self, n_boot: int = DEFAULT_N_BOOT, level: float = 0.95, seed: int = 0) -> Any:
        r"""Bootstrap CI over examples of the mean (NaN left out, counted)."""
        return bootstrap_ci(self.values, n_boot, level, seed)

    def to_dict(self, per_example: bool = False) -> Dict[str, Any]:
        r"""JSON-ready summary with the 95% bootstrap CI; ``per_example=True`` adds the
        per-example values."""
        out = {
            "protocol": self.metric,
            "part": self.part,
            "n_examples": int(self.values.numel()),
            "n_undefined": int(torch.isnan(self.values).sum()),
            "mean": jsonable(self.mean),
            "std": jsonable(self.std),
            "ci": self.ci().to_dict(),
        }
        if per_example:
            out["values"] = jsonable(self.values)
        return out


def boxes_to_masks(boxes: Any, height: int, width: int) -> Tensor:
    r"""
    Converts boxes ``N x 4`` given as ``(x_min, y_min, x_max, y_max)`` in pixel indices to
    boolean masks ``N x H x W`` holding the pixels with ``x_min <= x < x_max`` and
    ``y_min <= y < y_max``.
    """
    b = torch.as_tensor(boxes)
    if b.dim() != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape N x 4, got {tuple(b.shape)}")
    ys = torch.arange(height).view(1, -1, 1)
    xs = torch.arange(width).view(1, 1, -1)
    x0, y0, x1, y1 = (b[:, i].view(-1, 1, 1) for i in range(4))
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def _prepare(attributions: Any, object_masks: Any, part: str):
    if part not in PARTS:
        raise ValueError(f"part must be one of {tuple(PARTS)}, got {part!r}")
    if not isinstance(object_masks, Tensor):
        raise TypeError(f"object_masks must be a torch.Tensor, got {type(object_masks).__name__}")
    masks = object_masks
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.dim() != 3:
        raise ValueError(
            "object_masks must have shape N x H x W or N x 1 x H x W, "
            f"got {tuple(object_masks.shape)}"
        )
    maps = reduce_channels(attributions, PARTS[part])
    if maps.shape != masks.shape:
        raise ValueError(
            f"object_masks of shape {tuple(masks.shape)} does not match the reduced attributions "
            f"of shape {tuple(maps.shape)}"
        )
    return maps.double().cpu(), masks.cpu() != 0


def attribution_mass_in_box(
    attributions: Tensor, object_masks: Tensor, part: str = "positive"
) -> LocalisationResult:
    r"""
    Share of the attribution mass that falls inside the object, per example.

    Args:

        attributions (Tensor): Maps of shape ``N x C x H x W`` or ``N x H x W``.
        object_masks (Tensor): Object regions, ``N x H x W`` or ``N x 1 x H x W``; non-zero means
                    inside. Use :func:`boxes_to_masks` for bounding boxes.
        part (str, optional): ``"positive"``: mass of :math:`\max_c \max(A_c, 0)`;
                    ``"abs"``: mass of :math:`\max_c |A_c|`. Default: ``"positive"``

    Returns:
        :class:`LocalisationResult` with the share per example in [0, 1]; NaN where the map has
        no mass (``mean``/``std`` ignore those).

    Examples::

        >>> import torch
        >>> from captum.attr import Saliency
        >>> from captum_prune.evaluation import attribution_mass_in_box, boxes_to_masks
        >>> # Two hand-made maps: all mass inside the box, and a quarter of it inside.
        >>> maps = torch.zeros(2, 8, 8)
        >>> maps[0, 3, 3] = 1.0
        >>> maps[1, 3, 3], maps[1, 0, 0] = 1.0, 3.0
        >>> masks = boxes_to_masks([[2, 2, 6, 6], [2, 2, 6, 6]], height=8, width=8)
        >>> result = attribution_mass_in_box(maps, masks)
        >>> result.values.tolist(), result.mean
        ([1.0, 0.25], 0.625)
        >>> # Saliency maps of a model, N x C x H x W: reduced to one map by the channel max.
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3)).eval()
        >>> images = torch.rand(4, 3, 8, 8)
        >>> maps = Saliency(model).attribute(images, target=0)
        >>> masks = boxes_to_masks([[2, 2, 6, 6]] * 4, height=8, width=8)
        >>> result = attribution_mass_in_box(maps, masks)
        >>> result.values.shape, bool(((result.values >= 0) & (result.values <= 1)).all())
        (torch.Size([4]), True)
        >>> result.to_dict()
        {'protocol': 'mass_in_box', 'part': 'positive', 'n_examples': 4, 'n_undefined': 0,
         'mean': 0.2..., 'std': 0.0..., 'ci': {'mean': 0.2..., 'low': 0.2..., 'high': 0.2...,
         'n': 4, 'n_undefined': 0, 'level': 0.95}}
    """
    maps, masks = _prepare(attributions, object_masks, part)
    total = maps.sum(dim=(1, 2))
    inside = (maps * masks).sum(dim=(1, 2))
    share = torch.where(total > 0, inside / total.clamp_min(1e-300), torch.nan)
    return LocalisationResult(metric="mass_in_box", part=part, values=share)


def pointing_game(
    attributions: Tensor,
    object_masks: Tensor,
    tolerance: float = 0,
    part: str = "positive",
) -> LocalisationResult:
    r"""
    Pointing game (Zhang et al. 2016): a hit when the maximum of the map lies in the object, or
    within ``tolerance`` pixels (Euclidean) of it.

    The maximum is taken on the reduced map; among equal maxima the first in row-major order
    counts. A constant map (e.g. all zero) points nowhere and counts as a miss.

    Args:

        attributions (Tensor): Maps of shape ``N x C x H x W`` or ``N x H x W``.
        object_masks (Tensor): Object regions, ``N x H x W`` or ``N x 1 x H x W``.
        tolerance (float, optional): Distance in pixels that still counts as a hit. Default: 0
        part (str, optional): ``"positive"`` or ``"abs"``, see
                    :func:`attribution_mass_in_box`. Default: ``"positive"``

    Returns:
        :class:`LocalisationResult` with 1.0 (hit) or 0.0 (miss) per example; ``mean`` is the
        hit rate.

    Examples::

        >>> import torch
        >>> from captum.attr import Saliency
        >>> from captum_prune.evaluation import boxes_to_masks, pointing_game
        >>> # Peaks at (row 3, col 3) inside the box, and at (row 1, col 3) just above it.
        >>> maps = torch.zeros(2, 8, 8)
        >>> maps[0, 3, 3], maps[1, 1, 3] = 1.0, 1.0
        >>> masks = boxes_to_masks([[2, 2, 6, 6], [2, 2, 6, 6]], height=8, width=8)
        >>> pointing_game(maps, masks).values.tolist()
        [1.0, 0.0]
        >>> pointing_game(maps, masks, tolerance=1).mean  # one pixel away now counts
        1.0
        >>> # Maps of a model, N x C x H x W.
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3)).eval()
        >>> images = torch.rand(4, 3, 8, 8)
        >>> maps = Saliency(model).attribute(images, target=0)
        >>> result = pointing_game(maps, boxes_to_masks([[2, 2, 6, 6]] * 4, 8, 8), part="abs")
        >>> result.to_dict()["protocol"], result.values.shape
        ('pointing_game', torch.Size([4]))
        >>> set(result.values.tolist()) <= {0.0, 1.0}
        True
    """
    if not is_number(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative number of pixels, got {tolerance!r}")
    maps, masks = _prepare(attributions, object_masks, part)
    n, h, w = maps.shape
    flat = maps.reshape(n, -1)
    peak = flat.argmax(dim=1)
    py, px = (peak // w).view(-1, 1, 1), (peak % w).view(-1, 1, 1)
    ys = torch.arange(h).view(1, -1, 1)
    xs = torch.arange(w).view(1, 1, -1)
    near = (ys - py) ** 2 + (xs - px) ** 2 <= float(tolerance) ** 2
    hit = (near & masks).flatten(1).any(dim=1)
    constant = flat.amax(dim=1) == flat.amin(dim=1)
    return LocalisationResult(
        metric="pointing_game", part=part, values=(hit & ~constant).double()
    )

