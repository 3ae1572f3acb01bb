r"""Pixel perturbation (LeRF / MoRF) and the pixel-removal helper shared with ROAR.

Pixels are ranked by :math:`\max_c |A_c|` (channel max of the absolute attribution; method spec
§7.17 fixes this in place of the reference's channel max of the *signed* map). A removed pixel is
set to the baseline in all channels. Ties are broken at random with a seeded generator
(``tie_break="random"``, see :func:`~captum_prune.evaluation.rank_pixels`); ``"position"`` keeps
the old row-major rule to reproduce older numbers.
"""

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from captum_prune._shared import is_number
from captum_prune.evaluation._explain import (
    TargetType,
    batches,
    check_batch_size,
    check_fractions,
    check_images,
    check_map_matches,
    curve_auc,
    jsonable,
    mean_std,
    summary,
    trapezoid_auc,
)
from captum_prune.evaluation.ranking import SeedType, rank_pixels
from captum_prune.evaluation.statistics import DEFAULT_N_BOOT, bootstrap_ci, ci_dicts
from captum_prune.maps.store import resolve_maps

BaselineType = Union[None, float, Tensor]

DEFAULT_LERF_FRACTIONS = tuple(round(0.01 * k, 2) for k in range(1, 11))
MODES = ("lerf", "morf")


def resolve_baseline(baseline: BaselineType, images: Tensor) -> Tensor:
    r"""
    Returns the replacement value as a tensor that broadcasts against ``images`` (N x C x H x W).

    ``None`` means the per-channel mean of ``images``; a number is used for every channel (``0.0``
    is the dataset mean for inputs normalised by that mean); a tensor of ``C`` values is one value
    per channel; a ``C x H x W`` or ``N x C x H x W`` tensor is a replacement image.
    """
    n, c = images.shape[:2]
    if baseline is None:
        return images.detach().mean(dim=(0, 2, 3)).view(1, c, 1, 1)
    if is_number(baseline):
        return torch.full((1, c, 1, 1), float(baseline), dtype=images.dtype, device=images.device)
    if not isinstance(baseline, Tensor):
        raise ValueError(
            f"baseline must be None, a number or a tensor, got {type(baseline).__name__}"
        )
    b = baseline.detach().to(device=images.device, dtype=images.dtype)
    if b.dim() <= 1 and b.numel() in (1, c):
        return b.reshape(1, -1, 1, 1).expand(1, c, 1, 1)
    if b.dim() == 3:
        b = b.unsqueeze(0)
    if b.dim() == 4 and b.shape[0] in (1, n):
        try:
            if torch.broadcast_shapes(b.shape, images.shape) == images.shape:
                return b
        except RuntimeError:
            pass
    raise ValueError(
        f"baseline of shape {tuple(baseline.shape)} does not fit images of shape "
        f"{tuple(images.shape)}; use a number, {c} per-channel values, or a C x H x W or "
        "N x C x H x W tensor"
    )


def _slice_baseline(baseline: Tensor, rows: slice) -> Tensor:
    return baseline[rows] if baseline.shape[0] > 1 else baseline


def removal_rank(attributions: Tensor, largest: bool = True, tie_break: str = "random",
                 seed: SeedType = 0, index_offset: int = 0) -> Tensor:
    r"""
    Rank of every pixel in removal order (0 = removed first), shape ``N x H x W``.

    Pixels are ranked by ``reduce_channels(attributions, "max_abs")``; with ``largest=True`` the
    most important pixel comes first (MoRF, ROAR), otherwise the least important (LeRF). Ties:
    see :func:`~captum_prune.evaluation.rank_pixels`.
    """
    return rank_pixels(attributions, largest, tie_break, seed, index_offset=index_offset).rank


def n_removed(fraction: float, n_pixels: int) -> int:
    r"""Number of pixels removed for ``fraction``: ``fraction * n_pixels`` rounded half up."""
    return int(math.floor(fraction * n_pixels + 0.5))


def baseline_remover(baseline: BaselineType, inputs: Any) -> Callable[..., Tensor]:
    r"""The removal of :func:`pixel_perturbation` and baseline SRG for the curves' loop
    (:func:`captum_prune.evaluation._curves.removal_curves`): removed pixels are set to the
    baseline (see :func:`resolve_baseline`) in every channel."""
    base = resolve_baseline(baseline, inputs) if isinstance(inputs, Tensor) else None

    def remove(x: Tensor, removed: Tensor, first: int, mode: str, j: int) -> Tensor:
        return _replace_pixels(x, removed, _slice_baseline(base, slice(first, first + len(x))))

    return remove


