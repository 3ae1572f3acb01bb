r"""Sanity check: cascading model-parameter randomisation (Adebayo et al. 2018; spec §4.1).

Maps are compared as single-channel images: the channel entry of largest magnitude, with its
sign (``reduce_channels(..., "signed_max_abs")``, so the absolute map is the channel max of
:math:`|A|` used elsewhere in this package), divided per example by its maximum absolute value.
Spearman correlation is computed on the signed map and on its absolute value; SSIM on the signed
map (values in [-1, 1], ``data_range=2``) and on the absolute map (``data_range=1``).
"""

import copy
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor

from captum_prune._shared import check_int, is_int, predict
from captum_prune.evaluation._explain import (
    TargetType,
    as_target,
    attribute,
    batches,
    bind,
    check_batch_size,
    expects_empty_maps,
    jsonable,
    progress_bar,
    reduce_channels,
    summary,
)
from captum_prune.evaluation.statistics import DEFAULT_N_BOOT, bootstrap_ci, ci_dicts

LayerOrder = Union[None, Sequence[Union[str, Sequence[str]]], Mapping[str, Sequence[str]]]
METRICS = ("spearman", "spearman_abs", "ssim", "ssim_abs")


def parameter_stages(model: torch.nn.Module, order: str = "top_down") -> List[str]:
    r"""
    Names of the modules that own parameters directly, top-down (the reverse of
    ``model.named_modules()``): the default cascade of :func:`cascading_randomization`.
    ``order="bottom_up"`` gives them from the input up (the order of ``named_modules()``), the
    default of :func:`efficient_mprt` and :func:`smooth_mprt`. The root module, if it owns
    parameters, is named ``""``.
    """
    if order not in ("top_down", "bottom_up"):
        raise ValueError(f"order must be 'top_down' or 'bottom_up', got {order!r}")
    owners = [name for name, m in model.named_modules() if any(True for _ in m.parameters(False))]
    return owners[::-1] if order == "top_down" else owners


def _stage_groups(model: torch.nn.Module, layer_order: LayerOrder) -> List[Tuple[str, List[str]]]:
    modules = dict(model.named_modules())
    if layer_order is None:
        groups = [(name or "(root)", [name]) for name in parameter_stages(model)]
    elif isinstance(layer_order, Mapping):
        groups = [(str(k), [v] if isinstance(v, str) else list(v)) for k, v in layer_order.items()]
    elif isinstance(layer_order, (list, tuple)):
        groups = []
        for entry in layer_order:
            names = [entry] if isinstance(entry, str) else list(entry)
            groups.append(("+".join(names), names))
    else:
        raise ValueError(
            "layer_order must be None, a sequence of module names (or groups of names), or a "
            f"mapping stage name -> module names, got {type(layer_order).__name__}"
        )
    if not groups:
        raise ValueError("layer_order is empty, or the model has no parameters to randomise")
    for _, names in groups:
        unknown = [n for n in names if not isinstance(n, str) or n not in modules]
        if unknown or not names:
            raise ValueError(
                f"layer_order names modules that are not in the model: {unknown or names}"
            )
    return groups


def _randomise(model: torch.nn.Module, names: Sequence[str], generator: torch.Generator,
               std: float) -> None:
    modules = dict(model.named_modules())
    seen = set()
    with torch.no_grad():
        for name in names:
            for p in modules[name].parameters():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                # Drawn on the CPU generator so results do not depend on the device.
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * std)


