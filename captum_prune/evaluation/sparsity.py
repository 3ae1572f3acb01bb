r"""The sparsity sweep of the paper's figures, from one scoring pass per batch.

:func:`sparsity_sweep` runs :meth:`PrunedGradient.sweep <captum_prune.PrunedGradient.sweep>`
at each sparsity (default :data:`PAPER_SPARSITIES`, the paper's 0/70/80/85/90/95/99%, and
``"auto"`` if listed) and measures, per example and sparsity:

- the **kept class**: whether the pruned network's arg-max class is the unpruned network's;
- the **relative softmax output change** :math:`|p_c^{pruned} - p_c| / p_c` of the target
  class ``c`` (the authors' "output change"; NaN where :math:`p_c = 0`, counted, never shown
  as a number), with the probabilities given by ``probability`` (default: the softmax over
  the classes of a ``(N, C)`` output);
- the sparsity used (per example for ``"auto"``) and the kept fraction of neurons;

and keeps the maps for the sweep figure
(:func:`~captum_prune.evaluation.plots.sparsity_maps_figure`).
"""
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from captum_prune._shared import check_int, predict
from captum_prune.evaluation._explain import as_target, jsonable
from captum_prune.evaluation.statistics import DEFAULT_N_BOOT, bootstrap_ci, ci_dicts

#: The sparsities of the paper's sweep figures.
PAPER_SPARSITIES = (0.0, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)

SweepEntry = Union[float, str]


@dataclass
class SparsitySweepResult:
    r"""
    What :func:`sparsity_sweep` measured; every ``(N, S)`` tensor has one column per entry of
    :attr:`sparsities`.

    Attributes:
        sparsities (list): The sweep's entries (fractions, or ``"auto"``).
        output_change (float or None): The bound of the ``"auto"`` entries (None without).
        target (Tensor): ``(N,)`` the class explained per example.
        original_class (Tensor): ``(N,)`` the unpruned network's arg-max class.
        kept_class (Tensor): ``(N, S)`` bool, the pruned network's arg-max is
                    ``original_class``.
        change (Tensor): ``(N, S)`` float64 relative softmax change of the target class, NaN
                    where the unpruned probability is 0.
        chosen (Tensor): ``(N, S)`` the sparsity each example was pruned at (the entry itself,
                    or what ``"auto"`` chose).
        kept_fraction (Tensor): ``(N, S)`` share of all neurons kept.
        maps (list[Tensor]): One ``(N, ...)`` map per entry (empty with ``keep_maps=False``).
    """

    sparsities: List[SweepEntry]
    output_change: Optional[float]
    target: Tensor
    original_class: Tensor
    kept_class: Tensor
    change: Tensor
    chosen: Tensor
    kept_fraction: Tensor
    maps: List[Tensor]

    def kept_class_rate(self) -> Tensor:
        r"""``(S,)`` share of examples whose class is kept."""
        return self.kept_class.double().mean(dim=0)

    def kept_class_ci(self, n_boot: int = DEFAULT_N_BOOT, level: float = 0.95,
                      seed: int = 0) -> List[Any]:
        r"""Bootstrap CI of the kept-class rate, per entry."""
        return bootstrap_ci(self.kept_class.double(), n_boot, level, seed)

    def output_change_ci(self, n_boot: int = DEFAULT_N_BOOT, level: float = 0.95,
                         seed: int = 0) -> List[Any]:
        r"""Bootstrap CI of the mean relative output change, per entry (NaN left out)."""
        return bootstrap_ci(self.change, n_boot, level, seed)

    def to_dict(self, per_example: bool = False) -> Dict[str, Any]:
        r"""JSON-ready summary per entry: kept-class rate and mean output change with their
        95% bootstrap CIs, the median change, the mean chosen sparsity and kept fraction.
        ``per_example=True`` adds the per-example columns."""
        with_nan = self.change.numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            medians = np.nanmedian(with_nan, axis=0)
        out = {
            "protocol": "sparsity_sweep",
            "sparsities": list(self.sparsities),
            "output_change_bound": self.output_change,
            "n_examples": int(self.target.numel()),
            "kept_class_rate": jsonable(self.kept_class_rate()),
            "kept_class_ci": ci_dicts(self.kept_class_ci()),
            "output_change_mean": [c.mean for c in self.output_change_ci()],
            "output_change_ci": ci_dicts(self.output_change_ci()),
            "output_change_median": jsonable(medians),
            "n_undefined": torch.isnan(self.change).sum(dim=0).tolist(),
            "chosen_sparsity_mean": jsonable(self.chosen.double().mean(dim=0)),
            "kept_fraction_mean": jsonable(self.kept_fraction.double().mean(dim=0)),
        }
        out["output_change_mean"] = jsonable(out["output_change_mean"])
        if per_example:
            out.update(target=jsonable(self.target), kept_class=jsonable(self.kept_class),
                       change=jsonable(self.change), chosen=jsonable(self.chosen))
        return out


