r"""Captum Insights' server with PrunedGradient, through Flask's test client."""
import base64
import io
import os
import warnings

import matplotlib.image
import numpy as np
import pytest
import torch
from torch import nn

# Skip in the main environment (captum 0.9 has no Insights); .ci/insights sets the variable.
REQUIRED = os.environ.get("CAPTUM_PRUNE_INSIGHTS_CI") == "1"
if not REQUIRED:
    pytest.importorskip(
        "captum.insights.attr_vis",
        reason="Captum Insights needs captum 0.8 in its own environment: run .ci/insights",
    )

from captum.insights.attr_vis import config, features

from captum_prune import PrunedGradient
from captum_prune.cli import main as cli_main
from captum_prune.criteria import CRITERIA
from captum_prune.integrations import insights
from captum_prune.zoo.data import make_digits_canvas
from captum_prune.zoo.models import build_digits_model

# Captum's own warnings on the Insights path (it passes inputs without requires_grad).
pytestmark = [
    pytest.mark.filterwarnings("ignore:It looks like that the attribution:UserWarning"),
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require:UserWarning"),
]
NUM_EXAMPLES = 4  # Insights shows this many examples per fetch


@pytest.fixture(scope="module")
def colour_data():
    return make_digits_canvas("test", channels=3)


@pytest.fixture(scope="module")
def grey_data():
    return make_digits_canvas("test", channels=1)


def _model(channels):
    return build_digits_model(channels, seed=0).eval()


def _client(model, data, feature_cls=None):
    visualizer = insights.build_digits_visualizer(model, data)
    if feature_cls is not None:
        (feature,) = visualizer.features
        visualizer.features[0] = feature_cls(
            feature.name, baseline_transforms=None, input_transforms=feature.input_transforms
        )
        visualizer.attribution_calculation.features = visualizer.features
    return insights.insights_app(visualizer).test_client()


def _fetch(client, method, arguments):
    return client.post(
        "/fetch",
        json={"attribution_method": method, "arguments": arguments, "prediction": "all",
              "classes": []},
    )


def _examples(response):
    r"""One visualization per example (each is a list over models; there is one model)."""
    assert response.status_code == 200
    outputs = response.get_json()
    assert len(outputs) == NUM_EXAMPLES and all(len(per_model) == 1 for per_model in outputs)
    return [per_model[0] for per_model in outputs]


def _png(b64):
    return matplotlib.image.imread(io.BytesIO(base64.b64decode(b64)), format="png")


def test_register_is_idempotent_and_mutates_insights_tables_in_place():
    names, method_config = config.ATTRIBUTION_NAMES_TO_METHODS, config.ATTRIBUTION_METHOD_CONFIG
    stock = {k: v for k, v in names.items() if k != insights.METHOD_NAME}
    insights.register()
    first = method_config[insights.METHOD_NAME]
    insights.register()
    # The same dict objects, which app.py and attribution_calculation.py imported by name.
    assert config.ATTRIBUTION_NAMES_TO_METHODS is names
    assert config.ATTRIBUTION_METHOD_CONFIG is method_config
    assert names[insights.METHOD_NAME] is PrunedGradient
    assert {k: v for k, v in names.items() if k != insights.METHOD_NAME} == stock
    assert list(names).count(insights.METHOD_NAME) == 1
    assert method_config[insights.METHOD_NAME] == first
    sparsity = first.params["sparsity"]
    assert isinstance(sparsity.value, int) and sparsity.limit == (0, 99)
    assert first.params["criterion"].limit == list(CRITERIA)


def test_init_lists_pruned_gradient_with_its_arguments(colour_data):
    response = _client(_model(3), colour_data).get("/init")
    assert response.status_code == 200
    body = response.get_json()
    assert "Pruned Gradient" in body["methods"]
    assert body["method_arguments"]["Pruned Gradient"] == {
        "sparsity": {"value": 85, "limit": [0, 99], "type": "number"},
        "criterion": {"value": "taylor", "limit": list(CRITERIA), "type": "enum"},
    }
    assert body["classes"] == [str(i) for i in range(10)]


