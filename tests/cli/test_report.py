"""Tests of the writers in captum_prune.cli.report: JSON, figures, tables, HTML."""
import base64
import re

import matplotlib.image
import numpy as np
import pytest
import torch

from captum_prune.cli import report
from captum_prune.cli.results import BenchmarkResults


def test_write_json_rejects_nan(tmp_path):
    with pytest.raises(ValueError):
        report.write_json(tmp_path / "r.json", {"auc": float("nan")})
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("value, text", [(None, "n/a"), (float("nan"), "n/a"), (3, "3"),
                                         (0.12345, "0.123"), (np.int64(7), "7")])
def test_format_number(value, text):
    assert report.format_number(value) == text


def test_markdown_table_shape():
    table = report.markdown_table(["a", "b"], [["x", 0.5], ["y", None]])
    lines = table.strip().splitlines()
    assert lines[0] == "| a | b |" and lines[1] == "|---|---|"
    assert lines[2:] == ["| x | 0.500 |", "| y | n/a |"]


@pytest.mark.parametrize("n, methods", [(1, 1), (3, 4)])
def test_map_grid_has_one_row_per_image_and_column_per_method(tmp_path, n, methods):
    images = np.random.default_rng(0).random((n, 16, 16, 3))
    maps = {f"m{k}": torch.randn(n, 3, 16, 16) for k in range(methods)}
    boxes = torch.tensor([[2, 3, 10, 12]] * n)
    fig = report.map_grid_figure(images, maps, boxes, [f"r{i}" for i in range(n)], title="t")
    axes = fig.get_axes()
    assert len(axes) == n * (methods + 1)
    # Every heat map is scaled into [0, 1] and the box is drawn on every panel.
    for ax in axes:
        assert len(ax.patches) == 1
    for ax in axes[1:methods + 1]:
        data = ax.get_images()[0].get_array()
        assert data.min() >= 0 and data.max() == pytest.approx(1.0)
    path = report.save_figure(fig, tmp_path / "g.png")
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > height if methods + 1 > n else True


def test_map_grid_heat_is_the_channel_max_of_abs():
    maps = torch.zeros(1, 3, 8, 8)
    maps[0, 2, 4, 5] = -5.0  # negative, in one channel only: still the hottest pixel
    maps[0, 0, 1, 1] = 1.0
    fig = report.map_grid_figure(np.zeros((1, 8, 8, 3)), {"m": maps})
    heat = np.asarray(fig.get_axes()[1].get_images()[0].get_array())
    assert np.unravel_index(heat.argmax(), heat.shape) == (4, 5)


def _png(tmp_path, name, colour):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.patch.set_facecolor(colour)
    return report.save_figure(fig, tmp_path / name)


def test_html_report_embeds_png_bytes_and_escapes_text(tmp_path):
    a, b = _png(tmp_path, "a.png", "red"), _png(tmp_path, "b.png", "blue")
    path = report.write_html_report(tmp_path / "r.html", "T <1>", [
        {"title": "S&1", "text": "<script>", "table": (["m", "v"], [["x<y", 0.25]]),
         "figures": [(a, "first")]},
        {"title": "S2", "figures": [(b, "second")], "pre": "cfg"},
    ])
    html = path.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html and "T &lt;1&gt;" in html
    found = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert [base64.b64decode(s) for s in found] == [a.read_bytes(), b.read_bytes()]
    assert "<td>0.250</td>" in html and "file://" not in html


def test_html_report_refuses_non_png(tmp_path):
    fake = tmp_path / "x.png"
    fake.write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not a PNG"):
        report.write_html_report(tmp_path / "r.html", "t", [{"title": "s",
                                                             "figures": [(fake, "")]}])
    assert not (tmp_path / "r.html").exists()


def _document(passed):
    methods = ["A", "B"]
    curve = {"mean": [0.1] * 10, "std": [0.01] * 10, "auc": 0.01, "n_examples": 5}
    return {
        "methods": methods,
        "config": {"preset": "quick", "sparsity": 0.8, "device": "cpu", "seed": 0},
        "map_seconds_per_image": {"A": 0.002, "B": 0.004},
        "pixel_perturbation": {"fractions": [0.01 * k for k in range(1, 11)],
                               "lerf": {m: curve for m in methods},
                               "morf": {m: dict(curve, auc=0.05) for m in methods}},
        "roar": {"fractions": [0.0, 0.5], "seeds": [0, 1], "epochs": 1, "n_train": 4,
                 "n_test": 2, "methods": {m: {"mean": [0.9, 0.4], "std": [0.0, 0.1],
                                              "auc": 0.325} for m in methods}},
        "sanity": {"stages": ["original", "fc"], "pass_below": 0.5, "methods": {
            m: {"spearman_abs": {"mean": [1.0, v], "std": [0.0, 0.1]},
                "ssim": {"mean": [1.0, v], "std": [0.0, 0.1]},
                "final_spearman_abs": v, "mean_spearman_abs_randomised": v, "passed": p}
            for m, v, p in zip(methods, (0.2, 0.9), passed)}},
        "localisation": {"skipped": "no boxes"},
    }


