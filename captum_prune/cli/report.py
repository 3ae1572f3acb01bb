r"""
Writing what ``captum-prune demo`` and ``captum-prune benchmark`` produce: the grid of
attribution maps, curve plots, Markdown tables and a self-contained HTML report (from the
template ``templates/report.html``). The benchmark's tables and plots are read from its
:class:`~captum_prune.cli.results.BenchmarkResults`; files are written atomically
(:func:`captum_prune._shared.atomic_write`).

Figures are drawn on :class:`matplotlib.figure.Figure` objects directly (no pyplot), so no
display or GUI backend is needed.
"""
import base64
import html
import json
import math
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from captum_prune._shared import PathLike, atomic_write, is_int
from captum_prune.cli.results import SANITY_PASS_BELOW, BenchmarkResults

__all__ = [
    "write_json",
    "save_figure",
    "map_grid_figure",
    "curves_figure",
    "bars_figure",
    "markdown_table",
    "write_html_report",
    "format_number",
    "benchmark_tables",
    "comparison_tables",
    "ci_curves_figure",
    "scores_figure",
    "format_ci",
    "write_benchmark_figures",
    "write_benchmark_markdown",
    "write_benchmark_html",
    "summary_text",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_json(path: PathLike, obj: Any) -> Path:
    r"""Atomically writes ``obj`` as indented JSON (NaN is not allowed: pass None)."""
    return atomic_write(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def save_figure(fig: Any, path: PathLike, dpi: int = 110) -> Path:
    r"""Renders a matplotlib figure to PNG and writes it atomically."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return atomic_write(path, buffer.getvalue())


def _heat(maps: Tensor, quantile: float = 0.995) -> np.ndarray:
    r"""``N x H x W`` maps -> values in [0, 1], each scaled by its own high quantile."""
    m = maps.detach().double().cpu()
    flat = m.flatten(1)
    scale = torch.quantile(flat, quantile, dim=1).clamp_min(1e-12)
    return (m / scale.view(-1, 1, 1)).clamp(0, 1).numpy()


def map_grid_figure(
    images: np.ndarray,
    maps: Mapping[str, Tensor],
    boxes: Optional[Tensor] = None,
    row_labels: Optional[Sequence[str]] = None,
    column_notes: Optional[Mapping[str, str]] = None,
    cmap: str = "inferno",
    title: Optional[str] = None,
) -> Any:
    r"""
    A grid of attribution maps: one row per image, the image first, then one column per
    method showing :math:`\max_c |A_c|` scaled per map to its 99.5th percentile.

    Args:
        images (ndarray): Display images ``N x H x W x 3`` (or ``N x H x W``) in [0, 1].
        maps (mapping): ``{method name: N x C x H x W or N x H x W tensor}``.
        boxes (Tensor, optional): Ground-truth boxes ``N x 4`` as half-open
                    ``(x0, y0, x1, y1)``, drawn as a rectangle on every panel.
        row_labels (sequence of str, optional): One label per row, left of the image.
        column_notes (mapping, optional): A second title line per method (e.g. a score).
        cmap (str, optional): Matplotlib colour map of the heat maps. Default: ``"inferno"``
        title (str, optional): A line above the grid.

    Returns:
        matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from captum_prune.evaluation import reduce_channels

    n = images.shape[0]
    names = list(maps)
    cols = len(names) + 1
    # Square panels about 1.4 in wide; the margins below are set to match.
    width, height = 1.5 * cols + 0.3, 1.5 * n + 0.8
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(n, cols, squeeze=False)
    heats = {name: _heat(reduce_channels(maps[name], "max_abs")) for name in names}
    for i in range(n):
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.imshow(images[i], cmap=None if images.ndim == 4 else "gray",
                          interpolation="nearest")
                if row_labels is not None:
                    ax.set_ylabel(row_labels[i], fontsize=9)
            else:
                ax.imshow(heats[names[j - 1]][i], cmap=cmap, vmin=0, vmax=1,
                          interpolation="nearest")
            if boxes is not None:
                x0, y0, x1, y1 = [float(v) for v in boxes[i]]
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                       edgecolor="#00e5ff", linewidth=1.2, linestyle="--"))
            if i == 0:
                heading = "image" if j == 0 else names[j - 1].replace("[", "\n[")
                if j > 0 and column_notes and names[j - 1] in column_notes:
                    heading += "\n" + column_notes[names[j - 1]]
                ax.set_title(heading, fontsize=8)
    # Room above the first row for two- or three-line column titles.
    fig.subplots_adjust(wspace=0.04, hspace=0.04, top=1 - 0.75 / height, bottom=0.05 / height,
                        left=0.3 / width, right=1 - 0.02 / width)
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.08 / height, va="top")
    return fig


