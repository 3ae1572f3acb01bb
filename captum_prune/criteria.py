r"""Neuron selection criteria: how much each neuron contributes to the target, per example.

Each criterion runs the unpruned model through :class:`~captum_prune.hooks.NeuronHooks` and
returns :class:`NeuronScores`: one row per example with the scores of every neuron of every
layer call, side by side in forward order.

- ``"taylor"`` (the paper's NeuronMCT): ``|a * dy/da|``, one forward and one backward pass.
- ``"integrated_gradients"`` (the paper's NeuronIntGrad, done right): for each layer *call*,
  Integrated Gradients of the target with respect to that call's output with a zero baseline,
  ``|a * mean_alpha dy/d(alpha a)|`` on a proper grid over ``[0, 1]``. Costs
  ``calls x n_steps`` forward and backward passes.
- ``"random"``: uniform random scores, the control baseline (no backward pass).
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import Tensor

from captum_prune._forward import forward_with_target
from captum_prune.hooks import NeuronHooks

CRITERIA = ("taylor", "integrated_gradients", "random")


@dataclass
class NeuronScores:
    r"""Scores of every neuron for a batch, and what the scoring pass saw."""

    #: ``(N, total)`` scores, layer calls side by side in forward order.
    scores: Tensor
    #: Shape of each layer call's output (batch dimension included).
    shapes: List[torch.Size]
    #: Layer index of each call, in forward order (see ``NeuronHooks.calls``).
    calls: List[int]
    #: ``"<module>#<call>"`` for each call.
    call_names: List[str]
    #: The unpruned model output and its target values per example.
    output: Tensor
    target_values: Tensor
    #: The unpruned layer outputs (detached), one per call.
    activations: List[Tensor]

    @property
    def sizes(self) -> List[int]:
        return [shape[1:].numel() for shape in self.shapes]

    def split(self, flat: Tensor) -> List[Tensor]:
        r"""Views of an ``(N, total)`` tensor, one per call, in that call's shape."""
        views, start = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            views.append(flat[:, start : start + size].view(shape))
            start += size
        return views


def _recording_pass(
    forward_func, hooks: NeuronHooks, inputs, target, additional_forward_args
) -> Tuple[Tensor, Tensor, List[Tensor]]:
    """Forward through the unpruned model, keeping every layer output as it left the layer.

    The outputs are shared with the rest of the network, not copied (a copy of every
    activation would cost time and memory). If an op further down changes one of them in
    place (a residual ``+=`` on a GELU output, say), its version counter tells, and the pass
    is run again with the network getting copies, so that what is scored is never overwritten.
    """
    for give_copies in (False, True):
        kept: List[Tensor] = []
        versions: List[int] = []

        def record(call: int, output: Tensor) -> Optional[Tensor]:
            kept.append(output)
            versions.append(output._version)
            return output.clone() if give_copies else None

        with hooks.forward_pass(record):
            output, values = forward_with_target(
                forward_func, inputs, target, additional_forward_args
            )
        if all(t._version == v for t, v in zip(kept, versions)):
            break
    _check_calls(hooks, inputs[0].shape[0], kept)
    return output, values, kept


def _check_calls(hooks: NeuronHooks, num_examples: int, outputs: List[Tensor]) -> None:
    if not hooks.calls:
        raise RuntimeError(
            f"None of the {len(hooks.layers)} neuron layers ran during the forward pass, so "
            "nothing could be pruned. A traced, scripted or torch.compile'd model does not call "
            "module hooks, and functional activations (F.relu) are not modules: pass the eager "
            "nn.Module, or layers=[...] with modules that run in its forward."
        )
    for call, output in enumerate(outputs):
        if output.dim() == 0 or output.shape[0] != num_examples:
            raise ValueError(
                f"layers: call {hooks.call_names()[call]} returned shape "
                f"{tuple(output.shape)}, whose first dimension is not the batch "
                f"({num_examples}); only layers with per-example outputs can be pruned"
            )


def check_same_calls(expected: List[int], hooks: NeuronHooks) -> None:
    r"""Raises if a later pass called the neuron layers differently from the scoring pass."""
    if hooks.calls != expected:
        raise RuntimeError(
            f"The model called the neuron layers {len(hooks.calls)} times in a later pass but "
            f"{len(expected)} times while scoring (or in another order). PrunedGradient needs "
            "a forward whose layer calls do not depend on the values flowing through it."
        )


