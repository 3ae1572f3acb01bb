"""End-to-end tests of ``captum-prune demo`` and ``captum-prune benchmark``, and of the method
registry they share. Training is tiny (a few epochs on a few hundred digits) and cached in a
temporary folder, so the whole file runs in well under two minutes on two cores."""
import base64
import functools
import json
import math
import re
import warnings
from pathlib import Path

import matplotlib.image
import pytest
import scipy.stats  # noqa: F401  scipy and scikit-learn add warning filters when first
import sklearn.datasets  # noqa: F401  imported: here, not inside the commands under test
import torch
from torch import nn

from captum_prune import cli
from captum_prune.cli.methods import (
    DEFAULT_METHODS,
    METHODS,
    _relu_copy,
    build_methods,
    gradcam_layer,
    parse_methods,
)
from captum_prune.zoo import training
from captum_prune.zoo.models import DigitsResNet

# Every section, every method, and only one training recipe for the whole file.
SECTIONS = ("sanity", "pixel_perturbation", "roar", "localisation", "pathway", "sweep",
            "linearity")
TINY = ["--threads", "1", "--no-progress", "--model-epochs", "2"]
QUICK = TINY + ["--n-eval", "6", "--roar-train", "48", "--roar-test", "24",
                "--roar-epochs", "1", "--roar-seeds", "2"]