def curves_figure(
    curves: Mapping[str, Tuple[Sequence[float], Sequence[float], Optional[Sequence[float]]]],
    title: str,
    xlabel: str,
    ylabel: str,
    xticklabels: Optional[Sequence[str]] = None,
) -> Any:
    r"""
    One line per method, with a shaded band of plus/minus one standard deviation.

    Args:
        curves (mapping): ``{method: (x, mean, std or None)}``.
        title, xlabel, ylabel (str): Labels.
        xticklabels (sequence of str, optional): Labels for integer ``x`` positions
                    (e.g. the stages of the sanity check).

    Returns:
        matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5 if xticklabels is None else 9.5, 4.2))
    ax = fig.subplots()
    for name, (x, mean, std) in curves.items():
        x = np.asarray(x, dtype=float)
        y = np.asarray([np.nan if v is None else v for v in mean], dtype=float)
        style = "-" if name.startswith("PrunedGradient") else "--"
        width = 2.2 if name.startswith("PrunedGradient") else 1.3
        (line,) = ax.plot(x, y, style, marker="o", markersize=3, linewidth=width, label=name)
        if std is not None:
            s = np.asarray([np.nan if v is None else v for v in std], dtype=float)
            ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.06, linewidth=0)
    if xticklabels is not None:
        ax.set_xticks(range(len(xticklabels)))
        ax.set_xticklabels(xticklabels, rotation=60, ha="right", fontsize=9)
    ax.set_title(title, fontsize=12)
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def format_number(value: Any, digits: int = 3) -> str:
    r"""A float with ``digits`` decimals; ``"n/a"`` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if is_int(value) or isinstance(value, np.integer):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    r"""A GitHub-flavoured Markdown table; floats get three decimals."""
    cells = [[c if isinstance(c, str) else format_number(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def _escape_all(template: Template, **values: Any) -> str:
    return template.substitute({k: html.escape(str(v)) for k, v in values.items()})


_TABLE = Template('<div class="table-wrap"><table><thead><tr>$head</tr></thead>'
                  "<tbody>$body</tbody></table></div>")
_FIGURE = Template('<figure><img src="$src" alt="$name" data-file="$name">'
                   "<figcaption>$caption</figcaption></figure>")


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cells(tag: str, values: Sequence[Any]) -> str:
        return "".join(f"<{tag}>{html.escape(v if isinstance(v, str) else format_number(v))}"
                       f"</{tag}>" for v in values)

    return _TABLE.substitute(head=cells("th", headers),
                             body="".join(f"<tr>{cells('td', row)}</tr>" for row in rows))


def _data_uri(png_path: Path) -> str:
    blob = png_path.read_bytes()
    if not blob.startswith(PNG_SIGNATURE):
        raise ValueError(f"{png_path} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(blob).decode("ascii")


def _page_template() -> Template:
    text = resources.files("captum_prune.cli").joinpath("templates/report.html").read_text("utf-8")
    return Template(text)


def write_html_report(
    path: PathLike,
    title: str,
    sections: Sequence[Dict[str, Any]],
    intro: str = "",
) -> Path:
    r"""
    Writes a self-contained HTML page (the template ``templates/report.html`` of this package):
    every figure is embedded as a base64 ``data:`` URI, so the file opens anywhere without its
    folder.

    Args:
        path (str or PathLike): The ``.html`` file to write (atomically).
        title (str): Page title.
        sections (sequence of dict): Each with ``"title"``, and optionally ``"text"``
                    (plain text, escaped), ``"table"`` (``(headers, rows)``), ``"figures"``
                    (list of ``(png path, caption)``) and ``"pre"`` (preformatted text).
        intro (str, optional): A paragraph under the title. Default: ``""``

    Returns:
        Path: ``path``.
    """
    parts = []
    for section in sections:
        parts.append(f"<h2>{html.escape(section['title'])}</h2>")
        if section.get("text"):
            parts.append(f"<p>{html.escape(section['text'])}</p>")
        if section.get("table"):
            parts.append(_html_table(*section["table"]))
        for png, caption in section.get("figures", ()):
            png = Path(png)
            parts.append(_escape_all(_FIGURE, src=_data_uri(png), name=png.name, caption=caption))
        if section.get("pre"):
            parts.append(f"<pre>{html.escape(section['pre'])}</pre>")
    page = _page_template().substitute(
        title=html.escape(title),
        intro=f"<p>{html.escape(intro)}</p>" if intro else "",
        sections="\n".join(parts),
    )
    return atomic_write(path, page)


# --------------------------------------------------------------------------- benchmark output


def bars_figure(values: Mapping[str, Mapping[str, Tuple[float, float]]], title: str) -> Any:
    r"""
    Grouped bars: ``{metric: {method: (mean, error)}}``, one group per method; the error is a
    std (symmetric) or a ``(low, high)`` confidence interval.

    Returns:
        matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    metrics = list(values)
    methods = list(next(iter(values.values()))) if metrics else []
    fig = Figure(figsize=(max(6.0, 0.9 * len(methods) + 2), 4.2))
    ax = fig.subplots()
    width = 0.8 / max(len(metrics), 1)
    x = np.arange(len(methods))
    for k, metric in enumerate(metrics):
        mean = [np.nan if values[metric][m][0] is None else values[metric][m][0] for m in methods]
        errors = []
        for m, centre in zip(methods, mean):
            error = values[metric][m][1]
            if isinstance(error, (tuple, list)):  # a (low, high) CI
                errors.append((centre - error[0], error[1] - centre))
            else:
                errors.append((0.0 if error is None else error,) * 2)
        yerr = np.array(errors, dtype=float).T if errors else None
        ax.bar(x + (k - (len(metrics) - 1) / 2) * width, mean, width, yerr=yerr, capsize=2,
               label=metric)
    ax.set_xticks(x)
    ax.set_xticklabels([m.replace("[", "\n[") for m in methods], rotation=35, ha="right",
                       fontsize=9)
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=10)
    return fig


def _pm(mean: Any, std: Any, digits: int = 3) -> str:
    if mean is None:
        return "n/a"
    return format_number(mean, digits) + ("" if std is None else f" ± {format_number(std, digits)}")


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def format_ci(interval: Any, digits: int = 3) -> str:
    r"""``"mean [low, high]"`` of an :class:`~captum_prune.cli.results.Interval` (``"n/a"``
    where undefined)."""
    if interval is None or interval.mean is None:
        return "n/a"
    text = format_number(interval.mean, digits)
    if interval.low is None or interval.high is None:
        return text + " [CI n/a]"
    return f"{text} [{format_number(interval.low, digits)}, {format_number(interval.high, digits)}]"


def _span(fractions: Optional[Sequence[float]], default_end: float) -> str:
    r"""``"0-20%"``: the range an AUC is taken over, from the fractions the run used."""
    end = max(fractions) if fractions else default_end
    return f"0-{100 * end:g}%"


def _signed_ci(interval: Any, digits: int = 3) -> str:
    if interval is None or interval.mean is None:
        return "n/a"
    if interval.low is None or interval.high is None:
        return f"{interval.mean:+.{digits}g} [CI n/a]"
    return f"{interval.mean:+.{digits}g} [{interval.low:+.{digits}g}, {interval.high:+.{digits}g}]"


def _score_cell(results: BenchmarkResults, protocol: str, name: str, digits: int = 3) -> Any:
    comparison = results.comparisons.get(protocol)
    if comparison is None or name not in comparison.methods:
        return None
    return format_ci(comparison.methods[name].score, digits)


def _curve_cell(results: BenchmarkResults, protocol: str, name: str, j: int, mean: Any,
                std: Any) -> str:
    comparison = results.comparisons.get(protocol)
    if comparison is not None and name in comparison.methods:
        curve = comparison.methods[name].curve
        if j < len(curve):
            return format_ci(curve[j])
    return _pm(mean, std)


#: Short names of the verdicts, from PrunedGradient's side.
_VERDICT_TEXT = {"wins": "PG better", "ties": "tie", "loses": "PG worse",
                 "not a result": "not a result"}


def comparison_tables(results: BenchmarkResults) -> List[Dict[str, Any]]:
    r"""
    One table per protocol of ``results.comparisons``: every method's score with its 95%
    bootstrap CI, the paired CI of its difference to PrunedGradient, PrunedGradient's verdict
    and the tied share; with several trained models, per model the paired CI and the spread of
    the score between models. The text is the protocol's verdict paragraph.
    """
    tables = []
    for key, comparison in results.comparisons.items():
        several = comparison.n_models > 1
        seeds = [m.get("model_seed") for m in results.model.get("models", [])]
        seeds = [seeds[k] if k < len(seeds) else f"#{k}" for k in range(comparison.n_models)]
        headers = ["method", f"score [95% CI]{' (first model)' if several else ''}"]
        if several:
            headers += [f"Δ vs {comparison.reference} [paired CI], model seed {s}"
                        for s in seeds]
            headers += ["mean over models", "between-model std (min–max)",
                        "within-model CI half-width"]
        else:
            headers.append(f"Δ vs {comparison.reference} [paired 95% CI]")
        headers.append(f"{comparison.reference}'s verdict")
        has_ties = any(m.tied_share is not None for m in comparison.methods.values())
        if has_ties:
            headers.append("tied share")
        if comparison.pairs:
            headers.append("not separated from (paired CI contains 0)")
        rows = []
        for name, m in comparison.methods.items():
            row: List[Any] = [name, format_ci(m.score, 4)]
            if several:
                row += ([_signed_ci(p) for p in m.paired] if m.paired
                        else ["(reference)"] * comparison.n_models)
                spread = (m.models or {}).get("score") or {}
                row += [format_number(spread.get("mean")),
                        f"{format_number(spread.get('between_std'))} "
                        f"({format_number(spread.get('between_min'))}–"
                        f"{format_number(spread.get('between_max'))})",
                        format_number(spread.get("within_half_width"))]
            else:
                row.append(_signed_ci(m.paired[0]) if m.paired else "(reference)")
            row.append("(reference)" if m.verdict is None else _VERDICT_TEXT[m.verdict])
            if has_ties:
                row.append("n/a" if m.tied_share is None else f"{100 * m.tied_share:.1f}%")
            if comparison.pairs:
                close = [other for other in comparison.methods
                         if other != name and comparison.separated(name, other) is False]
                row.append(", ".join(close) or "--")
            rows.append(row)
        figure = f"{key}.png" if key in _CURVE_FILES else None
        tables.append({
            "title": f"Verdict: {comparison.title}",
            "text": comparison.summary + f" Score: {comparison.score_name} ({comparison.better} "
                    "is better); mean over examples with its 95% percentile-bootstrap CI; Δ is "
                    f"the method's score minus {comparison.reference}'s on the same examples, "
                    "with its paired bootstrap CI; \"tie\" where that CI contains 0."
                    + (f" {comparison.n_models} trained models: a verdict needs every model's "
                       "paired CI to exclude 0 on the same side." if several else "")
                    + (" Tied share: the mean share of each map's pixels that tie with another "
                       "(ordered by a seeded random draw)." if has_ties else "")
                    + (" The last column lists, for every method, the methods it is not "
                       "separated from: the paired CI of their difference contains 0 (on at "
                       "least one model)." if comparison.pairs else ""),
            "headers": headers, "rows": rows,
            "figures": [_CURVE_FILES[key]] if figure else [],
            "protocol": key,
        })
    skipped = results.config.get("skipped") or {}
    for key, why in skipped.items():
        tables.append({"title": f"Verdict: {key}", "text": f"Not run: {why}.", "headers": [],
                       "rows": [], "figures": []})
    return tables


#: Protocols with curves -> the plot file that shows them with CI bands.
_CURVE_FILES = {"lerf": "lerf.png", "morf": "morf.png", "road_morf": "road_morf.png",
                "road_lerf": "road_lerf.png", "smprt": "smprt.png", "roar": "roar.png",
                "sanity": "sanity_spearman_abs.png"}


def benchmark_tables(results: BenchmarkResults) -> List[Dict[str, Any]]:
    r"""
    The tables of a benchmark's results, shared by the Markdown and HTML writers: a list of
    ``{"title", "text", "headers", "rows", "figures"}``.
    """
    names = results.methods
    tables: List[Dict[str, Any]] = []
    sanity = results.sanity
    perturbation = results.pixel_perturbation
    roar = results.roar
    local = results.localisation
    seconds = results.map_seconds_per_image
    boxes = local is not None and local.skipped is None

    summary_rows = []
    for name in names:
        row: List[Any] = [name]
        if perturbation:
            row += [_score_cell(results, m, name, 4)
                    or format_number(perturbation.curves(m)[name].auc, 4)
                    for m in ("lerf", "morf")]
        if roar:
            row.append("not a result (see ROAR)" if roar.not_meaningful
                       else _score_cell(results, "roar", name) or roar.methods[name].auc)
        if sanity:
            s = sanity.methods[name]
            verdict = "pass" if s.passed else "FAIL"
            constant = _constant_note(s, -1)
            row.append(f"{format_number(s.final_spearman_abs)} ({verdict}"
                       + (f"; {constant}" if constant else "") + ")")
            row.append(format_number(s.mean_spearman_abs_randomised))
        if boxes:
            m = local.methods[name]
            row += [_score_cell(results, "mass_in_box", name) or m.mass_in_box.mean,
                    _score_cell(results, "pointing_game", name) or m.pointing_game.mean]
        for key in ("road_morf", "road_lerf", "srg", "grid_pointing", "emprt", "smprt"):
            if key in results.comparisons:
                row.append(_score_cell(results, key, name) or "n/a")
        row.append(f"{1000 * seconds.get(name, float('nan')):.1f}")
        summary_rows.append(row)
    headers = ["method"]
    if perturbation:
        headers += ["LeRF AUC (lower better)", "MoRF AUC (higher better)"]
    if roar:
        headers.append("ROAR AUC (lower better)")
    if sanity:
        headers += ["sanity: Spearman |map| fully randomised",
                    "sanity: mean Spearman |map| over stages"]
    if boxes:
        headers += ["mass in box", "pointing game"]
    for key, label in (("road_morf", "ROAD MoRF AUC (lower better)"),
                       ("road_lerf", "ROAD LeRF AUC (higher better)"),
                       ("srg", "SRG (higher better)"),
                       ("grid_pointing", "grid pointing (higher better)"),
                       ("emprt", "eMPRT entropy rise (higher better)"),
                       ("smprt", "sMPRT Spearman (lower better)")):
        if key in results.comparisons:
            headers.append(label)
    headers.append("ms / image")
    pass_below = sanity.pass_below if sanity else SANITY_PASS_BELOW
    tables.append({"title": "Summary", "headers": headers, "rows": summary_rows,
                   "figures": ["maps.png"],
                   "text": "AUCs are trapezoids in fraction units (LeRF/MoRF over "
                           f"{_span(results.config.get('lerf_fractions'), 0.1)} of the pixels, "
                           f"ROAR over {_span(results.config.get('roar_fractions'), 0.9)}). "
                           "A method passes the sanity check when, with "
                           "every block randomised, the mean Spearman correlation of its |map| "
                           f"with the trained model's map is below {pass_below}; the mean over "
                           "all randomisation stages shows how early the maps react (lower is "
                           "better). A map that became constant has no ranks: it changed with "
                           "the model, and is counted as a correlation of 0."
                           + (" Every score is the mean with its 95% bootstrap CI over examples "
                              "(over test images for ROAR, over grids for the grid pointing "
                              "game); the Verdict sections compare each method with "
                              "PrunedGradient by paired CI." if results.comparisons else "")
                           + (f" ROAR is not a result in this run: {roar.not_meaningful}."
                              if roar and roar.not_meaningful else "")})

    if perturbation:
        for mode, text in (("lerf", "least relevant first: lower is better"),
                           ("morf", "most relevant first: higher is better")):
            curves = perturbation.curves(mode)
            rows = [[name, _score_cell(results, mode, name, 4)
                     or format_number(curves[name].auc, 4)]
                    + [_curve_cell(results, mode, name, j, m, s)
                       for j, (m, s) in enumerate(zip(curves[name].mean, curves[name].std))]
                    for name in names]
            tables.append({
                "title": f"Pixel perturbation, {mode.upper()}",
                "text": f"Absolute fractional change of the target's softmax probability after "
                        f"removing pixels ({text}); "
                        + ("mean [95% bootstrap CI]" if mode in results.comparisons
                           else "mean ± std") + f" over "
                        f"{curves[names[0]].n_examples} test images; AUC per image, then "
                        "averaged.",
                "headers": ["method", "AUC"] + [_percent(f) for f in perturbation.fractions],
                "rows": rows, "figures": [f"{mode}.png"],
            })
    if roar:
        rows = [[name, _score_cell(results, "roar", name) or roar.methods[name].auc]
                + [_curve_cell(results, "roar", name, j, m, s) for j, (m, s) in
                   enumerate(zip(roar.methods[name].mean, roar.methods[name].std))]
                for name in names]
        warning = (f"NOT A RESULT: {roar.not_meaningful}, so the accuracy drops below say "
                   "nothing about the methods. " if roar.not_meaningful else "")
        tables.append({
            "title": "ROAR (remove and retrain)"
                     + (": not a result in this run" if roar.not_meaningful else ""),
            "text": warning
                    + "Test accuracy (a fraction, as in the plot) after removing the top pixels "
                    "and retraining from scratch; "
                    + ("mean [95% bootstrap CI over test images, correctness averaged over "
                       "the seeds]" if "roar" in results.comparisons else "mean ± std")
                    + f" over seeds {roar.seeds}, "
                    f"{roar.epochs} epochs on "
                    f"{roar.n_train} train images, {roar.n_test} test images"
                    + (f"; retrained model: {roar.retrained_model}"
                       if roar.retrained_model else "")
                    + ". Lower is better.",
            "headers": ["method", "AUC"] + [_percent(f) for f in roar.fractions],
            "rows": rows, "figures": ["roar.png"],
        })
    if sanity:
        rows = [[name] + [_sanity_ci_cell(results, sanity.methods[name], name, i)
                          for i in range(len(sanity.stages))]
                + ["pass" if sanity.methods[name].passed else "FAIL"] for name in names]
        tables.append({
            "title": "Sanity check (cascading randomisation)",
            "text": "Mean Spearman rank correlation of |map| with the trained model's map after "
                    "randomising the blocks cumulatively from the output; lower means the map "
                    "depends on the model. \"k/n const.\": k of the n maps became constant "
                    "(no ranks: the map changed with the model) and count as 0 in the mean.",
            "headers": ["method"] + sanity.stages + ["outcome"], "rows": rows,
            "figures": ["sanity_spearman_abs.png", "sanity_ssim.png"],
        })
    if boxes:
        rows = [[name, _score_cell(results, "mass_in_box", name)
                 or _pm(local.methods[name].mass_in_box.mean,
                        local.methods[name].mass_in_box.std),
                 _score_cell(results, "pointing_game", name)
                 or local.methods[name].pointing_game.mean] for name in names]
        tables.append({
            "title": "Localisation", "headers": ["method", "positive mass in box", "pointing game"],
            "text": "Share of the positive attribution mass inside the ground-truth box, and the "
                    "pointing-game hit rate.",
            "rows": rows, "figures": ["localisation.png"],
        })
    elif local is not None:
        tables.append({"title": "Localisation", "text": f"Skipped: {local.skipped}.",
                       "headers": [], "rows": [], "figures": []})
    pathway = results.pathway
    if pathway:
        rows = [[pair, _pm(v.mean, v.std), _stat_ci(v)] for pair, v in pathway.jaccard.items()]
        rows += [[f"dead share, {c}", _pm(v.mean, v.std), _stat_ci(v)]
                 for c, v in pathway.dead_fraction.items()]
        rows += [[f"pruned net keeps the class, {c}", _pm(v.mean, v.std), _stat_ci(v)]
                 for c, v in pathway.target_kept.items()]
        tables.append({
            "title": "Pathway analysis",
            "text": f"PrunedGradient pathways at sparsity {pathway.sparsity:g} on "
                    f"{pathway.n_examples} test images: Jaccard overlap between criteria, "
                    f"share of kept neurons whose activation is zero, and how often the pruned "
                    f"network still predicts the class.",
            "headers": ["quantity", "mean ± std", "95% CI of the mean"], "rows": rows,
            "figures": [],
        })
    sweep = results.sweep
    if sweep:
        rows = [[str(entry) if isinstance(entry, str) else f"{100 * entry:g}%",
                 format_ci(kept), format_ci(change), format_number(chosen),
                 format_number(kept_fraction)]
                for entry, kept, change, chosen, kept_fraction in zip(
                    sweep.sparsities, sweep.kept_class, sweep.output_change,
                    sweep.chosen_sparsity, sweep.kept_fraction)]
        tables.append({
            "title": "Sparsity sweep",
            "text": f"PrunedGradient (taylor) at the paper's sparsities and at sparsity='auto' "
                    f"(per example, the largest sparsity that keeps the target's probability "
                    f"within 15%) on {sweep.n_examples} test images: how often the pruned "
                    "network keeps the unpruned network's class, and the mean relative change "
                    "|p_pruned - p| / p of the target's probability, each with its 95% "
                    "bootstrap CI; the mean sparsity used and the share of neurons kept.",
            "headers": ["sparsity", "kept class [95% CI]", "output change [95% CI]",
                        "mean sparsity used", "neurons kept"],
            "rows": rows, "figures": ["sweep_maps.png", "sweep_curves.png"],
        })
    linearity = results.linearity
    if linearity:
        rows = [[network] + [format_ci(c) for c in cis]
                + [format_ci(linearity.stable_radius[network])]
                for network, cis in linearity.networks.items()]
        tables.append({
            "title": "Local linearity",
            "text": "Mean relative error of the first-order prediction F(x) + grad F(x)·d "
                    "against F(x + d) over random directions d of L2 norm r (per example the "
                    "median over 8 directions), with its 95% bootstrap CI, for the full network "
                    "and for each pathway with its masks fixed; the stable radius is the largest "
                    f"r with every error below {linearity.tolerance:g}. {linearity.n_examples} "
                    "test images, in float64.",
            "headers": ["network"] + [f"r = {r:g}" for r in linearity.radii]
                       + ["stable radius [95% CI]"],
            "rows": rows, "figures": ["linearity.png"],
        })
    tables += comparison_tables(results)
    if results.comparisons:
        tables.append({"title": "All scores with 95% CIs", "headers": [], "rows": [],
                       "text": "Every protocol's score per method, with its 95% bootstrap CI.",
                       "figures": ["scores.png"]})
    return tables


def _stat_ci(stat: Any) -> str:
    if stat.low is None or stat.high is None:
        return "n/a"
    return f"[{format_number(stat.low)}, {format_number(stat.high)}]"


def _sanity_values(curves: Any) -> List[Any]:
    counted = curves.record.get("spearman_abs_constant_as_zero")
    return list(counted) if counted is not None else list(curves.spearman_abs["mean"])


def _constant_note(curves: Any, stage: int) -> str:
    constant = curves.n_constant[stage] if curves.n_constant else 0
    return f"{constant}/{curves.n_examples} const." if constant else ""


def _sanity_cell(curves: Any, stage: int) -> str:
    value = format_number(_sanity_values(curves)[stage], 2)
    note = _constant_note(curves, stage)
    return f"{value} ({note})" if note else value


def _sanity_ci_cell(results: BenchmarkResults, curves: Any, name: str, stage: int) -> str:
    comparison = results.comparisons.get("sanity")
    if comparison is None or name not in comparison.methods:
        return _sanity_cell(curves, stage)
    curve = comparison.methods[name].curve
    if stage >= len(curve):
        return _sanity_cell(curves, stage)
    note = _constant_note(curves, stage)
    return format_ci(curve[stage], 2) + (f" ({note})" if note else "")


def ci_curves_figure(
    curves: Mapping[str, Tuple[Sequence[Any], Sequence[Any]]],
    title: str, xlabel: str, ylabel: str, xticklabels: Optional[Sequence[str]] = None,
) -> Any:
    r"""
    One line per method with its 95% CI as a shaded band: ``{method: (x, intervals)}``, each
    interval an :class:`~captum_prune.cli.results.Interval` (mean, low, high).

    Returns:
        matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5 if xticklabels is None else 9.5, 4.2))
    ax = fig.subplots()
    for name, (x, intervals) in curves.items():
        x = np.asarray(x, dtype=float)

        def values(attr: str, intervals: Sequence[Any] = intervals) -> np.ndarray:
            return np.asarray([np.nan if getattr(i, attr) is None else getattr(i, attr)
                               for i in intervals], dtype=float)

        reference = name.startswith("PrunedGradient")
        control = name == "Random"
        (line,) = ax.plot(x, values("mean"), "-" if reference else (":" if control else "--"),
                          marker="o", markersize=3, linewidth=2.2 if reference else 1.3,
                          label=name, color="0.35" if control else None)
        ax.fill_between(x, values("low"), values("high"), color=line.get_color(), alpha=0.12,
                        linewidth=0)
    if xticklabels is not None:
        ax.set_xticks(range(len(xticklabels)))
        ax.set_xticklabels(xticklabels, rotation=60, ha="right", fontsize=9)
    ax.set_title(title, fontsize=12)
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel + " (band: 95% CI)", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def scores_figure(results: BenchmarkResults) -> Any:
    r"""Every protocol's score per method with its 95% CI (one panel per protocol)."""
    from matplotlib.figure import Figure

    comparisons = list(results.comparisons.values())
    cols = min(4, max(1, len(comparisons)))
    rows = int(math.ceil(len(comparisons) / cols))
    names = results.methods
    fig = Figure(figsize=(4.2 * cols, 0.28 * len(names) * rows + 1.2 * rows + 0.5))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, comparison in zip(axes, comparisons):
        y = np.arange(len(names))[::-1]
        for yi, name in zip(y, names):
            m = comparison.methods.get(name)
            if m is None or m.score.mean is None:
                continue
            low = m.score.low if m.score.low is not None else m.score.mean
            high = m.score.high if m.score.high is not None else m.score.mean
            colour = {"wins": "tab:green", "loses": "tab:red"}.get(m.verdict or "", "tab:gray")
            if m.verdict is None:
                colour = "tab:blue"
            ax.errorbar([m.score.mean], [yi], xerr=[[m.score.mean - low], [high - m.score.mean]],
                        fmt="o", color=colour, markersize=4, capsize=2)
        ax.set_yticks(y)
        ax.set_yticklabels(names, fontsize=7)
        ax.set_title(f"{comparison.title}\n({comparison.better} is better)", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(comparisons):]:
        ax.set_visible(False)
    fig.suptitle("Scores with 95% CIs (blue: PrunedGradient; green / red: PrunedGradient better "
                 "/ worse by paired CI; grey: tie)", fontsize=10)
    fig.tight_layout()
    return fig


def run_description(results: BenchmarkResults) -> str:
    r"""One paragraph on what was run: preset, model and its test accuracy, data, and for a
    smoke run, that its numbers are not results."""
    config, model = results.config, results.model
    accuracy = model.get("test_accuracy")
    where = (f" on {model['test_accuracy_images']} test images"
             if model.get("test_accuracy_images") else "")
    text = (f"Preset {config.get('preset')}; model {model.get('model')} "
            f"(test accuracy {format_number(accuracy)}{where}); data: {model.get('data')}; "
            f"PrunedGradient sparsity {config.get('sparsity', float('nan')):g}.")
    if config.get("preset") == "quick":
        text += (" QUICK PRESET: a smoke run on few images, to check that everything runs; "
                 "its numbers are not results (the full preset is what the documentation "
                 "reports).")
    return text


def write_benchmark_figures(
    folder: Path, results: BenchmarkResults, maps: Optional[Mapping[str, Tensor]],
    images: Optional[np.ndarray], boxes: Optional[Tensor],
) -> List[Path]:
    r"""Writes the PNG plots of a benchmark into ``folder``; returns their paths (``maps``
    None: no ``maps.png``)."""
    names = results.methods
    paths = []
    if maps is not None:  # None: keep the maps.png that is there (--report-only)
        fig = map_grid_figure(images, maps, boxes, title="|attribution|, max over channels"
                              + ("; dashed box: ground truth" if boxes is not None else ""))
        paths.append(save_figure(fig, folder / "maps.png"))
    comparisons = results.comparisons
    written = set()
    for key, file in _CURVE_FILES.items():
        comparison = comparisons.get(key)
        if comparison is None or not comparison.x:
            continue
        stages = isinstance(comparison.x[0], str)
        x = list(range(len(comparison.x))) if stages else list(comparison.x)
        curves = {n: (x, comparison.methods[n].curve) for n in names
                  if n in comparison.methods and len(comparison.methods[n].curve) == len(x)}
        if not curves:
            continue
        title = f"{comparison.title} ({comparison.better} score is better)"
        if comparison.not_a_result:
            title = f"{comparison.title}: NOT A RESULT in this run (see the report)"
        fig = ci_curves_figure(curves, title, comparison.x_label, comparison.curve_name,
                               xticklabels=comparison.x if stages else None)
        paths.append(save_figure(fig, folder / file))
        written.add(file)
    if comparisons:
        paths.append(save_figure(scores_figure(results), folder / "scores.png"))
    perturbation = results.pixel_perturbation
    if perturbation:
        for mode, label in (("lerf", "LeRF (lower is better)"),
                            ("morf", "MoRF (higher is better)")):
            if f"{mode}.png" in written:
                continue
            by_method = perturbation.curves(mode)
            curves = {n: ([0.0] + perturbation.fractions, [0.0] + by_method[n].mean,
                          [0.0] + by_method[n].std) for n in names}
            fig = curves_figure(curves, f"Pixel perturbation, {label}", "share of pixels removed",
                                "|fractional change of p(class)|")
            paths.append(save_figure(fig, folder / f"{mode}.png"))
    roar = results.roar
    if roar and "roar.png" not in written:
        curves = {n: (roar.fractions, roar.methods[n].mean, roar.methods[n].std) for n in names}
        title = ("ROAR: NOT A RESULT in this run (see the report)" if roar.not_meaningful
                 else "ROAR (lower is better)")
        fig = curves_figure(curves, title, "share of pixels removed",
                            "test accuracy after retraining (fraction)")
        paths.append(save_figure(fig, folder / "roar.png"))
    sanity = results.sanity
    if sanity:
        stages = sanity.stages
        for metric, label in (("spearman_abs", "Spearman rank correlation of |map|"),
                              ("ssim", "SSIM of the signed map")):
            if f"sanity_{metric}.png" in written:
                continue
            cis = {n: getattr(sanity.methods[n], metric).get("ci") for n in names}
            if all(cis.values()):
                from captum_prune.cli.results import Interval

                fig = ci_curves_figure(
                    {n: (list(range(len(stages))), [Interval.of(c) for c in cis[n]])
                     for n in names},
                    "Sanity check: cascading randomisation", "randomised up to", label,
                    xticklabels=stages)
                paths.append(save_figure(fig, folder / f"sanity_{metric}.png"))
                continue
            curves = {}
            for n in names:
                values = getattr(sanity.methods[n], metric)
                mean = (_sanity_values(sanity.methods[n]) if metric == "spearman_abs"
                        else values["mean"])
                curves[n] = (list(range(len(stages))), mean, values["std"])
            fig = curves_figure(curves, "Sanity check: cascading randomisation", "randomised up to",
                                label, xticklabels=stages)
            paths.append(save_figure(fig, folder / f"sanity_{metric}.png"))
    local = results.localisation
    if local is not None and local.skipped is None:
        values = {
            "mass in box": {n: _bar(results, "mass_in_box", n, local.methods[n].mass_in_box)
                            for n in names},
            "pointing game": {n: _bar(results, "pointing_game", n,
                                      local.methods[n].pointing_game) for n in names},
        }
        paths.append(save_figure(bars_figure(values, "Localisation (higher is better)"),
                                 folder / "localisation.png"))
    return paths


def _bar(results: BenchmarkResults, protocol: str, name: str, stat: Any) -> Tuple[Any, Any]:
    r"""``(mean, error)`` of a bar: the 95% CI as ``(low, high)`` where known, else the std."""
    comparison = results.comparisons.get(protocol)
    if comparison is not None and name in comparison.methods:
        score = comparison.methods[name].score
        if score.low is not None:
            return score.mean, (score.low, score.high)
    return stat.mean, stat.std


def _config_text(results: BenchmarkResults) -> str:
    config, model = results.config, results.model
    where = (f" (on {model['test_accuracy_images']} test images)"
             if model.get("test_accuracy_images") else "")
    lines = [f"preset: {config['preset']}; sparsity {config['sparsity']:g}; "
             f"device {config['device']}; seed {config['seed']}",
             f"model: {model.get('model')}; data: {model.get('data')}",
             f"test accuracy: {format_number(model.get('test_accuracy'))}{where}"]
    if len(model.get("models") or []) > 1:
        lines.append("trained models (seed: test accuracy): " + ", ".join(
            f"{m.get('model_seed')}: {format_number(m.get('test_accuracy'))}"
            for m in model["models"]))
    if results.timings:
        lines.append("timings (s): " + ", ".join(
            f"{k.replace('_seconds', '')} {v:.0f}" for k, v in results.timings.items()))
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in results.versions.items()
                                          if k != "platform"))
    return "\n".join(lines)


