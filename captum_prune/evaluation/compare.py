r"""Methods x protocols: per-method CIs, paired CIs against a reference, and a verdict.

:func:`compare_methods` computes every method's maps once, runs the removal protocols on them
(LeRF / MoRF pixel perturbation, ROAD MoRF / LeRF, SRG), and for each protocol reports one
per-example score per method, its 95% bootstrap CI, the paired bootstrap CI of its difference
to a reference method (by default :class:`~captum_prune.PrunedGradient`) on the same images,
and a one-word verdict: the method *wins* against the reference when the paired CI excludes 0
on the better side, *loses* when it excludes 0 on the worse side, and *ties* otherwise.
:meth:`Comparison.separated` tells whether any two methods differ beyond their paired CI.

The per-example scores (one number per image; areas are trapezoids over fraction units, from
the unmodified image at fraction 0):

========== ================================================================ ==========
protocol   score per image                                                  better
========== ================================================================ ==========
lerf       area under :math:`|p_c(x)-p_c(\tilde x)|/p_c(x)`, least relevant    lower
           pixels removed first (:func:`pixel_perturbation`)
morf       the same, most relevant first                                     higher
road_morf  area under :math:`p_c` with ROAD's imputation, most relevant       lower
           first (:func:`road`)
road_lerf  the same, least relevant first                                    higher
srg        LeRF area minus MoRF area of :math:`p_c`, baseline removal         higher
           (:func:`symmetric_relevance_gain`)
========== ================================================================ ==========
"""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from captum_prune._shared import predict
from captum_prune.evaluation._explain import (
    TargetType,
    as_target,
    attribute,
    batches,
    check_batch_size,
    check_images,
    check_map_matches,
    jsonable,
)
from captum_prune.evaluation.perturbation import (
    DEFAULT_LERF_FRACTIONS,
    BaselineType,
    pixel_perturbation,
)
from captum_prune.evaluation.road import DEFAULT_ROAD_FRACTIONS, road
from captum_prune.evaluation.srg import DEFAULT_SRG_FRACTIONS, symmetric_relevance_gain
from captum_prune.evaluation.statistics import (
    DEFAULT_N_BOOT,
    ConfidenceInterval,
    bootstrap_ci,
    paired_bootstrap_ci,
)

#: Protocol name -> whether a higher per-example score is better.
HIGHER_IS_BETTER: Dict[str, bool] = {
    "lerf": False,
    "morf": True,
    "road_morf": False,
    "road_lerf": True,
    "srg": True,
}
PROTOCOLS: Tuple[str, ...] = tuple(HIGHER_IS_BETTER)
DEFAULT_FRACTIONS: Dict[str, Tuple[float, ...]] = {
    "lerf": DEFAULT_LERF_FRACTIONS,
    "morf": DEFAULT_LERF_FRACTIONS,
    "road_morf": DEFAULT_ROAD_FRACTIONS,
    "road_lerf": DEFAULT_ROAD_FRACTIONS,
    "srg": DEFAULT_SRG_FRACTIONS,
}
VERDICTS = ("wins", "ties", "loses")


