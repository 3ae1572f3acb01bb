r"""The one object that owns every hook captum-prune puts on a model.

:class:`NeuronHooks` registers a forward hook on each neuron layer when it is entered and removes
all of them when it is left, on every path (zennit's discipline). What a hook does to a layer's
output is decided per pass by a *transform*: record it, scale it or multiply it by a mask. Calls
are counted in forward order, so a module used twice in one forward (torchvision ResNet blocks
reuse ``block.relu``) is two separate neuron groups.

Our hooks are registered first (``prepend=True``): the neuron is the module's own output, and
hooks the user put on the module see what the rest of the network sees (the unmasked output
while scoring, the masked one in the pruned pass). Global module hooks
(``register_module_forward_hook``) still run before ours, as PyTorch runs them first.

The object also

- finds every module the call reaches (a global forward pre-hook, filtered by thread), saves
  the buffers of those in train mode before their first run and puts them back on exit;
- refuses what it cannot do exactly, with an error that names the cause: a second call on the
  same layers from inside a running one (re-entrancy), a neuron layer run by another thread
  while ours runs a pass (a model branch in a worker thread), and a neuron layer run during the
  backward pass (activation checkpointing recomputes the forward there, where the masks cannot
  follow it).
"""
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, TypeVar

import torch
from torch import Tensor, nn

#: ``transform(call_index, output) -> new output`` (``None`` keeps the output as it is).
Transform = Callable[[int, Tensor], Optional[Tensor]]
R = TypeVar("R")

_REGISTRY_LOCK = threading.Lock()
#: Thread id -> the NeuronHooks entered (and not yet left) by that thread, innermost last.
_ACTIVE: Dict[int, List["NeuronHooks"]] = {}

_STOCHASTIC_IN_TRAINING = (nn.modules.dropout._DropoutNd, nn.RReLU)


def _in_backward() -> bool:
    """Whether this thread is running an autograd backward pass right now."""
    return torch._C._current_graph_task_id() != -1


def running_threads() -> Set[int]:
    r"""Ids of the threads that are inside a captum-prune call right now."""
    with _REGISTRY_LOCK:
        return set(_ACTIVE)


@dataclass(frozen=True)
class Capture:
    r"""A module whose output (or, with ``to_input``, positional tensor inputs) every pass
    records, as Captum's layer methods do: the network goes on with clones, so later in-place
    ops cannot change what was recorded, and a floating-point recorded tensor that does not
    require grad is made a leaf that does (gradients can be taken with respect to it).

    Recorded after the module's other forward hooks (or pre-hooks): what the rest of the
    network gets. On a neuron layer that is after the mask of the pruned pass.
    """

    module: nn.Module
    to_input: bool = False


#: The recorded tensors of one module call (a 1-tuple for a module that returns a tensor).
Captured = Tuple[Tensor, ...]


