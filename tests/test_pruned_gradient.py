"""The method's properties: what the paper and the authors' code say it computes."""
import copy

import pytest
import torch
from captum.attr import NoiseTunnel, Saliency
from torch import nn

from captum_prune import PrunedGradient
from tests._reference import reference_pathway_gradient


def _logits_target(model, x):
    with torch.no_grad():
        return model(x).argmax(1).tolist()


@pytest.mark.parametrize("fixture", ["bias_free_net", "resnet18", "vgg11"])
def test_sparsity_zero_is_the_plain_gradient(fixture, request):
    model = request.getfixturevalue(fixture)
    size = 16 if fixture == "bias_free_net" else 32
    x = torch.randn(2, 3, size, size)
    target = [1, 3]
    plain = Saliency(model).attribute(x, target=target, abs=False)
    for threshold in ("reference", "exact"):
        got = PrunedGradient(model).attribute(
            x, target=target, sparsity=0.0, threshold=threshold
        )
        assert torch.equal(got, plain), threshold


@pytest.mark.parametrize("percent", [30, 70, 90])
def test_reference_semantics_on_torchvision_models(percent, resnet18, vgg11):
    torch.manual_seed(percent)
    for model, size in ((resnet18, 48), (vgg11, 32)):
        x = torch.randn(2, 3, size, size)
        target = _logits_target(model, x)
        expected, kept = reference_pathway_gradient(model, x, target, percent)
        pg = PrunedGradient(model)
        # One example at a time the result is bit-identical to the authors' semantics.
        for i in range(x.shape[0]):
            got = pg.attribute(x[i : i + 1], target=target[i], sparsity=percent / 100)
            assert torch.equal(got[0], expected[i])
        if percent == 70:
            # Batched, float32 convolutions round differently, which can flip a neuron that
            # sits exactly at the threshold; in float64 the batch agrees with the oracle too.
            model64, x64 = copy.deepcopy(model).double(), x.double()
            expected64, _ = reference_pathway_gradient(model64, x64, target, percent)
            got64 = PrunedGradient(model64).attribute(x64, target=target, sparsity=0.7)
            torch.testing.assert_close(got64, expected64, rtol=1e-9, atol=1e-12)
        path = pg.pathway(x, target=target, sparsity=percent / 100)
        assert path.kept_fraction.tolist() == pytest.approx(kept, abs=1e-7)
        # Zero-score neurons are always pruned, so at most the asked fraction survives (up
        # to the percentile's interpolation, 1 neuron) and at low sparsity far fewer (spec 2b).
        assert all(k <= 1 - percent / 100 + 1 / path.num_neurons for k in kept)
        if percent == 30:
            assert all(k < 0.65 for k in kept)


def test_resnet_reused_relu_gets_one_mask_per_call(resnet18):
    x = torch.randn(1, 3, 32, 32)
    path = PrunedGradient(resnet18).pathway(x, target=0, sparsity=0.9)
    assert len(path.layer_names) == 17  # 9 ReLU modules, 17 calls
    assert "layer1.0.relu#0" in path.layer_names and "layer1.0.relu#1" in path.layer_names
    first = path.layer_names.index("layer1.0.relu#0")
    second = path.layer_names.index("layer1.0.relu#1")
    assert not torch.equal(path.masks[first], path.masks[second])


@pytest.mark.parametrize(
    "criterion, fixture",
    [("taylor", "resnet18"), ("integrated_gradients", "bias_free_net")],
)
def test_batch_equals_one_at_a_time(criterion, fixture, request):
    torch.manual_seed(2)
    # float64, so that batched and single convolutions cannot round a neuron across the
    # threshold differently (in float32 that can flip one neuron, see the reference test).
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    target = [4, 0, 2]
    pg = PrunedGradient(copy.deepcopy(request.getfixturevalue(fixture)).double())
    kw = dict(sparsity=0.8, criterion=criterion, n_steps=3)
    batch = pg.attribute(x, target=target, **kw)
    single = torch.cat(
        [pg.attribute(x[i : i + 1], target=target[i], **kw) for i in range(3)]
    )
    torch.testing.assert_close(batch, single, rtol=1e-9, atol=1e-12)


