import pytest
import torch

from captum_prune.evaluation import reduce_channels, trapezoid_auc
from captum_prune.evaluation._explain import as_target, attribute, mean_std


def test_reduce_channels_definitions():
    a = torch.tensor([[1.0, -3.0], [2.0, 0.5]]).view(2, 1, 1, 2).transpose(0, 1)  # 1 x 2 x 1 x 2
    # Channel values per pixel: pixel 0 -> (1, 2), pixel 1 -> (-3, 0.5).
    assert reduce_channels(a, "max_abs").flatten().tolist() == [2.0, 3.0]
    assert reduce_channels(a, "signed_max_abs").flatten().tolist() == [2.0, -3.0]
    assert reduce_channels(a, "max_positive").flatten().tolist() == [2.0, 0.5]
    assert reduce_channels(a, "sum").flatten().tolist() == [3.0, -2.5]
    assert reduce_channels(a[:, 0]).shape == (1, 1, 2)  # 3-D input is single-channel


def test_signed_max_abs_is_consistent_with_max_abs():
    a = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(reduce_channels(a, "signed_max_abs").abs(), reduce_channels(a, "max_abs"))


def test_attribute_accepts_methods_and_callables():
    class Method:
        def attribute(self, inputs, target=None, scale=1.0):
            return (inputs * scale,)  # a 1-tuple, as Captum returns for tuple inputs

    x = torch.ones(2, 1, 2, 2)
    t = torch.tensor([0, 1])
    assert torch.equal(attribute(Method(), x, t, scale=2.0), 2 * x)
    assert torch.equal(attribute(lambda inp, tgt: inp + tgt.view(-1, 1, 1, 1), x, t)[1], 2 * x[1])
    with pytest.raises(TypeError, match="explain"):
        attribute(3, x, t)
    with pytest.raises(ValueError, match="maps"):
        attribute(lambda inp, tgt: inp[:1], x, t)


def test_helpers():
    assert as_target(None, 3, torch.device("cpu")) is None
    assert as_target(2, 3, torch.device("cpu")).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="target"):
        as_target(torch.tensor([0.5]), 3, torch.device("cpu"))
    mean, std = mean_std([[1.0, float("nan")], [3.0, 2.0]])
    assert mean.tolist() == [2.0, 2.0] and std[0] == pytest.approx(2**0.5) and std[1] == 0.0
    assert trapezoid_auc([0, 1, 3], [0, 2, 2]) == pytest.approx(1 + 4)
    with pytest.raises(ValueError, match="reduction"):
        reduce_channels(torch.zeros(1, 1, 2, 2), "mean")