def test_sparsity_chosen_in_the_page_reaches_attribute(colour_data, spy):
    percent, criterion = 37, "random"
    client = _client(_model(3), colour_data)
    response = _fetch(client, "Pruned Gradient", {"sparsity": percent, "criterion": criterion})
    assert response.status_code == 200
    # Clicking another class in the page recomputes one example for that class.
    relabel = client.post("/attribute", json={"inputIndex": 1, "modelIndex": 0, "labelIndex": 3})
    assert relabel.status_code == 200
    assert relabel.get_json()["active_index"] == 3
    assert int(spy[-1][1]["target"]) == 3
    assert len(spy) == NUM_EXAMPLES + 1
    # One call per example, every one with the chosen percent as a fraction: Insights
    # re-applies post_process to the same dict per example, so a non-idempotent
    # conversion would hand the later examples percent / 100 / 100.
    for inputs, kwargs, result in spy:
        assert kwargs["sparsity"] == pytest.approx(percent / 100)
        assert kwargs["criterion"] == criterion
        # What the Insights path hands PrunedGradient, and what it must give back.
        assert isinstance(inputs, tuple) and len(inputs) == 1
        assert inputs[0].shape == (1, 3, 32, 32)
        assert isinstance(kwargs["target"], torch.Tensor) and kwargs["target"].dim() == 0
        assert isinstance(result, tuple) and result[0].shape == inputs[0].shape


def test_fetch_renders_pruned_gradient_maps_that_depend_on_the_sparsity(colour_data, spy):
    maps = {}
    for percent in (0, 95):
        response = _fetch(_client(_model(3), colour_data), "Pruned Gradient", {"sparsity": percent})
        outputs = _examples(response)
        maps[percent] = [out["feature_outputs"][0]["modified"] for out in outputs]
        for out in outputs:
            (feature,) = out["feature_outputs"]
            assert feature["type"] == "image" and feature["name"] == "Digit"
            heat = _png(feature["modified"])[..., :3]
            assert heat.std() > 0.01  # a map, not a blank or single-colour image
            assert out["active_index"] == out["predicted"][0]["index"]
    # The rendered maps are those of the sparsity asked for: 0% pruning is the plain gradient.
    plain = [r[0] for _, kw, r in spy[:NUM_EXAMPLES]]
    pruned = [r[0] for _, kw, r in spy[NUM_EXAMPLES:]]
    assert all(not torch.equal(a, b) for a, b in zip(plain, pruned))
    assert maps[0] != maps[95]


def test_stock_methods_still_work_next_to_pruned_gradient(colour_data):
    client = _client(_model(3), colour_data)
    for method, arguments in (("Saliency", {}),
                              ("Integrated Gradients", {"n_steps": 5, "method": "gausslegendre"})):
        response = _fetch(client, method, arguments)
        assert len(_examples(response)) == NUM_EXAMPLES, method


def test_greyscale_images_are_shown_in_grey(grey_data, spy):
    response = _fetch(_client(_model(1), grey_data), "Pruned Gradient", {"sparsity": 80})
    examples = _examples(response)
    assert all(inputs[0].shape == (1, 1, 32, 32) for inputs, _, _ in spy)
    for out in examples:
        (feature,) = out["feature_outputs"]
        base = _png(feature["base"])[..., :3]
        assert np.allclose(base[..., 0], base[..., 1]) and np.allclose(base[..., 1], base[..., 2])
        assert base.std() > 0.01
        assert _png(feature["modified"])[..., :3].std() > 0.01


def test_stock_image_feature_fails_on_greyscale_which_is_why_ours_exists(grey_data):
    response = _fetch(
        _client(_model(1), grey_data, features.ImageFeature), "Pruned Gradient", {"sparsity": 80}
    )
    assert response.status_code == 500


class _ThinFirstLayer(nn.Module):
    r"""Two ReLU layers; the first scores far below the second (whose big bias carries it),
    so global pruning at a high sparsity removes the whole first layer and with it every
    path from the input: the pruned gradient is zero. At sparsity 0 only one neuron goes."""

    def __init__(self, channels):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.encode = nn.Linear(channels * 32 * 32, 4)
        self.hidden = nn.Linear(4, 4)
        self.decode = nn.Linear(4, 10)
        self.relu = nn.ReLU()
        with torch.no_grad():
            noise = torch.randn(self.encode.weight.shape, generator=generator)
            self.encode.weight.copy_(noise * 1e-3)
            self.encode.bias.fill_(1.0)  # first-layer neurons always active, near 1
            self.hidden.weight.copy_(torch.randn(4, 4, generator=generator) * 1e-2)
            self.hidden.bias.fill_(100.0)
            self.decode.weight.copy_(torch.linspace(0.5, 1.5, 40).view(10, 4))
            self.decode.bias.zero_()

    def forward(self, x):
        return self.decode(self.relu(self.hidden(self.relu(self.encode(x.flatten(1))))))


