"""Tiny synthetic stand-ins of torchvision datasets, written in each dataset's real on-disk
format (CIFAR python pickles, MNIST idx files, SVHN .mat, an ImageFolder of PNGs).

Images are random uint8 noise with a class-dependent brightness offset, so a model can learn
them in a few steps; returned arrays let tests check what torchvision reads back.
"""
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


def _images(rng, n, shape, labels, classes):
    base = rng.integers(0, 120, size=(n,) + shape)
    offset = (labels * (130 // max(classes - 1, 1))).reshape((-1,) + (1,) * len(shape))
    return (base + offset).clip(0, 255).astype(np.uint8)


def write_cifar10(root, n_per_batch=4, n_test=6, seed=0, size=32):
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}; returns arrays."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in [(f"data_batch_{i}", n_per_batch) for i in range(1, 6)] + [("test_batch",
                                                                               n_test)]:
        labels = rng.integers(0, 10, size=n)
        data = _images(rng, n, (3, size, size), labels, 10).reshape(n, -1)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels.tolist(), "data": data,
                         "filenames": [f"{i}.png" for i in range(n)]}, f)
        out[name] = (data.reshape(n, 3, size, size), labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_NAMES, "num_cases_per_batch": n_per_batch}, f)
    return out


def write_cifar100(root, n_train=8, n_test=4, seed=0):
    """root/cifar-100-python/{train, test, meta}."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 100, size=n)
        data = _images(rng, n, (3, 32, 32), labels, 100).reshape(n, -1)
        with open(folder / name, "wb") as f:
            pickle.dump({"fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist(),
                         "data": data}, f)
        out[name] = (data.reshape(n, 3, 32, 32), labels)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class{i}" for i in range(100)],
                     "coarse_label_names": [f"super{i}" for i in range(20)]}, f)
    return out


def write_idx(path, array):
    """An idx file (the MNIST format): magic 0x08 (uint8), the rank, big-endian sizes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.tobytes())


def write_mnist(root, folder="MNIST", n_train=10, n_test=6, seed=0):
    """root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n)
        images = _images(rng, n, (28, 28), labels, 10)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[prefix] = (images, labels)
    return out


def write_svhn(root, n_train=6, n_test=4, seed=0):
    """root/{train,test}_32x32.mat with X (32 x 32 x 3 x N) and y (N x 1, 10 for a zero)."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    Path(root).mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 10
        images = _images(rng, n, (3, 32, 32), labels, 10)
        y = np.where(labels == 0, 10, labels).reshape(-1, 1).astype(np.uint8)
        savemat(Path(root) / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": y})
        out[split] = (images, labels)
    return out


def write_image_folder(root, classes=("cat", "dog"), per_class=3, size=12, seed=0):
    """root/{train,val}/<class>/<i>.png."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = _images(rng, 1, (size, size, 3), np.array([c]), len(classes))[0]
                Image.fromarray(pixels).save(folder / f"{i}.png")