class NeuronHooks:
    r"""Forward hooks on the neuron layers, alive only inside a ``with`` block.

    Only forwards run by the thread that entered the block are touched, so concurrent
    ``attribute()`` calls on one model from several threads never see each other's masks.

    Args:

        layers (Sequence[nn.Module]): The modules whose outputs are neurons.
        names (Sequence[str]): A readable name for each layer, used in errors and in the
                    call names (``"layer1.0.relu#1"``).
        batch_dims (Sequence[int], optional): The batch dimension of each layer's output.
                    Default: 0 for every layer.
        captures (Sequence[Capture], optional): Modules whose outputs or inputs every pass
                    records in :attr:`captured` (for an objective read at a layer, or a
                    gradient with respect to a layer). Default: none.
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        names: Sequence[str],
        batch_dims: Optional[Sequence[int]] = None,
        captures: Sequence[Capture] = (),
    ) -> None:
        self.layers = list(layers)
        self.captures = list(captures)
        #: Per capture, the recorded tensors of each of its calls in the current pass.
        self.captured: List[List[Captured]] = [[] for _ in self.captures]
        self._own_hook_ids: Set[int] = set()
        self.names = list(names)
        self.batch_dims = list(batch_dims) if batch_dims is not None else [0] * len(self.layers)
        self.transform: Optional[Transform] = None
        self._handles: List[torch.utils.hooks.RemovableHandle] = []
        #: Handle id of our forward hook on each layer (to check that it runs first).
        self.hook_ids: List[int] = []
        self._thread: Optional[int] = None
        self._layer_ids = {id(layer) for layer in self.layers}
        #: Layer index of every call seen in the current pass, in forward order.
        self.calls: List[int] = []
        #: Every module the call reached, in first-call order.
        self.reached: List[nn.Module] = []
        self._reached_ids: Set[int] = set()
        #: (module, buffer name, the buffer, its saved value) of train-mode modules reached.
        self._saved_buffers: List[Tuple[nn.Module, str, Tensor, Tensor]] = []
        #: Whether a module reached by the call has forward hooks other than ours.
        self.foreign_hooks = False
        #: The first cause found that makes the result inexact (raised in our thread).
        self.error: Optional[BaseException] = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ entering and leaving

    def __enter__(self) -> "NeuronHooks":
        self._thread = threading.get_ident()
        with _REGISTRY_LOCK:
            mine = _ACTIVE.get(self._thread, [])
            for other in mine:
                if other._layer_ids & self._layer_ids:
                    raise RuntimeError(
                        "PrunedGradient was called on a model while another PrunedGradient "
                        "call on the same layers is running in this thread (for example from "
                        "a forward hook of the model, or from forward_func itself); such "
                        "nested calls would prune each other's passes. Call it after the "
                        "outer call has returned."
                    )
            _ACTIVE.setdefault(self._thread, []).append(self)
        try:
            self._handles.append(
                nn.modules.module.register_module_forward_pre_hook(self._reach)
            )
            for index, layer in enumerate(self.layers):
                handle = layer.register_forward_hook(self._hook_for(index), prepend=True)
                self._handles.append(handle)
                self.hook_ids.append(handle.id)
            for index, capture in enumerate(self.captures):
                if capture.to_input:
                    handle = capture.module.register_forward_pre_hook(self._input_hook_for(index))
                else:
                    handle = capture.module.register_forward_hook(self._output_hook_for(index))
                self._handles.append(handle)
            self._own_hook_ids = {handle.id for handle in self._handles}
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.remove()
        finally:
            try:
                self.restore_buffers()
            finally:
                with _REGISTRY_LOCK:
                    mine = _ACTIVE.get(self._thread, [])
                    if self in mine:
                        mine.remove(self)
                    if not mine:
                        _ACTIVE.pop(self._thread, None)

    def remove(self) -> None:
        r"""Removes every hook this object registered (safe to call twice)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def restore_buffers(self) -> None:
        r"""Puts back every buffer of the train-mode modules the call reached, as it was
        before their first run (the same tensor object, with its old values)."""
        if not self._saved_buffers:
            return
        with torch.no_grad():
            for module, name, buffer, value in reversed(self._saved_buffers):
                module._buffers[name] = buffer
                if buffer.shape != value.shape:
                    buffer.data = value
                else:
                    buffer.copy_(value)
        self._saved_buffers.clear()

    # ------------------------------------------------------------------ passes

    def forward_pass(self, transform: Optional[Transform], forward: Callable[[], R]) -> R:
        r"""``forward()``, with ``transform`` applied to every layer call it makes; returns
        what ``forward`` returns.

        The call record (:attr:`calls`) starts empty and stays readable afterwards. Raises,
        after the forward, the first cause of an inexact result seen during it.
        """
        self.transform = transform
        self.calls = []
        self.captured = [[] for _ in self.captures]
        try:
            result = forward()
        finally:
            self.transform = None
        self.raise_error()
        return result

    def raise_error(self) -> None:
        r"""Raises the first cause of an inexact result recorded so far (if any)."""
        if self.error is not None:
            raise self.error

    def check_same_calls(self, expected: List[int]) -> None:
        r"""Raises if the last pass called the neuron layers differently from ``expected``
        (the scoring pass's :attr:`calls`)."""
        if self.calls != expected:
            raise RuntimeError(
                f"The model called the neuron layers {len(self.calls)} times in a later pass "
                f"but {len(expected)} times while scoring (or in another order). "
                "PrunedGradient needs a forward whose layer calls do not depend on the values "
                "flowing through it."
            )

    def call_names(self) -> List[str]:
        r"""``"<module name>#<call>"`` for each call of the last pass."""
        seen: List[int] = [0] * len(self.layers)
        names = []
        for index in self.calls:
            names.append(f"{self.names[index]}#{seen[index]}")
            seen[index] += 1
        return names

    def stateful_training_modules(self) -> List[nn.Module]:
        r"""The reached modules in train mode that have buffers or behave randomly."""
        return [
            module
            for module in self.reached
            if module.training
            and (
                isinstance(module, _STOCHASTIC_IN_TRAINING)
                or next(module.buffers(recurse=False), None) is not None
            )
        ]

    # ------------------------------------------------------------------ the hooks

    def _record_error(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = error

    def _reach(self, module: nn.Module, args) -> None:
        if threading.get_ident() != self._thread or id(module) in self._reached_ids:
            return
        self._reached_ids.add(id(module))
        self.reached.append(module)
        if module._forward_hooks and any(
            key not in self._own_hook_ids for key in module._forward_hooks
        ):
            self.foreign_hooks = True
        if module.training:
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    self._saved_buffers.append((module, name, buffer, buffer.detach().clone()))

    def _foreign_thread_call(self, index: int) -> None:
        if threading.get_ident() in running_threads():
            return  # another captum-prune call on this model: its own business
        self._record_error(
            RuntimeError(
                f"layers: module '{self.names[index]}' ran in another thread while "
                "PrunedGradient was running a pass on this thread, so its calls could not be "
                "scored or pruned (a model branch run in a worker thread, or the model used "
                "by another thread at the same time). Run the model's branches in the calling "
                "thread, or do not use the model elsewhere during attribute()."
            )
        )

    def _capture_allowed(self, module: nn.Module) -> bool:
        if threading.get_ident() != self._thread:
            if threading.get_ident() not in running_threads():
                self._record_error(
                    RuntimeError(
                        f"layers: the recorded module {type(module).__name__} ran in another "
                        "thread while PrunedGradient was running a pass on this thread; run "
                        "the model's branches in the calling thread."
                    )
                )
            return False
        return True

    def _record(self, index: int, tensors: Tuple[Any, ...]) -> Tuple[Any, ...]:
        """Records ``tensors`` for capture ``index``; returns what the network gets."""
        kept, passed = [], []
        for t in tensors:
            if not isinstance(t, Tensor):
                passed.append(t)
                continue
            if torch.is_grad_enabled() and not t.requires_grad and t.is_floating_point():
                t = t.detach().requires_grad_()
            kept.append(t)
            passed.append(t.clone())
        self.captured[index].append(tuple(kept))
        return tuple(passed)

    def _output_hook_for(self, index: int) -> Callable:
        def hook(module: nn.Module, args, output):
            if not self._capture_allowed(module):
                return None
            if isinstance(output, Tensor):
                return self._record(index, (output,))[0]
            if isinstance(output, tuple):
                recorded = self._record(index, output)
                return recorded if type(output) is tuple else type(output)(*recorded)
            raise TypeError(
                f"layers: the recorded module {type(module).__name__} returned "
                f"{type(output).__name__}; only a tensor or a tuple of tensors can be recorded"
            )

        return hook

    def _input_hook_for(self, index: int) -> Callable:
        def hook(module: nn.Module, args):
            if not self._capture_allowed(module):
                return None
            return self._record(index, tuple(args))

        return hook

    def _hook_for(self, index: int) -> Callable:
        def hook(module: nn.Module, args, output):
            if threading.get_ident() != self._thread:
                self._foreign_thread_call(index)
                return None
            if _in_backward():
                error = RuntimeError(
                    f"layers: module '{self.names[index]}' ran during the backward pass. This "
                    "happens with activation checkpointing (torch.utils.checkpoint), which "
                    "recomputes the forward there, unpruned; PrunedGradient cannot follow it. "
                    "Run attribute() with checkpointing switched off, or choose layers=[...] "
                    "outside the checkpointed blocks."
                )
                self._record_error(error)
                raise error
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"layers: module '{self.names[index]}' returned "
                    f"{type(output).__name__}; only modules that return a single tensor can "
                    "be neuron layers"
                )
            call = len(self.calls)
            self.calls.append(index)
            if self.transform is None:
                return None
            return self.transform(call, output)

        return hook