@pytest.mark.parametrize("channels", [1, 3])
def test_all_zero_map_shows_a_message_instead_of_failing(colour_data, grey_data, channels):
    data = grey_data if channels == 1 else colour_data
    message = features._convert_figure_base64(insights._message_figure(insights._EMPTY_MAP_MESSAGE))
    client = _client(_ThinFirstLayer(channels), data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PrunedGradient's own all-zero warning
        empty = _fetch(client, "Pruned Gradient", {"sparsity": 99})
        full = _fetch(client, "Pruned Gradient", {"sparsity": 0})
    assert all(out["feature_outputs"][0]["modified"] == message for out in _examples(empty))
    assert all(out["feature_outputs"][0]["modified"] != message for out in _examples(full))


def test_stock_image_feature_fails_on_all_zero_maps(colour_data):
    client = _client(_ThinFirstLayer(3), colour_data, features.ImageFeature)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert _fetch(client, "Pruned Gradient", {"sparsity": 99}).status_code == 500


@pytest.mark.parametrize("bad", [100, -1, None, "lots", True])
def test_bad_sparsity_from_the_page_is_rejected_clearly(bad):
    with pytest.raises(ValueError, match="sparsity: expected a percent from 0 to 99"):
        insights._percent_to_fraction(bad)


@pytest.mark.parametrize("percent", [0, 1, 50, 85, 99])
def test_percent_conversion_is_idempotent(percent):
    once = insights._percent_to_fraction(percent)
    assert once == pytest.approx(percent / 100)
    assert insights._percent_to_fraction(once) == once


def test_register_explains_what_to_install_without_captum_insights(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: None if name == "captum.insights" else real(name, *a),
    )
    with pytest.raises(ImportError, match=r"captum 0\.8.*pip install -e '\.\[insights\]'"):
        insights.register()


def test_limit_methods_keeps_only_the_digits_methods():
    saved = dict(config.ATTRIBUTION_NAMES_TO_METHODS)
    try:
        insights.register()
        insights._limit_methods(insights.DIGITS_METHODS)
        assert sorted(config.ATTRIBUTION_NAMES_TO_METHODS) == sorted(insights.DIGITS_METHODS)
    finally:
        config.ATTRIBUTION_NAMES_TO_METHODS.clear()
        config.ATTRIBUTION_NAMES_TO_METHODS.update(saved)


@pytest.mark.parametrize("argv", [["--port", "70000"], ["--port", "-1"]])
def test_cli_rejects_a_bad_port(argv, capsys):
    assert cli_main(["insights", *argv]) == 2
    assert "--port must be from 0 to 65535" in capsys.readouterr().err


def test_auto_sparsity_entry_reaches_attribute_as_auto_and_meets_its_bound(colour_data, spy):
    # The page's number fields cannot hold "auto", so it is a method of its own whose one
    # number is the allowed output change in percent.
    client = _client(_model(3), colour_data)
    init = client.get("/init").get_json()
    assert insights.AUTO_METHOD_NAME in init["methods"]
    assert init["method_arguments"][insights.AUTO_METHOD_NAME]["output_change"] == {
        "value": 15, "limit": [1, 99], "type": "number"}
    response = _fetch(client, insights.AUTO_METHOD_NAME, {"output_change": 20,
                                                         "criterion": "taylor"})
    assert response.status_code == 200
    assert len(spy) == NUM_EXAMPLES
    for inputs, kwargs, result in spy:
        assert kwargs["sparsity"] == "auto"
        assert kwargs["output_change"] == pytest.approx(0.20)  # converted once, not per call
        assert isinstance(result, tuple) and result[0].shape == inputs[0].shape


@pytest.mark.parametrize("bad", [0, 100, "auto", None])
def test_bad_output_change_from_the_page_is_rejected_clearly(bad):
    with pytest.raises(ValueError, match="output_change: expected a percent from 1 to 99"):
        insights._percent_change(bad)
