import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from captum_prune.zoo.data import DIGIT_CLASSES, make_digits_canvas, make_digits_scene


@pytest.fixture(scope="module")
def train():
    return make_digits_canvas("train")


@pytest.fixture(scope="module")
def test():
    return make_digits_canvas("test")


def _assert_same(a, b):
    names = ("images", "labels", "boxes", "object_masks", "ink", "source_indices", "mean", "std")
    for name in names:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_same_seed_gives_identical_tensors(train):
    _assert_same(train, make_digits_canvas("train", seed=0))


def test_different_seed_moves_and_recolours_but_keeps_the_split(train):
    other = make_digits_canvas("train", seed=1)
    assert torch.equal(train.labels, other.labels)
    assert torch.equal(train.source_indices, other.source_indices)
    assert not torch.equal(train.images, other.images)
    # Most digits land somewhere else.
    moved = (train.boxes != other.boxes).any(dim=1).float().mean()
    assert moved > 0.8


def test_split_is_stratified_disjoint_and_complete(train, test):
    digits = load_digits()
    assert len(train) == 1437 and len(test) == 360
    both = torch.cat([train.source_indices, test.source_indices])
    assert torch.equal(both.sort().values, torch.arange(len(digits.target)))
    target = torch.as_tensor(digits.target)
    assert torch.equal(train.labels, target[train.source_indices])
    assert torch.equal(test.labels, target[test.source_indices])
    fractions = torch.bincount(test.labels, minlength=10) / torch.bincount(target, minlength=10)
    assert torch.allclose(fractions, torch.full((10,), 0.2), atol=0.02)


@pytest.mark.parametrize(
    "channels, canvas_size, digit_size", [(3, 32, 16), (1, 32, 16), (3, 40, 20), (1, 24, 24)]
)
def test_shapes_and_dtypes(channels, canvas_size, digit_size):
    data = make_digits_canvas(
        "test", channels=channels, canvas_size=canvas_size, digit_size=digit_size
    )
    n, size = 360, canvas_size
    assert data.images.shape == (n, channels, size, size) and data.images.dtype == torch.float32
    assert data.labels.shape == (n,) and data.labels.dtype == torch.int64
    assert data.boxes.shape == (n, 4) and data.boxes.dtype == torch.int64
    assert data.object_masks.shape == (n, size, size) and data.object_masks.dtype == torch.bool
    assert data.mean.shape == data.std.shape == (channels,)
    assert data.classes == DIGIT_CLASSES
    image, label = data[5]
    assert torch.equal(image, data.images[5]) and int(label) == int(data.labels[5])
    # Boxes lie on the canvas and are no larger than the digit.
    x0, y0, x1, y1 = data.boxes.T
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= size).all() and (y1 <= size).all()
    assert (x1 - x0 <= digit_size).all() and (y1 - y0 <= digit_size).all()
    assert (x1 > x0).all() and (y1 > y0).all()


def test_train_is_normalised_and_test_uses_train_statistics(train, test):
    assert torch.allclose(train.images.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(train.images.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    assert torch.equal(train.mean, test.mean) and torch.equal(train.std, test.std)
    raw = test.denormalize()
    assert raw.min() >= 0 and raw.max() <= 1
    assert torch.allclose(test.normalize(raw), test.images, atol=1e-5)
    assert torch.allclose(test.denormalize(test.images[:3]), raw[:3])


def _box_mask(boxes, size):
    coords = torch.arange(size)
    x0, y0, x1, y1 = (b[:, None] for b in boxes.T)
    inside_x = (coords >= x0) & (coords < x1)
    inside_y = (coords >= y0) & (coords < y1)
    return inside_y[:, :, None] & inside_x[:, None, :]


@pytest.mark.parametrize("seed", [0, 3])
def test_ink_and_mask_lie_inside_a_tight_box(seed):
    data = make_digits_canvas("test", seed=seed)
    inside = _box_mask(data.boxes, 32)
    assert (data.ink[~inside] == 0).all()
    assert not (data.object_masks & ~inside).any()
    assert torch.equal(data.object_masks, data.ink > 0)
    # Tight: every border row and column of each box holds some ink.
    for mask, (x0, y0, x1, y1) in zip(data.object_masks, data.boxes.tolist()):
        assert mask[y0, x0:x1].any() and mask[y1 - 1, x0:x1].any()
        assert mask[y0:y1, x0].any() and mask[y0:y1, x1 - 1].any()


def test_ink_is_the_sklearn_digit_scaled_up(test):
    digits = torch.as_tensor(load_digits().images, dtype=torch.float32)[test.source_indices] / 16
    # Bilinear 2x upsampling keeps the mean intensity up to border effects.
    ink_mass = test.ink.sum(dim=(1, 2))
    expected = digits.sum(dim=(1, 2)) * 4
    assert torch.allclose(ink_mass, expected, rtol=0.1)
    # Cropping the box and shrinking back gives the original digit's layout.
    for i in range(0, 360, 37):
        x0, y0, x1, y1 = test.boxes[i].tolist()
        crop = test.ink[i, y0:y1, x0:x1]
        rows, cols = digits[i].sum(1) > 0, digits[i].sum(0) > 0
        trimmed = digits[i][rows][:, cols]
        small = F.interpolate(crop[None, None], size=trimmed.shape, mode="area")[0, 0]
        corr = torch.corrcoef(torch.stack([small.flatten(), trimmed.flatten()]))[0, 1]
        assert corr > 0.8


def test_digit_is_brighter_than_its_background(test):
    raw = test.denormalize().mean(dim=1)
    outside = ~_box_mask(test.boxes, 32)
    # The most opaque pixels of each digit (some digits never reach full opacity).
    solid = test.ink >= 0.8 * test.ink.amax(dim=(1, 2), keepdim=True)
    for image, out, ink in zip(raw, outside, solid):
        assert image[ink].mean() - image[out].mean() > 0.15


def test_background_is_textured_not_flat(test):
    raw = test.denormalize()
    outside = ~_box_mask(test.boxes, 32)
    spread = torch.stack([img[:, out].std(dim=1).max() for img, out in zip(raw, outside)])
    assert (spread > 0.005).float().mean() > 0.9


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(split="val"), ValueError, "split"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(channels=2), ValueError, "channels"),
        (dict(digit_size=4), ValueError, "digit_size"),
        (dict(canvas_size=12, digit_size=16), ValueError, "canvas_size"),
        (dict(canvas_size=True), TypeError, "canvas_size"),
    ],
)
def test_bad_arguments_raise(kwargs, error, name):
    with pytest.raises(error, match=name):
        make_digits_canvas(**kwargs)