def _replace_pixels(images: Tensor, removed: Tensor, baseline: Tensor) -> Tensor:
    r"""``images`` with the pixels of the bool ``N x H x W`` ``removed`` set to the baseline in
    every channel."""
    return torch.where(removed.unsqueeze(1), baseline.to(images.dtype), images)


def remove_top_pixels(
    images: Tensor,
    attributions: Tensor,
    fraction: float,
    baseline: BaselineType = None,
    *,
    largest: bool = True,
    batch_size: int = 1024,
    tie_break: str = "random",
    seed: SeedType = 0,
) -> Tensor:
    r"""
    Replaces the ``fraction`` most important pixels of every image (all channels) by the
    baseline. This is the removal step of ROAR and, with ``largest=False``, of LeRF.

    Args:

        images (Tensor): Images of shape ``N x C x H x W``. Not modified.
        attributions (Tensor): Maps of shape ``N x C' x H x W`` or ``N x H x W``; pixels are
                    ranked by :math:`\max_c |A_c|`, ties by ``tie_break``.
        fraction (float): Share of the ``H * W`` pixels to remove, in [0, 1];
                    ``round(fraction * H * W)`` pixels (half up) are removed per image.
        baseline (None, float or Tensor, optional): Replacement value. ``None`` is the per-channel
                    mean of ``images``; a number is used in every channel; ``C`` values are one
                    per channel; a ``C x H x W`` or ``N x C x H x W`` tensor is a replacement
                    image. Default: ``None``
        largest (bool, optional): Remove the most important pixels (``True``) or the least
                    important ones (``False``). Default: ``True``
        batch_size (int, optional): Images ranked at a time, to bound memory. Default: 1024
        tie_break (str, optional): ``"random"`` (seeded) or ``"position"`` (row-major, the old
                    rule), see :func:`~captum_prune.evaluation.rank_pixels`. Default: ``"random"``
        seed (int or sequence of int, optional): Seed of the random tie-break; image ``i`` is
                    ranked the same way whatever the batch size. Default: 0

    Returns:
        Tensor of the shape of ``images`` with the pixels replaced.

    Examples::

        >>> images = torch.rand(4, 3, 8, 8)
        >>> maps = torch.rand(4, 3, 8, 8)
        >>> removed = remove_top_pixels(images, maps, 0.25, baseline=0.0)
    """
    images = check_images(images, "images")
    attributions = check_map_matches(attributions, images, "attributions")
    fraction = check_fractions([fraction], "fraction")[0]
    batch_size = check_batch_size(batch_size)
    base = resolve_baseline(baseline, images)
    k = n_removed(fraction, images.shape[-2] * images.shape[-1])
    out = torch.empty_like(images)
    for rows in batches(len(images), batch_size):
        rank = removal_rank(attributions[rows].to(images.device), largest, tie_break, seed,
                            rows.start)
        out[rows] = _replace_pixels(images[rows].detach(), rank < k, _slice_baseline(base, rows))
    return out


