r"""Running the model and picking the target values, with Captum's conventions.

:func:`validate_target` follows the target rules of Captum's gradient methods
(``captum._utils.common._select_targets`` followed by their one-value-per-example check) and
says in a ``ValueError`` or ``TypeError`` naming ``target`` what Captum would refuse with an
``AssertionError`` or an indexing error:

- ``None``: the output has one value per example.
- an int or a tuple of ints (also a one-element integer tensor): indices into the non-batch
  dimensions, the same for every example, leading dimensions first (negative indices count
  from the end); what is left after them must be one value per example (so an int selects
  from a ``(N, C)`` output, or from ``(N, C, 1)``, but not from ``(N, 3, 5)``).
- a list, or a 1-D integer tensor, with one entry per example: ints (``>= 0``) on a 2-D
  output, or tuples of one length as above. The type of the entries is that of the first (as
  in Captum); mixed lists are refused.
"""
import math
from typing import Any, Sequence, Tuple

import torch
from torch import Tensor, nn

from captum_prune._captum import run_forward, select_targets


def _check_index(value: Any, size: int, what: str, target: Any, shape) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"target: {what} must be an int, got {type(value).__name__} (target={target!r})"
        )
    if not -size <= value < size:
        raise ValueError(
            f"target: {what} {value} is out of range for the model output of shape "
            f"{tuple(shape)}; allowed is {-size} <= index < {size}"
        )


def _check_indices(index: Sequence[int], shape, target: Any, what: str) -> None:
    """An index into the non-batch dimensions that leaves one value per example."""
    if len(index) > len(shape) - 1:
        raise ValueError(
            f"target: {what} {tuple(index)!r} has {len(index)} indices but the model output of "
            f"shape {tuple(shape)} needs {len(shape) - 1} (one per non-batch dimension)"
        )
    for dim, value in enumerate(index):
        _check_index(value, shape[dim + 1], f"index {dim} of {what}", target, shape)
    left = math.prod(shape[1 + len(index):])
    if left != 1:
        full = tuple([0] * (len(shape) - 1))
        raise ValueError(
            f"target: {what} {target!r} selects {left} values per example from the model "
            f"output of shape {tuple(shape)}, and a gradient needs one (as in Captum's gradient "
            f"methods); give a tuple with one index per non-batch dimension, e.g. {full}"
        )


def _as_python(target: Tensor) -> Any:
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise ValueError(
            f"target: a tensor target must hold integer indices, got dtype {target.dtype}"
        )
    if target.numel() == 1:
        return int(target.item())
    if target.dim() == 1:
        return target.tolist()
    raise ValueError(
        f"target: a tensor target must have one element or be 1-D with one integer per "
        f"example, got shape {tuple(target.shape)} and dtype {target.dtype}"
    )


def validate_target(target: Any, output: Tensor, num_examples: int) -> None:
    r"""Checks ``target`` against the model output and raises a clear error.

    The one target check of the package: every function that takes a Captum-style
    ``target`` and a model output should call it before selecting from the output (see the
    module docstring for the rules).
    """
    if output.dim() == 0 or output.shape[0] != num_examples:
        if target is None and output.numel() == 1:
            return
        raise ValueError(
            f"forward_func returned an output of shape {tuple(output.shape)} for "
            f"{num_examples} examples; its first dimension must be the batch"
        )
    shape = output.shape
    if target is None:
        if output[0].numel() != 1:
            raise ValueError(
                f"target: required, because the model output of shape {tuple(shape)} has "
                f"{output[0].numel()} values per example; pass an int, a tuple or one per example"
            )
        return
    if isinstance(target, Tensor):
        target = _as_python(target)
    if output.dim() < 2:
        raise ValueError(
            f"target: the model output of shape {tuple(shape)} has one value per example; "
            "pass target=None"
        )
    if isinstance(target, tuple):
        _check_indices(target, shape, target, "the tuple")
    elif isinstance(target, list):
        _check_list(target, shape, num_examples)
    elif isinstance(target, bool) or not isinstance(target, int):
        raise TypeError(
            f"target: expected None, an int, a tuple, a tensor or a list, got "
            f"{type(target).__name__}"
        )
    else:
        _check_index(target, shape[1], "an int target", target, shape)
        _check_indices((target,), shape, target, "an int target")


