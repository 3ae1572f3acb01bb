r"""SRG: Symmetric Relevance Gain (Blücher, Vielhaben, Strodthoff, TMLR 2024).

One ordering, two curves: remove the least relevant pixels first (LeRF, the paper's LIF) and
the most relevant first (MoRF, MIF), the LeRF order being the exact reverse of the MoRF order;
SRG = AUC(LeRF curve of the target probability) − AUC(MoRF curve). Higher is better, a random
map scores 0 in expectation, and the ranking of methods barely depends on the removal value,
which resolves MoRF/LeRF disagreements.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from captum_prune.evaluation._curves import removal_curves
from captum_prune.evaluation._explain import TargetType, curve_auc, jsonable, summary
from captum_prune.evaluation.perturbation import BaselineType, baseline_remover
from captum_prune.evaluation.ranking import SeedType
from captum_prune.evaluation.road import imputing_remover
from captum_prune.evaluation.statistics import DEFAULT_N_BOOT, bootstrap_ci

DEFAULT_SRG_FRACTIONS = tuple(round(0.05 * k, 2) for k in range(1, 21))
REMOVALS = ("baseline", "noisy_linear")


@dataclass
class SrgResult:
    r"""
    Outcome of :func:`symmetric_relevance_gain` (or :meth:`RoadResult.srg`).

    Attributes:
        fractions (list of float): Shares of pixels removed.
        lerf, morf (Tensor): ``N x F`` target probability after removing the least / most
                    relevant pixels first (one ordering).
        target (Tensor): The class evaluated for each example.
        original_probability (Tensor): Target probability on the unmodified input (the curves'
                    value at fraction 0).
        tie_break (str): Tie rule of the ordering.
        tied_share (Tensor): ``N`` share of tied pixels per map.
        removal (str): ``"baseline"`` or ``"noisy_linear"``.
    """

    fractions: List[float]
    lerf: Tensor
    morf: Tensor
    target: Tensor
    original_probability: Tensor
    tie_break: str
    tied_share: Tensor
    removal: str

    @property
    def lerf_auc(self) -> np.ndarray:
        r"""``N`` areas under the LeRF curves, from ``(0, p_c(x))``."""
        return curve_auc(self.fractions, self.lerf, self.original_probability)

    @property
    def morf_auc(self) -> np.ndarray:
        r"""``N`` areas under the MoRF curves, from ``(0, p_c(x))``."""
        return curve_auc(self.fractions, self.morf, self.original_probability)

    @property
    def values(self) -> np.ndarray:
        r"""``N`` SRG per example: ``lerf_auc - morf_auc``."""
        return self.lerf_auc - self.morf_auc

    @property
    def mean(self) -> float:
        r"""Mean SRG over examples."""
        return float(self.values.mean())

    def ci(self, n_boot: int = DEFAULT_N_BOOT, level: float = 0.95,
           seed: int = 0) -> Dict[str, Any]:
        r"""Bootstrap CIs over examples of ``"srg"``, ``"lerf_auc"`` and ``"morf_auc"``."""
        return {name: bootstrap_ci(getattr(self, attr), n_boot, level, seed)
                for name, attr in (("srg", "values"), ("lerf_auc", "lerf_auc"),
                                   ("morf_auc", "morf_auc"))}

    def to_dict(self, per_example: bool = False) -> Dict[str, Any]:
        r"""JSON-ready summary with CIs; ``per_example=True`` adds the SRG per example."""
        out = {
            "protocol": "srg",
            "removal": self.removal,
            "ranking": "max over channels of |attribution|",
            "tie_break": self.tie_break,
            "tied_share": jsonable(self.tied_share.mean()),
            "n_examples": int(self.target.numel()),
            "fractions": jsonable(self.fractions),
            "srg": jsonable(self.mean),
            "lerf": summary(self.lerf.numpy()),
            "morf": summary(self.morf.numpy()),
            "ci": {k: v.to_dict() for k, v in self.ci().items()},
        }
        if per_example:
            out["per_example"] = jsonable(self.values)
            out["target"] = jsonable(self.target)
        return out


def symmetric_relevance_gain(
    model: torch.nn.Module,
    inputs: Tensor,
    attributions: Any,
    target: TargetType = None,
    fractions: Sequence[float] = DEFAULT_SRG_FRACTIONS,
    removal: str = "baseline",
    baseline: BaselineType = None,
    *,
    noise: float = 0.01,
    seed: SeedType = 0,
    tie_break: str = "random",
    batch_size: int = 64,
    attribute_kwargs: Optional[Dict[str, Any]] = None,
    apply_softmax: bool = True,
    progress: bool = False,
) -> SrgResult:
    r"""
    Symmetric Relevance Gain (Blücher, Vielhaben, Strodthoff, TMLR 2024).

    Pixels are ordered once per example by :math:`\max_c |A_c|` with seeded random
    tie-breaking (:func:`rank_pixels`); the MoRF curve removes them in that order, the LeRF
    curve in the exact reverse order. Both record the target probability; SRG is the area
    between them, ``AUC(LeRF) - AUC(MoRF)``, over fraction 0 (the unmodified input) to the last
    fraction. Higher is better; a random map scores 0 in expectation.

    Args:

        model (nn.Module or callable): Maps inputs to logits (or probabilities with
                    ``apply_softmax=False``).
        inputs (Tensor): Inputs of shape ``N x C x H x W``.
        attributions (Tensor, method or callable): Precomputed maps or a method, as in
                    :func:`pixel_perturbation`.
        target (int, sequence, Tensor or None, optional): Class per example; ``None`` uses the
                    predicted class. Default: ``None``
        fractions (sequence of float, optional): Increasing shares of pixels removed.
                    Default: ``(0.05, 0.10, ..., 1.0)``
        removal (str, optional): ``"baseline"``: removed pixels take ``baseline`` (see
                    :func:`remove_top_pixels`); ``"noisy_linear"``: ROAD's imputation
                    (:func:`noisy_linear_impute`, fractions below 1). Default: ``"baseline"``
        baseline (None, float or Tensor, optional): Replacement value for
                    ``removal="baseline"``; ``None`` is the per-channel mean of ``inputs``.
                    Default: ``None``
        noise (float, optional): Imputation noise for ``"noisy_linear"``. Default: 0.01
        seed (int or sequence of int, optional): Seed of the tie-break and the noise.
                    Default: 0
        tie_break (str, optional): ``"random"`` or ``"position"``. Default: ``"random"``
        batch_size (int, optional): Examples per forward pass. Default: 64
        attribute_kwargs (dict, optional): Extra keyword arguments for the method.
                    Default: ``None``
        apply_softmax (bool, optional): Apply a softmax to the model output. Default: ``True``
        progress (bool, optional): Show a tqdm progress bar. Default: ``False``

    Returns:
        :class:`SrgResult` with per-example SRG (``values``), both AUCs and CIs.

    Examples::

        >>> import torch
        >>> from captum.attr import Saliency
        >>> from captum_prune.evaluation import symmetric_relevance_gain
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3)).eval()
        >>> images = torch.rand(4, 3, 8, 8)
        >>> result = symmetric_relevance_gain(model, images, Saliency(model), baseline=0.0)
        >>> result.values.shape, result.lerf.shape
        ((4,), torch.Size([4, 20]))
        >>> sorted(result.ci())
        ['lerf_auc', 'morf_auc', 'srg']
    """
    if removal not in REMOVALS:
        raise ValueError(f"removal must be one of {REMOVALS}, got {removal!r}")
    if removal == "baseline":
        remove = baseline_remover(baseline, inputs)
    else:
        remove = imputing_remover(noise, seed)

    curves = removal_curves(
        model, inputs, attributions, target, fractions, ("morf", "lerf"), remove,
        tie_break=tie_break, seed=seed, batch_size=batch_size,
        attribute_kwargs=attribute_kwargs, apply_softmax=apply_softmax, progress=progress,
        desc="SRG", max_fraction_below_one=(removal == "noisy_linear"),
    )
    return SrgResult(
        fractions=[float(f) for f in fractions],
        lerf=curves.probability["lerf"],
        morf=curves.probability["morf"],
        target=curves.target,
        original_probability=curves.original_probability,
        tie_break=tie_break,
        tied_share=curves.tied_share,
        removal=removal,
    )
