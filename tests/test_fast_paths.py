"""The speed-ups change nothing: numpy and torch paths, threads, scores written over ReLU
outputs."""
import pytest
import torch
from torch import nn

from captum_prune import PrunedGradient, _cpu
from captum_prune.selection import exact_keep, order_statistics, reference_keep
from tests._reference import reference_pathway_gradient


def _chunks(seed, n_rows=3):
    g = torch.Generator().manual_seed(seed)
    shapes = [(n_rows, 4, 6, 6), (n_rows, 37), (n_rows, 2, 50), (n_rows, 1500)]
    chunks = []
    for shape in shapes:
        c = torch.rand(shape, generator=g) ** 3
        c[torch.rand(shape, generator=g) < 0.4] = 0.0
        chunks.append(c)
    return chunks


#: For the tests of the compiled module itself (the numpy path runs without it).
needs_kernels = pytest.mark.skipif(
    _cpu._kernels is None, reason="captum_prune._kernels was not built (no C compiler at install)"
)


def _torch_only(monkeypatch):
    # What runs on CUDA (and for dtypes numpy lacks): every helper takes its torch branch.
    monkeypatch.setattr(_cpu, "on_numpy", lambda *tensors: False)


@pytest.mark.parametrize("long_rows", [False, True])
@pytest.mark.parametrize("rule", [reference_keep, exact_keep])
def test_torch_path_selects_as_the_numpy_path(rule, long_rows, monkeypatch):
    if long_rows:  # the sampled-bracket path
        monkeypatch.setattr("captum_prune.selection._SORT_LIMIT", 100)
        monkeypatch.setattr("captum_prune.selection._COMPILED_ROW_LIMIT", 0)
        monkeypatch.setattr("captum_prune.selection._SAMPLE", 256)
    chunks = _chunks(0)
    for sparsity in (0.2, 0.7, 0.95):
        with_numpy = rule(chunks, sparsity)
        with monkeypatch.context() as patch:
            _torch_only(patch)
            with_torch = rule(chunks, sparsity)
        assert all(torch.equal(a, b) for a, b in zip(with_numpy, with_torch)), sparsity