@dataclass
class PerturbationResult:
    r"""
    Outcome of :func:`pixel_perturbation`.

    Attributes:
        mode (str): ``"lerf"`` or ``"morf"``.
        fractions (list of float): Shares of pixels removed.
        changes (Tensor): ``N x F`` absolute fractional change of the target probability,
                    :math:`|p_c(x) - p_c(\tilde x)| / p_c(x)`, per example and fraction.
        target (Tensor): The class evaluated for each example.
        original_probability (Tensor): :math:`p_c(x)` per example.
        tie_break (str, optional): Tie rule of the ranking (``None`` if not recorded).
        tied_share (Tensor, optional): ``N`` share of tied pixels per map.
    """

    mode: str
    fractions: List[float]
    changes: Tensor
    target: Tensor
    original_probability: Tensor
    tie_break: Optional[str] = None
    tied_share: Optional[Tensor] = None

    @property
    def mean(self) -> np.ndarray:
        r"""Mean change per fraction (over examples)."""
        return mean_std(self.changes.numpy())[0]

    @property
    def std(self) -> np.ndarray:
        r"""Sample standard deviation of the change per fraction (over examples)."""
        return mean_std(self.changes.numpy())[1]

    @property
    def auc(self) -> float:
        r"""
        Trapezoid area under mean change vs. fraction (fraction units), with the point (0, 0)
        prepended when 0 is not among the fractions, as the reference ``plots.py`` does.
        """
        x, y = list(self.fractions), list(self.mean)
        if x[0] > 0:
            x, y = [0.0] + x, [0.0] + y
        return trapezoid_auc(x, y)

    @property
    def per_example_auc(self) -> np.ndarray:
        r"""``N`` areas under each example's curve (same rule as :attr:`auc`, their mean)."""
        return curve_auc(self.fractions, self.changes, 0.0)

    def ci(self, n_boot: int = DEFAULT_N_BOOT, level: float = 0.95,
           seed: int = 0) -> Dict[str, Any]:
        r"""
        Bootstrap CIs over examples (:func:`~captum_prune.evaluation.bootstrap_ci`):
        ``{"mean": [one per fraction], "auc": ..., "tied_share": ...}`` (``tied_share`` only
        when recorded).
        """
        out = {"mean": bootstrap_ci(self.changes, n_boot, level, seed),
               "auc": bootstrap_ci(self.per_example_auc, n_boot, level, seed)}
        if self.tied_share is not None:
            out["tied_share"] = bootstrap_ci(self.tied_share, n_boot, level, seed)
        return out

    def to_dict(self, per_example: bool = False) -> Dict[str, Any]:
        r"""
        JSON-ready summary with 95% bootstrap CIs (``"ci"``), the tie rule and the mean tied
        share; ``per_example=True`` adds the ``N x F`` changes, targets and tied shares.
        """
        out = {
            **summary(self.changes.numpy()),
            "protocol": "pixel_perturbation",
            "mode": self.mode,
            "ranking": "max over channels of |attribution|",
            "n_examples": int(self.changes.shape[0]),
            "fractions": jsonable(self.fractions),
            "auc": jsonable(self.auc),
            "tie_break": self.tie_break,
            "tied_share": (None if self.tied_share is None
                           else jsonable(self.tied_share.double().mean())),
            "ci": {k: ci_dicts(v) for k, v in self.ci().items()},
        }
        if per_example:
            out["changes"] = jsonable(self.changes)
            out["target"] = jsonable(self.target)
            out["original_probability"] = jsonable(self.original_probability)
            if self.tied_share is not None:
                out["tied_share_per_example"] = jsonable(self.tied_share)
        return out


