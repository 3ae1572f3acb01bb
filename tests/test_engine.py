"""The engine (captum_prune._engine) that PrunedGradient and the layer, neuron, sweep and auto
features share; the registries; the one importer of Captum internals."""
import dataclasses
import pathlib
import re

import pytest
import torch
from captum.attr import LayerGradientXActivation, NeuronGradient
from torch import nn

from captum_prune import PrunedGradient, PruningOptions, _engine, criteria, selection
from captum_prune.hooks import Capture
from tests.conftest import BiasFreeNet


def _net():
    torch.manual_seed(0)
    return BiasFreeNet().double().eval()


def _x(n=3):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(1)).double()


def _layers(model):
    return [model.relu, model.act], ["relu", "act"], [0, 0]


def _session(model, x, objective, captures=(), floating=True):
    layers, names, dims = _layers(model)
    return _engine.session(model, layers, names, dims, x, objective, captures=captures,
                           floating=floating)


def test_the_engine_steps_are_attribute():
    model, x = _net(), _x()
    with _session(model, x, _engine.TargetObjective([0, 2, 1])) as run:
        scored = _engine.score(run, PruningOptions())
        masks = _engine.select_masks(scored.scores, 0.7)
        pruned = _engine.pruned_pass(run, scored.calls, masks)
        output, values = _engine.masked_forward(run, scored.calls, masks)
    expected = PrunedGradient(model).attribute(x, target=[0, 2, 1], sparsity=0.7)
    assert torch.equal(pruned.gradients[0], expected)
    assert torch.equal(values, pruned.values) and torch.equal(output, pruned.output)
    assert not values.requires_grad and values.shape == (3,)


def test_a_gradient_with_respect_to_a_layer_is_captums_unpruned():
    model, x = _net(), _x()
    with _session(model, x, _engine.TargetObjective(1), [Capture(model.fc1)]) as run:
        scored = _engine.score(run, PruningOptions(sparsity=0.0))
        masks = _engine.select_masks(scored.scores, 0.0)
        pruned = _engine.pruned_pass(run, scored.calls, masks, wrt=0)
    ((grad,),), ((act,),) = pruned.gradients, pruned.activations
    captum = LayerGradientXActivation(model, model.fc1, multiply_by_inputs=False)
    torch.testing.assert_close(grad, captum.attribute(x, target=1))
    torch.testing.assert_close(act, model.fc1(model.pool(model.relu(model.conv2(
        model.pool(model.relu(model.conv1(x)))))).flatten(1)))


def test_a_layer_input_and_a_pruned_layer_can_be_captured():
    model, x = _net(), _x()
    captures = [Capture(model.fc2, to_input=True), Capture(model.relu)]
    with _session(model, x, _engine.TargetObjective(0), captures) as run:
        scored = _engine.score(run, PruningOptions())
        masks = _engine.select_masks(scored.scores, 0.8)
        into_fc2 = _engine.pruned_pass(run, scored.calls, masks, wrt=0)
        at_relu = _engine.pruned_pass(run, scored.calls, masks, wrt=1)
    ((grad,),) = into_fc2.gradients
    torch.testing.assert_close(grad, model.fc2.weight[0].expand_as(grad))
    assert len(at_relu.gradients) == 2  # the reused ReLU: one entry per call
    for (act,), mask in zip((a for a in at_relu.activations), masks[:2]):
        assert torch.equal(act, act * mask)  # recorded after the mask


def test_a_captured_objective_is_captums_neuron_gradient_unpruned():
    model, x = _net(), _x()
    objective = _engine.CapturedObjective(0, lambda t: t[0][:, 5])
    with _session(model, x, objective, [Capture(model.fc1)]) as run:
        scored = _engine.score(run, PruningOptions(sparsity=0.0))
        masks = _engine.select_masks(scored.scores, 0.0)
        pruned = _engine.pruned_pass(run, scored.calls, masks)
    expected = NeuronGradient(model, model.fc1).attribute(
        x.clone().requires_grad_(), neuron_selector=5)
    torch.testing.assert_close(pruned.gradients[0], expected)
    with _session(model, x, objective, [Capture(model.fc1)]) as run:
        pruned_scored = _engine.score(run, PruningOptions())
        masks = _engine.select_masks(pruned_scored.scores, 0.9)
        pruned = _engine.pruned_pass(run, pruned_scored.calls, masks)
    assert not torch.allclose(pruned.gradients[0], expected)


