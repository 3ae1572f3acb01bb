r"""
Evaluation protocols of the pathway-gradient paper, usable with any Captum attribution method.

- :func:`cascading_randomization`: sanity check by cascading parameter randomisation.
- :func:`pixel_perturbation`: LeRF / MoRF output change after removing pixels.
- :func:`remove_and_retrain`: ROAR accuracy after removing pixels and retraining.
- :func:`attribution_mass_in_box`, :func:`pointing_game`: localisation against object masks.

Every result has ``to_dict()`` returning JSON-serialisable data.
"""

from captum_prune.evaluation._explain import reduce_channels, trapezoid_auc
from captum_prune.evaluation.localisation import (
    LocalisationResult,
    attribution_mass_in_box,
    boxes_to_masks,
    pointing_game,
)
from captum_prune.evaluation.perturbation import (
    PerturbationResult,
    pixel_perturbation,
    remove_top_pixels,
)
from captum_prune.evaluation.roar import RoarResult, accuracy, remove_and_retrain
from captum_prune.evaluation.sanity import (
    SanityCheckResult,
    cascading_randomization,
    parameter_stages,
)

__all__ = [
    "LocalisationResult",
    "PerturbationResult",
    "RoarResult",
    "SanityCheckResult",
    "accuracy",
    "attribution_mass_in_box",
    "boxes_to_masks",
    "cascading_randomization",
    "parameter_stages",
    "pixel_perturbation",
    "pointing_game",
    "reduce_channels",
    "remove_and_retrain",
    "remove_top_pixels",
    "trapezoid_auc",
]
