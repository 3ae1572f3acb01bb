r"""The steps of one pruned-gradient call, as functions over typed values.

:class:`~captum_prune.PrunedGradient` is these steps in a row; layer and neuron attributions,
several sparsities from one scoring pass, a per-example sparsity found by bisection and the
local linearity check reuse them::

    with session(model, layers, names, batch_dims, inputs, TargetObjective(target)) as run:
        scored = score(run, options)                           # (a) scoring pass
        masks = select_masks(scored.scores, 0.9)               # (b) selection, batch first
        result = pruned_pass(run, scored.calls, masks)         # (c) pruned pass + gradient
        output, values = masked_forward(run, scored.calls, masks)  # forwards only

Everything runs inside :func:`session`: autograd on, the inputs prepared (aliases of the
caller's tensors), and one :class:`~captum_prune.hooks.NeuronHooks` that owns every hook (the
neuron layers', and those of the :class:`~captum_prune.hooks.Capture` modules) and removes
them on exit. *What* is explained is an :class:`Objective`: per-example values read from one
forward, by default Captum's target on the model output (:class:`TargetObjective`), or a
function of what a captured module produced (:class:`CapturedObjective`, e.g. one neuron of a
layer's output). Gradients are taken with respect to the inputs or to the tensors a capture
recorded (Captum's layer-attribution semantics).
"""
import contextlib
from dataclasses import dataclass, field, replace
from typing import (
    Any,
    Callable,
    ContextManager,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
from torch import Tensor, nn

from captum_prune import _cpu, _fast, _safety
from captum_prune._captum import TargetType, format_additional_forward_args
from captum_prune._forward import (
    plain_target,
    run_model,
    select_target_values,
    validate_target,
)
from captum_prune.criteria import CRITERION_RULES, NeuronScores
from captum_prune.hooks import Capture, Captured, NeuronHooks, Transform
from captum_prune.options import PruningOptions
from captum_prune.selection import Sparsity, select

#: The steps of one call, labelled for ``torch.profiler`` as ``"PrunedGradient.<step>"``:
#: scoring pass (forward and backward), selection of the pathway, pass through the pruned
#: network (forward and backward).
PHASES = ("score", "select", "pruned_pass")


def phase(name: str) -> ContextManager:
    r"""A ``torch.profiler`` range for one step of the method, while a profiler runs."""
    if torch._C._autograd._profiler_enabled():
        return torch.profiler.record_function(f"PrunedGradient.{name}")
    return contextlib.nullcontext()


# ---------------------------------------------------------------- objectives


class Objective:
    r"""The per-example values a call explains, read from one forward pass."""

    def values(
        self, output: Tensor, captured: List[List[Captured]], num_examples: int
    ) -> Tensor:
        r"""``(N,)`` values from the model ``output`` and what the captures recorded in this
        pass (``captured[capture][call]``, a tuple of tensors per call)."""
        raise NotImplementedError

    def rows(self, rows: Tensor) -> "Objective":
        r"""The objective for the sub-batch of examples ``rows`` (the default: itself)."""
        return self


def _take_target(target: Any, rows: Tensor) -> Any:
    """The target for the examples ``rows``: per-example targets are indexed, others shared."""
    if isinstance(target, Tensor) and target.numel() > 1:
        return target.index_select(0, rows.to(target.device))
    if isinstance(target, list):
        return [target[i] for i in rows.tolist()]
    return target


@dataclass(frozen=True)
class TargetObjective(Objective):
    r"""Captum's ``target`` on the model output (checked by
    :func:`captum_prune._forward.validate_target`)."""

    target: TargetType = None
    #: The ``(output shape, N)`` already checked (both passes of a call see the same).
    _checked: list = field(default_factory=list, compare=False, repr=False)
    #: The target as it is selected by, once checked (see :func:`plain_target`).
    _plain: list = field(default_factory=list, compare=False, repr=False)

    def values(self, output, captured, num_examples):
        key = (output.shape, num_examples)
        if key not in self._checked:
            validate_target(self.target, output, num_examples)
            self._checked.append(key)
            if not self._plain:
                self._plain.append(plain_target(self.target))
        return select_target_values(output, self._plain[0], num_examples)

    def rows(self, rows):
        return TargetObjective(_take_target(self.target, rows))


@dataclass(frozen=True)
class CapturedObjective(Objective):
    r"""Values computed from what capture ``capture`` recorded: ``select(tensors)`` of its call
    ``call`` (-1: the last call, as Captum's layer methods keep), giving one value per example
    (``(N,)`` or ``(N, 1, ...)``). The module must run in every pass.
    """

    capture: int
    select: Callable[[Captured], Tensor]
    call: int = -1

    def values(self, output, captured, num_examples):
        recorded = captured[self.capture]
        if not recorded:
            raise RuntimeError(
                "The recorded module did not run in the forward pass, so its objective could "
                "not be read; choose a module that runs in forward_func's forward."
            )
        values = self.select(recorded[self.call])
        if (
            not isinstance(values, Tensor)
            or values.dim() == 0
            or values.shape[0] != num_examples
            or values[0].numel() != 1
        ):
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(
                f"the objective must give one value per example ({num_examples}), got {shape}"
            )
        return values.reshape(num_examples)


# ---------------------------------------------------------------- one call


def _take_args(args: Any, rows: Tensor, num_examples: int) -> Any:
    """Additional forward args for the examples ``rows``: as in Captum, tensors whose first
    dimension is the batch are per-example, everything else is passed unchanged."""

    def take(arg: Any) -> Any:
        if isinstance(arg, Tensor) and arg.dim() > 0 and arg.shape[0] == num_examples:
            return arg.index_select(0, rows.to(arg.device))
        return arg

    return tuple(take(a) for a in args) if isinstance(args, tuple) else take(args)


@dataclass
class Run:
    r"""The fixed parts of one call: the model, its hooks, the prepared inputs, the extra
    forward arguments (as a tuple or ``None``) and the objective."""

    forward_func: Callable
    hooks: NeuronHooks
    inputs: Tuple[Tensor, ...]
    additional_forward_args: Optional[Tuple[Any, ...]]
    objective: Objective

    @property
    def num_examples(self) -> int:
        return self.inputs[0].shape[0]

    def forward(self, transform: Optional[Transform]) -> Tuple[Tensor, Tensor]:
        r"""One forward with ``transform`` applied to every layer call; returns the model
        output and the objective's ``(N,)`` values. Raises what the hooks saw go wrong."""
        return self.hooks.forward_pass(transform, self._forward)

    def _forward(self) -> Tuple[Tensor, Tensor]:
        output = run_model(self.forward_func, self.inputs, self.additional_forward_args)
        return output, self.objective.values(output, self.hooks.captured, self.num_examples)

    def backward(
        self, values: Tensor, wrt: Sequence[Tensor], grad_kwargs: Optional[dict] = None
    ) -> Tuple[Optional[Tensor], ...]:
        r"""``d values.sum() / d wrt`` (``None`` where unused; ``grad_kwargs``: more keyword
        arguments of ``torch.autograd.grad``); then raises what the hooks saw go wrong during
        the backward (a neuron layer run by another thread)."""
        kwargs = {"allow_unused": True, **(grad_kwargs or {})}
        grads = torch.autograd.grad(values.sum(), list(wrt), **kwargs)
        self.hooks.raise_error()
        return grads

    def rows(self, rows: Tensor) -> "Run":
        r"""The same call on the examples ``rows`` (inputs detached)."""
        return replace(
            self,
            inputs=tuple(x.detach().index_select(0, rows.to(x.device)) for x in self.inputs),
            additional_forward_args=_take_args(
                self.additional_forward_args, rows, self.num_examples
            ),
            objective=self.objective.rows(rows),
        )

    def with_inputs(self, inputs: Any, floating: bool = True) -> "Run":
        r"""The same call on other inputs of the same batch size (e.g. ``x + delta``),
        prepared as :func:`session` prepares them."""
        prepared = _safety.prepare_inputs(inputs, floating=floating)
        if prepared[0].shape[0] != self.num_examples:
            raise ValueError(
                f"inputs: expected {self.num_examples} examples, got {prepared[0].shape[0]}"
            )
        return replace(self, inputs=prepared)


@contextlib.contextmanager
def session(
    forward_func: Callable,
    layers: Sequence[nn.Module],
    names: Sequence[str],
    batch_dims: Sequence[int],
    inputs: Any,
    objective: Objective,
    additional_forward_args: Any = None,
    captures: Sequence[Capture] = (),
    floating: bool = True,
) -> Iterator[Run]:
    r"""The context of one call: checks, autograd on, inputs prepared, hooks registered (and
    removed, and train-mode buffers restored, on exit).

    ``floating=False`` lets integer inputs through (token ids, when gradients are taken with
    respect to a captured layer instead of the inputs); floating-point inputs always become
    aliases that require grad.
    """
    _safety.check_grad_mode()
    prepared = _safety.prepare_inputs(inputs, floating=floating)
    args = format_additional_forward_args(additional_forward_args)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.enable_grad())
        stack.enter_context(_cpu.workers())
        hooks = stack.enter_context(NeuronHooks(layers, names, batch_dims, captures))
        yield Run(forward_func, hooks, prepared, args, objective)


