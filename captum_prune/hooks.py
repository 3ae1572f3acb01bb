r"""The one object that owns every forward hook captum-prune puts on a model.

:class:`NeuronHooks` registers a forward hook on each neuron layer when it is entered and removes
all of them when it is left, on every path (zennit's discipline). What a hook does to a layer's
output is decided per pass by a *transform*: record it, scale it or multiply it by a mask. Calls
are counted in forward order, so a module used twice in one forward (torchvision ResNet blocks
reuse ``block.relu``) is two separate neuron groups.
"""
import contextlib
import threading
from typing import Callable, Iterator, List, Optional, Sequence

import torch
from torch import Tensor, nn

#: ``transform(call_index, output) -> new output`` (``None`` keeps the output as it is).
Transform = Callable[[int, Tensor], Optional[Tensor]]


class NeuronHooks:
    r"""Forward hooks on the neuron layers, alive only inside a ``with`` block.

    Only forwards run by the thread that entered the block are touched, so concurrent
    ``attribute()`` calls on one model from several threads never see each other's masks.

    Args:

        layers (Sequence[nn.Module]): The modules whose outputs are neurons.
        names (Sequence[str]): A readable name for each layer, used in errors and in the
                    call names (``"layer1.0.relu#1"``).
    """

    def __init__(self, layers: Sequence[nn.Module], names: Sequence[str]) -> None:
        self.layers = list(layers)
        self.names = list(names)
        self.transform: Optional[Transform] = None
        self._handles: List[torch.utils.hooks.RemovableHandle] = []
        self._thread: Optional[int] = None
        #: Layer index of every call seen in the current pass, in forward order.
        self.calls: List[int] = []

    def __enter__(self) -> "NeuronHooks":
        self._thread = threading.get_ident()
        try:
            for index, layer in enumerate(self.layers):
                self._handles.append(
                    layer.register_forward_hook(self._hook_for(index))
                )
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def remove(self) -> None:
        r"""Removes every hook this object registered (safe to call twice)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @contextlib.contextmanager
    def forward_pass(self, transform: Optional[Transform]) -> Iterator[None]:
        r"""Applies ``transform`` to every layer call of the forward run inside the block.

        The call record (:attr:`calls`) starts empty and stays readable after the block.
        """
        self.transform = transform
        self.calls = []
        try:
            yield
        finally:
            self.transform = None

    def call_names(self) -> List[str]:
        r"""``"<module name>#<call>"`` for each call of the last pass."""
        seen: List[int] = [0] * len(self.layers)
        names = []
        for index in self.calls:
            names.append(f"{self.names[index]}#{seen[index]}")
            seen[index] += 1
        return names

    def _hook_for(self, index: int) -> Callable:
        def hook(module: nn.Module, args, output):
            if threading.get_ident() != self._thread:
                return None  # another thread's forward: not ours to touch
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
