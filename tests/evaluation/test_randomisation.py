import json

import numpy as np
import pytest
import torch
from captum.attr import Saliency

from captum_prune.evaluation import (
    RandomAttribution,
    efficient_mprt,
    histogram_entropy,
    parameter_stages,
    smooth_mprt,
)


def _cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 10 * 10, 3)).eval()


def _constant(model):
    return lambda x, t: torch.zeros_like(x)


@pytest.fixture(scope="module")
def setup():
    model = _cnn()
    inputs = torch.rand(6, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    return model, inputs


def test_parameter_stages_bottom_up(setup):
    model, _ = setup
    assert parameter_stages(model, "bottom_up") == ["0", "2", "5"]
    assert parameter_stages(model) == ["5", "2", "0"]
    with pytest.raises(ValueError, match="order"):
        parameter_stages(model, "sideways")


def test_histogram_entropy_by_hand():
    maps = np.array([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    h = histogram_entropy(maps, n_bins=4)
    assert h == pytest.approx([np.log(2), 0.0, np.log(4)])


def test_emprt_scores_and_undefined_values(setup):
    model, inputs = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    result = efficient_mprt(model, Saliency, inputs, n_bins=20)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert result.stages == ["0", "2", "5"]
    by_hand = (result.entropy_randomised - result.entropy_original) / result.entropy_original
    np.testing.assert_allclose(result.values, by_hand)
    # A map that does not depend on the model: no rise at all.
    fixed = efficient_mprt(model, RandomAttribution, inputs, n_bins=20)
    np.testing.assert_allclose(fixed.values, 0.0, atol=1e-12)
    # A constant original map: the relative rise is undefined, reported as NaN and counted.
    const = efficient_mprt(model, _constant, inputs)
    assert np.isnan(const.values).all() and const.n_undefined == 6
    data = json.loads(json.dumps(const.to_dict(per_example=True), allow_nan=False))
    assert data["n_undefined"] == 6 and data["mean"] is None and data["ci"]["n"] == 0


def test_smprt_smooths_pairs_the_noise_and_reports_undefined(setup):
    model, inputs = setup
    seen = []

    def recorder(m):
        def explain(x, t):
            seen.append(x.clone())
            return Saliency(m).attribute(x, target=t)
        return explain

    result = smooth_mprt(model, recorder, inputs, n_samples=4, noise=0.1, batch_size=6)
    assert result.stages == ["original", "0", "2", "5"]
    assert len(seen) == 4 * 4  # 4 model states x 4 samples, one batch
    assert torch.equal(seen[3], inputs)  # the last copy is noise-free
    span = (inputs.amax(dim=(1, 2, 3)) - inputs.amin(dim=(1, 2, 3))).view(-1, 1, 1, 1)
    std = ((seen[0] - inputs) / span).std().item()
    assert std == pytest.approx(0.1, rel=0.15)
    assert torch.equal(seen[0], seen[4])  # every model state sees the same noise
    np.testing.assert_allclose(result.spearman[0], 1.0)
    assert np.nanmean(result.last) < 0.9  # randomising everything changes Saliency
    fixed = smooth_mprt(model, RandomAttribution, inputs, n_samples=2)
    np.testing.assert_allclose(fixed.spearman, 1.0)  # a model-independent map fails
    const = smooth_mprt(model, _constant, inputs, n_samples=2)
    assert np.isnan(const.spearman).all() and const.n_undefined.tolist() == [6] * 4
    data = json.loads(json.dumps(const.to_dict(per_example=True), allow_nan=False))
    assert data["spearman"]["n_undefined"] == [6] * 4
    assert data["spearman"]["ci"][0]["n_undefined"] == 6


def test_bad_arguments(setup):
    model, inputs = setup
    with pytest.raises(ValueError, match="n_samples"):
        smooth_mprt(model, Saliency, inputs, n_samples=0)
    with pytest.raises(ValueError, match="noise"):
        smooth_mprt(model, Saliency, inputs, noise=-1.0)
    with pytest.raises(ValueError, match="n_bins"):
        efficient_mprt(model, Saliency, inputs, n_bins=0)
    with pytest.raises(TypeError, match="factory"):
        efficient_mprt(model, Saliency(model), inputs)


@pytest.mark.parametrize("check", ["cascading_randomization", "efficient_mprt", "smooth_mprt"])
def test_randomisation_checks_count_empty_maps_without_repeating_the_warning(setup, check):
    import warnings

    import captum_prune.evaluation as evaluation
    from captum_prune import EmptyAttributionWarning

    model, inputs = setup

    def explain(model):
        def maps(x, t):
            warnings.warn("no longer depends ...", EmptyAttributionWarning, stacklevel=2)
            warnings.warn("another warning", UserWarning, stacklevel=2)
            return Saliency(model).attribute(x, target=t)
        return maps

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        getattr(evaluation, check)(model, explain, inputs, seed=0)
    categories = {w.category for w in seen}
    assert UserWarning in categories  # other warnings still reach the caller
    assert EmptyAttributionWarning not in categories
    with pytest.warns(EmptyAttributionWarning):  # and outside a check, the warning is back
        explain(model)(inputs, torch.zeros(6, dtype=torch.long))
