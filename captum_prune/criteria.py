r"""Neuron selection criteria: how much each neuron contributes to the target, per example.

Each criterion runs the unpruned model through :class:`~captum_prune.hooks.NeuronHooks` and
returns :class:`NeuronScores`: the score of every neuron, one tensor per layer call in forward
order, each of that call's output shape (batch first).

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

from captum_prune import _fast
from captum_prune._forward import forward_with_target
from captum_prune.hooks import NeuronHooks
from captum_prune.selection import promoted_dtype

CRITERIA = ("taylor", "integrated_gradients", "random")


@dataclass
class NeuronScores:
    r"""Scores of every neuron for a batch, and what the scoring pass saw."""

    #: One score tensor per layer call, in forward order, of the call's output shape.
    scores: List[Tensor]
    #: Layer index of each call, in forward order (see ``NeuronHooks.calls``).
    calls: List[int]
    #: ``"<module>#<call>"`` for each call.
    call_names: List[str]
    #: The unpruned model output and its target values per example.
    output: Tensor
    target_values: Tensor
    #: The unpruned layer outputs (detached), one per call; empty when the criterion was asked
    #: not to keep them (their memory may then hold the scores).
    activations: List[Tensor]


def _recording_pass(
    forward_func,
    hooks: NeuronHooks,
    inputs,
    target,
    additional_forward_args,
    eligible: Optional[List[bool]] = None,
) -> Tuple[Tensor, Tensor, List[Tensor]]:
    """Forward through the unpruned model, keeping every layer output as it left the layer.

    The outputs are shared with the rest of the network, not copied (a copy of every
    activation would cost time and memory). If an op further down changes one of them in
    place (a residual ``+=`` on a GELU output, say), its version counter tells, and the pass
    is run again with the network getting copies, so that what is scored is never overwritten.
    With ``eligible`` (a list), whether each call's output may take the in-place score
    shortcut (:class:`captum_prune._fast.ScoreInPlace`) is appended to it.
    """
    for give_copies in (False, True):
        kept: List[Tensor] = []
        versions: List[int] = []
        if eligible is not None:
            eligible.clear()

        def record(call: int, output: Tensor) -> Optional[Tensor]:
            kept.append(output)
            versions.append(output._version)
            if eligible is not None:
                index = hooks.calls[call]
                eligible.append(
                    not give_copies
                    and _fast.ScoreInPlace.applies(
                        hooks.layers[index], output, hooks.hook_ids[index]
                    )
                )
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
        dim = hooks.batch_dims[hooks.calls[call]]
        if output.dim() <= dim or output.shape[dim] != num_examples:
            raise ValueError(
                f"layers: call {hooks.call_names()[call]} returned shape "
                f"{tuple(output.shape)}, whose dimension {dim} is not the batch "
                f"({num_examples} examples); only layers with per-example outputs can be "
                "pruned. For sequence-first layers (S, N, E) pass batch_dims=1 (or one "
                "batch dimension per layer) to PrunedGradient."
            )


def check_same_calls(expected: List[int], hooks: NeuronHooks) -> None:
    r"""Raises if a later pass called the neuron layers differently from the scoring pass."""
    if hooks.calls != expected:
        raise RuntimeError(
            f"The model called the neuron layers {len(hooks.calls)} times in a later pass but "
            f"{len(expected)} times while scoring (or in another order). PrunedGradient needs "
            "a forward whose layer calls do not depend on the values flowing through it."
        )


def _score_dtype(activations: List[Tensor]) -> torch.dtype:
    """One floating dtype for all scores, so that they are compared on one scale: at least
    float32, so that ``|a * g|`` of half-precision layers neither underflows nor ties."""
    dtype = promoted_dtype(activations)
    if not dtype.is_floating_point:
        return torch.get_default_dtype()
    return torch.promote_types(dtype, torch.float32)


def _score_tensors(activations: List[Tensor]) -> List[Tensor]:
    """An uninitialised contiguous score tensor per call (every criterion writes every
    score)."""
    dtype = _score_dtype(activations)
    return [torch.empty(act.shape, dtype=dtype, device=act.device) for act in activations]


def _scores_from(
    hooks, output, values, activations: List[Tensor], scores: List[Tensor]
) -> NeuronScores:
    return NeuronScores(
        scores=scores,
        calls=list(hooks.calls),
        call_names=hooks.call_names(),
        output=output.detach(),
        target_values=values.detach(),
        activations=[act.detach() for act in activations],
    )


def _lowest_layer_outputs(acts: List[Tensor]) -> List[Tensor]:
    """The layer outputs that need a gradient and have no other layer output below them.

    A backward to these reaches every layer output that affects the target (each one lies
    above one of them) and stops there: nothing below the lowest layer calls (a ResNet's stem
    convolution and BatchNorm, say) changes a score.
    """
    layer_nodes = {act.grad_fn for act in acts if act.grad_fn is not None}
    return [
        act
        for act in acts
        if act.requires_grad and act.grad_fn is not None
        and not _reaches(act.grad_fn, layer_nodes)
    ]


def _reaches(start, nodes: set) -> bool:
    """Whether a node of ``nodes`` lies below ``start`` in the autograd graph."""
    stack = [fn for fn, _ in start.next_functions if fn is not None]
    seen = set()
    while stack:
        fn = stack.pop()
        if fn in nodes:
            return True
        if fn not in seen:
            seen.add(fn)
            stack.extend(f for f, _ in fn.next_functions if f is not None)
    return False


def taylor_scores(
    forward_func,
    hooks: NeuronHooks,
    inputs,
    target,
    additional_forward_args,
    keep_activations: bool = True,
    **_: Any,
) -> NeuronScores:
    r"""``|a * dy/da|`` for every neuron: one forward and one backward pass.

    Each score is computed as soon as the gradient of its layer output is complete, so the
    gradients of all layers are never held at the same time. With ``keep_activations=False``
    the method drops its reference to each layer output once scored, and a ReLU output may
    take its own score where that is provably unobservable (see
    :class:`captum_prune._fast.ScoreInPlace`).
    """
    eligible: List[bool] = []
    output, values, acts = _recording_pass(
        forward_func, hooks, inputs, target, additional_forward_args,
        eligible=None if keep_activations else eligible,
    )
    dtype = _score_dtype(acts)
    shapes = [(act.shape, act.device) for act in acts]
    kept = list(acts) if keep_activations else []
    holder: List[Optional[Tensor]] = acts  # dropped entry by entry below
    scores: List[Optional[Tensor]] = [None] * len(acts)
    if values.requires_grad:
        roots = _lowest_layer_outputs(acts)
        root_ids = {id(root) for root in roots}
        for call, act in enumerate(acts):
            if not act.requires_grad:
                continue
            if eligible and eligible[call] and id(act) not in root_ids:
                act.grad_fn.register_hook(_in_place_writer(holder, scores, call, dtype))
            else:
                act.register_hook(_score_writer(holder, scores, call, dtype))
        del act
        if roots:
            torch.autograd.grad(values.sum(), roots, allow_unused=True)
            del roots
            hooks.raise_error()  # a neuron layer run by another thread during the backward
    holder.clear()
    del acts
    for call, score in enumerate(scores):
        if score is None:  # no gradient reached this call: it cannot change the target
            shape, device = shapes[call]
            scores[call] = torch.zeros(shape, dtype=dtype, device=device)
    return _scores_from(hooks, output, values, kept, scores)


def _score_writer(holder: List, scores: List, call: int, dtype: torch.dtype) -> Callable:
    def write(grad: Tensor) -> None:
        scores[call] = _fast.plain_score(holder[call], grad, dtype)
        holder[call] = None  # the method's last use of this layer output

    return write


def _in_place_writer(holder: List, scores: List, call: int, dtype: torch.dtype) -> Callable:
    def write(grad_inputs, grad_outputs) -> None:
        grad = grad_outputs[0]
        if grad is not None:
            scores[call] = _fast.ScoreInPlace.write(holder, call, dtype, grad)
        holder[call] = None

    return write


def random_scores(
    forward_func, hooks: NeuronHooks, inputs, target, additional_forward_args, **_: Any
) -> NeuronScores:
    r"""Uniform random scores: prunes a random subset (the control baseline)."""
    with torch.no_grad():
        output, values, acts = _recording_pass(
            forward_func, hooks, inputs, target, additional_forward_args
        )
    scores = _score_tensors(acts)
    for score in scores:
        score.uniform_()
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
    scores = _score_tensors(acts)
    result = _scores_from(hooks, output, values, acts, scores)
    step_sizes_fn, alphas_fn = approximation_parameters(method)
    device, dtype = acts[0].device, scores[0].dtype
    alphas = torch.tensor(alphas_fn(n_steps), dtype=dtype, device=device)
    weights = torch.tensor(step_sizes_fn(n_steps), dtype=dtype, device=device)
    num_examples = inputs[0].shape[0]
    rows = n_steps * num_examples
    chunk = internal_batch_size or rows
    detached = tuple(x.detach() for x in inputs)

    for call, (act, score) in enumerate(zip(acts, scores)):
        path_gradient = torch.zeros_like(act, dtype=dtype)
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
            hooks.raise_error()
            if grad is not None:
                shape = (-1,) + (1,) * (grad.dim() - 1)
                path_gradient.index_add_(
                    0, examples, grad.to(dtype) * weights[steps].view(shape)
                )
        torch.mul(act.to(dtype), path_gradient, out=score).abs_()
    return result


SCORERS: Dict[str, Callable[..., NeuronScores]] = {
    "taylor": taylor_scores,
    "integrated_gradients": integrated_gradient_scores,
    "random": random_scores,
}
