r"""
The results of ``captum-prune benchmark``, one dataclass per protocol, as the report reads
them.

:class:`BenchmarkResults` is what :mod:`captum_prune.cli.benchmark` builds and
:mod:`captum_prune.cli.report` turns into tables, plots and pages. ``to_dict()`` gives the
``results.json`` document and :meth:`BenchmarkResults.from_dict` reads one back. Every derived
value (a sanity verdict, a mean over stages) is computed here, once, when the result is made;
the report only formats.

The per-method entries keep the protocol's own JSON summary (``record``: the ``to_dict()`` of
an :mod:`captum_prune.evaluation` result) and expose the fields the report uses as attributes.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = [
    "RESULTS_FORMAT",
    "SANITY_PASS_BELOW",
    "ROAR_LEARNED_OVER_CHANCE",
    "Stat",
    "PerturbationCurve",
    "PerturbationResults",
    "RoarCurve",
    "RoarResults",
    "SanityCurves",
    "SanityResults",
    "LocalisationScores",
    "LocalisationResults",
    "PathwayResults",
    "SweepResults",
    "LinearityResults",
    "BenchmarkResults",
    "Interval",
    "MethodComparison",
    "ProtocolComparison",
    "VERDICTS",
    "pairwise_verdict",
]

RESULTS_FORMAT = "captum-prune-benchmark/2"
#: A method passes the sanity check when, with every block randomised, the mean Spearman
#: correlation of its absolute map with the original map falls below this.
SANITY_PASS_BELOW = 0.5
#: ROAR's curves are a result only when the models retrained on unmodified images reach at
#: least this multiple of the chance accuracy.
ROAR_LEARNED_OVER_CHANCE = 2.0

Values = List[Optional[float]]


class _Recorded:
    r"""A per-method entry that keeps the protocol's JSON summary (``record``) and writes it
    back unchanged."""

    record: Dict[str, Any]

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.record)


@dataclass(frozen=True)
class Stat:
    r"""A mean and a standard deviation (None where undefined)."""

    mean: Optional[float]
    std: Optional[float]
    #: The 95% bootstrap CI of the mean (None where not recorded or undefined).
    low: Optional[float] = None
    high: Optional[float] = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Stat":
        return cls(d["mean"], d.get("std"), d.get("low"), d.get("high"))

    def to_dict(self) -> Dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class PerturbationCurve(_Recorded):
    r"""One method's pixel-perturbation curve (a
    :class:`~captum_prune.evaluation.PerturbationResult` summary): the change per fraction,
    mean and std over examples, and its AUC."""

    mean: Values
    std: Values
    auc: Optional[float]
    n_examples: int
    record: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PerturbationCurve":
        return cls(d["mean"], d["std"], d["auc"], d["n_examples"], dict(d))


@dataclass(frozen=True)
class PerturbationResults:
    r"""LeRF and MoRF curves of every method, over ``fractions``."""

    fractions: List[float]
    lerf: Dict[str, PerturbationCurve]
    morf: Dict[str, PerturbationCurve]

    def curves(self, mode: str) -> Dict[str, PerturbationCurve]:
        r"""The curves of ``mode`` (``"lerf"`` or ``"morf"``)."""
        return {"lerf": self.lerf, "morf": self.morf}[mode]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PerturbationResults":
        return cls(list(d["fractions"]),
                   *({n: PerturbationCurve.from_dict(c) for n, c in d[m].items()}
                     for m in ("lerf", "morf")))

    def to_dict(self) -> Dict[str, Any]:
        return {"fractions": list(self.fractions),
                "lerf": {n: c.to_dict() for n, c in self.lerf.items()},
                "morf": {n: c.to_dict() for n, c in self.morf.items()}}


@dataclass(frozen=True)
class RoarCurve(_Recorded):
    r"""One method's ROAR accuracies (a :class:`~captum_prune.evaluation.RoarResult` summary)."""

    mean: Values
    std: Values
    auc: Optional[float]
    record: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RoarCurve":
        return cls(d["mean"], d["std"], d["auc"], dict(d))


