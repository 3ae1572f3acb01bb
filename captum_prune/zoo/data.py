r"""
The embedded default dataset, scikit-learn's 8x8 digits placed on textured canvases
(:func:`make_digits_canvas`); and a user's local image folder (:class:`ImageFolderSplits`).

The digits ship with scikit-learn (no download), render deterministically from a seed in well
under a second, and give every image a ground-truth object box and per-pixel object mask,
so localisation metrics can be computed without any external annotation.
"""
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from captum_prune._shared import check_int, is_int

__all__ = [
    "DigitsCanvasData",
    "DigitsSceneData",
    "make_digits_canvas",
    "make_digits_scene",
    "DIGIT_CLASSES",
    "ImageFolderSplits",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

DIGIT_CLASSES: Tuple[str, ...] = tuple(str(i) for i in range(10))

_SPLITS = ("train", "test")
# Fixed, so that the split does not move when the rendering seed changes.
_SPLIT_SEED = 0
_TEST_FRACTION = 0.2
# Background texture amplitude (in [0, 1] intensity units): visible, but below the
# guaranteed digit/background contrast. A fixed polarity (digit brighter) keeps the task
# learnable in seconds; with both polarities the small model barely fits it.
_TEXTURE_AMPLITUDE = 0.15
_MIN_CONTRAST = 0.3


@dataclass
class DigitsCanvasData(Dataset):
    r"""
    Rendered digits of one split, as tensors. Indexing yields ``(image, label)`` pairs, so
    the object is also a :class:`torch.utils.data.Dataset`.

    Attributes:
        images (Tensor): Normalised images, float32 of shape ``(N, C, H, W)``.
        labels (Tensor): Digit classes, int64 of shape ``(N,)``.
        boxes (Tensor): Tight object boxes ``(x0, y0, x1, y1)`` in pixels, int64 of shape
                    ``(N, 4)``, half-open: the object is ``image[..., y0:y1, x0:x1]``.
        object_masks (Tensor): Bool of shape ``(N, H, W)``, True where the digit has ink.
        ink (Tensor): Float32 of shape ``(N, H, W)`` in [0, 1]: the digit's opacity per
                    pixel, from which the image was composited.
        source_indices (Tensor): Int64 of shape ``(N,)``: the row of each image in
                    :func:`sklearn.datasets.load_digits`.
        mean (Tensor): Per-channel mean of the raw train images, shape ``(C,)``.
        std (Tensor): Per-channel standard deviation of the raw train images, shape ``(C,)``.
        classes (tuple of str): Class names, ``"0"`` to ``"9"``.
    """

    images: Tensor
    labels: Tensor
    boxes: Tensor
    object_masks: Tensor
    ink: Tensor
    source_indices: Tensor
    mean: Tensor
    std: Tensor
    classes: Tuple[str, ...] = DIGIT_CLASSES

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def normalize(self, images: Tensor) -> Tensor:
        r"""
        Maps raw images in [0, 1] to the normalised space the model sees.

        Args:
            images (Tensor): Raw images of shape ``(..., C, H, W)``.

        Returns:
            Tensor: ``(images - mean) / std`` per channel.
        """
        return (images - self.mean[:, None, None]) / self.std[:, None, None]

    def denormalize(self, images: Optional[Tensor] = None) -> Tensor:
        r"""
        Undoes the normalisation, for display.

        Args:
            images (Tensor, optional): Normalised images of shape ``(..., C, H, W)``.
                    Default: ``self.images``.

        Returns:
            Tensor: Images in [0, 1] intensity units (clamped).
        """
        if images is None:
            images = self.images
        raw = images * self.std[:, None, None] + self.mean[:, None, None]
        return raw.clamp(0.0, 1.0)


def make_digits_canvas(
    split: str = "train",
    seed: int = 0,
    canvas_size: int = 32,
    digit_size: int = 16,
    channels: int = 3,
) -> DigitsCanvasData:
    r"""
    Renders scikit-learn's 1797 handwritten digits on random textured canvases.

    Each 8x8 digit is upscaled bilinearly to ``digit_size`` pixels and composited, in a
    random colour, at a random position onto a ``canvas_size`` canvas whose background is a
    random base colour plus a low-contrast texture (smooth noise mixed with stripes).
    The digit is always brighter than its background (by at least 0.3 in mean channel
    value, against a texture amplitude of at most 0.15), so it stays visible and the
    task keeps one polarity, as in MNIST. Everything depends only on ``seed`` and the
    size arguments; the 80/20 train/test split is stratified and fixed. Images are
    normalised with the per-channel mean and standard deviation of the train split.

    Args:
        split (str, optional): ``"train"`` (1437 images) or ``"test"`` (360 images).
                    Default: ``"train"``
        seed (int, optional): Seed of the rendering (positions, colours, textures).
                    Default: 0
        canvas_size (int, optional): Side of the square canvas in pixels. Default: 32
        digit_size (int, optional): Side of the upscaled digit, at least 8 and at most
                    ``canvas_size``. Default: 16
        channels (int, optional): 3 for RGB or 1 for greyscale. Default: 3

    Returns:
        DigitsCanvasData: Images, labels, boxes, masks and normalisation statistics.

    Examples::

        >>> from captum_prune.zoo.data import make_digits_canvas
        >>> test = make_digits_canvas("test")
        >>> test.images.shape, test.boxes[0].tolist()  # doctest: +SKIP
        (torch.Size([360, 3, 32, 32]), [11, 3, 25, 19])
    """
    _check_arguments(split, seed, canvas_size, digit_size, channels)
    raw, ink, boxes, labels = _render_all(seed, canvas_size, digit_size, channels)
    images, idx, mean, std = _normalised_split(raw, split)
    return DigitsCanvasData(
        images=images.contiguous(),
        labels=labels[idx].clone(),
        boxes=boxes[idx].clone(),
        object_masks=ink[idx] > 0,
        ink=ink[idx].clone(),
        source_indices=idx.clone(),
        mean=mean,
        std=std,
    )


def _check_arguments(
    split: str, seed: int, canvas_size: int, digit_size: int, channels: int
) -> None:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    for name, value in (
        ("seed", seed),
        ("canvas_size", canvas_size),
        ("digit_size", digit_size),
        ("channels", channels),
    ):
        check_int(name, value, error=TypeError)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if digit_size < 8:
        raise ValueError(f"digit_size must be at least 8, got {digit_size}")
    if canvas_size < digit_size:
        raise ValueError(
            f"canvas_size must be at least digit_size ({digit_size}), got {canvas_size}"
        )


@lru_cache(maxsize=1)
def _load_digits() -> Tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are counts 0..16; scale to an opacity in [0, 1].
    images = torch.as_tensor(digits.images, dtype=torch.float32) / 16.0
    labels = torch.as_tensor(digits.target, dtype=torch.int64)
    return images, labels


@lru_cache(maxsize=1)
def _split_indices() -> Tuple[Tensor, Tensor]:
    from sklearn.model_selection import train_test_split

    _, labels = _load_digits()
    train, test = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=_TEST_FRACTION,
        stratify=labels.numpy(),
        random_state=_SPLIT_SEED,
    )
    return torch.as_tensor(train), torch.as_tensor(test)


