"""No surprises: nothing of the caller's changes, on any path, and bad input gets clear errors."""
import copy
import threading
import warnings

import pytest
import torch
from torch import nn

from captum_prune import EmptyAttributionWarning, PrunedGradient
from tests.conftest import BiasFreeNet


def _all_hooks(model):
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def _snapshot(model, x):
    return dict(
        hooks=_all_hooks(model),
        training=[m.training for m in model.modules()],
        params=[p.detach().clone() for p in model.parameters()],
        requires_grad=[p.requires_grad for p in model.parameters()],
        grads=[None if p.grad is None else p.grad.clone() for p in model.parameters()],
        buffers=[b.clone() for b in model.buffers()],
        inplace=[getattr(m, "inplace", None) for m in model.modules()],
        x_requires_grad=x.requires_grad,
        x_grad=None if x.grad is None else x.grad.clone(),
        x=x.detach().clone(),
        grad_enabled=torch.is_grad_enabled(),
    )


def _assert_unchanged(before, after):
    for key in before:
        a, b = before[key], after[key]
        if isinstance(a, list) and a and isinstance(a[0], torch.Tensor):
            assert all(torch.equal(u, v) for u, v in zip(a, b)), key
        elif isinstance(a, list) and any(isinstance(u, torch.Tensor) for u in a):
            assert all(
                (u is None and v is None) or torch.equal(u, v) for u, v in zip(a, b)
            ), key
        elif isinstance(a, torch.Tensor):
            assert torch.equal(a, b), key
        else:
            assert a == b, key


