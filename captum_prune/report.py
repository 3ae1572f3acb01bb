r"""
Writing what ``captum-prune demo`` and ``captum-prune benchmark`` produce: atomic files,
the grid of attribution maps, curve plots, Markdown tables and a self-contained HTML report.

Figures are drawn on :class:`matplotlib.figure.Figure` objects directly (no pyplot), so no
display or GUI backend is needed.
"""
import base64
import html
import json
import math
import os
from pathlib import Path
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "atomic_write",
    "save_figure",
    "map_grid_figure",
    "curves_figure",
    "markdown_table",
    "write_html_report",
    "format_number",
]

PathLike = Union[str, os.PathLike]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def atomic_write(path: PathLike, data: Union[str, bytes]) -> Path:
    r"""
    Writes ``data`` to ``path`` through a temporary file in the same folder and
    :func:`os.replace`, so readers never see a half-written file.

    Args:
        path (str or PathLike): Destination; its folder must exist.
        data (str or bytes): Text (written as UTF-8) or bytes.

    Returns:
        Path: ``path``.
    """
    path = Path(path)
    blob = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


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
    for k, (name, (x, mean, std)) in enumerate(curves.items()):
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
        ax.set_xticklabels(xticklabels, rotation=60, ha="right", fontsize=7)
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def format_number(value: Any, digits: int = 3) -> str:
    r"""A float with ``digits`` decimals; ``"n/a"`` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    r"""A GitHub-flavoured Markdown table; floats get three decimals."""
    cells = [[c if isinstance(c, str) else format_number(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f"<td>{html.escape(c if isinstance(c, str) else format_number(c))}</td>" for c in row
        ) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _data_uri(png_path: Path) -> str:
    blob = png_path.read_bytes()
    if not blob.startswith(PNG_SIGNATURE):
        raise ValueError(f"{png_path} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(blob).decode("ascii")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}td{white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}pre{background:#f7f7f7;padding:.6em;overflow:auto}
"""


