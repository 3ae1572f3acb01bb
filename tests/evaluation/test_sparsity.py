"""sparsity_sweep: maps, kept-class rate and output change at several sparsities."""
import json

import pytest
import torch
from torch import nn

from captum_prune import PrunedGradient
from captum_prune.evaluation import PAPER_SPARSITIES, sparsity_sweep
from captum_prune.evaluation.plots import (
    linearity_figure,
    sparsity_curves_figure,
    sparsity_maps_figure,
)


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(6 * 8 * 8, 24), nn.ReLU(), nn.Linear(24, 5))
    with torch.no_grad():
        model[5].weight.mul_(4.0)
    return model.eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(2)
    return torch.randn(10, 3, 8, 8)


@pytest.mark.filterwarnings("ignore:PrunedGradient. the pruned network no longer depends")
def test_sweep_measures_each_sparsity_as_separate_calls_would(classifier, images):
    entries = list(PAPER_SPARSITIES) + ["auto"]
    result = sparsity_sweep(classifier, images, sparsities=entries, batch_size=4)
    target = classifier(images).argmax(1)
    assert torch.equal(result.target, target)
    pg = PrunedGradient(classifier)
    for j, entry in enumerate(entries):
        path = pg.pathway(images, target=target, sparsity=entry)
        assert torch.equal(result.maps[j], pg.attribute(images, target=target, sparsity=entry))
        p = torch.softmax(path.original_output, 1)[torch.arange(10), target].double()
        q = torch.softmax(path.pruned_output, 1)[torch.arange(10), target].double()
        assert torch.allclose(result.change[:, j], (q - p).abs() / p)
        kept = path.pruned_output.argmax(1) == path.original_output.argmax(1)
        assert torch.equal(result.kept_class[:, j], kept)
        assert torch.equal(result.chosen[:, j], path.sparsity)
    assert result.kept_class_rate()[0] == 1.0 and bool((result.change[:, 0] == 0).all())
    assert bool((result.change[:, -1] <= 0.15).all())  # "auto" keeps its bound
    summary = result.to_dict(per_example=True)
    json.dumps(summary, allow_nan=False)
    assert summary["sparsities"] == entries and summary["output_change_bound"] == 0.15
    assert len(summary["kept_class_ci"]) == len(entries)
    # The figures draw.
    sparsity_maps_figure(result, images=torch.rand(10, 8, 8, 3).numpy(), examples=[0, 3])
    sparsity_curves_figure(result)


def test_sweep_leaves_the_caller_state_alone(classifier, images):
    x = images.clone()
    state = torch.get_rng_state()
    result = sparsity_sweep(classifier, x, target=1, sparsities=[0.5], keep_maps=False)
    assert result.maps == [] and torch.equal(x, images) and not x.requires_grad
    assert torch.equal(torch.get_rng_state(), state)
    assert result.output_change is None  # no "auto" entry


def test_linearity_figure_draws():
    from captum_prune.evaluation import local_linearity

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    result = local_linearity(model, torch.randn(3, 4), target=0, radii=[0.1, 1.0],
                             sparsities=[0.5], n_directions=2)
    fig = linearity_figure(result, title="t")
    assert len(fig.axes) == 2


@pytest.mark.filterwarnings("ignore:PrunedGradient. the pruned network no longer depends")
def test_sweep_figures_label_auto_by_the_shown_examples_with_fewer_examples_than_entries(
        classifier, images):
    # chosen is (N, S): the "auto" heading is the mean over the shown rows of its column
    # (indexing it as (S, N) failed with fewer examples than entries, and misread it otherwise)
    entries = list(PAPER_SPARSITIES) + ["auto"]
    result = sparsity_sweep(classifier, images[:3], sparsities=entries, batch_size=4)
    fig = sparsity_maps_figure(result, examples=[0, 2])
    expected = 100 * float(result.chosen[[0, 2], -1].mean())
    assert fig.axes[len(entries) - 1].get_title().endswith(f"({expected:.0f}% mean)")
    sparsity_curves_figure(result)