@dataclass
class Comparison:
    r"""
    One protocol's comparison, from :func:`compare_methods`.

    Attributes:
        protocol (str): One of :data:`PROTOCOLS`.
        higher_is_better (bool): Direction of the score.
        fractions (list of float): Removal fractions of the protocol.
        reference (str): The method every other is paired with.
        scores (dict): ``name -> N`` per-example scores (numpy, float64).
        level (float): Confidence level of the intervals.
        n_boot (int): Bootstrap resamples.
        seed (int): Seed of the bootstrap.
    """

    protocol: str
    higher_is_better: bool
    fractions: List[float]
    reference: str
    scores: Dict[str, np.ndarray]
    level: float = 0.95
    n_boot: int = DEFAULT_N_BOOT
    seed: int = 0
    _cache: Dict[Any, ConfidenceInterval] = field(default_factory=dict, repr=False)

    @property
    def methods(self) -> List[str]:
        r"""Method names, in the order given."""
        return list(self.scores)

    def ci(self, name: str) -> ConfidenceInterval:
        r"""Bootstrap CI of the mean score of ``name`` over images."""
        key = ("ci", name)
        if key not in self._cache:
            self._cache[key] = bootstrap_ci(self.scores[name], self.n_boot, self.level,
                                            self.seed)
        return self._cache[key]

    def paired(self, name: str, other: Optional[str] = None) -> ConfidenceInterval:
        r"""Paired bootstrap CI of ``score(name) - score(other)`` (default: the reference)."""
        other = self.reference if other is None else other
        key = ("paired", name, other)
        if key not in self._cache:
            self._cache[key] = paired_bootstrap_ci(self.scores[name], self.scores[other],
                                                   self.n_boot, self.level, self.seed)
        return self._cache[key]

    def verdict(self, name: str, other: Optional[str] = None) -> str:
        r"""
        ``"wins"``, ``"ties"`` or ``"loses"``: how ``name`` fares against ``other`` (default:
        the reference) by the paired CI (``"ties"`` for the reference itself and for an
        undefined interval).
        """
        other = self.reference if other is None else other
        if name == other:
            return "ties"
        ci = self.paired(name, other)
        if not (math.isfinite(ci.low) and math.isfinite(ci.high)) or ci.low <= 0 <= ci.high:
            return "ties"
        better = ci.low > 0 if self.higher_is_better else ci.high < 0
        return "wins" if better else "loses"

    def separated(self, a: str, b: str) -> bool:
        r"""Whether the paired CI of ``a - b`` excludes 0."""
        return a != b and self.verdict(a, b) != "ties"

    def all_separated(self, names: Sequence[str]) -> bool:
        r"""Whether every pair of ``names`` is :meth:`separated`."""
        names = list(names)
        return all(self.separated(a, b) for i, a in enumerate(names) for b in names[i + 1:])

    def pairwise_table(self, names: Optional[Sequence[str]] = None, digits: int = 4) -> str:
        r"""
        A Markdown table of the paired CI of ``row - column`` for every pair of ``names``
        (default: all methods); a star marks a pair separated beyond its CI.
        """
        names = self.methods if names is None else list(names)
        lines = ["| row - column | " + " | ".join(names[1:]) + " |",
                 "|---|" + "---|" * (len(names) - 1)]
        for i, a in enumerate(names[:-1]):
            cells = []
            for j, b in enumerate(names[1:], start=1):
                if j <= i:
                    cells.append("")
                    continue
                c = self.paired(a, b)
                star = "*" if self.separated(a, b) else ""
                cells.append(f"{c.mean:.{digits}f} [{c.low:.{digits}f}, {c.high:.{digits}f}]"
                             f"{star}")
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def table(self, digits: int = 4) -> str:
        r"""A Markdown table: mean [CI], paired difference to the reference [CI], verdict."""
        arrow = "higher" if self.higher_is_better else "lower"
        lines = [f"{self.protocol} ({arrow} is better; paired against {self.reference})", "",
                 "| method | mean [95% CI] | minus reference [95% CI] | verdict |",
                 "|---|---|---|---|"]

        def fmt(c: ConfidenceInterval) -> str:
            return f"{c.mean:.{digits}f} [{c.low:.{digits}f}, {c.high:.{digits}f}]"

        for name in self.methods:
            diff = "—" if name == self.reference else fmt(self.paired(name))
            verdict = "reference" if name == self.reference else self.verdict(name)
            lines.append(f"| {name} | {fmt(self.ci(name))} | {diff} | {verdict} |")
        return "\n".join(lines)

    def to_dict(self, per_example: bool = False) -> Dict[str, Any]:
        r"""JSON-ready: per-method CI, paired CI and verdict (``per_example`` adds scores)."""
        out: Dict[str, Any] = {
            "protocol": self.protocol,
            "higher_is_better": self.higher_is_better,
            "fractions": jsonable(self.fractions),
            "reference": self.reference,
            "level": self.level,
            "methods": {},
        }
        for name in self.methods:
            entry = {"ci": self.ci(name).to_dict(), "verdict": self.verdict(name)}
            if name != self.reference:
                entry["paired"] = self.paired(name).to_dict()
            if per_example:
                entry["scores"] = jsonable(self.scores[name])
            out["methods"][name] = entry
        return out