@dataclass(frozen=True)
class RoarResults:
    r"""ROAR of every method, with the settings of the retraining."""

    fractions: List[float]
    seeds: List[int]
    epochs: int
    n_train: int
    n_test: int
    methods: Dict[str, RoarCurve]
    lr: Optional[float] = None
    batch_size: Optional[int] = None
    retrained_model: Optional[str] = None
    map_seconds_per_image: Dict[str, float] = field(default_factory=dict)
    #: Accuracy of guessing (1 / classes).
    chance: Optional[float] = None
    #: Why these numbers are not a result (None when they are): the retrained models did not
    #: learn the unmodified task, or a smoke-run preset.
    not_meaningful: Optional[str] = None

    @staticmethod
    def judge(methods: Mapping[str, "RoarCurve"], chance: Optional[float],
              smoke_run: bool = False) -> Optional[str]:
        r"""Why ROAR curves are not a result, or None: ROAR compares accuracy *drops*, which
        mean nothing when models retrained on the unmodified images (0% removed) are not
        clearly above chance (below :data:`ROAR_LEARNED_OVER_CHANCE` times chance)."""
        unmodified = [c.mean[0] for c in methods.values() if c.mean and c.mean[0] is not None]
        reasons = []
        if smoke_run:
            reasons.append("the quick preset's retrainings are too short to learn the task")
        if chance is not None and unmodified:
            accuracy = float(np.mean(unmodified))
            if accuracy < ROAR_LEARNED_OVER_CHANCE * chance:
                reasons.append(f"with 0% of the pixels removed the retrained models reach "
                               f"{accuracy:.1%} test accuracy, chance is {chance:.1%}")
        return "; ".join(reasons) or None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RoarResults":
        return cls(
            fractions=list(d["fractions"]), seeds=list(d["seeds"]), epochs=d["epochs"],
            n_train=d["n_train"], n_test=d["n_test"],
            methods={n: RoarCurve.from_dict(c) for n, c in d["methods"].items()},
            lr=d.get("lr"), batch_size=d.get("batch_size"),
            retrained_model=d.get("retrained_model"),
            map_seconds_per_image=dict(d.get("map_seconds_per_image", {})),
            chance=d.get("chance"), not_meaningful=d.get("not_meaningful"),
        )

    def to_dict(self) -> Dict[str, Any]:
        return {
            "fractions": list(self.fractions), "seeds": list(self.seeds),
            "epochs": self.epochs, "n_train": self.n_train, "n_test": self.n_test,
            "lr": self.lr, "batch_size": self.batch_size,
            "retrained_model": self.retrained_model,
            "methods": {n: c.to_dict() for n, c in self.methods.items()},
            "map_seconds_per_image": dict(self.map_seconds_per_image),
            "chance": self.chance, "not_meaningful": self.not_meaningful,
        }


@dataclass(frozen=True)
class SanityCurves(_Recorded):
    r"""
    One method's sanity check (a :class:`~captum_prune.evaluation.SanityCheckResult`
    summary) and its verdict.

    A map that became *constant* after randomisation (GradCAM's often does) has no ranks, so
    its Spearman correlation with the original map is undefined; but the original map was not
    constant, so the map changed with the model: it is counted as a correlation of 0 (no
    agreement), and how many maps were constant is kept (``n_constant``) and shown.

    Attributes:
        spearman_abs, ssim (dict): ``{"mean": [...], "std": [...]}`` per stage (the mean over
                    the maps that are not constant, as the protocol gives it).
        final_spearman_abs (float or None): The mean Spearman correlation of the absolute map
                    with every block randomised, constant maps counted as 0.
        mean_spearman_abs_randomised (float or None): Its mean over the randomised stages
                    (stage 0 left out): how early the maps react.
        passed (bool): ``final_spearman_abs < pass_below``.
        n_constant (list of int): Per stage, maps that were constant (0 at stage 0).
        n_examples (int): Maps per stage.
    """

    spearman_abs: Dict[str, Values]
    ssim: Dict[str, Values]
    final_spearman_abs: Optional[float]
    mean_spearman_abs_randomised: Optional[float]
    passed: bool
    record: Dict[str, Any] = field(repr=False, compare=False)
    n_constant: List[int] = field(default_factory=list)
    n_examples: Optional[int] = None

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any],
                     pass_below: float = SANITY_PASS_BELOW) -> "SanityCurves":
        r"""The curves and verdict of a ``SanityCheckResult.to_dict()`` summary."""
        means = summary["spearman_abs"]["mean"]
        undefined = list(summary["spearman_abs"].get("n_undefined") or [0] * len(means))
        n = summary.get("n_examples")
        # Constant maps count as 0 only where the original maps were not constant (stage 0
        # compares a map with itself: undefined there means the original map is constant).
        if n and undefined and undefined[0] == 0:
            counted = [(0.0 if m is None else m * (n - u) / n) if u else m
                       for m, u in zip(means, undefined)]
            constant = [0] + [int(u) for u in undefined[1:]]
        else:
            counted, constant = list(means), [0] * len(means)
        final = counted[-1]
        # The final stage alone is lenient (every map decorrelates once the whole net is
        # random); the mean over the randomised stages shows how early a method reacts.
        later = [v for v in counted[1:] if v is not None]
        record = dict(summary)
        record["final_spearman_abs"] = final
        record["mean_spearman_abs_randomised"] = float(np.mean(later)) if later else None
        record["passed"] = bool(final is not None and final < pass_below)
        record["n_constant"] = constant
        record["spearman_abs_constant_as_zero"] = counted
        return cls.from_dict(record)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SanityCurves":
        return cls(d["spearman_abs"], d["ssim"], d["final_spearman_abs"],
                   d["mean_spearman_abs_randomised"], d["passed"], dict(d),
                   list(d.get("n_constant") or []), d.get("n_examples"))