def test_per_example_sparsity_equals_one_call_per_value():
    model, x = _net(), _x(4)
    sparsity = torch.tensor([0.5, 0.9, 0.5, 0.7], dtype=torch.float64)
    with _session(model, x, _engine.TargetObjective([0, 1, 2, 3])) as run:
        scored = _engine.score(run, PruningOptions())
        for threshold in ("reference", "exact"):
            for chooser in ("global", "per_layer"):
                masks = _engine.select_masks(scored.scores, sparsity, chooser, threshold)
                for row, value in enumerate(sparsity.tolist()):
                    one = _engine.select_masks(scored.scores, value, chooser, threshold)
                    assert all(torch.equal(m[row], o[row]) for m, o in zip(masks, one))
        with pytest.raises(ValueError, match="sparsity"):
            _engine.select_masks(scored.scores, torch.tensor([0.5, 1.0, 0.1, 0.1]))
        with pytest.raises(ValueError, match="sparsity"):
            _engine.select_masks(scored.scores, torch.tensor([0.5, 0.1]))


def test_forwards_at_other_inputs_keep_the_masks():
    model, x = _net(), _x()
    delta = 1e-3 * torch.randn_like(x)
    with _session(model, x, _engine.TargetObjective(2)) as run:
        scored = _engine.score(run, PruningOptions())
        masks = _engine.select_masks(scored.scores, 0.8)
        at_x = _engine.pruned_pass(run, scored.calls, masks)
        moved = run.with_inputs(x + delta)
        _, values = _engine.masked_forward(moved, scored.calls, masks)
    # A bias-free ReLU network with fixed masks is linear in a neighbourhood of x.
    linear = at_x.values + (at_x.gradients[0] * delta).flatten(1).sum(1)
    torch.testing.assert_close(values, linear, rtol=1e-6, atol=1e-9)


class _Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.fc, self.relu, self.out = nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)

    def forward(self, ids):
        return self.out(self.relu(self.fc(self.embed(ids))).mean(1))


@pytest.mark.parametrize("frozen", [False, True])
def test_token_ids_attributed_at_the_embedding(frozen):
    torch.manual_seed(0)
    model = _Tokens().double().eval()
    for p in model.parameters():
        p.requires_grad_(not frozen)
    ids = torch.randint(0, 20, (2, 5))
    with _engine.session(model, [model.relu], ["relu"], [0], ids, _engine.TargetObjective(1),
                         captures=[Capture(model.embed)], floating=False) as run:
        scored = _engine.score(run, PruningOptions(sparsity=0.0))
        assert all(s.abs().sum() > 0 for s in scored.scores)
        masks = _engine.select_masks(scored.scores, 0.0)
        pruned = _engine.pruned_pass(run, scored.calls, masks, wrt=0)
    captum = LayerGradientXActivation(model, model.embed, multiply_by_inputs=False)
    torch.testing.assert_close(pruned.gradients[0][0], captum.attribute(ids, target=1))
    with pytest.raises(TypeError, match="floating-point"):
        PrunedGradient(model, layers=[model.relu]).attribute(ids, target=1)


def test_a_criterion_is_one_registered_class(bias_free_net, images16):
    @criteria.register_criterion("test_activation")
    class Activation(criteria.Criterion):
        def score(self, run, keep_activations):
            with torch.no_grad():
                output, values, acts = criteria._recording_pass(run)
            scores = [a.abs().float() for a in acts]
            return criteria._scores_from(run.hooks, output, values, acts, scores)

    try:
        assert "test_activation" in criteria.CRITERIA
        got = PrunedGradient(bias_free_net).attribute(
            images16, target=1, criterion="test_activation", sparsity=0.3)
        assert got.shape == images16.shape
    finally:
        criteria.CRITERION_RULES._entries.pop("test_activation")
    assert list(criteria.CRITERIA) == ["taylor", "integrated_gradients", "random"]
    assert list(selection.SELECTIONS) == ["global", "per_layer"]
    assert list(selection.THRESHOLDS) == ["reference", "exact"]
    with pytest.raises(ValueError, match="registered already"):
        criteria.register_criterion("taylor")(Activation)


def test_options_are_validated_once_and_frozen():
    options = PruningOptions(sparsity=1 / 2)
    assert options.sparsity == 0.5 and options.to_dict()["criterion"] == "taylor"
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.sparsity = 0.1
    with pytest.raises(ValueError, match="threshold: 'top'"):
        PruningOptions(threshold="top")


def test_only_one_module_imports_captum_internals():
    package = pathlib.Path(__file__).resolve().parents[1] / "captum_prune"
    pattern = re.compile(r"^\s*(from|import)\s+captum\.(_utils|attr\._utils)", re.MULTILINE)
    importers = sorted(
        str(path.relative_to(package)) for path in package.rglob("*.py")
        if pattern.search(path.read_text())
    )
    assert importers == ["_captum.py"]