# ---------------------------------------------------------------- (a) scoring


def score(run: Run, options: PruningOptions, keep_activations: bool = False) -> NeuronScores:
    r"""The scoring pass of ``options.criterion``: every neuron's score per layer call, the
    batch first (also for ``batch_dims`` layers), and what the pass saw (calls, outputs,
    objective values; the activations with ``keep_activations``)."""
    criterion = CRITERION_RULES.get(options.criterion)(options)
    if not criterion.supports_batch_dims and any(run.hooks.batch_dims):
        raise ValueError(
            f"criterion: {options.criterion!r} needs batch-first layers (batch_dims 0); use "
            "'taylor' or 'random' with sequence-first layers"
        )
    with phase("score"):
        scored = criterion.score(run, keep_activations)
    _safety.warn_if_training(run.hooks)
    dims = call_dims(run, scored.calls)
    if any(dims):
        scored.scores = _batch_first(scored.scores, dims)
        scored.activations = _batch_first(scored.activations, dims)
    return scored


def call_dims(run: Run, calls: Sequence[int]) -> List[int]:
    r"""The batch dimension of each layer call's output."""
    return [run.hooks.batch_dims[index] for index in calls]


def _batch_first(tensors: List[Tensor], dims: List[int]) -> List[Tensor]:
    """Each call's tensor with its batch dimension moved to the front."""
    if not tensors:
        return tensors
    return [t.movedim(d, 0).contiguous() if d else t for t, d in zip(tensors, dims)]


