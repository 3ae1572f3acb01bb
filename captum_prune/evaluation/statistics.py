r"""Confidence intervals for the evaluation figures.

- :func:`bootstrap_ci`: percentile bootstrap CI of a mean over examples.
- :func:`paired_bootstrap_ci`: the same for the per-example difference of two methods scored on
  the same examples (e.g. every method against :class:`~captum_prune.PrunedGradient`).
- :func:`combine_models`: one figure over several trained models (training seeds): the mean of
  the per-model means, each model's own CI, and the spread between models.

Values may be undefined (NaN, e.g. a rank correlation of a constant map). They are left out and
counted in ``n_undefined``, never replaced by a number. The bootstrap is implemented here with
numpy (resampling examples with replacement, ``n_boot`` times, then the ``(1 - level) / 2`` and
``(1 + level) / 2`` percentiles of the resampled means); it gives the same intervals as
``scipy.stats.bootstrap(..., method="percentile")`` up to resampling noise, and resamples all
columns of a curve with one generator state per column so every figure is reproducible on its
own.
"""

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Sequence, Union

import numpy as np

from captum_prune.evaluation._explain import jsonable

ArrayLike = Any
DEFAULT_N_BOOT = 2000


@dataclass
class ConfidenceInterval:
    r"""
    A mean with its bootstrap confidence interval.

    Attributes:
        mean (float): Mean of the defined values (NaN if none).
        low, high (float): Interval bounds; NaN with fewer than two defined values.
        n (int): Number of defined values used.
        n_undefined (int): Number of values left out because they were NaN.
        level (float): Confidence level, e.g. 0.95.
    """

    mean: float
    low: float
    high: float
    n: int
    n_undefined: int
    level: float = 0.95

    def contains(self, value: float) -> bool:
        r"""Whether ``low <= value <= high`` (``False`` for an undefined interval)."""
        return bool(self.low <= value <= self.high)

    def to_dict(self) -> Dict[str, Any]:
        r"""JSON-ready fields (NaN becomes ``None``)."""
        return jsonable(asdict(self))


def _check_boot(n_boot: Any, level: Any, seed: Any) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def _as_array(values: ArrayLike, name: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (examples) or 2-D (examples x figures), "
                         f"got shape {array.shape}")
    return array


