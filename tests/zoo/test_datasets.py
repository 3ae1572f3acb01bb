import numpy as np
import pytest
import torch

from captum_prune.zoo.datasets import (
    DATASETS,
    NORMALISATION,
    DataSpec,
    expected_files,
    load_dataset,
    parse_data_spec,
)
from tests.zoo import standins


def _normalised(raw, name):
    mean, std = (torch.tensor(v).view(-1, 1, 1) for v in NORMALISATION[name])
    return (torch.as_tensor(raw).float() / 255 - mean) / std


def test_cifar10_standin_loads_through_torchvision_with_the_papers_normalisation(tmp_path):
    written = standins.write_cifar10(tmp_path)
    train = load_dataset("cifar10", tmp_path, "train", verify=False)
    test = load_dataset(f"cifar10:{tmp_path}", split="test", verify=False)
    assert type(train.dataset).__mro__[1].__module__.startswith("torchvision.datasets")
    assert len(train) == 20 and len(test) == 6
    assert train.channels == 3 and train.image_size == (32, 32)
    assert train.classes == tuple(standins.CIFAR10_NAMES)
    assert train.mean == (0.4914, 0.4822, 0.4465) and train.std == (0.2470, 0.2435, 0.2616)
    images, labels = test.tensors()
    raw, expected_labels = written["test_batch"]
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.float32
    assert torch.equal(labels, torch.as_tensor(expected_labels))
    assert torch.allclose(images, _normalised(raw, "cifar10"), atol=1e-6)
    # The same values as torchvision's own transform gives, item by item.
    item, label = test.dataset[2]
    assert torch.allclose(item, images[2], atol=1e-6) and label == int(labels[2])
    # Train batches in order 1..5, and a prefix.
    first, first_labels = train.tensors(5)
    assert torch.allclose(first[4], _normalised(written["data_batch_2"][0][0], "cifar10"),
                          atol=1e-6)
    assert int(first_labels[4]) == int(written["data_batch_2"][1][0])
    assert torch.allclose(test.denormalize(images), torch.as_tensor(raw).float() / 255,
                          atol=1e-5)


def test_cifar10_standin_fails_the_checksum_unless_verify_is_off(tmp_path):
    standins.write_cifar10(tmp_path)
    with pytest.raises(ValueError, match="official release.*verify=False"):
        load_dataset("cifar10", tmp_path, "test")


def test_cifar100_standin(tmp_path):
    written = standins.write_cifar100(tmp_path)
    data = load_dataset(f"CIFAR100:{tmp_path}", split="train", verify=False)
    images, labels = data.tensors()
    assert len(data.classes) == 100 and data.classes[3] == "class3"
    assert torch.equal(labels, torch.as_tensor(written["train"][1]))
    assert torch.allclose(images, _normalised(written["train"][0], "cifar100"), atol=1e-6)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashionmnist", "FashionMNIST"),
                                          ("kmnist", "KMNIST")])
def test_mnist_family_standins(tmp_path, name, folder):
    written = standins.write_mnist(tmp_path, folder)
    train = load_dataset(name, tmp_path, "train")
    test = load_dataset(f"{name}:{tmp_path}", split="test")
    assert len(train) == 10 and len(test) == 6
    assert test.channels == 1 and test.image_size == (28, 28) and len(test.classes) == 10
    assert test.mean == NORMALISATION[name][0]
    images, labels = test.tensors()
    assert images.shape == (6, 1, 28, 28)
    assert torch.equal(labels, torch.as_tensor(written["t10k"][1]))
    assert torch.allclose(images, _normalised(written["t10k"][0][:, None], name), atol=1e-6)
    item, _ = test.dataset[1]
    assert torch.allclose(item, images[1], atol=1e-6)


def test_svhn_standin_maps_label_10_to_zero(tmp_path):
    written = standins.write_svhn(tmp_path)
    data = load_dataset(f"svhn:{tmp_path}", split="train", verify=False)
    images, labels = data.tensors()
    assert data.image_size == (32, 32) and data.channels == 3
    assert torch.equal(labels, torch.as_tensor(written["train"][1]))
    assert int(labels[0]) == 0
    assert torch.allclose(images, _normalised(written["train"][0], "svhn"), atol=1e-6)
    with pytest.raises(ValueError, match="checksum|official"):
        load_dataset(f"svhn:{tmp_path}", split="train")


