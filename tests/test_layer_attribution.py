"""LayerPrunedGradient and NeuronPrunedGradient on small torch models (no transformers)."""
import warnings

import pytest
import torch
from captum.attr import LayerGradientXActivation, NeuronGradient
from torch import nn

from captum_prune import LayerPrunedGradient, NeuronPrunedGradient, PrunedGradient


class Pair(nn.Module):
    """A multi-output layer: returns two tensors."""

    def forward(self, x):
        return x * 2.0, x - 1.0


class Net(nn.Module):
    """An MLP with GELU and ReLU neurons, a multi-output module and an input identity."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Identity()
        self.fc1 = nn.Linear(6, 12)
        self.act1 = nn.GELU()
        self.pair = Pair()
        self.fc2 = nn.Linear(12, 12)
        self.act2 = nn.ReLU()
        self.fc3 = nn.Linear(12, 4)
        self.unused = nn.Linear(3, 3)

    def forward(self, x, scale=1.0):
        h = self.act1(self.fc1(self.inp(x)))
        a, b = self.pair(h)
        return self.fc3(self.act2(self.fc2(a + b))) * scale


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(1)
    return torch.randn(5, 6)


TARGET = [0, 1, 2, 3, 1]


@pytest.mark.parametrize("multiply", [True, False])
@pytest.mark.parametrize("to_input", [False, True])
def test_sparsity_zero_equals_layer_gradient_x_activation(net, x, multiply, to_input):
    for layer in (net.fc2, net.act1, net.pair, [net.fc1, net.pair, net.fc3]):
        ours = LayerPrunedGradient(net, layer, multiply_by_inputs=multiply).attribute(
            x, target=TARGET, sparsity=0.0, attribute_to_layer_input=to_input
        )
        theirs = LayerGradientXActivation(net, layer, multiply_by_inputs=multiply).attribute(
            x, target=TARGET, attribute_to_layer_input=to_input
        )
        if isinstance(layer, list):
            assert isinstance(ours, list) and len(ours) == len(theirs)
        ours, theirs = (ours, theirs) if isinstance(ours, list) else ([ours], [theirs])
        for mine, captum in zip(ours, theirs):
            assert type(mine) is type(captum)  # a tuple for the two-output layer
            for a, b in zip(*(((t,) if isinstance(t, torch.Tensor) else t)
                              for t in (mine, captum))):
                torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-7)


def test_pathway_and_input_gradient_are_pruned_gradients(net, x):
    """At the input (an identity), the plain layer gradient is PrunedGradient's map: the same
    pathway, the same pruned pass."""
    ours = LayerPrunedGradient(net, net.inp, multiply_by_inputs=False).attribute(
        x, target=TARGET, sparsity=0.6
    )
    theirs = PrunedGradient(net).attribute(x, target=TARGET, sparsity=0.6)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    plain = LayerGradientXActivation(net, net.inp, multiply_by_inputs=False).attribute(
        x, target=TARGET
    )
    assert not torch.allclose(ours, plain)


def test_own_units_pruned_only_for_a_neuron_layer(net, x):
    """A neuron layer's pruned units output zero, so their attribution is zero; the plain
    gradient is the one of what the rest of the pruned network receives."""
    path = PrunedGradient(net).pathway(x, target=TARGET, sparsity=0.6)
    keep = path.masks[path.layer_names.index("act1#0")]
    ours = LayerPrunedGradient(net, net.act1).attribute(x, target=TARGET, sparsity=0.6)
    assert bool((ours[~keep] == 0).all()) and bool((ours[keep] != 0).any())
    plain = LayerPrunedGradient(net, net.act1, multiply_by_inputs=False).attribute(
        x, target=TARGET, sparsity=0.6
    )
    torch.testing.assert_close(ours, plain * path.activations[0] * keep)
    assert bool((plain[~keep] != 0).any())
    # Not a neuron layer: its units are not masked.
    free = LayerPrunedGradient(net, net.act1, layers=[net.act2])
    assert (free.attribute(x, target=TARGET, sparsity=0.6) != 0).float().mean() > 0.9


def test_additional_forward_args_and_options(net, x):
    lpg = LayerPrunedGradient(net, net.fc2)
    twice = lpg.attribute(x, TARGET, additional_forward_args=2.0, sparsity=0.5)
    once = lpg.attribute(x, TARGET, sparsity=0.5)
    torch.testing.assert_close(twice, 2 * once)
    for criterion in ("integrated_gradients", "random"):
        assert lpg.attribute(x, TARGET, sparsity=0.5, criterion=criterion).shape == (5, 12)
    with pytest.raises(ValueError, match="sparsity"):
        lpg.attribute(x, TARGET, sparsity=1.0)


def test_errors_name_the_layer(net, x):
    with pytest.raises(ValueError, match="not a submodule"):
        LayerPrunedGradient(net, nn.Linear(2, 2))
    with pytest.raises(ValueError, match="not a submodule"):
        NeuronPrunedGradient(net, nn.ReLU())
    with pytest.raises(ValueError, match="device_ids"):
        LayerPrunedGradient(net, net.fc2, device_ids=[0])
    with pytest.raises(RuntimeError, match="'unused' was never called"):
        LayerPrunedGradient(net, net.unused).attribute(x, TARGET)
    with pytest.raises(RuntimeError, match="never called"):
        NeuronPrunedGradient(net, net.unused).attribute(x, 0)
    reused = nn.Sequential(nn.Linear(6, 6), nn.ReLU())
    model = nn.Sequential(reused, reused, nn.Linear(6, 2)).eval()
    with pytest.raises(RuntimeError, match="called 2 times per forward"):
        LayerPrunedGradient(model, reused[0]).attribute(x, 0)
    with pytest.raises(ValueError, match="no neuron layer runs before 'act1'"):
        NeuronPrunedGradient(net, net.act1).attribute(x, 0)
    with pytest.raises(ValueError, match="neuron_selector"):
        NeuronPrunedGradient(net, net.fc2).attribute(x, lambda out: out)


def _state(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [(m.training, dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
    )


def test_nothing_the_caller_owns_changes(net):
    x = torch.randn(5, 6)
    before, x_before = _state(net), x.clone()
    LayerPrunedGradient(net, [net.fc1, net.act1]).attribute(x, TARGET, sparsity=0.7)
    NeuronPrunedGradient(net, net.fc2).attribute(x, 3, sparsity=0.7)
    with pytest.raises(RuntimeError):
        LayerPrunedGradient(net, net.unused).attribute(x, TARGET)
    after = _state(net)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1:] == after[1:]
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None


@pytest.mark.parametrize("to_input", [False, True])
def test_neuron_sparsity_zero_equals_neuron_gradient(net, x, to_input):
    for layer, selector in (
        (net.act2, 3), (net.fc2, (slice(2, 5),)), (net.fc3, lambda out: out[:, 1] * 2),
        (net.pair, lambda outs: outs[0][:, 0] + outs[1][:, 2]),
    ):
        if to_input and isinstance(layer, Pair):
            continue
        with warnings.catch_warnings():  # a dead ReLU neuron's zero gradient is warned about
            warnings.simplefilter("ignore")
            ours = NeuronPrunedGradient(net, layer).attribute(
                x, selector, attribute_to_neuron_input=to_input, sparsity=0.0
            )
        theirs = NeuronGradient(net, layer).attribute(
            x, selector, attribute_to_neuron_input=to_input
        )
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)


def test_neuron_pathway_is_upstream_and_chosen_for_the_neuron(net, x):
    npg = NeuronPrunedGradient(net, net.fc2)
    path = npg.pathway(x, 4, sparsity=0.5, threshold="exact")
    assert path.layer_names == ["act1#0"]  # act2 runs after fc2: not part of its pathway
    assert torch.allclose(path.kept_fraction, torch.full((5,), 0.5))
    # The pathway is the one PrunedGradient selects when the neuron is the output.
    model = _TruncatedNet(net).eval()
    reference = PrunedGradient(model, layers=[net.act1]).pathway(
        x, sparsity=0.5, threshold="exact"
    )
    assert all(torch.equal(a, b) for a, b in zip(path.masks, reference.masks))
    torch.testing.assert_close(
        npg.attribute(x, 4, sparsity=0.5, threshold="exact"),
        PrunedGradient(model, layers=[net.act1]).attribute(x, sparsity=0.5, threshold="exact"),
    )


class _TruncatedNet(nn.Module):
    """``net`` up to fc2, returning fc2's unit 4."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        n = self.net
        a, b = n.pair(n.act1(n.fc1(n.inp(x))))
        return n.fc2(a + b)[:, 4]