def write_html_report(
    path: PathLike,
    title: str,
    sections: Sequence[Dict[str, Any]],
    intro: str = "",
) -> Path:
    r"""
    Writes a self-contained HTML page: every figure is embedded as a base64 ``data:`` URI,
    so the file opens anywhere without its folder.

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
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for section in sections:
        parts.append(f"<h2>{html.escape(section['title'])}</h2>")
        if section.get("text"):
            parts.append(f"<p>{html.escape(section['text'])}</p>")
        if section.get("table"):
            parts.append(_html_table(*section["table"]))
        for png, caption in section.get("figures", ()):
            png = Path(png)
            parts.append(
                f'<figure><img src="{_data_uri(png)}" alt="{html.escape(png.name)}" '
                f'data-file="{html.escape(png.name)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        if section.get("pre"):
            parts.append(f"<pre>{html.escape(section['pre'])}</pre>")
    parts.append("</body></html>\n")
    return atomic_write(path, "\n".join(parts))


# --------------------------------------------------------------------------- benchmark output


def bars_figure(values: Mapping[str, Mapping[str, Tuple[float, float]]], title: str) -> Any:
    r"""
    Grouped bars: ``{metric: {method: (mean, std)}}``, one group per method.

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
        std = [0.0 if values[metric][m][1] is None else values[metric][m][1] for m in methods]
        ax.bar(x + (k - (len(metrics) - 1) / 2) * width, mean, width, yerr=std, capsize=2,
               label=metric)
    ax.set_xticks(x)
    ax.set_xticklabels([m.replace("[", "\n[") for m in methods], rotation=35, ha="right",
                       fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _pm(mean: Any, std: Any, digits: int = 3) -> str:
    if mean is None:
        return "n/a"
    return format_number(mean, digits) + ("" if std is None else f" ± {format_number(std, digits)}")


def _mean_randomised(sanity: Mapping[str, Any]) -> Optional[float]:
    r"""Mean Spearman correlation of |map| over the randomised stages (stage 0 left out)."""
    if sanity.get("mean_spearman_abs_randomised") is not None:
        return sanity["mean_spearman_abs_randomised"]
    later = [v for v in sanity["spearman_abs"]["mean"][1:] if v is not None]
    return float(np.mean(later)) if later else None


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def benchmark_tables(document: Mapping[str, Any]) -> List[Dict[str, Any]]:
    r"""
    The tables of a benchmark ``results.json`` document, shared by the Markdown and HTML
    writers: a list of ``{"title", "text", "headers", "rows", "figures"}``.
    """
    names = document["methods"]
    tables: List[Dict[str, Any]] = []
    sanity = document.get("sanity")
    perturbation = document.get("pixel_perturbation")
    roar = document.get("roar")
    local = document.get("localisation", {})
    seconds = document.get("map_seconds_per_image", {})

    summary_rows = []
    for name in names:
        row = [name]
        if perturbation:
            row += [format_number(perturbation[m][name]["auc"], 4) for m in ("lerf", "morf")]
        if roar:
            row.append(roar["methods"][name]["auc"])
        if sanity:
            s = sanity["methods"][name]
            verdict = "pass" if s["passed"] else "FAIL"
            row.append(f"{format_number(s['final_spearman_abs'])} ({verdict})")
            row.append(format_number(_mean_randomised(s)))
        if local.get("methods"):
            m = local["methods"][name]
            row += [m["mass_in_box"]["mean"], m["pointing_game"]["mean"]]
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
    if local.get("methods"):
        headers += ["mass in box", "pointing game"]
    headers.append("ms / image")
    tables.append({"title": "Summary", "headers": headers, "rows": summary_rows,
                   "figures": ["maps.png"],
                   "text": "AUCs are trapezoids in fraction units (LeRF/MoRF over 0-10% of the "
                           "pixels, ROAR over 0-90%). A method passes the sanity check when, with "
                           "every block randomised, the mean Spearman correlation of its |map| "
                           "with the trained model's map is below "
                           f"{sanity['pass_below'] if sanity else SANITY_DEFAULT}; the mean over "
                           "all randomisation stages shows how early the maps react (lower is "
                           "better)."})

    if perturbation:
        fractions = perturbation["fractions"]
        for mode, text in (("lerf", "least relevant first: lower is better"),
                           ("morf", "most relevant first: higher is better")):
            rows = []
            for name in names:
                r = perturbation[mode][name]
                rows.append([name] + [_pm(m, s) for m, s in zip(r["mean"], r["std"])]
                            + [format_number(r["auc"], 4)])
            tables.append({
                "title": f"Pixel perturbation, {mode.upper()}",
                "text": f"Absolute fractional change of the target's softmax probability after "
                        f"removing pixels ({text}); mean ± std over "
                        f"{perturbation[mode][names[0]]['n_examples']} test images.",
                "headers": ["method"] + [_percent(f) for f in fractions] + ["AUC"],
                "rows": rows, "figures": [f"{mode}.png"],
            })
    if roar:
        rows = [[name] + [_pm(100 * m, None if s is None else 100 * s, 1) for m, s in
                          zip(roar["methods"][name]["mean"], roar["methods"][name]["std"])]
                + [roar["methods"][name]["auc"]] for name in names]
        tables.append({
            "title": "ROAR (remove and retrain)",
            "text": f"Test accuracy (%) after removing the top pixels and retraining from "
                    f"scratch; mean ± std over seeds {roar['seeds']}, {roar['epochs']} epochs on "
                    f"{roar['n_train']} train images, {roar['n_test']} test images"
                    + (f"; retrained model: {roar['retrained_model']}"
                       if roar.get("retrained_model") else "")
                    + ". Lower is better.",
            "headers": ["method"] + [_percent(f) for f in roar["fractions"]] + ["AUC"],
            "rows": rows, "figures": ["roar.png"],
        })
    if sanity:
        stages = sanity["stages"]
        rows = []
        for name in names:
            s = sanity["methods"][name]
            rows.append([name] + [format_number(v, 2) for v in s["spearman_abs"]["mean"]]
                        + ["pass" if s["passed"] else "FAIL"])
        tables.append({
            "title": "Sanity check (cascading randomisation)",
            "text": "Mean Spearman rank correlation of |map| with the trained model's map after "
                    "randomising the blocks cumulatively from the output; lower means the map "
                    "depends on the model.",
            "headers": ["method"] + stages + ["outcome"], "rows": rows,
            "figures": ["sanity_spearman_abs.png", "sanity_ssim.png"],
        })
    if local.get("methods"):
        rows = [[name, _pm(local["methods"][name]["mass_in_box"]["mean"],
                           local["methods"][name]["mass_in_box"]["std"]),
                 local["methods"][name]["pointing_game"]["mean"]] for name in names]
        tables.append({
            "title": "Localisation", "headers": ["method", "positive mass in box", "pointing game"],
            "text": "Share of the positive attribution mass inside the ground-truth box, and the "
                    "pointing-game hit rate.",
            "rows": rows, "figures": ["localisation.png"],
        })
    elif local.get("skipped"):
        tables.append({"title": "Localisation", "text": f"Skipped: {local['skipped']}.",
                       "headers": [], "rows": [], "figures": []})
    pathway = document.get("pathway")
    if pathway:
        rows = [[pair, _pm(v["mean"], v["std"])] for pair, v in pathway["jaccard"].items()]
        rows += [[f"dead share, {c}", _pm(v["mean"], v["std"])]
                 for c, v in pathway["dead_fraction"].items()]
        rows += [[f"pruned net keeps the class, {c}", _pm(v["mean"], v["std"])]
                 for c, v in pathway["target_kept"].items()]
        tables.append({
            "title": "Pathway analysis",
            "text": f"PrunedGradient pathways at sparsity {pathway['sparsity']:g} on "
                    f"{pathway['n_examples']} test images: Jaccard overlap between criteria, "
                    f"share of kept neurons whose activation is zero, and how often the pruned "
                    f"network still predicts the class.",
            "headers": ["quantity", "mean ± std"], "rows": rows, "figures": [],
        })
    return tables


SANITY_DEFAULT = 0.5


def write_benchmark_figures(
    folder: Path, document: Mapping[str, Any], maps: Mapping[str, Tensor], images: np.ndarray,
    boxes: Optional[Tensor],
) -> List[Path]:
    r"""Writes the PNG plots of a benchmark into ``folder``; returns their paths."""
    names = document["methods"]
    paths = []
    fig = map_grid_figure(images, maps, boxes, title="|attribution|, max over channels"
                          + ("; dashed box: ground truth" if boxes is not None else ""))
    paths.append(save_figure(fig, folder / "maps.png"))
    perturbation = document.get("pixel_perturbation")
    if perturbation:
        for mode, label in (("lerf", "LeRF (lower is better)"), ("morf", "MoRF (higher is better)")):
            curves = {n: ([0.0] + perturbation["fractions"], [0.0] + perturbation[mode][n]["mean"],
                          [0.0] + perturbation[mode][n]["std"]) for n in names}
            fig = curves_figure(curves, f"Pixel perturbation, {label}", "share of pixels removed",
                                "|fractional change of p(class)|")
            paths.append(save_figure(fig, folder / f"{mode}.png"))
    roar = document.get("roar")
    if roar:
        curves = {n: (roar["fractions"], roar["methods"][n]["mean"], roar["methods"][n]["std"])
                  for n in names}
        fig = curves_figure(curves, "ROAR (lower is better)", "share of pixels removed",
                            "test accuracy after retraining")
        paths.append(save_figure(fig, folder / "roar.png"))
    sanity = document.get("sanity")
    if sanity:
        stages = sanity["stages"]
        for metric, label in (("spearman_abs", "Spearman rank correlation of |map|"),
                              ("ssim", "SSIM of the signed map")):
            curves = {n: (list(range(len(stages))), sanity["methods"][n][metric]["mean"],
                          sanity["methods"][n][metric]["std"]) for n in names}
            fig = curves_figure(curves, "Sanity check: cascading randomisation", "randomised up to",
                                label, xticklabels=stages)
            paths.append(save_figure(fig, folder / f"sanity_{metric}.png"))
    local = document.get("localisation", {})
    if local.get("methods"):
        values = {
            "mass in box": {n: (local["methods"][n]["mass_in_box"]["mean"],
                                local["methods"][n]["mass_in_box"]["std"]) for n in names},
            "pointing game": {n: (local["methods"][n]["pointing_game"]["mean"], None)
                              for n in names},
        }
        paths.append(save_figure(bars_figure(values, "Localisation (higher is better)"),
                                 folder / "localisation.png"))
    return paths


def _config_text(document: Mapping[str, Any]) -> str:
    config = document["config"]
    model = document.get("model", {})
    lines = [f"preset: {config['preset']}; sparsity {config['sparsity']:g}; "
             f"device {config['device']}; seed {config['seed']}",
             f"model: {model.get('model')}; data: {model.get('data')}",
             f"test accuracy: {format_number(model.get('test_accuracy'))}"]
    timings = document.get("timings", {})
    if timings:
        lines.append("timings (s): " + ", ".join(
            f"{k.replace('_seconds', '')} {v:.0f}" for k, v in timings.items()))
    versions = document.get("versions", {})
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()
                                          if k != "platform"))
    return "\n".join(lines)


