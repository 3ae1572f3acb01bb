r"""Capturing the output (or input) of an attributed layer during the method's passes.

:class:`LayerCapture` owns one forward hook (or forward pre-hook, for a layer's input) on each
attributed layer, alive only inside a ``with`` block. It keeps the tensors *as the layer
computed them* (its hooks run before the neuron hooks on the same module, so a layer that is
also a neuron layer is captured before its own mask) and hands the rest of the network a copy,
so that later in-place operations cannot change what is differentiated. A tensor that does not
require a gradient (the embedding of token ids in a model with frozen weights) is replaced by a
leaf that does, so that the gradient with respect to it is defined.

It also refuses what would be silently wrong: a layer called more than once per forward (which
call would be attributed?) and a layer never called.
"""
import threading
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn


class StopForward(Exception):
    r"""Raised from a capture hook to end a forward once the layer has run (neuron methods:
    nothing after the neuron can change it)."""


def _tensors(value: Any, where: str) -> Tuple[Tensor, ...]:
    items = value if isinstance(value, tuple) else (value,)
    if not items or not all(isinstance(t, Tensor) for t in items):
        raise TypeError(
            f"layer: {where} must be a tensor or a tuple of tensors, got "
            f"{type(value).__name__}{'' if not isinstance(value, tuple) else ' with '}"
            f"{', '.join(type(t).__name__ for t in items) if isinstance(value, tuple) else ''}"
        )
    return items