def _render_all(
    seed: int, canvas_size: int, digit_size: int, channels: int
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Renders every digit; returns raw images, ink, tight boxes and labels."""
    digits, labels = _load_digits()
    n = digits.shape[0]
    gen = torch.Generator().manual_seed(seed)

    patches = F.interpolate(
        digits[:, None], size=(digit_size, digit_size), mode="bilinear", align_corners=False
    )[:, 0].clamp(0.0, 1.0)
    span = canvas_size - digit_size + 1
    x0 = torch.randint(0, span, (n,), generator=gen)
    y0 = torch.randint(0, span, (n,), generator=gen)
    ink = torch.zeros(n, canvas_size, canvas_size)
    for i in range(n):
        ink[i, y0[i] : y0[i] + digit_size, x0[i] : x0[i] + digit_size] = patches[i]

    raw = _paint(ink, channels, gen)
    return raw, ink, _tight_boxes(ink > 0), labels


def _paint(alpha: Tensor, channels: int, gen: torch.Generator) -> Tensor:
    """Composites ink of opacity ``alpha`` (N, H, W) in a random colour over a textured
    background of a random base colour; returns raw images (N, C, H, W) in [0, 1]."""
    n, size = alpha.shape[0], alpha.shape[-1]
    background = _background(n, channels, size, gen)
    base, colour = _colour_pairs(n, channels, gen)
    background = (base + _TEXTURE_AMPLITUDE * background).clamp(0.0, 1.0)
    return background * (1.0 - alpha[:, None]) + colour * alpha[:, None]


def _normalised_split(raw: Tensor, split: str) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The images of ``split``, normalised with the train split's per-channel statistics (so
    test data never leaks into preprocessing); returns (images, indices, mean, std)."""
    train_idx, test_idx = _split_indices()
    train_raw = raw[train_idx]
    mean = train_raw.mean(dim=(0, 2, 3))
    std = train_raw.std(dim=(0, 2, 3))
    idx = train_idx if split == "train" else test_idx
    return (raw[idx] - mean[:, None, None]) / std[:, None, None], idx, mean, std


def _background(n: int, channels: int, size: int, gen: torch.Generator) -> Tensor:
    """Zero-centred texture in about [-1, 1]: smooth noise blended with random stripes."""
    coarse = torch.rand(n, 1, 4, 4, generator=gen) * 2.0 - 1.0
    noise = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)

    angle = torch.rand(n, 1, 1, 1, generator=gen) * math.pi
    period = 3.0 + torch.rand(n, 1, 1, 1, generator=gen) * 9.0
    phase = torch.rand(n, 1, 1, 1, generator=gen) * 2.0 * math.pi
    coords = torch.arange(size, dtype=torch.float32)
    ys, xs = coords[:, None], coords[None, :]
    stripes = torch.sin(
        2.0 * math.pi * (xs * torch.cos(angle) + ys * torch.sin(angle)) / period + phase
    )
    weight = torch.rand(n, 1, 1, 1, generator=gen)
    texture = (weight * noise + (1.0 - weight) * stripes).clamp(-1.0, 1.0)
    # A random signed tint per channel, so textures are coloured too.
    tint = torch.rand(n, channels, 1, 1, generator=gen) * 2.0 - 1.0
    return texture * tint


