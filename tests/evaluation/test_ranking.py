import pytest
import torch

from captum_prune.evaluation import pixel_perturbation, rank_pixels, remove_top_pixels
from captum_prune.evaluation.ranking import tied_share


def _sparse_maps():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 2, 6, 6, generator=g)
    maps[:, :, :3] = 0.0  # the top half of every map tied at exactly 0
    return maps


def test_tied_pixels_are_ordered_by_the_seed_reproducibly():
    maps = _sparse_maps()
    a = rank_pixels(maps, largest=False, seed=1).rank
    assert torch.equal(a, rank_pixels(maps, largest=False, seed=1).rank)
    b = rank_pixels(maps, largest=False, seed=2).rank
    assert not torch.equal(a, b)
    # The 18 tied zeros come first (LeRF) in any order, but every seed keeps them first.
    for rank in (a, b):
        assert sorted(rank[:, :3].flatten(1)[0].tolist()) == list(range(18))
    # ... and not in row-major order, which is what the position rule does.
    position = rank_pixels(maps, largest=False, tie_break="position").rank
    assert position[0, :3].flatten().tolist() == list(range(18))
    assert a[0, :3].flatten().tolist() != list(range(18))


def test_untied_maps_rank_exactly_as_by_position():
    g = torch.Generator().manual_seed(3)
    maps = torch.randn(4, 3, 5, 7, generator=g)
    for largest in (True, False):
        assert torch.equal(rank_pixels(maps, largest, seed=9).rank,
                           rank_pixels(maps, largest, "position").rank)
    assert rank_pixels(maps).tied_share.tolist() == [0.0] * 4


def test_tied_share_and_lerf_is_the_reverse_of_morf():
    maps = torch.tensor([[1.0, 2.0, 2.0, 5.0], [0.0, 0.0, 0.0, 0.0]]).view(2, 1, 2, 2)
    assert tied_share(maps.view(2, 4)).tolist() == [0.5, 1.0]
    ranking = rank_pixels(maps, seed=4)
    assert ranking.tied_share.tolist() == [0.5, 1.0]
    lerf = rank_pixels(maps, largest=False, seed=4).rank
    assert torch.equal(lerf, 3 - ranking.rank)
    assert ranking.rank[0].flatten()[3] == 0 and ranking.rank[0].flatten()[0] == 3
    sparse = rank_pixels(_sparse_maps())
    assert sparse.tied_share.tolist() == pytest.approx([0.5] * 3)


def test_random_ties_do_not_depend_on_batching():
    images = torch.rand(7, 2, 6, 6, generator=torch.Generator().manual_seed(5))
    maps = _sparse_maps().repeat(3, 1, 1, 1)[:7]
    a = remove_top_pixels(images, maps, 0.3, 0.0, batch_size=2, largest=False)
    b = remove_top_pixels(images, maps, 0.3, 0.0, largest=False)
    assert torch.equal(a, b)
    c = remove_top_pixels(images, maps, 0.3, 0.0, largest=False, seed=1)
    assert not torch.equal(a, c)


def test_pixel_perturbation_reports_the_tied_share_and_rule():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 36, 3)).eval()
    images = torch.rand(3, 2, 6, 6, generator=torch.Generator().manual_seed(6))
    maps = _sparse_maps()
    result = pixel_perturbation(model, images, maps, fractions=(0.25, 0.5), baseline=0.0)
    assert result.tie_break == "random"
    assert result.tied_share.tolist() == pytest.approx([0.5] * 3)
    d = result.to_dict()
    assert d["tie_break"] == "random" and d["tied_share"] == pytest.approx(0.5)
    old = pixel_perturbation(model, images, maps, fractions=(0.25, 0.5), baseline=0.0,
                             tie_break="position")
    # LeRF at 25% removes only tied zeros: which ones depends on the rule.
    assert not torch.equal(old.changes, result.changes)


def test_bad_tie_break_and_seed():
    with pytest.raises(ValueError, match="tie_break"):
        rank_pixels(torch.zeros(1, 2, 2), tie_break="first")
    with pytest.raises(ValueError, match="seed"):
        rank_pixels(torch.zeros(1, 2, 2), seed=-1)