class _BNNet(nn.Module):
    """BatchNorm + dropout + a reused in-place ReLU; can raise inside the forward on demand."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 8 * 8, 3)
        self.fail_on_call = None
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.fail_on_call == self.calls:
            raise RuntimeError("boom inside the model")
        x = self.relu(self.bn(self.conv(x)))
        return self.fc(self.drop(self.relu(self.conv2(x))).flatten(1))


def _with_param_grads(model):
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    return model


@pytest.mark.parametrize("criterion", ["taylor", "integrated_gradients", "random"])
@pytest.mark.parametrize("train", [False, True])
def test_no_state_changes_on_success(criterion, train):
    torch.manual_seed(0)
    model = _with_param_grads(_BNNet())
    model.train(train)
    model.drop.eval()  # keep the network deterministic enough to compare runs
    x = torch.randn(2, 3, 8, 8)
    before = _snapshot(model, x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PrunedGradient(model).attribute(x, target=1, criterion=criterion, n_steps=2)
    _assert_unchanged(before, _snapshot(model, x))
    train_warnings = [w for w in caught if "train mode" in str(w.message)]
    assert len(train_warnings) == (1 if train else 0)


@pytest.mark.parametrize("fail_on_call", [1, 2])  # 1: scoring pass, 2: gradient pass
@pytest.mark.parametrize("x_requires_grad", [False, True])
def test_no_state_changes_when_the_model_raises(fail_on_call, x_requires_grad):
    torch.manual_seed(0)
    model = _with_param_grads(_BNNet()).train()
    x = torch.randn(2, 3, 8, 8).requires_grad_(x_requires_grad)
    before = _snapshot(model, x)
    model.fail_on_call = fail_on_call
    with pytest.raises(RuntimeError, match="boom"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            PrunedGradient(model).attribute(x, target=0)
    model.fail_on_call = None
    _assert_unchanged(before, _snapshot(model, x))


def test_hooks_removed_after_bad_target(bias_free_net, images16):
    with pytest.raises(ValueError, match="target"):
        PrunedGradient(bias_free_net).attribute(images16, target=(9999,) * 20)
    assert _all_hooks(bias_free_net) == 0


def test_existing_user_hooks_are_left_alone(images16):
    model = BiasFreeNet().eval()
    seen = []
    handle = model.relu.register_forward_hook(lambda m, a, o: seen.append(o.shape))
    PrunedGradient(model).attribute(images16, target=0)
    assert _all_hooks(model) == 1 and len(seen) == 4  # 2 calls per pass, 2 passes
    handle.remove()


def test_works_under_no_grad_and_keeps_grad_mode(bias_free_net, images16):
    expected = PrunedGradient(bias_free_net).attribute(images16, target=1)
    with torch.no_grad():
        got = PrunedGradient(bias_free_net).attribute(images16, target=1)
        assert not torch.is_grad_enabled()
    assert torch.equal(got, expected)


def test_inference_mode_is_a_clear_error(bias_free_net, images16):
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match="inference_mode"):
            PrunedGradient(bias_free_net).attribute(images16, target=1)
    assert _all_hooks(bias_free_net) == 0


def test_inference_tensors_as_inputs_work(bias_free_net, images16):
    with torch.inference_mode():
        frozen = images16.clone()
    got = PrunedGradient(bias_free_net).attribute(frozen, target=1)
    assert torch.equal(got, PrunedGradient(bias_free_net).attribute(images16, target=1))


def test_frozen_parameters_still_work(images16):
    model = BiasFreeNet().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    got = PrunedGradient(model).attribute(images16, target=2, sparsity=0.5)
    assert got.abs().sum() > 0
    assert not any(p.requires_grad for p in model.parameters())


def test_traced_and_scripted_models_are_refused(bias_free_net, images16):
    traced = torch.jit.trace(bias_free_net, images16)
    with pytest.raises(TypeError, match="eager"):
        PrunedGradient(traced, layers=[bias_free_net.relu])
    with pytest.raises(TypeError, match="torch.jit"):
        PrunedGradient(traced)


def test_hooks_that_never_fire_are_an_error(bias_free_net, images16):
    traced = torch.jit.trace(copy.deepcopy(bias_free_net), images16)
    # A function that calls a traced model: the module hooks are registered but never run.
    relu = bias_free_net.relu
    with pytest.raises(RuntimeError, match="None of the 1 neuron layers ran"):
        PrunedGradient(lambda x: traced(x), layers=[relu]).attribute(images16, target=0)
    assert _all_hooks(bias_free_net) == 0


def test_functional_activations_need_explicit_layers(images16):
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.fc = nn.Linear(2 * 14 * 14, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    model = Functional()
    with pytest.raises(ValueError, match="layers"):
        PrunedGradient(model)
    got = PrunedGradient(model, layers=[model.conv]).attribute(images16, target=0, sparsity=0.5)
    assert got.shape == images16.shape


def test_dataparallel_is_refused(bias_free_net):
    with pytest.raises(TypeError, match="model.module"):
        PrunedGradient(nn.DataParallel(bias_free_net))


def test_in_place_activations_stay_in_place(resnet18):
    x = torch.randn(1, 3, 32, 32)
    PrunedGradient(resnet18).attribute(x, target=0)
    assert all(m.inplace for m in resnet18.modules() if isinstance(m, nn.ReLU))


def test_concurrent_calls_match_serial_calls(resnet18):
    torch.manual_seed(3)
    xs = [torch.randn(2, 3, 32, 32) for _ in range(4)]
    settings = [(0.5, 1), (0.9, 2), (0.7, 3), (0.95, 4)]
    pg = PrunedGradient(resnet18)
    serial = [pg.attribute(x, target=t, sparsity=s) for x, (s, t) in zip(xs, settings)]
    results = [None] * 4

    def work(i):
        results[i] = pg.attribute(xs[i], target=settings[i][1], sparsity=settings[i][0])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, expected in zip(results, serial):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-8)
    assert _all_hooks(resnet18) == 0


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(sparsity=1.0), ValueError, r"sparsity: must be in \[0.0, 1.0\)"),
        (dict(sparsity=-0.1), ValueError, "sparsity"),
        (dict(sparsity="high"), TypeError, "sparsity: expected a number"),
        (dict(criterion="magic"), ValueError, "criterion: 'magic' is not one of 'taylor'"),
        (dict(selection="layer"), ValueError, "selection"),
        (dict(threshold="top"), ValueError, "threshold"),
        (dict(n_steps=0), ValueError, "n_steps"),
        (dict(method="simpson"), ValueError, "method"),
        (dict(internal_batch_size=0), ValueError, "internal_batch_size"),
        (dict(target=10), ValueError, "target: an int target 10 is out of range"),
        (dict(target=[1]), ValueError, "one entry per example"),
        (dict(target=[1, 2, 99]), ValueError, "out of range"),
        (dict(target=None), ValueError, "target: required"),
        (dict(target=(1, 2)), ValueError, "needs 1"),
        (dict(target=torch.zeros(2, 2, dtype=torch.long)), ValueError, "tensor target"),
    ],
)
def test_bad_arguments_are_named(kwargs, exc, pattern, bias_free_net, images16):
    kwargs = {"target": 1, **kwargs}
    with pytest.raises(exc, match=pattern):
        PrunedGradient(bias_free_net).attribute(images16, **kwargs)
    assert _all_hooks(bias_free_net) == 0


def test_bad_inputs_and_layers_are_named(bias_free_net, images16):
    pg = PrunedGradient(bias_free_net)
    with pytest.raises(TypeError, match=r"inputs\[0\]: has dtype torch.int64"):
        pg.attribute(images16.long(), target=0)
    with pytest.raises(TypeError, match="inputs: expected a Tensor"):
        pg.attribute([images16], target=0)
    with pytest.raises(ValueError, match="not a submodule"):
        PrunedGradient(bias_free_net, layers=[nn.ReLU()])
    with pytest.raises(TypeError, match="layers: expected nn.Module"):
        PrunedGradient(bias_free_net, layers=["relu"])
    with pytest.raises(ValueError, match="layers: got an empty list"):
        PrunedGradient(bias_free_net, layers=[])
    with pytest.raises(TypeError, match="forward_func"):
        PrunedGradient(42)
    with pytest.raises(ValueError, match="forward_func is not an nn.Module"):
        PrunedGradient(lambda x: bias_free_net(x))


def test_all_zero_map_warns(bias_free_net, images16):
    # Pruning every neuron of the last hidden layer cuts the input off from the output.
    pg = PrunedGradient(bias_free_net, layers=[bias_free_net.act])
    with pytest.warns(EmptyAttributionWarning, match="no longer depends on the input"):
        got = pg.attribute(
            images16, target=0, sparsity=0.99, threshold="exact", selection="per_layer"
        )
    assert torch.count_nonzero(got) == 0


def test_compiled_models_are_refused(bias_free_net):
    compiled = torch.compile(bias_free_net)
    with pytest.raises(TypeError, match="_orig_mod"):
        PrunedGradient(compiled)


@pytest.mark.parametrize("maps", ["method", "precomputed"])
def test_evaluation_names_a_bad_target(maps):
    from captum.attr import Saliency

    from captum_prune.evaluation import pixel_perturbation

    torch.manual_seed(0)
    model = BiasFreeNet(classes=2).eval()
    images = torch.randn(2, 3, 16, 16)
    attributions = Saliency if maps == "method" else torch.rand(2, 16, 16)
    with pytest.raises(ValueError, match="target: each entry 5 is out of range"):
        pixel_perturbation(model, images, attributions if maps == "precomputed"
                           else attributions(model), target=5, fractions=[0.1])