def _colour_pairs(n: int, channels: int, gen: torch.Generator) -> Tuple[Tensor, Tensor]:
    """Random (background, digit) colours with the digit brighter by _MIN_CONTRAST on average."""
    shape = (n, channels, 1, 1)
    base = torch.rand(shape, generator=gen)
    colour = torch.rand(shape, generator=gen)
    while True:
        bad = (colour - base).mean(dim=(1, 2, 3)) < _MIN_CONTRAST
        if not bad.any():
            return base, colour
        # Redraw only the failures; the loop is deterministic given the generator.
        count = (int(bad.sum()),) + shape[1:]
        base[bad] = torch.rand(count, generator=gen)
        colour[bad] = torch.rand(count, generator=gen)


def _tight_boxes(masks: Tensor) -> Tensor:
    """Half-open (x0, y0, x1, y1) bounding boxes of non-empty bool masks (N, H, W)."""
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    h, w = masks.shape[1:]
    y0 = rows.int().argmax(dim=1)
    y1 = h - rows.flip(1).int().argmax(dim=1)
    x0 = cols.int().argmax(dim=1)
    x1 = w - cols.flip(1).int().argmax(dim=1)
    return torch.stack([x0, y0, x1, y1], dim=1).long()


@dataclass
class DigitsSceneData(DigitsCanvasData):
    r"""
    Scenes of :func:`make_digits_scene`: one large target digit and smaller distractor digits
    of other classes on a textured canvas. The fields of :class:`DigitsCanvasData` describe the
    target (``labels``, ``boxes``, ``object_masks``, ``ink`` and ``source_indices`` are the
    target digit's); the distractors have their own fields.

    Attributes:
        distractor_labels (Tensor): Int64 of shape ``(N, K)``, the distractors' classes (all
                    different from the target's and from each other).
        distractor_boxes (Tensor): Int64 of shape ``(N, K, 4)``, tight half-open boxes.
        distractor_masks (Tensor): Bool of shape ``(N, H, W)``, True where any distractor
                    has ink.
        distractor_indices (Tensor): Int64 of shape ``(N, K)``, rows in
                    :func:`sklearn.datasets.load_digits` (from the same split as the target).
    """

    distractor_labels: Optional[Tensor] = field(default=None)
    distractor_boxes: Optional[Tensor] = field(default=None)
    distractor_masks: Optional[Tensor] = field(default=None)
    distractor_indices: Optional[Tensor] = field(default=None)


