import json

import numpy as np
import pytest
import torch

from captum_prune.evaluation import RandomAttribution, noisy_linear_impute, road
from captum_prune.evaluation.road import NEIGHBOUR_WEIGHTS
from tests.evaluation._models import LinearPixelModel


def _dense_imputation(image, removed):
    """The 8-neighbour system written out by hand: one equation per removed pixel,
    sum_q w_pq (x_p - x_q) = 0 over the in-image neighbours q, x_q known where kept."""
    c, h, w = image.shape
    pixels = [(y, x) for y in range(h) for x in range(w) if removed[y, x]]
    var = {p: i for i, p in enumerate(pixels)}
    a = np.zeros((len(pixels), len(pixels)))
    b = np.zeros((len(pixels), c))
    for i, (y, x) in enumerate(pixels):
        for dy, dx, weight in NEIGHBOUR_WEIGHTS:
            ny, nx = y + dy, x + dx
            if not (0 <= ny < h and 0 <= nx < w):
                continue
            a[i, i] += weight
            if removed[ny, nx]:
                a[i, var[(ny, nx)]] -= weight
            else:
                b[i] += weight * image[:, ny, nx]
    solution = np.linalg.solve(a, b)
    out = image.copy()
    for i, (y, x) in enumerate(pixels):
        out[:, y, x] = solution[i]
    return out


def test_imputation_matches_the_dense_hand_computation_on_4x4():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 2, 4, 4, generator=g, dtype=torch.float64)
    removed = torch.zeros(1, 4, 4, dtype=torch.bool)
    removed[0, 0, 0] = removed[0, 1, 1] = removed[0, 1, 2] = removed[0, 2, 1] = True
    removed[0, 3, 3] = True  # a corner: only 3 neighbours, weights renormalised
    out = noisy_linear_impute(image, removed, noise=0.0)
    expected = _dense_imputation(image[0].numpy(), removed[0].numpy())
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-12)
    # Every imputed pixel is the weighted mean of its neighbours in the output.
    y, x = 1, 1
    total = sum(w * out[0, :, y + dy, x + dx] for dy, dx, w in NEIGHBOUR_WEIGHTS)
    assert torch.allclose(out[0, :, y, x], total, atol=1e-12)
    # Kept pixels are untouched, and the input is not modified.
    assert torch.equal(out[0][:, ~removed[0]], image[0][:, ~removed[0]])


def test_noise_is_seeded_and_only_on_imputed_pixels():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 8, 8, generator=g)
    removed = torch.rand(2, 8, 8, generator=g) < 0.5
    clean = noisy_linear_impute(images, removed, noise=0.0)
    noisy = noisy_linear_impute(images, removed, noise=0.01, seed=3)
    assert torch.equal(noisy, noisy_linear_impute(images, removed, noise=0.01, seed=3))
    diff = (noisy - clean).permute(1, 0, 2, 3)
    assert torch.equal(diff[:, ~removed], torch.zeros_like(diff[:, ~removed]))
    assert diff[:, removed].std().item() == pytest.approx(0.01, rel=0.2)
    # Batching does not change the noise of an image.
    second = noisy_linear_impute(images[1:], removed[1:], noise=0.01, seed=3, index_offset=1)
    assert torch.equal(second[0], noisy[1])


def test_imputation_errors():
    with pytest.raises(ValueError, match="kept pixel"):
        noisy_linear_impute(torch.zeros(1, 1, 3, 3), torch.ones(1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="removed"):
        noisy_linear_impute(torch.zeros(1, 1, 3, 3), torch.ones(1, 4, 4, dtype=torch.bool))


@pytest.fixture
def linear_setup():
    g = torch.Generator().manual_seed(2)
    weights = torch.zeros(1, 1, 8, 8)
    weights[0, 0, 2:5, 2:6] = 1.0  # the output depends only on these 12 pixels
    inputs = torch.rand(12, 1, 8, 8, generator=g) * 0.2
    inputs[:, :, 2:5, 2:6] += 0.8
    perfect = weights.expand(12, 1, 8, 8).clone()
    return LinearPixelModel(weights).eval(), inputs, perfect


def test_road_separates_a_perfect_map_from_the_random_control(linear_setup):
    model, inputs, perfect = linear_setup
    fractions = (0.1, 0.3, 0.5)
    good = road(model, inputs, perfect, target=0, fractions=fractions)
    control = road(model, inputs, RandomAttribution(model), target=0, fractions=fractions)
    assert good.probability["morf"].shape == (12, 3)
    # MoRF 10% = 6 of the 12 object pixels imputed from lower neighbours: the logit falls.
    assert good.auc("morf") < control.auc("morf")
    assert good.auc("lerf") > control.auc("lerf")
    assert good.srg().mean > control.srg().mean
    assert good.accuracy("lerf").tolist() == [1.0, 1.0, 1.0]
    assert good.tie_break == "random" and float(good.tied_share.mean()) == 1.0
    data = json.loads(json.dumps(good.to_dict(per_example=True), allow_nan=False))
    assert data["morf"]["ci"]["auc"]["n"] == 12 and len(data["lerf"]["per_example"]) == 12


def test_road_matches_imputing_by_hand(linear_setup):
    model, inputs, perfect = linear_setup
    result = road(model, inputs[:2], perfect[:2], target=0, fractions=(0.25,), modes="lerf",
                  noise=0.0)
    from captum_prune.evaluation import rank_pixels

    removed = rank_pixels(perfect[:2], largest=False).removed(16)
    x_tilde = noisy_linear_impute(inputs[:2], removed, noise=0.0)
    expected = torch.softmax(model(x_tilde), 1)[:, 0].double()
    assert torch.allclose(result.probability["lerf"][:, 0], expected, atol=1e-6)
    assert result.modes == ["lerf"]
    with pytest.raises(ValueError, match="both modes"):
        result.srg()


def test_road_rejects_full_removal_and_bad_modes(linear_setup):
    model, inputs, perfect = linear_setup
    with pytest.raises(ValueError, match="at least one pixel"):
        road(model, inputs, perfect, fractions=(0.5, 1.0))
    with pytest.raises(ValueError, match="modes"):
        road(model, inputs, perfect, modes=("morf", "up"))
