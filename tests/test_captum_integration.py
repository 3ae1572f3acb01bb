"""PrunedGradient inside Captum: its test configs, NoiseTunnel, metrics and visualization."""
import copy

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from captum.attr import GradientAttribution, NoiseTunnel, Saliency
from captum.attr import visualization as viz
from captum.metrics import infidelity, infidelity_perturb_func_decorator, sensitivity_max
from torch import nn

from captum_prune import PrunedGradient

test_config = pytest.importorskip("captum.testing.attr.helpers.test_config")

SALIENCY_CONFIGS = [c for c in test_config.config if Saliency in c["algorithms"]]

_NOISE_TUNNEL_ARGS = ("nt_samples", "nt_samples_batch_size", "stdevs")


def _randomize(model, seed):
    """Captum's test models use all-ones weights, which makes many neurons tie and can hide
    per-example bugs; redraw every parameter."""
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


def _call(method, args, noise_tunnel):
    args = copy.deepcopy(args)
    if noise_tunnel:
        return NoiseTunnel(method).attribute(**args)
    return method.attribute(**args)


def _split_example(args, i, n):
    """The arguments for example ``i`` alone (Captum's per-example conventions)."""
    one = {}
    for key, value in args.items():
        if key == "inputs":
            one[key] = (
                tuple(x[i : i + 1] for x in value) if isinstance(value, tuple) else value[i : i + 1]
            )
        elif key == "target" and isinstance(value, list):
            one[key] = [value[i]]
        elif key == "target" and isinstance(value, torch.Tensor) and value.numel() > 1:
            one[key] = value[i : i + 1]
        elif key == "additional_forward_args" and value is not None:
            items = value if isinstance(value, tuple) else (value,)
            one[key] = tuple(
                a[i : i + 1]
                if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == n
                else a
                for a in items
            )
        else:
            one[key] = value
    return one


@pytest.mark.parametrize("weights", ["captum", "random"])
@pytest.mark.parametrize("config", SALIENCY_CONFIGS, ids=[c["name"] for c in SALIENCY_CONFIGS])
def test_captum_configs(config, weights):
    model = config["model"] if weights == "captum" else _randomize(config["model"], 7)
    args = dict(config["attribute_args"])
    noise_tunnel = config.get("noise_tunnel", False)
    pg = PrunedGradient(model)
    inputs = args["inputs"]
    is_tuple = isinstance(inputs, tuple)
    n = (inputs[0] if is_tuple else inputs).shape[0]

    # Sparsity 0 is the plain gradient, in every config (NoiseTunnel: zero noise).
    if noise_tunnel:
        plain_args = {k: v for k, v in args.items() if k not in _NOISE_TUNNEL_ARGS}
        plain = Saliency(model).attribute(**copy.deepcopy(plain_args), abs=False)
        zero_noise = {**args, "stdevs": 0.0, "sparsity": 0.0}
        got = _call(pg, zero_noise, True)
    else:
        plain = Saliency(model).attribute(**copy.deepcopy(args), abs=False)
        got = _call(pg, {**args, "sparsity": 0.0}, False)
    assert isinstance(got, tuple) == is_tuple
    for g, p in zip(got if is_tuple else (got,), plain if is_tuple else (plain,)):
        torch.testing.assert_close(g, p, rtol=1e-5, atol=1e-6)

    # Pruned: the right shapes and types, detached, and per-example results.
    pruned_args = {**args, "sparsity": 0.5}
    if noise_tunnel:
        pruned_args["stdevs"] = 0.0
    result = _call(pg, pruned_args, noise_tunnel)
    results = result if is_tuple else (result,)
    for r, x in zip(results, inputs if is_tuple else (inputs,)):
        assert r.shape == x.shape and r.dtype == x.dtype and not r.requires_grad
    plain_pruned_args = {k: v for k, v in pruned_args.items() if k not in _NOISE_TUNNEL_ARGS}
    for i in range(n):
        single = pg.attribute(**copy.deepcopy(_split_example(plain_pruned_args, i, n)))
        singles = single if is_tuple else (single,)
        for r, s in zip(results, singles):
            torch.testing.assert_close(r[i : i + 1], s, rtol=1e-4, atol=1e-6)


def test_is_a_gradient_attribution_with_captum_flags():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    pg = PrunedGradient(model)
    assert isinstance(pg, GradientAttribution)
    assert pg.multiplies_by_inputs is False and pg.has_convergence_delta() is False
    assert PrunedGradient.get_name() == "Pruned Gradient"
    assert hasattr(PrunedGradient.attribute, "__wrapped__")


def test_noise_tunnel_averages_pruned_gradients(bias_free_net, images16):
    torch.manual_seed(0)
    pg = PrunedGradient(bias_free_net)
    nt = NoiseTunnel(pg)
    torch.manual_seed(1)
    smooth = nt.attribute(images16, nt_samples=4, stdevs=0.2, target=1, sparsity=0.7)
    # The same noise drawn by hand and averaged.
    torch.manual_seed(1)
    noisy = images16.repeat_interleave(4, dim=0)
    noisy = noisy + torch.randn_like(noisy) * 0.2
    manual = pg.attribute(noisy, target=1, sparsity=0.7).view(3, 4, 3, 16, 16).mean(1)
    torch.testing.assert_close(smooth, manual, rtol=1e-5, atol=1e-7)


def test_infidelity_and_sensitivity_max(bias_free_net, images16):
    pg = PrunedGradient(bias_free_net)

    @infidelity_perturb_func_decorator(pg.multiplies_by_inputs)
    def perturb(inputs):
        return inputs - torch.randn_like(inputs) * 0.05

    torch.manual_seed(0)
    attributions = pg.attribute(images16, target=2, sparsity=0.7)
    score = infidelity(
        bias_free_net, perturb, images16, attributions, target=2, n_perturb_samples=4
    )
    assert score.shape == (3,) and torch.isfinite(score).all() and (score >= 0).all()

    # (At 0.7 this small net only loses zero-score neurons; 0.95 prunes live ones.)
    assert not torch.equal(
        pg.attribute(images16, target=2, sparsity=0.95),
        pg.attribute(images16, target=2, sparsity=0.0),
    )
    torch.manual_seed(0)
    sens = sensitivity_max(pg.attribute, images16, target=2, sparsity=0.95, n_perturb_samples=3)
    torch.manual_seed(0)
    sens_plain = sensitivity_max(
        pg.attribute, images16, target=2, sparsity=0.0, n_perturb_samples=3
    )
    assert sens.shape == (3,) and torch.isfinite(sens).all() and (sens >= 0).all()
    assert not torch.equal(sens, sens_plain)


def test_visualize_image_attr_on_the_output(bias_free_net, images16):
    attributions = PrunedGradient(bias_free_net).attribute(images16, target=1, sparsity=0.8)
    heat = attributions[0].permute(1, 2, 0).numpy()
    image = (images16[0].permute(1, 2, 0).numpy() - images16.min().item())
    image = image / image.max()
    fig, ax = viz.visualize_image_attr(
        heat, image, method="blended_heat_map", sign="absolute_value", use_pyplot=False
    )
    assert fig is not None and len(ax.images) >= 1
    fig, axes = viz.visualize_image_attr_multiple(
        heat, image, ["original_image", "heat_map"], ["all", "positive"], use_pyplot=False
    )
    assert len(axes) == 2
