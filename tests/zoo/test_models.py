import os
from collections import Counter

import pytest
import torch
from torch import nn

import captum_prune.zoo.training as training
from captum_prune.zoo.data import make_digits_canvas
from captum_prune.zoo.models import BasicBlock, DigitsResNet, build_digits_model
from captum_prune.zoo.training import (
    DigitsRecipe,
    evaluate_accuracy,
    load_default_model,
    train_classifier,
)

# Small enough to train in a few seconds on two cores.
_QUICK = DigitsRecipe(widths=(4, 8, 8), epochs=1, batch_size=16, max_train=64)


@pytest.fixture(scope="module")
def data():
    return make_digits_canvas("train"), make_digits_canvas("test")


def _relu_calls(model, x):
    calls = Counter()
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: calls.update([name]))
        for name, module in model.named_modules()
        if isinstance(module, nn.ReLU)
    ]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls


@pytest.mark.parametrize("channels", [1, 3])
def test_forward_shape_and_size(channels):
    model = build_digits_model(channels, seed=0)
    assert model(torch.randn(4, channels, 32, 32)).shape == (4, 10)
    assert model(torch.randn(2, channels, 40, 40)).shape == (2, 10)
    assert 10_000 < sum(p.numel() for p in model.parameters()) < 100_000


def test_each_block_reuses_one_inplace_relu():
    model = build_digits_model(seed=0)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 3
    assert all(isinstance(b.relu, nn.ReLU) and b.relu.inplace for b in blocks)
    calls = _relu_calls(model, torch.randn(2, 3, 32, 32))
    assert calls == {"relu": 1, "layer1.relu": 2, "layer2.relu": 2, "layer3.relu": 2}


def test_seeded_build_is_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = build_digits_model(seed=7), build_digits_model(seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    c = build_digits_model(seed=8)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_short_training_beats_chance():
    # Digits filling a 16x16 canvas learn in seconds; on the default 32x32 canvases the
    # model needs the full recipe (see load_default_model).
    train = make_digits_canvas("train", canvas_size=16)
    test = make_digits_canvas("test", canvas_size=16)
    model = train_classifier(
        build_digits_model(seed=0), train.images[:400], train.labels[:400],
        epochs=8, batch_size=32, seed=0, progress=False,
    )
    assert not model.training
    # Chance is 0.1.
    assert evaluate_accuracy(model, test.images, test.labels) > 0.4


def test_training_is_deterministic_in_its_seed_and_keeps_global_rng(data):
    train, _ = data
    x, y = train.images[:64], train.labels[:64]
    state = torch.random.get_rng_state()

    def run(seed):
        model = build_digits_model(seed=0, widths=(4, 8, 8))
        return train_classifier(
            model, x, y, epochs=1, batch_size=16, max_shift=2, seed=seed, progress=False
        )

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_training_does_not_depend_on_the_callers_threads(data):
    # Training runs under TRAIN_THREADS (1) whatever the caller set, and restores the count.
    train, _ = data
    x, y = train.images[:96], train.labels[:96]
    threads = torch.get_num_threads()

    def run(n):
        torch.set_num_threads(n)
        try:
            model = build_digits_model(seed=0, widths=(4, 8, 8))
            train_classifier(model, x, y, epochs=1, batch_size=16, seed=0, progress=False)
            assert torch.get_num_threads() == n
            return model
        finally:
            torch.set_num_threads(threads)

    a, b = run(1), run(3)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_evaluate_accuracy_matches_argmax_and_restores_mode(data):
    _, test = data
    model = build_digits_model(seed=0).train()
    accuracy = evaluate_accuracy(model, test.images, test.labels, batch_size=50)
    assert model.training
    with torch.no_grad():
        expected = (model.eval()(test.images).argmax(1) == test.labels).float().mean()
    assert accuracy == pytest.approx(float(expected))


def test_random_shift_translates_within_range():
    max_shift = 3
    images = torch.zeros(20, 2, 12, 12)
    images[:, :, 3:9, 3:9] = torch.rand(20, 2, 6, 6) + 0.1
    shifted = training._random_shift(images, max_shift, torch.Generator().manual_seed(0))
    offsets = set()
    for original, out in zip(images, shifted):
        matches = [
            (dy, dx)
            for dy in range(-max_shift, max_shift + 1)
            for dx in range(-max_shift, max_shift + 1)
            if torch.equal(torch.roll(original, (dy, dx), dims=(1, 2)), out)
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 5


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(epochs=0), ValueError, "epochs"),
        (dict(batch_size=1), ValueError, "batch_size"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(weight_decay=-1.0), ValueError, "weight_decay"),
        (dict(max_shift=-1), ValueError, "max_shift"),
        (dict(seed=0.5), TypeError, "seed"),
        (dict(labels=torch.zeros(3, dtype=torch.long)), ValueError, "labels"),
        (dict(labels=torch.zeros(8)), TypeError, "labels"),
    ],
)
def test_train_classifier_bad_arguments(kwargs, error, name):
    args = dict(images=torch.randn(8, 3, 32, 32), labels=torch.zeros(8, dtype=torch.long))
    args.update(kwargs)
    with pytest.raises(error, match=name):
        train_classifier(build_digits_model(seed=0), progress=False, **args)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="channels"):
        build_digits_model(channels=2)
    with pytest.raises(ValueError, match="widths"):
        DigitsResNet(widths=())
    with pytest.raises(TypeError, match="recipe"):
        load_default_model(recipe={"epochs": 1})


def _forbid_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("retrained although a cached model exists")

    monkeypatch.setattr(training, "train_classifier", fail)


def test_cache_round_trip(tmp_path, monkeypatch):
    first, info = load_default_model(tmp_path, progress=False, recipe=_QUICK)
    assert not info["from_cache"] and not first.training
    assert os.listdir(tmp_path) == [os.path.basename(info["path"])]
    assert 0.0 <= info["test_accuracy"] <= 1.0
    assert info["recipe"] == {**_QUICK.__dict__, "widths": [4, 8, 8]}

    with monkeypatch.context() as patch:
        _forbid_training(patch)
        second, info2 = load_default_model(tmp_path, progress=False, recipe=_QUICK)
    assert info2["from_cache"] and not second.training
    assert info2["test_accuracy"] == info["test_accuracy"]
    for p, q in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(p, q)

    changed = DigitsRecipe(**{**_QUICK.__dict__, "train_seed": 1})
    assert changed.key() != _QUICK.key()
    third, info3 = load_default_model(tmp_path, progress=False, recipe=changed)
    assert not info3["from_cache"] and info3["path"] != info["path"]
    assert not torch.equal(third.fc.weight, first.fc.weight)
    assert sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(i["path"]) for i in (info, info3)
    )

    _, info4 = load_default_model(tmp_path, retrain=True, progress=False, recipe=_QUICK)
    assert not info4["from_cache"] and info4["path"] == info["path"]


def test_cache_dir_from_environment_and_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTUM_PRUNE_CACHE", str(tmp_path))
    path = tmp_path / f"digits_resnet_{_QUICK.key()}.pt"
    path.write_bytes(b"half-written")
    with pytest.warns(UserWarning, match="unreadable"):
        model, info = load_default_model(progress=False, recipe=_QUICK)
    assert info["path"] == str(path) and not info["from_cache"]
    with monkeypatch.context() as patch:
        _forbid_training(patch)
        again, info2 = load_default_model(progress=False, recipe=_QUICK)
    assert info2["from_cache"]
    assert torch.equal(again.fc.weight, model.fc.weight)
