r"""
Datasets on disk, offline: torchvision's MNIST, FashionMNIST, KMNIST, CIFAR10, CIFAR100 and
SVHN in torchvision's own layout, and a local ImageFolder; never a download.

:func:`parse_data_spec` reads the command-line form (``cifar10:/data``, ``mnist:~/data``, or a
folder path, which is an ImageFolder); :func:`load_dataset` checks that the files are where
torchvision looks for them (a missing file raises :class:`FileNotFoundError` saying which files
to put where), loads one split through torchvision's class with ``download=False`` and returns
a :class:`LoadedDataset`: the torchvision dataset (with ``ToTensor`` and ``Normalize``), the
classes, channels, image size and the normalisation used.

Normalisation constants (:data:`NORMALISATION`), per channel, of the train split in [0, 1]:

- MNIST ``0.1307 / 0.3081``: the PyTorch MNIST example (``pytorch/examples``, ``mnist/main.py``).
- CIFAR10 ``(0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616)``: the pathway-gradient
  authors' benchmark code (RoarTorch, ``src/dataset/CIFAR10.py``), i.e. the paper's protocol.
- FashionMNIST ``0.2860 / 0.3530``, KMNIST ``0.1918 / 0.3483``, CIFAR100
  ``(0.5071, 0.4865, 0.4409) / (0.2673, 0.2564, 0.2762)`` and SVHN
  ``(0.4377, 0.4438, 0.4728) / (0.1980, 0.2010, 0.1970)``: the train-split mean and standard
  deviation over all pixels, as commonly quoted (not recomputed here: no data is downloaded);
  pass ``mean`` and ``std`` to :func:`load_dataset` to use others.
- An ImageFolder: torchvision's ImageNet values (:data:`~captum_prune.zoo.data.IMAGENET_MEAN`),
  as :class:`~captum_prune.zoo.data.ImageFolderSplits` uses.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from captum_prune._shared import check_int

__all__ = [
    "DATASETS",
    "NORMALISATION",
    "DataSpec",
    "LoadedDataset",
    "parse_data_spec",
    "load_dataset",
    "expected_files",
]

_MNIST_FAMILY = ("mnist", "fashionmnist", "kmnist")
#: Dataset names accepted by :func:`parse_data_spec` and :func:`load_dataset` (lower case).
DATASETS: Tuple[str, ...] = _MNIST_FAMILY + ("cifar10", "cifar100", "svhn", "imagefolder")
_CLASS_NAMES = {"mnist": "MNIST", "fashionmnist": "FashionMNIST", "kmnist": "KMNIST",
                "cifar10": "CIFAR10", "cifar100": "CIFAR100", "svhn": "SVHN"}

#: ``name -> (mean, std)`` per channel, in [0, 1] units (sources: the module docstring).
NORMALISATION: Dict[str, Tuple[Tuple[float, ...], Tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashionmnist": ((0.2860,), (0.3530,)),
    "kmnist": ((0.1918,), (0.3483,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}
_SPLITS = ("train", "test")


@dataclass(frozen=True)
class DataSpec:
    r"""
    A parsed ``--data`` value.

    Attributes:
        name (str): One of :data:`DATASETS`.
        root (Path): The folder (``~`` expanded).
    """

    name: str
    root: Path

    def __str__(self) -> str:
        return f"{self.name}:{self.root}"


def parse_data_spec(text: Union[str, os.PathLike]) -> DataSpec:
    r"""
    Parses the command-line form of a dataset: ``NAME:ROOT`` with ``NAME`` one of
    :data:`DATASETS` (case-insensitive; ``cifar10:/data/cifar``), or a plain folder path,
    which is an ImageFolder. A path that exists as given is always a folder, so a folder
    whose name contains a colon still works.

    Raises:
        ValueError: For an empty value, an unknown name (the message lists the known ones) or
                    a name without a root.

    Examples::

        >>> from captum_prune.zoo.datasets import parse_data_spec
        >>> parse_data_spec("CIFAR10:/data/cifar")
        DataSpec(name='cifar10', root=PosixPath('/data/cifar'))
        >>> parse_data_spec("/data/my_images").name
        'imagefolder'
    """
    text = os.fspath(text)
    if not text.strip():
        raise ValueError("--data must be a folder or NAME:ROOT, got an empty value")
    name, sep, root = text.partition(":")
    if not sep or Path(text).expanduser().exists() or "/" in name or "\\" in name:
        return DataSpec("imagefolder", Path(text).expanduser())
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise ValueError(
            f"--data {text}: unknown dataset {name!r}; use NAME:ROOT with NAME one of "
            f"{', '.join(DATASETS)}, or a plain path to an ImageFolder"
        )
    if not root.strip():
        raise ValueError(f"--data {text}: give the folder after the colon, e.g. {key}:/data")
    return DataSpec(key, Path(root).expanduser())


def expected_files(name: str, root: Union[str, os.PathLike], split: str) -> List[Path]:
    r"""
    The files torchvision needs to load ``split`` of dataset ``name`` under ``root`` (without
    any download), e.g. ``root/cifar-10-batches-py/data_batch_1`` ... ``data_batch_5``,
    ``test_batch`` and ``batches.meta`` for CIFAR-10 (torchvision checks both splits' files
    whichever split is loaded). Empty for an ImageFolder.
    """
    name, split = _check_name_split(name, split)
    root = Path(root)
    if name in _MNIST_FAMILY:
        prefix = "train" if split == "train" else "t10k"
        raw = root / _CLASS_NAMES[name] / "raw"
        return [raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"]
    # torchvision's CIFAR classes check the files of both splits, whichever is loaded.
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
        return [folder / b for b in batches]
    if name == "cifar100":
        folder = root / "cifar-100-python"
        return [folder / "train", folder / "test", folder / "meta"]
    if name == "svhn":
        return [root / f"{split}_32x32.mat"]
    return []


def _check_name_split(name: str, split: str) -> Tuple[str, str]:
    if not isinstance(name, str) or name.lower() not in DATASETS:
        raise ValueError(f"name must be one of {', '.join(DATASETS)}, got {name!r}")
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    return name.lower(), split


def _missing_message(name: str, root: Path, split: str, missing: Sequence[Path]) -> str:
    files = expected_files(name, root, split)
    lines = [f"{_CLASS_NAMES[name]} {split} split not found under {root}: "
             f"{len(missing)} of {len(files)} files missing.",
             "Put these files there (torchvision's layout; nothing is downloaded):"]
    lines += [f"  {p}" + ("  <- missing" if p in missing else "") for p in files]
    if name in _MNIST_FAMILY:
        gz = [p for p in missing if p.with_name(p.name + ".gz").exists()]
        lines.append("They are the uncompressed idx files"
                     + (f"; gunzip {', '.join(str(p) + '.gz' for p in gz)}" if gz else
                        " (gunzip the .gz files of the official release)") + ".")
    elif name in ("cifar10", "cifar100"):
        archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
        lines.append(f"They are the contents of the official {archive}, extracted into {root}.")
    else:
        lines.append("They are the official 'Format 2' cropped-digit .mat files.")
    return "\n".join(lines)


def _verified_classes():
    """torchvision's classes, and subclasses that check that files exist but not their MD5."""
    import torchvision

    def no_md5(cls):
        attrs: Dict[str, Any] = {}
        if hasattr(cls, "train_list"):
            attrs["train_list"] = [[f, None] for f, _ in cls.train_list]
            attrs["test_list"] = [[f, None] for f, _ in cls.test_list]
            attrs["meta"] = dict(cls.meta, md5=None)
        if hasattr(cls, "split_list"):
            attrs["split_list"] = {k: [u, f, None] for k, (u, f, _) in cls.split_list.items()}
        return type(cls.__name__, (cls,), attrs)

    return {name: (getattr(torchvision.datasets, cls),
                   no_md5(getattr(torchvision.datasets, cls)))
            for name, cls in _CLASS_NAMES.items()}