def _interval(values: np.ndarray, n_boot: int, level: float, seed: int) -> ConfidenceInterval:
    defined = values[np.isfinite(values)]
    n = int(defined.size)
    undefined = int(values.size - n)
    if n == 0:
        return ConfidenceInterval(math.nan, math.nan, math.nan, 0, undefined, level)
    mean = float(defined.mean())
    if n < 2:
        return ConfidenceInterval(mean, math.nan, math.nan, n, undefined, level)
    rng = np.random.default_rng(seed)
    means = defined[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return ConfidenceInterval(mean, float(low), float(high), n, undefined, level)


def _per_column(values: np.ndarray, n_boot: int, level: float,
                seed: int) -> Union[ConfidenceInterval, List[ConfidenceInterval]]:
    if values.ndim == 1:
        return _interval(values, n_boot, level, seed)
    return [_interval(values[:, j], n_boot, level, seed) for j in range(values.shape[1])]


def bootstrap_ci(
    values: ArrayLike,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> Union[ConfidenceInterval, List[ConfidenceInterval]]:
    r"""
    Percentile bootstrap confidence interval of the mean over examples.

    Args:

        values (array-like or Tensor): One value per example (``N``), or ``N x K`` for ``K``
                    figures at once (e.g. one column per removal fraction). NaN values are
                    undefined: left out and counted.
        n_boot (int, optional): Bootstrap resamples. Default: 2000
        level (float, optional): Confidence level. Default: 0.95
        seed (int, optional): Seed of the resampling. Default: 0

    Returns:
        A :class:`ConfidenceInterval` for 1-D ``values``, a list of ``K`` for 2-D ones.

    Examples::

        >>> import numpy as np
        >>> from captum_prune.evaluation import bootstrap_ci
        >>> ci = bootstrap_ci(np.arange(10.0))
        >>> ci.mean, ci.n, ci.n_undefined, bool(ci.low < 4.5 < ci.high)
        (4.5, 10, 0, True)
        >>> ci = bootstrap_ci([1.0, float("nan"), 3.0])
        >>> ci.mean, ci.n, ci.n_undefined
        (2.0, 2, 1)
    """
    _check_boot(n_boot, level, seed)
    return _per_column(_as_array(values, "values"), n_boot, level, seed)


def paired_bootstrap_ci(
    values: ArrayLike,
    reference: ArrayLike,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> Union[ConfidenceInterval, List[ConfidenceInterval]]:
    r"""
    Paired bootstrap CI of the mean per-example difference ``values - reference``.

    Both are scored on the same examples (row ``i`` is example ``i`` for both), so the
    between-example variation cancels and the interval is usually much narrower than the two
    separate ones. An example counts as undefined when either value is NaN.

    Args:

        values (array-like or Tensor): ``N`` (or ``N x K``) values of one method.
        reference (array-like or Tensor): The same shape, of the reference method (e.g.
                    PrunedGradient).
        n_boot, level, seed: As in :func:`bootstrap_ci`.

    Returns:
        A :class:`ConfidenceInterval` of the difference (a list for 2-D inputs). An interval
        that excludes 0 means the two methods differ on these examples.

    Examples::

        >>> import numpy as np
        >>> from captum_prune.evaluation import paired_bootstrap_ci
        >>> rng = np.random.default_rng(0)
        >>> reference = rng.normal(size=50)
        >>> ci = paired_bootstrap_ci(reference + 0.1, reference)
        >>> round(ci.mean, 6), round(ci.low, 6), round(ci.high, 6)
        (0.1, 0.1, 0.1)
    """
    _check_boot(n_boot, level, seed)
    a, b = _as_array(values, "values"), _as_array(reference, "reference")
    if a.shape != b.shape:
        raise ValueError(f"values {a.shape} and reference {b.shape} must have the same shape")
    return _per_column(a - b, n_boot, level, seed)


@dataclass
class ModelSpread:
    r"""
    One figure over several trained models, from :func:`combine_models`.

    Attributes:
        mean (float): Mean of the per-model means (each model weighs the same).
        within (list of ConfidenceInterval): Each model's CI over its examples.
        between_std (float): Sample standard deviation of the per-model means (ddof=1; NaN for
                    one model).
        between_min, between_max (float): Smallest and largest per-model mean.
        n_models (int): Number of models with at least one defined value.
    """

    mean: float
    within: List[ConfidenceInterval]
    between_std: float
    between_min: float
    between_max: float
    n_models: int

    @property
    def within_half_width(self) -> float:
        r"""Mean half-width of the per-model CIs (NaN if none is defined)."""
        widths = [(c.high - c.low) / 2 for c in self.within if math.isfinite(c.high - c.low)]
        return float(np.mean(widths)) if widths else math.nan

    def to_dict(self) -> Dict[str, Any]:
        r"""JSON-ready fields, ``within`` as a list of dicts."""
        return jsonable({
            "mean": self.mean,
            "within": [c.to_dict() for c in self.within],
            "within_half_width": self.within_half_width,
            "between_std": self.between_std,
            "between_min": self.between_min,
            "between_max": self.between_max,
            "n_models": self.n_models,
        })


def combine_models(
    per_model: Sequence[ArrayLike],
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> ModelSpread:
    r"""
    Combines one figure measured on several trained models (e.g. training seeds).

    Model-to-model variation can exceed the CI within one model, so a claim that one method
    wins should hold across models. Pass per-example paired differences (``values -
    reference`` per model) to get the spread of a comparison.

    Args:

        per_model (sequence of array-like): One 1-D array of per-example values per model (the
                    examples may differ between models). NaN values are undefined.
        n_boot, level, seed: As in :func:`bootstrap_ci`; every model uses ``seed``.

    Returns:
        :class:`ModelSpread` with the mean over models, the within-model CIs and the
        between-model spread.

    Examples::

        >>> import numpy as np
        >>> from captum_prune.evaluation import combine_models
        >>> spread = combine_models([np.full(20, 0.5), np.full(20, 0.7)])
        >>> round(spread.mean, 6), round(spread.between_std, 6), spread.within_half_width
        (0.6, 0.141421, 0.0)
    """
    _check_boot(n_boot, level, seed)
    if isinstance(per_model, np.ndarray) and per_model.ndim == 1:
        raise ValueError("per_model must be a sequence of per-model arrays")
    within = []
    for i, values in enumerate(per_model):
        array = _as_array(values, f"per_model[{i}]")
        if array.ndim != 1:
            raise ValueError(f"per_model[{i}] must be 1-D (one value per example)")
        within.append(_interval(array, n_boot, level, seed))
    if not within:
        raise ValueError("per_model must hold at least one model")
    means = np.array([c.mean for c in within if c.n > 0])
    if means.size == 0:
        return ModelSpread(math.nan, within, math.nan, math.nan, math.nan, 0)
    std = float(means.std(ddof=1)) if means.size > 1 else math.nan
    return ModelSpread(float(means.mean()), within, std, float(means.min()), float(means.max()),
                       int(means.size))


def ci_dicts(cis: Union[ConfidenceInterval, List[ConfidenceInterval]]) -> Any:
    r"""``to_dict()`` of one interval or of each interval of a list."""
    if isinstance(cis, ConfidenceInterval):
        return cis.to_dict()
    return [c.to_dict() for c in cis]
