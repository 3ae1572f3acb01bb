"""The benchmark's report.html rendered by headless Chromium (Debian's ``chromium`` package):
the embedded images are decoded and painted, from the file alone, with no network."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from captum_prune.cli import report
from captum_prune.cli.results import BenchmarkResults
from tests.cli.test_report import _document

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                reason=f"no Chromium at {CHROMIUM}")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    doc = BenchmarkResults.from_dict(_document(passed=(True, False)))
    figures = report.write_benchmark_figures(
        folder, doc, {"A": torch.rand(2, 3, 16, 16), "B": torch.rand(2, 1, 16, 16)},
        np.random.default_rng(0).random((2, 16, 16, 3)), torch.tensor([[2, 2, 9, 9]] * 2))
    doc.figures = [p.name for p in figures]
    html = report.write_benchmark_html(folder / "report.html", doc, figures)
    # Only the HTML file travels: the PNGs beside it are removed, so nothing can be loaded
    # from disk and the images must come from the data URIs.
    alone = tmp_path_factory.mktemp("alone") / "report.html"
    shutil.copy(html, alone)
    return alone, [p.name for p in figures]


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120,
    )


def test_dom_holds_every_figure_as_a_data_uri(page, tmp_path):
    html, names = page
    result = _chromium(tmp_path, "--dump-dom", html.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    images = re.findall(r"<img [^>]*>", result.stdout)
    assert len(images) == len(names)
    for tag, name in zip(images, names):
        assert 'src="data:image/png;base64,' in tag and f'data-file="{name}"' in tag


def test_screenshot_shows_the_coloured_plots(page, tmp_path):
    html, _ = page
    shot = tmp_path / "shot.png"
    result = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000",
                       "--hide-scrollbars", html.as_uri())
    assert shot.exists(), result.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)[..., :3]
    # Text and tables are black, white and grey; only the painted figures are coloured.
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    coloured = (saturation > 0.25).mean()
    assert coloured > 0.01, coloured
    # Coloured pixels appear throughout the page, not in one spot: several figures rendered.
    rows = np.flatnonzero((saturation > 0.25).any(axis=1))
    assert rows.max() - rows.min() > 1000
