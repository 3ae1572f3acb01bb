r"""Running the model and picking the target values, with Captum's conventions."""
from typing import Any, Tuple

from captum._utils.common import _run_forward, _select_targets
from torch import Tensor


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


def _check_multi_index(index: Any, shape, target: Any) -> None:
    if len(index) != len(shape) - 1:
        raise ValueError(
            f"target: the tuple {index!r} has {len(index)} indices but the model output of "
            f"shape {tuple(shape)} needs {len(shape) - 1} (one per non-batch dimension)"
        )
    for dim, value in enumerate(index):
        _check_index(value, shape[dim + 1], f"index {dim} of {index!r}", target, shape)


def validate_target(target: Any, output: Tensor, num_examples: int) -> None:
    r"""Checks ``target`` against the model output and raises a clear error.

    The one target check of the package: every function that takes a Captum-style
    ``target`` and a model output should call it before selecting from the output.

    Accepts every form Captum does: ``None``, an int, a tuple of ints, a 0-dim or one-element
    tensor, a list or 1-D tensor with one int (or tuple) per example.
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
        if target.numel() == 1:
            target = int(target.item())
        elif target.dim() == 1 and not target.is_floating_point():
            target = target.tolist()
        else:
            raise ValueError(
                f"target: a tensor target must have one element or be 1-D with one integer "
                f"per example, got shape {tuple(target.shape)} and dtype {target.dtype}"
            )
    if output.dim() < 2:
        raise ValueError(
            f"target: the model output of shape {tuple(shape)} has one value per example; "
            "pass target=None"
        )
    if isinstance(target, tuple):
        _check_multi_index(target, shape, target)
    elif isinstance(target, list):
        if len(target) != num_examples:
            raise ValueError(
                f"target: a list target needs one entry per example ({num_examples}), "
                f"got {len(target)}"
            )
        for item in target:
            if isinstance(item, tuple):
                _check_multi_index(item, shape, target)
            else:
                if output.dim() != 2:
                    raise ValueError(
                        f"target: per-example ints need a 2-D output, the model output has "
                        f"shape {tuple(shape)}; give one tuple per example"
                    )
                _check_index(item, shape[1], "each entry", target, shape)
                if item < 0:
                    raise ValueError(
                        f"target: per-example targets must be >= 0, got {item}"
                    )
    else:
        if output.dim() != 2:
            # As Captum's gradient methods, which refuse to differentiate several outputs.
            raise ValueError(
                f"target: an int selects one value per example only from a 2-D output; the "
                f"model output of shape {tuple(shape)} has {output[0].numel()} values per "
                f"example, so give a tuple with one index per non-batch dimension "
                f"(e.g. {tuple([0] * (output.dim() - 1))})"
            )
        _check_index(target, shape[1], "an int target", target, shape)


def forward_with_target(
    forward_func, inputs: Tuple[Tensor, ...], target: Any, additional_forward_args: Any
) -> Tuple[Tensor, Tensor]:
    r"""Runs ``forward_func`` and returns ``(output, target values per example)``."""
    output = _run_forward(forward_func, inputs, None, additional_forward_args)
    if not isinstance(output, Tensor):
        raise TypeError(
            f"forward_func must return a tensor, got {type(output).__name__}"
        )
    validate_target(target, output, inputs[0].shape[0])
    if target is None:
        return output, output.reshape(-1)
    return output, _select_targets(output, target)