def make_digits_scene(
    split: str = "train",
    seed: int = 0,
    canvas_size: int = 48,
    digit_size: int = 20,
    distractor_size: int = 12,
    n_distractors: int = 2,
    channels: int = 3,
) -> DigitsSceneData:
    r"""
    Renders scikit-learn's digits as *scenes*: each image holds its target digit (upscaled to
    ``digit_size``) and ``n_distractors`` smaller digits (``distractor_size``) of other
    classes, at random non-overlapping positions on a textured canvas. The label is the class
    of the large digit, so the model must find it among the distractors, and a map must
    single out the target rather than mark every digit (the measured comparison of methods on
    these scenes and on :func:`make_digits_canvas` is in the docs: Datasets, models and
    presets).

    Background, colours and the fixed 80/20 split are those of :func:`make_digits_canvas`;
    all digits of an image share its colour, so only their size tells the target apart.
    Distractors are drawn from the same split as the target (no test digit appears in a
    train image). Everything depends only on ``seed`` and the size arguments; images are
    normalised with the per-channel statistics of the train split.

    Args:
        split (str, optional): ``"train"`` (1437 images) or ``"test"`` (360). Default: ``"train"``
        seed (int, optional): Seed of the rendering. Default: 0
        canvas_size (int, optional): Side of the square canvas. Default: 48
        digit_size (int, optional): Side of the upscaled target digit, at least 8.
                    Default: 20
        distractor_size (int, optional): Side of each distractor, from 8 to ``digit_size``.
                    Default: 12
        n_distractors (int, optional): Distractors per image, 0 to 8. Default: 2
        channels (int, optional): 3 for RGB or 1 for greyscale. Default: 3

    Returns:
        DigitsSceneData: Images, target labels, boxes and masks, the distractors' labels,
        boxes and masks, and the normalisation statistics.

    Raises:
        ValueError: If the digits cannot be placed without overlap on the canvas.

    Examples::

        >>> from captum_prune.zoo.data import make_digits_scene
        >>> test = make_digits_scene("test")
        >>> test.images.shape, test.distractor_labels.shape
        (torch.Size([360, 3, 48, 48]), torch.Size([360, 2]))
        >>> bool((test.distractor_labels != test.labels[:, None]).all())
        True
    """
    _check_arguments(split, seed, canvas_size, digit_size, channels)
    check_int("distractor_size", distractor_size, error=TypeError)
    check_int("n_distractors", n_distractors, error=TypeError)
    if not 8 <= distractor_size <= digit_size:
        raise ValueError(
            f"distractor_size must lie in [8, digit_size={digit_size}], got {distractor_size}"
        )
    if not 0 <= n_distractors <= 8:
        raise ValueError(f"n_distractors must lie in [0, 8], got {n_distractors}")
    if (digit_size + 1) ** 2 + n_distractors * (distractor_size + 1) ** 2 > 0.6 * canvas_size**2:
        raise ValueError(
            f"canvas_size {canvas_size} is too small for a {digit_size}-pixel digit and "
            f"{n_distractors} distractors of {distractor_size} pixels (at most 60% of the "
            "canvas may be covered)"
        )
    digits, all_labels = _load_digits()
    train_idx, test_idx = _split_indices()
    n = digits.shape[0]
    gen = torch.Generator().manual_seed(seed)
    # Distractors come from the target's own split.
    distractor_idx = torch.zeros(n, n_distractors, dtype=torch.int64)
    for pool in (train_idx, test_idx):
        for i in pool.tolist():
            used = {int(all_labels[i])}
            for k in range(n_distractors):
                while True:
                    j = int(pool[torch.randint(len(pool), (1,), generator=gen)])
                    if int(all_labels[j]) not in used:
                        break
                used.add(int(all_labels[j]))
                distractor_idx[i, k] = j

    def upscale(rows: Tensor, size: int) -> Tensor:
        return F.interpolate(digits[rows][:, None], size=(size, size), mode="bilinear",
                             align_corners=False)[:, 0].clamp(0.0, 1.0)

    target_patch = upscale(torch.arange(n), digit_size)
    distractor_patch = upscale(distractor_idx.flatten(), distractor_size).view(
        n, n_distractors, distractor_size, distractor_size)
    ink = torch.zeros(n, canvas_size, canvas_size)
    other = torch.zeros(n, n_distractors, canvas_size, canvas_size)
    sizes = [digit_size] + [distractor_size] * n_distractors
    for i in range(n):
        placed = _place(sizes, canvas_size, gen)
        for k, (x, y, size) in enumerate(placed):
            if k == 0:
                ink[i, y:y + size, x:x + size] = target_patch[i]
            else:
                other[i, k - 1, y:y + size, x:x + size] = distractor_patch[i, k - 1]

    raw = _paint((ink + other.sum(dim=1)).clamp(max=1.0), channels, gen)
    images, idx, mean, std = _normalised_split(raw, split)
    other = other[idx]
    boxes = _tight_boxes((other > 0).flatten(0, 1)).view(len(idx), n_distractors, 4) \
        if n_distractors else torch.zeros(len(idx), 0, 4, dtype=torch.int64)
    return DigitsSceneData(
        images=images.contiguous(),
        labels=all_labels[idx].clone(),
        boxes=_tight_boxes(ink[idx] > 0),
        object_masks=ink[idx] > 0,
        ink=ink[idx].clone(),
        source_indices=idx.clone(),
        mean=mean,
        std=std,
        distractor_labels=all_labels[distractor_idx[idx]].view(len(idx), n_distractors),
        distractor_boxes=boxes,
        distractor_masks=(other > 0).any(dim=1),
        distractor_indices=distractor_idx[idx].clone(),
    )