# ---------------------------------------------------------------- (b) selection


def select_masks(
    scores: Sequence[Tensor],
    sparsity: Sparsity,
    selection: str = "global",
    threshold: str = "reference",
) -> List[Tensor]:
    r"""Keep-masks (bool, batch first, one per layer call) for batch-first ``scores``.

    ``sparsity`` is one fraction in ``[0, 1)`` or a ``(N,)`` tensor of them, one per example.
    """
    if isinstance(sparsity, Tensor):
        values = sparsity.detach()
        if values.is_floating_point() and not bool(((values >= 0) & (values < 1)).all()):
            raise ValueError("sparsity: every per-example value must be in [0.0, 1.0)")
        if not values.is_floating_point():
            raise TypeError(f"sparsity: a tensor sparsity must be floating point, got "
                            f"{values.dtype}")
    with phase("select"):
        return list(select(list(scores), sparsity, selection, threshold))


# ---------------------------------------------------------------- (c) pruned passes


def _mask_transform(run: Run, masks: List[Tensor]) -> Transform:
    hooks = run.hooks

    def apply_mask(call: int, output: Tensor) -> Optional[Tensor]:
        if call >= len(masks) or masks[call].shape != output.shape:
            raise RuntimeError(
                f"The model's layer call {call} changed shape between the scoring and the "
                "gradient pass; PrunedGradient needs a forward whose layer calls do not depend "
                "on the values flowing through it."
            )
        index = hooks.calls[call]
        if _fast.can_mask_in_place(
            hooks.layers[index], output, hooks.hook_ids[index], hooks.foreign_hooks
        ):
            _fast.mask_in_place(output, masks[call])
            return None
        return output * masks[call]

    return apply_mask


def _layer_masks(run: Run, calls: Sequence[int], masks: Sequence[Tensor]) -> List[Tensor]:
    dims = call_dims(run, calls)
    if len(masks) != len(calls):
        raise ValueError(
            f"masks: got {len(masks)} masks for {len(calls)} layer calls; give one per call"
        )
    if any(dims):
        return [m.movedim(0, d) for m, d in zip(masks, dims)]
    return list(masks)


@dataclass
class PrunedPass:
    r"""What the pass through the pruned network gave (all detached)."""

    #: The model output and the objective's ``(N,)`` values.
    output: Tensor
    values: Tensor
    #: ``wrt="inputs"``: one gradient per input (zeros where unused). ``wrt=<capture index>``:
    #: per call of that module, a tuple with the gradient of each recorded tensor.
    gradients: Tuple[Any, ...]
    #: ``wrt=<capture index>``: what the module recorded, per call (as ``gradients``).
    activations: Tuple[Captured, ...] = field(default_factory=tuple)


Wrt = Union[str, int, Tuple[int, ...], None]