TINY_RECIPE = training.DigitsRecipe(epochs=2, max_train=400)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAPTUM_PRUNE_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def benchmark_run(cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "result"
    filters = list(warnings.filters)
    rc = cli.main(["benchmark", "--quick", "--out", str(out)] + QUICK)
    assert warnings.filters == filters  # no process-wide warning filters
    return rc, out


def _is_png(path: Path) -> bool:
    image = matplotlib.image.imread(path)  # raises on a broken file
    return path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and image.shape[0] > 50


def test_benchmark_quick_writes_every_section_and_method(benchmark_run):
    rc, out = benchmark_run
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["complete"] is True and doc["methods"] == DEFAULT_METHODS
    assert all(section in doc for section in SECTIONS)
    for name in DEFAULT_METHODS:
        for mode in ("lerf", "morf"):
            curve = doc["pixel_perturbation"][mode][name]
            assert len(curve["mean"]) == len(curve["std"]) == 10
            assert math.isfinite(curve["auc"]) and curve["auc"] >= 0
        roar = doc["roar"]["methods"][name]
        assert roar["fractions"] == [0.0, 0.01, 0.02, 0.05, 0.1, 0.2]
        assert len(roar["per_seed"]) == 6 and all(len(r) == 2 for r in roar["per_seed"])
        assert 0.0 <= roar["auc"] <= 0.2
        sanity = doc["sanity"]["methods"][name]
        # Stage 0 compares the maps with themselves.
        assert sanity["spearman_abs"]["mean"][0] == pytest.approx(1.0)
        final = sanity["final_spearman_abs"]  # None: maps constant from the start (all-zero
        assert sanity["passed"] == (final is not None and final < 0.5)  # auto maps, tiny model)
        # Constant maps count as 0: the means are over every map, and say how many.
        stages = sanity["spearman_abs_constant_as_zero"][1:]
        if None not in stages:
            assert sanity["mean_spearman_abs_randomised"] == pytest.approx(
                sum(stages) / len(stages))
        undefined = sanity["spearman_abs"]["n_undefined"]
        if undefined[0] == 0:  # else the original maps were constant: nothing counts as 0
            assert sanity["n_constant"] == [0] + undefined[1:]
        local = doc["localisation"]["methods"][name]
        assert 0.0 <= local["mass_in_box"]["mean"] <= 1.0
    # The quick preset's ROAR is a smoke run, and the results say so.
    assert "quick preset" in doc["roar"]["not_meaningful"] and doc["roar"]["chance"] == 0.1
    assert "not a result" in (out / "results.md").read_text()
    # The unmodified data is trained once per seed and shared by every method.
    first = {tuple(doc["roar"]["methods"][n]["per_seed"][0]) for n in DEFAULT_METHODS}
    assert len(first) == 1
    assert doc["sanity"]["stages"][:2] == ["original", "fc"]
    pathway = doc["pathway"]
    assert set(pathway["dead_fraction"]) == {"taylor", "integrated_gradients", "random"}
    assert all(0 <= v["mean"] <= 1 for v in pathway["jaccard"].values())
    assert doc["timings"]["total_seconds"] > 0 and doc["versions"]["captum"]
    # Every scored section has a comparison of every method with CIs; the tiny model is at
    # chance, so none is a result and no verdict calls a winner.
    comparisons = doc["comparisons"]
    assert {"lerf", "morf", "road_morf", "road_lerf", "srg", "sanity", "emprt", "smprt",
            "mass_in_box", "pointing_game", "roar"} <= set(comparisons)
    for key, comparison in comparisons.items():
        assert set(comparison["methods"]) == set(DEFAULT_METHODS), key
        assert comparison["not_a_result"] and comparison["summary"].startswith("Not a result")
        for name, entry in comparison["methods"].items():
            score = entry["score"]
            assert score["n"] + score["n_undefined"] > 0
            if score["low"] is not None:
                assert score["low"] <= score["mean"] <= score["high"]
            assert entry["verdict"] == (None if name == "PrunedGradient" else "not a result")
    assert 0 <= comparisons["lerf"]["methods"]["Random"]["tied_share"] < 0.01
    assert len(comparisons["road_morf"]["methods"]["Saliency"]["curve"]) == 9
    # Grids need confidently classified images, which a model at chance has none of.
    assert "grid_pointing" in doc["config"]["skipped"]


def test_benchmark_writes_valid_pngs_and_self_contained_report(benchmark_run):
    _, out = benchmark_run
    doc = json.loads((out / "results.json").read_text())
    expected = {"maps.png", "lerf.png", "morf.png", "roar.png", "sanity_spearman_abs.png",
                "sanity_ssim.png", "localisation.png", "road_morf.png", "road_lerf.png",
                "smprt.png", "scores.png", "sweep_maps.png", "sweep_curves.png",
                "linearity.png"}
    assert set(doc["figures"]) == expected
    html = (out / "report.html").read_text()
    embedded = {name: base64.b64decode(data) for data, name in
                re.findall(r'src="data:image/png;base64,([^"]+)"[^>]*data-file="([^"]+)"', html)}
    assert set(embedded) == expected
    for name in expected:
        assert _is_png(out / name)
        assert embedded[name] == (out / name).read_bytes()
    markdown = (out / "results.md").read_text()
    for name in DEFAULT_METHODS:
        assert f"| {name} |" in markdown
    # No staging folder is left beside the output.
    assert [p.name for p in out.parent.iterdir()] == ["result"]


def test_demo_writes_figure_and_prints_table(cache, tmp_path, monkeypatch, capsys):
    # The tiny recipe (shared with the benchmark test's cache) instead of the 30-epoch one.
    monkeypatch.setattr(training, "load_default_model",
                        functools.partial(training.load_default_model, recipe=TINY_RECIPE))
    out = tmp_path / "demo"
    filters = list(warnings.filters)
    rc = cli.main(["demo", "--out", str(out), "--n-images", "3", "--threads", "1",
                   "--no-progress", "--methods", "PrunedGradient,Saliency,GradCAM"])
    assert rc == 0
    assert warnings.filters == filters  # Captum's warnings were hidden inside the command only
    assert _is_png(out / "demo.png")
    printed = capsys.readouterr().out
    for name in ("PrunedGradient", "Saliency", "GradCAM"):
        row = re.search(rf"\| {name} \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", printed)
        assert row, printed
        assert 0 <= float(row.group(1)) <= 1 and 0 <= float(row.group(2)) <= 1
    assert (out / "demo.md").read_text().count("\n|---") == 1


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 2))


def _image_folder(root: Path) -> Path:
    gen = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = torch.rand(12, 12, 3, generator=gen).numpy()
                matplotlib.image.imsave(folder / f"{i}.png", pixels)
    return root


