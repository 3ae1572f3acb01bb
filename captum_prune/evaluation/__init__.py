r"""
Evaluation protocols of the pathway-gradient paper, usable with any Captum attribution method.

- :func:`cascading_randomization`: sanity check by cascading parameter randomisation.
- :func:`pixel_perturbation`: LeRF / MoRF output change after removing pixels.
- :func:`remove_and_retrain`: ROAR accuracy after removing pixels and retraining.
- :func:`attribution_mass_in_box`, :func:`pointing_game`: localisation against object masks.

Protocols beyond the paper's:

- :func:`road`: ROAD, MoRF/LeRF with noisy linear imputation (:func:`noisy_linear_impute`).
- :func:`symmetric_relevance_gain`: SRG, LeRF AUC - MoRF AUC on one ordering.
- :func:`grid_pointing_game`: GridPG on grids of confidently classified images.
- :func:`efficient_mprt`, :func:`smooth_mprt`: bottom-up randomisation checks (eMPRT, sMPRT).

Pathway analysis:

- :func:`local_linearity`: the first-order error of the pathway (masks fixed) and of the full
  network in L2 balls around each input, flipped ReLU units, the stable radius.
- :func:`sparsity_sweep`: maps, kept-class rate and relative softmax output change at the
  paper's sparsities (and ``"auto"``), from one scoring pass per batch; figures in
  :mod:`captum_prune.evaluation.plots`.

:func:`compare_methods` runs methods x removal protocols and reports per-method CIs, paired CIs
against a reference method and a wins / ties / loses verdict.

Shared pieces: :func:`rank_pixels` (seeded random tie-breaking, used by every ordering
protocol), :class:`RandomAttribution` (the random-map control), and :func:`bootstrap_ci`,
:func:`paired_bootstrap_ci`, :func:`combine_models` (confidence intervals).

Every result has ``to_dict()`` returning JSON-serialisable data.
"""

from captum_prune.evaluation._explain import reduce_channels, trapezoid_auc
from captum_prune.evaluation.compare import Comparison, ComparisonResult, compare_methods
from captum_prune.evaluation.controls import RandomAttribution
from captum_prune.evaluation.grid_pointing import (
    GridPointingResult,
    GridSet,
    grid_pointing_game,
    make_grids,
)
from captum_prune.evaluation.linearity import LocalLinearityResult, local_linearity
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
from captum_prune.evaluation.randomisation import (
    EfficientMprtResult,
    SmoothMprtResult,
    efficient_mprt,
    histogram_entropy,
    smooth_mprt,
)
from captum_prune.evaluation.ranking import PixelRanking, rank_pixels
from captum_prune.evaluation.road import RoadResult, noisy_linear_impute, road
from captum_prune.evaluation.roar import RoarResult, accuracy, remove_and_retrain
from captum_prune.evaluation.sanity import (
    SanityCheckResult,
    cascading_randomization,
    parameter_stages,
)
from captum_prune.evaluation.sparsity import (
    PAPER_SPARSITIES,
    SparsitySweepResult,
    relative_change,
    sparsity_sweep,
)
from captum_prune.evaluation.srg import SrgResult, symmetric_relevance_gain
from captum_prune.evaluation.statistics import (
    ConfidenceInterval,
    ModelSpread,
    bootstrap_ci,
    combine_models,
    paired_bootstrap_ci,
)

__all__ = [
    "Comparison",
    "ComparisonResult",
    "ConfidenceInterval",
    "EfficientMprtResult",
    "GridPointingResult",
    "GridSet",
    "LocalLinearityResult",
    "LocalisationResult",
    "ModelSpread",
    "PAPER_SPARSITIES",
    "PerturbationResult",
    "PixelRanking",
    "RandomAttribution",
    "RoadResult",
    "RoarResult",
    "SanityCheckResult",
    "SmoothMprtResult",
    "SparsitySweepResult",
    "SrgResult",
    "accuracy",
    "attribution_mass_in_box",
    "bootstrap_ci",
    "boxes_to_masks",
    "cascading_randomization",
    "combine_models",
    "compare_methods",
    "efficient_mprt",
    "grid_pointing_game",
    "histogram_entropy",
    "local_linearity",
    "make_grids",
    "noisy_linear_impute",
    "paired_bootstrap_ci",
    "parameter_stages",
    "pixel_perturbation",
    "pointing_game",
    "rank_pixels",
    "reduce_channels",
    "remove_and_retrain",
    "remove_top_pixels",
    "relative_change",
    "road",
    "smooth_mprt",
    "sparsity_sweep",
    "symmetric_relevance_gain",
    "trapezoid_auc",
]