def _score_buffer(activations: List[Tensor]) -> Tensor:
    dtype = activations[0].dtype
    for act in activations[1:]:
        dtype = torch.promote_types(dtype, act.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    total = sum(act[0].numel() for act in activations)
    # Every criterion writes every score (taylor zeroes what gets no gradient), so no memset.
    return torch.empty(
        activations[0].shape[0], total, dtype=dtype, device=activations[0].device
    )


def _scores_from(
    hooks, output, values, activations, scores: Tensor
) -> NeuronScores:
    return NeuronScores(
        scores=scores,
        shapes=[act.shape for act in activations],
        calls=list(hooks.calls),
        call_names=hooks.call_names(),
        output=output.detach(),
        target_values=values.detach(),
        activations=[act.detach() for act in activations],
    )


def _score_writer(act: Tensor, view: Tensor, written: List[bool], call: int) -> Callable:
    def write(grad: Tensor) -> None:
        torch.mul(act, grad, out=view).abs_()
        written[call] = True

    return write


def taylor_scores(
    forward_func, hooks: NeuronHooks, inputs, target, additional_forward_args, **_: Any
) -> NeuronScores:
    r"""``|a * dy/da|`` for every neuron: one forward and one backward pass."""
    output, values, acts = _recording_pass(
        forward_func, hooks, inputs, target, additional_forward_args
    )
    scores = _score_buffer(acts)
    result = _scores_from(hooks, output, values, acts, scores)
    views = result.split(scores)
    written = [False] * len(acts)
    if values.requires_grad:
        for call, (act, view) in enumerate(zip(acts, views)):
            if act.requires_grad:
                # Write each score as soon as its gradient exists, so the gradients of all
                # layers never have to be held at the same time.
                act.register_hook(_score_writer(act.detach(), view, written, call))
        torch.autograd.grad(values.sum(), inputs, allow_unused=True)
    for view, done in zip(views, written):
        if not done:  # no gradient reached this call: it cannot change the target
            view.zero_()
    return result


def random_scores(
    forward_func, hooks: NeuronHooks, inputs, target, additional_forward_args, **_: Any
) -> NeuronScores:
    r"""Uniform random scores: prunes a random subset (the control baseline)."""
    with torch.no_grad():
        output, values, acts = _recording_pass(
            forward_func, hooks, inputs, target, additional_forward_args
        )
    scores = _score_buffer(acts)
    scores.uniform_()
    return _scores_from(hooks, output, values, acts, scores)


def _take_target(target: Any, rows: Tensor) -> Any:
    """The target for the examples ``rows``: per-example targets are indexed, others shared."""
    if isinstance(target, Tensor) and target.numel() > 1:
        return target.index_select(0, rows.to(target.device))
    if isinstance(target, list):
        return [target[i] for i in rows.tolist()]
    return target


def _take_args(args: Any, rows: Tensor, num_examples: int) -> Any:
    """Additional forward args for the examples ``rows``: as in Captum, tensors whose first
    dimension is the batch are per-example, everything else is passed unchanged."""

    def take(arg: Any) -> Any:
        if isinstance(arg, Tensor) and arg.dim() > 0 and arg.shape[0] == num_examples:
            return arg.index_select(0, rows.to(arg.device))
        return arg

    return tuple(take(a) for a in args) if isinstance(args, tuple) else take(args)


def integrated_gradient_scores(
    forward_func,
    hooks: NeuronHooks,
    inputs,
    target,
    additional_forward_args,
    n_steps: int = 10,
    method: str = "gausslegendre",
    internal_batch_size: Optional[int] = None,
    **_: Any,
) -> NeuronScores:
    r"""Integrated Gradients of the target with respect to each layer call's output.

    For call ``l`` only that call's output is scaled by ``alpha`` (the rest of the network is
    recomputed downstream of it), as in the paper's NeuronIntGrad, but on ``method``'s grid
    over ``[0, 1]`` and with every call of a reused module scored on its own. The ``alpha``
    steps of all examples are batched together, ``internal_batch_size`` rows at a time.
    """
    with torch.no_grad():
        output, values, acts = _recording_pass(
            forward_func, hooks, inputs, target, additional_forward_args
        )
    calls = list(hooks.calls)
    scores = _score_buffer(acts)
    result = _scores_from(hooks, output, values, acts, scores)
    step_sizes_fn, alphas_fn = approximation_parameters(method)
    device = acts[0].device
    alphas = torch.tensor(alphas_fn(n_steps), dtype=scores.dtype, device=device)
    weights = torch.tensor(step_sizes_fn(n_steps), dtype=scores.dtype, device=device)
    num_examples = inputs[0].shape[0]
    rows = n_steps * num_examples
    chunk = internal_batch_size or rows
    detached = tuple(x.detach() for x in inputs)

    for call, (act, view) in enumerate(zip(acts, result.split(scores))):
        path_gradient = torch.zeros_like(act, dtype=scores.dtype)
        for start in range(0, rows, chunk):
            row_ids = torch.arange(start, min(rows, start + chunk), device=device)
            examples, steps = row_ids % num_examples, row_ids // num_examples
            scaled: List[Tensor] = []

            def scale(index: int, out: Tensor, call=call, steps=steps) -> Optional[Tensor]:
                if index != call:
                    return None
                shape = (-1,) + (1,) * (out.dim() - 1)
                z = (out.detach() * alphas[steps].view(shape).to(out.dtype)).requires_grad_()
                scaled.append(z)
                return z.clone()  # a leaf must not reach an in-place op downstream

            with hooks.forward_pass(scale):
                _, chunk_values = forward_with_target(
                    forward_func,
                    tuple(x.index_select(0, examples.to(x.device)) for x in detached),
                    _take_target(target, examples),
                    _take_args(additional_forward_args, examples, num_examples),
                )
            check_same_calls(calls, hooks)
            (grad,) = torch.autograd.grad(
                chunk_values.sum(), scaled, allow_unused=True
            )
            if grad is not None:
                shape = (-1,) + (1,) * (grad.dim() - 1)
                path_gradient.index_add_(
                    0, examples, grad.to(scores.dtype) * weights[steps].view(shape)
                )
        torch.mul(act.to(scores.dtype), path_gradient, out=view).abs_()
    return result


SCORERS: Dict[str, Callable[..., NeuronScores]] = {
    "taylor": taylor_scores,
    "integrated_gradients": integrated_gradient_scores,
    "random": random_scores,
}