@dataclass
class ComparisonResult:
    r"""
    Outcome of :func:`compare_methods`: one :class:`Comparison` per protocol.

    Attributes:
        comparisons (dict): ``protocol -> Comparison``.
        target (Tensor): The class explained and evaluated per image.
        tied_share (dict): ``name -> N`` share of tied pixels in each map.
        seconds (dict): ``name -> seconds per image`` to compute the maps (0 for given maps).
    """

    comparisons: Dict[str, Comparison]
    target: Tensor
    tied_share: Dict[str, Tensor]
    seconds: Dict[str, float]

    def __getitem__(self, protocol: str) -> Comparison:
        return self.comparisons[protocol]

    def table(self, digits: int = 4) -> str:
        r"""Every protocol's Markdown table, one after the other."""
        return "\n\n".join(c.table(digits) for c in self.comparisons.values())

    def to_dict(self, per_example: bool = False) -> Dict[str, Any]:
        r"""JSON-ready summary of every protocol, the mean tied share and the timings."""
        return {
            "comparisons": {k: c.to_dict(per_example) for k, c in self.comparisons.items()},
            "tied_share": {k: jsonable(v.double().mean()) for k, v in self.tied_share.items()},
            "seconds_per_image": jsonable(self.seconds),
        }


def _maps(explain: Any, inputs: Tensor, target: Tensor, batch_size: int,
          name: str) -> Tuple[Tensor, float]:
    import time

    if isinstance(explain, Tensor):
        check_map_matches(explain, inputs, f"attributions[{name!r}]")
        return explain.detach(), 0.0
    start = time.perf_counter()
    parts = [attribute(explain, inputs[rows], target[rows]).cpu()
             for rows in batches(len(inputs), batch_size)]
    maps = torch.cat(parts)
    check_map_matches(maps, inputs, f"attributions[{name!r}]")
    return maps, (time.perf_counter() - start) / len(inputs)


