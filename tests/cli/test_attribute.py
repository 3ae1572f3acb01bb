"""``captum-prune attribute``: on the embedded data and an ImageFolder, resumption, and one-line
errors for user mistakes."""
import pytest
import torch
import torchvision
from PIL import Image

from captum_prune import MapStore, cli
from captum_prune.zoo.training import DigitsRecipe

QUIET = ["--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "digits.pt"
    torch.manual_seed(0)
    torch.save(DigitsRecipe().build_model().state_dict(), path)
    return path


def _attribute(*args):
    return cli.main(["attribute"] + [str(a) for a in args] + QUIET)


def test_embedded_data_resume_and_refusal(weights, tmp_path, capsys):
    out = tmp_path / "maps"
    assert _attribute("--method", "Saliency", "--out", out, "--weights", weights, "--limit", 20,
                      "--batch-size", 8, "--shard-size", 8, "--split", "test", "--float16") == 0
    printed = capsys.readouterr().out
    assert "20 maps of Saliency" in printed and "computed 20, skipped 0" in printed
    assert "images/s with 1 process(es)" in printed
    store = MapStore(out)
    assert store.complete and len(store.shards) == 3 and store[19].dtype == torch.float16
    assert store[19].shape == (3, 32, 32)
    (out / "shard-000001.pt").unlink()
    assert _attribute("--method", "saliency", "--out", out, "--weights", weights, "--limit", 20,
                      "--batch-size", 8, "--shard-size", 8, "--split", "test", "--float16") == 0
    assert "computed 8, skipped 12" in capsys.readouterr().out
    # A changed argument is refused in one line.
    assert _attribute("--method", "Saliency", "--out", out, "--weights", weights, "--limit", 20,
                      "--batch-size", 4, "--shard-size", 8, "--split", "test", "--float16") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batch_size: stored 8, now 4" in err[0]


def test_image_folder_with_a_torchvision_model(tmp_path, capsys):
    root = tmp_path / "images"
    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                pixels = (torch.rand(20, 20, 3, generator=g) * 255).byte().numpy()
                Image.fromarray(pixels).save(root / split / c / f"{i}.png")
    weights = tmp_path / "r18.pt"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), weights)
    out = tmp_path / "maps"
    assert _attribute("--method", "PrunedGradient", "--out", out, "--data", root, "--split",
                      "test", "--model", "resnet18", "--weights", weights, "--image-size", 16,
                      "--target", "label", "--sparsity", "0.5") == 0
    store = MapStore(out)
    assert len(store) == 6 and store[5].shape == (3, 16, 16)
    assert store.targets().tolist() == [0, 0, 0, 1, 1, 1]
    assert "sparsity 0.5" in store.metadata["method"]["name"]


@pytest.mark.parametrize("args, message", [
    (["--method", "Nope"], "--method: unknown method(s) ['Nope']"),
    (["--method", "Saliency,GradCAM"], "--method takes one method"),
    (["--method", "Saliency", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--method", "Saliency", "--weights", "missing.pt"], "--weights missing.pt: no such file"),
    (["--method", "Saliency", "--data", "no-such-folder"], "--data no-such-folder: no such folder"),
    (["--method", "Saliency", "--model", "resnet18"], "--model resnet18 needs --weights"),
    (["--method", "Saliency", "--target", "top"], "--target must be 'predicted', 'label'"),
    (["--method", "PrunedGradient", "--sparsity", "1.5"], "--sparsity must be in [0, 1)"),
    (["--method", "Saliency", "--device", "tpu"], "--device: unknown device 'tpu'"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, capsys, args, message):
    assert _attribute(*(args + ["--out", tmp_path / "maps"])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("captum-prune attribute: error: ")
    assert message in err[0]
    assert not (tmp_path / "maps").exists()


def test_weights_that_do_not_fit_and_an_out_file(weights, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    torch.save({"x": torch.zeros(1)}, bad)
    assert _attribute("--method", "Saliency", "--out", tmp_path / "m", "--weights", bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit the model" in err[0]
    (tmp_path / "file").write_text("")
    assert _attribute("--method", "Saliency", "--out", tmp_path / "file", "--weights",
                      weights) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_torchrun_command_equals_one_process(weights, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.maps._compare import assert_same_store

    common = ["--method", "PrunedGradient", "--weights", weights, "--limit", 24,
              "--batch-size", 4, "--shard-size", 8, "--split", "test"]
    assert _attribute(*(common + ["--out", tmp_path / "one"])) == 0
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         "-m", "captum_prune", "attribute", "--out", str(tmp_path / "two")]
        + [str(a) for a in common] + QUIET,
        cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "images/s with 2 process(es), 1 thread(s) each" in done.stdout
    assert done.stdout.count("images/s") == 1  # rank 0 reports
    assert_same_store(tmp_path / "one", tmp_path / "two")