@dataclass
class LoadedDataset:
    r"""
    One split of a dataset on disk, from :func:`load_dataset`.

    Attributes:
        name (str): One of :data:`DATASETS`.
        split (str): ``"train"`` or ``"test"``.
        root (Path): Where it was read from.
        dataset (Dataset): Yields ``(normalised image tensor, label)``: torchvision's dataset
                    with ``ToTensor`` and ``Normalize(mean, std)`` (for an ImageFolder, a
                    :class:`torch.utils.data.Subset` of it).
        classes (tuple of str): Class names.
        channels (int): Image channels (1 for the MNIST family).
        image_size (tuple of int): ``(H, W)``.
        mean (tuple of float): The normalisation's mean, per channel.
        std (tuple of float): Its standard deviation, per channel.
    """

    name: str
    split: str
    root: Path
    dataset: Any
    classes: Tuple[str, ...]
    channels: int
    image_size: Tuple[int, int]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]

    def __len__(self) -> int:
        return len(self.dataset)

    def tensors(self, n: Optional[int] = None, progress: bool = False) -> Tuple[Tensor, Tensor]:
        r"""
        The first ``n`` images (default: all), normalised, as ``(N x C x H x W float32,
        N int64)``. torchvision's arrays are converted directly (the same values as the
        dataset's transform gives, without decoding images one by one).
        """
        total = len(self.dataset)
        n = total if n is None else min(check_int("n", n, minimum=0), total)
        base = self.dataset
        data = getattr(base, "data", None)
        if data is None:  # an ImageFolder: decode image by image
            from tqdm.auto import tqdm

            items = [base[i] for i in tqdm(range(n), desc=f"loading {self.split}",
                                           disable=not progress)]
            if not items:
                return (torch.zeros(0, self.channels, *self.image_size),
                        torch.zeros(0, dtype=torch.int64))
            return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])
        raw = torch.as_tensor(np.asarray(data[:n]))
        if raw.dim() == 3:  # MNIST family: N x H x W
            raw = raw[:, None]
        elif self.name in ("cifar10", "cifar100"):  # N x H x W x C
            raw = raw.permute(0, 3, 1, 2)
        labels = getattr(base, "targets", None)
        if labels is None:
            labels = base.labels
        labels = torch.as_tensor(np.asarray(labels[:n]), dtype=torch.int64)
        return self.normalize(raw.float() / 255.0).contiguous(), labels

    def normalize(self, images: Tensor) -> Tensor:
        r"""Raw ``(..., C, H, W)`` images in [0, 1] to the normalised space."""
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (images - mean) / std

    def denormalize(self, images: Tensor) -> Tensor:
        r"""Normalised images back in [0, 1] (clamped), for display."""
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (images.cpu() * std + mean).clamp(0, 1)

    def describe(self) -> str:
        r"""One line, e.g. ``"CIFAR10 test split, /data (10000 images, 10 classes, 3x32x32)"``."""
        label = _CLASS_NAMES.get(self.name, "ImageFolder")
        h, w = self.image_size
        return (f"{label} {self.split} split, {self.root} ({len(self)} images, "
                f"{len(self.classes)} classes, {self.channels}x{h}x{w})")


