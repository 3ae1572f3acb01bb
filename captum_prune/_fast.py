r"""Every in-place shortcut of the method, each behind a guard that proves it exact.

The plain path of the method never writes into a tensor the network computed: the pruned pass
returns ``output * mask`` from the layer's forward hook, and the taylor scores are written into
tensors of their own. Two shortcuts save an activation-sized tensor per ReLU call (its memory,
and the time to fault it in); each is taken only where this module proves, at run time, that no
one can tell the difference:

- :func:`can_mask_in_place` (pruned pass): multiply a fresh ``nn.ReLU`` output by its mask in
  place. The ReLU's backward reads only the sign of the result it saved, and
  ``mask * relu(x) > 0`` is exactly ``mask * relu'(x)``, the derivative of the masked layer.
- :func:`ScoreInPlace` (scoring pass): write ``|a * g|`` over a ReLU output ``a`` *after* the
  ReLU's own backward has run (an autograd node post-hook), when nothing else can read it.

Both guards require: the module is exactly ``nn.ReLU``; the tensor's ``grad_fn`` is the ReLU's
own ``ReluBackward`` node whose saved result is this very tensor (no saved-tensor hooks were
active: ``save_on_cpu``, checkpointing and custom ``saved_tensors_hooks`` keep other copies);
no global forward hooks exist (they run before ours and may keep the tensor); our hook was the
first forward hook of the module; the tensor is contiguous and not a view; and the only holders
of its memory are the ones the method accounts for (the storage's use count, and the tensor's
Python reference count for the scores).
"""
import sys
from typing import Optional

import torch
from torch import Tensor, nn

from captum_prune import _cpu

_RELU_NODES = ("ReluBackward0", "ReluBackward1")

#: Switch for tests: with ``False`` every call takes the plain path.
ENABLED = True


def _storage_holders(tensor: Tensor) -> int:
    """How many tensors share the memory of ``tensor`` (its storage's use count)."""
    storage = tensor.untyped_storage()
    return torch._C._storage_Use_Count(storage._cdata) - 1  # minus ``storage`` itself


def _no_foreign_forward_hooks(module: nn.Module, our_hook_id: int) -> bool:
    modules = nn.modules.module
    always_called = getattr(modules, "_global_forward_hooks_always_called", None)
    if modules._global_forward_hooks or always_called:
        return False
    first = next(iter(module._forward_hooks), None)
    return first == our_hook_id


def _fresh_relu_output(module: nn.Module, output: Tensor, our_hook_id: int) -> bool:
    """The guards both shortcuts share, checked in our forward hook on ``module``."""
    if not ENABLED or type(module) is not nn.ReLU:
        return False
    node = output.grad_fn
    if (
        node is None
        or type(node).__name__ not in _RELU_NODES
        or output._base is not None
        or not output.is_contiguous()
        or not output.dtype.is_floating_point
        or torch._C._autograd._top_saved_tensors_default_hooks(False) is not None
        or not _no_foreign_forward_hooks(module, our_hook_id)
    ):
        return False
    saved = node._saved_result
    same = saved.data_ptr() == output.data_ptr() and saved.shape == output.shape
    del saved
    return same


def can_mask_in_place(
    module: nn.Module, output: Tensor, our_hook_id: int, foreign_hooks: bool
) -> bool:
    r"""Whether ``output`` (what ``module`` returned, seen by our forward hook first) may be
    multiplied by its mask in place instead of out of place.

    Besides the shared guards, the memory must be held by exactly the output and the ReLU's
    saved result. An in-place ReLU wrote into the tensor its caller passed, which a forward
    hook of an earlier module may have kept under another name (it would then see the mask):
    for those, no module reached by the call may have forward hooks but ours
    (``foreign_hooks``).
    """
    return (
        _fresh_relu_output(module, output, our_hook_id)
        and not (module.inplace and foreign_hooks)
        and _storage_holders(output) == 2
    )


def mask_in_place(output: Tensor, keep: Tensor) -> None:
    r"""``output *= keep`` without bumping the version that the ReLU's backward checks."""
    _cpu.mask_(output.data, keep)


class ScoreInPlace:
    r"""Writes the taylor score ``|a * g|`` over a ReLU output once its backward is done.

    :meth:`applies` is checked in the recording forward hook. The write happens in a post-hook
    of the ReLU's ``ReluBackward`` node, that is after the node has read its saved result, and
    only if then nothing but the method holds ``a``: its storage is shared only by ``a`` and
    that saved result (released right after the hook), and the Python object ``a`` is held
    only by the method's list. Otherwise the score goes into a tensor of its own.
    """

    #: Layer outputs smaller than this keep their values: the memory saved would be less
    #: than what the guards cost in time (measured on the digits model at batch 1).
    MIN_ELEMENTS = 1 << 16

    @staticmethod
    def applies(module: nn.Module, output: Tensor, our_hook_id: int) -> bool:
        return output.numel() >= ScoreInPlace.MIN_ELEMENTS and _fresh_relu_output(
            module, output, our_hook_id
        )

    @staticmethod
    def write(holder: list, index: int, dtype: torch.dtype, grad: Tensor) -> Optional[Tensor]:
        r"""The score of ``holder[index]`` for the gradient ``grad``: written over it if that is
        provably unobservable, else in a new tensor."""
        act = holder[index]
        # References to ``act``: the list, this local name and getrefcount's argument.
        if (
            act.dtype == dtype
            and grad.dtype == dtype
            and sys.getrefcount(act) == 3
            and _storage_holders(act) == 2
        ):
            return _cpu.abs_product_(act.data, grad)
        return plain_score(act, grad, dtype)


def plain_score(act: Tensor, grad: Tensor, dtype: torch.dtype) -> Tensor:
    r"""``|a * g|`` in a new tensor of ``dtype`` (the plain path and the oracle's rule)."""
    return torch.mul(act.detach().to(dtype), grad.to(dtype)).abs_()