class LayerCapture:
    r"""Hooks that capture each attributed layer's output (or positional inputs) per pass.

    Args:

        layers (Sequence[nn.Module]): The attributed layers.
        names (Sequence[str]): A readable name of each, for errors.
        to_input (bool): Capture the layer's positional inputs instead of its output.
        stop (bool): End the forward (:class:`StopForward`) once every layer was captured.
        upstream (Sequence[nn.Module], optional): Modules whose calls before the capture are
                    counted in :attr:`upstream_calls` (the neuron layers of a neuron's pathway).
    """

    def __init__(
        self, layers: Sequence[nn.Module], names: Sequence[str], to_input: bool = False,
        stop: bool = False, upstream: Sequence[nn.Module] = (),
    ) -> None:
        self.upstream = list(upstream)
        self.upstream_calls = 0
        self.layers = list(layers)
        self.names = list(names)
        self.to_input = to_input
        self.stop = stop
        self.captured: List[Optional[Tuple[Tensor, ...]]] = [None] * len(self.layers)
        self._handles: List[torch.utils.hooks.RemovableHandle] = []
        self._thread: Optional[int] = None

    def __enter__(self) -> "LayerCapture":
        self._thread = threading.get_ident()
        try:
            for module in self.upstream:  # registered first, so they run after the capture
                self._handles.append(
                    module.register_forward_hook(self._count, prepend=True)
                )
            for index, layer in enumerate(self.layers):
                if self.to_input:
                    handle = layer.register_forward_pre_hook(self._pre_hook(index), prepend=True)
                else:
                    handle = layer.register_forward_hook(self._hook(index), prepend=True)
                self._handles.append(handle)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def start(self) -> None:
        r"""Forgets what the previous pass captured."""
        self.captured = [None] * len(self.layers)
        self.upstream_calls = 0

    def check_called(self) -> None:
        r"""Raises if a layer did not run in the last forward."""
        for name, value in zip(self.names, self.captured):
            if value is None:
                raise RuntimeError(
                    f"layer: '{name}' was never called during the forward pass, so there is "
                    "nothing to attribute to; pass a module that runs in forward_func (for a "
                    "Hugging Face model, e.g. model.get_input_embeddings())"
                )

    def run(self, forward: Callable[[], Any]) -> Any:
        r"""Runs ``forward()`` with the hooks registered for it alone (so they run before any
        hook registered earlier, the neuron hooks included) and a fresh capture; returns its
        result (``None`` if the forward was stopped after the capture)."""
        self.start()
        with self:
            try:
                result = forward()
            except StopForward:
                result = None
        self.check_called()
        return result

    # ------------------------------------------------------------------ the hooks

    def _take(self, index: int, values: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
        if self.captured[index] is not None:
            raise RuntimeError(
                f"layer: '{self.names[index]}' is called more than once per forward pass, so "
                "which call to attribute to is ambiguous; attribute to a module that runs "
                "once (or wrap the call you mean in a module of its own)"
            )
        kept = tuple(
            t if t.requires_grad or not t.is_floating_point() else t.detach().requires_grad_()
            for t in values
        )
        self.captured[index] = kept
        return tuple(t.clone() if t.is_floating_point() else t for t in kept)

    def _count(self, module: nn.Module, args, output) -> None:
        if threading.get_ident() == self._thread and self.captured[0] is None:
            self.upstream_calls += 1

    def _done(self) -> None:
        if self.stop and all(value is not None for value in self.captured):
            raise StopForward()

    def _hook(self, index: int) -> Callable:
        def hook(module: nn.Module, args, output):
            if threading.get_ident() != self._thread:
                return None
            values = _tensors(output, f"the output of '{self.names[index]}'")
            handed = self._take(index, values)
            self._done()
            return handed if isinstance(output, tuple) else handed[0]

        return hook

    def _pre_hook(self, index: int) -> Callable:
        def hook(module: nn.Module, args):
            if threading.get_ident() != self._thread:
                return None
            values = _tensors(tuple(args), f"the positional inputs of '{self.names[index]}'")
            handed = self._take(index, values)
            self._done()
            return handed

        return hook


# ---------------------------------------------------------------------- the passes
# Until the core exposes an engine with a layer objective and a layer gradient, the two
# passes of the layer methods are put together here from the core's pieces (scorers,
# selection, NeuronHooks); only the pruned pass's gradient target differs from PrunedGradient.


def prepare_inputs(inputs: Any, need_grad: bool) -> Tuple[Tensor, ...]:
    r"""The inputs as a tuple; aliases that require grad when ``need_grad`` (then they must be
    floating point), else as given (token ids allowed)."""
    from captum_prune import _safety

    if need_grad:
        return _safety.prepare_inputs(inputs)
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    if not isinstance(inputs, tuple) or not inputs:
        raise TypeError(
            f"inputs: expected a Tensor or a non-empty tuple of Tensors, got "
            f"{type(inputs).__name__}"
        )
    for position, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"inputs[{position}]: expected a Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[0] != inputs[0].shape[0] or x.shape[0] == 0:
            raise ValueError(
                f"inputs[{position}]: every input needs the (non-empty) batch as its first "
                f"dimension, got shape {tuple(x.shape)}"
            )
    return tuple(x.clone() if x.is_inference() else x for x in inputs)


def pruned_layer_gradients(
    forward_func: Callable,
    layers: Sequence[nn.Module],
    layer_names: Sequence[str],
    batch_dims: Sequence[int],
    capture: LayerCapture,
    inputs: Tuple[Tensor, ...],
    target: Any,
    additional_forward_args: Any,
    options: dict,
    grad_kwargs: Optional[dict] = None,
) -> Tuple[List[Tuple[Tensor, ...]], List[Tuple[Tensor, ...]]]:
    r"""The scoring pass and the selection of :class:`~captum_prune.PrunedGradient` for the
    model's ``target``, then a pruned pass that returns, per attributed layer, the gradient of
    the target with respect to the captured tensors and those tensors (detached)."""
    import contextlib

    from captum_prune import _safety
    from captum_prune._forward import forward_with_target
    from captum_prune.criteria import SCORERS, check_same_calls
    from captum_prune.hooks import NeuronHooks
    from captum_prune.pruned_gradient import PrunedGradient, _batch_first, _phase
    from captum_prune.selection import select

    _safety.check_grad_mode()
    PrunedGradient._check_options(options)
    if options["criterion"] == "integrated_gradients" and any(batch_dims):
        raise ValueError(
            "criterion: 'integrated_gradients' needs batch-first layers (batch_dims 0); "
            "use 'taylor' or 'random' with sequence-first layers"
        )

    def forward(*args):
        return capture.run(lambda: forward_func(*args))

    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.enable_grad())
        hooks = stack.enter_context(NeuronHooks(layers, layer_names, batch_dims))
        with _phase("score"):
            scored = SCORERS[options["criterion"]](
                forward, hooks, inputs, target, additional_forward_args,
                n_steps=options["n_steps"], method=options["method"],
                internal_batch_size=options["internal_batch_size"], keep_activations=False,
            )
        _safety.warn_if_training(hooks)
        call_dims = [hooks.batch_dims[index] for index in scored.calls]
        scores = _batch_first(scored.scores, call_dims) if any(call_dims) else scored.scores
        with _phase("select"):
            masks = select(
                scores, float(options["sparsity"]), options["selection"], options["threshold"]
            )
        scored.scores = []
        del scores
        masks = [m.movedim(0, d) if d else m for m, d in zip(masks, call_dims)]

        def apply_mask(call: int, output: Tensor) -> Tensor:
            if call >= len(masks) or masks[call].shape != output.shape:
                raise RuntimeError(
                    f"The model's layer call {call} changed shape between the scoring and the "
                    "gradient pass; the method needs a forward whose layer calls do not depend "
                    "on the values flowing through it."
                )
            return output * masks[call]

        with _phase("pruned_pass"):
            with hooks.forward_pass(apply_mask):
                _, values = forward_with_target(forward, inputs, target, additional_forward_args)
            check_same_calls(scored.calls, hooks)
            captured = [value for value in capture.captured]
            flat = [t for group in captured for t in group]
            for t in flat:
                if not t.is_floating_point():
                    raise TypeError(
                        f"layer: a tensor of dtype {t.dtype} was captured; gradients need "
                        "floating-point layer outputs (attribute to the embedding, not to the "
                        "token ids)"
                    )
            if values.requires_grad:
                grads = torch.autograd.grad(
                    values.sum(), flat, allow_unused=True, **(grad_kwargs or {})
                )
            else:
                grads = (None,) * len(flat)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(flat, grads)]
    gradient_groups, activation_groups, start = [], [], 0
    for group in captured:
        gradient_groups.append(tuple(g.detach() for g in grads[start:start + len(group)]))
        activation_groups.append(tuple(t.detach() for t in group))
        start += len(group)
    return gradient_groups, activation_groups
