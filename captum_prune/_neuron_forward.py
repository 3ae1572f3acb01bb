r"""A neuron as the model output: the forward function of ``NeuronPrunedGradient``.

:class:`NeuronForward` runs the model until the neuron's layer has produced its output (or
received its input), reads the neuron from it with Captum's ``neuron_selector`` rules, and stops
the forward there: nothing after the neuron can change it, so the later neuron layers are not
part of its pathway. Its hook is registered for each forward alone, in front of every other
hook of the layer, so the neuron is read as the layer computed it, and a layer that is also a
neuron layer is not counted (or pruned) in that call. A layer called several times per forward
is read at its first call (Captum's neuron methods keep the last). It refuses a layer that never
runs and a neuron with no neuron layer before it (an empty pathway).
"""
import threading
from typing import Any, Callable, List, Optional, Sequence

import torch
from torch import Tensor, nn

from captum_prune._captum import verify_select_neuron


class _Stop(Exception):
    """Ends a forward once the neuron is read."""


class NeuronForward:
    r"""``forward_func`` up to ``layer``, returning the neuron's value per example ``(N,)``.

    Args:

        forward_func (Callable): The model.
        layer (nn.Module): The neuron's layer; ``name`` names it in errors.
        neuron_selector: Captum's neuron selector (int, tuple or callable).
        to_input (bool): Select from the layer's positional inputs instead of its output.
        upstream (Sequence[nn.Module]): The neuron layers; at least one must run before the
                    neuron.
    """

    def __init__(
        self, forward_func: Callable, layer: nn.Module, name: str, neuron_selector: Any,
        to_input: bool, upstream: Sequence[nn.Module],
    ) -> None:
        self.forward_func = forward_func
        self.layer = layer
        self.name = name
        self.neuron_selector = neuron_selector
        self.to_input = to_input
        self.upstream = list(upstream)
        self._value: Optional[Tensor] = None
        self._upstream_calls = 0
        self._thread: Optional[int] = None

    def __call__(self, *args: Any) -> Tensor:
        self._value, self._upstream_calls = None, 0
        self._thread = threading.get_ident()
        handles: List[torch.utils.hooks.RemovableHandle] = []
        try:
            for module in self.upstream:  # first, so that the neuron's hook runs before
                handles.append(module.register_forward_hook(self._count, prepend=True))
            if self.to_input:
                handles.append(self.layer.register_forward_pre_hook(self._read_input, prepend=True))
            else:
                handles.append(self.layer.register_forward_hook(self._read_output, prepend=True))
            self.forward_func(*args)
        except _Stop:
            pass
        finally:
            for handle in handles:
                handle.remove()
        if self._value is None:
            raise RuntimeError(
                f"layer: '{self.name}' was never called during the forward pass, so the neuron "
                "cannot be read; pass a module that runs in forward_func"
            )
        if not self._upstream_calls:
            raise ValueError(
                f"layer: no neuron layer runs before '{self.name}', so the neuron's pathway is "
                "empty (nothing to prune); choose a neuron of a later layer, or pass "
                "layers=[...] with modules that run before it"
            )
        return self._value

    def _count(self, module: nn.Module, args, output) -> None:
        if threading.get_ident() == self._thread:
            self._upstream_calls += 1

    def _read(self, recorded: tuple) -> None:
        if threading.get_ident() != self._thread:
            return
        tensors = tuple(t for t in recorded if isinstance(t, Tensor))
        if not tensors:
            raise ValueError(
                f"layer: '{self.name}' {'received' if self.to_input else 'returned'} no "
                "tensor, so the neuron cannot be read from it"
            )
        value = verify_select_neuron(tensors, self.neuron_selector)
        num_examples = tensors[0].shape[0]
        if not isinstance(value, Tensor) or value.dim() == 0 or value.shape[0] != num_examples \
                or value[0].numel() != 1:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"neuron_selector: must select one value per example ({num_examples}) from the "
                f"layer's {'input' if self.to_input else 'output'}, got {shape}"
            )
        self._value = value.reshape(num_examples)
        raise _Stop()

    def _read_output(self, module: nn.Module, args, output) -> None:
        self._read(output if isinstance(output, tuple) else (output,))

    def _read_input(self, module: nn.Module, args) -> None:
        self._read(tuple(args))
