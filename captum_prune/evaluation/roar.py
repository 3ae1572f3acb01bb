r"""RemOve And Retrain (ROAR, Hooker et al. 2019; method spec §4.3)."""

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from captum_prune._shared import is_int, predict
from captum_prune.evaluation._explain import (
    check_batch_size,
    check_fractions,
    check_images,
    check_map_matches,
    jsonable,
    mean_std,
    progress_bar,
    trapezoid_auc,
)
from captum_prune.evaluation.perturbation import (
    BaselineType,
    remove_top_pixels,
    resolve_baseline,
)
from captum_prune.evaluation.ranking import check_tie_break, rank_pixels
from captum_prune.evaluation.statistics import (
    DEFAULT_N_BOOT,
    bootstrap_ci,
    ci_dicts,
    combine_models,
)
from captum_prune.maps.store import resolve_maps

DEFAULT_ROAR_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: Finer shares, for data on which every sharp map brings the retrained model to chance by 10%
#: (the embedded digits: measured), so that 10..90% cannot rank the methods.
FINE_ROAR_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2)


@dataclass
class RoarResult:
    r"""
    Outcome of :func:`remove_and_retrain`.

    Attributes:
        fractions (list of float): Shares of pixels removed, starting with ``0.0`` (the model
                    trained on unmodified data).
        seeds (list of int): Seeds passed to ``train_fn``.
        accuracy (ndarray): ``F x S`` test accuracy (a fraction in [0, 1]) per fraction and seed.
        correct (ndarray, optional): ``F x S x M`` whether each test image was classified
                    correctly, for CIs over test images.
        tie_break (str, optional): Tie rule of the pixel ranking.
        tied_share (dict, optional): Mean share of tied pixels of the ``"train"`` and
                    ``"test"`` maps.
    """

    fractions: List[float]
    seeds: List[int]
    accuracy: np.ndarray
    correct: Optional[np.ndarray] = None
    tie_break: Optional[str] = None
    tied_share: Optional[Dict[str, float]] = None

    @property
    def mean(self) -> np.ndarray:
        r"""Mean test accuracy per fraction (over seeds)."""
        return mean_std(self.accuracy, axis=1)[0]

    @property
    def std(self) -> np.ndarray:
        r"""Sample standard deviation of the test accuracy per fraction (0 for one seed)."""
        return mean_std(self.accuracy, axis=1)[1]

    @property
    def auc(self) -> float:
        r"""Trapezoid area under mean accuracy vs. fraction, over 0 .. max fraction."""
        return trapezoid_auc(self.fractions, self.mean)

    def ci(self, n_boot: int = DEFAULT_N_BOOT, level: float = 0.95,
           seed: int = 0) -> Dict[str, Any]:
        r"""
        CIs over test images (needs ``correct``): ``"mean"``, one bootstrap CI per fraction of
        the accuracy averaged over training seeds; ``"per_seed"``, per fraction a
        :class:`~captum_prune.evaluation.ModelSpread` (each seed's CI and the spread between
        seeds).
        """
        if self.correct is None:
            raise ValueError("this result has no per-image correctness; rerun remove_and_retrain")
        correct = np.asarray(self.correct, dtype=np.float64)
        return {
            "mean": bootstrap_ci(correct.mean(axis=1).T, n_boot, level, seed),
            "per_seed": [combine_models(list(c), n_boot, level, seed) for c in correct],
        }

    def to_dict(self) -> Dict[str, Any]:
        r"""
        JSON-ready summary, per-seed accuracies included, with CIs over test images (``"ci"``,
        when ``correct`` is recorded), the tie rule and the tied shares.
        """
        out = {
            "protocol": "roar",
            "ranking": "max over channels of |attribution|",
            "fractions": jsonable(self.fractions),
            "seeds": jsonable(self.seeds),
            "mean": jsonable(self.mean),
            "std": jsonable(self.std),
            "per_seed": jsonable(self.accuracy),
            "auc": jsonable(self.auc),
            "tie_break": self.tie_break,
            "tied_share": jsonable(self.tied_share),
        }
        if self.correct is not None:
            cis = self.ci()
            out["ci"] = {"mean": ci_dicts(cis["mean"]),
                         "per_seed": [s.to_dict() for s in cis["per_seed"]]}
        return out