def test_benchmark_on_user_image_folder_and_factory(tmp_path, cache):
    data = _image_folder(tmp_path / "data")
    weights = tmp_path / "w.pt"
    torch.save(_tiny_net().state_dict(), weights)
    out = tmp_path / "out"
    rc = cli.main(["benchmark", "--data", str(data), "--model", "tests.cli.test_cli:_tiny_net",
                   "--weights", str(weights), "--image-size", "12", "--methods",
                   "Saliency,PrunedGradient", "--benchmarks", "perturbation,localisation",
                   "--n-eval", "4", "--threads", "1", "--no-progress", "--out", str(out)])
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert "skipped" in doc["localisation"]  # an ImageFolder has no boxes
    assert doc["pixel_perturbation"]["lerf"]["Saliency"]["n_examples"] == 4
    assert "sanity" not in doc and "roar" not in doc
    # The model's accuracy on the test images that were loaded, not "n/a".
    assert 0 <= doc["model"]["test_accuracy"] <= 1 and doc["model"]["test_accuracy_images"] == 6
    assert "test accuracy: n/a" not in (out / "results.md").read_text()
    # A re-run of fewer sections into the same folder leaves no plot of the earlier run.
    (out / "roar.png").write_bytes(b"stale")
    rc = cli.main(["benchmark", "--data", str(data), "--model", "tests.cli.test_cli:_tiny_net",
                   "--weights", str(weights), "--image-size", "12", "--methods",
                   "Saliency", "--benchmarks", "localisation", "--n-eval", "4",
                   "--threads", "1", "--no-progress", "--out", str(out)])
    assert rc == 0
    assert not (out / "roar.png").exists() and not (out / "lerf.png").exists()


