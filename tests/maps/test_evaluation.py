"""ROAR and pixel perturbation from a map store equal the same protocols on maps in memory."""
import numpy as np
import pytest
import torch
from captum.attr import Saliency

from captum_prune import attribute_dataset
from captum_prune.evaluation import pixel_perturbation, remove_and_retrain
from tests.evaluation.test_roar import SIZE, _dataset
from tests.evaluation.test_roar import train_logistic as _train
from tests.maps._compare import direct_maps


def _data(n, seed):
    return _dataset(n, torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    x_tr, y_tr = _data(60, 0)
    x_te, y_te = _data(30, 1)
    model = _train(x_tr, y_tr, 0)
    folder = tmp_path_factory.mktemp("stores")
    stores = [attribute_dataset(Saliency(model), torch.utils.data.TensorDataset(x, y),
                                folder / name, batch_size=16, shard_size=32)
              for name, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te))]
    return model, (x_tr, y_tr, x_te, y_te), stores


def test_roar_from_a_store_equals_roar_computed_directly(setup):
    model, (x_tr, y_tr, x_te, y_te), (train_store, test_store) = setup
    a_tr, a_te = direct_maps(Saliency(model), x_tr, 16), direct_maps(Saliency(model), x_te, 16)
    assert torch.equal(train_store.maps(), a_tr)
    kwargs = dict(fractions=[0.2, 0.6], seeds=[0, 1])
    direct = remove_and_retrain(x_tr, y_tr, x_te, y_te, a_tr, a_te, _train, **kwargs)
    stored = remove_and_retrain(x_tr, y_tr, x_te, y_te, train_store, test_store, _train, **kwargs)
    np.testing.assert_array_equal(stored.accuracy, direct.accuracy)
    assert stored.to_dict() == direct.to_dict()
    # A subset of the store, by dataset index.
    idx = list(range(10, 50))
    part = remove_and_retrain(x_tr[idx], y_tr[idx], x_te, y_te, train_store, test_store, _train,
                              train_indices=idx, **kwargs)
    again = remove_and_retrain(x_tr[idx], y_tr[idx], x_te, y_te, a_tr[idx], a_te, _train, **kwargs)
    np.testing.assert_array_equal(part.accuracy, again.accuracy)


def test_pixel_perturbation_from_a_store(setup):
    model, (x_tr, _, _, _), (train_store, _) = setup
    a_tr = direct_maps(Saliency(model), x_tr, 16)
    for mode in ("lerf", "morf"):
        direct = pixel_perturbation(model, x_tr, a_tr, fractions=[0.1, 0.3], mode=mode)
        stored = pixel_perturbation(model, x_tr, train_store, fractions=[0.1, 0.3], mode=mode)
        assert torch.equal(stored.changes, direct.changes)
    idx = [5, 50, 7]
    stored = pixel_perturbation(model, x_tr[idx], train_store, map_indices=idx, fractions=[0.2])
    direct = pixel_perturbation(model, x_tr[idx], a_tr[idx], fractions=[0.2])
    assert torch.equal(stored.changes, direct.changes)


def test_store_arguments_are_checked(setup):
    model, (x_tr, y_tr, x_te, y_te), (train_store, test_store) = setup
    with pytest.raises(ValueError, match="train_indices: 2 dataset indices given for 60 images"):
        remove_and_retrain(x_tr, y_tr, x_te, y_te, train_store, test_store, _train,
                           train_indices=[0, 1])
    with pytest.raises(ValueError, match="test_attributions: dataset index 30 is not in the"):
        remove_and_retrain(x_tr, y_tr, x_tr, y_tr, train_store, test_store, _train)
    with pytest.raises(ValueError, match="map_indices is only used when attributions is a"):
        pixel_perturbation(model, x_tr, torch.rand(60, 1, SIZE, SIZE), map_indices=range(60))