# ----------------------------------------------------------------------- make_digits_scene


@pytest.fixture(scope="module")
def scene():
    return make_digits_scene("test")


def test_scene_shapes_and_the_target_is_the_large_digit(scene, test):
    n = 360
    assert scene.images.shape == (n, 3, 48, 48)
    assert torch.equal(scene.labels, test.labels)  # the same targets as the canvases
    assert torch.equal(scene.source_indices, test.source_indices)
    assert scene.distractor_labels.shape == (n, 2) and scene.distractor_boxes.shape == (n, 2, 4)
    # Distractors are of other classes than the target and than each other.
    assert (scene.distractor_labels != scene.labels[:, None]).all()
    assert (scene.distractor_labels[:, 0] != scene.distractor_labels[:, 1]).all()
    # Drawn from the test split only.
    assert set(scene.distractor_indices.flatten().tolist()) <= set(test.source_indices.tolist())
    digits = torch.as_tensor(load_digits().target)
    assert torch.equal(digits[scene.distractor_indices], scene.distractor_labels)
    # Target boxes fit a 20-pixel digit, distractor boxes a 12-pixel one.
    size = scene.boxes[:, 2:] - scene.boxes[:, :2]
    dsize = scene.distractor_boxes[..., 2:] - scene.distractor_boxes[..., :2]
    assert (size <= 20).all() and (dsize <= 12).all() and (dsize > 0).all()
    assert scene.object_masks.float().sum((1, 2)).mean() > 2 * scene.distractor_masks.float().sum(
        (1, 2)).mean() / 2


def test_scene_digits_do_not_overlap_and_masks_match_boxes(scene):
    target_box = _box_mask(scene.boxes, 48)
    assert not (scene.object_masks & scene.distractor_masks).any()
    assert not (target_box & scene.distractor_masks).any()
    assert not (scene.object_masks & ~target_box).any()
    for k in range(2):
        inside = _box_mask(scene.distractor_boxes[:, k], 48)
        assert not (inside & target_box).any()
    assert torch.equal(scene.object_masks, scene.ink > 0)


def test_scene_is_deterministic_normalised_and_split_clean():
    a = make_digits_scene("train", seed=1, canvas_size=40, digit_size=16, n_distractors=1)
    b = make_digits_scene("train", seed=1, canvas_size=40, digit_size=16, n_distractors=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.distractor_boxes, b.distractor_boxes)
    assert torch.allclose(a.images.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    train_rows = set(a.source_indices.tolist())
    assert set(a.distractor_indices.flatten().tolist()) <= train_rows
    none = make_digits_scene("test", n_distractors=0, canvas_size=32, digit_size=16)
    assert none.distractor_boxes.shape == (360, 0, 4) and not none.distractor_masks.any()


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(distractor_size=24), ValueError, "distractor_size"),
        (dict(distractor_size=6), ValueError, "distractor_size"),
        (dict(n_distractors=9), ValueError, "n_distractors"),
        (dict(n_distractors=1.0), TypeError, "n_distractors"),
        (dict(canvas_size=24), ValueError, "too small"),
        (dict(split="val"), ValueError, "split"),
    ],
)
def test_scene_bad_arguments_raise(kwargs, error, name):
    with pytest.raises(error, match=name):
        make_digits_scene(**kwargs)