@dataclass(frozen=True)
class SanityResults:
    r"""The sanity check of every method, over ``stages`` (``"original"`` first)."""

    stages: List[str]
    methods: Dict[str, SanityCurves]
    pass_below: float = SANITY_PASS_BELOW
    metric_for_outcome: str = "spearman_abs"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SanityResults":
        return cls(list(d["stages"]),
                   {n: SanityCurves.from_dict(c) for n, c in d["methods"].items()},
                   d["pass_below"], d.get("metric_for_outcome", "spearman_abs"))

    def to_dict(self) -> Dict[str, Any]:
        return {"stages": list(self.stages), "pass_below": self.pass_below,
                "metric_for_outcome": self.metric_for_outcome,
                "methods": {n: c.to_dict() for n, c in self.methods.items()}}


@dataclass(frozen=True)
class LocalisationScores(_Recorded):
    r"""One method's share of positive mass in the box and pointing-game hit rate."""

    mass_in_box: Stat
    pointing_game: Stat
    record: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LocalisationScores":
        return cls(Stat.from_dict(d["mass_in_box"]), Stat.from_dict(d["pointing_game"]),
                   dict(d))


@dataclass(frozen=True)
class LocalisationResults:
    r"""Localisation of every method, or why it was skipped (data without boxes)."""

    methods: Dict[str, LocalisationScores] = field(default_factory=dict)
    region: str = "ground-truth bounding box"
    skipped: Optional[str] = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LocalisationResults":
        if "skipped" in d:
            return cls(skipped=d["skipped"])
        return cls({n: LocalisationScores.from_dict(c) for n, c in d["methods"].items()},
                   d.get("region", "ground-truth bounding box"))

    def to_dict(self) -> Dict[str, Any]:
        if self.skipped is not None:
            return {"skipped": self.skipped}
        return {"region": self.region,
                "methods": {n: c.to_dict() for n, c in self.methods.items()}}


@dataclass(frozen=True)
class PathwayResults:
    r"""Overlaps and contents of the PrunedGradient pathways of several criteria."""

    sparsity: float
    n_examples: int
    #: ``{"a vs b": Jaccard overlap}`` for every pair of criteria.
    jaccard: Dict[str, Stat]
    #: Per criterion: share of kept neurons that are dead (zero activation).
    dead_fraction: Dict[str, Stat]
    #: Per criterion: share of neurons kept.
    kept_fraction: Dict[str, Stat]
    #: Per criterion: how often the pruned network still predicts the class.
    target_kept: Dict[str, Stat]

    _STATS = ("jaccard", "dead_fraction", "kept_fraction", "target_kept")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PathwayResults":
        stats = {k: {n: Stat.from_dict(v) for n, v in d[k].items()} for k in cls._STATS}
        return cls(d["sparsity"], d["n_examples"], **stats)

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"sparsity": self.sparsity, "n_examples": self.n_examples}
        for k in self._STATS:
            out[k] = {n: v.to_dict() for n, v in getattr(self, k).items()}
        return out


