r"""Local linearity of the critical pathway: how far its first-order prediction holds.

The paper's argument for the pathway gradient is that the pruned network is *locally linear*
in an L2 ball around the input, so that its gradient describes it faithfully.
:func:`local_linearity` measures that on any model: for ``n_directions`` random directions
``u`` (Gaussian, normalised to unit L2 norm over the whole input of one example) and each
radius ``r``, with ``delta = r * u``,

.. math::

   e(x, \delta) = \frac{|F(x+\delta) - F(x) - \nabla F(x) \cdot \delta|}{|F(x+\delta) - F(x)|}

where ``F`` is the target's output (the logit, as the method differentiates it). It is
measured for the pruned network with its masks held fixed (the pathway selected at ``x``,
evaluated at ``x + delta`` by a forward-only masked pass) and for the full, unpruned network.

Definitions:

- **Undefined errors.** Where ``F(x+delta) == F(x)`` exactly the ratio is undefined: it is NaN
  in :attr:`LocalLinearityResult.error`, counted by :meth:`~LocalLinearityResult.n_undefined`
  and left out of every summary, never shown as a number.
- **Effective step.** The linear term uses the step the model actually received,
  ``(x + delta) - x`` computed after rounding ``x + delta`` to the input's dtype, so rounding
  of the perturbed input does not count as non-linearity. Differences are taken in float64;
  in float32 the error of a linear function is still about ``1e-7 |F| / |F(x+delta) - F(x)|``
  (the rounding of the model's own output), which dominates at tiny radii. Use a float64
  model and inputs to see below that floor.
- **Flipped units.** The ReLU units are the neurons of the layer calls of ``nn.ReLU``,
  ``nn.LeakyReLU`` and ``nn.PReLU`` modules; a unit is *on* where its output (before the
  mask) is positive. For the pathway, the units counted are the kept ones, and their state is
  read in the masked network (at ``x`` and at ``x + delta``); for the full network, all units.
  :attr:`LocalLinearityResult.flipped` is the share of them whose state differs between ``x``
  and ``x + delta`` (NaN where there are none). In a network whose only non-linearity is ReLU,
  no flip means the same linear region, so the error is zero up to rounding; max-pooling and
  smooth activations can bend the function without a flip.
- **Stable radius.** Per example, the largest radius ``r_k`` such that at every radius up to
  and including it the error of *every* (defined) direction is at most ``tolerance``; 0.0 if
  the smallest radius already fails, NaN if no error was defined. It is censored at the
  largest radius given.
- **Directions** are drawn per example from a generator seeded with ``(seed, example index)``,
  so they do not depend on ``batch_size`` or on the other examples, and the same unit
  direction is used at every radius. The caller's random number generators are left as they
  were.
"""
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from captum_prune._shared import check_int, is_number
from captum_prune.evaluation._explain import jsonable
from captum_prune.evaluation.statistics import DEFAULT_N_BOOT, bootstrap_ci

#: Radii (absolute L2 norms in input space) used when none are given.
DEFAULT_RADII = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
#: Layers whose units have an on/off state (output > 0).
RELU_TYPES = (nn.ReLU, nn.LeakyReLU, nn.PReLU)

FULL_NETWORK = "full network"