def write_benchmark_markdown(path: PathLike, document: Mapping[str, Any]) -> Path:
    r"""Writes the benchmark tables as Markdown (atomically)."""
    parts = ["# captum-prune benchmark\n", "```", _config_text(document), "```\n"]
    for table in benchmark_tables(document):
        parts.append(f"## {table['title']}\n")
        if table.get("text"):
            parts.append(table["text"] + "\n")
        if table["rows"]:
            parts.append(markdown_table(table["headers"], table["rows"]))
        for figure in table["figures"]:
            if figure in document.get("figures", ()):
                parts.append(f"![{figure}]({figure})\n")
    return atomic_write(path, "\n".join(parts))


def write_benchmark_html(path: PathLike, document: Mapping[str, Any],
                         figures: Sequence[Path]) -> Path:
    r"""Writes the self-contained ``report.html`` of a benchmark."""
    by_name = {Path(f).name: Path(f) for f in figures}
    sections = []
    for table in benchmark_tables(document):
        sections.append({
            "title": table["title"], "text": table.get("text", ""),
            "table": (table["headers"], table["rows"]) if table["rows"] else None,
            "figures": [(by_name[f], f) for f in table["figures"] if f in by_name],
        })
    sections.append({"title": "Configuration", "pre": _config_text(document)})
    return write_html_report(path, "captum-prune benchmark", sections,
                             intro="Attribution methods compared with the evaluation protocols "
                                   "of the pathway-gradient paper (Khakzar et al., CVPR 2021).")


def summary_text(document: Mapping[str, Any]) -> str:
    r"""The summary table as Markdown, for the terminal."""
    table = benchmark_tables(document)[0]
    return markdown_table(table["headers"], table["rows"])