@dataclass
class SanityCheckResult:
    r"""
    Outcome of :func:`cascading_randomization`.

    Attributes:
        stages (list of str): ``"original"`` followed by the randomised stages, top-down; entry
                    ``s`` compares the original map with the map after randomising stages
                    ``1..s`` cumulatively.
        target (Tensor): Class explained for each example.
        spearman, spearman_abs, ssim, ssim_abs (ndarray): ``S x N`` similarity per stage and
                    example (NaN where a map is constant, so rank correlation is undefined).
    """

    stages: List[str]
    target: Tensor
    spearman: np.ndarray
    spearman_abs: np.ndarray
    ssim: np.ndarray
    ssim_abs: np.ndarray

    def summary(self, metric: str) -> Dict[str, Any]:
        r"""
        ``{"mean": [...], "std": [...], "n_undefined": [...]}`` per stage for ``metric``;
        NaN values (constant maps) are left out of mean and std and counted in ``n_undefined``.
        """
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        values = getattr(self, metric)
        return {**summary(values.T), "n_undefined": jsonable(np.isnan(values).sum(axis=1))}

    def ci(self, metric: str, n_boot: int = DEFAULT_N_BOOT, level: float = 0.95,
           seed: int = 0) -> List[Any]:
        r"""One bootstrap CI over examples per stage for ``metric`` (NaN left out, counted)."""
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        return bootstrap_ci(getattr(self, metric).T, n_boot, level, seed)

    def to_dict(self, per_example: bool = False) -> Dict[str, Any]:
        r"""JSON-ready summary per stage; ``per_example=True`` adds the ``S x N`` arrays."""
        out: Dict[str, Any] = {
            "protocol": "cascading_randomization",
            "map": "signed channel entry of largest |A|, divided by max |.| per example",
            "n_examples": int(self.spearman.shape[1]),
            "stages": list(self.stages),
        }
        for metric in METRICS:
            out[metric] = {**self.summary(metric), "ci": ci_dicts(self.ci(metric))}
            if per_example:
                out[metric]["per_example"] = jsonable(getattr(self, metric))
        if per_example:
            out["target"] = jsonable(self.target)
        return out


def _maps(method: Any, inputs: Tensor, target: Tensor, kwargs: Dict[str, Any],
          batch_size: int) -> np.ndarray:
    out = []
    for rows in batches(len(inputs), batch_size):
        a = attribute(method, inputs[rows], target[rows], **kwargs)
        m = reduce_channels(a, "signed_max_abs").double()
        scale = m.abs().flatten(1).amax(dim=1).clamp_min(1e-300).view(-1, 1, 1)
        out.append((m / scale).cpu().numpy())
    return np.concatenate(out)


def _similarities(ref: np.ndarray, maps: np.ndarray, win_size: int) -> np.ndarray:
    from skimage.metrics import structural_similarity

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant maps: scipy warns and returns NaN
        for a, b in zip(ref, maps):
            rows.append((
                spearmanr(a.ravel(), b.ravel())[0],
                spearmanr(np.abs(a).ravel(), np.abs(b).ravel())[0],
                structural_similarity(a, b, win_size=win_size, data_range=2.0),
                structural_similarity(np.abs(a), np.abs(b), win_size=win_size, data_range=1.0),
            ))
    return np.asarray(rows, dtype=np.float64).T


