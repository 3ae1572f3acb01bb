import numpy as np
import pytest
import torch

from captum_prune.evaluation import RandomAttribution, compare_methods, paired_bootstrap_ci
from captum_prune.evaluation.compare import PROTOCOLS, Comparison
from tests.evaluation._models import LinearPixelModel


@pytest.fixture(scope="module")
def setup():
    # Logit 0 depends on a 3 x 3 patch only; the true map marks it, the random map does not.
    weights = torch.zeros(1, 8, 8)
    weights[:, 2:5, 2:5] = 1.0
    model = LinearPixelModel(weights).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(24, 1, 8, 8, generator=gen) * 0.2
    images[:, :, 2:5, 2:5] += 0.5
    oracle = weights.expand(24, 1, 8, 8) * images  # x * gradient: exactly the patch
    return model, images, oracle


def test_oracle_beats_random_everywhere_and_ties_itself(setup):
    model, images, oracle = setup
    methods = {"oracle": oracle, "copy": oracle.clone(), "random": RandomAttribution(model)}
    result = compare_methods(model, images, methods, protocols=PROTOCOLS, reference="oracle",
                             target=0, baseline=0.0, n_boot=300,
                             fractions={"lerf": [0.1, 0.5], "morf": [0.1, 0.5],
                                        "road_morf": [0.1, 0.5], "road_lerf": [0.1, 0.5],
                                        "srg": [0.1, 0.5, 1.0]})
    assert set(result.comparisons) == set(PROTOCOLS)
    for protocol in PROTOCOLS:
        c = result[protocol]
        assert c.verdict("random") == "loses", protocol
        assert c.verdict("copy") == "ties" and c.verdict("oracle") == "ties"
        assert c.paired("copy").mean == 0 and c.separated("oracle", "random")
        assert not c.separated("oracle", "copy")
        # The verdict is read off the paired CI in the protocol's direction.
        ci = paired_bootstrap_ci(c.scores["random"], c.scores["oracle"], 300)
        assert (ci.low, ci.high) == (c.paired("random").low, c.paired("random").high)
        assert c.paired("oracle", "random").mean == pytest.approx(-ci.mean)
        assert c.verdict("oracle", "random") == "wins"
    # LeRF: the oracle removes only zero-weight pixels first, so its change is 0 at 10-50%.
    assert np.allclose(result["lerf"].scores["oracle"], 0.0)
    assert result["srg"].all_separated(["oracle", "random"])
    assert not result["srg"].all_separated(["oracle", "copy", "random"])
    assert result.tied_share["random"].shape == (24,)
    assert result.seconds["oracle"] == 0.0
    text = result.table()
    assert "| random |" in text and "loses" in text and "reference" in text
    pairs = result["srg"].pairwise_table(["oracle", "copy", "random"])
    assert pairs.count("*") == 2
    d = result.to_dict(per_example=True)
    assert d["comparisons"]["lerf"]["methods"]["random"]["verdict"] == "loses"
    assert len(d["comparisons"]["srg"]["methods"]["copy"]["scores"]) == 24


def test_methods_and_precomputed_maps_give_the_same_scores(setup):
    model, images, oracle = setup

    def explain(x, t):
        return x * model.weights

    a = compare_methods(model, images, {"f": explain, "maps": oracle}, ["srg"], "maps",
                        target=0, n_boot=100, batch_size=5)
    assert np.array_equal(a["srg"].scores["f"], a["srg"].scores["maps"])
    assert a["srg"].verdict("f") == "ties"


def test_verdict_directions():
    scores = {"ref": np.zeros(30), "low": np.full(30, -1.0) + np.linspace(0, 0.1, 30)}
    lower = Comparison("lerf", False, [0.1], "ref", scores, n_boot=100)
    higher = Comparison("srg", True, [0.1], "ref", scores, n_boot=100)
    assert lower.verdict("low") == "wins" and higher.verdict("low") == "loses"
    undefined = Comparison("srg", True, [0.1], "ref", {"ref": np.zeros(1), "x": np.ones(1)})
    assert undefined.verdict("x") == "ties"


def test_bad_arguments(setup):
    model, images, oracle = setup
    with pytest.raises(ValueError, match="reference 'PrunedGradient'"):
        compare_methods(model, images, {"a": oracle})
    with pytest.raises(ValueError, match="protocols must be"):
        compare_methods(model, images, {"a": oracle}, ["roar"], "a")
    with pytest.raises(ValueError, match="non-empty mapping"):
        compare_methods(model, images, {}, ["srg"], "a")
    with pytest.raises(ValueError, match="unknown protocol"):
        compare_methods(model, images, {"a": oracle}, ["srg"], "a", fractions={"x": [0.1]})
    with pytest.raises(ValueError, match="same fractions"):
        compare_methods(model, images, {"a": oracle}, ["road_morf", "road_lerf"], "a",
                        fractions={"road_morf": [0.1]})
    with pytest.raises(ValueError, match="attributions\\['a'\\]"):
        compare_methods(model, images, {"a": oracle[:3]}, ["srg"], "a")
