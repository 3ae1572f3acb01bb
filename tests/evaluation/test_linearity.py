"""local_linearity: the first-order error of the pathway and of the full network."""
import json
import math

import pytest
import torch
from torch import nn

from captum_prune import PrunedGradient
from captum_prune.evaluation import local_linearity
from captum_prune.evaluation.linearity import check_radii, unit_directions

RADII = [1e-3, 1e-2, 0.1, 0.3, 1.0, 3.0]


class BiasFreeReLUNet(nn.Module):
    """Convolutions, ReLUs, average pooling, no biases: for fixed masks the network is
    linear on each region where no ReLU unit changes state (no max-pool to bend it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(6 * 4 * 4, 12, bias=False)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(12, 4, bias=False)

    def forward(self, x):
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc2(self.relu3(self.fc1(x.flatten(1))))


@pytest.fixture(scope="module")
def relu_net():
    torch.manual_seed(0)
    return BiasFreeReLUNet().double().eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(3, 3, 8, 8, dtype=torch.float64)


def test_linear_model_has_zero_error_at_every_radius():
    torch.manual_seed(0)
    model = nn.Linear(10, 3).double()
    x = torch.randn(5, 10, dtype=torch.float64)
    result = local_linearity(model, x, target=[0, 1, 2, 0, 1], radii=RADII + [100.0],
                             sparsities=[], n_directions=6)
    assert result.networks == ["full network"]
    assert not torch.isnan(result.error).any()
    assert float(result.error.max()) < 1e-10  # zero up to float64 rounding
    assert torch.isnan(result.flipped).all()  # no ReLU units: undefined, not 0
    assert (result.stable_radius == 100.0).all()


def test_pathway_of_a_linear_model_is_linear_at_every_radius():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.Linear(32, 3)).double().eval()
    x = torch.randn(4, 10, dtype=torch.float64)
    method = PrunedGradient(model, layers=[model[0]])
    result = local_linearity(method, x, target=2, radii=RADII, sparsities=[0.5, 0.9],
                             n_directions=5)
    assert result.networks == ["full network", "pathway 0.5", "pathway 0.9"]
    assert float(result.error.max()) < 1e-10


def test_bias_free_relu_pathway_is_exactly_linear_where_no_unit_flips(relu_net, images):
    target = [0, 1, 3]
    method = PrunedGradient(relu_net)
    result = local_linearity(method, images, target=target, radii=RADII + [10.0, 30.0],
                             sparsities=[0.5, 0.8], full_network=True, n_directions=6)
    for k, sparsity in enumerate(result.sparsities):
        # Euler: the pruned network is positively homogeneous, so sum(x * A) = F at x.
        if sparsity is None:
            grads = torch.autograd.functional.jacobian(
                lambda x: relu_net(x)[torch.arange(3), target].sum(), images)
        else:
            grads = method.attribute(images, target=target, sparsity=sparsity)
        completeness = (images * grads).flatten(1).sum(1)
        assert torch.allclose(completeness, result.value[k], rtol=0, atol=1e-12)
    still = result.flipped == 0
    flipped = result.flipped > 0
    assert still.sum() > 20 and flipped.sum() > 20  # both cases occur at these radii
    # Where no unit flips, F(x + d) = sum((x + d) * A(x)): the first-order error is zero.
    assert float(result.error[still].max()) < 1e-9
    # Where units flip, it is not (the property is not vacuous).
    assert float(result.error[flipped].max()) > 1e-3
    # Larger radii flip more units.
    shares = result.flip_share()
    assert (shares[:, -1] > shares[:, 0]).all()


def test_seeded_and_independent_of_batching(relu_net, images):
    kwargs = dict(target=1, radii=[0.1, 1.0, 10.0], sparsities=[0.7], n_directions=4)
    first = local_linearity(relu_net, images, **kwargs)
    again = local_linearity(relu_net, images, **kwargs)
    assert torch.equal(first.error, again.error)
    # Batched convolutions round differently per batch size; the directions are the same.
    one_by_one = local_linearity(relu_net, images, batch_size=1, **kwargs)
    assert torch.allclose(first.error, one_by_one.error, rtol=1e-6, atol=1e-10)
    assert torch.equal(first.flipped, one_by_one.flipped)
    # Directions are seeded per example: the first two examples alone get the same ones.
    directions = unit_directions((images,), 4, seed=0)[0]
    assert torch.equal(directions[:2], unit_directions((images[:2],), 4, seed=0)[0])
    fewer = local_linearity(relu_net, images[:2], **kwargs)
    assert torch.allclose(fewer.error, first.error[:, :2], rtol=1e-9, atol=1e-12,
                          equal_nan=True)
    other = local_linearity(relu_net, images, seed=1, **kwargs)
    assert not torch.equal(other.error, first.error)
    norms = directions.flatten(2).norm(dim=2)
    assert torch.allclose(norms, torch.ones_like(norms))


def test_leaves_the_caller_state_alone(relu_net, images):
    x = images.clone().float()
    model = BiasFreeReLUNet().eval()
    params = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    result = local_linearity(model, x, target=0, radii=[0.1, 1.0], sparsities=[0.3],
                             n_directions=3, criterion="random")
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(x, images.float()) and not x.requires_grad
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))
    assert not model.training and not model._forward_hooks
    assert not any(m._forward_hooks for m in model.modules())
    # float32: error at a tiny radius is dominated by rounding, but finite and small.
    assert result.error.dtype == torch.float64


@pytest.mark.filterwarnings("ignore:PrunedGradient. the pruned network no longer depends")
def test_undefined_errors_are_counted_not_shown():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).double()
    with torch.no_grad():
        model[2].weight[0].zero_()  # the logit of class 0 does not depend on the input
    x = torch.randn(3, 4, dtype=torch.float64)
    result = local_linearity(model, x, target=0, radii=[0.1, 1.0], sparsities=[0.5],
                             n_directions=2)
    assert torch.isnan(result.error).all()
    assert result.n_undefined().tolist() == [[6, 6], [6, 6]]
    assert torch.isnan(result.stable_radius).all()
    summary = result.to_dict(per_example=True)
    text = json.dumps(summary)  # no NaN in the JSON: undefined is null
    assert "NaN" not in text
    assert summary["networks"][0]["median_error"] == [None, None]
    assert summary["networks"][1]["n_undefined"] == [6, 6]


def test_stable_radius_is_the_last_radius_below_tolerance(relu_net, images):
    result = local_linearity(relu_net, images, target=2, radii=RADII + [10.0, 30.0],
                             sparsities=[0.8], n_directions=4, tolerance=1e-6)
    worst = result.error.nan_to_num(0.0).amax(dim=3)  # (K, N, R)
    for k in range(len(result.networks)):
        for i in range(images.shape[0]):
            ok = [bool(e <= 1e-6) for e in worst[k, i]]
            expected = 0.0
            for radius, good in zip(result.radii, ok):
                if not good:
                    break
                expected = radius
            assert result.stable_radius[k, i].item() == expected
    d = result.to_dict()
    assert d["protocol"] == "local_linearity" and len(d["networks"]) == 2
    assert len(d["networks"][1]["ci"]) == len(result.radii)


@pytest.mark.parametrize("radii, message", [
    ([], "radii: must not be empty"),
    ([0.1, 0.01], "radii: must be strictly increasing"),
    ([-1.0], "radii: every radius must be positive"),
    ([math.inf], "radii: every radius must be positive"),
    ("abc", "radii: expected a sequence"),
])
def test_bad_radii_name_the_argument(radii, message):
    with pytest.raises(ValueError, match=message):
        check_radii(radii)


def test_bad_arguments_name_the_argument(relu_net, images):
    call = lambda **kw: local_linearity(relu_net, images, target=0, **kw)  # noqa: E731
    with pytest.raises(ValueError, match="radii:"):
        call(radii=[1.0, 1.0])
    with pytest.raises(ValueError, match="tolerance:"):
        call(tolerance=0.0)
    with pytest.raises(ValueError, match="sparsities:"):
        call(sparsities=[1.0])
    with pytest.raises(ValueError, match="sparsities:"):
        call(sparsities=0.5)
    with pytest.raises(ValueError, match="n_directions"):
        call(n_directions=0)
    with pytest.raises(ValueError, match="sparsities: empty"):
        call(sparsities=[], full_network=False)