@dataclass
class LocalLinearityResult:
    r"""
    What :func:`local_linearity` measured.

    Attributes:
        networks (list[str]): ``"full network"`` and ``"pathway <sparsity>"`` labels, one per
                    network measured (the first dimension of the tensors below).
        sparsities (list): The sparsity of each network (None for the full network).
        radii (list[float]): The L2 radii, increasing.
        tolerance (float): The error bound of :attr:`stable_radius`.
        seed (int): Seed of the directions.
        error (Tensor): ``(K, N, R, D)`` float64 relative errors (networks x examples x radii
                    x directions), NaN where undefined.
        flipped (Tensor): ``(K, N, R, D)`` share of the network's ReLU units whose on/off
                    state flipped, NaN where it has none.
        stable_radius (Tensor): ``(K, N)`` largest radius with every error below
                    ``tolerance`` (see the module docstring).
        value (Tensor): ``(K, N)`` the target's output ``F(x)`` of each network.
        chosen (list[Tensor]): For each pathway, the ``(N,)`` sparsity of each example (what
                    ``"auto"`` chose, or the fixed value).
    """

    networks: List[str]
    sparsities: List[Optional[float]]
    radii: List[float]
    tolerance: float
    seed: int
    error: Tensor
    flipped: Tensor
    stable_radius: Tensor
    value: Tensor
    chosen: List[Tensor] = field(default_factory=list)

    @property
    def n_directions(self) -> int:
        return int(self.error.shape[3])

    def index(self, network: Any) -> int:
        r"""Position of a network, given by its label, its sparsity or its position."""
        if isinstance(network, str):
            if network not in self.networks:
                raise ValueError(f"network: {network!r} is not one of {self.networks}")
            return self.networks.index(network)
        if isinstance(network, int) and not isinstance(network, bool):
            if not -len(self.networks) <= network < len(self.networks):
                raise ValueError(f"network: position {network} out of range")
            return network % len(self.networks)
        for k, sparsity in enumerate(self.sparsities):
            if sparsity is not None and sparsity == network:
                return k
        raise ValueError(f"network: no network with sparsity {network!r}; have {self.sparsities}")

    def example_error(self) -> Tensor:
        r"""``(K, N, R)``: the median error over the defined directions (NaN if none)."""
        return torch.from_numpy(_nan_reduce(np.nanmedian, self.error.numpy(), axis=3))

    def n_undefined(self) -> Tensor:
        r"""``(K, R)``: how many (example, direction) errors are undefined."""
        return torch.isnan(self.error).sum(dim=(1, 3))

    def median_error(self) -> Tensor:
        r"""``(K, R)``: median over examples of :meth:`example_error`."""
        return torch.from_numpy(_nan_reduce(np.nanmedian, self.example_error().numpy(), axis=1))

    def flip_share(self) -> Tensor:
        r"""``(K, R)``: mean share of flipped units over examples and directions."""
        return torch.from_numpy(_nan_reduce(np.nanmean, self.flipped.numpy(), axis=(1, 3)))

    def ci(self, network: Any, n_boot: int = DEFAULT_N_BOOT, level: float = 0.95,
           seed: int = 0) -> List[Any]:
        r"""Bootstrap CI over examples of the mean of :meth:`example_error`, per radius."""
        return bootstrap_ci(self.example_error()[self.index(network)], n_boot, level, seed)

    def to_dict(self, per_example: bool = False) -> Dict[str, Any]:
        r"""JSON-ready summary per network: median and mean (with its 95% bootstrap CI) of the
        per-example error, flip share, undefined count and stable radius, per radius.
        ``per_example=True`` adds the ``(N, R)`` per-example errors and stable radii."""
        medians, undefined, flips = self.median_error(), self.n_undefined(), self.flip_share()
        networks = []
        for k, name in enumerate(self.networks):
            cis = self.ci(k)
            entry = {
                "network": name,
                "sparsity": self.sparsities[k],
                "median_error": jsonable(medians[k]),
                "mean_error": [jsonable(c.mean) for c in cis],
                "ci": [c.to_dict() for c in cis],
                "flip_share": jsonable(flips[k]),
                "n_undefined": undefined[k].tolist(),
                "stable_radius": bootstrap_ci(self.stable_radius[k]).to_dict(),
            }
            if per_example:
                entry["example_error"] = jsonable(self.example_error()[k])
                entry["stable_radius_per_example"] = jsonable(self.stable_radius[k])
            networks.append(entry)
        return {
            "protocol": "local_linearity",
            "radii": list(self.radii),
            "tolerance": self.tolerance,
            "seed": self.seed,
            "n_examples": int(self.error.shape[1]),
            "n_directions": self.n_directions,
            "networks": networks,
        }


def _nan_reduce(reduce, values: np.ndarray, axis) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices stay NaN
        return np.asarray(reduce(values, axis=axis), dtype=np.float64)


# ---------------------------------------------------------------------- argument checks


