r"""Helpers that the tools share, one definition each.

The evaluation protocols (:mod:`captum_prune.evaluation`), the embedded data, models and
training (:mod:`captum_prune.zoo`), the Captum Insights support
(:mod:`captum_prune.integrations`) and the command line (:mod:`captum_prune.cli`) all use
these; the method itself does not.

- :func:`is_int`, :func:`is_number` and :func:`check_int`: "an int, but not a bool" checks.
- :func:`predict`: a model's arg-max class, in batches, without gradients.
- :func:`atomic_write`: a file written through a temporary file and :func:`os.replace`, with
  the permissions the umask gives a new file.
"""
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Type, Union

import torch
from torch import Tensor

PathLike = Union[str, os.PathLike]


def is_int(value: Any) -> bool:
    r"""Whether ``value`` is a Python int and not a bool (``True`` is an int in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    r"""Whether ``value`` is a Python int or float and not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(
    name: str, value: Any, *, minimum: Optional[int] = None, error: Type[Exception] = ValueError
) -> int:
    r"""Returns ``value`` if it is an int (not a bool) of at least ``minimum``.

    Args:
        name (str): The argument's name, for the message.
        value: What to check.
        minimum (int, optional): The smallest allowed value. Default: None (any int)
        error (type, optional): The exception raised for a value that is not an int; one that
                    is too small raises :class:`ValueError`. Default: ``ValueError``
    """
    wanted = "an int" if minimum is None else f"an int of at least {minimum}"
    if not is_int(value):
        raise error(f"{name} must be {wanted}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return value


def predict(
    model: Callable[[Tensor], Tensor],
    inputs: Tensor,
    batch_size: int = 256,
    device: Optional[torch.device] = None,
) -> Tensor:
    r"""The arg-max class of ``model`` for every input, in batches, under ``torch.no_grad``.

    Args:
        model (callable): Maps a batch of inputs to class scores.
        inputs (Tensor): Inputs of shape ``(N, ...)``.
        batch_size (int, optional): Inputs per forward pass. Default: 256
        device (torch.device, optional): Where each batch is moved before the forward pass.
                    Default: None (where it is)

    Returns:
        Tensor: ``N`` class indices, on the device of the model's output.
    """
    check_int("batch_size", value=batch_size, minimum=1)
    with torch.no_grad():
        return torch.cat([
            model(inputs[s:s + batch_size] if device is None
                  else inputs[s:s + batch_size].to(device)).argmax(dim=1)
            for s in range(0, len(inputs), batch_size)
        ])


def _umask() -> int:
    # Reading the umask means setting it; it is set straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, data: Union[str, bytes]) -> Path:
    r"""
    Writes ``data`` to ``path`` through a temporary file in the same folder and
    :func:`os.replace`, so readers never see a half-written file. The file gets the mode
    ``open()`` would give a new file (``0o666`` less the umask), not the ``0o600`` of
    :func:`tempfile.mkstemp`.

    Args:
        path (str or PathLike): Destination; its folder must exist.
        data (str or bytes): Text (written as UTF-8) or bytes.

    Returns:
        Path: ``path``.
    """
    path = Path(path)
    blob = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
