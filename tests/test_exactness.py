"""Issue #9: the pathway gradient of the model as the user wrote it, or a clear error.

Every case is compared with an out-of-place computation of the method (tests/_reference.py),
and with the fast paths switched off (the plain path).
"""
import threading
import warnings

import pytest
import torch
import torch.utils.checkpoint
from torch import nn

from captum_prune import PrunedGradient, _fast, criteria
from tests._reference import oracle_attribution

SPARSITY = 0.7


@pytest.fixture(autouse=True, params=["sized", "every_output"])
def shortcut_sizes(request, monkeypatch):
    """Every case twice: with the size limits as shipped (these small layers keep their
    outputs and the scoring backward takes every output as an input), and with every ReLU
    output eligible for the in-place score and the backward to the lowest outputs only."""
    if request.param == "every_output":
        monkeypatch.setattr(_fast.ScoreInPlace, "MIN_ELEMENTS", 0)
        monkeypatch.setattr(criteria, "_ALL_OUTPUTS_MAX_ELEMENTS", -1)


class Net(nn.Module):
    """Conv, in-place ReLU, non-in-place ReLU and a GELU; sequential (one consumer each)."""

    def __init__(self, classes=4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc1 = nn.Linear(6 * 8 * 8, 12)
        self.gelu = nn.GELU()
        self.fc2 = nn.Linear(12, 12)
        self.relu3 = nn.ReLU()
        self.fc3 = nn.Linear(12, classes)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc3(self.relu3(self.fc2(self.gelu(self.fc1(x.flatten(1))))))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.relu1 = nn.Linear(10, 16), nn.ReLU(inplace=True)
        self.fc2, self.relu2 = nn.Linear(16, 16), nn.ReLU()
        self.fc3 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(x)))))


def _net(dtype=torch.float64, factory=Net, seed=0):
    torch.manual_seed(seed)
    return factory().to(dtype).eval()


def _x(dtype=torch.float64, shape=(3, 3, 8, 8), seed=1):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.GELU))]


def _check(model, x, target=(0, 2, 1), forward_func=None, dtype_tol=0.0):
    forward_func = forward_func or model
    target = list(target)[: x.shape[0]]
    layers = _layers(model)
    expected, _ = oracle_attribution(forward_func, layers, x, target, SPARSITY)
    got = PrunedGradient(forward_func, layers=layers).attribute(
        x, target=target, sparsity=SPARSITY
    )
    _fast.ENABLED = False
    try:
        plain = PrunedGradient(forward_func, layers=layers).attribute(
            x, target=target, sparsity=SPARSITY
        )
    finally:
        _fast.ENABLED = True
    assert got.abs().sum() > 0
    if dtype_tol:
        torch.testing.assert_close(got.double(), expected.double(), rtol=dtype_tol, atol=dtype_tol)
    else:
        assert torch.equal(got, expected)
        assert torch.equal(plain, expected)
    return got


def test_plain_model_matches_the_oracle():
    _check(_net(), _x())


@pytest.mark.parametrize("kind", ["times_two", "clone", "global_times_two", "global_record"])
def test_user_forward_hooks_that_return_new_tensors(kind):
    model, x = _net(), _x()
    records = []
    if kind == "times_two":
        handles = [model.relu1.register_forward_hook(lambda m, a, o: o * 2)]
    elif kind == "clone":
        handles = [m.register_forward_hook(lambda m, a, o: o.clone()) for m in _layers(model)]
    elif kind == "global_times_two":
        handles = [
            nn.modules.module.register_module_forward_hook(
                lambda m, a, o: o * 2 if isinstance(m, nn.ReLU) else None
            )
        ]
    else:
        handles = [
            nn.modules.module.register_module_forward_hook(
                lambda m, a, o: records.append(o.detach()) if isinstance(m, nn.ReLU) else None
            )
        ]
    try:
        _check(model, x)
    finally:
        for h in handles:
            h.remove()


def _recorded_runs(model, x, run):
    records = []
    handles = [
        m.register_forward_hook(lambda m, a, o: records.append(o.detach()))
        for m in _layers(model)
    ]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return records


@pytest.mark.parametrize("fast", [True, False])
def test_recording_hooks_see_the_true_activations_of_each_pass(fast):
    model, x, target = _net(), _x(), [0, 2, 1]
    layers = _layers(model)
    n_calls = len(layers)
    oracle_records = _recorded_runs(
        model, x, lambda: oracle_attribution(model, layers, x, target, SPARSITY)
    )
    _fast.ENABLED = fast
    try:
        ours = _recorded_runs(
            model, x,
            lambda: PrunedGradient(model, layers=layers).attribute(
                x, target=target, sparsity=SPARSITY
            ),
        )
    finally:
        _fast.ENABLED = True
    plain = _recorded_runs(model, x, lambda: model(x))
    assert len(ours) == 2 * n_calls == len(oracle_records)
    for got, want in zip(ours[:n_calls], plain):  # scoring pass: unmasked activations
        assert torch.equal(got, want)
    for got, want in zip(ours[n_calls:], oracle_records[n_calls:]):  # pruned: masked
        assert torch.equal(got, want)
    assert any((r == 0).sum() > (p == 0).sum() for r, p in zip(ours[n_calls:], plain))