def compare_methods(
    model: torch.nn.Module,
    inputs: Tensor,
    attributions: Mapping[str, Any],
    protocols: Sequence[str] = ("lerf", "road_morf", "srg"),
    reference: str = "PrunedGradient",
    target: TargetType = None,
    *,
    fractions: Optional[Mapping[str, Sequence[float]]] = None,
    baseline: BaselineType = None,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = 0.95,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
) -> ComparisonResult:
    r"""
    Compares attribution methods on removal protocols with paired bootstrap CIs.

    Every method's maps are computed once (or taken as given) and every protocol runs on the
    same images, targets, tie-breaking seed and baseline, so the per-image scores of two
    methods can be paired. See the module docstring for the score of each protocol.

    Args:

        model (nn.Module or callable): Classifier returning logits; put it in eval mode.
        inputs (Tensor): ``N x C x H x W`` images.
        attributions (mapping): ``name -> maps``, where maps are precomputed tensors
                    (``N x C' x H x W`` or ``N x H x W``), a Captum-style method with
                    ``.attribute(inputs, target=...)``, or a callable ``f(inputs, target)``.
        protocols (sequence of str, optional): Entries of :data:`PROTOCOLS`.
                    Default: ``("lerf", "road_morf", "srg")``
        reference (str, optional): The method every other is paired with; a key of
                    ``attributions``. Default: ``"PrunedGradient"``
        target (int, sequence, Tensor or None, optional): Class per image; ``None`` uses the
                    model's predicted class. Default: ``None``
        fractions (mapping, optional): ``protocol -> fractions`` overriding
                    :data:`DEFAULT_FRACTIONS` (``road_morf`` and ``road_lerf`` share one run,
                    so give them the same fractions). Default: ``None``
        baseline (None, float or Tensor, optional): Replacement value of ``lerf``, ``morf``
                    and ``srg`` (see :func:`remove_top_pixels`); ``0.0`` is the dataset mean
                    for mean-normalised inputs. Default: ``None`` (the mean of ``inputs``)
        n_boot, level (optional): Bootstrap resamples and confidence level. Default: 2000, 0.95
        seed (int, optional): Seed of the tie-breaking, the ROAD noise and the bootstrap.
                    Default: 0
        batch_size (int, optional): Images per forward pass and per attribution call.
                    Default: 64
        progress (bool, optional): Show progress bars. Default: ``False``

    Returns:
        :class:`ComparisonResult`; ``result["lerf"].verdict("Saliency")`` says whether Saliency
        wins, ties or loses against the reference on LeRF, ``result.table()`` gives Markdown.

    Examples::

        >>> import torch
        >>> from captum.attr import Saliency
        >>> from captum_prune.evaluation import RandomAttribution, compare_methods
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3)).eval()
        >>> images = torch.rand(16, 3, 8, 8)
        >>> methods = {"Saliency": Saliency(model), "random": RandomAttribution(model)}
        >>> result = compare_methods(model, images, methods, protocols=["lerf", "srg"],
        ...                          reference="Saliency", n_boot=200)
        >>> result["srg"].verdict("random") in ("wins", "ties", "loses")
        True
        >>> result["lerf"].scores["random"].shape
        (16,)
    """
    inputs = check_images(inputs, "inputs")
    batch_size = check_batch_size(batch_size)
    if not isinstance(attributions, Mapping) or not attributions:
        raise ValueError("attributions must be a non-empty mapping name -> maps or method")
    if reference not in attributions:
        raise ValueError(f"reference {reference!r} is not among the methods "
                         f"{list(attributions)}")
    protocols = [protocols] if isinstance(protocols, str) else list(protocols)
    unknown = [p for p in protocols if p not in HIGHER_IS_BETTER]
    if unknown or not protocols or len(set(protocols)) != len(protocols):
        raise ValueError(f"protocols must be distinct entries of {PROTOCOLS}, got {protocols!r}")
    chosen = dict(DEFAULT_FRACTIONS)
    for key, value in (fractions or {}).items():
        if key not in HIGHER_IS_BETTER:
            raise ValueError(f"fractions: unknown protocol {key!r}; choose from {PROTOCOLS}")
        chosen[key] = tuple(float(f) for f in value)
    if ("road_morf" in protocols and "road_lerf" in protocols
            and chosen["road_morf"] != chosen["road_lerf"]):
        raise ValueError("fractions: road_morf and road_lerf share one ROAD run and must have "
                         "the same fractions")
    t = as_target(target, len(inputs), inputs.device)
    if t is None:
        t = predict(model, inputs, batch_size)

    maps, seconds = {}, {}
    for name, explain in attributions.items():
        maps[name], seconds[name] = _maps(explain, inputs, t, batch_size, name)

    common = dict(target=t, seed=seed, batch_size=batch_size, progress=progress)
    scores: Dict[str, Dict[str, np.ndarray]] = {p: {} for p in protocols}
    ties: Dict[str, Tensor] = {}
    road_modes = [m for m, p in (("morf", "road_morf"), ("lerf", "road_lerf")) if p in protocols]
    for name, m in maps.items():
        for mode in ("lerf", "morf"):
            if mode in protocols:
                r = pixel_perturbation(model, inputs, m, fractions=chosen[mode], mode=mode,
                                       baseline=baseline, **common)
                scores[mode][name] = np.asarray(r.per_example_auc, dtype=np.float64)
                ties.setdefault(name, r.tied_share)
        if road_modes:
            fr = chosen["road_morf" if "morf" in road_modes else "road_lerf"]
            r = road(model, inputs, m, fractions=fr, modes=road_modes, **common)
            for mode in road_modes:
                scores[f"road_{mode}"][name] = np.asarray(r.per_example_auc(mode),
                                                          dtype=np.float64)
            ties.setdefault(name, r.tied_share)
        if "srg" in protocols:
            r = symmetric_relevance_gain(model, inputs, m, fractions=chosen["srg"],
                                         baseline=baseline, **common)
            scores["srg"][name] = np.asarray(r.values, dtype=np.float64)
            ties.setdefault(name, r.tied_share)
    comparisons = {
        p: Comparison(p, HIGHER_IS_BETTER[p], list(chosen[p]), reference, scores[p], level,
                      n_boot, seed)
        for p in protocols
    }
    return ComparisonResult(comparisons, t.detach().cpu(), ties, seconds)