def _place(sizes: List[int], canvas_size: int, gen: torch.Generator) -> List[Tuple[int, int, int]]:
    """Random top-left corners of squares of ``sizes`` with at least one free pixel between
    any two; a layout that gets stuck is drawn again from the start."""
    for _ in range(200):
        placed: List[Tuple[int, int, int]] = []
        for size in sizes:
            for _ in range(50):
                x, y = (int(v) for v in torch.randint(0, canvas_size - size + 1, (2,),
                                                      generator=gen))
                if all(x + size < px or px + ps < x or y + size < py or py + ps < y
                       for px, py, ps in placed):
                    placed.append((x, y, size))
                    break
            else:
                break
        if len(placed) == len(sizes):
            return placed
    raise ValueError(f"could not place {len(sizes)} digits of sizes {sizes} without overlap "
                     f"on a {canvas_size}-pixel canvas; enlarge canvas_size")


#: The per-channel normalisation of :class:`ImageFolderSplits` (torchvision's ImageNet values).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageFolderSplits:
    r"""
    A local image folder as train and test splits: a folder with ``train/`` and ``val/`` (or
    ``test/``) class folders, or one folder of class folders split 80/20 (a fixed seeded
    shuffle). Images are resized to ``image_size`` squared and normalised with
    :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`.

    Args:
        root (str or PathLike): The folder.
        image_size (int): Side of the resized images, at least 8.

    Raises:
        ValueError: If the folder is missing or is not an ImageFolder, or too small to split.
    """

    def __init__(self, root: Union[str, os.PathLike], image_size: int) -> None:
        import torchvision
        from torchvision import transforms

        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"{root}: no such folder")
        if not is_int(image_size) or image_size < 8:
            raise ValueError(f"image_size must be an int of at least 8, got {image_size!r}")
        transform = transforms.Compose([
            transforms.Resize((image_size, image_size)),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ])

        def folder(path: Path) -> Any:
            try:
                return torchvision.datasets.ImageFolder(str(path), transform=transform)
            except (FileNotFoundError, RuntimeError) as error:
                raise ValueError(f"{path}: not an ImageFolder ({error})") from None

        test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
        if (root / "train").is_dir() and test_dir is not None:
            self._train, self._test = folder(root / "train"), folder(test_dir)
            self._train_idx = torch.arange(len(self._train))
            self._test_idx = torch.arange(len(self._test))
        else:
            self._train = self._test = folder(root)
            order = torch.randperm(len(self._train), generator=torch.Generator().manual_seed(0))
            cut = max(1, int(0.8 * len(order)))
            self._train_idx, self._test_idx = order[:cut], order[cut:]
            if len(self._test_idx) == 0:
                raise ValueError(f"{root}: too few images to split into train and test")
        self.root = root
        self.image_size = image_size

    @property
    def classes(self) -> List[str]:
        r"""The class names (the train split's folder names)."""
        return list(self._train.classes)

    def subset(self, split: str) -> "torch.utils.data.Subset":
        r"""The images of ``split`` (``"train"`` or ``"test"``) as a dataset of
        ``(normalised image, label)`` pairs."""
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        dataset, idx = ((self._train, self._train_idx) if split == "train"
                        else (self._test, self._test_idx))
        return torch.utils.data.Subset(dataset, idx.tolist())

    def tensors(self, split: str, n: int, progress: bool = False) -> Tuple[Tensor, Tensor]:
        r"""The first ``n`` images of ``split`` (``"train"`` or ``"test"``) and their labels."""
        from tqdm.auto import tqdm

        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        dataset, idx = ((self._train, self._train_idx) if split == "train"
                        else (self._test, self._test_idx))
        items = [dataset[int(i)] for i in tqdm(idx[:n], desc=f"loading {split}",
                                               disable=not progress)]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])

    @staticmethod
    def denormalize(images: Tensor) -> Tensor:
        r"""Normalised ``(N, 3, H, W)`` images back in [0, 1], for display."""
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return (images.cpu() * std + mean).clamp(0, 1)