def pixel_perturbation(
    model: torch.nn.Module,
    inputs: Tensor,
    attributions: Any,
    target: TargetType = None,
    fractions: Sequence[float] = DEFAULT_LERF_FRACTIONS,
    mode: str = "lerf",
    baseline: BaselineType = None,
    batch_size: int = 64,
    *,
    attribute_kwargs: Optional[Dict[str, Any]] = None,
    apply_softmax: bool = True,
    progress: bool = False,
    map_indices: Optional[Sequence[int]] = None,
    tie_break: str = "random",
    seed: SeedType = 0,
) -> PerturbationResult:
    r"""
    Pixel perturbation benchmark (Samek et al. 2017; the FullGrad-style output change used by
    the pathway-gradient paper, method spec §4.2).

    For each fraction ``k``, the ``k`` least (``mode="lerf"``) or most (``"morf"``) important
    pixels of every input are replaced by the baseline in all channels, and the absolute
    fractional change of the target probability :math:`|p_c(x) - p_c(\tilde x)| / p_c(x)` is
    recorded. Lower is better for LeRF, higher for MoRF. The model is only evaluated (under
    ``torch.no_grad``); put it in eval mode first.

    Args:

        model (nn.Module or callable): Maps ``N x C x H x W`` inputs to ``N x classes`` logits
                    (or probabilities with ``apply_softmax=False``).
        inputs (Tensor): Inputs of shape ``N x C x H x W``.
        attributions (Tensor, method or callable): Precomputed maps (``N x C' x H x W`` or
                    ``N x H x W``), or an attribution method (anything with
                    ``.attribute(inputs, target=...)``) or callable ``f(inputs, target)`` that is
                    called batch by batch, or a :class:`~captum_prune.MapStore` of
                    precomputed maps. Pixels are ranked by :math:`\max_c |A_c|`.
        target (int, sequence, Tensor or None, optional): Class per example. ``None`` uses the
                    model's predicted class. Default: ``None``
        fractions (sequence of float, optional): Increasing shares of pixels to remove.
                    Default: ``(0.01, 0.02, ..., 0.10)``
        mode (str, optional): ``"lerf"`` (least relevant first) or ``"morf"``. Default: ``"lerf"``
        baseline (None, float or Tensor, optional): Replacement value, see
                    :func:`remove_top_pixels`. ``None`` is the per-channel mean of ``inputs``;
                    pass the dataset mean, or ``0.0`` for mean-normalised inputs as in the
                    reference. Default: ``None``
        batch_size (int, optional): Examples per forward pass. Default: 64
        attribute_kwargs (dict, optional): Extra keyword arguments for the attribution method
                    when ``attributions`` is a method. Default: ``None``
        apply_softmax (bool, optional): Apply a softmax to the model output. Default: ``True``
        progress (bool, optional): Show a tqdm progress bar. Default: ``False``
        map_indices (sequence of int, optional): With a ``MapStore``: the dataset index of
                    each input in the store. Default: ``0 .. N - 1``
        tie_break (str, optional): How equal scores are ordered: ``"random"`` (seeded, the
                    default) or ``"position"`` (row-major, the old rule, for older numbers).
                    See :func:`~captum_prune.evaluation.rank_pixels`. Default: ``"random"``
        seed (int or sequence of int, optional): Seed of the random tie-break. Default: 0

    Returns:
        :class:`PerturbationResult` with ``mean``/``std`` per fraction, ``auc``, per-example
        ``changes``, the tied share per map and bootstrap CIs (``ci()``).

    Examples::

        >>> import torch
        >>> from captum.attr import Saliency
        >>> from captum_prune import PrunedGradient
        >>> from captum_prune.evaluation import pixel_perturbation
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3)).eval()
        >>> images = torch.rand(4, 3, 8, 8)
        >>> fractions = [0.1, 0.2, 0.3]
        >>> result = pixel_perturbation(model, images, Saliency(model), fractions=fractions,
        ...                             mode="lerf", baseline=0.0)
        >>> result.changes.shape  # examples x fractions
        torch.Size([4, 3])
        >>> bool(((result.changes >= 0) & (result.changes < 1)).all())
        True
        >>> round(result.auc, 4)
        0.00...
        >>> # Methods with options: pass them as attribute_kwargs; or pass precomputed maps.
        >>> result = pixel_perturbation(model, images, PrunedGradient(model), fractions=fractions,
        ...                             mode="morf", attribute_kwargs={"sparsity": 0.7})
        >>> summary = result.to_dict()
        >>> summary["mode"], summary["n_examples"], summary["fractions"]
        ('morf', 4, [0.1, 0.2, 0.3])
        >>> len(summary["mean"]), len(summary["std"])
        (3, 3)
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    inputs = check_images(inputs, "inputs")
    attributions = resolve_maps(attributions, len(inputs), map_indices, "attributions",
                                "map_indices")
    # Imported here: _curves builds on this module's helpers.
    from captum_prune.evaluation._curves import removal_curves

    curves = removal_curves(
        model, inputs, attributions, target, fractions, (mode,),
        baseline_remover(baseline, inputs), tie_break=tie_break, seed=seed,
        batch_size=batch_size, attribute_kwargs=attribute_kwargs, apply_softmax=apply_softmax,
        progress=progress, desc="pixel perturbation",
    )
    # In the model's output dtype (the float64 curves hold its values exactly), as the
    # change has always been computed.
    p0 = curves.original_probability.to(curves.dtype)
    p = curves.probability[mode].to(curves.dtype)
    denom = p0.clamp_min(torch.finfo(p0.dtype).tiny).unsqueeze(1)
    changes = ((p0.unsqueeze(1) - p).abs() / denom).double()
    return PerturbationResult(
        mode=mode,
        fractions=[float(f) for f in fractions],
        changes=changes,
        target=curves.target,
        original_probability=p0,
        tie_break=tie_break,
        tied_share=curves.tied_share,
    )