@expects_empty_maps
def cascading_randomization(
    model: torch.nn.Module,
    explain: Callable[[torch.nn.Module], Any],
    inputs: Tensor,
    target: TargetType = None,
    *,
    layer_order: LayerOrder = None,
    seed: int = 0,
    attribute_kwargs: Optional[Dict[str, Any]] = None,
    init_std: float = 0.1,
    ssim_win_size: int = 5,
    batch_size: int = 32,
    progress: bool = False,
) -> SanityCheckResult:
    r"""
    Cascading model-parameter randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency
    Maps"). Parameters are re-drawn from :math:`\mathcal{N}(0, \text{init\_std}^2)` stage by
    stage from the output towards the input, and after each stage the maps are compared with
    the maps of the trained model. A method that depends on the model loses similarity (passes);
    one whose maps stay similar fails.

    The caller's ``model`` is never modified: the work is done on a ``copy.deepcopy`` put in
    eval mode. Buffers (e.g. BatchNorm running statistics) are kept, as in the reference.

    Args:

        model (nn.Module): The trained model.
        explain (callable): A factory ``model -> method`` called with each randomised copy, e.g.
                    ``Saliency``, ``PrunedGradient`` or ``lambda m: IntegratedGradients(m)``. It
                    may also return a plain callable ``f(inputs, target)``. An instance bound to
                    a model is rejected, since it would explain the wrong model.
        inputs (Tensor): Inputs of shape ``N x C x H x W``.
        target (int, sequence, Tensor or None, optional): Class per example. ``None`` uses the
                    original model's predicted class, kept for all stages. Default: ``None``
        layer_order (optional): Stages in randomisation order. ``None``: every module that owns
                    parameters, top-down (:func:`parameter_stages`). A sequence whose entries
                    are module names or groups (lists) of names randomised together; a named
                    module is randomised with all its submodules (e.g. ``"layer4.2"`` for a
                    residual block). A mapping ``stage name -> module names`` also works.
                    Default: ``None``
        seed (int, optional): Seed of the random parameters. Default: 0
        attribute_kwargs (dict, optional): Keyword arguments for ``.attribute`` (or the
                    callable), e.g. ``{"sparsity": 0.7}``. Default: ``None``
        init_std (float, optional): Standard deviation of the new parameters. Default: 0.1
        ssim_win_size (int, optional): Odd SSIM window size, at most the map size. Default: 5
        batch_size (int, optional): Examples per attribution call. Default: 32
        progress (bool, optional): Show a tqdm progress bar over stages. Default: ``False``

    Returns:
        :class:`SanityCheckResult` with per-stage, per-example Spearman (signed and absolute)
        and SSIM (signed and absolute); ``to_dict()`` gives the mean and std per stage.

    Examples::

        >>> import torch
        >>> from captum.attr import LayerAttribution, LayerGradCam, Saliency
        >>> from captum_prune import PrunedGradient
        >>> from captum_prune.evaluation import cascading_randomization
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3)).eval()
        >>> images = torch.rand(4, 3, 8, 8)
        >>> # Pass the class (a factory model -> method), not an instance.
        >>> result = cascading_randomization(model, Saliency, images)
        >>> result.stages  # the Linear layer "3" first, then the Conv2d "0"
        ['original', '3', '0']
        >>> result.spearman.shape  # stages x examples
        (3, 4)
        >>> mean = result.summary("spearman_abs")["mean"]
        >>> round(mean[0], 6), max(mean[1:]) < 0.9  # similarity drops: Saliency passes
        (1.0, True)
        >>> result = cascading_randomization(model, PrunedGradient, images,
        ...                                  attribute_kwargs={"sparsity": 0.7})
        >>> sorted(result.to_dict())
        ['map', 'n_examples', 'protocol', 'spearman', 'spearman_abs', 'ssim', 'ssim_abs', 'stages']
        >>> # Layer methods: build them on the copy and upsample to the input size.
        >>> def gradcam(m):
        ...     cam = LayerGradCam(m, m[0])
        ...     return lambda x, t: LayerAttribution.interpolate(
        ...         cam.attribute(x, target=t), x.shape[-2:], "bilinear")
        >>> result = cascading_randomization(model, gradcam, images, layer_order=["3", "0"])
        >>> result.stages, result.ssim.shape
        (['original', '3', '0'], (3, 4))
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inputs, Tensor) or inputs.dim() < 3:
        raise ValueError("inputs must be a tensor of shape N x C x H x W")
    check_int("seed", seed)
    if not isinstance(init_std, (int, float)) or init_std <= 0:
        raise ValueError(f"init_std must be a positive number, got {init_std!r}")
    if not is_int(ssim_win_size) or ssim_win_size < 3 or ssim_win_size % 2 == 0:
        raise ValueError(f"ssim_win_size must be an odd int >= 3, got {ssim_win_size!r}")
    batch_size = check_batch_size(batch_size)
    kwargs = dict(attribute_kwargs or {})

    net = copy.deepcopy(model).eval()
    groups = _stage_groups(net, layer_order)
    target = as_target(target, len(inputs), inputs.device)
    if target is None:
        target = predict(net, inputs, batch_size)
    generator = torch.Generator().manual_seed(seed)

    reference = _maps(bind(explain, net), inputs, target, kwargs, batch_size)
    if min(reference.shape[-2:]) < ssim_win_size:
        raise ValueError(
            f"ssim_win_size ({ssim_win_size}) exceeds the map size {reference.shape[-2:]}"
        )
    sims = [_similarities(reference, reference, ssim_win_size)]
    for _, names in progress_bar(groups, progress, "randomisation stages", total=len(groups)):
        _randomise(net, names, generator, float(init_std))
        sims.append(_similarities(reference, _maps(bind(explain, net), inputs, target, kwargs,
                                                   batch_size), ssim_win_size))
    sims = np.stack(sims, axis=1)  # metric x stage x example
    return SanityCheckResult(
        ["original"] + [name for name, _ in groups],
        target.detach().cpu(),
        *sims,
    )
