r"""Neuron selection criteria: how much each neuron contributes to the objective, per example.

A criterion is a small class registered by name (zennit's style)::

    @register_criterion("taylor")
    class Taylor(Criterion):
        def score(self, run, keep_activations): ...

Its :meth:`Criterion.score` runs the unpruned model through the call's
:class:`~captum_prune._engine.Run` (the model, its :class:`~captum_prune.hooks.NeuronHooks`,
the inputs and the objective: by default the target's output) and returns
:class:`NeuronScores`: the score of every neuron, one tensor per layer call in forward order,
each of that call's output shape (in the layer's own layout; the engine moves the batch
first). The options of the call are ``self.options`` (a
:class:`~captum_prune.PruningOptions`).

- ``"taylor"`` (the paper's NeuronMCT): ``|a * dy/da|``, one forward and one backward pass.
- ``"integrated_gradients"`` (the paper's NeuronIntGrad, done right): for each layer *call*,
  Integrated Gradients of the target with respect to that call's output with a zero baseline,
  ``|a * mean_alpha dy/d(alpha a)|`` on a proper grid over ``[0, 1]``. Costs
  ``calls x n_steps`` forward and backward passes.
- ``"random"``: uniform random scores, the control baseline (no backward pass).
"""
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, List, Optional, Tuple

import torch
from torch import Tensor

from captum_prune import _fast
from captum_prune._captum import approximation_parameters
from captum_prune._registry import Registry
from captum_prune.hooks import NeuronHooks
from captum_prune.selection import promoted_dtype

if TYPE_CHECKING:  # pragma: no cover
    from captum_prune._engine import Run
    from captum_prune.options import PruningOptions


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
    run: "Run", eligible: Optional[List[bool]] = None
) -> Tuple[Tensor, Tensor, List[Tensor]]:
    """Forward through the unpruned model, keeping every layer output as it left the layer.

    The outputs are shared with the rest of the network, not copied (a copy of every
    activation would cost time and memory). If an op further down changes one of them in
    place (a residual ``+=`` on a GELU output, say), its version counter tells, and the pass
    is run again with the network getting copies, so that what is scored is never overwritten.
    With ``eligible`` (a list), whether each call's output may take the in-place score
    shortcut (:class:`captum_prune._fast.ScoreInPlace`) is appended to it.

    A floating-point layer output that does not require grad while autograd is on (integer
    inputs, frozen parameters below it) becomes a leaf that does, so that the objective can
    still be differentiated with respect to it.
    """
    for give_copies in (False, True):
        kept: List[Tensor] = []
        versions: List[int] = []
        if eligible is not None:
            eligible.clear()
        output, values = run.forward(
            _recorder(run.hooks, kept, versions, eligible, give_copies)
        )
        if all(t._version == v for t, v in zip(kept, versions)):
            break
    _check_calls(run.hooks, run.num_examples, kept)
    return output, values, kept


def _recorder(
    hooks: NeuronHooks,
    kept: List[Tensor],
    versions: List[int],
    eligible: Optional[List[bool]],
    give_copies: bool,
) -> Callable[[int, Tensor], Optional[Tensor]]:
    def record(call: int, output: Tensor) -> Optional[Tensor]:
        leaf = (
            not output.requires_grad
            and output.is_floating_point()
            and torch.is_grad_enabled()
        )
        if leaf:
            output = output.detach().requires_grad_()
        kept.append(output)
        versions.append(output._version)
        if eligible is not None:
            index = hooks.calls[call]
            eligible.append(
                not give_copies
                and _fast.ScoreInPlace.applies(hooks.layers[index], output, hooks.hook_ids[index])
            )
        if give_copies:
            return output.clone()
        return output if leaf else None

    return record


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


#: Layer outputs (elements, all calls together) up to which the scoring backward is taken
#: with respect to every one of them: their gradients are then all held at once, which costs
#: less than finding the lowest outputs in the graph (a walk in Python) and a hook per output
#: while they are small.
_ALL_OUTPUTS_MAX_ELEMENTS = 1 << 20


