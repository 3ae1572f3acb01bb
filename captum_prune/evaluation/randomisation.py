r"""Bottom-up randomisation checks: eMPRT and sMPRT (Hedström et al. 2023, "Sanity Checks
Revisited: An Exploration to Repair the Model Parameter Randomisation Test").

Top-down cascading randomisation (:func:`cascading_randomization`) keeps the activation scales
of the lower layers, so maps can stay similar for trivial reasons (Binder et al., CVPR 2023).
Both checks here randomise from the input layer up (:func:`parameter_stages` with
``order="bottom_up"``) with the parameter re-drawing of :func:`cascading_randomization`
(:math:`\mathcal{N}(0, \text{init\_std}^2)`, a seeded CPU generator, on a deep copy of the model,
buffers kept), and compare maps as that check does (the signed channel entry of largest
magnitude, divided by its maximum absolute value).

- eMPRT compares only the original and the fully randomised model, by the relative rise in the
  map's complexity: the discrete entropy of its histogram (``n_bins`` equal-width bins between
  the map's minimum and maximum; Quantus' ``discrete_entropy`` with its default 100 bins).
  Higher is better.
- sMPRT averages each map over noisy copies of the input (Quantus defaults: 50 samples, noise
  standard deviation 0.1 times the input's value range, the last sample noise-free) before the
  Spearman rank correlation of the (absolute) maps of the original and the randomised model,
  stage by stage. Lower is better.

Undefined values are reported as NaN with a count, never as a number: an eMPRT score where the
original map is constant (entropy 0, so a relative rise is undefined), an sMPRT correlation
where either map is constant. (Quantus returns 1.0 for the latter.)
"""

import copy
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from scipy.stats import entropy as scipy_entropy
from scipy.stats import spearmanr
from torch import Tensor

from captum_prune._shared import predict
from captum_prune.evaluation._explain import (
    TargetType,
    as_target,
    attribute,
    bind,
    check_batch_size,
    expects_empty_maps,
    jsonable,
    progress_bar,
    summary,
)
from captum_prune.evaluation.sanity import (
    LayerOrder,
    _maps,
    _randomise,
    _stage_groups,
    parameter_stages,
)
from captum_prune.evaluation.statistics import DEFAULT_N_BOOT, bootstrap_ci, ci_dicts


