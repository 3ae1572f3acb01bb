r"""ROAD: RemOve And Debias (Rong, Leemann et al., ICML 2022, arXiv 2202.00449).

Like MoRF/LeRF, but removed pixels are *imputed* from their neighbours, so that the shape of the
removed region leaks (almost) no class information, and no retraining is needed.

Implementation: our own, with ``scipy.sparse`` (already a dependency of the ``demo`` extra).
The two maintained implementations were checked and not imported: pytorch-grad-cam
(``grad-cam`` on PyPI, ``pytorch_grad_cam.metrics.road.NoisyLinearImputer``, a copy of the
authors' code) requires ``opencv-python-headless`` and ``ttach`` for the whole package, thresholds
the map by percentile (so it cannot use this package's seeded tie-breaking) and, for 3-channel
masks, replaces the mask by a grey-scale version of the image; Quantus (``quantus``, LGPL)
requires ``opencv-python`` and ``pandas`` and works on numpy batches. Neither fits a small extra.
The imputation below follows the authors' definition and is tested against a dense hand-built
solution.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from captum_prune.evaluation._curves import Remover, removal_curves
from captum_prune.evaluation._explain import (
    TargetType,
    check_images,
    curve_auc,
    jsonable,
    summary,
)
from captum_prune.evaluation.ranking import SeedType, _seed_words
from captum_prune.evaluation.statistics import DEFAULT_N_BOOT, bootstrap_ci, ci_dicts

DEFAULT_ROAD_FRACTIONS = tuple(round(0.1 * k, 1) for k in range(1, 10))

#: ``(row offset, column offset, weight)`` of the 8 neighbours: 1/6 direct, 1/12 diagonal.
NEIGHBOUR_WEIGHTS = (
    (-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
    (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12),
)


def _linear_system(removed: np.ndarray):
    r"""
    The sparse system ``A x = B v`` of one ``H x W`` mask: row ``i`` says that removed pixel
    ``i`` equals the weighted mean of its in-image neighbours (weights renormalised at the
    border). Returns ``A`` (m x m, CSC), the known-neighbour matrix ``K`` (m x H*W, CSR) and the
    flat indices of the removed pixels.
    """
    from scipy import sparse

    h, w = removed.shape
    flat = removed.reshape(-1)
    idx = np.flatnonzero(flat)
    m = idx.size
    var = np.full(h * w, -1, dtype=np.int64)
    var[idx] = np.arange(m)
    y, x = idx // w, idx % w
    diag = np.zeros(m)
    a_rows, a_cols, a_vals, k_rows, k_cols, k_vals = [], [], [], [], [], []
    for dy, dx, weight in NEIGHBOUR_WEIGHTS:
        ny, nx = y + dy, x + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        rows = np.flatnonzero(inside)
        nb = ny[inside] * w + nx[inside]
        diag[rows] += weight
        unknown = flat[nb]
        a_rows.append(rows[unknown])
        a_cols.append(var[nb[unknown]])
        a_vals.append(np.full(int(unknown.sum()), -weight))
        k_rows.append(rows[~unknown])
        k_cols.append(nb[~unknown])
        k_vals.append(np.full(int((~unknown).sum()), weight))
    a = sparse.coo_matrix(
        (np.concatenate(a_vals + [diag]),
         (np.concatenate(a_rows + [np.arange(m)]), np.concatenate(a_cols + [np.arange(m)]))),
        shape=(m, m)).tocsc()
    k = sparse.coo_matrix((np.concatenate(k_vals), (np.concatenate(k_rows),
                                                    np.concatenate(k_cols))),
                          shape=(m, h * w)).tocsr()
    return a, k, idx


def noisy_linear_impute(
    images: Tensor,
    removed: Tensor,
    noise: float = 0.01,
    seed: SeedType = 0,
    *,
    index_offset: int = 0,
) -> Tensor:
    r"""
    Noisy linear imputation of ROAD (Rong, Leemann et al. 2022).

    Every removed pixel takes the weighted mean of its 8 neighbours (direct neighbours weight
    1/6, diagonal ones 1/12; neighbours outside the image are dropped and the weights
    renormalised), where removed neighbours are themselves imputed: one sparse linear system
    per image, solved for all removed pixels and all channels at once. Gaussian noise of
    standard deviation ``noise`` is then added to the imputed values only.

    Args:

        images (Tensor): ``N x C x H x W`` images. Not modified.
        removed (Tensor): Boolean ``N x H x W`` (or ``N x 1 x H x W``) mask of the pixels to
                    impute (all channels). At least one pixel per image must be kept.
        noise (float, optional): Standard deviation of the added noise (the authors' 0.01).
                    Default: 0.01
        seed (int or sequence of int, optional): Seed of the noise; image ``i`` uses
                    ``numpy.random.default_rng([*seed, index_offset + i])``. Default: 0
        index_offset (int, optional): Index of the first image in the whole set. Default: 0

    Returns:
        Tensor like ``images`` with the removed pixels imputed.

    Examples::

        >>> import torch
        >>> from captum_prune.evaluation import noisy_linear_impute
        >>> image = torch.tensor([[[[1.0, 1.0, 1.0], [1.0, 9.0, 1.0], [1.0, 1.0, 1.0]]]])
        >>> removed = torch.zeros(1, 3, 3, dtype=torch.bool)
        >>> removed[0, 1, 1] = True
        >>> noisy_linear_impute(image, removed, noise=0.0)[0, 0, 1, 1].item()  # mean of 1s
        1.0
    """
    images = check_images(images, "images")
    if not isinstance(removed, Tensor):
        raise TypeError(f"removed must be a torch.Tensor, got {type(removed).__name__}")
    if removed.dim() == 4 and removed.shape[1] == 1:
        removed = removed[:, 0]
    if removed.shape != (images.shape[0],) + images.shape[-2:]:
        raise ValueError(f"removed of shape {tuple(removed.shape)} does not match images of "
                         f"shape {tuple(images.shape)}; expected N x H x W")
    if not isinstance(noise, (int, float)) or isinstance(noise, bool) or noise < 0:
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    from scipy.sparse.linalg import splu

    words = _seed_words(seed)
    masks = removed.detach().cpu().numpy().astype(bool)
    out = images.detach().clone()
    n, c, h, w = images.shape
    for i in range(n):
        if not masks[i].any():
            continue
        if masks[i].all():
            raise ValueError("noisy linear imputation needs at least one kept pixel per image")
        a, k, idx = _linear_system(masks[i])
        values = images[i].detach().reshape(c, h * w).double().cpu().numpy()
        solution = splu(a).solve(np.ascontiguousarray((k @ values.T)))  # m x C
        if noise > 0:
            rng = np.random.default_rng(words + [index_offset + i])
            solution = solution + noise * rng.standard_normal(solution.shape)
        flat = out[i].reshape(c, h * w)
        flat[:, torch.as_tensor(idx, device=flat.device)] = torch.as_tensor(
            solution.T, dtype=out.dtype, device=out.device)
    return out


def imputing_remover(noise: float, seed: SeedType) -> Remover:
    r"""
    The removal step of ROAD for :func:`removal_curves`: noisy linear imputation, the noise of
    example ``i`` at fraction index ``j`` seeded by ``(*seed, mode, j, i)`` (mode 0 = MoRF).
    """
    words = _seed_words(seed)

    def remove(x: Tensor, removed: Tensor, first: int, mode: str, j: int) -> Tensor:
        return noisy_linear_impute(x, removed, noise, words + [int(mode == "lerf"), j],
                                   index_offset=first)

    return remove


@dataclass
class RoadResult:
    r"""
    Outcome of :func:`road`.

    Attributes:
        fractions (list of float): Shares of pixels removed and imputed.
        probability (dict): ``mode -> N x F`` target probability on the imputed images.
        correct (dict): ``mode -> N x F`` whether the arg-max class still equals the target.
        target (Tensor): The class evaluated for each example.
        original_probability (Tensor): Target probability on the unmodified input.
        tie_break (str): Tie rule of the pixel ranking.
        tied_share (Tensor): ``N`` share of tied pixels per map.
        noise (float): Standard deviation of the imputation noise.
    """

    fractions: List[float]
    probability: Dict[str, Tensor]
    correct: Dict[str, Tensor]
    target: Tensor
    original_probability: Tensor
    tie_break: str
    tied_share: Tensor
    noise: float

    @property
    def modes(self) -> List[str]:
        return list(self.probability)

    def accuracy(self, mode: str) -> np.ndarray:
        r"""Share of examples whose arg-max still equals the target, per fraction."""
        return self.correct[mode].double().mean(dim=0).numpy()

    def per_example_auc(self, mode: str) -> np.ndarray:
        r"""
        ``N`` trapezoid areas under target probability vs. fraction, from the point
        ``(0, p_c(x))``. MoRF: lower is better; LeRF: higher is better.
        """
        return curve_auc(self.fractions, self.probability[mode], self.original_probability)

    def auc(self, mode: str) -> float:
        r"""Mean of :meth:`per_example_auc` (the area under the mean curve)."""
        return float(self.per_example_auc(mode).mean())

    def srg(self) -> Any:
        r"""
        :class:`~captum_prune.evaluation.SrgResult` of these curves (needs both modes): LeRF
        AUC − MoRF AUC per example, the removal being noisy linear imputation.
        """
        from captum_prune.evaluation.srg import SrgResult

        if set(self.modes) != {"lerf", "morf"}:
            raise ValueError("SRG needs both modes; run road(..., modes=('morf', 'lerf'))")
        return SrgResult(self.fractions, self.probability["lerf"], self.probability["morf"],
                         self.target, self.original_probability, self.tie_break,
                         self.tied_share, "noisy_linear")

    def ci(self, n_boot: int = DEFAULT_N_BOOT, level: float = 0.95,
           seed: int = 0) -> Dict[str, Any]:
        r"""
        Bootstrap CIs over examples per mode: ``{mode: {"probability": [per fraction],
        "accuracy": [per fraction], "auc": ...}}`` and ``"tied_share"``.
        """
        out: Dict[str, Any] = {
            mode: {
                "probability": bootstrap_ci(self.probability[mode], n_boot, level, seed),
                "accuracy": bootstrap_ci(self.correct[mode].double(), n_boot, level, seed),
                "auc": bootstrap_ci(self.per_example_auc(mode), n_boot, level, seed),
            }
            for mode in self.modes
        }
        out["tied_share"] = bootstrap_ci(self.tied_share, n_boot, level, seed)
        return out

    def to_dict(self, per_example: bool = False) -> Dict[str, Any]:
        r"""JSON-ready summary with CIs; ``per_example=True`` adds the ``N x F`` curves."""
        cis = self.ci()
        out: Dict[str, Any] = {
            "protocol": "road",
            "imputation": "noisy linear (8 neighbours, 1/6 direct, 1/12 diagonal)",
            "noise": self.noise,
            "ranking": "max over channels of |attribution|",
            "tie_break": self.tie_break,
            "tied_share": jsonable(self.tied_share.mean()),
            "n_examples": int(self.target.numel()),
            "fractions": jsonable(self.fractions),
            "ci": {"tied_share": cis["tied_share"].to_dict()},
        }
        for mode in self.modes:
            out[mode] = {
                "probability": summary(self.probability[mode].numpy()),
                "accuracy": jsonable(self.accuracy(mode)),
                "auc": jsonable(self.auc(mode)),
                "ci": {k: ci_dicts(v) for k, v in cis[mode].items()},
            }
            if per_example:
                out[mode]["per_example"] = jsonable(self.probability[mode])
        if per_example:
            out["target"] = jsonable(self.target)
            out["original_probability"] = jsonable(self.original_probability)
            out["tied_share_per_example"] = jsonable(self.tied_share)
        return out


def road(
    model: torch.nn.Module,
    inputs: Tensor,
    attributions: Any,
    target: TargetType = None,
    fractions: Sequence[float] = DEFAULT_ROAD_FRACTIONS,
    modes: Union[str, Sequence[str]] = ("morf", "lerf"),
    *,
    noise: float = 0.01,
    seed: SeedType = 0,
    tie_break: str = "random",
    batch_size: int = 64,
    attribute_kwargs: Optional[Dict[str, Any]] = None,
    apply_softmax: bool = True,
    progress: bool = False,
) -> RoadResult:
    r"""
    ROAD, RemOve And Debias (Rong, Leemann et al., ICML 2022): MoRF and LeRF with noisy linear
    imputation (:func:`noisy_linear_impute`) instead of a constant baseline, without
    retraining.

    For every fraction, the most (``"morf"``) or least (``"lerf"``) important pixels, ranked by
    :math:`\max_c |A_c|` with seeded random tie-breaking (:func:`rank_pixels`, one ordering
    per example, LeRF its reverse), are imputed and the target probability and whether the
    arg-max class still equals the target are recorded. A good map makes the MoRF curve fall
    fast (low MoRF AUC) and keeps the LeRF curve high. The model is only evaluated (under
    ``torch.no_grad``); put it in eval mode first.

    Args:

        model (nn.Module or callable): Maps ``N x C x H x W`` inputs to ``N x classes`` logits
                    (or probabilities with ``apply_softmax=False``).
        inputs (Tensor): Inputs of shape ``N x C x H x W``.
        attributions (Tensor, method or callable): Precomputed maps, or a method / callable
                    called batch by batch, as in :func:`pixel_perturbation`.
        target (int, sequence, Tensor or None, optional): Class per example; ``None`` uses the
                    predicted class (then "accuracy" is the share of predictions kept; pass the
                    labels for the accuracy of the paper). Default: ``None``
        fractions (sequence of float, optional): Increasing shares of pixels to impute, below
                    1. Default: ``(0.1, 0.2, ..., 0.9)`` (the authors')
        modes (str or sequence of str, optional): ``"morf"``, ``"lerf"`` or both.
                    Default: ``("morf", "lerf")``
        noise (float, optional): Imputation noise standard deviation. Default: 0.01
        seed (int or sequence of int, optional): Seed of the tie-break (as given) and of the
                    noise (``(*seed, mode, fraction index)`` per example). Default: 0
        tie_break (str, optional): ``"random"`` or ``"position"``, see :func:`rank_pixels`.
                    Default: ``"random"``
        batch_size (int, optional): Examples per forward pass. Default: 64
        attribute_kwargs (dict, optional): Extra keyword arguments for the method.
                    Default: ``None``
        apply_softmax (bool, optional): Apply a softmax to the model output. Default: ``True``
        progress (bool, optional): Show a tqdm progress bar. Default: ``False``

    Returns:
        :class:`RoadResult` with per-example curves per mode, accuracies, AUCs, CIs and
        :meth:`RoadResult.srg`.

    Examples::

        >>> import torch
        >>> from captum.attr import Saliency
        >>> from captum_prune.evaluation import road
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3)).eval()
        >>> images = torch.rand(4, 3, 8, 8)
        >>> result = road(model, images, Saliency(model), fractions=[0.2, 0.5])
        >>> result.probability["morf"].shape  # examples x fractions
        torch.Size([4, 2])
        >>> sorted(result.to_dict())[:4]
        ['ci', 'fractions', 'imputation', 'lerf']
    """
    curves = removal_curves(
        model, inputs, attributions, target, fractions, modes, imputing_remover(noise, seed),
        tie_break=tie_break, seed=seed, batch_size=batch_size,
        attribute_kwargs=attribute_kwargs, apply_softmax=apply_softmax, progress=progress,
        desc="ROAD", max_fraction_below_one=True,
    )
    return RoadResult(
        fractions=[float(f) for f in fractions],
        probability=curves.probability,
        correct=curves.correct,
        target=curves.target,
        original_probability=curves.original_probability,
        tie_break=tie_break,
        tied_share=curves.tied_share,
        noise=float(noise),
    )