def test_benchmark_tables_summary_rows_and_verdicts():
    tables = report.benchmark_tables(BenchmarkResults.from_dict(_document(passed=(True, False))))
    summary = tables[0]
    assert [row[0] for row in summary["rows"]] == ["A", "B"]
    assert "(pass)" in summary["rows"][0][4] and "(FAIL)" in summary["rows"][1][4]
    # The mean over the randomised stages, as the results hold it.
    assert summary["rows"][0][5] == "0.200" and summary["rows"][1][5] == "0.900"
    titles = [t["title"] for t in tables]
    assert titles[:3] == ["Summary", "Pixel perturbation, LERF", "Pixel perturbation, MORF"]
    assert "Localisation" in titles and "Pathway analysis" not in titles
    roar = next(t for t in tables if t["title"].startswith("ROAR"))
    # AUC first (it is never cut off), then accuracies as fractions, as in the plot.
    assert roar["rows"][0][1:4] == [0.325, "0.900 ± 0.000", "0.400 ± 0.100"]
    lerf = tables[1]
    assert lerf["headers"][:2] == ["method", "AUC"]


def test_roar_that_did_not_learn_is_not_shown_as_a_result():
    doc = _document(passed=(True, False))
    doc["roar"] = dict(doc["roar"], chance=0.1, not_meaningful="chance-level models")
    tables = report.benchmark_tables(BenchmarkResults.from_dict(doc))
    assert tables[0]["rows"][0][3] == "not a result (see ROAR)"
    roar = next(t for t in tables if t["title"].startswith("ROAR"))
    assert "not a result" in roar["title"] and roar["text"].startswith("NOT A RESULT")
    from captum_prune.cli.results import RoarCurve, RoarResults

    curves = {"A": RoarCurve([0.069, 0.1], [0, 0], 0.1, {})}
    assert "6.9%" in RoarResults.judge(curves, chance=0.1)
    assert RoarResults.judge({"A": RoarCurve([0.9, 0.4], [0, 0], 0.1, {})}, 0.1) is None
    assert "quick" in RoarResults.judge({"A": RoarCurve([0.9, 0.4], [0, 0], 0.1, {})}, 0.1,
                                        smoke_run=True)


def test_constant_sanity_maps_count_as_zero_and_are_shown():
    from captum_prune.cli.results import SanityCurves

    summary = {"n_examples": 6, "stages": ["original", "fc"],
               "spearman_abs": {"mean": [1.0, 0.6], "std": [0.0, 0.0], "n_undefined": [0, 5]},
               "ssim": {"mean": [1.0, 0.1], "std": [0.0, 0.0], "n_undefined": [0, 0]}}
    curves = SanityCurves.from_summary(summary)
    # 0.6 on the one map that is not constant, 0 on the five constant ones.
    assert curves.final_spearman_abs == pytest.approx(0.1) and curves.passed
    assert curves.n_constant == [0, 5]
    assert report._sanity_cell(curves, 1) == "0.10 (5/6 const.)"
    # Every map constant: still defined, 0.
    summary["spearman_abs"] = {"mean": [1.0, None], "std": [0.0, None], "n_undefined": [0, 6]}
    assert SanityCurves.from_summary(summary).final_spearman_abs == 0.0


def test_run_description_says_quick_is_not_a_result():
    doc = BenchmarkResults.from_dict(_document(passed=(True, False)))
    doc.model = {"model": "DigitsResNet", "test_accuracy": 0.947, "data": "digits"}
    text = report.run_description(doc)
    assert "Preset quick" in text and "0.947" in text and "not results" in text
    assert report.summary_text(doc).startswith("Preset quick")


def test_benchmark_figures_markdown_and_html_agree(tmp_path):
    doc = BenchmarkResults.from_dict(_document(passed=(True, True)))
    figures = report.write_benchmark_figures(
        tmp_path, doc, {"A": torch.rand(2, 3, 8, 8), "B": torch.rand(2, 1, 8, 8)},
        np.zeros((2, 8, 8, 3)), None)
    names = sorted(p.name for p in figures)
    assert names == sorted(["maps.png", "lerf.png", "morf.png", "roar.png",
                            "sanity_spearman_abs.png", "sanity_ssim.png"])
    doc.figures = names
    md = report.write_benchmark_markdown(tmp_path / "r.md", doc).read_text()
    assert all(f"![{n}]({n})" in md for n in names)
    html = report.write_benchmark_html(tmp_path / "r.html", doc, figures).read_text()
    assert html.count("data:image/png;base64,") == len(names)
    assert "Skipped: no boxes." in html


def test_results_round_trip_through_json(tmp_path):
    doc = _document(passed=(True, False))
    results = BenchmarkResults.from_dict(doc)
    assert results.sanity.methods["B"].passed is False
    assert results.pixel_perturbation.morf["A"].auc == 0.05
    again = BenchmarkResults.from_dict(results.to_dict())
    assert again == results
    report.write_json(tmp_path / "r.json", results.to_dict())

