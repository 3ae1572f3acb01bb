import json

import pytest
import torch
from captum.attr import Saliency

from captum_prune.evaluation import pixel_perturbation, reduce_channels, remove_top_pixels
from captum_prune.evaluation.perturbation import PerturbationResult

SIZE = 12


def _object_mask():
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[3:7, 4:9] = True  # 20 of 144 pixels
    return mask


class RegionModel(torch.nn.Module):
    r"""Two-class model whose output depends only on the pixels of a fixed object region."""

    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask.float())

    def forward(self, x):
        z = (x * self.mask).sum(dim=(1, 2, 3)) / self.mask.sum()
        return torch.stack([z, -z], dim=1)


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(0)
    mask = _object_mask()
    inputs = torch.rand(16, 3, SIZE, SIZE, generator=g) + 0.5
    perfect = mask.float().expand(16, 3, SIZE, SIZE).clone()
    random = torch.rand(16, 3, SIZE, SIZE, generator=g)
    return RegionModel(mask).eval(), inputs, perfect, random


def test_perfect_map_beats_random_map_in_lerf_and_morf(setup):
    model, inputs, perfect, random = setup
    fractions = (0.05, 0.2, 0.5)
    lerf_perfect = pixel_perturbation(model, inputs, perfect, 0, fractions, baseline=0.0)
    lerf_random = pixel_perturbation(model, inputs, random, 0, fractions, baseline=0.0)
    # Removing only background pixels cannot change an output that ignores the background.
    assert torch.equal(lerf_perfect.changes, torch.zeros_like(lerf_perfect.changes))
    assert lerf_perfect.auc == 0.0
    assert (lerf_random.mean > 0).all() and lerf_random.auc > 0
    morf_perfect = pixel_perturbation(model, inputs, perfect, 0, fractions, "morf", 0.0)
    morf_random = pixel_perturbation(model, inputs, random, 0, fractions, "morf", 0.0)
    assert (morf_perfect.mean > morf_random.mean).all()
    # LeRF change grows with the share removed for a random map (expected share of object pixels).
    assert (lerf_random.mean[1:] >= lerf_random.mean[:-1]).all()


def test_change_matches_hand_computation(setup):
    model, inputs, perfect, _ = setup
    # MoRF 10% of 144 pixels = 14 pixels, all inside the 20-pixel object (ties: row-major order).
    result = pixel_perturbation(model, inputs, perfect, 0, (0.1,), "morf", 0.0,
                                tie_break="position")
    mask = _object_mask()
    removed = torch.zeros(SIZE * SIZE, dtype=torch.bool)
    removed[torch.nonzero(mask.flatten()).flatten()[:14]] = True
    x_tilde = inputs * ~removed.view(1, 1, SIZE, SIZE)
    p = torch.softmax(model(inputs), 1)[:, 0]
    p_tilde = torch.softmax(model(x_tilde), 1)[:, 0]
    expected = ((p - p_tilde).abs() / p).double()
    assert torch.allclose(result.changes[:, 0], expected, atol=1e-6)


def test_auc_is_trapezoid_from_origin():
    changes = torch.tensor([[0.1, 0.3], [0.3, 0.5]], dtype=torch.float64)  # means 0.2, 0.4
    result = PerturbationResult("lerf", [0.1, 0.2], changes, torch.zeros(2), torch.ones(2))
    # 0.5*0.1*(0+0.2) + 0.5*0.1*(0.2+0.4) = 0.01 + 0.03
    assert result.auc == pytest.approx(0.04)
    assert result.to_dict()["std"] == pytest.approx([0.1414213562, 0.1414213562])


def test_method_callable_and_tensor_agree(setup):
    model, inputs, _, _ = setup
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * SIZE * SIZE, 4))
    torch.manual_seed(0)
    maps = Saliency(linear).attribute(inputs, target=linear(inputs).argmax(1))
    a = pixel_perturbation(linear, inputs, maps, batch_size=5)
    b = pixel_perturbation(linear, inputs, Saliency(linear), batch_size=16)
    c = pixel_perturbation(linear, inputs, lambda x, t: Saliency(linear).attribute(x, target=t),
                           progress=True)
    assert torch.equal(a.target, linear(inputs).argmax(1))
    # Batch size only changes float32 rounding of the forward pass.
    assert torch.allclose(a.changes, b.changes, atol=1e-6)
    assert torch.allclose(a.changes, c.changes, atol=1e-6)


def test_remove_top_pixels_removes_exactly_the_top_k():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(5, 3, 10, 10, generator=g)
    maps = torch.randn(5, 3, 10, 10, generator=g)
    baseline = torch.tensor([-1.0, -2.0, -3.0])
    out = remove_top_pixels(images, maps, 0.23, baseline)
    removed = out[:, 0] == -1.0
    assert removed.flatten(1).sum(1).tolist() == [23] * 5
    assert torch.equal(out[:, 1] == -2.0, removed) and torch.equal(out[:, 2] == -3.0, removed)
    assert torch.equal(out[~removed.unsqueeze(1).expand_as(out)],
                       images[~removed.unsqueeze(1).expand_as(out)])
    score = reduce_channels(maps, "max_abs")
    for s, r in zip(score, removed):
        assert s[r].min() > s[~r].max()
    low = remove_top_pixels(images, maps, 0.77, baseline, largest=False)[:, 0] == -1.0
    assert torch.equal(low, ~removed)  # LeRF 77% is the complement of MoRF 23%