class _InContext(nn.Module):
    """Runs the wrapped model inside a context manager made by ``make``."""

    def __init__(self, inner, make):
        super().__init__()
        self.inner, self.make = inner, make

    def forward(self, x):
        with self.make():
            return self.inner(x)


def _cloning_hooks():
    return torch.autograd.graph.saved_tensors_hooks(lambda t: t.clone(), lambda t: t)


@pytest.mark.parametrize(
    "make",
    [lambda: torch.autograd.graph.save_on_cpu(pin_memory=False), _cloning_hooks],
    ids=["save_on_cpu", "cloning_saved_tensors_hooks"],
)
def test_saved_tensor_hooks(make):
    inner = _net()
    _check(inner, _x(), forward_func=_InContext(inner, make))


class _Checkpointed(nn.Module):
    def __init__(self, two_relus, reentrant):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.relu_b = nn.ReLU()
        self.two, self.reentrant = two_relus, reentrant
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def block(self, x):
        x = self.relu(self.conv(x))
        return self.relu_b(x * 1.5) if self.two else x

    def forward(self, x):
        x = torch.utils.checkpoint.checkpoint(self.block, x, use_reentrant=self.reentrant)
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("two_relus", [False, True])
@pytest.mark.parametrize("reentrant", [False, True])
def test_activation_checkpointing_is_a_clear_error(two_relus, reentrant):
    model, x = _net(factory=lambda: _Checkpointed(two_relus, reentrant)), _x().requires_grad_()
    # Re-entrant checkpointing refuses autograd.grad itself, with its own clear message.
    with pytest.raises(RuntimeError, match="checkpoint"):
        PrunedGradient(model).attribute(x, target=[0, 1, 2])
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_precisions(dtype):
    model = _net(dtype, factory=MLP)
    x = _x(dtype, shape=(4, 10))
    got = _check(model, x, target=(0, 2, 1, 0))
    path = PrunedGradient(model).pathway(x, target=[0, 2, 1, 0], sparsity=SPARSITY)
    _, keeps = oracle_attribution(model, _layers(model), x, [0, 2, 1, 0], SPARSITY)
    assert all(torch.equal(a, b) for a, b in zip(path.masks, keeps))
    assert got.dtype == dtype


def test_cpu_autocast():
    model, x = _net(torch.float32), _x(torch.float32)

    def forward(inp):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(inp).float()

    _check(model, x, forward_func=forward)


def test_a_hook_that_calls_attribute_on_the_same_model_is_a_clear_error():
    model, x = _net(), _x()
    pg = PrunedGradient(model)
    errors = []

    def nested(module, args, out):
        try:
            pg.attribute(x, target=[0, 1, 2])
        except RuntimeError as error:
            errors.append(error)
            raise

    handle = model.fc3.register_forward_hook(nested)
    try:
        with pytest.raises(RuntimeError, match="another PrunedGradient call"):
            pg.attribute(x, target=[0, 1, 2])
    finally:
        handle.remove()
    assert errors and all(not m._forward_hooks for m in model.modules() if m is not model.fc3)


class _ThreadBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(10, 8), nn.Linear(10, 8)
        self.relu_a, self.relu_b = nn.ReLU(), nn.ReLU()
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        result = {}
        worker = threading.Thread(target=lambda: result.update(b=self.relu_b(self.b(x))))
        worker.start()
        a = self.relu_a(self.a(x))
        worker.join()
        return self.out(torch.cat([a, result["b"]], 1))


def test_a_branch_in_a_worker_thread_is_a_clear_error():
    model = _net(factory=_ThreadBranch)
    with pytest.raises(RuntimeError, match="another thread"):
        PrunedGradient(model).attribute(_x(shape=(2, 10)), target=[0, 1])