@pytest.mark.parametrize("extra, message", [
    (["--methods", "Saliency,Nope"], "--methods"),
    (["--benchmarks", "roar,speed"], "--benchmarks"),
    (["--weights", "/nonexistent/w.pt"], "no such file"),
    (["--data", "/nonexistent/data"], "no such folder"),
    (["--model", "not_a_torchvision_model"], "a torchvision classification model nor"),
    (["--model", "no_such_module_xyz:make"], "cannot import"),
    (["--sparsity", "1.5"], "--sparsity"),
    (["--device", "warp-drive"], "--device"),
    (["--roar-seeds", "0"], "--roar-seeds"),
])
def test_benchmark_bad_arguments_fail_clearly_and_write_nothing(tmp_path, cache, capsys, extra,
                                                                message):
    out = tmp_path / "out"
    rc = cli.main(["benchmark", "--quick", "--out", str(out)] + TINY + extra)
    assert rc == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_user_data_without_weights_is_an_error(tmp_path, cache, capsys):
    data = _image_folder(tmp_path / "data")
    rc = cli.main(["benchmark", "--data", str(data), "--model", "tests.cli.test_cli:_tiny_net",
                   "--out", str(tmp_path / "out")] + TINY)
    assert rc == 2 and "--weights" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_weights_that_do_not_fit_are_an_error(tmp_path, cache, capsys):
    weights = tmp_path / "w.pt"
    torch.save(_tiny_net().state_dict(), weights)
    rc = cli.main(["benchmark", "--weights", str(weights), "--out", str(tmp_path / "out")] + TINY)
    assert rc == 2 and "does not fit" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_demo_bad_arguments(tmp_path, capsys):
    for extra, message in ((["--n-images", "0"], "--n-images"),
                           (["--sparsity", "-0.1"], "--sparsity"),
                           (["--methods", "Foo"], "--methods")):
        rc = cli.main(["demo", "--out", str(tmp_path / "d")] + extra)
        assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_version_and_help_do_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from captum_prune.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    for flag in ("--version", "--help"):
        done = subprocess.run([sys.executable, "-c", code, flag], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "captum_prune", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().startswith("captum-prune 0.")


@pytest.mark.parametrize("module, extra", [("scipy", "demo"), ("sklearn", "demo"),
                                           ("flask", "insights")])
def test_missing_extra_inside_run_is_one_line(monkeypatch, capsys, tmp_path, module, extra):
    from captum_prune.cli import demo

    def run(args):
        raise ModuleNotFoundError(f"No module named '{module}'", name=module)

    monkeypatch.setattr(demo, "run", run)
    assert cli.main(["demo", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"'{extra}' extra" in err and f"pip install -e '.[{extra}]'" in err


def test_an_import_error_that_is_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    from captum_prune.cli import demo

    def run(args):
        raise ModuleNotFoundError("No module named 'captum_prune.nope'", name="captum_prune.nope")

    monkeypatch.setattr(demo, "run", run)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["demo", "--out", str(tmp_path / "d")])


@pytest.mark.parametrize("command", ["demo", "benchmark"])
def test_output_folder_is_checked_before_any_work(tmp_path, capsys, command, monkeypatch):
    from captum_prune.cli import _common

    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out, message in ((blocker, "a file of that name exists"),
                         (blocker / "sub" / "out", f"{blocker} is a file, not a folder")):
        assert cli.main([command, "--out", str(out)] + TINY[:3]) == 2
        assert message in capsys.readouterr().err
    # A folder that cannot be written (simulated: tests may run as root, who writes anyway).
    monkeypatch.setattr(_common, "_probe_writable", lambda folder: "Permission denied")
    (tmp_path / "ro").mkdir()
    assert cli.main([command, "--out", str(tmp_path / "ro")] + TINY[:3]) == 2
    assert "cannot write into this folder (Permission denied)" in capsys.readouterr().err
    assert cli.main([command, "--out", str(tmp_path / "new")] + TINY[:3]) == 2
    assert "cannot create it in" in capsys.readouterr().err


# --------------------------------------------------------------------------- method registry


@pytest.fixture(scope="module")
def digits_net():
    torch.manual_seed(0)
    return DigitsResNet(widths=(4, 6, 8)).eval()


def test_every_method_gives_input_shaped_maps_and_leaves_model_alone(digits_net):
    x = torch.randn(3, 3, 16, 16)
    target = torch.tensor([0, 3, 9])
    before = {k: v.clone() for k, v in digits_net.state_dict().items()}
    for name, factory in build_methods(DEFAULT_METHODS, sparsity=0.7).items():
        maps = factory(digits_net)(x, target)
        assert maps.shape[0] == 3 and maps.shape[-2:] == x.shape[-2:], name
        assert torch.isfinite(maps).all() and maps.abs().sum() > 0, name
    after = digits_net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not m.inplace for m in _relu_copy(digits_net, x).modules()
               if isinstance(m, nn.ReLU))
    assert all(m.inplace for m in digits_net.modules() if isinstance(m, nn.ReLU))


def test_relu_copy_computes_the_same_function(digits_net):
    x = torch.randn(5, 3, 16, 16)
    copy = _relu_copy(digits_net, x)
    relus = [m for m in copy.modules() if isinstance(m, nn.ReLU)]
    calls = []
    handles = [m.register_forward_hook(lambda m, i, o: calls.append(m)) for m in relus]
    with torch.no_grad():
        for _ in range(2):  # the per-call counter resets on every forward pass
            calls.clear()
            assert torch.allclose(copy(x), digits_net(x), atol=1e-6)
            assert len(calls) == len(set(map(id, calls)))  # every ReLU module runs once
    for h in handles:
        h.remove()


def test_gradcam_layer_is_the_last_conv_block(digits_net):
    import torchvision

    assert gradcam_layer(digits_net) is digits_net.layer3
    resnet = torchvision.models.resnet18(num_classes=3)
    assert gradcam_layer(resnet) is resnet.layer4
    with pytest.raises(ValueError, match="Conv2d"):
        gradcam_layer(nn.Linear(3, 2))


def test_parse_methods():
    assert parse_methods(None) == DEFAULT_METHODS
    assert parse_methods("saliency, GRADCAM,saliency") == ["Saliency", "GradCAM"]
    assert parse_methods("prunedgradient[integrated_gradients]") == [
        "PrunedGradient[integrated_gradients]"]
    with pytest.raises(ValueError, match="Saliency"):
        parse_methods("Salience")
    assert set(METHODS) == set(DEFAULT_METHODS)
