"""``captum-prune benchmark`` on torchvision datasets on disk: the paper preset end to end on a
tiny CIFAR-10 stand-in in torchvision's on-disk format, the --data forms and their errors."""
import json

import pytest

from captum_prune import cli

standins = pytest.importorskip("tests.zoo.standins", reason="needs the data branch")
pytest.importorskip("captum_prune.zoo.datasets", reason="needs the data branch")

TINY = ["--threads", "1", "--no-progress", "--no-checksum"]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    standins.write_cifar10(root, n_per_batch=8, n_test=12)
    return root


@pytest.fixture(scope="module")
def paper_run(cifar_root, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("paper") / "result"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAPTUM_PRUNE_CACHE", str(cache))
        rc = cli.main(["benchmark", "--preset", "paper", "--data", f"cifar10:{cifar_root}",
                       "--out", str(out), "--model-epochs", "1", "--roar-epochs", "1",
                       "--n-eval", "8", "--methods", "PrunedGradient,Saliency,Random"] + TINY)
        # the second run loads the trained ResNet-8 from the cache
        again = tmp_path_factory.mktemp("paper") / "again"
        rc_again = cli.main(["benchmark", "--preset", "paper", "--data",
                             f"cifar10:{cifar_root}", "--out", str(again), "--model-epochs",
                             "1", "--n-eval", "8", "--methods", "PrunedGradient,Random",
                             "--benchmarks", "perturbation"] + TINY)
    return rc, out, rc_again, again


def test_paper_preset_runs_the_papers_protocol_end_to_end(paper_run):
    rc, out, _, _ = paper_run
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    config = doc["config"]
    assert config["preset"] == "paper" and config["sparsity"] == 0.85
    assert config["benchmarks"] == ["perturbation", "roar"]
    assert config["lerf_fractions"] == [round(0.01 * k, 2) for k in range(1, 11)]
    assert doc["model"]["model"] == "resnet8" and doc["model"]["from_cache"] is False
    assert doc["model"]["test_accuracy_images"] == 12
    assert "CIFAR10" in doc["model"]["data"]
    roar = doc["roar"]
    assert roar["fractions"] == [0.0, 0.1, 0.3, 0.5, 0.7, 0.9] and roar["seeds"] == [0]
    assert roar["n_train"] == 40 and roar["n_test"] == 12
    for name in ("PrunedGradient", "Saliency", "Random"):
        assert len(doc["pixel_perturbation"]["lerf"][name]["mean"]) == 10
        assert len(roar["methods"][name]["per_seed"]) == 6
    assert {"lerf", "morf", "roar"} <= set(doc["comparisons"])
    assert (out / "report.html").is_file() and (out / "roar.png").is_file()


def test_paper_preset_model_comes_from_the_cache_the_second_time(paper_run):
    _, _, rc, again = paper_run
    assert rc == 0
    doc = json.loads((again / "results.json").read_text())
    assert doc["model"]["from_cache"] is True and "roar" not in doc


@pytest.mark.parametrize("args, message", [
    (["--preset", "paper"], "--data cifar10:"),
    (["--preset", "paper", "--data", "mnist:{tmp}"], "needs --data cifar10"),
    (["--preset", "paper", "--data", "{tmp}"], "needs --data cifar10"),
    (["--quick", "--preset", "paper"], "--quick is --preset quick"),
    (["--data", "imagenet21k:/x"], "unknown dataset"),
    (["--data", "cifar10:{tmp}", "--model-seeds", "0,1", "--weights", "{tmp}/w.pt"],
     "--model-seeds"),
])
def test_data_and_preset_errors(tmp_path, capsys, args, message):
    (tmp_path / "w.pt").write_bytes(b"")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    rc = cli.main(["benchmark", "--out", str(tmp_path / "o")] + args + TINY)
    assert rc == 2 and message in capsys.readouterr().err


def test_missing_dataset_files_say_what_to_put_where(tmp_path, capsys):
    rc = cli.main(["benchmark", "--data", f"cifar10:{tmp_path}", "--out", str(tmp_path / "o"),
                   "--benchmarks", "perturbation"] + TINY)
    err = capsys.readouterr().err
    assert rc == 2 and "cifar-10-batches-py" in err and str(tmp_path) in err
