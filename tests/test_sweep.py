"""PrunedGradient.sweep (several sparsities from one scoring pass) and sparsity="auto"."""
import pytest
import torch
from captum.attr import NoiseTunnel
from torch import nn

from captum_prune import PrunedGradient
from captum_prune._auto import AUTO_RESOLUTION, AUTO_STEPS

PAPER = [0.0, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99]


def _confident_classifier(seed=0, classes=6):
    """A small ReLU MLP whose logits are large enough for probabilities well above uniform."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 48), nn.ReLU(), nn.Linear(48, 48), nn.ReLU(),
                          nn.Linear(48, classes))
    with torch.no_grad():
        model[4].weight.mul_(6.0)
    return model.eval()


@pytest.fixture(scope="module")
def classifier():
    return _confident_classifier()


@pytest.fixture(scope="module")
def rows():
    torch.manual_seed(3)
    return torch.randn(16, 12)


def _change(path, target):
    index = torch.as_tensor(target).view(-1, 1)
    p = torch.softmax(path.original_output, 1).gather(1, index).squeeze(1).double()
    q = torch.softmax(path.pruned_output, 1).gather(1, index).squeeze(1).double()
    return (q - p).abs() / p


# ---------------------------------------------------------------------- sweep


@pytest.mark.parametrize("options", [
    {},
    {"threshold": "exact"},
    {"selection": "per_layer"},
    {"criterion": "integrated_gradients", "n_steps": 3},
])
def test_sweep_equals_separate_calls_bit_for_bit(options, resnet18, images16):
    target = [1, 4, 7]
    maps = PrunedGradient(resnet18).sweep(images16, target, sparsities=PAPER, **options)
    pg = PrunedGradient(resnet18)
    for sparsity, swept in zip(PAPER, maps):
        alone = pg.attribute(images16, target=target, sparsity=sparsity, **options)
        assert torch.equal(swept, alone), sparsity


def test_sweep_pathways_equal_separate_pathway_calls(bias_free_net, images16):
    pg = PrunedGradient(bias_free_net)
    entries = [0.9, 0.5, "auto", 0.9]
    maps, paths = pg.sweep(images16, 2, sparsities=entries, return_pathways=True)
    for entry, swept_map, swept in zip(entries, maps, paths):
        alone = pg.pathway(images16, target=2, sparsity=entry)
        assert all(torch.equal(a, b) for a, b in zip(swept.masks, alone.masks))
        assert all(torch.equal(a, b) for a, b in zip(swept.scores, alone.scores))
        assert torch.equal(swept.pruned_output, alone.pruned_output)
        assert torch.equal(swept.sparsity, alone.sparsity)
        assert torch.equal(swept_map, pg.attribute(images16, target=2, sparsity=entry))
    # The entries share one scoring pass: the same score tensors.
    assert paths[0].scores is paths[1].scores


def test_sweep_with_random_scores_is_one_draw(bias_free_net, images16):
    pg = PrunedGradient(bias_free_net)
    torch.manual_seed(5)
    maps = pg.sweep(images16, 0, sparsities=[0.3, 0.6], criterion="random")
    for sparsity, swept in zip([0.3, 0.6], maps):
        torch.manual_seed(5)
        alone = pg.attribute(images16, target=0, sparsity=sparsity, criterion="random")
        assert torch.equal(swept, alone)


class _CountForwards:
    def __init__(self, module):
        self.forwards = 0
        self.handle = module.register_forward_pre_hook(self._count)

    def _count(self, module, args):
        self.forwards += 1


def test_sweep_costs_one_scoring_pass_plus_one_pass_per_sparsity(classifier, rows):
    counter = _CountForwards(classifier[0])
    pg = PrunedGradient(classifier)
    try:
        pg.sweep(rows, target=1, sparsities=PAPER)
        assert counter.forwards == 1 + len(PAPER)
        counter.forwards = 0
        pg.attribute(rows, target=1, sparsity="auto")
        assert counter.forwards == 1 + AUTO_STEPS + 1  # scoring, bisection, pruned pass
    finally:
        counter.handle.remove()


def test_sweep_leaves_the_inputs_alone(bias_free_net, images16):
    x = images16.clone()
    PrunedGradient(bias_free_net).sweep(x, 1, sparsities=[0.5, "auto"], return_pathways=True)
    assert torch.equal(x, images16) and not x.requires_grad


@pytest.mark.parametrize("sparsities, error, message", [
    ([], ValueError, "sparsities: must not be empty"),
    (0.9, ValueError, "sparsities: expected a sequence"),
    ("auto", ValueError, "sparsities: expected a sequence"),
    ([0.5, 1.0], ValueError, r"sparsities\[1\]: sparsity: must be in \[0.0, 1.0\)"),
    ([0.5, "most"], TypeError, r"sparsities\[1\]: sparsity: expected a number"),
])
def test_bad_sparsities_name_the_argument(sparsities, error, message, bias_free_net, images16):
    with pytest.raises(error, match=message):
        PrunedGradient(bias_free_net).sweep(images16, 0, sparsities=sparsities)


# ---------------------------------------------------------------------- auto


EMPTY = "ignore:PrunedGradient. the pruned network no longer depends"


@pytest.mark.filterwarnings(EMPTY)
@pytest.mark.parametrize("output_change", [0.02, 0.15, 0.5])
@pytest.mark.parametrize("threshold", ["reference", "exact"])
def test_auto_meets_its_bound_on_every_example_and_is_maximal(
    output_change, threshold, classifier, rows
):
    target = classifier(rows).argmax(1)
    pg = PrunedGradient(classifier)
    path = pg.pathway(rows, target=target, sparsity="auto", output_change=output_change,
                      threshold=threshold)
    change = _change(path, target)
    assert bool((change <= output_change).all()), change.max()
    chosen = path.sparsity
    assert chosen.dtype == torch.float64 and chosen.shape == (16,)
    assert bool((chosen > 0).any())  # something was pruned
    # Maximal up to the resolution: one grid step more breaks the bound (or reaches 1).
    larger = chosen + AUTO_RESOLUTION
    inside = larger < 1
    assert inside.any()
    above = pg.pathway(rows, target=target, sparsity=larger.clamp(max=1 - AUTO_RESOLUTION),
                       output_change=output_change, threshold=threshold)
    assert bool((_change(above, target)[inside] > output_change).all())
    # The chosen sparsity, passed back per example, gives the same pathway and map.
    again = pg.pathway(rows, target=target, sparsity=chosen, threshold=threshold)
    assert all(torch.equal(a, b) for a, b in zip(path.masks, again.masks))
    assert torch.equal(
        pg.attribute(rows, target=target, sparsity="auto", output_change=output_change,
                     threshold=threshold),
        pg.attribute(rows, target=target, sparsity=chosen, threshold=threshold))


@pytest.mark.filterwarnings(EMPTY)
def test_a_looser_bound_allows_more_pruning(classifier, rows):
    target = classifier(rows).argmax(1)
    pg = PrunedGradient(classifier)
    tight = pg.pathway(rows, target=target, sparsity="auto", output_change=0.02).sparsity
    loose = pg.pathway(rows, target=target, sparsity="auto", output_change=0.5).sparsity
    assert bool((loose.mean() > tight.mean()))


@pytest.mark.filterwarnings(EMPTY)
def test_auto_through_noise_tunnel(classifier, rows):
    pg = PrunedGradient(classifier)
    torch.manual_seed(0)
    smooth = NoiseTunnel(pg).attribute(rows[:4], nt_samples=3, stdevs=0.1, target=2,
                                       sparsity="auto", output_change=0.15)
    assert smooth.shape == rows[:4].shape and smooth.abs().sum() > 0


def test_auto_needs_class_probabilities_or_a_probability_function(rows):
    torch.manual_seed(0)
    scalar = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 1)).eval()
    pg = PrunedGradient(scalar)
    with pytest.raises(ValueError, match=r"probability: sparsity='auto' compares softmax"):
        pg.attribute(rows, target=None, sparsity="auto")
    path = pg.pathway(rows, target=None, sparsity="auto", probability=torch.sigmoid,
                      output_change=0.1)
    p, q = torch.sigmoid(path.original_output), torch.sigmoid(path.pruned_output)
    assert bool(((q - p).abs() <= 0.1 * p).all())
    with pytest.raises(ValueError, match="probability: must return a tensor of the model"):
        pg.attribute(rows, sparsity="auto", probability=lambda out: out.sum())


@pytest.mark.parametrize("value, error", [
    (0.0, ValueError), (-0.1, ValueError), (float("inf"), ValueError), ("15%", ValueError),
    (True, ValueError),
])
def test_bad_output_change_names_the_argument(value, error, classifier, rows):
    with pytest.raises(error, match="output_change: must be a positive finite number"):
        PrunedGradient(classifier).attribute(rows, target=0, sparsity="auto",
                                             output_change=value)


def test_a_per_example_sparsity_tensor_selects_each_example_at_its_own(classifier, rows):
    pg = PrunedGradient(classifier)
    per_example = torch.tensor([0.5, 0.9] * 8, dtype=torch.float64)
    path = pg.pathway(rows, target=1, sparsity=per_example)
    for value in (0.5, 0.9):
        rows_at = (per_example == value).nonzero().flatten()
        alone = pg.pathway(rows[rows_at], target=1, sparsity=value)
        for mask, mask_alone in zip(path.masks, alone.masks):
            assert torch.equal(mask[rows_at], mask_alone)
    with pytest.raises(ValueError, match="sparsity: a tensor sparsity must be 1-D"):
        pg.attribute(rows, target=1, sparsity=torch.tensor(0.5))