def test_noise_tunnel_with_zero_noise_equals_plain_call(bias_free_net, images16):
    pg = PrunedGradient(bias_free_net)
    plain = pg.attribute(images16, target=[0, 1, 2], sparsity=0.7)
    smooth = NoiseTunnel(pg).attribute(
        images16, nt_samples=3, stdevs=0.0, target=[0, 1, 2], sparsity=0.7
    )
    torch.testing.assert_close(smooth, plain, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("sparsity", [0.5, 0.7, 0.9])
def test_completeness_of_the_pruned_bias_free_network(sparsity, bias_free_net, vgg11):
    # With fixed masks a bias-free ReLU network is positively homogeneous, so
    # sum(x * grad) equals the pruned target logit (spec section 8).
    for model, size in ((bias_free_net, 16), (vgg11, 32)):
        torch.manual_seed(3)
        x = torch.randn(2, 3, size, size)
        pg = PrunedGradient(model)
        attribution = pg.attribute(x, target=[1, 2], sparsity=sparsity)
        path = pg.pathway(x, target=[1, 2], sparsity=sparsity)
        torch.testing.assert_close(
            (x * attribution).flatten(1).sum(1), path.pruned_target, rtol=1e-4, atol=1e-5
        )


def test_pruning_more_lowers_the_pruned_logit(resnet18):
    torch.manual_seed(4)
    x = torch.randn(1, 3, 64, 64)
    target = _logits_target(resnet18, x)
    pg = PrunedGradient(resnet18)
    logits = [
        pg.pathway(x, target=target, sparsity=s).pruned_target.item()
        for s in (0.0, 0.7, 0.8, 0.9, 0.95, 0.99)
    ]
    assert logits == sorted(logits, reverse=True)
    assert logits[-1] < logits[0]


@pytest.mark.parametrize("selection", ["global", "per_layer"])
def test_exact_mode_keeps_exact_count(selection, resnet18):
    x = torch.randn(2, 3, 32, 32)
    path = PrunedGradient(resnet18).pathway(
        x, target=3, sparsity=0.3, threshold="exact", selection=selection
    )
    n = path.num_neurons
    kept = sum(m.flatten(1).sum(1) for m in path.masks)
    assert kept.tolist() == [n - round(0.3 * n)] * 2
    if selection == "per_layer":
        for mask in path.masks:
            size = mask[0].numel()
            assert mask.flatten(1).sum(1).tolist() == [size - int(0.3 * size + 0.5)] * 2


def test_pathway_keeps_the_highest_scores(resnet18):
    x = torch.randn(1, 3, 32, 32)
    path = PrunedGradient(resnet18).pathway(x, target=1, sparsity=0.9)
    scores = torch.cat([s.flatten() for s in path.scores])
    keep = torch.cat([m.flatten() for m in path.masks])
    assert scores[keep].min() > scores[~keep].max()
    # Scores are |activation x gradient|, so kept neurons are live.
    assert path.dead_fraction().item() == 0.0


class _BiasedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 12)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(12, 12)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(12, 3)

    def forward(self, x):
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(x)))))


def _brute_force_layer_ig(model, x, target, layer, n_points=200):
    """IG of the target w.r.t. one layer's output, by a fine midpoint rule."""
    acts = {}
    handle = layer.register_forward_hook(lambda m, a, o: acts.setdefault("a", o.detach()))
    model(x)
    handle.remove()
    total = torch.zeros_like(acts["a"])
    for k in range(n_points):
        alpha = (k + 0.5) / n_points
        holder = {}

        def scale(m, a, o, holder=holder, alpha=alpha):
            holder["z"] = (o.detach() * alpha).requires_grad_()
            return holder["z"]

        handle = layer.register_forward_hook(scale)
        out = model(x)[:, target].sum()
        handle.remove()
        total += torch.autograd.grad(out, holder["z"])[0]
    return (acts["a"] * total / n_points).abs()


