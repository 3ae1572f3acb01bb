r"""Shared helpers of the evaluation protocols.

Calling "any attribution method", reducing a map to one channel, resolving targets, batching,
summary statistics and the trapezoid AUC live here so that every protocol uses the same
definitions.
"""

import functools
import math
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from captum_prune._shared import check_int, is_int

#: An attribution method instance (anything with ``.attribute(inputs, target=..., **kw)``,
#: e.g. ``Saliency(model)``) or a plain callable ``f(inputs, target, **kw) -> attributions``.
Explainer = Any
TargetType = Union[None, int, Sequence[int], Tensor]

REDUCTIONS = ("max_abs", "signed_max_abs", "max_positive", "sum")


def reduce_channels(attributions: Tensor, reduction: str = "max_abs") -> Tensor:
    r"""
    Reduces an attribution map of shape ``N x C x H x W`` (or ``N x H x W``) to ``N x H x W``.

    Args:

        attributions (Tensor): Attribution maps, one per example. A 3-D tensor is taken to be
                    single-channel already.
        reduction (str, optional): How channels are combined:

                    - ``"max_abs"``: :math:`\max_c |A_c|` (default; the ranking map used by
                      pixel perturbation, ROAR and the absolute sanity-check map).
                    - ``"signed_max_abs"``: the channel entry of largest magnitude, with its
                      sign, so that ``abs(signed_max_abs) == max_abs``.
                    - ``"max_positive"``: :math:`\max_c \max(A_c, 0)`.
                    - ``"sum"``: :math:`\sum_c A_c` (signed).

                    Default: ``"max_abs"``

    Returns:
        Tensor of shape ``N x H x W``.
    """
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a torch.Tensor, got {type(attributions).__name__}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if attributions.dim() == 3:
        attributions = attributions.unsqueeze(1)
    if attributions.dim() != 4:
        raise ValueError(
            "attributions must have shape N x C x H x W or N x H x W, "
            f"got shape {tuple(attributions.shape)}"
        )
    attributions = attributions.detach()
    if reduction == "max_abs":
        return attributions.abs().amax(dim=1)
    if reduction == "max_positive":
        return attributions.clamp(min=0).amax(dim=1)
    if reduction == "sum":
        return attributions.sum(dim=1)
    index = attributions.abs().argmax(dim=1, keepdim=True)
    return attributions.gather(1, index).squeeze(1)


def attribute(explain: Explainer, inputs: Tensor, target: Tensor, **kwargs: Any) -> Tensor:
    r"""
    Calls ``explain.attribute(inputs, target=target, **kwargs)`` for a Captum-style method, or
    ``explain(inputs, target, **kwargs)`` for a plain callable, and returns a detached tensor.
    """
    if hasattr(explain, "attribute"):
        out = explain.attribute(inputs, target=target, **kwargs)
    elif callable(explain):
        out = explain(inputs, target, **kwargs)
    else:
        raise TypeError(
            "explain must have an .attribute(inputs, target=...) method or be a callable "
            f"f(inputs, target), got {type(explain).__name__}"
        )
    if isinstance(out, (tuple, list)) and len(out) == 1:
        out = out[0]
    if not isinstance(out, Tensor):
        raise TypeError(f"the attribution method returned {type(out).__name__}, expected a Tensor")
    if out.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"the attribution method returned {out.shape[0]} maps for {inputs.shape[0]} inputs"
        )
    return out.detach()


def expects_empty_maps(check: Callable[..., Any]) -> Callable[..., Any]:
    r"""For a randomisation check: maps of a randomised model may be all zeros (its pruned
    network may not depend on the input), which the check counts, so PrunedGradient's
    :class:`~captum_prune.EmptyAttributionWarning` is not repeated for each of them."""
    from captum_prune._safety import EmptyAttributionWarning

    @functools.wraps(check)
    def quiet(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyAttributionWarning)
            return check(*args, **kwargs)

    return quiet


def bind(explain: Callable[..., Explainer], model: torch.nn.Module) -> Explainer:
    r"""
    Builds the method for ``model`` from a factory: a Captum class (``Saliency``), a class such
    as ``PrunedGradient``, or any ``lambda m: ...`` that returns a method or a plain callable.
    """
    if hasattr(explain, "attribute") and not isinstance(explain, type):
        raise TypeError(
            "explain must be a factory model -> method (e.g. Saliency or lambda m: Saliency(m)), "
            f"not a method instance already bound to a model ({type(explain).__name__})"
        )
    if not callable(explain):
        raise TypeError(f"explain must be callable, got {type(explain).__name__}")
    return explain(model)