def pruned_pass(
    run: Run, calls: Sequence[int], masks: Sequence[Tensor], wrt: Wrt = "inputs",
    grad_kwargs: Optional[dict] = None,
) -> PrunedPass:
    r"""Forward with every layer call multiplied by its fixed keep-mask (batch first, from
    :func:`select_masks`), then the gradient of the objective with respect to ``wrt``:
    ``"inputs"``, the index of one of the session's captures (Captum's
    ``LayerGradientXActivation`` semantics: the gradient with respect to what that module
    produced or received, and that value), a tuple of capture indices (one backward for all;
    ``gradients`` and ``activations`` then hold one entry per index, each as for one index),
    or ``None`` (no backward). ``grad_kwargs``: more keyword arguments of
    ``torch.autograd.grad``.
    """
    layer_masks = _layer_masks(run, calls, masks)
    with phase("pruned_pass"):
        output, values = run.forward(_mask_transform(run, layer_masks))
        run.hooks.check_same_calls(list(calls))
        if wrt is None:
            return PrunedPass(output.detach(), values.detach(), ())
        if wrt == "inputs":
            return _input_gradients(run, output, values, grad_kwargs)
        return _captured_gradients(run, output, values, wrt, grad_kwargs)


def _input_gradients(
    run: Run, output: Tensor, values: Tensor, grad_kwargs: Optional[dict] = None
) -> PrunedPass:
    if values.requires_grad:
        wanted = [x for x in run.inputs if x.requires_grad]
        found = iter(run.backward(values, wanted, grad_kwargs))
        grads = [next(found) if x.requires_grad else None for x in run.inputs]
    else:
        grads = [None] * len(run.inputs)
    gradients = tuple(
        torch.zeros_like(x).detach() if g is None else g for x, g in zip(run.inputs, grads)
    )
    return PrunedPass(output.detach(), values.detach(), gradients)


def _captured_gradients(
    run: Run, output: Tensor, values: Tensor, capture: Union[int, Tuple[int, ...]],
    grad_kwargs: Optional[dict] = None,
) -> PrunedPass:
    several = isinstance(capture, tuple)
    for index in capture if several else (capture,):
        if isinstance(index, bool) or not isinstance(index, int) or not (
            0 <= index < len(run.hooks.captures)
        ):
            raise ValueError(
                f"wrt: expected 'inputs', None, a capture index or a tuple of them, got "
                f"{capture!r}"
            )
    recorded = [run.hooks.captured[index] for index in (capture if several else (capture,))]
    flat = [t for calls in recorded for call in calls for t in call]
    differentiable = [t for t in flat if t.requires_grad]
    found = iter(run.backward(values, differentiable, grad_kwargs)
                 if values.requires_grad and differentiable else [None] * len(differentiable))
    grads = [next(found) if t.requires_grad else None for t in flat]
    grads = [torch.zeros_like(t).detach() if g is None else g for t, g in zip(flat, grads)]
    gradients, activations, at = [], [], 0
    for calls in recorded:
        per_call, acts = [], []
        for call in calls:
            per_call.append(tuple(grads[at:at + len(call)]))
            acts.append(tuple(t.detach() for t in call))
            at += len(call)
        gradients.append(tuple(per_call))
        activations.append(tuple(acts))
    if not several:
        return PrunedPass(output.detach(), values.detach(), gradients[0], activations[0])
    return PrunedPass(output.detach(), values.detach(), tuple(gradients), tuple(activations))


def masked_forward(
    run: Run,
    calls: Sequence[int],
    masks: Sequence[Tensor],
    observe: Optional[Callable[[int, Tensor], None]] = None,
) -> Tuple[Tensor, Tensor]:
    r"""A forward through the pruned network with no backward and no autograd graph (for a
    bisection over sparsities, or the pruned network at other inputs): the model output and
    the objective's ``(N,)`` values, detached. ``observe(call, output)``, if given, sees each
    layer call's output (in the layer's own layout) before its mask is applied; it must not
    keep or change it (the mask may then be applied in place)."""
    layer_masks = _layer_masks(run, calls, masks)
    transform = _mask_transform(run, layer_masks)
    if observe is not None:
        transform = _observed(observe, transform)
    with torch.no_grad():
        output, values = run.forward(transform)
    run.hooks.check_same_calls(list(calls))
    return output.detach(), values.detach()


def _observed(observe: Callable[[int, Tensor], None], transform: Transform) -> Transform:
    def observed(call: int, output: Tensor) -> Optional[Tensor]:
        observe(call, output)
        return transform(call, output)

    return observed