def test_position_rule_breaks_ties_by_row_major_position():
    images = torch.zeros(2, 1, 4, 4)
    maps = torch.ones(2, 1, 4, 4)
    maps[1, 0, 0, 0] = 0.0  # the unique least important pixel
    top = remove_top_pixels(images, maps, 0.25, 1.0, tie_break="position")[:, 0]
    low = remove_top_pixels(images, maps, 0.25, 1.0, largest=False, tie_break="position")[:, 0]
    assert top[0].flatten().tolist() == [1.0] * 4 + [0.0] * 12
    assert top[1].flatten().tolist() == [0.0] + [1.0] * 4 + [0.0] * 11
    assert low[0].flatten().tolist() == [1.0] * 4 + [0.0] * 12
    assert low[1].flatten().tolist() == [1.0] * 4 + [0.0] * 12


def test_remove_top_pixels_does_not_depend_on_batch_size_and_keeps_input():
    g = torch.Generator().manual_seed(2)
    images = torch.rand(7, 2, 6, 6, generator=g)
    copy = images.clone()
    maps = torch.rand(7, 6, 6, generator=g)
    a = remove_top_pixels(images, maps, 0.5, batch_size=2)
    b = remove_top_pixels(images, maps, 0.5)
    assert torch.equal(a, b) and torch.equal(images, copy)
    # Default baseline: the per-channel mean of the images.
    mean = images.mean(dim=(0, 2, 3))
    assert torch.allclose(a[0, :, maps[0].argmax() // 6, maps[0].argmax() % 6], mean)


def test_result_to_dict_is_strict_json(setup):
    model, inputs, perfect, _ = setup
    result = pixel_perturbation(model, inputs, perfect, 0, baseline=0.0)
    data = json.loads(json.dumps(result.to_dict(per_example=True), allow_nan=False))
    assert data["fractions"] == pytest.approx([0.01 * k for k in range(1, 11)])
    assert len(data["changes"]) == 16 and len(data["mean"]) == 10


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"mode": "both"}, "mode"),
        ({"fractions": (0.2, 0.1)}, "fractions"),
        ({"fractions": (0.5, 1.5)}, "fractions"),
        ({"fractions": ()}, "fractions"),
        ({"baseline": torch.zeros(5)}, "baseline"),
        ({"batch_size": 0}, "batch_size"),
        ({"attributions": torch.zeros(16, 3, 5, 5)}, "attributions"),
        ({"inputs": torch.zeros(16, 3 * SIZE * SIZE)}, "inputs"),
        ({"target": [0, 1]}, "target"),
    ],
)
def test_bad_arguments_raise(setup, kwargs, name):
    model, inputs, perfect, _ = setup
    args = {"inputs": inputs, "attributions": perfect, **kwargs}
    with pytest.raises(ValueError, match=name):
        pixel_perturbation(model, **args)


def test_remove_top_pixels_bad_fraction():
    with pytest.raises(ValueError, match="fraction"):
        remove_top_pixels(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4), 1.5)


def _reference_changes(model, inputs, maps, fractions, mode, baseline, seed):
    """The protocol written out plainly: one ranking of every map, one removal per fraction."""
    from captum_prune.evaluation.perturbation import n_removed, resolve_baseline
    from captum_prune.evaluation.ranking import rank_pixels

    base = resolve_baseline(baseline, inputs)
    ranking = rank_pixels(maps, mode == "morf", "random", seed)
    with torch.no_grad():
        probs = torch.softmax(model(inputs), 1)
        target = probs.argmax(1, keepdim=True)
        p0 = probs.gather(1, target).squeeze(1)
        rows = []
        for f in fractions:
            removed = ranking.removed(n_removed(f, SIZE * SIZE)).unsqueeze(1)
            p = torch.softmax(model(torch.where(removed, base, inputs)), 1)
            rows.append((p0 - p.gather(1, target).squeeze(1)).abs()
                        / p0.clamp_min(torch.finfo(p0.dtype).tiny))
    return torch.stack(rows, 1).double(), ranking.tied_share


@pytest.mark.parametrize("mode", ["lerf", "morf"])
@pytest.mark.parametrize("baseline", [None, 0.0, "channels", "image"])
def test_changes_equal_the_protocol_written_out(mode, baseline):
    g = torch.Generator().manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * SIZE * SIZE, 5)).eval()
    inputs = torch.rand(10, 3, SIZE, SIZE, generator=g)
    maps = torch.randn(10, 3, SIZE, SIZE, generator=g).round()  # many ties
    baseline = {"channels": torch.tensor([0.1, 0.2, 0.3]),
                "image": torch.rand(10, 3, SIZE, SIZE, generator=g)}.get(baseline, baseline)
    fractions = (0.05, 0.1, 0.3)
    expected, tied = _reference_changes(model, inputs, maps, fractions, mode, baseline, seed=3)
    whole = pixel_perturbation(model, inputs, maps, None, fractions, mode, baseline,
                               batch_size=10, seed=3)
    assert torch.equal(whole.changes, expected) and torch.equal(whole.tied_share, tied)
    # In batches of 4 only the forward's float32 rounding may differ.
    batched = pixel_perturbation(model, inputs, maps, None, fractions, mode, baseline,
                                 batch_size=4, seed=3)
    assert torch.allclose(batched.changes, expected, atol=1e-6)
    assert torch.equal(batched.tied_share, tied)