def check_images(images: Any, name: str) -> Tensor:
    r"""Checks that ``images`` is an ``N x C x H x W`` floating tensor."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape N x C x H x W, got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a floating point tensor, got {images.dtype}")
    return images


def check_map_matches(attributions: Any, images: Tensor, name: str) -> Tensor:
    r"""Checks that ``attributions`` is ``N x C' x H x W`` or ``N x H x W`` for ``images``."""
    if not isinstance(attributions, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(attributions).__name__}")
    if attributions.dim() not in (3, 4):
        raise ValueError(
            f"{name} must have shape N x C x H x W or N x H x W, got {tuple(attributions.shape)}"
        )
    if attributions.shape[0] != images.shape[0] or attributions.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"{name} of shape {tuple(attributions.shape)} does not match images of shape "
            f"{tuple(images.shape)}; upsample layer maps first, e.g. with "
            "captum.attr.LayerAttribution.interpolate"
        )
    return attributions


def check_explainer(attributions: Any, inputs: Tensor) -> bool:
    r"""Validates precomputed maps or a method; returns whether the maps are precomputed."""
    if isinstance(attributions, Tensor):
        check_map_matches(attributions, inputs, "attributions")
        return True
    if not (hasattr(attributions, "attribute") or callable(attributions)):
        raise TypeError(
            "attributions must be a Tensor, an attribution method or a callable "
            f"f(inputs, target), got {type(attributions).__name__}"
        )
    return False


def check_fractions(fractions: Any, name: str = "fractions") -> List[float]:
    r"""Checks a non-empty, strictly increasing sequence of fractions in [0, 1]."""
    try:
        values = [float(f) for f in fractions]
    except TypeError:
        raise ValueError(
            f"{name} must be a sequence of numbers in [0, 1], got {fractions!r}") from None
    if not values:
        raise ValueError(f"{name} must not be empty")
    if any(not 0.0 <= f <= 1.0 for f in values):
        raise ValueError(f"{name} must lie in [0, 1], got {values}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{name} must be strictly increasing, got {values}")
    return values


def check_batch_size(batch_size: Any) -> int:
    return check_int("batch_size", batch_size, minimum=1)


def as_target(target: TargetType, n: int, device: torch.device) -> Optional[Tensor]:
    r"""Returns ``target`` as a LongTensor of shape ``N`` (``None`` stays ``None``)."""
    if target is None:
        return None
    if is_int(target):
        return torch.full((n,), target, dtype=torch.long, device=device)
    t = torch.as_tensor(target, device=device)  # a bool becomes a bool tensor: refused below
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"target must hold integer class indices, got dtype {t.dtype}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        return t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(f"target must have one entry per example ({n}), got {t.numel()}")
    return t


def check_target(target: Tensor, output: Tensor) -> None:
    r"""Checks a per-example ``target`` against the model ``output`` with the method's target
    rules (:func:`captum_prune._forward.validate_target`): a ``ValueError`` that names
    ``target`` (e.g. a class index the model does not have) instead of an indexing error."""
    from captum_prune._forward import validate_target

    validate_target(target, output, output.shape[0] if output.dim() else 1)


def batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def progress_bar(iterable: Iterable, enabled: bool, desc: str, total: Optional[int] = None):
    r"""Wraps ``iterable`` in a tqdm bar when ``enabled`` (tqdm is imported only then)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)


def mean_std(values: np.ndarray, axis: int = 0):
    r"""
    Mean and sample standard deviation (ddof=1; 0 where only one value is finite) along
    ``axis``, ignoring NaN and infinite values (numpy's ``nanmean`` and ``nanstd``).
    """
    values = np.asarray(values, dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.nan)
    finite = np.isfinite(values).sum(axis=axis)
    with warnings.catch_warnings():
        # All-NaN slices and single values give NaN, with a warning: handled below.
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=axis)
        std = np.nanstd(values, axis=axis, ddof=1)
    return mean, np.where(finite == 1, 0.0, std)


def trapezoid_auc(x: Sequence[float], y: Sequence[float]) -> float:
    r"""Area under the piecewise-linear curve through ``(x_i, y_i)`` (trapezoid rule)."""
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz
    return float(trapezoid(np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)))


def jsonable(value: Any) -> Any:
    r"""Converts tensors, arrays and numpy scalars to lists and floats; NaN/inf become None."""
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()] if value.ndim else jsonable(value.item())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def summary(values: np.ndarray) -> Dict[str, Any]:
    r"""``{"mean": [...], "std": [...]}`` over axis 0 of ``values``, JSON-ready."""
    mean, std = mean_std(values, axis=0)
    return {"mean": jsonable(mean), "std": jsonable(std)}


def curve_auc(fractions: Sequence[float], values: Any, start: Any = 0.0) -> np.ndarray:
    r"""
    Trapezoid area under each row of ``values`` (``N x F``) against ``fractions``, with the
    point ``(0, start)`` prepended when 0 is not among the fractions (``start`` is a number or
    one value per row). The mean of the per-row areas is the area under the mean curve.
    """
    y = np.asarray(values.detach().cpu().numpy() if isinstance(values, Tensor) else values,
                   dtype=np.float64)
    x = np.asarray(fractions, dtype=np.float64)
    if x[0] > 0:
        first = np.broadcast_to(np.asarray(start, dtype=np.float64).reshape(-1, 1),
                                (y.shape[0], 1))
        x, y = np.concatenate([[0.0], x]), np.concatenate([first, y], axis=1)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    return trapezoid(y, x, axis=1)
