r"""Figures of the pathway analysis, for the docs page and the benchmark report.

Each function returns a :class:`matplotlib.figure.Figure` drawn without pyplot (so no global
state and no display is touched); save it with ``fig.savefig(path)``.

- :func:`linearity_figure`: first-order error and flipped units vs radius, one line per
  network (:class:`~captum_prune.evaluation.LocalLinearityResult`).
- :func:`sparsity_maps_figure`: the maps of a few examples at every sparsity of a
  :class:`~captum_prune.evaluation.SparsitySweepResult` (the paper's sweep figure).
- :func:`sparsity_curves_figure`: kept-class rate and relative softmax output change vs
  sparsity, with 95% bootstrap intervals.
"""
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

#: Errors below this are drawn at it on the log scale (a linear function's error is 0).
ERROR_FLOOR = 1e-16


def _label(sparsity: Any) -> str:
    return "auto" if sparsity == "auto" else f"{100 * sparsity:g}%"


def linearity_figure(result: Any, title: Optional[str] = None) -> Any:
    r"""
    Two panels against the radius (log-log): the per-example median first-order error (the
    median over examples, with a band from the 25th to the 75th percentile of examples) and
    the mean share of flipped ReLU units; one line per network, the tolerance dashed.

    Args:
        result (LocalLinearityResult): What :func:`~captum_prune.evaluation.local_linearity`
                    returned.
        title (str, optional): A line above the panels.

    Returns:
        matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    radii = np.asarray(result.radii, dtype=float)
    per_example = result.example_error().numpy()  # (K, N, R)
    flips = result.flip_share().numpy()
    fig = Figure(figsize=(10, 4))
    error_ax, flip_ax = fig.subplots(1, 2)
    for k, name in enumerate(result.networks):
        values = np.where(np.isnan(per_example[k]), np.nan,
                          np.maximum(per_example[k], ERROR_FLOOR))
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                low, mid, high = np.nanpercentile(values, [25, 50, 75], axis=0)
        style = "--" if result.sparsities[k] is None else "-"
        (line,) = error_ax.plot(radii, mid, style, marker="o", markersize=3, label=name)
        error_ax.fill_between(radii, low, high, color=line.get_color(), alpha=0.12,
                              linewidth=0)
        flip_ax.plot(radii, np.maximum(flips[k], ERROR_FLOOR), style, marker="o",
                     markersize=3, color=line.get_color(), label=name)
    error_ax.axhline(result.tolerance, color="grey", linestyle=":", linewidth=1,
                     label=f"tolerance {result.tolerance:g}")
    for ax in (error_ax, flip_ax):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("radius r = ||delta||_2")
        ax.grid(alpha=0.3, which="both")
    error_ax.set_ylabel("|F(x+d) - F(x) - grad F(x) . d| / |F(x+d) - F(x)|")
    error_ax.set_title("first-order error (median over examples)", fontsize=10)
    flip_ax.set_ylabel("share of ReLU units flipped")
    flip_ax.set_title("flipped units", fontsize=10)
    error_ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _heat(maps: Tensor) -> np.ndarray:
    """``N x C x H x W`` maps -> max over channels of |A|, each map scaled to its 99.5th
    percentile (the display scaling of the paper's figures)."""
    m = maps.detach().double().cpu()
    if m.dim() == 4:
        m = m.abs().amax(dim=1)
    else:
        m = m.abs()
    scale = torch.quantile(m.flatten(1), 0.995, dim=1).clamp_min(1e-12)
    return (m / scale.view(-1, 1, 1)).clamp(0, 1).numpy()


def sparsity_maps_figure(
    result: Any,
    images: Optional[np.ndarray] = None,
    examples: Optional[Sequence[int]] = None,
    cmap: str = "inferno",
    title: Optional[str] = None,
) -> Any:
    r"""
    The paper-style sparsity sweep: one row per example (its image first, if given), one
    column per sparsity, showing :math:`\max_c |A_c|` scaled per map.

    Args:
        result (SparsitySweepResult): With its maps (``keep_maps=True``).
        images (ndarray, optional): Display images ``N x H x W x 3`` (or ``N x H x W``) in
                    [0, 1], of the same examples.
        examples (sequence of int, optional): Which examples. Default: the first four.
        cmap (str, optional): Colour map. Default: ``"inferno"``
        title (str, optional): A line above the grid.

    Returns:
        matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    if not result.maps:
        raise ValueError("result: has no maps; run sparsity_sweep(..., keep_maps=True)")
    n_all = result.maps[0].shape[0]
    rows = list(range(min(4, n_all))) if examples is None else list(examples)
    heats = [_heat(m[rows]) for m in result.maps]
    first = 1 if images is not None else 0
    cols = first + len(heats)
    fig = Figure(figsize=(1.3 * cols + 0.2, 1.3 * len(rows) + 0.6))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for i, example in enumerate(rows):
        if images is not None:
            axes[i, 0].imshow(images[example], cmap=None if images.ndim == 4 else "gray",
                              interpolation="nearest")
        for j, heat in enumerate(heats):
            axes[i, first + j].imshow(heat[i], cmap=cmap, vmin=0, vmax=1,
                                      interpolation="nearest")
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    if images is not None:
        axes[0, 0].set_title("image", fontsize=8)
    for j, sparsity in enumerate(result.sparsities):
        heading = _label(sparsity)
        if sparsity == "auto" and result.chosen is not None:
            chosen = result.chosen[rows, j]  # (N, S): the rows shown, this entry
            heading += f"\n({100 * float(chosen.mean()):.0f}% mean)"
        axes[0, first + j].set_title(heading, fontsize=8)
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def sparsity_curves_figure(result: Any, title: Optional[str] = None) -> Any:
    r"""
    Two panels against the sparsity: the kept-class rate (the pruned network still predicts
    the unpruned network's class) and the mean relative softmax change
    :math:`|p_c^{pruned} - p_c| / p_c`, each with its 95% bootstrap interval over examples.
    ``"auto"`` entries are drawn as one point at their mean chosen sparsity.

    Args:
        result (SparsitySweepResult): What
                    :func:`~captum_prune.evaluation.sparsity_sweep` returned.
        title (str, optional): A line above the panels.

    Returns:
        matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8))
    kept_ax, change_ax = fig.subplots(1, 2)
    fixed = [j for j, s in enumerate(result.sparsities) if s != "auto"]
    auto = [j for j, s in enumerate(result.sparsities) if s == "auto"]
    panels = ((kept_ax, result.kept_class_ci(), "kept-class rate"),
              (change_ax, result.output_change_ci(), "relative softmax change"))
    for ax, cis, label in panels:
        x = np.asarray([100 * result.sparsities[j] for j in fixed], dtype=float)
        mean = np.asarray([cis[j].mean for j in fixed], dtype=float)
        low = np.asarray([cis[j].low for j in fixed], dtype=float)
        high = np.asarray([cis[j].high for j in fixed], dtype=float)
        if fixed:
            ax.plot(x, mean, "-", marker="o", markersize=3, label="fixed sparsity")
            ax.fill_between(x, low, high, alpha=0.15, linewidth=0)
        for j in auto:
            at = 100 * float(result.chosen[:, j].mean())
            ax.errorbar([at], [cis[j].mean], yerr=[[cis[j].mean - cis[j].low],
                                                   [cis[j].high - cis[j].mean]],
                        fmt="s", color="C3", markersize=5, capsize=3,
                        label=f"auto (output_change {result.output_change:g})")
        ax.set_xlabel("sparsity (% of neurons pruned)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if auto and result.output_change is not None:
        change_ax.axhline(result.output_change, color="grey", linestyle=":", linewidth=1)
    kept_ax.set_ylim(-0.02, 1.02)
    kept_ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
