r"""Argument checks and the guarantees that no caller state changes."""
import os
import sys
import warnings
from typing import Any, Callable, Tuple

import torch
from torch import Tensor, nn


def check_forward_func(forward_func: Callable) -> None:
    if not callable(forward_func):
        raise TypeError(
            "forward_func: expected an nn.Module or a callable, got "
            f"{type(forward_func).__name__}"
        )
    if isinstance(forward_func, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        raise TypeError(
            "forward_func: nn.DataParallel runs the model in several threads, whose hooks "
            "cannot be told apart; pass the wrapped model (model.module) instead"
        )
    if isinstance(forward_func, torch.jit.ScriptModule):
        raise TypeError(
            "forward_func: a scripted or traced (torch.jit) model does not run module hooks, "
            "so it cannot be pruned; pass the eager nn.Module instead"
        )
    # Only look if torch.compile was ever used: importing torch._dynamo costs about a second.
    compiled = getattr(sys.modules.get("torch._dynamo"), "eval_frame", None)
    if compiled is not None and isinstance(forward_func, compiled.OptimizedModule):
        raise TypeError(
            "forward_func: a torch.compile'd model does not reliably run module hooks; pass "
            "the original module (compiled._orig_mod) instead"
        )


def check_number(name: str, value: Any, low: float, high: float, *, high_open: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    upper_ok = value < high if high_open else value <= high
    if not (low <= value and upper_ok):
        bound = ")" if high_open else "]"
        raise ValueError(f"{name}: must be in [{low}, {high}{bound}, got {value}")


def check_choice(name: str, value: Any, allowed: Tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(
            f"{name}: {value!r} is not one of {', '.join(repr(a) for a in allowed)}"
        )


def check_positive_int(name: str, value: Any, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "a positive int or None" if optional else "a positive int"
        raise ValueError(f"{name}: must be {allowed}, got {value!r}")


def prepare_inputs(inputs: Any, floating: bool = True) -> Tuple[Tensor, ...]:
    r"""Validates the inputs and returns aliases that require grad.

    The aliases share memory with the caller's tensors, but setting ``requires_grad`` on them
    leaves the caller's tensors exactly as they were. With ``floating=False``, inputs that are
    not floating point (token ids) are passed as they are, without gradients.
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    if not isinstance(inputs, tuple) or not inputs:
        raise TypeError(
            "inputs: expected a Tensor or a non-empty tuple of Tensors, got "
            f"{type(inputs).__name__}"
        )
    prepared = []
    for position, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(
                f"inputs[{position}]: expected a Tensor, got {type(x).__name__}"
            )
        if not x.is_floating_point() and floating:
            raise TypeError(
                f"inputs[{position}]: has dtype {x.dtype}; gradients need floating-point "
                "inputs (for token ids, prune with layers=[...] and attribute to an embedding "
                "output instead)"
            )
        if x.dim() > 0 and x.shape[0] == 0:
            raise ValueError(
                f"inputs[{position}]: the batch is empty (shape {tuple(x.shape)}); pass at "
                "least one example"
            )
        if x.dim() == 0 or x.shape[0] != inputs[0].shape[0]:
            raise ValueError(
                f"inputs[{position}]: every input needs the batch as its first dimension "
                f"({inputs[0].shape[0] if inputs[0].dim() else '?'} examples), got shape "
                f"{tuple(x.shape)}"
            )
        if x.is_inference():
            x = x.clone()  # an inference tensor cannot take part in autograd
        x = x.detach()
        prepared.append(x.requires_grad_() if x.is_floating_point() else x)
    return tuple(prepared)


def check_grad_mode() -> None:
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "PrunedGradient needs autograd, which torch.inference_mode() switches off for good; "
            "call attribute() outside inference_mode (torch.no_grad() is fine)"
        )


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_CAPTUM_LOG_DIR = os.path.join("captum", "log")


def _outside_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first frame outside captum-prune
    (and outside Captum's ``log_usage`` wrapper), i.e. at the caller's line."""
    frame = sys._getframe(2)  # the caller of warn()
    level = 2
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        inside = filename.startswith(_PACKAGE_DIR + os.sep) or _CAPTUM_LOG_DIR in filename
        if not inside:
            return level
        frame = frame.f_back
        level += 1
    return level


class EmptyAttributionWarning(UserWarning):
    r"""Warned by :meth:`PrunedGradient.attribute <captum_prune.PrunedGradient.attribute>`
    when, for some examples, the pruned network no longer depends on the input, so their
    attribution is all zeros (lower the sparsity).

    The randomisation checks of :mod:`captum_prune.evaluation` expect such maps from
    randomised models and count them, so they do not repeat the warning; filter it elsewhere
    with ``warnings.filterwarnings("ignore", category=EmptyAttributionWarning)``.
    """


def warn(message: str, category: type = UserWarning) -> None:
    r"""``warnings.warn`` attributed to the caller's line, wherever inside the package it is
    raised."""
    # Level 1 (for both) is this function's frame.
    warnings.warn(message, category, stacklevel=_outside_stacklevel())


def warn_if_training(hooks: Any) -> None:
    r"""Warns when a module the call reached is in train mode and has state or randomness.

    In train mode BatchNorm couples the examples and updates its running statistics on every
    forward, and dropout differs between the scoring and the pruned pass. The buffers of every
    train-mode module reached are restored after the call (by ``NeuronHooks``).
    """
    training = hooks.stateful_training_modules()
    if not training:
        return
    names = _module_names(hooks)
    first = names.get(id(training[0]), type(training[0]).__name__)
    warn(
        f"forward_func is in train mode with {len(training)} module(s) that have buffers or "
        f"randomness (e.g. '{first}'): the scoring and gradient passes then see different "
        "networks and examples of a batch affect each other. Call model.eval() first for the "
        "method's results; buffers are restored after the call."
    )


def _module_names(hooks: Any) -> dict:
    names = {}
    for root in hooks.reached[:1]:
        for name, module in root.named_modules():
            names[id(module)] = name or type(module).__name__
    return names