def _positive_int(value: Any, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _prepare(model: Any, inputs: Any, target: TargetType, layer_order: LayerOrder, seed: Any,
             init_std: Any, batch_size: Any):
    r"""Checks the common arguments; returns the deep copy, its stage groups, the targets
    and the parameter generator."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inputs, Tensor) or inputs.dim() < 3:
        raise ValueError("inputs must be a tensor of shape N x C x H x W")
    _positive_int(seed, "seed", 0)
    if not isinstance(init_std, (int, float)) or init_std <= 0:
        raise ValueError(f"init_std must be a positive number, got {init_std!r}")
    check_batch_size(batch_size)
    net = copy.deepcopy(model).eval()
    if layer_order is None:
        layer_order = parameter_stages(net, "bottom_up")
    groups = _stage_groups(net, layer_order)
    target = as_target(target, len(inputs), inputs.device)
    if target is None:
        target = predict(net, inputs, batch_size)
    return net, groups, target, torch.Generator().manual_seed(seed)


def histogram_entropy(maps: np.ndarray, n_bins: int = 100) -> np.ndarray:
    r"""
    Discrete entropy (natural log) of the histogram of every map (``N x ...``): ``n_bins``
    equal-width bins between the map's minimum and maximum. A constant map has entropy 0.
    """
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    return np.array([scipy_entropy(np.histogram(m, bins=n_bins)[0]) for m in flat])


@dataclass
class EfficientMprtResult:
    r"""
    Outcome of :func:`efficient_mprt`.

    Attributes:
        stages (list of str): The stages randomised (bottom-up), all of them in the end.
        target (Tensor): Class explained for each example.
        entropy_original, entropy_randomised (ndarray): ``N`` histogram entropies of the maps
                    of the original and the fully randomised model.
        n_bins (int): Histogram bins.
    """

    stages: List[str]
    target: Tensor
    entropy_original: np.ndarray
    entropy_randomised: np.ndarray
    n_bins: int

    @property
    def values(self) -> np.ndarray:
        r"""``N`` relative rise in entropy, ``(H_rand - H_orig) / H_orig``; NaN where
        ``H_orig == 0`` (a constant original map), where it is undefined."""
        with np.errstate(invalid="ignore", divide="ignore"):
            rise = (self.entropy_randomised - self.entropy_original) / self.entropy_original
        return np.where(self.entropy_original > 0, rise, np.nan)

    @property
    def n_undefined(self) -> int:
        return int(np.isnan(self.values).sum())

    def ci(self, n_boot: int = DEFAULT_N_BOOT, level: float = 0.95, seed: int = 0) -> Any:
        r"""Bootstrap CI over examples of :attr:`values` (undefined ones left out, counted)."""
        return bootstrap_ci(self.values, n_boot, level, seed)

    def to_dict(self, per_example: bool = False) -> Dict[str, Any]:
        r"""JSON-ready summary; ``per_example=True`` adds the scores and entropies."""
        out = {
            "protocol": "emprt",
            "order": "bottom_up",
            "n_bins": self.n_bins,
            "n_examples": int(len(self.values)),
            "stages": list(self.stages),
            "n_undefined": self.n_undefined,
            "ci": self.ci().to_dict(),
        }
        out["mean"] = out["ci"]["mean"]
        if per_example:
            out["values"] = jsonable(self.values)
            out["entropy_original"] = jsonable(self.entropy_original)
            out["entropy_randomised"] = jsonable(self.entropy_randomised)
            out["target"] = jsonable(self.target)
        return out


@expects_empty_maps
def efficient_mprt(
    model: torch.nn.Module,
    explain: Callable[[torch.nn.Module], Any],
    inputs: Tensor,
    target: TargetType = None,
    *,
    layer_order: LayerOrder = None,
    n_bins: int = 100,
    seed: int = 0,
    attribute_kwargs: Optional[Dict[str, Any]] = None,
    init_std: float = 0.1,
    batch_size: int = 32,
) -> EfficientMprtResult:
    r"""
    eMPRT, the efficient model parameter randomisation test (Hedström et al. 2023).

    The maps of the original model and of the fully randomised one are compared by the
    relative rise of their complexity, the histogram entropy (:func:`histogram_entropy`): a
    method that explains the model gives noisier (more complex) maps for a random model. Higher
    is better; about 0 means the maps did not change. The parameters are randomised bottom-up
    (which does not change the end state, only which random numbers each layer gets). The
    caller's model is never modified.

    Args:

        model (nn.Module): The trained model.
        explain (callable): A factory ``model -> method``, as in
                    :func:`cascading_randomization`.
        inputs (Tensor): Inputs of shape ``N x C x H x W``.
        target (int, sequence, Tensor or None, optional): Class per example; ``None`` uses the
                    original model's prediction, kept for the randomised one. Default: ``None``
        layer_order (optional): Stages, as in :func:`cascading_randomization`. ``None``: every
                    module that owns parameters, bottom-up (registration order).
                    Default: ``None``
        n_bins (int, optional): Histogram bins (Quantus' default). Default: 100
        seed (int, optional): Seed of the random parameters. Default: 0
        attribute_kwargs (dict, optional): Keyword arguments for ``.attribute``.
                    Default: ``None``
        init_std (float, optional): Standard deviation of the new parameters. Default: 0.1
        batch_size (int, optional): Examples per attribution call. Default: 32

    Returns:
        :class:`EfficientMprtResult` with per-example entropies and scores (``values``, NaN
        where undefined) and a CI.

    Examples::

        >>> import torch
        >>> from captum.attr import Saliency
        >>> from captum_prune.evaluation import efficient_mprt
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3)).eval()
        >>> result = efficient_mprt(model, Saliency, torch.rand(4, 3, 8, 8))
        >>> result.stages, result.values.shape, result.n_undefined
        (['0', '3'], (4,), 0)
    """
    _positive_int(n_bins, "n_bins")
    net, groups, target, generator = _prepare(model, inputs, target, layer_order, seed,
                                              init_std, batch_size)
    kwargs = dict(attribute_kwargs or {})
    original = _maps(bind(explain, net), inputs, target, kwargs, batch_size)
    for _, names in groups:
        _randomise(net, names, generator, float(init_std))
    randomised = _maps(bind(explain, net), inputs, target, kwargs, batch_size)
    return EfficientMprtResult(
        [name for name, _ in groups], target.detach().cpu(),
        histogram_entropy(original, n_bins), histogram_entropy(randomised, n_bins), n_bins,
    )


def _smoothed(method: Any, n_samples: int, noise: float, seed: int) -> Callable[..., Tensor]:
    r"""A callable ``f(x, t, **kw)``: the method's maps averaged over ``n_samples`` copies of
    ``x`` with Gaussian noise of std ``noise * (max - min)`` per example, the last copy
    noise-free. The noise restarts from ``seed`` for every model state (paired noise)."""
    generator = torch.Generator().manual_seed(seed)

    def explain(x: Tensor, t: Tensor, **kwargs: Any) -> Tensor:
        dims = tuple(range(1, x.dim()))
        std = noise * (x.detach().amax(dim=dims, keepdim=True)
                       - x.detach().amin(dim=dims, keepdim=True))
        total = None
        for i in range(n_samples):
            if i == n_samples - 1:
                x_i = x
            else:
                eps = torch.randn(x.shape, generator=generator, dtype=torch.float64)
                x_i = x + eps.to(device=x.device, dtype=x.dtype) * std
            a = attribute(method, x_i, t, **kwargs).double()
            total = a if total is None else total + a
        return total / n_samples

    return explain


def _spearman(reference: np.ndarray, maps: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant maps: scipy warns and returns NaN
        return np.array([spearmanr(a.ravel(), b.ravel())[0] for a, b in zip(reference, maps)],
                        dtype=np.float64)


@dataclass
class SmoothMprtResult:
    r"""
    Outcome of :func:`smooth_mprt`.

    Attributes:
        stages (list of str): ``"original"`` then the stages, bottom-up; entry ``s`` compares
                    the original smoothed map with the one after randomising stages ``1..s``.
        target (Tensor): Class explained for each example.
        spearman (ndarray): ``S x N`` rank correlation per stage and example; NaN where a map
                    is constant (undefined).
        n_samples (int): Noisy copies averaged.
        noise (float): Noise level (times each input's value range).
        absolute (bool): Whether the absolute maps were compared.
    """

    stages: List[str]
    target: Tensor
    spearman: np.ndarray
    n_samples: int
    noise: float
    absolute: bool

    @property
    def n_undefined(self) -> np.ndarray:
        r"""Undefined correlations per stage."""
        return np.isnan(self.spearman).sum(axis=1)

    @property
    def last(self) -> np.ndarray:
        r"""``N`` correlations with the fully randomised model (Quantus'
        ``return_last_correlation``)."""
        return self.spearman[-1]

    def ci(self, n_boot: int = DEFAULT_N_BOOT, level: float = 0.95,
           seed: int = 0) -> List[Any]:
        r"""One bootstrap CI over examples per stage."""
        return bootstrap_ci(self.spearman.T, n_boot, level, seed)

    def to_dict(self, per_example: bool = False) -> Dict[str, Any]:
        r"""JSON-ready summary per stage; ``per_example=True`` adds the ``S x N`` array."""
        out = {
            "protocol": "smprt",
            "order": "bottom_up",
            "n_samples": self.n_samples,
            "noise": self.noise,
            "map": "absolute" if self.absolute else "signed",
            "n_examples": int(self.spearman.shape[1]),
            "stages": list(self.stages),
            "spearman": {**summary(self.spearman.T),
                         "n_undefined": jsonable(self.n_undefined),
                         "ci": ci_dicts(self.ci())},
        }
        if per_example:
            out["spearman"]["per_example"] = jsonable(self.spearman)
            out["target"] = jsonable(self.target)
        return out


@expects_empty_maps
def smooth_mprt(
    model: torch.nn.Module,
    explain: Callable[[torch.nn.Module], Any],
    inputs: Tensor,
    target: TargetType = None,
    *,
    layer_order: LayerOrder = None,
    n_samples: int = 50,
    noise: float = 0.1,
    absolute: bool = True,
    seed: int = 0,
    attribute_kwargs: Optional[Dict[str, Any]] = None,
    init_std: float = 0.1,
    batch_size: int = 32,
    progress: bool = False,
) -> SmoothMprtResult:
    r"""
    sMPRT, the smooth model parameter randomisation test (Hedström et al. 2023).

    Each map is averaged over ``n_samples`` noisy copies of the input (Gaussian noise of
    standard deviation ``noise`` times the input's value range; the last copy noise-free, as in
    Quantus), which removes the shattered-gradient noise that makes the plain test pass for
    trivial reasons. Parameters are then randomised bottom-up, cumulatively, and after each
    stage the smoothed map is compared with the original one by Spearman rank correlation.
    Lower is better. The noise is drawn from a generator seeded by ``seed + 1``, restarted for
    every model state, so every state sees the same noisy inputs. The caller's model is never
    modified and the global RNG is not used.

    Args:

        model (nn.Module): The trained model.
        explain (callable): A factory ``model -> method``, as in
                    :func:`cascading_randomization`.
        inputs (Tensor): Inputs of shape ``N x C x H x W``.
        target (int, sequence, Tensor or None, optional): Class per example; ``None`` uses the
                    original model's prediction. Default: ``None``
        layer_order (optional): Stages, as in :func:`cascading_randomization`; ``None``: every
                    module that owns parameters, bottom-up. Default: ``None``
        n_samples (int, optional): Noisy copies per map (Quantus: 50). Default: 50
        noise (float, optional): Noise level relative to the input range (Quantus: 0.1).
                    Default: 0.1
        absolute (bool, optional): Compare absolute maps (Quantus' default). Default: ``True``
        seed (int, optional): Seed of the parameters (``seed``) and the noise (``seed + 1``).
                    Default: 0
        attribute_kwargs (dict, optional): Keyword arguments for ``.attribute``.
                    Default: ``None``
        init_std (float, optional): Standard deviation of the new parameters. Default: 0.1
        batch_size (int, optional): Examples per attribution call. Default: 32
        progress (bool, optional): Show a tqdm progress bar over stages. Default: ``False``

    Returns:
        :class:`SmoothMprtResult` with ``S x N`` correlations (NaN where undefined, counted in
        ``n_undefined``) and CIs per stage.

    Examples::

        >>> import torch
        >>> from captum.attr import Saliency
        >>> from captum_prune.evaluation import smooth_mprt
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3)).eval()
        >>> result = smooth_mprt(model, Saliency, torch.rand(4, 3, 8, 8), n_samples=5)
        >>> result.stages, result.spearman.shape  # the Conv2d "0" first: bottom-up
        (['original', '0', '3'], (3, 4))
        >>> result.n_undefined.tolist()
        [0, 0, 0]
    """
    _positive_int(n_samples, "n_samples")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    net, groups, target, generator = _prepare(model, inputs, target, layer_order, seed,
                                              init_std, batch_size)
    kwargs = dict(attribute_kwargs or {})

    def maps() -> np.ndarray:
        m = _maps(_smoothed(bind(explain, net), n_samples, float(noise), seed + 1), inputs,
                  target, kwargs, batch_size)
        return np.abs(m) if absolute else m

    reference = maps()
    rows = [_spearman(reference, reference)]
    for _, names in progress_bar(groups, progress, "sMPRT stages", total=len(groups)):
        _randomise(net, names, generator, float(init_std))
        rows.append(_spearman(reference, maps()))
    return SmoothMprtResult(["original"] + [name for name, _ in groups], target.detach().cpu(),
                            np.stack(rows), n_samples, float(noise), bool(absolute))
