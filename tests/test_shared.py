"""Tests of captum_prune._shared: the helpers every tool uses."""
import os
import stat

import pytest
import torch
from torch import nn

from captum_prune._shared import atomic_write, check_int, is_int, is_number, predict


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a.json"
    atomic_write(path, "old")
    atomic_write(path, b"\x00new")
    assert path.read_bytes() == b"\x00new"
    assert os.listdir(tmp_path) == ["a.json"]


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    atomic_write(path, "complete")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, "half")
    assert path.read_text() == "complete"
    assert os.listdir(tmp_path) == ["results.json"]


@pytest.mark.parametrize("value, integer, number", [
    (3, True, True), (0, True, True), (True, False, False), (False, False, False),
    (2.0, False, True), ("3", False, False), (None, False, False),
])
def test_int_and_number_checks_refuse_bools(value, integer, number):
    assert is_int(value) is integer and is_number(value) is number


def test_check_int_names_the_argument_and_picks_the_error():
    assert check_int("n", 3, minimum=1) == 3
    with pytest.raises(ValueError, match="n must be an int of at least 1"):
        check_int("n", 0, minimum=1)
    with pytest.raises(TypeError, match="seed must be an int"):
        check_int("seed", True, error=TypeError)
    with pytest.raises(ValueError, match="seed"):
        check_int("seed", 1.5)


def test_predict_is_the_batched_argmax_without_gradients():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x = torch.randn(10, 4)
    predicted = predict(model, x, batch_size=3)
    assert torch.equal(predicted, model(x).argmax(1))
    assert not predicted.requires_grad
    with pytest.raises(ValueError, match="batch_size"):
        predict(model, x, batch_size=0)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_respects_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "out.txt", "text")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert path.read_text() == "text"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left
