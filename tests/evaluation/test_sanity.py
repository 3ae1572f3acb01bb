import copy
import json

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from sklearn.datasets import load_digits

from captum_prune.evaluation import cascading_randomization, parameter_stages


def _cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, 10),
    )


@pytest.fixture(scope="module")
def trained():
    r"""A small CNN trained for a few seconds on sklearn digits, and 12 test digits."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    model = _cnn()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(3):
        for idx in torch.randperm(1500).split(100):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    acc = (model(x[1500:]).argmax(1) == y[1500:]).float().mean()
    assert acc > 0.8
    return model, x[1500:1512]


def _sobel(inputs, target):
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    gx = torch.nn.functional.conv2d(inputs, kx, padding=1)
    gy = torch.nn.functional.conv2d(inputs, kx.transpose(2, 3), padding=1)
    return (gx**2 + gy**2).sqrt()


def test_default_stages_are_parameter_owners_top_down():
    assert parameter_stages(_cnn()) == ["5", "2", "0"]


def test_gradient_passes_and_model_independent_maps_fail(trained):
    model, x = trained
    grad = cascading_randomization(model, Saliency, x, attribute_kwargs={"abs": False})
    image = cascading_randomization(model, lambda m: (lambda inp, t: inp), x)
    edges = cascading_randomization(model, lambda m: _sobel, x)
    assert grad.stages == image.stages == ["original", "5", "2", "0"]
    for metric in ("spearman", "spearman_abs", "ssim", "ssim_abs"):
        g = np.array(grad.summary(metric)["mean"])
        assert g[0] == pytest.approx(1.0)
        # Maps that ignore the model stay identical: they fail the sanity check.
        assert np.allclose(image.summary(metric)["mean"], 1.0)
        assert np.allclose(edges.summary(metric)["mean"], 1.0)
        # The gradient follows the model: similarity drops once everything is randomised.
        assert g[-1] < 0.6, metric
    assert grad.summary("spearman_abs")["mean"][-1] < grad.summary("spearman_abs")["mean"][0]


def test_user_model_is_not_modified(trained):
    model, x = trained
    model.train()  # also the mode must survive
    before = copy.deepcopy(model.state_dict())
    try:
        cascading_randomization(model, Saliency, x[:4])
    finally:
        training = model.training
        model.eval()
    assert training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_cascade_randomises_cumulatively_top_down(trained):
    model, x = trained
    snapshots = []

    def factory(m):
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return Saliency(m)

    result = cascading_randomization(model, factory, x[:2], layer_order=[["5", "2"], "0"])
    assert result.stages == ["original", "5+2", "0"]
    original = model.state_dict()
    assert all(torch.equal(snapshots[0][k], v) for k, v in original.items())
    changed = [
        {k.split(".")[0] for k in s if not torch.equal(s[k], original[k])} for s in snapshots
    ]
    assert changed == [set(), {"5", "2"}, {"5", "2", "0"}]
    # New parameters are N(0, 0.1^2) draws.
    assert snapshots[2]["2.weight"].std().item() == pytest.approx(0.1, rel=0.2)


def test_seed_determinism_target_and_mapping_stages(trained):
    model, x = trained
    order = {"head": ["5"], "body": ["2", "0"]}
    a = cascading_randomization(model, Saliency, x[:4], layer_order=order, seed=1)
    b = cascading_randomization(model, Saliency, x[:4], layer_order=order, seed=1)
    c = cascading_randomization(model, Saliency, x[:4], layer_order=order, seed=2)
    assert a.stages == ["original", "head", "body"]
    np.testing.assert_array_equal(a.spearman, b.spearman)
    assert not np.array_equal(a.spearman, c.spearman)
    assert torch.equal(a.target, model(x[:4]).argmax(1))
    fixed = cascading_randomization(model, Saliency, x[:4], target=3, layer_order=order)
    assert fixed.target.tolist() == [3] * 4


def test_integrated_gradients_and_json(trained):
    model, x = trained
    result = cascading_randomization(
        model, IntegratedGradients, x[:3], attribute_kwargs={"n_steps": 8}, batch_size=2
    )
    data = json.loads(json.dumps(result.to_dict(per_example=True), allow_nan=False))
    assert data["stages"] == ["original", "5", "2", "0"]
    assert len(data["ssim"]["mean"]) == 4 and len(data["ssim"]["per_example"][0]) == 3
    assert data["spearman"]["mean"][-1] < 0.9


def test_pruned_gradient_runs_through_the_check(trained):
    prune = pytest.importorskip("captum_prune")
    if not hasattr(prune, "PrunedGradient"):
        pytest.skip("PrunedGradient not available yet")
    model, x = trained
    result = cascading_randomization(
        model, prune.PrunedGradient, x[:4], attribute_kwargs={"sparsity": 0.7}
    )
    assert result.summary("spearman_abs")["mean"][-1] < 0.9


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"layer_order": ["5", "nope"]}, ValueError, "layer_order"),
        ({"layer_order": []}, ValueError, "layer_order"),
        ({"layer_order": 5}, ValueError, "layer_order"),
        ({"ssim_win_size": 9}, ValueError, "ssim_win_size"),
        ({"ssim_win_size": 4}, ValueError, "ssim_win_size"),
        ({"init_std": 0}, ValueError, "init_std"),
        ({"seed": 1.5}, ValueError, "seed"),
        ({"target": [1, 2, 3]}, ValueError, "target"),
    ],
)
def test_bad_arguments_raise(trained, kwargs, error, name):
    model, x = trained
    with pytest.raises(error, match=name):
        cascading_randomization(model, Saliency, x[:2], **kwargs)


def test_bound_method_instance_is_rejected(trained):
    model, x = trained
    with pytest.raises(TypeError, match="explain"):
        cascading_randomization(model, Saliency(model), x[:2])