def _check_list(target: list, shape, num_examples: int) -> None:
    if len(target) != num_examples:
        raise ValueError(
            f"target: a list target needs one entry per example ({num_examples}), "
            f"got {len(target)}"
        )
    tuples = isinstance(target[0], tuple)
    for item in target:
        if isinstance(item, tuple) != tuples:
            raise TypeError(
                f"target: a list target holds either ints or tuples (as its first entry), got "
                f"{type(item).__name__} among {type(target[0]).__name__}s"
            )
        if tuples:
            if len(item) != len(target[0]):
                raise ValueError(
                    f"target: the tuples of a list target must have the same length, got "
                    f"{target[0]!r} and {item!r}"
                )
            _check_indices(item, shape, target, "the tuple")
            continue
        if len(shape) != 2:
            raise ValueError(
                f"target: per-example ints need a 2-D output, the model output has "
                f"shape {tuple(shape)}; give one tuple per example"
            )
        _check_index(item, shape[1], "each entry", target, shape)
        if item < 0:
            raise ValueError(f"target: per-example targets must be >= 0, got {item}")


def target_values(output: Tensor, target: Any, num_examples: int) -> Tensor:
    r"""``(N,)``: the target's value for each example (after :func:`validate_target`)."""
    validate_target(target, output, num_examples)
    return select_target_values(output, target, num_examples)


def select_target_values(output: Tensor, target: Any, num_examples: int) -> Tensor:
    r"""``(N,)``: the target's values, for a target already validated on this shape."""
    if target is None:
        return output.reshape(num_examples)
    if type(target) is int:
        # Captum's output[:, target], without the indexing's tuple parsing.
        return output.select(1, target).reshape(num_examples)
    return select_targets(output, target).reshape(num_examples)


def plain_target(target: Any) -> Any:
    r"""A validated target in the form :func:`select_target_values` selects fastest: a
    one-element integer tensor as its int (what Captum selects by), anything else as it is."""
    if isinstance(target, Tensor) and target.numel() == 1:
        return _as_python(target)
    return target


def _plain_module(forward_func: Any) -> bool:
    """Whether ``forward_func`` is an ``nn.Module`` called through ``Module.__call__`` with no
    signature of its own: Captum's ``_run_forward`` then sees ``(*args, **kwargs)`` and calls
    it with the inputs, so the ``inspect.signature`` it would compute (20 us) is known."""
    if not isinstance(forward_func, nn.Module):
        return False
    cls = type(forward_func)
    if cls.__call__ is not nn.Module.__call__ or getattr(cls, "__signature__", None) is not None:
        return False
    own = forward_func.__dict__
    return "__signature__" not in own and "__wrapped__" not in own


def run_model(
    forward_func, inputs: Tuple[Tensor, ...], additional_forward_args: Any
) -> Tensor:
    r"""``forward_func(*inputs, *additional_forward_args)``, which must return a tensor (as
    Captum's ``_run_forward`` calls it)."""
    if _plain_module(forward_func):
        args = inputs if additional_forward_args is None else (*inputs, *additional_forward_args)
        output = forward_func(*args)
    else:
        output = run_forward(forward_func, inputs, None, additional_forward_args)
    if not isinstance(output, Tensor):
        raise TypeError(f"forward_func must return a tensor, got {type(output).__name__}")
    return output


def forward_with_target(
    forward_func, inputs: Tuple[Tensor, ...], target: Any, additional_forward_args: Any
) -> Tuple[Tensor, Tensor]:
    r"""Runs ``forward_func`` and returns ``(output, target values per example)``."""
    output = run_model(forward_func, inputs, additional_forward_args)
    return output, target_values(output, target, inputs[0].shape[0])