def test_register_activation_type():
    from captum_prune import find_activation_layers, register_activation_type
    from captum_prune.layers import activation_types

    class Cube(nn.Module):
        def forward(self, x):
            return x ** 3

    model = nn.Sequential(nn.Linear(3, 3), Cube(), nn.Tanh())
    assert [n for n, _ in find_activation_layers(model)] == ["2"]
    register_activation_type(f"{__name__}.NotYetDefined")  # by name: resolved when it exists
    assert register_activation_type(Cube) is Cube
    try:
        assert [n for n, _ in find_activation_layers(model)] == ["1", "2"]
    finally:
        from captum_prune import layers

        layers._REGISTERED_TYPES.remove(Cube)
        layers._REGISTERED_PATHS.remove(f"{__name__}.NotYetDefined")
    assert Cube not in activation_types()
    with pytest.raises(TypeError, match="nn.Module subclass"):
        register_activation_type(3)
    with pytest.raises(ValueError, match="dotted path"):
        register_activation_type("Cube")


def test_layer_called_with_keyword_arguments_only():
    class KeywordNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.act = nn.ReLU()
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(self.act(self.fc(input=x)))

    model = KeywordNet().eval()
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="no positional tensor inputs"):
        LayerPrunedGradient(model, model.fc).attribute(x, 0, attribute_to_layer_input=True)
    assert LayerPrunedGradient(model, model.fc).attribute(x, 0, sparsity=0.5).shape == (2, 4)