def check_radii(radii: Any) -> List[float]:
    r"""A non-empty, strictly increasing sequence of positive finite radii."""
    try:
        values = [float(r) for r in radii]
    except (TypeError, ValueError):
        raise ValueError(f"radii: expected a sequence of positive numbers, got {radii!r}") from None
    if not values:
        raise ValueError("radii: must not be empty")
    if any(not (math.isfinite(r) and r > 0) for r in values):
        raise ValueError(f"radii: every radius must be positive and finite, got {values}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"radii: must be strictly increasing, got {values}")
    return values


def _check_tolerance(tolerance: Any) -> float:
    if not is_number(tolerance) or not (math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"tolerance: must be a positive finite number, got {tolerance!r}")
    return float(tolerance)


# ---------------------------------------------------------------------- directions


def example_generator(seed: int, example: int) -> torch.Generator:
    r"""The CPU generator of example ``example``'s directions: seeded from ``(seed, example)``
    only, so an example's directions do not depend on the batch it comes in."""
    state = np.random.SeedSequence([seed, example]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def unit_directions(
    inputs: Tuple[Tensor, ...], n_directions: int, seed: int
) -> Tuple[Tensor, ...]:
    r"""``n_directions`` Gaussian directions per example, of unit L2 norm over all inputs of
    that example, in float64 on the CPU: one ``(N, D, *shape)`` tensor per input."""
    n = inputs[0].shape[0]
    per_input: List[List[Tensor]] = [[] for _ in inputs]
    for i in range(n):
        gen = example_generator(seed, i)
        draws = [torch.randn((n_directions,) + tuple(x.shape[1:]), generator=gen,
                             dtype=torch.float64) for x in inputs]
        norm = torch.sqrt(sum(d.flatten(1).pow(2).sum(1) for d in draws))
        for j, d in enumerate(draws):
            per_input[j].append(d / norm.view((-1,) + (1,) * (d.dim() - 1)))
    return tuple(torch.stack(ds) for ds in per_input)


# ---------------------------------------------------------------------- the measurement


def local_linearity(
    model: Any,
    inputs: Any,
    target: Any = None,
    radii: Sequence[float] = DEFAULT_RADII,
    sparsities: Sequence[float] = (0.85,),
    *,
    full_network: bool = True,
    n_directions: int = 8,
    tolerance: float = 0.05,
    seed: int = 0,
    batch_size: int = 256,
    additional_forward_args: Any = None,
    layers: Any = None,
    batch_dims: Any = None,
    **options: Any,
) -> LocalLinearityResult:
    r"""
    Relative error of the first-order prediction around each input, for the pathway (masks
    fixed) at each sparsity and for the full network; the share of ReLU units that flip; and
    the largest radius at which the error stays below ``tolerance``. See the module docstring
    for the exact definitions.

    Cost per network: one forward and backward pass at the inputs (the gradient), plus
    ``N x len(radii) x n_directions`` forward-only rows, ``batch_size`` rows per pass; and for
    the pathways one :meth:`~captum_prune.PrunedGradient.sweep` (one scoring pass for all
    sparsities).

    Args:

        model (nn.Module, callable or PrunedGradient): The model, or a
                    :class:`~captum_prune.PrunedGradient` whose layers and batch dimensions
                    define the neurons.
        inputs (Tensor or tuple[Tensor, ...]): The inputs, batch first.
        target (optional): The output whose linearity is measured, in Captum's forms; it also
                    selects the pathway.
        radii (sequence of float, optional): Increasing L2 radii (absolute, in input units).
                    Default: :data:`DEFAULT_RADII`
        sparsities (sequence, optional): One pathway per sparsity, a fraction or
                    ``"auto"`` (with ``output_change`` among ``options``); may be empty.
                    Default: ``(0.85,)``
        full_network (bool, optional): Also measure the unpruned network (first).
                    Default: True
        n_directions (int, optional): Random directions per example. Default: 8
        tolerance (float, optional): Error bound of the stable radius. Default: 0.05
        seed (int, optional): Seed of the directions. Default: 0
        batch_size (int, optional): Perturbed rows per forward pass (the results do not
                    depend on it). Default: 256
        additional_forward_args (optional): Extra forward arguments, as in Captum; tensors
                    whose first dimension is the batch are taken per example.
        layers, batch_dims (optional): As in :class:`~captum_prune.PrunedGradient`, when
                    ``model`` is not one.
        options: Further keyword options of :meth:`~captum_prune.PrunedGradient.pathway`
                    (``criterion``, ``selection``, ``threshold``, ...).

    Returns:
        :class:`LocalLinearityResult`

    Examples::

        >>> import torch
        >>> from captum_prune.evaluation import local_linearity
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(),
        ...                             torch.nn.Linear(16, 3)).double().eval()
        >>> x = torch.randn(4, 6, dtype=torch.float64)
        >>> result = local_linearity(model, x, target=0, radii=[1e-3, 1e-1, 10.0],
        ...                          sparsities=[0.5], n_directions=4)
        >>> result.networks
        ['full network', 'pathway 0.5']
        >>> result.error.shape  # networks x examples x radii x directions
        torch.Size([2, 4, 3, 4])
        >>> bool(result.median_error()[:, 0].max() < 1e-6)  # linear at a tiny radius
        True
    """
    from captum_prune import _engine, _safety
    from captum_prune.pruned_gradient import PrunedGradient

    radii = check_radii(radii)
    sparsities = _check_sparsities(sparsities)
    check_int("n_directions", n_directions, minimum=1)
    check_int("seed", seed, minimum=0)
    check_int("batch_size", batch_size, minimum=1)
    tolerance = _check_tolerance(tolerance)
    if not isinstance(full_network, bool):
        raise TypeError(f"full_network: expected a bool, got {type(full_network).__name__}")
    if not full_network and not sparsities:
        raise ValueError("sparsities: empty and full_network=False leaves nothing to measure")
    if isinstance(model, PrunedGradient):
        if layers is not None or batch_dims is not None:
            raise ValueError("layers: give layers and batch_dims to the PrunedGradient instead")
        method = model
    elif sparsities or layers is not None or _has_activations(model):
        method = PrunedGradient(model, layers=layers, batch_dims=batch_dims)
    else:  # the full network of a model without neuron layers (a linear model, say)
        _safety.check_forward_func(model)
        method = _NoLayers(model)
    _safety.check_grad_mode()
    directions = unit_directions(_safety.prepare_inputs(inputs), n_directions, seed)

    networks = ([FULL_NETWORK] if full_network else []) + [
        "pathway auto" if s == "auto" else f"pathway {s:g}" for s in sparsities]
    entries = ([0.0] if full_network else []) + list(sparsities)  # 0: every neuron kept
    cuda = sorted({x.device.index or 0 for x in _tensors(inputs) if x.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):  # a "random" criterion draws from it
        pathways: List[Any] = []
        if method.layers:
            _, pathways = method.sweep(inputs, target, additional_forward_args,
                                       sparsities=entries, return_pathways=True, **options)
        with _engine.session(
            method.forward_func, method.layers, method.layer_names, method.batch_dims, inputs,
            _engine.TargetObjective(target), additional_forward_args,
        ) as run:
            with torch.no_grad():
                run.forward(None)  # the layer calls, as every pass must make them
            calls = list(run.hooks.calls)
            masks_per_network = [p.masks for p in pathways] or [[]]
            measured = [_measure(run, calls, masks, radii, directions, batch_size)
                        for masks in masks_per_network]
    error = torch.stack([m[0] for m in measured])
    flipped = torch.stack([m[1] for m in measured])
    value = torch.stack([m[2] for m in measured])
    return LocalLinearityResult(
        networks=networks,
        sparsities=([None] if full_network else []) + list(sparsities),
        radii=radii,
        tolerance=tolerance,
        seed=seed,
        error=error,
        flipped=flipped,
        stable_radius=stable_radius(error, radii, tolerance),
        value=value,
        chosen=[p.sparsity for p in pathways][1 if full_network else 0:]
        if pathways else [],
    )


def _tensors(inputs: Any) -> Tuple[Tensor, ...]:
    return (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)


class _NoLayers:
    """The neuron layers of a model that has none: its full network has no ReLU units."""

    def __init__(self, forward_func: Any) -> None:
        self.forward_func = forward_func
        self.layers: List[nn.Module] = []
        self.layer_names: List[str] = []
        self.batch_dims: List[int] = []


def _has_activations(model: Any) -> bool:
    from captum_prune.layers import find_activation_layers

    return not isinstance(model, nn.Module) or bool(find_activation_layers(model))


def _check_sparsities(sparsities: Any) -> List[Any]:
    if isinstance(sparsities, (str, bytes)) or not hasattr(sparsities, "__iter__"):
        raise ValueError(
            f"sparsities: expected a sequence of numbers in [0, 1) or 'auto', got "
            f"{sparsities!r}")
    values = list(sparsities)
    for s in values:
        if s != "auto" and (not is_number(s) or not 0.0 <= s < 1.0):
            raise ValueError(
                f"sparsities: every sparsity must be in [0.0, 1.0) or 'auto', got {s!r}")
    return [s if s == "auto" else float(s) for s in values]


def stable_radius(error: Tensor, radii: Sequence[float], tolerance: float) -> Tensor:
    r"""``(K, N)`` from ``(K, N, R, D)`` errors: the largest radius up to which every defined
    error is at most ``tolerance`` (0.0 if the first defined radius fails, NaN if none is
    defined)."""
    violated = (error > tolerance).any(dim=3)  # NaN compares False: undefined never violates
    defined = (~torch.isnan(error)).any(dim=3)
    ok_so_far = torch.cumprod((~violated).to(torch.int64), dim=2).bool()
    radius = torch.tensor(radii, dtype=torch.float64)
    usable = ok_so_far & defined
    best = torch.where(usable, radius, torch.zeros_like(radius)).amax(dim=2)
    return torch.where(defined.any(dim=2), best, torch.full_like(best, math.nan))


def _measure(
    run: Any,
    calls: List[int],
    masks: List[Tensor],
    radii: List[float],
    directions: Tuple[Tensor, ...],
    batch_size: int,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Errors ``(N, R, D)``, flip shares ``(N, R, D)`` and ``F(x)`` ``(N,)`` of the network
    with the keep-``masks`` (batch first) held fixed."""
    from captum_prune import _engine

    n, n_radii, n_dirs = run.num_examples, len(radii), directions[0].shape[1]
    gradients = _engine.pruned_pass(run, calls, masks).gradients
    units = _Units(run, calls, masks)
    value_x = units.forward(run, torch.arange(n), record=True)[0]
    grads64 = [g.detach().double().cpu() for g in gradients]
    x64 = [x.detach().double().cpu() for x in run.inputs]
    radius = torch.tensor(radii, dtype=torch.float64)
    total = n * n_radii * n_dirs
    error = torch.empty(total, dtype=torch.float64)
    flipped = torch.empty(total, dtype=torch.float64)
    for start in range(0, total, batch_size):
        rows = torch.arange(start, min(start + batch_size, total))
        example = rows // (n_radii * n_dirs)
        r = radius[(rows // n_dirs) % n_radii]
        d = rows % n_dirs
        perturbed, linear = [], torch.zeros(rows.numel(), dtype=torch.float64)
        for x, x_64, g_64, u in zip(run.inputs, x64, grads64, directions):
            shape = (-1,) + (1,) * (x.dim() - 1)
            moved = (x_64[example] + r.view(shape) * u[example, d]).to(x.dtype)
            step = moved.double() - x_64[example]  # the step the model really gets
            linear += (g_64[example] * step).flatten(1).sum(1)
            perturbed.append(moved.to(x.device))
        rows_run = run.rows(example).with_inputs(tuple(perturbed))
        value, share = units.forward(rows_run, example, record=False)
        change = value - value_x[example]
        residual = (change - linear).abs()
        error[rows] = torch.where(change != 0, residual / change.abs(),
                                  torch.full_like(residual, math.nan))
        flipped[rows] = share
    shape = (n, n_radii, n_dirs)
    return error.view(shape), flipped.view(shape), value_x


class _Units:
    """The ReLU units of one network (the kept ones where there are masks): their on/off
    state at the inputs, and how many of them differ at perturbed rows."""

    def __init__(self, run: Any, calls: List[int], masks: List[Tensor]) -> None:
        self.calls, self.masks = calls, masks
        self.relu = [isinstance(run.hooks.layers[index], RELU_TYPES) for index in calls]
        self.dims = [run.hooks.batch_dims[index] for index in calls]
        self.reference: List[Optional[Tensor]] = [None] * len(calls)
        self.counted = torch.zeros(run.num_examples, dtype=torch.float64)

    def forward(self, run: Any, example: Tensor, record: bool) -> Tuple[Tensor, Tensor]:
        """``F`` (float64, CPU) of ``run``'s rows, pruned by the masks of their examples
        ``example``, and the share of counted units whose state differs from the inputs'."""
        from captum_prune import _engine

        masks = [m.index_select(0, example.to(m.device)) for m in self.masks]
        flips = torch.zeros(example.numel(), dtype=torch.float64)

        def observe(call: int, output: Tensor) -> None:
            if not self.relu[call]:
                return
            on = output.movedim(self.dims[call], 0) > 0
            kept = masks[call] if masks else None
            if record:
                self.reference[call] = on
                self.counted += (kept.flatten(1).sum(1) if kept is not None
                                 else torch.full((on.shape[0],), on[0].numel())).double().cpu()
                return
            differ = on != self.reference[call].index_select(0, example.to(on.device))
            if kept is not None:
                differ &= kept
            flips.add_(differ.flatten(1).sum(1).double().cpu())

        _, values = _engine.masked_forward(run, self.calls, masks, observe=observe)
        counted = self.counted[example]
        share = torch.where(counted > 0, flips / counted.clamp(min=1),
                            torch.full_like(flips, math.nan))
        return values.double().cpu(), share
