r"""The method's options, as one frozen value validated in one place."""
from dataclasses import dataclass, fields
from typing import Any, Dict, Optional

from captum_prune import _safety
from captum_prune._captum import INTEGRATION_METHODS

#: The paper's code default (``percentile_to_prune=85``).
DEFAULT_SPARSITY = 0.85


def validate_sparsity(value: Any) -> Any:
    r"""The one check of the ``sparsity`` option; returns the value to store.

    A number in ``[0, 1)``; extend here for other forms (a new form must also be handled
    where the engine selects, :func:`captum_prune._engine.select_masks`).
    """
    _safety.check_number("sparsity", value, 0.0, 1.0, high_open=True)
    return float(value)


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

    sparsity: float = DEFAULT_SPARSITY
    criterion: str = "taylor"
    selection: str = "global"
    threshold: str = "reference"
    n_steps: int = 10
    method: str = "gausslegendre"
    internal_batch_size: Optional[int] = None

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

    def to_dict(self) -> Dict[str, Any]:
        r"""The options as keyword arguments of ``attribute()``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
