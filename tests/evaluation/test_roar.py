import json

import numpy as np
import pytest
import torch

from captum_prune.evaluation import remove_and_retrain
from captum_prune.evaluation.roar import RoarResult

SIZE = 8


def _dataset(n, generator):
    r"""The label sets the brightness of a 3x3 object region; the background is noise."""
    x = torch.rand(n, 1, SIZE, SIZE, generator=generator)
    y = torch.randint(0, 2, (n,), generator=generator)
    x[:, 0, 2:5, 2:5] = 0.5 * x[:, 0, 2:5, 2:5] + 0.5 * y.view(-1, 1, 1)
    return x, y


def _object_mask():
    mask = torch.zeros(SIZE, SIZE)
    mask[2:5, 2:5] = 1.0
    return mask


def train_logistic(images, labels, seed):
    r"""Logistic regression trained from scratch, full batch."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIZE * SIZE, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return _dataset(300, g) + _dataset(300, g)


def _run(data, maps_for, **kwargs):
    x_tr, y_tr, x_te, y_te = data
    return remove_and_retrain(
        x_tr, y_tr, x_te, y_te, maps_for(len(x_tr)), maps_for(len(x_te)), train_logistic,
        fractions=(0.2, 0.5), seeds=(0, 1), **kwargs
    )


def test_removing_the_object_hurts_more_than_removing_background(data):
    obj = _run(data, lambda n: _object_mask().expand(n, 1, SIZE, SIZE))
    bg = _run(data, lambda n: (1 - _object_mask()).expand(n, 1, SIZE, SIZE))
    assert obj.fractions == [0.0, 0.2, 0.5]
    # Same data and seeds at t = 0: identical runs.
    np.testing.assert_array_equal(obj.accuracy[0], bg.accuracy[0])
    assert obj.mean[0] > 0.95
    # With the object gone the label is unpredictable; with background gone it is untouched.
    assert (obj.mean[1:] < 0.65).all()
    assert (bg.mean[1:] > 0.95).all()
    assert obj.auc < bg.auc


def test_train_fn_sees_baseline_in_the_removed_pixels(data):
    x_tr, y_tr, x_te, y_te = data
    seen = []

    def spy(images, labels, seed):
        seen.append((images.clone(), seed))
        return train_logistic(images, labels, seed)

    maps = _object_mask().expand(len(x_tr), SIZE, SIZE)
    result = remove_and_retrain(
        x_tr, y_tr, x_te, y_te, maps, _object_mask().expand(len(x_te), SIZE, SIZE), spy,
        fractions=(9 / 64,), seeds=(3,), baseline=None,
    )
    assert [s for _, s in seen] == [3, 3]
    assert torch.equal(seen[0][0], x_tr)  # t = 0 is unmodified
    mean = x_tr.mean()
    region = seen[1][0][:, 0, 2:5, 2:5]
    assert torch.allclose(region, mean.expand_as(region))  # per-channel train mean
    outside = _object_mask() == 0
    assert torch.equal(seen[1][0][:, 0][:, outside], x_tr[:, 0][:, outside])
    assert result.accuracy.shape == (2, 1)


def test_auc_and_summary_by_hand():
    acc = np.array([[0.8, 0.9], [0.5, 0.7], [0.2, 0.2]])  # means 0.85, 0.6, 0.2
    result = RoarResult(fractions=[0.0, 0.5, 0.9], seeds=[0, 1], accuracy=acc)
    # 0.5*(0.85+0.6)/2 + 0.4*(0.6+0.2)/2 = 0.3625 + 0.16
    assert result.auc == pytest.approx(0.5225)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["mean"] == pytest.approx([0.85, 0.6, 0.2])
    assert data["std"] == pytest.approx([np.std([0.8, 0.9], ddof=1), np.std([0.5, 0.7], ddof=1), 0])
    assert data["per_seed"] == [[0.8, 0.9], [0.5, 0.7], [0.2, 0.2]]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"fractions": (0.5, 0.3)}, "fractions"),
        ({"seeds": ()}, "seeds"),
        ({"seeds": (0.5,)}, "seeds"),
        ({"train_labels": torch.zeros(3, dtype=torch.long)}, "train_labels"),
        ({"test_attributions": torch.zeros(5, 1, 4, 4)}, "test_attributions"),
        ({"baseline": torch.zeros(7)}, "baseline"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    x = torch.rand(5, 1, SIZE, SIZE)
    y = torch.zeros(5, dtype=torch.long)
    args = dict(train_images=x, train_labels=y, test_images=x, test_labels=y,
                train_attributions=x, test_attributions=x, train_fn=train_logistic)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        remove_and_retrain(**args)


def test_tied_share_and_cis_over_test_images(data):
    result = _run(data, lambda n: _object_mask().expand(n, 1, SIZE, SIZE))
    # The mask map has two values: every pixel is tied.
    assert result.tie_break == "random" and result.tied_share == {"train": 1.0, "test": 1.0}
    assert result.correct.shape == (3, 2, 300)
    np.testing.assert_allclose(result.accuracy, result.correct.mean(axis=2))
    cis = result.ci()
    assert [c.n for c in cis["mean"]] == [300] * 3
    for ci, mean in zip(cis["mean"], result.mean):
        assert ci.low <= mean <= ci.high
    assert cis["per_seed"][0].n_models == 2
    summary = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert summary["ci"]["mean"][0]["n"] == 300 and summary["tie_break"] == "random"