class _BackwardThread(nn.Module):
    """A tensor hook that, during the backward of pass ``on_pass`` (1: scoring, 2: pruned),
    runs a neuron layer in a worker thread (as an autograd device thread recomputing a
    checkpointed block would on CUDA)."""

    def __init__(self, on_pass):
        super().__init__()
        self.fc1, self.relu1 = nn.Linear(10, 8), nn.ReLU()
        self.fc2, self.relu2 = nn.Linear(8, 8), nn.ReLU()
        self.out = nn.Linear(8, 3)
        self.on_pass, self.passes = on_pass, 0

    def _in_a_thread(self, grad):
        worker = threading.Thread(target=lambda: self.relu2(torch.zeros(1, 8, dtype=grad.dtype)))
        worker.start()
        worker.join()

    def forward(self, x):
        self.passes += 1
        h = self.fc2(self.relu1(self.fc1(x)))
        if h.requires_grad and self.passes == self.on_pass:
            h.register_hook(self._in_a_thread)
        return self.out(self.relu2(h))


# taylor: pass 1 scores, pass 2 is pruned; integrated_gradients: pass 1 records (no grad),
# passes 2 and 3 integrate the two layer calls, pass 4 is pruned.
@pytest.mark.parametrize(
    "criterion, on_pass",
    [("taylor", 1), ("taylor", 2), ("integrated_gradients", 2), ("integrated_gradients", 4)],
)
def test_a_neuron_layer_run_by_another_thread_during_a_backward_is_a_clear_error(
    criterion, on_pass
):
    model = _net(factory=lambda: _BackwardThread(on_pass))
    with pytest.raises(RuntimeError, match="relu2' ran in another thread"):
        PrunedGradient(model).attribute(
            _x(shape=(2, 10)), target=[0, 1], criterion=criterion, n_steps=2
        )
    assert model.passes == on_pass  # raised right after that pass's backward
    assert all(not m._forward_hooks for m in model.modules())


def test_the_pruned_pass_backward_is_checked_too():
    # Without a check after the last backward, this run returned an unpruned-looking map.
    model = _net(factory=lambda: _BackwardThread(2))
    x = _x(shape=(2, 10))
    with pytest.raises(RuntimeError, match="relu2' ran in another thread"):
        PrunedGradient(model).attribute(x, target=[0, 1])


def _train_mode_buffers_restored(model, forward_func, x):
    before = [b.clone() for b in model.buffers()]
    assert before
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PrunedGradient(forward_func, layers=_layers(model)).attribute(x, target=[0, 1, 2])
    after = list(model.buffers())
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    train = [w for w in caught if "train mode" in str(w.message)]
    assert train and train[0].filename == __file__
    return train


def test_instance_norm_with_running_stats_in_train_mode():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.InstanceNorm2d(4, track_running_stats=True), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
    ).double().train()
    _train_mode_buffers_restored(model, model, _x())


def test_lambda_forward_func_over_a_batchnorm_model_in_train_mode():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    ).double().train()
    _train_mode_buffers_restored(model, lambda inp: model(inp), _x())


def test_empty_batch_names_inputs():
    with pytest.raises(ValueError, match="inputs"):
        PrunedGradient(_net()).attribute(_x()[:0], target=0)


@pytest.mark.parametrize("layers", [5, "relu", 2.0])
def test_wrong_layer_types_name_layers(layers):
    with pytest.raises(TypeError, match="layers"):
        PrunedGradient(_net(), layers=layers)


class _ThreeByFive(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.relu, self.out = nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 15)

    def forward(self, x):
        return self.out(self.relu(self.fc(x))).view(-1, 3, 5)


def test_an_int_target_on_a_three_dimensional_output_is_refused_like_captum():
    from captum.attr import Saliency

    model, x = _net(factory=_ThreeByFive), _x(shape=(2, 10))
    with pytest.raises(AssertionError):
        Saliency(model).attribute(x, target=1)
    with pytest.raises(ValueError, match="target"):
        PrunedGradient(model).attribute(x, target=1)
    PrunedGradient(model).attribute(x, target=(1, 2))  # a full multi-index works


class _ThreeByOne(_ThreeByFive):
    def forward(self, x):
        return self.out(self.relu(self.fc(x)))[:, :3].reshape(-1, 3, 1)


@pytest.mark.parametrize(
    "target", [1, -1, (2,), (2, 0), [(0,), (1,)], [(0, 0), (1, 0)], torch.tensor(2)]
)
def test_targets_follow_captums_rules(target):
    from captum.attr import Saliency

    model, x = _net(factory=_ThreeByOne), _x(shape=(2, 10))
    expected = Saliency(model).attribute(x.clone().requires_grad_(), target=target, abs=False)
    got = PrunedGradient(model).attribute(x, target=target, sparsity=0.0)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(
    "target, match",
    [
        (torch.tensor(1.0), "integer"),
        ([(0, 0), 1], "either ints or tuples"),
        ([(0, 0), (1,)], "the same length"),
        ([0, 1], "2-D output"),
        ((0, 0, 0), "needs 2"),
        ("1", "expected None, an int"),
    ],
)
def test_targets_captum_refuses_are_named(target, match):
    model, x = _net(factory=_ThreeByOne), _x(shape=(2, 10))
    with pytest.raises((ValueError, TypeError), match=match):
        PrunedGradient(model).attribute(x, target=target)


