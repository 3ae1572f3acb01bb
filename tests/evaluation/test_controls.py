import pytest
import torch
from captum.attr import Attribution

from captum_prune.evaluation import (
    RandomAttribution,
    cascading_randomization,
    pixel_perturbation,
)


def test_random_maps_are_seeded_shaped_and_leave_the_global_rng_alone():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    control = RandomAttribution(model, seed=1)
    assert isinstance(control, Attribution)
    x = torch.zeros(2, 3, 2, 2, dtype=torch.float64)
    state = torch.random.get_rng_state()
    first = control.attribute(x, target=0, sparsity=0.9)  # other methods' options are ignored
    second = control.attribute(x)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert first.shape == x.shape and first.dtype == torch.float64
    assert not torch.equal(first, second)  # the stream moves on ...
    again = RandomAttribution(model, seed=1)
    assert torch.equal(again.attribute(x), first)  # ... and restarts with the seed
    assert not torch.equal(RandomAttribution(model, seed=2).attribute(x), first)
    a, b = control.attribute((x, torch.zeros(2, 5)))
    assert a.shape == x.shape and b.shape == (2, 5)
    with pytest.raises(ValueError, match="seed"):
        RandomAttribution(model, seed=-1)


def test_the_control_runs_in_the_protocols():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(2 * 36, 3)).eval()
    images = torch.rand(3, 1, 6, 6)
    result = pixel_perturbation(model, images, RandomAttribution(model), fractions=(0.5,))
    assert result.changes.shape == (3, 1) and float(result.tied_share.sum()) == 0.0
    # One instance per randomised model, same seed: the same map, so it fails the check.
    check = cascading_randomization(model, RandomAttribution, images, ssim_win_size=3)
    assert (check.spearman == 1).all()