def write_benchmark_markdown(path: PathLike, results: BenchmarkResults) -> Path:
    r"""Writes the benchmark tables as Markdown (atomically)."""
    parts = ["# captum-prune benchmark\n", run_description(results) + "\n", "```",
             _config_text(results), "```\n"]
    for table in benchmark_tables(results):
        parts.append(f"## {table['title']}\n")
        if table.get("text"):
            parts.append(table["text"] + "\n")
        if table["rows"]:
            parts.append(markdown_table(table["headers"], table["rows"]))
        for figure in table["figures"]:
            if figure in results.figures:
                parts.append(f"![{figure}]({figure})\n")
    return atomic_write(path, "\n".join(parts))


def write_benchmark_html(path: PathLike, results: BenchmarkResults,
                         figures: Sequence[Path]) -> Path:
    r"""Writes the self-contained ``report.html`` of a benchmark."""
    by_name = {Path(f).name: Path(f) for f in figures}
    sections = []
    for table in benchmark_tables(results):
        sections.append({
            "title": table["title"], "text": table.get("text", ""),
            "table": (table["headers"], table["rows"]) if table["rows"] else None,
            "figures": [(by_name[f], f) for f in table["figures"] if f in by_name],
        })
    sections.append({"title": "Configuration", "pre": _config_text(results)})
    return write_html_report(path, "captum-prune benchmark", sections,
                             intro="Attribution methods compared with the evaluation protocols "
                                   "of the pathway-gradient paper (Khakzar et al., CVPR 2021). "
                                   + run_description(results))


def summary_text(results: BenchmarkResults) -> str:
    r"""The summary table as Markdown, for the terminal."""
    table = benchmark_tables(results)[0]
    return run_description(results) + "\n\n" + markdown_table(table["headers"], table["rows"])