def test_image_folder_uses_imagenet_normalisation_and_resizes(tmp_path):
    standins.write_image_folder(tmp_path)
    data = load_dataset(str(tmp_path), split="test", image_size=16)
    assert data.name == "imagefolder" and data.classes == ("cat", "dog")
    assert data.image_size == (16, 16) and data.mean == (0.485, 0.456, 0.406)
    images, labels = data.tensors()
    assert images.shape == (6, 3, 16, 16) and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert "ImageFolder test split" in data.describe()


def test_custom_normalisation(tmp_path):
    standins.write_mnist(tmp_path)
    data = load_dataset("mnist", tmp_path, "test", mean=[0.5], std=[0.5])
    images, _ = data.tensors(2)
    assert images.min() >= -1 and images.max() <= 1
    with pytest.raises(ValueError, match="mean and std"):
        load_dataset("mnist", tmp_path, "test", mean=[0.5])
    with pytest.raises(ValueError, match="1 values"):
        load_dataset("mnist", tmp_path, "test", mean=[0.5, 0.5], std=[1.0, 1.0])


@pytest.mark.parametrize("name, wanted", [
    ("cifar10", ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/data_batch_5",
                 "cifar-10-batches-py/batches.meta"]),
    ("cifar100", ["cifar-100-python/train", "cifar-100-python/meta"]),
    ("mnist", ["MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte"]),
    ("kmnist", ["KMNIST/raw/train-images-idx3-ubyte"]),
    ("svhn", ["train_32x32.mat"]),
])
def test_missing_files_say_what_to_put_where(tmp_path, name, wanted):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, tmp_path, "train")
    message = str(info.value)
    for part in wanted:
        assert f"{tmp_path / part}  <- missing" in message
    assert "nothing is downloaded" in message
    assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.parametrize("split", ["train", "test"])
def test_missing_test_batch_only(tmp_path, split):
    # torchvision needs every batch for either split.
    standins.write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 7 files missing") as info:
        load_dataset("cifar10", tmp_path, split, verify=False)
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message
    assert f"{tmp_path / 'cifar-10-batches-py' / 'test_batch'}  <- missing" in message
    assert f"{tmp_path / 'cifar-10-batches-py' / 'data_batch_1'}\n" in message


def test_gzipped_mnist_asks_to_gunzip(tmp_path):
    standins.write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    for path in raw.glob("t10k-*"):
        path.rename(path.with_name(path.name + ".gz"))
    with pytest.raises(FileNotFoundError, match="gunzip .*t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", tmp_path, "test")


def test_corrupt_file_is_a_value_error(tmp_path):
    standins.write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").write_bytes(b"not idx")
    with pytest.raises(ValueError, match="cannot be read"):
        load_dataset("mnist", tmp_path, "test")


def test_parse_data_spec(tmp_path):
    assert parse_data_spec(f"cifar10:{tmp_path}") == DataSpec("cifar10", tmp_path)
    assert parse_data_spec(f"Fashion-MNIST:{tmp_path}").name == "fashionmnist"
    assert parse_data_spec(str(tmp_path)) == DataSpec("imagefolder", tmp_path)
    assert parse_data_spec(f"imagefolder:{tmp_path}").name == "imagefolder"
    odd = tmp_path / "a:b"
    odd.mkdir()
    assert parse_data_spec(str(odd)) == DataSpec("imagefolder", odd)
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'.*cifar10.*svhn"):
        parse_data_spec("imagenet:/data")
    with pytest.raises(ValueError, match="folder after the colon"):
        parse_data_spec("mnist:")
    with pytest.raises(ValueError, match="empty"):
        parse_data_spec(" ")
    assert set(DATASETS) >= {"mnist", "cifar10", "svhn", "imagefolder"}


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist", tmp_path, "val")
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("mnist", tmp_path, "test", image_size=32)
    with pytest.raises(ValueError, match="spec must be one of"):
        load_dataset("imagenet", tmp_path)
    with pytest.raises(ValueError, match="no such folder"):
        load_dataset(str(tmp_path / "nope"))
    assert expected_files("imagefolder", tmp_path, "test") == []
    assert np.all([p.parent == tmp_path / "MNIST" / "raw"
                   for p in expected_files("mnist", tmp_path, "test")])