def _all_outputs_at_once(acts: List[Tensor], eligible: List[bool]) -> bool:
    """Whether the scoring backward differentiates with respect to every layer output (small
    ones, none taking its score in place: that write must follow its node's backward, which
    does not run for an input) rather than to the lowest ones, with a hook on each output
    (:func:`_lowest_layer_outputs`). The gradients reaching each output, and so the scores,
    are the same either way: the same nodes run below the objective."""
    return not any(eligible) and sum(act.numel() for act in acts) <= _ALL_OUTPUTS_MAX_ELEMENTS


def _lowest_layer_outputs(acts: List[Tensor]) -> List[Tensor]:
    """The layer outputs that need a gradient and have no other layer output below them.

    A backward to these reaches every layer output that affects the target (each one lies
    above one of them) and stops there: nothing below the lowest layer calls (a ResNet's stem
    convolution and BatchNorm, say) changes a score.
    """
    layer_nodes = {act.grad_fn for act in acts if act.grad_fn is not None}
    clear: set = set()  # nodes with no layer node at or below them, shared by the walks
    return [
        act
        for act in acts
        if act.requires_grad
        and (act.grad_fn is None or not _reaches(act.grad_fn, layer_nodes, clear))
    ]


def _reaches(start, nodes: set, clear: set) -> bool:
    """Whether a node of ``nodes`` lies below ``start`` in the autograd graph.

    ``clear`` holds nodes already known to have no node of ``nodes`` at or below them; the
    nodes this walk finds so are added (only when the answer is no: a walk that stops early
    has not seen everything below what it visited)."""
    stack = [fn for fn, _ in start.next_functions if fn is not None]
    seen = set()
    while stack:
        fn = stack.pop()
        if fn in nodes:
            return True
        if fn not in seen and fn not in clear:
            seen.add(fn)
            stack.extend(f for f, _ in fn.next_functions if f is not None)
    clear.update(seen)
    return False


# ---------------------------------------------------------------- the registered criteria


class Criterion:
    r"""A neuron-scoring rule. Subclass, implement :meth:`score`, register with
    :func:`register_criterion`; the name is then accepted as ``criterion=...`` everywhere.

    Args:

        options (PruningOptions): The call's options (``n_steps``, ``method``, ...).
    """

    name: ClassVar[str] = ""
    #: Whether layers whose batch dimension is not the first (``batch_dims``) are supported.
    supports_batch_dims: ClassVar[bool] = True

    def __init__(self, options: "PruningOptions") -> None:
        self.options = options

    def score(self, run: "Run", keep_activations: bool) -> NeuronScores:
        r"""Scores every neuron of every layer call of ``run``'s forward.

        ``keep_activations=False`` allows the criterion to reuse the memory of the layer
        outputs (the result's ``activations`` is then empty).
        """
        raise NotImplementedError


#: ``criterion=...`` names and their classes.
CRITERION_RULES: Registry = Registry("criterion")


def register_criterion(name: str) -> Callable[[type], type]:
    r"""A class decorator: registers a :class:`Criterion` subclass as ``criterion=name``.

    Examples::

        >>> from captum_prune.criteria import CRITERIA, Criterion, register_criterion
        >>> @register_criterion("my_criterion")
        ... class Mine(Criterion):
        ...     def score(self, run, keep_activations):
        ...         raise NotImplementedError
        >>> "my_criterion" in CRITERIA
        True
        >>> from captum_prune.criteria import CRITERION_RULES
        >>> _ = CRITERION_RULES._entries.pop("my_criterion")  # (undo, for this example)
    """
    return CRITERION_RULES.register(name)

#: The accepted criterion names, live (a tuple-like sequence; tools list it).
CRITERIA = CRITERION_RULES.names