def accuracy(model: Callable[[Tensor], Tensor], images: Tensor, labels: Tensor,
             batch_size: int = 256) -> float:
    r"""Share of ``images`` whose arg-max prediction equals ``labels`` (no gradients)."""
    return float(correct_predictions(model, images, labels, batch_size).mean())


def correct_predictions(model: Callable[[Tensor], Tensor], images: Tensor, labels: Tensor,
                        batch_size: int = 256) -> np.ndarray:
    r"""Boolean array: whether the arg-max prediction of each image equals its label."""
    predicted = predict(model, images, batch_size)
    return (predicted == labels.to(predicted.device)).cpu().numpy()


def _check_labels(labels: Any, images: Tensor, name: str) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dim() != 1 or len(labels) != len(images):
        raise ValueError(f"{name} must be a 1-D tensor with one label per image")
    return labels


def remove_and_retrain(
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    train_attributions: Tensor,
    test_attributions: Tensor,
    train_fn: Callable[[Tensor, Tensor, int], torch.nn.Module],
    fractions: Sequence[float] = DEFAULT_ROAR_FRACTIONS,
    seeds: Sequence[int] = (0, 1, 2),
    baseline: BaselineType = None,
    *,
    batch_size: int = 256,
    progress: bool = False,
    train_indices: Optional[Sequence[int]] = None,
    test_indices: Optional[Sequence[int]] = None,
    tie_break: str = "random",
    tie_seed: int = 0,
) -> RoarResult:
    r"""
    RemOve And Retrain (Hooker et al. 2019), as in method spec §4.3.

    For every fraction ``t`` the top-``t`` pixels of every train and test image, ranked by
    :math:`\max_c |A_c|` (ties by ``tie_break``), are replaced in all channels by the
    baseline; a fresh model is trained on the modified train set with every seed and its
    accuracy on the modified test set is recorded. ``t = 0`` (unmodified data) is always
    evaluated first. A good attribution makes the accuracy drop fast (low AUC).

    Args:

        train_images (Tensor): ``N x C x H x W`` training images.
        train_labels (Tensor): ``N`` integer labels.
        test_images (Tensor): ``M x C x H x W`` test images.
        test_labels (Tensor): ``M`` integer labels.
        train_attributions (Tensor or MapStore): Maps for the train images (``N x C' x H x W``
                    or ``N x H x W``), usually from the model trained on the unmodified data,
                    or a :class:`~captum_prune.MapStore` that holds them.
        test_attributions (Tensor or MapStore): Maps for the test images.
        train_fn (callable): ``train_fn(images, labels, seed) -> model`` trains a model from
                    scratch. The model maps images to class scores; it is put in eval mode
                    before testing.
        fractions (sequence of float, optional): Increasing shares of pixels to remove.
                    Default: ``(0.1, 0.3, 0.5, 0.7, 0.9)``
        seeds (sequence of int, optional): One training run per seed and fraction.
                    Default: ``(0, 1, 2)``
        baseline (None, float or Tensor, optional): Replacement value (see
                    :func:`remove_top_pixels`). ``None`` is the per-channel mean of the
                    unmodified train images, used for train and test alike. Default: ``None``
        batch_size (int, optional): Batch size for ranking and testing. Default: 256
        progress (bool, optional): Show a tqdm progress bar over training runs.
                    Default: ``False``
        train_indices, test_indices (sequence of int, optional): With a ``MapStore``: the
                    dataset index of each train (test) image in the store. Default:
                    ``0 .. N - 1``
        tie_break (str, optional): ``"random"`` (seeded by ``tie_seed``) or ``"position"``
                    (row-major, the old rule); see :func:`~captum_prune.evaluation.rank_pixels`.
                    Train maps use the seed ``(tie_seed, 0)``, test maps ``(tie_seed, 1)``, so
                    every fraction removes nested pixel sets. Default: ``"random"``
        tie_seed (int, optional): Seed of the random tie-break. Default: 0

    Returns:
        :class:`RoarResult` with per-seed accuracies, ``mean``/``std`` per fraction and ``auc``
        (trapezoid over 0 .. max fraction, accuracy as a fraction).

    Examples::

        >>> import torch
        >>> from captum.attr import Saliency
        >>> from captum_prune.evaluation import remove_and_retrain
        >>> _ = torch.manual_seed(0)
        >>> # Toy data: class 1 has a bright 3 x 3 patch.
        >>> images = torch.rand(80, 1, 8, 8)
        >>> labels = torch.arange(80) % 2
        >>> images[labels == 1, :, 2:5, 2:5] += 1.0
        >>> x_tr, y_tr, x_te, y_te = images[:60], labels[:60], images[60:], labels[60:]
        >>> def train_fn(images, labels, seed):  # a few steps of logistic regression
        ...     torch.manual_seed(seed)
        ...     model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
        ...     opt = torch.optim.Adam(model.parameters(), lr=0.1)
        ...     for _ in range(50):
        ...         opt.zero_grad()
        ...         torch.nn.functional.cross_entropy(model(images), labels).backward()
        ...         opt.step()
        ...     return model
        >>> # Maps from the model trained on the unmodified data.
        >>> saliency = Saliency(train_fn(x_tr, y_tr, 0).eval())
        >>> a_tr = saliency.attribute(x_tr, target=y_tr)
        >>> a_te = saliency.attribute(x_te, target=y_te)
        >>> result = remove_and_retrain(x_tr, y_tr, x_te, y_te, a_tr, a_te, train_fn,
        ...                             fractions=[0.1, 0.5], seeds=[0])
        >>> result.fractions  # 0.0 (unmodified data) is always evaluated
        [0.0, 0.1, 0.5]
        >>> result.accuracy.shape  # fractions x seeds
        (3, 1)
        >>> bool(result.mean[0] > result.mean[-1])  # removing salient pixels hurts
        True
        >>> sorted(result.to_dict())  # doctest: +NORMALIZE_WHITESPACE
        ['auc', 'ci', 'fractions', 'mean', 'per_seed', 'protocol', 'ranking', 'seeds', 'std',
         'tie_break', 'tied_share']
    """
    train_images = check_images(train_images, "train_images")
    test_images = check_images(test_images, "test_images")
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ValueError("test_images must have the same C x H x W as train_images")
    _check_labels(train_labels, train_images, "train_labels")
    _check_labels(test_labels, test_images, "test_labels")
    train_attributions = resolve_maps(train_attributions, len(train_images), train_indices,
                                      "train_attributions", "train_indices")
    test_attributions = resolve_maps(test_attributions, len(test_images), test_indices,
                                     "test_attributions", "test_indices")
    check_map_matches(train_attributions, train_images, "train_attributions")
    check_map_matches(test_attributions, test_images, "test_attributions")
    if not callable(train_fn):
        raise TypeError(f"train_fn must be callable, got {type(train_fn).__name__}")
    fractions = check_fractions(fractions)
    seeds = list(seeds)
    if not seeds or any(not is_int(s) for s in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds!r}")
    batch_size = check_batch_size(batch_size)
    check_tie_break(tie_break)
    tie_seeds = {"train": (tie_seed, 0), "test": (tie_seed, 1)}
    tied = {
        split: float(rank_pixels(maps, tie_break=tie_break, seed=tie_seeds[split])
                     .tied_share.mean())
        for split, maps in (("train", train_attributions), ("test", test_attributions))
    }
    # One replacement value for train and test: the (unmodified) training-set statistic.
    base = resolve_baseline(baseline, train_images)
    if base.shape[0] > 1:
        raise ValueError("baseline must be a number, per-channel values or one C x H x W image")
    if fractions[0] > 0:
        fractions = [0.0] + fractions

    runs = [(i, j) for i in range(len(fractions)) for j in range(len(seeds))]
    runs = progress_bar(runs, progress, "ROAR", total=len(runs))
    correct = np.zeros((len(fractions), len(seeds), len(test_images)), dtype=bool)
    current, data = None, None
    for i, j in runs:
        f = fractions[i]
        if i != current:
            current = i
            data = tuple(
                remove_top_pixels(x, a, f, base, batch_size=batch_size, tie_break=tie_break,
                                  seed=tie_seeds[split])
                for split, x, a in (("train", train_images, train_attributions),
                                    ("test", test_images, test_attributions))
            )
        model = train_fn(data[0], train_labels, seeds[j])
        if isinstance(model, torch.nn.Module):
            model.eval()
        correct[i, j] = correct_predictions(model, data[1], test_labels, batch_size)
    return RoarResult(fractions=fractions, seeds=seeds, accuracy=correct.mean(axis=2),
                      correct=correct, tie_break=tie_break, tied_share=tied)
