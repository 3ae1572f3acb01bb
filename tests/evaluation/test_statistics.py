import json
import math

import numpy as np
import pytest
import torch

from captum_prune.evaluation import (
    ConfidenceInterval,
    bootstrap_ci,
    combine_models,
    paired_bootstrap_ci,
)


def test_bootstrap_ci_covers_the_mean_and_matches_scipy():
    from scipy.stats import bootstrap

    values = np.random.default_rng(0).normal(1.0, 2.0, size=200)
    ci = bootstrap_ci(values, n_boot=4000, seed=1)
    assert ci.mean == pytest.approx(values.mean()) and ci.n == 200 and ci.n_undefined == 0
    ref = bootstrap((values,), np.mean, n_resamples=4000, method="percentile",
                    random_state=np.random.default_rng(1)).confidence_interval
    assert ci.low == pytest.approx(ref.low, abs=0.05) and ci.high == pytest.approx(ref.high,
                                                                                    abs=0.05)
    # Roughly mean +- 1.96 standard errors.
    se = values.std(ddof=1) / math.sqrt(200)
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert bootstrap_ci(values, seed=1) == bootstrap_ci(values, seed=1)
    assert bootstrap_ci(values, seed=1) != bootstrap_ci(values, seed=2)


def test_undefined_values_are_left_out_and_counted():
    ci = bootstrap_ci(torch.tensor([1.0, float("nan"), 3.0, float("nan")]))
    assert (ci.mean, ci.n, ci.n_undefined) == (2.0, 2, 2)
    one = bootstrap_ci([5.0, float("nan")])
    assert one.mean == 5.0 and math.isnan(one.low) and math.isnan(one.high)
    none = bootstrap_ci([float("nan")])
    assert math.isnan(none.mean) and none.n == 0 and none.n_undefined == 1
    data = json.loads(json.dumps(none.to_dict(), allow_nan=False))
    assert data["mean"] is None and data["n_undefined"] == 1


def test_two_dimensional_values_give_one_ci_per_column():
    values = np.stack([np.arange(10.0), np.full(10, 3.0)], axis=1)
    cis = bootstrap_ci(values)
    assert len(cis) == 2 and cis[0].mean == 4.5
    assert (cis[1].low, cis[1].high) == (3.0, 3.0)


def test_paired_ci_is_narrower_than_separate_ones_and_sees_the_difference():
    rng = np.random.default_rng(2)
    shared = rng.normal(0, 5, size=100)  # between-example variation, common to both methods
    a = shared + rng.normal(0.5, 0.1, size=100)
    b = shared
    paired = paired_bootstrap_ci(a, b)
    separate = bootstrap_ci(a)
    assert paired.low > 0  # the paired interval excludes 0 ...
    assert separate.low < b.mean() < separate.high  # ... the separate ones overlap
    assert paired.high - paired.low < (separate.high - separate.low) / 10
    b_nan = b.copy()
    b_nan[:3] = np.nan
    assert paired_bootstrap_ci(a, b_nan).n_undefined == 3
    with pytest.raises(ValueError, match="shape"):
        paired_bootstrap_ci(a, b[:5])


def test_combine_models_reports_within_and_between_spread():
    rng = np.random.default_rng(3)
    models = [rng.normal(m, 0.1, size=50) for m in (0.2, 0.5, 0.8)]
    spread = combine_models(models)
    assert spread.n_models == 3
    assert spread.mean == pytest.approx(np.mean([m.mean() for m in models]))
    assert spread.between_std == pytest.approx(np.std([m.mean() for m in models], ddof=1))
    assert spread.between_std > spread.within_half_width  # models differ more than the CI
    assert all(isinstance(c, ConfidenceInterval) for c in spread.within)
    assert json.loads(json.dumps(spread.to_dict(), allow_nan=False))["n_models"] == 3
    single = combine_models([models[0]])
    assert math.isnan(single.between_std)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci([1.0, 2.0], n_boot=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=95)
    with pytest.raises(ValueError, match="1-D"):
        bootstrap_ci(np.zeros((2, 2, 2)))


def test_perturbation_result_ci_and_per_example_auc():
    from captum_prune.evaluation import PerturbationResult

    changes = torch.tensor([[0.1, 0.3], [0.3, 0.5], [0.2, 0.4]], dtype=torch.float64)
    result = PerturbationResult("lerf", [0.1, 0.2], changes, torch.zeros(3), torch.ones(3))
    assert result.per_example_auc.mean() == pytest.approx(result.auc)
    cis = result.ci()
    assert [c.mean for c in cis["mean"]] == pytest.approx([0.2, 0.4])
    assert cis["auc"].mean == pytest.approx(result.auc) and "tied_share" not in cis
    assert json.loads(json.dumps(result.to_dict(), allow_nan=False))["ci"]["auc"]["n"] == 3


def test_sanity_and_localisation_results_carry_cis():
    from captum_prune.evaluation import attribution_mass_in_box
    from captum_prune.evaluation.sanity import SanityCheckResult

    values = np.array([[1.0, 1.0, 1.0], [0.2, np.nan, 0.4]])
    result = SanityCheckResult(["original", "fc"], torch.zeros(3), values, values, values, values)
    cis = result.ci("spearman")
    assert cis[0].mean == 1.0 and (cis[1].mean, cis[1].n, cis[1].n_undefined) == (
        pytest.approx(0.3), 2, 1)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["spearman"]["ci"][1]["n_undefined"] == 1
    maps = torch.zeros(3, 4, 4)
    maps[0, 0, 0] = maps[1, 3, 3] = 1.0  # inside, outside, no mass
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[:, :2, :2] = True
    share = attribution_mass_in_box(maps, masks)
    ci = share.ci()
    assert (ci.mean, ci.n, ci.n_undefined) == (0.5, 2, 1)
    assert share.to_dict()["ci"]["n_undefined"] == 1