@pytest.mark.parametrize("kernels", [True, False])
@pytest.mark.parametrize("long_rows", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_reference_rule_equals_the_torch_path_on_special_values(
    dtype, long_rows, kernels, monkeypatch
):
    if long_rows:  # the bracket paths: numpy's fused one against the torch one
        monkeypatch.setattr("captum_prune.selection._SORT_LIMIT", 100)
        monkeypatch.setattr("captum_prune.selection._COMPILED_ROW_LIMIT", 0)
        monkeypatch.setattr("captum_prune.selection._SAMPLE", 256)
    if not kernels:  # the bracket in numpy, as where the C module was not built
        monkeypatch.setattr(_cpu, "_kernels", None)
    chunks = [c.to(dtype) for c in _chunks(2, n_rows=5)]
    chunks[0][0, 0, 0, :3] = float("nan")
    chunks[1][1, :5] = -0.0
    chunks[2][2] = 0.0  # a row of one chunk all zero
    chunks[3][3, :700] = chunks[3][3, 0]  # ties
    chunks[3][4] = -chunks[3][4]  # negative scores (a criterion may give them)
    for sparsity in (0.001, 0.3, 0.5, 0.85, 0.999):
        with_numpy = reference_keep(chunks, sparsity)
        with monkeypatch.context() as patch:
            _torch_only(patch)
            with_torch = reference_keep(chunks, sparsity)
        assert all(torch.equal(a, b) for a, b in zip(with_numpy, with_torch)), sparsity


def test_torch_path_attributes_as_the_numpy_path(resnet18, monkeypatch):
    x = torch.randn(2, 3, 40, 40)
    expected = PrunedGradient(resnet18).attribute(x, target=[1, 4], sparsity=0.8)
    _torch_only(monkeypatch)
    got = PrunedGradient(resnet18).attribute(x, target=[1, 4], sparsity=0.8)
    assert torch.equal(got, expected)


def test_thread_count_does_not_change_the_selection(monkeypatch):
    monkeypatch.setattr("captum_prune.selection._SORT_LIMIT", 100)
    monkeypatch.setattr("captum_prune.selection._COMPILED_ROW_LIMIT", 0)
    monkeypatch.setattr("captum_prune.selection._SAMPLE", 256)
    monkeypatch.setattr(_cpu, "_POOL_MIN_ELEMENTS", 1)  # pool these small chunks too
    pools = []
    executor = _cpu.ThreadPoolExecutor
    monkeypatch.setattr(
        _cpu, "ThreadPoolExecutor", lambda *a, **k: pools.append(a) or executor(*a, **k)
    )
    chunks = _chunks(1, n_rows=4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = reference_keep(chunks, 0.8), order_statistics(chunks, [1200, 1201])
        torch.set_num_threads(3)  # a pool of 3, whatever the machine has
        pooled = reference_keep(chunks, 0.8), order_statistics(chunks, [1200, 1201])
    finally:
        torch.set_num_threads(threads)
    assert pools and all(a[0] == 3 for a in pools)  # only the 3-thread calls used a pool
    assert all(torch.equal(a, b) for a, b in zip(serial[0], pooled[0]))
    assert torch.equal(serial[1], pooled[1])


@pytest.mark.parametrize("width", [8, 13, 64])
def test_count_rows_counts_each_row(width):
    mask = torch.rand(5, width, generator=torch.Generator().manual_seed(width)) < 0.5
    assert torch.equal(_cpu.count_rows(mask), mask.sum(1))
    assert torch.equal(_cpu.count_rows(mask[:, 1:]), mask[:, 1:].sum(1))  # not contiguous


def test_ranked_equals_sorting():
    values = torch.randn(4, 300, generator=torch.Generator().manual_seed(2))
    ranks = torch.tensor([[0, 1], [150, 151], [299, 299], [7, 200]])
    expected = values.sort(1).values.gather(1, ranks)
    assert torch.equal(_cpu.ranked(values, ranks), expected)
    assert torch.equal(_cpu.ranked(values.double(), ranks), expected.double())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_mask_in_place_zeroes_the_pruned(dtype):
    values = torch.randn(3, 4, 5).to(dtype)
    keep = torch.rand(3, 4, 5) < 0.5
    expected = values * keep
    _cpu.mask_(values, keep)
    assert torch.equal(values, expected)


class _SharedActivations(nn.Module):
    """ReLU outputs read by a product (whose backward reads them), by a residual sum, by the
    model output itself, and by a second in-place ReLU module."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 8), nn.Linear(6, 8), nn.Linear(8, 3)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.relu1(self.fc1(x))
        g = self.relu2(h * self.fc2(x) + h)
        return self.fc3(g) + h[:, :3]


def test_scores_over_relu_outputs_match_the_oracle():
    # attribute() writes the taylor scores over the ReLU outputs during the backward; the
    # independent oracle keeps every activation. float64: no rounding ties at the threshold.
    torch.manual_seed(3)
    model = _SharedActivations().double().eval()
    x = torch.randn(4, 6, dtype=torch.float64)
    target = [0, 1, 2, 1]
    for percent in (30, 60, 85):
        expected, _ = reference_pathway_gradient(model, x, target, percent)
        got = PrunedGradient(model).attribute(x, target=target, sparsity=percent / 100)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
        path = PrunedGradient(model).pathway(x, target=target, sparsity=percent / 100)
        with torch.no_grad():
            h = model.relu1(model.fc1(x))
        assert torch.equal(path.activations[0], h)  # pathway() keeps the activations


def test_channels_last_models_prune_the_same_neurons(resnet18):
    # Channels-last activations are not contiguous: their scores get buffers of their own and
    # their masks are applied by logical index.
    import copy

    model = copy.deepcopy(resnet18).double()
    x = torch.randn(2, 3, 48, 48, dtype=torch.float64)
    pg = PrunedGradient(model)
    expected, path = pg.attribute(x, target=[1, 2]), pg.pathway(x, target=[1, 2])
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    pg = PrunedGradient(model)
    got, got_path = pg.attribute(x, target=[1, 2]), pg.pathway(x, target=[1, 2])
    assert all(torch.equal(a, b) for a, b in zip(got_path.masks, path.masks))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-15)


class _CountBackward(torch.autograd.Function):
    calls = 0

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        _CountBackward.calls += 1
        return grad


class _TwoBranches(nn.Module):
    """Two inputs, each through its own stem and ReLU; the stems count their backwards."""

    def __init__(self):
        super().__init__()
        self.stem1, self.stem2 = nn.Linear(5, 7), nn.Linear(4, 7)
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.head = nn.Linear(7, 3)

    def forward(self, x1, x2):
        h1 = self.relu1(self.stem1(_CountBackward.apply(x1)))
        h2 = self.relu2(self.stem2(_CountBackward.apply(x2)))
        return self.head(self.relu3(h1 * h2 + h1))


def test_scoring_backward_stops_at_the_lowest_layers_of_every_branch():
    torch.manual_seed(4)
    model = _TwoBranches().eval()
    x1, x2 = torch.randn(3, 5), torch.randn(3, 4)
    target = [0, 2, 1]
    _CountBackward.calls = 0
    PrunedGradient(model).attribute((x1, x2), target=target, sparsity=0.5)
    assert _CountBackward.calls == 2  # the pruned pass's, one per input; none while scoring
    # Both branches were scored all the same: |a * dy/da| of each ReLU output.
    path = PrunedGradient(model).pathway((x1, x2), target=target, sparsity=0.5)
    a1 = model.relu1(model.stem1(x1)).detach().requires_grad_()
    a2 = model.relu2(model.stem2(x2)).detach().requires_grad_()
    y = model.head(model.relu3(a1 * a2 + a1))
    g1, g2 = torch.autograd.grad(y[range(3), target].sum(), (a1, a2))
    torch.testing.assert_close(path.scores[0], (a1 * g1).abs())
    torch.testing.assert_close(path.scores[1], (a2 * g2).abs())


def test_nonzero_rows_equals_the_torch_rule(monkeypatch):
    a = torch.zeros(5, 3, 4)
    b = torch.zeros(5, 7)
    a[0, 1, 2] = 1.0
    a[1] = -0.0  # not a nonzero entry
    b[2, 3] = float("nan")  # counts as one
    a[3, 0, 0] = 1e-45  # a denormal is not 0
    tensors = [a, b.t().contiguous().t()]  # the second not contiguous
    expected = torch.tensor([True, False, True, True, False])
    assert torch.equal(_cpu.nonzero_rows(tensors), expected)
    _torch_only(monkeypatch)
    assert torch.equal(_cpu.nonzero_rows(tensors), expected)


@pytest.mark.parametrize("size", [0, 5, 8, 64, 1003])
@pytest.mark.parametrize("false_share", [0.0, 0.02, 0.5, 1.0])
def test_false_positions_equal_flatnonzero(size, false_share):
    import numpy

    rng = numpy.random.default_rng(size)
    mask = rng.random((size,)) >= false_share
    for shaped in (mask, mask.reshape(1, -1), mask[::-1]):  # 2-D, and not contiguous
        expected = numpy.flatnonzero(~shaped.reshape(-1))
        assert numpy.array_equal(_cpu.false_positions(shaped), expected)


def _bracket_cases(dtype):
    import numpy

    rng = numpy.random.default_rng(7)
    tiny = numpy.finfo(dtype).smallest_subnormal
    for width in (0, 1, 7, 8, 9, 511, 512, 513, 1503):
        values = (rng.random((4, width)) ** 3).astype(dtype)
        values[values < 0.05] = 0.0
        if width >= 9:
            values[0, :9] = [numpy.nan, -0.0, numpy.inf, -numpy.inf, tiny, -tiny, -1.0, 0.5, 0.25]
        low = numpy.array([0.25, -numpy.inf, 0.0, 0.1], dtype=dtype)
        high = numpy.array([0.5, 0.3, numpy.inf, 0.1], dtype=dtype)  # a single-value range
        if width:
            values[1, -1] = high[1]  # at a bound: inside
            values[3, :width // 2] = low[3]  # ties at the single value
        yield values, low, high


@needs_kernels
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compiled_bracket_equals_numpy(dtype, monkeypatch):
    import numpy

    for values, low, high in _bracket_cases(getattr(numpy, dtype)):
        compiled = _cpu.bracket(values, low, high)
        with monkeypatch.context() as patch:
            patch.setattr(_cpu, "_kernels", None)
            plain = _cpu.bracket(values, low, high)
        for got, expected in zip(compiled, plain):
            assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()
        # And what the result means, written out.
        lower, above = values < low[:, None], values > high[:, None]
        assert numpy.array_equal(compiled[0], lower.sum(axis=1))
        assert numpy.array_equal(compiled[1], above)
        inside = numpy.flatnonzero(~(lower | above))
        assert numpy.array_equal(compiled[2], inside)
        assert compiled[3].tobytes() == values.reshape(-1)[inside].tobytes()  # NaN too


@needs_kernels
def test_compiled_bracket_refuses_mismatched_buffers():
    import numpy

    values = numpy.zeros((2, 5), dtype=numpy.float32)
    keep, below = numpy.empty((2, 5), dtype=bool), numpy.empty(2, dtype=numpy.int64)
    low = numpy.zeros(2, dtype=numpy.float64)  # not the values' dtype
    with pytest.raises(ValueError, match="bracket"):
        _cpu._kernels.bracket(values, low, low, keep, below, 2, 5)
    with pytest.raises(ValueError, match="bracket"):
        _cpu._kernels.bracket(values, low.astype("f4"), low.astype("f4"), keep, below, 2, 6)


def test_the_compiled_kernel_is_built_where_a_compiler_is():
    import importlib.util
    import shutil
    import sys

    if not (sys.platform.startswith("linux") and shutil.which("cc")):
        pytest.skip("no C compiler here: the numpy path runs")
    found = importlib.util.find_spec("captum_prune._kernels")
    assert found is not None, "reinstall (pip install -e .) to build captum_prune._kernels"


def test_the_environment_switches_the_compiled_kernels_off():
    import os
    import subprocess
    import sys

    code = "from captum_prune import _cpu; print(_cpu.kernels_in_use())"
    env = {**os.environ, _cpu.KERNELS_ENV: "0"}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert off.stdout.strip() == "False", off.stderr


@pytest.fixture
def three_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(3)  # a pool of 3, whatever the machine has
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1003])
def test_compiled_mask_equals_numpy(size, dtype, monkeypatch):
    values = torch.randn(size, dtype=dtype)
    values[::7] = float("nan")
    values[1::7] = float("inf")
    values[2::7] = -0.0
    keep = torch.rand(size) < 0.4
    compiled, plain = values.clone(), values.clone()
    _cpu.mask_(compiled, keep)
    monkeypatch.setattr(_cpu, "_kernels", None)
    _cpu.mask_(plain, keep)
    assert compiled.numpy().tobytes() == plain.numpy().tobytes()  # NaN, inf * 0, -0.0 alike
    assert torch.equal(plain.nan_to_num(7.0), (values * keep).nan_to_num(7.0))


@needs_kernels
def test_compiled_mask_refuses_mismatched_buffers():
    import numpy

    with pytest.raises(ValueError, match="mask"):
        _cpu._kernels.mask(numpy.zeros(4, dtype=numpy.float32), numpy.zeros(5, dtype=numpy.uint8))
    with pytest.raises(ValueError, match="mask"):
        _cpu._kernels.mask(numpy.zeros(4, dtype=numpy.int32), numpy.zeros(4, dtype=numpy.uint8))


def test_workers_join_their_threads_and_nest(three_threads):
    import threading

    before = threading.active_count()
    with _cpu.workers() as outer:
        assert outer is not None
        with _cpu.workers() as inner:
            assert inner is outer  # one pool per call, however deep
        assert _cpu.map_chunks(lambda c: c.sum().item(), [torch.ones(1 << 21)] * 4) == [2.0**21] * 4
    assert threading.active_count() == before
    torch.set_num_threads(1)
    with _cpu.workers() as none:
        assert none is None  # one thread: no pool


def test_pooled_attribution_equals_the_unpooled_one(resnet18):
    import contextlib

    x = torch.randn(2, 3, 64, 64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # both at 2 threads: torch's own kernels alike
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_cpu, "workers", contextlib.nullcontext)
            patch.setattr(_cpu, "_POOL_MIN_ELEMENTS", 1 << 40)
            expected = PrunedGradient(resnet18).attribute(x, target=[1, 4], sparsity=0.8)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_cpu, "_POOL_MIN_ELEMENTS", 1)  # pool even these small chunks
            got = PrunedGradient(resnet18).attribute(x, target=[1, 4], sparsity=0.8)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("sparsity", [0.2, 0.7, 0.95])
def test_one_example_selects_as_the_torch_path(sparsity, monkeypatch):
    chunks = _chunks(4, n_rows=1)  # one example: one pooled sort, masks as views of one compare
    chunks[1][0, :5] = float("nan")
    with_numpy = reference_keep(chunks, sparsity)
    with monkeypatch.context() as patch:
        _torch_only(patch)
        with_torch = reference_keep(chunks, sparsity)
    for a, b, c in zip(with_numpy, with_torch, chunks):
        assert a.shape == c.shape and a.is_contiguous() and torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1003])
def test_compiled_abs_product_equals_torch(size, dtype):
    g = torch.Generator().manual_seed(size)
    a = torch.randn(size, generator=g, dtype=dtype) * 1e3
    b = torch.randn(size, generator=g, dtype=dtype) * 1e-3
    a[::7], b[1::7], a[2::7] = float("nan"), float("inf"), -0.0
    a[3::7] = torch.finfo(dtype).tiny / 4  # denormal products underflow alike
    expected = torch.mul(a.clone(), b).abs_()
    got = _cpu.abs_product_(a.clone(), b)
    assert got.numpy().tobytes() == expected.numpy().tobytes()


@needs_kernels
def test_abs_product_leaves_large_tensors_to_torch_on_several_threads(three_threads, monkeypatch):
    calls = []
    kernels = type("Kernels", (), {"abs_product": staticmethod(lambda *arrays: calls.append(1))})
    monkeypatch.setattr(_cpu, "_kernels", kernels())
    monkeypatch.setattr(_cpu, "_ABS_PRODUCT_MAX_ELEMENTS", 10)
    a, b = torch.rand(11), torch.rand(11)
    torch.testing.assert_close(_cpu.abs_product_(a.clone(), b), (a * b).abs())
    assert not calls  # on three threads torch's two ops run on all of them
    _cpu.abs_product_(torch.rand(10), torch.rand(10))
    assert len(calls) == 1


def test_abs_product_of_a_tensor_with_itself_is_torchs():
    a = torch.randn(100)
    expected = torch.mul(a.clone(), a.clone()).abs_()
    assert torch.equal(_cpu.abs_product_(a, a), expected)  # one buffer: torch's ops


@needs_kernels
def test_compiled_abs_product_refuses_mismatched_buffers():
    import numpy

    with pytest.raises(ValueError, match="abs_product"):
        _cpu._kernels.abs_product(numpy.zeros(4, "f4"), numpy.zeros(4, "f8"))
    with pytest.raises(ValueError, match="abs_product"):
        _cpu._kernels.abs_product(numpy.zeros(4, "f4"), numpy.zeros(5, "f4"))


@pytest.mark.parametrize("long_rows", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_fast_path_together_equals_the_plain_path(resnet18, dtype, long_rows, monkeypatch):
    # The selection (the bracket with long rows forced, else the compiled one), the compiled
    # passes and the in-place shortcuts on every ReLU output at once, on a model with a
    # recording user hook, against the plain path: no in-place shortcut (out-of-place masks
    # and scores), no compiled module, the torch selection.
    import copy

    from captum_prune import _fast, criteria

    model = copy.deepcopy(resnet18).to(dtype)  # the fixture is shared: leave it as it is
    x = torch.randn(2, 3, 32, 32, dtype=dtype)
    records = []
    hook = model.layer1[0].relu.register_forward_hook(lambda m, a, o: records.append(o.clone()))
    if long_rows:
        monkeypatch.setattr("captum_prune.selection._SORT_LIMIT", 1000)
        monkeypatch.setattr("captum_prune.selection._COMPILED_ROW_LIMIT", 0)
        monkeypatch.setattr("captum_prune.selection._SAMPLE", 4096)
    monkeypatch.setattr(_fast.ScoreInPlace, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(criteria, "_ALL_OUTPUTS_MAX_ELEMENTS", -1)
    try:
        fast = PrunedGradient(model).attribute(x, target=[1, 4], sparsity=0.8)
        fast_records, records[:] = list(records), []
        with monkeypatch.context() as patch:
            patch.setattr(_fast, "ENABLED", False)
            patch.setattr(_cpu, "_kernels", None)
            _torch_only(patch)
            plain = PrunedGradient(model).attribute(x, target=[1, 4], sparsity=0.8)
    finally:
        hook.remove()
    assert torch.equal(fast, plain)
    assert len(fast_records) == len(records) and all(
        torch.equal(a, b) for a, b in zip(fast_records, records)
    )


def _numpy_sort_keep(chunks, sparsity, monkeypatch):
    """reference_keep by numpy's sort of each pooled row (no compiled module, no bracket)."""
    with monkeypatch.context() as patch:
        patch.setattr(_cpu, "_kernels", None)
        patch.setattr("captum_prune.selection._SORT_LIMIT", 1 << 30)
        return reference_keep(chunks, sparsity)


def _selection_rows(dtype):
    """Pooled rows of scores as networks give them, and as they could be: dead units (exact
    zeros), ties, NaN, infinities, signed zeros, denormals, a constant row."""
    g = torch.Generator().manual_seed(7)
    special = torch.tensor(
        [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-45, -1e-45, 1.0, -1.0, 3e38]
    )
    for kind in ("relu", "normal", "ties", "special", "nan", "neg_inf", "constant"):
        for widths in ([3], [40, 0, 9], [6000, 2500, 300], [16384, 16384, 8192, 3072, 7]):
            shapes = [(3, w) for w in widths]
            chunks = []
            for shape in shapes:
                c = torch.randn(shape, generator=g, dtype=torch.float64)
                if kind == "relu":
                    c = c.abs() * (torch.rand(shape, generator=g) < 0.5)
                elif kind == "ties":
                    c = torch.randint(0, 4, shape, generator=g).double()
                elif kind == "special":
                    c = special[torch.randint(0, len(special), shape, generator=g)].double()
                elif kind == "nan":
                    c[torch.rand(shape, generator=g) < 0.6] = float("nan")
                elif kind == "neg_inf":
                    c = c.abs()
                    c[torch.rand(shape, generator=g) < 0.1] = -float("inf")
                elif kind == "constant":
                    c = torch.full(shape, 2.5, dtype=torch.float64)
                chunks.append(c.to(dtype).contiguous())
            yield kind, chunks


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_selection_equals_the_numpy_sort(dtype, monkeypatch):
    # The compiled selection (a sampled bracket, then an exact radix
    # selection where the bracket misses or the row is short) against numpy's sort of every
    # pooled row: the same masks, also where the bracket is made to miss (a tiny sample, no
    # margin) or is skipped (sample 0: the radix selection alone).
    import numpy

    from captum_prune import selection

    kernels = _cpu._kernels
    for kind, chunks in _selection_rows(dtype):
        n = sum(c.shape[1] for c in chunks)
        for sparsity in (1e-4, 0.1, 0.5, 0.85, 0.9996, 0.33333):
            expected = _numpy_sort_keep(chunks, sparsity, monkeypatch)
            got = reference_keep(chunks, sparsity)
            assert all(torch.equal(a, b) for a, b in zip(got, expected)), (kind, n, sparsity)
            ranks, gamma = selection._reference_ranks(n, sparsity)
            arrays = tuple(c.numpy() for c in chunks)
            for sample, margin in ((0, 3.0), (min(16, n), 0.0), (min(512, n), 1.0)):
                keep = tuple(numpy.empty(a.shape, dtype=bool) for a in arrays)
                kernels.select_keep(arrays, keep, 3, 0, 3, ranks[0], len(ranks) == 2, gamma,
                                    sample, margin)
                assert all(numpy.array_equal(k, e.numpy()) for k, e in zip(keep, expected)), (
                    kind, n, sparsity, sample)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_selection_of_long_rows_equals_the_numpy_sort(dtype, monkeypatch):
    # Rows past the numpy path's sort limit (a CIFAR ResNet-8 at batch 1 has 295k scores) go
    # through the compiled selection too, up to _COMPILED_ROW_LIMIT.
    from captum_prune import selection

    g = torch.Generator().manual_seed(11)
    relu = torch.randn(2, 300_000, generator=g, dtype=torch.float64).abs()
    relu[torch.rand(2, 300_000, generator=g) < 0.5] = 0.0
    ties = torch.randint(0, 3, (2, 300_000), generator=g).double()
    ties[0, :10] = float("nan")
    split_ties = [c.contiguous() for c in ties.to(dtype).split([1, 299_999], 1)]
    for chunks in ([relu.to(dtype)], split_ties):
        assert sum(c.shape[1] for c in chunks) > selection._SORT_LIMIT
        for sparsity in (0.5, 0.85, 0.99):
            expected = _numpy_sort_keep(chunks, sparsity, monkeypatch)
            got = reference_keep(chunks, sparsity)
            assert all(torch.equal(a, b) for a, b in zip(got, expected))


@needs_kernels
def test_compiled_selection_spreads_rows_over_the_pool(three_threads):
    # Rows split among the pool's threads (one call per span of rows) give the same masks.
    chunks = [torch.rand(64, 6000) ** 3, torch.rand(64, 3000)]
    single = reference_keep(chunks, 0.85)
    with _cpu.workers():
        pooled = reference_keep(chunks, 0.85)
    assert all(torch.equal(a, b) for a, b in zip(single, pooled))


@needs_kernels
def test_compiled_selection_refuses_mismatched_buffers():
    import numpy

    select = _cpu._kernels.select_keep
    values = numpy.zeros((2, 5), dtype=numpy.float32)
    keep = numpy.empty((2, 5), dtype=bool)
    with pytest.raises(ValueError, match="select_keep"):  # one dtype for all chunks
        select((values, values.astype("f8")), (keep, keep), 2, 0, 2, 3, False, 0.0, 0, 3.0)
    with pytest.raises(ValueError, match="select_keep"):  # a keep byte per value
        select((values,), (numpy.empty(9, dtype=bool),), 2, 0, 2, 3, False, 0.0, 0, 3.0)
    with pytest.raises(ValueError, match="select_keep"):  # rank + 1 beyond the row
        select((values,), (keep,), 2, 0, 2, 4, True, 0.5, 0, 3.0)
    with pytest.raises(ValueError, match="select_keep"):  # rows beyond the buffers
        select((values,), (keep,), 2, 0, 3, 1, False, 0.0, 0, 3.0)
    with pytest.raises(ValueError, match="select_keep"):  # not float32/float64
        select((values.astype("i4"),), (keep,), 2, 0, 2, 1, False, 0.0, 0, 3.0)


def test_bracketed_selection_refuses_a_tau_outside_its_bracket(monkeypatch):
    # -inf at the rank and a finite value next to it interpolate to NaN (numpy prunes every
    # neuron then); the masks the bracket wrote outside it assumed a tau inside.
    monkeypatch.setattr("captum_prune.selection._SORT_LIMIT", 1000)
    monkeypatch.setattr("captum_prune.selection._COMPILED_ROW_LIMIT", 0)
    monkeypatch.setattr("captum_prune.selection._SAMPLE", 512)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 20000, generator=g)
    x[:, :2000] = -float("inf")
    x = x[:, torch.randperm(20000, generator=g)].contiguous()
    for sparsity in (1999.2 / 19999, 0.1, 0.3):
        expected = _numpy_sort_keep(x, sparsity, monkeypatch)
        assert torch.equal(reference_keep(x, sparsity), expected)
    assert not reference_keep(x, 1999.2 / 19999).any()


def test_zero_rows_are_the_rows_without_a_nonzero_entry(monkeypatch):
    a = torch.zeros(5, 3, 4)
    b = torch.zeros(5, 7, dtype=torch.float64)
    a[0, 1, 2] = 1.0
    a[1] = -0.0  # zeros
    b[2, 3] = float("nan")  # not a zero
    a[3, 0, 0] = 1e-45  # nor is a denormal
    b[1, 6] = 2.0
    for tensors, expected in (
        ([a], [1, 2, 4]),
        ([a, b], [4]),
        ([a, b.t().contiguous().t()], [4]),  # not contiguous: numpy's count
        ([a.half()], [1, 2, 3, 4]),  # no numpy dtype: torch's (1e-45 is 0 in half)
    ):
        assert _cpu.zero_rows(tensors) == expected
        with monkeypatch.context() as patch:
            patch.setattr(_cpu, "_kernels", None)
            assert _cpu.zero_rows(tensors) == expected


@pytest.mark.parametrize("model_name", ["two_branches", "resnet18"])
def test_scoring_backward_to_every_output_equals_the_one_to_the_lowest(model_name, resnet18,
                                                                         monkeypatch):
    # Small layer outputs are all inputs of the scoring backward (no graph walk); the
    # gradients reaching each, and so every score and mask, are those of the backward to the
    # lowest outputs only, bit for bit.
    from captum_prune import criteria

    torch.manual_seed(5)
    if model_name == "two_branches":
        model, target = _TwoBranches().eval(), [0, 2, 1]
        inputs = (torch.randn(3, 5), torch.randn(3, 4))
    else:
        model, inputs, target = resnet18, torch.randn(2, 3, 32, 32), [1, 4]
    walk_calls = []
    lowest = criteria._lowest_layer_outputs
    monkeypatch.setattr(criteria, "_lowest_layer_outputs",
                        lambda acts: walk_calls.append(1) or lowest(acts))
    every = PrunedGradient(model).pathway(inputs, target=target, sparsity=0.8)
    assert not walk_calls  # small: no walk
    monkeypatch.setattr(criteria, "_ALL_OUTPUTS_MAX_ELEMENTS", -1)
    walked = PrunedGradient(model).pathway(inputs, target=target, sparsity=0.8)
    assert walk_calls
    assert all(torch.equal(a, b) for a, b in zip(every.scores, walked.scores))
    assert all(torch.equal(a, b) for a, b in zip(every.masks, walked.masks))