def load_dataset(
    spec: Union[str, os.PathLike, DataSpec],
    root: Optional[Union[str, os.PathLike]] = None,
    split: str = "test",
    *,
    image_size: Optional[int] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    verify: bool = True,
) -> LoadedDataset:
    r"""
    Loads one split of a dataset on disk, offline, through torchvision (``download=False``).

    Args:

        spec (str, PathLike or DataSpec): A dataset name of :data:`DATASETS` (then ``root`` is
                    the folder), the command-line form ``NAME:ROOT`` or a folder path (see
                    :func:`parse_data_spec`), or a :class:`DataSpec`.
        root (str or PathLike, optional): The folder, when ``spec`` is a bare name.
                    Default: None
        split (str, optional): ``"train"`` or ``"test"`` (an ImageFolder's ``val/`` or
                    ``test/`` folder, or its fixed 80/20 split; see
                    :class:`~captum_prune.zoo.data.ImageFolderSplits`). Default: ``"test"``
        image_size (int, optional): An ImageFolder's images are resized to this square size
                    (default 224); the torchvision datasets keep their size and refuse another.
        mean, std (sequence of float, optional): Normalisation per channel instead of
                    :data:`NORMALISATION` (not for an ImageFolder). Default: None
        verify (bool, optional): Check the files' MD5 sums against the official releases
                    (CIFAR and SVHN; torchvision has none for the MNIST family's uncompressed
                    files). ``False`` only checks that they exist, e.g. for a stand-in made by
                    hand. Default: True

    Returns:
        :class:`LoadedDataset`.

    Raises:
        FileNotFoundError: If files are missing; the message lists which files to put where.
        ValueError: For an unknown name, a file that does not match its checksum or cannot be
                    read, or bad arguments.

    Examples::

        >>> from captum_prune.zoo.datasets import load_dataset
        >>> test = load_dataset("cifar10:/data/cifar", split="test")  # doctest: +SKIP
        >>> images, labels = test.tensors(256)  # doctest: +SKIP
        >>> test.describe()  # doctest: +SKIP
        'CIFAR10 test split, /data/cifar (10000 images, 10 classes, 3x32x32)'
    """
    if isinstance(spec, DataSpec):
        parsed = spec
    elif root is not None:
        key = os.fspath(spec).lower().replace("-", "").replace("_", "")
        if key not in DATASETS:
            raise ValueError(f"spec must be one of {', '.join(DATASETS)} when root is given, "
                             f"got {spec!r}")
        parsed = DataSpec(key, Path(root).expanduser())
    else:
        parsed = parse_data_spec(spec)
    name, split = _check_name_split(parsed.name, split)
    root = parsed.root
    if (mean is None) != (std is None):
        raise ValueError("mean and std must be given together")
    if name == "imagefolder":
        return _load_folder(root, split, image_size, mean)
    if image_size is not None:
        raise ValueError(f"image_size: {_CLASS_NAMES[name]} images keep their size; "
                         "image_size applies to an ImageFolder only")
    default_mean, default_std = NORMALISATION[name]
    mean = tuple(float(m) for m in (default_mean if mean is None else mean))
    std = tuple(float(s) for s in (default_std if std is None else std))
    if len(mean) != len(default_mean) or len(std) != len(default_std) or min(std) <= 0:
        raise ValueError(f"mean and std must have {len(default_mean)} values (std positive), "
                         f"got {mean} and {std}")
    missing = [p for p in expected_files(name, root, split) if not p.is_file()]
    if missing:
        raise FileNotFoundError(_missing_message(name, root, split, missing))
    from torchvision import transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    checked, unchecked = _verified_classes()[name]
    cls = checked if verify else unchecked
    kwargs = {"split": split} if name == "svhn" else {"train": split == "train"}
    try:
        dataset = cls(str(root), transform=transform, download=False, **kwargs)
    except RuntimeError as error:
        raise ValueError(
            f"{_CLASS_NAMES[name]} files under {root} do not match the official release "
            f"({error}); replace them with the official files, or pass verify=False to "
            "skip the checksum"
        ) from None
    except Exception as error:  # unreadable pickle, idx or .mat content
        raise ValueError(f"{_CLASS_NAMES[name]} files under {root} cannot be read: "
                         f"{type(error).__name__}: {error}") from None
    classes = getattr(dataset, "classes", None) or [str(i) for i in range(10)]
    sample = np.asarray(dataset.data[:1])
    size = tuple(sample.shape[-2:]) if name == "svhn" else tuple(sample.shape[1:3])
    return LoadedDataset(name, split, root, dataset, tuple(str(c) for c in classes),
                         len(mean), (int(size[0]), int(size[1])), mean, std)


def _load_folder(root: Path, split: str, image_size: Optional[int],
                 mean: Optional[Sequence[float]]) -> LoadedDataset:
    from captum_prune.zoo.data import IMAGENET_MEAN, IMAGENET_STD, ImageFolderSplits

    if mean is not None:
        raise ValueError("mean and std: an ImageFolder uses ImageNet's normalisation")
    size = 224 if image_size is None else image_size
    splits = ImageFolderSplits(root, size)
    return LoadedDataset("imagefolder", split, root, splits.subset(split), tuple(splits.classes), 3,
                         (size, size), tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))