def sparsity_sweep(
    model: Any,
    inputs: Tensor,
    target: Any = None,
    sparsities: Sequence[SweepEntry] = PAPER_SPARSITIES,
    *,
    output_change: float = 0.15,
    probability: Optional[Callable[[Tensor], Tensor]] = None,
    batch_size: int = 64,
    keep_maps: bool = True,
    additional_forward_args: Any = None,
    layers: Any = None,
    batch_dims: Any = None,
    **options: Any,
) -> SparsitySweepResult:
    r"""
    Maps, kept-class rate and relative softmax output change at every sparsity, one scoring
    pass per batch of examples (:meth:`PrunedGradient.sweep
    <captum_prune.PrunedGradient.sweep>`).

    Args:

        model (nn.Module or PrunedGradient): A classifier returning ``(N, C)`` class scores
                    (or a :class:`~captum_prune.PrunedGradient` of one).
        inputs (Tensor): The inputs, batch first.
        target (optional): Class per example; None uses the model's predicted class.
        sparsities (sequence, optional): Fractions in ``[0, 1)`` and/or ``"auto"``.
                    Default: :data:`PAPER_SPARSITIES`
        output_change (float, optional): The bound of ``"auto"`` entries. Default: 0.15
        probability (callable, optional): ``output -> probabilities`` of the same shape, for
                    the output change and ``"auto"``. Default: softmax over dimension 1.
        batch_size (int, optional): Examples per sweep. Default: 64
        keep_maps (bool, optional): Keep the maps (one input-sized tensor per entry).
                    Default: True
        additional_forward_args (optional): As for
                    :meth:`~captum_prune.PrunedGradient.pathway`; likewise ``layers``,
                    ``batch_dims`` and further keyword options.

    Returns:
        :class:`SparsitySweepResult`

    Examples::

        >>> import torch
        >>> from captum_prune.evaluation import sparsity_sweep
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(),
        ...                             torch.nn.Linear(32, 4)).eval()
        >>> result = sparsity_sweep(model, torch.randn(6, 8), sparsities=[0.0, 0.5, "auto"])
        >>> result.kept_class_rate()[0].item(), result.change[:, 0].abs().max().item()
        (1.0, 0.0)
        >>> bool((result.change[:, 2] <= 0.15).all())   # "auto" keeps its bound
        True
    """
    from captum_prune._auto import softmax_probability
    from captum_prune.pruned_gradient import PrunedGradient

    check_int("batch_size", batch_size, minimum=1)
    if isinstance(model, PrunedGradient):
        method, network = model, model.forward_func
    else:
        method, network = PrunedGradient(model, layers=layers, batch_dims=batch_dims), model
    n = inputs.shape[0]
    classes = as_target(target, n, inputs.device)
    if classes is None:
        classes = predict(network, inputs, batch_size)
    probability = softmax_probability if probability is None else probability
    columns: Dict[str, List[Tensor]] = {"kept": [], "change": [], "chosen": [], "kept_frac": [],
                                        "original": []}
    maps: List[List[Tensor]] = []
    entries: List[SweepEntry] = []
    for start in range(0, n, batch_size):
        rows = slice(start, min(start + batch_size, n))
        t = classes[rows]
        args = _rows_of(additional_forward_args, rows, n)
        batch_maps, pathways = method.sweep(
            inputs[rows], t.tolist(), args, sparsities=sparsities, return_pathways=True,
            output_change=output_change, probability=probability, **options)
        entries = ["auto" if isinstance(s, str) else float(s) for s in sparsities]
        original = pathways[0].original_output
        p0 = _target_probability(probability, original, t)
        columns["original"].append(original.argmax(dim=1).cpu())
        columns["kept"].append(torch.stack(
            [p.pruned_output.argmax(dim=1).cpu() == original.argmax(dim=1).cpu()
             for p in pathways], dim=1))
        columns["change"].append(torch.stack(
            [relative_change(_target_probability(probability, p.pruned_output, t), p0)
             for p in pathways], dim=1))
        columns["chosen"].append(torch.stack([p.sparsity.cpu().double() for p in pathways], 1))
        columns["kept_frac"].append(torch.stack([p.kept_fraction.cpu() for p in pathways], 1))
        if keep_maps:
            maps.append([m.detach() for m in batch_maps])
    cat = {key: torch.cat(value) for key, value in columns.items()}
    return SparsitySweepResult(
        sparsities=entries,
        output_change=float(output_change) if "auto" in entries else None,
        target=classes.cpu(),
        original_class=cat["original"],
        kept_class=cat["kept"],
        change=cat["change"],
        chosen=cat["chosen"],
        kept_fraction=cat["kept_frac"],
        maps=[torch.cat([batch[j] for batch in maps]) for j in range(len(entries))]
        if keep_maps else [],
    )


def relative_change(pruned: Tensor, original: Tensor) -> Tensor:
    r"""``|pruned - original| / original`` in float64 on the CPU, NaN where ``original`` is 0."""
    pruned, original = pruned.detach().double().cpu(), original.detach().double().cpu()
    change = (pruned - original).abs() / original
    return torch.where(original != 0, change, torch.full_like(change, float("nan")))


def _target_probability(probability: Callable, output: Tensor, target: Tensor) -> Tensor:
    probs = probability(output.detach())
    return probs.gather(1, target.to(probs.device).view(-1, 1)).squeeze(1)


def _rows_of(args: Any, rows: slice, n: int) -> Any:
    def take(arg: Any) -> Any:
        if isinstance(arg, Tensor) and arg.dim() > 0 and arg.shape[0] == n:
            return arg[rows]
        return arg

    return tuple(take(a) for a in args) if isinstance(args, tuple) else take(args)