class _ReadsTheAlias(nn.Module):
    """Reads the input of an in-place ReLU after the call: ``h`` and ``y`` are one tensor."""

    def __init__(self):
        super().__init__()
        self.fc1, self.relu = nn.Linear(10, 12), nn.ReLU(inplace=True)
        self.fc2, self.skip = nn.Linear(12, 3), nn.Linear(12, 3)

    def forward(self, x):
        h = self.fc1(x)
        y = self.relu(h)
        return self.fc2(y) + self.skip(h)


def _alias_network(model, x, keep, alias_masked):
    """The pruned network written out: the ReLU's tensor masked, and the later read of its
    input masked too (``alias_masked``, the in-place semantics) or not (out of place)."""
    a = torch.relu(model.fc1(x))
    y = a * keep
    return model.fc2(y) + model.skip(y if alias_masked else a)


@pytest.mark.parametrize("fast", [True, False])
def test_in_place_relu_alias_read_after_the_call(fast):
    model, x = _net(factory=_ReadsTheAlias), _x(shape=(4, 10))
    target = [0, 1, 2, 0]
    _fast.ENABLED = fast
    try:
        path = PrunedGradient(model).pathway(x, target=target, sparsity=0.5)
        got = PrunedGradient(model).attribute(x, target=target, sparsity=0.5)
    finally:
        _fast.ENABLED = True
    (keep,) = path.masks
    assert keep.float().mean() < 1
    # Guarded in-place mask (fast): the one tensor is zeroed, so the later read of the
    # ReLU's input sees the pruned activation. Plain path: ``output * mask`` is a new tensor
    # and the alias keeps the unpruned activation. Either way the gradient is the exact
    # derivative of the network that ran.
    xi = x.clone().requires_grad_()
    out = _alias_network(model, xi, keep, alias_masked=fast)
    (expected,) = torch.autograd.grad(out[torch.arange(4), target].sum(), xi)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(path.pruned_output, out.detach(), rtol=1e-12, atol=1e-12)


def test_warnings_point_at_the_callers_line():
    model = _net()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PrunedGradient(model).attribute(_x(), target=0, sparsity=0.999)
    ours = [w for w in caught if "PrunedGradient" in str(w.message)]
    assert ours and all(w.filename == __file__ for w in ours)


class _SequenceFirst(nn.Module):
    """A sequence-first transformer encoder layer (S, N, E) with a ReLU module in its FFN."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(
            8, 2, dim_feedforward=16, dropout=0.0, activation=nn.ReLU(), batch_first=False
        )
        self.head = nn.Linear(8, 3)

    def forward(self, x):  # x: (N, S, E), batch first at the model's boundary
        return self.head(self.encoder(x.transpose(0, 1)).mean(0))


def test_sequence_first_layers_need_and_use_batch_dims():
    model = _net(factory=_SequenceFirst)
    x = _x(shape=(3, 3, 8))  # S == N: the ambiguous shape
    with pytest.raises(ValueError, match="batch_dims"):
        PrunedGradient(model)
    layers = [model.encoder.activation]
    pg = PrunedGradient(model, layers=layers, batch_dims=1)
    got = pg.attribute(x, target=[0, 2, 1], sparsity=SPARSITY)
    expected, keeps = oracle_attribution(model, layers, x, [0, 2, 1], SPARSITY, batch_dims=[1])
    assert torch.equal(got, expected)
    one_by_one = torch.cat(
        [pg.attribute(x[i : i + 1], target=[t], sparsity=SPARSITY) for i, t in enumerate([0, 2, 1])]
    )
    torch.testing.assert_close(got, one_by_one, rtol=1e-9, atol=1e-12)
    path = pg.pathway(x, target=[0, 2, 1], sparsity=SPARSITY)
    assert path.masks[0].shape[0] == 3 and torch.equal(path.masks[0], keeps[0].movedim(1, 0))
    assert PrunedGradient(model, layers=layers, batch_dims={layers[0]: 1}).batch_dims == [1]
    with pytest.raises(TypeError, match="batch_dims"):
        PrunedGradient(model, layers=layers, batch_dims="1")


def test_fast_paths_equal_the_plain_path_on_a_residual_network(resnet18):
    x = _x(torch.float32, shape=(2, 3, 32, 32))
    fast = PrunedGradient(resnet18).attribute(x, target=[1, 4], sparsity=0.8)
    _fast.ENABLED = False
    try:
        plain = PrunedGradient(resnet18).attribute(x, target=[1, 4], sparsity=0.8)
    finally:
        _fast.ENABLED = True
    assert torch.equal(fast, plain)
