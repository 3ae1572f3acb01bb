r"""Helpers shared by the commands: option checks, threads, devices and Captum's warnings."""
import contextlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

import torch

from captum_prune.cli.errors import CommandError


@contextlib.contextmanager
def torch_threads(n: Optional[int]) -> Iterator[None]:
    r"""Runs the block with ``n`` torch CPU threads (``None`` or 0: unchanged), then restores."""
    if n is None or n == 0:
        yield
        return
    if n < 0:
        raise CommandError(f"--threads must be positive (or 0 for torch's choice), got {n}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def quiet_captum() -> Iterator[None]:
    r"""Hides, inside the block only, the warnings Captum gives on every call (inputs that need
    no gradient, backward hooks next to in-place modules); the caller's filters are restored."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"captum\..*")
        warnings.filterwarnings(
            "ignore", message=r".*(backward hook|inplace|detach|requires_grad|did not already).*"
        )
        yield


def resolve_device(name: str) -> torch.device:
    r"""``--device`` as a :class:`torch.device`; ``auto`` picks CUDA when available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CommandError(
            f"--device: unknown device {name!r}; use cpu, cuda, cuda:N or auto"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {name}: CUDA is not available on this machine")
    return device


def parse_sparsity(text: str) -> Union[float, str]:
    r"""``--sparsity``'s type: a number, or ``auto`` (PrunedGradient's ``sparsity="auto"``)."""
    return "auto" if text == "auto" else float(text)


def check_sparsity(value: Union[float, str]) -> Union[float, str]:
    r"""Validates ``--sparsity``."""
    if value == "auto":
        return value
    if not 0.0 <= value < 1.0:
        raise CommandError(f"--sparsity must be in [0, 1), got {value}")
    return value


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe_writable(folder: Path) -> Optional[str]:
    r"""None if a file can be created in ``folder``, else the reason."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".captum-prune-probe-"):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None


def check_output_folder(out: Path, option: str = "--out", writable_parent: bool = False) -> None:
    r"""Validates an output folder before any work: it is a folder or can be created, and
    files can be written into it (or, where it does not exist yet, into the folder it would be
    created in). ``writable_parent`` is accepted for compatibility; the check is the same."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise CommandError(f"{option} {out}: a file of that name exists; give a folder")
        reason = _probe_writable(out)
        if reason:
            raise CommandError(f"{option} {out}: cannot write into this folder ({reason})")
        return
    ancestor = _existing_ancestor(out)
    if not ancestor.is_dir():
        raise CommandError(f"{option} {out}: cannot create it, {ancestor} is a file, not a folder")
    reason = _probe_writable(ancestor)
    if reason:
        raise CommandError(f"{option} {out}: cannot create it in {ancestor} ({reason})")


def check_output_file(path: Path, option: str) -> None:
    r"""Validates an output file before any work: not a folder, and its folder exists and can
    be written, or can be created."""
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"{option} {path}: is a folder; give a file name")
    folder = _existing_ancestor(path.parent)
    if not folder.is_dir():
        raise CommandError(f"{option} {path}: cannot write it, {folder} is a file, not a folder")
    reason = _probe_writable(folder)
    if reason:
        raise CommandError(f"{option} {path}: cannot write into {folder} ({reason})")


def parse_choices(text: Optional[str], allowed: Sequence[str], option: str) -> List[str]:
    r"""A comma-separated subset of ``allowed`` (case-insensitive), in the order of ``allowed``;
    ``None`` or ``"all"``: all of them."""
    if text is None or text.strip().lower() == "all":
        return list(allowed)
    names = [p.strip().lower() for p in text.split(",") if p.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise CommandError(
            f"{option}: unknown {unknown or text!r}; choose from {', '.join(allowed)}"
        )
    return [n for n in allowed if n in names]


def check_seed(seed: int) -> int:
    r"""Validates ``--seed``."""
    if seed < 0:
        raise CommandError(f"--seed must be non-negative, got {seed}")
    return seed


@contextlib.contextmanager
def option_errors(name: str) -> Iterator[None]:
    r"""Turns the ValueError of a :mod:`captum_prune.zoo` loader into a CommandError that names
    the option it came from."""
    try:
        yield
    except ValueError as error:
        raise CommandError(f"{name} {error}") from None