def _num(value: Any) -> Optional[float]:
    r"""A float, or None for None / NaN / inf."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


@dataclass(frozen=True)
class Interval:
    r"""A mean with its 95% bootstrap CI (None where undefined), from a
    :class:`~captum_prune.evaluation.ConfidenceInterval`."""

    mean: Optional[float]
    low: Optional[float]
    high: Optional[float]
    n: int = 0
    n_undefined: int = 0

    @classmethod
    def of(cls, ci: Any) -> "Interval":
        r"""From a :class:`~captum_prune.evaluation.ConfidenceInterval` (or its dict)."""
        d = ci if isinstance(ci, Mapping) else ci.to_dict()
        return cls(_num(d.get("mean")), _num(d.get("low")), _num(d.get("high")),
                   int(d.get("n") or 0), int(d.get("n_undefined") or 0))

    @property
    def defined(self) -> bool:
        return self.low is not None and self.high is not None

    def excludes_zero(self) -> bool:
        return self.defined and (self.low > 0 or self.high < 0)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Interval":
        return cls.of(d)

    def to_dict(self) -> Dict[str, Any]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n,
                "n_undefined": self.n_undefined}


@dataclass(frozen=True)
class SweepResults(_Recorded):
    r"""PrunedGradient at the paper's sparsities (and ``"auto"``): per entry the kept-class
    rate and the relative output change with their 95% CIs (a
    :class:`~captum_prune.evaluation.SparsitySweepResult` summary in ``record``)."""

    sparsities: List[Any]
    kept_class: List[Interval]
    output_change: List[Interval]
    chosen_sparsity: Values
    kept_fraction: Values
    n_examples: int
    record: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SweepResults":
        return cls(list(d["sparsities"]), [Interval.of(c) for c in d["kept_class_ci"]],
                   [Interval.of(c) for c in d["output_change_ci"]],
                   list(d["chosen_sparsity_mean"]), list(d["kept_fraction_mean"]),
                   d["n_examples"], dict(d))


@dataclass(frozen=True)
class LinearityResults(_Recorded):
    r"""Local linearity of the pathways and the full network (a
    :class:`~captum_prune.evaluation.LocalLinearityResult` summary in ``record``): per network
    and radius the mean first-order error with its 95% CI, and the stable radius."""

    radii: List[float]
    tolerance: float
    networks: Dict[str, List[Interval]]
    stable_radius: Dict[str, Interval]
    n_examples: int
    record: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LinearityResults":
        return cls(list(d["radii"]), d["tolerance"],
                   {n["network"]: [Interval.of(c) for c in n["ci"]] for n in d["networks"]},
                   {n["network"]: Interval.of(n["stable_radius"]) for n in d["networks"]},
                   d["n_examples"], dict(d))


#: JSON key -> (attribute, class) of the protocol sections, in the order of results.json.
_SECTIONS = (
    ("sanity", SanityResults),
    ("pixel_perturbation", PerturbationResults),
    ("localisation", LocalisationResults),
    ("pathway", PathwayResults),
    ("roar", RoarResults),
    ("sweep", SweepResults),
    ("linearity", LinearityResults),
)


@dataclass
class BenchmarkResults:
    r"""
    Everything a benchmark run found and how it ran: the ``results.json`` document.

    Attributes:
        methods (list of str): The methods, in the order of tables and figures.
        config (dict): The command's settings (preset, sizes, sparsity, seed, device, ...).
        versions (dict): Library versions and platform.
        model (dict): What was explained (model, weights, data, test accuracy, ...).
        map_seconds_per_image (dict): Seconds per image of every method's maps.
        sanity, pixel_perturbation, localisation, pathway, roar: The protocols that ran
                    (None for the others).
        comparisons (dict): Per protocol (every section's score, ROAD, SRG, grid pointing,
                    eMPRT, sMPRT), a :class:`ProtocolComparison`.
        figures (list of str): File names of the plots written beside the results.
        timings (dict): Seconds of each step and in total.
    """

    methods: List[str]
    config: Dict[str, Any] = field(default_factory=dict)
    versions: Dict[str, str] = field(default_factory=dict)
    model: Dict[str, Any] = field(default_factory=dict)
    map_seconds_per_image: Dict[str, float] = field(default_factory=dict)
    sanity: Optional[SanityResults] = None
    pixel_perturbation: Optional[PerturbationResults] = None
    localisation: Optional[LocalisationResults] = None
    pathway: Optional[PathwayResults] = None
    roar: Optional[RoarResults] = None
    sweep: Optional["SweepResults"] = None
    linearity: Optional["LinearityResults"] = None
    #: ``{protocol: ProtocolComparison}``: per-method CIs, paired CIs against PrunedGradient,
    #: tied shares and verdicts, in the order of the report.
    comparisons: Dict[str, "ProtocolComparison"] = field(default_factory=dict)
    figures: List[str] = field(default_factory=list)
    timings: Dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BenchmarkResults":
        r"""Reads a ``results.json`` document (as :func:`json.load` returns it)."""
        sections = {key: kind.from_dict(d[key]) for key, kind in _SECTIONS if d.get(key)}
        return cls(
            methods=list(d["methods"]), config=dict(d.get("config", {})),
            versions=dict(d.get("versions", {})), model=dict(d.get("model", {})),
            map_seconds_per_image=dict(d.get("map_seconds_per_image", {})),
            figures=list(d.get("figures", [])), timings=dict(d.get("timings", {})),
            comparisons={k: ProtocolComparison.from_dict(v)
                         for k, v in (d.get("comparisons") or {}).items()},
            **sections,
        )

    def to_dict(self) -> Dict[str, Any]:
        r"""The ``results.json`` document (JSON-ready; format :data:`RESULTS_FORMAT`)."""
        out: Dict[str, Any] = {
            "format": RESULTS_FORMAT, "complete": True, "config": self.config,
            "versions": self.versions, "model": self.model, "methods": list(self.methods),
            "map_seconds_per_image": dict(self.map_seconds_per_image),
        }
        for key, _ in _SECTIONS:
            section = getattr(self, key)
            if section is not None:
                out[key] = section.to_dict()
        out["comparisons"] = {k: c.to_dict() for k, c in self.comparisons.items()}
        out["figures"] = list(self.figures)
        out["timings"] = dict(self.timings)
        return out


# --------------------------------------------------------------------------- comparisons

#: Outcomes of PrunedGradient against one method on one protocol (from the paired CI).
VERDICTS = ("wins", "ties", "loses", "not a result")


def pairwise_verdict(paired: Sequence[Interval], better: str) -> str:
    r"""
    PrunedGradient's outcome against one method from the paired CIs of ``method -
    PrunedGradient`` (one per trained model): ``"wins"`` / ``"loses"`` only when every
    model's CI excludes 0 on the same side, ``"ties"`` when any CI contains 0 (or the models
    disagree), ``"not a result"`` when a CI is undefined.

    Examples::

        >>> from captum_prune.cli.results import Interval, pairwise_verdict
        >>> pairwise_verdict([Interval(0.2, 0.1, 0.3)], better="lower")
        'wins'
        >>> pairwise_verdict([Interval(0.2, -0.1, 0.3)], better="lower")
        'ties'
    """
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    if not paired or not all(p.defined for p in paired):
        return "not a result"
    if not all(p.excludes_zero() for p in paired):
        return "ties"
    signs = {p.low > 0 for p in paired}  # True: the method scores above PrunedGradient
    if len(signs) > 1:
        return "ties"
    method_higher = signs.pop()
    return "loses" if method_higher == (better == "higher") else "wins"


@dataclass(frozen=True)
class MethodComparison:
    r"""
    One method on one protocol.

    Attributes:
        score (Interval): The score (mean over examples, 95% bootstrap CI) on the first
                    trained model.
        paired (list of Interval): Per trained model, the paired CI of ``score - score of
                    PrunedGradient`` on the same examples (empty for the reference).
        verdict (str or None): PrunedGradient's outcome against this method (:data:`VERDICTS`;
                    None for the reference itself).
        tied_share (float or None): Mean share of tied pixels of the method's maps (ordering
                    protocols only).
        curve (list of Interval): Per fraction (or stage), the mean with its CI (may be empty).
        models (dict or None): With several trained models: ``combine_models`` of the score
                    (``"score"``) and of the paired difference (``"paired"``).
    """

    score: Interval
    paired: List[Interval] = field(default_factory=list)
    verdict: Optional[str] = None
    tied_share: Optional[float] = None
    curve: List[Interval] = field(default_factory=list)
    models: Optional[Dict[str, Any]] = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MethodComparison":
        return cls(Interval.from_dict(d["score"]), [Interval.from_dict(p) for p in d["paired"]],
                   d.get("verdict"), d.get("tied_share"),
                   [Interval.from_dict(c) for c in d.get("curve") or []], d.get("models"))

    def to_dict(self) -> Dict[str, Any]:
        return {"score": self.score.to_dict(), "paired": [p.to_dict() for p in self.paired],
                "verdict": self.verdict, "tied_share": self.tied_share,
                "curve": [c.to_dict() for c in self.curve], "models": self.models}


@dataclass(frozen=True)
class ProtocolComparison:
    r"""
    Every method on one protocol: per-method CIs, paired CIs against PrunedGradient, verdicts
    and a one-paragraph summary (``summary``), computed once when made (:meth:`build`).

    Attributes:
        protocol (str): Key, e.g. ``"lerf"``, ``"road_morf"``, ``"grid_pointing"``.
        title (str): Heading in the report.
        score_name (str): What the per-example score is.
        better (str): ``"higher"`` or ``"lower"``.
        reference (str): The method the paired CIs are taken against.
        methods (dict): ``{method: MethodComparison}``.
        x (list): The fractions (or stage names) of the curves; empty without curves.
        x_label (str): What ``x`` is.
        curve_name (str): What the curves show.
        n_models (int): Trained models the scores come from.
        not_a_result (str or None): Why these numbers are not a result (None when they are).
        chance (float or None): The score of guessing, where defined.
        summary (str): The verdict paragraph.
        pairs (dict): ``{"A - B": [Interval per trained model]}``: the paired CI of the
                    per-example difference for every pair of methods (A before B in method
                    order; a pair with the reference as ``method - reference``, the CI of its
                    verdict); empty in a ``results.json`` written before they were kept.
    """

    protocol: str
    title: str
    score_name: str
    better: str
    reference: str
    methods: Dict[str, MethodComparison]
    x: List[Any] = field(default_factory=list)
    x_label: str = ""
    curve_name: str = ""
    n_models: int = 1
    not_a_result: Optional[str] = None
    chance: Optional[float] = None
    summary: str = ""
    pairs: Dict[str, List[Interval]] = field(default_factory=dict)

    @classmethod
    def build(cls, protocol: str, title: str, score_name: str, better: str, reference: str,
              per_model: Sequence[Mapping[str, Mapping[str, Any]]],
              x: Sequence[Any] = (), x_label: str = "", curve_name: str = "",
              not_a_result: Optional[str] = None, chance: Optional[float] = None,
              control: Optional[str] = "Random", seed: int = 0) -> "ProtocolComparison":
        r"""
        From per-example scores: ``per_model[k][method]`` holds ``"values"`` (``N``, NaN where
        undefined), optionally ``"curve"`` (``N x len(x)``) and ``"tied_share"`` (float), for
        trained model ``k`` (the examples may differ between models, never between methods of
        one model).
        """
        from captum_prune.evaluation import bootstrap_ci, combine_models, paired_bootstrap_ci

        names = list(per_model[0])
        methods: Dict[str, MethodComparison] = {}
        for name in names:
            first = per_model[0][name]
            score = Interval.of(bootstrap_ci(np.asarray(first["values"], dtype=float),
                                             seed=seed))
            curve = []
            if first.get("curve") is not None:
                curve = [Interval.of(c) for c in bootstrap_ci(
                    np.asarray(first["curve"], dtype=float).reshape(len(first["values"]), -1),
                    seed=seed)]
            paired: List[Interval] = []
            verdict = None
            models = None
            if reference in names and name != reference:
                for scores in per_model:
                    paired.append(Interval.of(paired_bootstrap_ci(
                        np.asarray(scores[name]["values"], dtype=float),
                        np.asarray(scores[reference]["values"], dtype=float), seed=seed)))
                verdict = ("not a result" if not_a_result
                           else pairwise_verdict(paired, better))
            if len(per_model) > 1:
                models = {"score": combine_models(
                    [np.asarray(s[name]["values"], dtype=float) for s in per_model],
                    seed=seed).to_dict()}
                if reference in names and name != reference:
                    models["paired"] = combine_models(
                        [np.asarray(s[name]["values"], dtype=float)
                         - np.asarray(s[reference]["values"], dtype=float)
                         for s in per_model], seed=seed).to_dict()
            tied = first.get("tied_share")
            methods[name] = MethodComparison(score, paired, verdict, _num(tied), curve, models)
        # A pair with the reference is its verdict's paired CI (``method - reference``), so
        # that the pair's separation and the verdict are the same computation.
        pairs = {pair_key(name, reference): m.paired for name, m in methods.items() if m.paired}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if reference not in (a, b):
                    pairs[pair_key(a, b)] = [Interval.of(paired_bootstrap_ci(
                        np.asarray(scores[a]["values"], dtype=float),
                        np.asarray(scores[b]["values"], dtype=float), seed=seed))
                        for scores in per_model]
        made = cls(protocol, title, score_name, better, reference, methods,
                   [v if isinstance(v, str) else float(v) for v in x], x_label, curve_name,
                   len(per_model), not_a_result, _num(chance), pairs=pairs)
        return cls(**{**made.__dict__, "summary": made.describe(control)})

    def paired(self, a: str, b: str) -> List[Interval]:
        r"""Per trained model, the paired CI of ``score(a) - score(b)`` (empty where this
        ``results.json`` does not hold the pair)."""
        if pair_key(a, b) in self.pairs:
            return self.pairs[pair_key(a, b)]
        if pair_key(b, a) in self.pairs:
            return [Interval(_negated(p.mean), _negated(p.high), _negated(p.low), p.n,
                             p.n_undefined) for p in self.pairs[pair_key(b, a)]]
        return []

    def separated(self, a: str, b: str) -> Optional[bool]:
        r"""
        Whether methods ``a`` and ``b`` differ beyond their CIs: the paired CI of their
        per-example difference excludes 0 on the same side on every trained model. (A
        ``results.json`` written before every pair was kept falls back to: for a pair with the
        reference its verdict, for any other pair disjoint per-method 95% CIs, which is
        stricter.) None when either is missing or the protocol is not a result.
        """
        if a not in self.methods or b not in self.methods or self.not_a_result:
            return None
        paired = self.paired(a, b)
        if paired:
            if not all(p.defined for p in paired):
                return None
            return pairwise_verdict(paired, self.better) != "ties"
        if self.reference in (a, b):
            other = b if a == self.reference else a
            return self.methods[other].verdict in ("wins", "loses")
        x, y = self.methods[a].score, self.methods[b].score
        if not (x.defined and y.defined):
            return None
        return bool(x.high < y.low or y.high < x.low)

    def beats(self, a: str, b: str) -> bool:
        r"""Whether ``a`` scores better than ``b`` beyond the paired CI on every trained model
        (without stored pairs: ``a``'s 95% CI entirely on the better side of ``b``'s)."""
        paired = self.paired(a, b)
        if paired:
            # pairwise_verdict reads ``a - b`` as "method - reference": "loses" means the
            # reference (here b) loses, that is a is better.
            return pairwise_verdict(paired, self.better) == "loses"
        return _separated(self.methods[b], self.methods[a], self.better)

    def all_separated(self, names: Sequence[str]) -> Optional[bool]:
        r"""Whether every pair of ``names`` is :meth:`separated` (None if any is unknown)."""
        pairs = [self.separated(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        if any(p is None for p in pairs):
            return None
        return all(pairs)

    def by_verdict(self) -> Dict[str, List[str]]:
        r"""``{verdict: [methods]}`` for the methods other than the reference."""
        out: Dict[str, List[str]] = {v: [] for v in VERDICTS}
        for name, m in self.methods.items():
            if m.verdict is not None:
                out[m.verdict].append(name)
        return out

    def describe(self, control: Optional[str] = "Random") -> str:
        r"""The verdict paragraph: where PrunedGradient wins, ties and loses (by paired CI)."""
        if self.reference not in self.methods:
            return (f"{self.reference} was not run, so there is no comparison; the table gives "
                    "each method's score with its 95% CI.")
        models = (f" on every one of the {self.n_models} trained models"
                  if self.n_models > 1 else "")
        if self.not_a_result:
            return f"Not a result: {self.not_a_result}. No method is called better or worse."
        groups = self.by_verdict()
        ref = self.methods[self.reference].score
        parts = [f"{self.title} ({self.score_name}, {self.better} is better): "
                 f"{self.reference} scores {_fmt(ref.mean)} [{_fmt(ref.low)}, {_fmt(ref.high)}]."]
        if groups["wins"]:
            parts.append(f"It wins against {_names(groups['wins'])}: the paired 95% CI of the "
                         f"difference excludes 0{models}.")
        if groups["ties"]:
            parts.append(f"It ties with {_names(groups['ties'])}: the paired CI contains 0"
                         + (" on at least one model, or the models disagree"
                            if self.n_models > 1 else "")
                         + ", so no winner is called.")
        if groups["loses"]:
            parts.append(f"It loses to {_names(groups['loses'])}{models}.")
        if groups["not a result"]:
            parts.append(f"Undefined for {_names(groups['not a result'])} (too few defined "
                         "values): not a result.")
        if control and control in self.methods and control != self.reference:
            verdict = self.methods[control].verdict
            if verdict == "wins":
                parts.append("It beats the random control.")
            else:
                parts.append(f"It does NOT beat the random control ({verdict}), so on this "
                             "protocol it has shown nothing.")
            beaten = [n for n in self.methods
                      if n not in (control, self.reference) and self.beats(n, control)]
            others = [n for n in self.methods if n not in (control, self.reference)]
            if others:
                how = "their paired 95% CIs" if self.pairs else "their 95% CIs"
                parts.append(f"{len(beaten)} of the {len(others)} other methods beat the "
                             f"random control beyond {how}.")
        if self.chance is not None:
            parts.append(f"Chance is {_fmt(self.chance)}.")
        return " ".join(parts)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ProtocolComparison":
        r"""Reads one back; the verdict paragraph is written again from the stored verdicts
        and CIs (so a report rewritten from an older ``results.json`` uses today's wording)."""
        made = cls(d["protocol"], d["title"], d["score_name"], d["better"], d["reference"],
                   {n: MethodComparison.from_dict(m) for n, m in d["methods"].items()},
                   list(d.get("x") or []), d.get("x_label", ""), d.get("curve_name", ""),
                   d.get("n_models", 1), d.get("not_a_result"), d.get("chance"),
                   pairs={k: [Interval.from_dict(p) for p in v]
                          for k, v in (d.get("pairs") or {}).items()})
        return cls(**{**made.__dict__, "summary": made.describe()})

    def to_dict(self) -> Dict[str, Any]:
        return {"protocol": self.protocol, "title": self.title, "score_name": self.score_name,
                "better": self.better, "reference": self.reference, "x": list(self.x),
                "x_label": self.x_label, "curve_name": self.curve_name,
                "n_models": self.n_models, "not_a_result": self.not_a_result,
                "chance": self.chance, "summary": self.summary,
                "methods": {n: m.to_dict() for n, m in self.methods.items()},
                "pairs": {k: [p.to_dict() for p in v] for k, v in self.pairs.items()}}


def pair_key(a: str, b: str) -> str:
    r"""The key of the pair ``a - b`` in :attr:`ProtocolComparison.pairs`."""
    return f"{a} - {b}"


def _negated(value: Optional[float]) -> Optional[float]:
    return None if value is None else -value


def _separated(a: MethodComparison, b: MethodComparison, better: str) -> bool:
    r"""Whether ``b``'s score CI lies entirely on the better side of ``a``'s."""
    if not (a.score.defined and b.score.defined):
        return False
    if better == "higher":
        return b.score.low > a.score.high
    return b.score.high < a.score.low


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)
