import json

import pytest
import torch

from captum_prune.evaluation import attribution_mass_in_box, boxes_to_masks, pointing_game


def _random_boxes(n, size, generator):
    x0 = torch.randint(0, size - 6, (n,), generator=generator)
    y0 = torch.randint(0, size - 6, (n,), generator=generator)
    w = torch.randint(2, 6, (n,), generator=generator)
    h = torch.randint(2, 6, (n,), generator=generator)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


@pytest.fixture
def boxes_and_masks():
    g = torch.Generator().manual_seed(0)
    boxes = _random_boxes(30, 16, g)
    return boxes, boxes_to_masks(boxes, 16, 16), g


def test_boxes_to_masks_matches_slicing(boxes_and_masks):
    boxes, masks, _ = boxes_and_masks
    for (x0, y0, x1, y1), mask in zip(boxes.tolist(), masks):
        expected = torch.zeros(16, 16, dtype=torch.bool)
        expected[y0:y1, x0:x1] = True
        assert torch.equal(mask, expected)


def test_perfect_map_beats_random_map(boxes_and_masks):
    _, masks, g = boxes_and_masks
    perfect = masks.float().unsqueeze(1).expand(-1, 3, -1, -1)
    random = torch.rand(len(masks), 3, 16, 16, generator=g)
    mass_perfect = attribution_mass_in_box(perfect, masks)
    mass_random = attribution_mass_in_box(random, masks)
    assert torch.allclose(mass_perfect.values, torch.ones(len(masks), dtype=torch.float64))
    assert (mass_perfect.values > mass_random.values).all()
    # A uniform-ish random map puts roughly the box's area share inside the box.
    area = masks.flatten(1).float().mean(1).double()
    assert (mass_random.values - area).abs().mean() < 0.05
    hits_perfect = pointing_game(perfect, masks)
    hits_random = pointing_game(random, masks)
    assert hits_perfect.mean == 1.0
    assert hits_random.mean < hits_perfect.mean


def test_positive_and_abs_parts_differ_on_signed_maps(boxes_and_masks):
    _, masks, _ = boxes_and_masks
    # Strong negative evidence inside the object, weak positive evidence outside.
    maps = torch.where(masks, -5.0, 1.0).unsqueeze(1)
    assert torch.equal(attribution_mass_in_box(maps, masks, part="positive").values,
                       torch.zeros(len(masks), dtype=torch.float64))
    inside = masks.flatten(1).sum(1).double()
    expected = 5 * inside / (5 * inside + (256 - inside))
    assert torch.allclose(attribution_mass_in_box(maps, masks, part="abs").values, expected)
    assert pointing_game(maps, masks, part="positive").mean == 0.0
    assert pointing_game(maps, masks, part="abs").mean == 1.0


def test_pointing_game_tolerance_is_euclidean_distance():
    masks = torch.zeros(1, 10, 10, dtype=torch.bool)
    masks[0, 5:8, 5:8] = True
    maps = torch.zeros(1, 10, 10)
    maps[0, 5, 2] = 1.0  # 3 pixels left of the box
    assert pointing_game(maps, masks, tolerance=2).mean == 0.0
    assert pointing_game(maps, masks, tolerance=3).mean == 1.0
    maps = torch.zeros(1, 10, 10)
    maps[0, 3, 3] = 1.0  # diagonal distance sqrt(8) to (5, 5)
    assert pointing_game(maps, masks, tolerance=2.8).mean == 0.0
    assert pointing_game(maps, masks, tolerance=2.9).mean == 1.0


def test_degenerate_maps():
    masks = torch.zeros(2, 6, 6, dtype=torch.bool)
    masks[:, 0, 0] = True  # the first pixel, where argmax of a constant map would land
    maps = torch.zeros(2, 1, 6, 6)
    maps[1, 0, 0, 0] = 2.0
    mass = attribution_mass_in_box(maps, masks)
    assert torch.isnan(mass.values[0]) and mass.values[1] == 1.0
    assert mass.mean == 1.0  # NaN ignored
    assert mass.to_dict()["n_undefined"] == 1
    assert pointing_game(maps, masks).values.tolist() == [0.0, 1.0]  # constant map: miss


def test_to_dict_is_strict_json(boxes_and_masks):
    _, masks, g = boxes_and_masks
    result = pointing_game(torch.rand(len(masks), 16, 16, generator=g), masks)
    data = json.loads(json.dumps(result.to_dict(per_example=True), allow_nan=False))
    assert data["protocol"] == "pointing_game"
    assert len(data["values"]) == len(masks)
    assert data["mean"] == pytest.approx(sum(data["values"]) / len(masks))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda m, k: attribution_mass_in_box(m, k, part="signed"), "part"),
        (lambda m, k: attribution_mass_in_box(m, k[:, :5]), "object_masks"),
        (lambda m, k: pointing_game(m, k, tolerance=-1), "tolerance"),
        (lambda m, k: pointing_game(m, k.unsqueeze(0)), "object_masks"),
        (lambda m, k: boxes_to_masks(torch.zeros(3, 3), 6, 6), "boxes"),
    ],
)
def test_bad_arguments_raise(call, name):
    maps = torch.rand(2, 3, 6, 6)
    masks = torch.ones(2, 6, 6, dtype=torch.bool)
    with pytest.raises(ValueError, match=name):
        call(maps, masks)