@register_criterion("taylor")
class Taylor(Criterion):
    r"""``|a * dy/da|`` for every neuron (the paper's NeuronMCT): one forward and one backward
    pass.

    Each score is computed as soon as the gradient of its layer output is complete, so the
    gradients of all layers are never held at the same time. With ``keep_activations=False``
    the method drops its reference to each layer output once scored, and a ReLU output may
    take its own score where that is provably unobservable (see
    :class:`captum_prune._fast.ScoreInPlace`).
    """

    def score(self, run: "Run", keep_activations: bool) -> NeuronScores:
        eligible: List[bool] = []
        output, values, acts = _recording_pass(
            run, eligible=None if keep_activations else eligible
        )
        dtype = _score_dtype(acts)
        shapes = [(act.shape, act.device) for act in acts]
        kept = list(acts) if keep_activations else []
        holder: List[Optional[Tensor]] = acts  # dropped entry by entry below
        scores: List[Optional[Tensor]] = [None] * len(acts)
        if values.requires_grad and _all_outputs_at_once(acts, eligible):
            # Small outputs: their gradients all at once, from one backward, no hooks.
            wanted = [call for call, act in enumerate(acts) if act.requires_grad]
            grads = run.backward(values, [acts[call] for call in wanted])
            for call, grad in zip(wanted, grads):
                if grad is not None:
                    scores[call] = _fast.plain_score(acts[call], grad, dtype)
            del grads
        elif values.requires_grad:
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
                run.backward(values, roots)
                del roots
        holder.clear()
        del acts
        for call, score in enumerate(scores):
            if score is None:  # no gradient reached this call: it cannot change the target
                shape, device = shapes[call]
                scores[call] = torch.zeros(shape, dtype=dtype, device=device)
        return _scores_from(run.hooks, output, values, kept, scores)


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


@register_criterion("integrated_gradients")
class IntegratedGradients(Criterion):
    r"""Integrated Gradients of the objective with respect to each layer call's output.

    For call ``l`` only that call's output is scaled by ``alpha`` (the rest of the network is
    recomputed downstream of it), as in the paper's NeuronIntGrad, but on ``method``'s grid
    over ``[0, 1]`` and with every call of a reused module scored on its own. The ``alpha``
    steps of all examples are batched together, ``internal_batch_size`` rows at a time.
    Costs ``calls x n_steps`` forward and backward passes.
    """

    supports_batch_dims = False

    def score(self, run: "Run", keep_activations: bool) -> NeuronScores:
        options = self.options
        with torch.no_grad():
            output, values, acts = _recording_pass(run)
        calls = list(run.hooks.calls)
        scores = _score_tensors(acts)
        result = _scores_from(run.hooks, output, values, acts, scores)
        step_sizes_fn, alphas_fn = approximation_parameters(options.method)
        device, dtype = acts[0].device, scores[0].dtype
        alphas = torch.tensor(alphas_fn(options.n_steps), dtype=dtype, device=device)
        weights = torch.tensor(step_sizes_fn(options.n_steps), dtype=dtype, device=device)
        num_examples = run.num_examples
        rows = options.n_steps * num_examples
        chunk = options.internal_batch_size or rows
        for call, (act, score) in enumerate(zip(acts, scores)):
            path_gradient = torch.zeros_like(act, dtype=dtype)
            for start in range(0, rows, chunk):
                row_ids = torch.arange(start, min(rows, start + chunk), device=device)
                examples, steps = row_ids % num_examples, row_ids // num_examples
                scaled: List[Tensor] = []
                _, chunk_values = run.rows(examples).forward(
                    _scaler(call, alphas[steps], scaled)
                )
                run.hooks.check_same_calls(calls)
                (grad,) = run.backward(chunk_values, scaled)
                if grad is not None:
                    shape = (-1,) + (1,) * (grad.dim() - 1)
                    path_gradient.index_add_(
                        0, examples, grad.to(dtype) * weights[steps].view(shape)
                    )
            torch.mul(act.to(dtype), path_gradient, out=score).abs_()
        return result


def _scaler(call: int, alphas: Tensor, scaled: List[Tensor]) -> Callable:
    """The transform that scales layer call ``call`` by each row's ``alpha``."""

    def scale(index: int, out: Tensor) -> Optional[Tensor]:
        if index != call:
            return None
        shape = (-1,) + (1,) * (out.dim() - 1)
        z = (out.detach() * alphas.view(shape).to(out.dtype)).requires_grad_()
        scaled.append(z)
        return z.clone()  # a leaf must not reach an in-place op downstream

    return scale


@register_criterion("random")
class Random(Criterion):
    r"""Uniform random scores: prunes a random subset (the control baseline; no backward)."""

    def score(self, run: "Run", keep_activations: bool) -> NeuronScores:
        with torch.no_grad():
            output, values, acts = _recording_pass(run)
        scores = _score_tensors(acts)
        for score in scores:
            score.uniform_()
        return _scores_from(run.hooks, output, values, acts, scores)
