r"""Captum Insights' page with PrunedGradient, in headless Chromium.

Uses Debian's Chromium (``$CHROMIUM``, default /usr/bin/chromium) through playwright's
``executable_path``; no browser is downloaded. The screenshot is copied to the path that
``CAPTUM_PRUNE_SCREENSHOT`` names (``.ci/insights``: ``docs/_build/insights-screenshot.png``,
ignored by git; set it to ``docs/_static/insights-screenshot.png`` to refresh the docs' copy),
else it stays in pytest's temporary folder.
"""
import os
import shutil
import threading
from pathlib import Path

import pytest

# Skip in the main environment (captum 0.9 has no Insights); .ci/insights sets the variable.
REQUIRED = os.environ.get("CAPTUM_PRUNE_INSIGHTS_CI") == "1"
if not REQUIRED:
    pytest.importorskip(
        "captum.insights.attr_vis",
        reason="Captum Insights needs captum 0.8 in its own environment: run .ci/insights",
    )

from captum_prune.integrations import insights
from captum_prune.zoo.data import make_digits_canvas
from captum_prune.zoo.training import load_default_model

if REQUIRED:
    from playwright.sync_api import sync_playwright
else:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Captum's own warnings on the Insights path (it passes inputs without requires_grad).
pytestmark = [
    pytest.mark.filterwarnings("ignore:It looks like that the attribution:UserWarning"),
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require:UserWarning"),
]
NUM_EXAMPLES = 4


@pytest.fixture(scope="module")
def url():
    if not os.access(CHROMIUM, os.X_OK):
        if REQUIRED:
            pytest.fail(f"no Chromium at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    # The trained default model (cached; .ci/insights trains it before the tests), so the
    # screenshot shows real predictions.
    model, _ = load_default_model(progress=False)
    visualizer = insights.build_digits_visualizer(model, make_digits_canvas("test"))
    server = insights.serve(visualizer, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_page_fetches_and_shows_pruned_gradient_maps(url, spy, tmp_path):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.select_option("select[name=selected_method]", "Pruned Gradient")
            # The argument fields come from our config entry.
            sparsity = page.wait_for_selector("input[name=sparsity]")
            assert sparsity.input_value() == "85"
            options = page.eval_on_selector_all(
                "select[name=criterion] option", "els => els.map(e => e.value)"
            )
            assert sorted(options) == sorted(["taylor", "integrated_gradients", "random"])
            sparsity.fill("92")
            with page.expect_response("**/fetch") as response_info:
                page.click("button:has-text('Fetch')")
            response = response_info.value
            assert response.status == 200
            sent = response.request.post_data_json
            assert sent["attribution_method"] == "Pruned Gradient"
            assert sent["arguments"] == {"sparsity": 92, "criterion": "taylor"}

            images = "img[src^='data:image/png;base64,']"
            page.wait_for_function(
                f"document.querySelectorAll(\"{images}\").length >= {2 * NUM_EXAMPLES}"
            )
            page.wait_for_function(
                f"[...document.querySelectorAll(\"{images}\")].every(i => i.complete)"
            )
            sizes = page.eval_on_selector_all(
                images, "els => els.map(e => [e.alt, e.naturalWidth, e.naturalHeight])"
            )
            screenshot = tmp_path / "insights-screenshot.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    # Every example shows its image and a decoded attribution map.
    alts = [alt for alt, _, _ in sizes]
    assert alts.count("original") == NUM_EXAMPLES
    assert len(alts) - alts.count("original") == NUM_EXAMPLES
    assert all(width > 100 and height > 100 for _, width, height in sizes)
    # The maps are PrunedGradient's at the sparsity typed into the page.
    assert len(spy) >= NUM_EXAMPLES
    assert all(kwargs["sparsity"] == pytest.approx(0.92) for _, kwargs, _ in spy)
    assert all(result[0].abs().sum() > 0 for _, _, result in spy)

    assert screenshot.stat().st_size > 10_000
    target = os.environ.get("CAPTUM_PRUNE_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, target)
