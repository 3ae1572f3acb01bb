import json

import pytest
import torch

from captum_prune.evaluation import RandomAttribution, symmetric_relevance_gain
from tests.evaluation._models import LinearPixelModel


@pytest.fixture(scope="module")
def setup():
    g = torch.Generator().manual_seed(0)
    weights = torch.zeros(1, 1, 8, 8)
    weights[0, 0, 1:4, 1:7] = 0.4  # output = known linear function of 18 pixels
    inputs = torch.rand(64, 1, 8, 8, generator=g)
    return LinearPixelModel(weights).eval(), inputs, weights


def test_perfect_map_beats_its_reverse_and_a_random_map_scores_zero(setup):
    model, inputs, weights = setup
    # Contribution of every pixel: weight * value (all positive), the ideal ordering.
    perfect = weights * inputs
    reverse = -perfect + perfect.amax()  # the same pixels, ranked the other way round
    fractions = (0.1, 0.25, 0.5, 0.75, 1.0)
    good = symmetric_relevance_gain(model, inputs, perfect, 0, fractions, baseline=0.0)
    bad = symmetric_relevance_gain(model, inputs, reverse, 0, fractions, baseline=0.0)
    assert good.mean > 0.1 and bad.mean < -0.1
    assert (good.values > bad.values).all()
    # The LeRF order is the exact reverse of the MoRF order: swapping the map swaps the curves.
    assert torch.allclose(good.lerf, bad.morf) and torch.allclose(good.morf, bad.lerf)
    # A random map: 0 in expectation, inside its CI, far from the perfect map.
    control = symmetric_relevance_gain(model, inputs, RandomAttribution(model), 0, fractions,
                                       baseline=0.0)
    ci = control.ci()["srg"]
    assert ci.contains(0.0) and abs(control.mean) < good.mean / 5
    # At fraction 1 (everything removed) both curves meet.
    assert torch.allclose(good.lerf[:, -1], good.morf[:, -1])


def test_srg_is_the_difference_of_the_aucs_and_json(setup):
    model, inputs, weights = setup
    result = symmetric_relevance_gain(model, inputs[:4], weights.expand(4, 1, 8, 8), 0,
                                      (0.5, 1.0), baseline=0.0)
    p0 = result.original_probability.numpy()
    lerf, morf = result.lerf.numpy(), result.morf.numpy()
    by_hand = (0.25 * (p0 + lerf[:, 0]) + 0.25 * (lerf[:, 0] + lerf[:, 1])
               - 0.25 * (p0 + morf[:, 0]) - 0.25 * (morf[:, 0] + morf[:, 1]))
    assert result.values == pytest.approx(by_hand)
    data = json.loads(json.dumps(result.to_dict(per_example=True), allow_nan=False))
    assert data["protocol"] == "srg" and data["ci"]["srg"]["n"] == 4


def test_srg_with_imputation_and_bad_removal(setup):
    model, inputs, weights = setup
    result = symmetric_relevance_gain(model, inputs[:4], weights * inputs[:4], 0, (0.3, 0.6),
                                      removal="noisy_linear")
    assert result.removal == "noisy_linear" and result.values.shape == (4,)
    with pytest.raises(ValueError, match="removal"):
        symmetric_relevance_gain(model, inputs, weights * inputs, removal="blur")
    with pytest.raises(ValueError, match="at least one pixel"):
        symmetric_relevance_gain(model, inputs, weights * inputs, removal="noisy_linear")
