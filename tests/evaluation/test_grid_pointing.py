import json

import pytest
import torch
from captum.attr import InputXGradient

from captum_prune.evaluation import (
    GridSet,
    RandomAttribution,
    grid_pointing_game,
    make_grids,
)

CLASSES = 5


def _channel_model():
    r"""Fully convolutional: class k = 10 x the global mean of channel k."""
    model = torch.nn.Sequential(torch.nn.Conv2d(CLASSES, CLASSES, 1, bias=False),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    with torch.no_grad():
        model[0].weight.copy_(10 * torch.eye(CLASSES).view(CLASSES, CLASSES, 1, 1))
    return model.eval()


@pytest.fixture(scope="module")
def data():
    labels = torch.arange(20) % CLASSES
    images = torch.nn.functional.one_hot(labels, CLASSES).float().view(20, CLASSES, 1, 1)
    images = images.expand(20, CLASSES, 4, 4).clone()
    images[0] *= 0.05  # class 0, barely lit: not confident
    labels = labels.clone()
    labels[1] = 2  # wrongly labelled (shows class 1): not correct
    return _channel_model(), images, labels


def test_grids_hold_confident_correct_images_of_distinct_classes(data):
    model, images, labels = data
    grids = make_grids(model, images, labels, n_grids=6, seed=3)
    assert grids.images.shape == (6, CLASSES, 8, 8) and grids.cell_classes.shape == (6, 4)
    for classes, source in zip(grids.cell_classes, grids.source_index):
        assert len(set(classes.tolist())) == 4
        assert torch.equal(labels[source], classes)
        assert not ({0, 1} & set(source.tolist()))  # the filtered images are never used
    # Cell (row 1, col 0) of grid 0 is the source image of cell 2.
    assert torch.equal(grids.images[0, :, 4:8, 0:4], images[grids.source_index[0, 2]])
    again = make_grids(model, images, labels, n_grids=6, seed=3)
    assert torch.equal(again.images, grids.images)
    assert not torch.equal(make_grids(model, images, labels, 6, seed=4).cell_classes,
                           grids.cell_classes)


def test_known_answer_and_chance(data):
    model, images, labels = data
    grids = make_grids(model, images, labels, n_grids=8)
    exact = grid_pointing_game(grids, InputXGradient(model))
    # Input x gradient of class k is nonzero only in channel k, i.e. only in k's cell.
    assert torch.equal(exact.scores, torch.ones(8, 4)) and exact.chance == 0.25
    control = grid_pointing_game(grids, RandomAttribution(model), part="abs")
    assert control.mean == pytest.approx(0.25, abs=0.03)
    # Precomputed maps of the class of cell 1, scored for cell 0: all mass is elsewhere.
    maps = InputXGradient(model).attribute(grids.images, target=grids.cell_classes[:, 1])
    wrong = grid_pointing_game(grids, maps, cells=[0])
    assert torch.equal(wrong.scores, torch.zeros(8, 1, dtype=torch.float64))
    data = json.loads(json.dumps(exact.to_dict(per_example=True), allow_nan=False))
    assert data["mean"] == 1.0 and data["ci"]["n"] == 8 and data["n_undefined"] == 0


def test_undefined_scores_are_counted(data):
    model, images, labels = data
    grids = make_grids(model, images, labels, n_grids=2)
    zero = grid_pointing_game(grids, lambda x, t: torch.zeros_like(x))
    assert zero.n_defined == 0 and zero.to_dict()["n_undefined"] == 8
    assert zero.ci().n_undefined == 2


def test_clear_errors(data):
    model, images, labels = data
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(CLASSES * 16, CLASSES)).eval()
    with pytest.raises(ValueError, match="fully convolutional"):
        make_grids(flat, images, labels, n_grids=1, confidence=0.0)
    with pytest.raises(ValueError, match="classes"):
        make_grids(model, images, labels, n_grids=1, n=3)
    with pytest.raises(ValueError, match="confidence"):
        make_grids(model, images, labels, n_grids=1, confidence=1.0)
    grids = make_grids(model, images, labels, n_grids=1)
    assert isinstance(grids, GridSet)
    with pytest.raises(ValueError, match="cells"):
        grid_pointing_game(grids, InputXGradient(model), cells=[4])