def test_integrated_gradients_criterion_matches_a_brute_force_integral():
    torch.manual_seed(5)
    model = _BiasedNet().eval()
    x = torch.randn(2, 6)
    pg = PrunedGradient(model)
    kw = dict(target=1, sparsity=0.5, criterion="integrated_gradients")
    # The same midpoint rule: the per-call scaling and the averaging are what is tested.
    path = pg.pathway(x, n_steps=200, method="riemann_middle", **kw)
    for layer, scores in zip((model.relu1, model.relu2), path.scores):
        expected = _brute_force_layer_ig(model, x, 1, layer)
        torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_equals_taylor_ranking_only_without_biases(bias_free_net):
    torch.manual_seed(6)
    x = torch.randn(2, 3, 16, 16)
    pg = PrunedGradient(bias_free_net)
    taylor = pg.pathway(x, target=0, sparsity=0.7)
    ig = pg.pathway(x, target=0, sparsity=0.7, criterion="integrated_gradients", n_steps=4)
    assert taylor.jaccard(ig).tolist() == [1.0, 1.0]  # positively homogeneous: same ranking
    biased = _BiasedNet().eval()
    xb = torch.randn(4, 6)
    pb = PrunedGradient(biased)
    a = pb.pathway(xb, target=0, sparsity=0.5, threshold="exact")
    b = pb.pathway(xb, target=0, sparsity=0.5, threshold="exact", criterion="integrated_gradients")
    assert a.jaccard(b).min() < 1.0


def test_integrated_gradients_internal_batch_size_does_not_change_result(bias_free_net):
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    pg = PrunedGradient(copy.deepcopy(bias_free_net).double())
    kw = dict(target=[1, 2], sparsity=0.9, criterion="integrated_gradients", n_steps=3)
    whole = pg.attribute(x, **kw)
    chunked = pg.attribute(x, internal_batch_size=4, **kw)
    torch.testing.assert_close(chunked, whole, rtol=1e-9, atol=1e-12)


def test_random_criterion_prunes_about_the_asked_fraction_per_layer(resnet18):
    torch.manual_seed(7)
    x = torch.randn(2, 3, 32, 32)
    path = PrunedGradient(resnet18).pathway(x, target=0, sparsity=0.6, criterion="random")
    fractions = path.kept_fraction_per_layer
    assert torch.allclose(fractions, torch.full_like(fractions, 0.4), atol=0.1)
    # Random pathways include dead neurons; the Taylor pathway does not.
    assert path.dead_fraction().min() > 0.1


def test_attribution_is_signed_detached_and_shaped_like_inputs(resnet18):
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    a = PrunedGradient(copy.deepcopy(resnet18).double()).attribute(x, target=1, sparsity=0.8)
    assert a.shape == x.shape and a.dtype == x.dtype and not a.requires_grad
    assert (a > 0).any() and (a < 0).any()


class _InPlaceAfterActivation(nn.Module):
    """A GELU output changed in place downstream (``h += r``), which autograd allows."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 2)
        self.act = nn.GELU()

    def forward(self, x):
        h = self.act(self.fc1(x))
        h += self.fc2(x)
        return self.fc3(h)


@pytest.mark.parametrize("criterion", ["taylor", "integrated_gradients"])
def test_scores_use_the_activation_before_a_later_in_place_change(criterion):
    torch.manual_seed(8)
    model = _InPlaceAfterActivation().eval()
    x = torch.randn(3, 4)
    path = PrunedGradient(model).pathway(x, target=1, sparsity=0.5, criterion=criterion)
    with torch.no_grad():
        a = model.act(model.fc1(x))
    torch.testing.assert_close(path.activations[0], a)
    # y is linear in a with slope fc3.weight[1], so Taylor and IG scores are both |a * w|.
    torch.testing.assert_close(path.scores[0], (a * model.fc3.weight[1]).abs())
