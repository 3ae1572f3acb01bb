r"""The method's options, as one frozen value validated in one place."""
import math
from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, Optional, Union

from torch import Tensor

from captum_prune import _safety
from captum_prune._captum import INTEGRATION_METHODS

#: The paper's code default (``percentile_to_prune=85``).
DEFAULT_SPARSITY = 0.85


#: The ``sparsity`` that picks one per example by bisection (:mod:`captum_prune._auto`).
AUTO = "auto"
#: The default bound of ``sparsity="auto"`` on the relative change of the target's
#: probability (the authors' "15% output change").
DEFAULT_OUTPUT_CHANGE = 0.15


def validate_sparsity(value: Any) -> Any:
    r"""The one check of the ``sparsity`` option; returns the value to store.

    A number in ``[0, 1)``; ``"auto"`` (chosen per example, :mod:`captum_prune._auto`); or a
    1-D floating tensor with one fraction in ``[0, 1)`` per example (its length is checked
    against the batch where the engine selects, :func:`captum_prune._engine.select_masks`).
    """
    if isinstance(value, str):
        if value != AUTO:
            raise TypeError(f"sparsity: expected a number in [0.0, 1.0), 'auto' or a tensor "
                             f"of per-example values, got {value!r}")
        return value
    if isinstance(value, Tensor):
        if value.dim() != 1 or not value.is_floating_point():
            raise ValueError(
                f"sparsity: a tensor sparsity must be 1-D and floating point (one value per "
                f"example), got shape {tuple(value.shape)} and dtype {value.dtype}")
        if not bool(((value >= 0) & (value < 1)).all()):
            raise ValueError("sparsity: every per-example value must be in [0.0, 1.0)")
        return value.detach()
    _safety.check_number("sparsity", value, 0.0, 1.0, high_open=True)
    return float(value)


def validate_output_change(value: Any) -> float:
    r"""``output_change``: a positive finite number (a relative change, 0.15 is 15%)."""
    if not _shared_number(value) or not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"output_change: must be a positive finite number (0.15 allows a 15% relative "
            f"change of the target's probability), got {value!r}")
    return float(value)


def _shared_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class PruningOptions:
    r"""What :meth:`PrunedGradient.attribute <captum_prune.PrunedGradient.attribute>` and
    ``pathway`` are asked to do, besides the inputs and the target (see ``attribute()`` for
    each option's meaning). Validated on construction: an invalid value raises a ``TypeError``
    or ``ValueError`` that names the option.

    Examples::

        >>> from captum_prune import PruningOptions
        >>> PruningOptions(sparsity=0.9, threshold="exact").criterion
        'taylor'
        >>> PruningOptions(criterion="magic")
        Traceback (most recent call last):
        ...
        ValueError: criterion: 'magic' is not one of 'taylor', 'integrated_gradients', 'random'
    """

    sparsity: Union[float, str, Tensor] = DEFAULT_SPARSITY
    criterion: str = "taylor"
    selection: str = "global"
    threshold: str = "reference"
    n_steps: int = 10
    method: str = "gausslegendre"
    internal_batch_size: Optional[int] = None
    output_change: float = DEFAULT_OUTPUT_CHANGE
    probability: Optional[Callable[[Tensor], Tensor]] = None

    def __post_init__(self) -> None:
        from captum_prune.criteria import CRITERION_RULES
        from captum_prune.selection import SELECTION_RULES, THRESHOLD_RULES

        object.__setattr__(self, "sparsity", validate_sparsity(self.sparsity))
        CRITERION_RULES.get(self.criterion)
        SELECTION_RULES.get(self.selection)
        THRESHOLD_RULES.get(self.threshold)
        _safety.check_positive_int("n_steps", self.n_steps)
        _safety.check_choice("method", self.method, INTEGRATION_METHODS)
        _safety.check_positive_int("internal_batch_size", self.internal_batch_size, optional=True)
        object.__setattr__(self, "output_change", validate_output_change(self.output_change))
        if self.probability is not None and not callable(self.probability):
            raise TypeError(f"probability: expected a callable output -> probabilities or "
                            f"None, got {type(self.probability).__name__}")

    def to_dict(self) -> Dict[str, Any]:
        r"""The options as keyword arguments of ``attribute()``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
