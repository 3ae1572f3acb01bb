"""The paper's CIFAR ResNet-8, its training recipe and cache, and the paper preset, on tiny
stand-ins written in torchvision's CIFAR-10 format."""
from collections import Counter
from dataclasses import replace

import pytest
import torch
from torch import nn

from captum_prune.cli.methods import build_methods
from captum_prune.evaluation import pixel_perturbation, remove_and_retrain
from captum_prune.zoo.models import CifarResNet8, describe_model, model_factory
from captum_prune.zoo.presets import PAPER, SCENE, load_scene_model, prepare_paper
from captum_prune.zoo.training import (
    CifarRecipe,
    data_fingerprint,
    load_or_train_cifar_model,
    stratified_holdout,
    train_with_cifar_recipe,
)
from tests.zoo import standins


def test_resnet8_is_roartorchs_layout_and_fully_convolutional():
    model = CifarResNet8()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # stem + 2 per block + 2 shortcut 1x1 convolutions (stages 2 and 3)
    assert len(convs) == 1 + 3 * 2 + 2
    assert [c.out_channels for c in convs if c.kernel_size == (3, 3)] == [64, 64, 64, 128, 128,
                                                                          256, 256]
    assert [c.stride for c in convs if c.kernel_size == (1, 1)] == [(2, 2), (2, 2)]
    assert sum(p.numel() for p in model.parameters()) == 1227594
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)  # a 2 x 2 grid
    calls = Counter()
    for name, module in model.named_modules():
        if isinstance(module, nn.ReLU):
            module.register_forward_hook(lambda m, i, o, name=name: calls.update([name]))
    model(torch.zeros(1, 3, 32, 32))
    assert calls == {"relu": 1, "layer1.relu": 2, "layer2.relu": 2, "layer3.relu": 2}
    assert describe_model(model).startswith("CifarResNet8, widths (64, 128, 256)")


def test_model_factory_builds_resnet8_seeded_with_channels_and_classes():
    fresh = model_factory("resnet8", 100, in_channels=1)
    a, b = fresh(3), fresh(3)
    assert isinstance(a, CifarResNet8) and a(torch.zeros(2, 1, 28, 28)).shape == (2, 100)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.conv1.weight, fresh(4).conv1.weight)
    with pytest.raises(ValueError, match="resnet8"):
        model_factory("resnet9", 10)


def test_stratified_holdout_is_roartorchs_per_class_split():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1, 0, 0])
    train, val = stratified_holdout(labels, 0.25)
    # class 0 (6 examples): first int(0.75 * 6) = 4 train; class 1 (4): first 3 train.
    assert train.tolist() == [0, 1, 2, 3, 4, 5, 6] and val.tolist() == [7, 8, 9]
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_holdout(labels, 1.0)


def _toy(n=48, size=16, classes=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randn(n, 3, size, size, generator=gen) * 0.5
    images += (labels.float() - 1.5).view(-1, 1, 1, 1)  # learnable from the mean colour
    return images, labels


def test_recipe_defaults_are_the_authors():
    r = CifarRecipe()
    assert (r.lr, r.weight_decay, r.step_size, r.gamma, r.batch_size, r.epochs) == (
        1e-3, 1e-4, 10, 0.5, 256, 50)
    assert (r.crop_padding, r.flip, r.val_fraction) == (4, True, 0.125)


def test_training_is_deterministic_learns_steps_the_lr_and_keeps_threads(monkeypatch):
    images, labels = _toy()
    recipe = CifarRecipe(epochs=3, batch_size=8, step_size=1, gamma=0.5, lr=3e-3)
    model = model_factory("resnet8", 4)(0)
    threads = torch.get_num_threads()
    rng = torch.random.get_rng_state()
    lrs = []
    original = torch.optim.lr_scheduler.StepLR.step

    def record(self, *args, **kwargs):
        lrs.append(self.optimizer.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.lr_scheduler.StepLR, "step", record)
    a, info = train_with_cifar_recipe(model, images, labels, recipe, progress=False)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), rng)
    # StepLR once per epoch (plus the one at construction): 3e-3, 1.5e-3, 7.5e-4.
    assert lrs[1:] == pytest.approx([3e-3, 1.5e-3, 7.5e-4])
    assert info["n_train"] == 40 and info["n_val"] == 8 and len(info["val_accuracy"]) == 3
    assert info["val_accuracy"][info["best_epoch"] - 1] == max(info["val_accuracy"])
    b, _ = train_with_cifar_recipe(model_factory("resnet8", 4)(0), images, labels, recipe,
                                   progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                 b.state_dict().values()))
    assert not a.training and next(a.parameters()).device.type == "cpu"


def test_cache_round_trip_and_key(tmp_path):
    images, labels = _toy(n=16, size=8)
    recipe = CifarRecipe(epochs=1, batch_size=8, val_fraction=0.0)
    fresh = model_factory("resnet8", 4)
    model, info = load_or_train_cifar_model(fresh, images, labels, recipe, cache_dir=tmp_path,
                                            progress=False)
    assert not info["from_cache"] and info["path"].startswith(str(tmp_path))
    again, info2 = load_or_train_cifar_model(fresh, images, labels, recipe, cache_dir=tmp_path,
                                             progress=False)
    assert info2["from_cache"] and info2["key"] == info["key"]
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(),
                                                 again.state_dict().values()))
    # Other data or another recipe: another key.
    assert data_fingerprint(images, labels) != data_fingerprint(images + 1, labels)
    assert recipe.key("a", "resnet8") != recipe.key("b", "resnet8")
    assert recipe.key("a", "resnet8") != CifarRecipe(epochs=2).key("a", "resnet8")
    with pytest.warns(UserWarning, match="unreadable"):
        open(info["path"], "wb").write(b"junk")
        _, info3 = load_or_train_cifar_model(fresh, images, labels, recipe,
                                             cache_dir=tmp_path, progress=False)
    assert not info3["from_cache"]


def test_paper_preset_is_the_papers_protocol():
    assert PAPER.data == "cifar10" and PAPER.model == "resnet8"
    assert PAPER.lerf_fractions == (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1)
    assert PAPER.roar_fractions == (0.1, 0.3, 0.5, 0.7, 0.9) and PAPER.roar_seeds == (0,)
    assert PAPER.recipe == CifarRecipe()
    assert set(PAPER.methods) <= set(build_methods(PAPER.methods))
    quick = PAPER.with_overrides(epochs=1, n_train=8)
    assert quick.recipe.epochs == 1 and quick.n_train == 8 and quick.recipe.lr == 1e-3
    with pytest.raises(ValueError, match="unknown preset fields"):
        PAPER.with_overrides(epoch=1)
    assert SCENE.roar_fractions == (0.01, 0.02, 0.05, 0.1, 0.2)


def test_paper_preset_end_to_end_on_a_cifar10_standin(tmp_path):
    standins.write_cifar10(tmp_path / "data", n_per_batch=8, n_test=8)
    preset = PAPER.with_overrides(epochs=1, batch_size=16, lerf_fractions=(0.05, 0.1),
                                  roar_fractions=(0.5,), methods=("PrunedGradient", "Saliency"))
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        prepare_paper(tmp_path / "nothing", preset, cache_dir=tmp_path / "cache")
    setup = prepare_paper(tmp_path / "data", preset, cache_dir=tmp_path / "cache",
                          verify=False, progress=False)
    assert setup.train_images.shape == (40, 3, 32, 32) and setup.test_images.shape[0] == 8
    assert setup.info["n_train"] == 40 - setup.info["n_val"] and not setup.info["from_cache"]
    assert torch.allclose(setup.pad_value, -torch.tensor(setup.train.mean)
                          / torch.tensor(setup.train.std))
    factories = build_methods(preset.methods, sparsity=preset.sparsity)
    target = setup.model(setup.test_images).argmax(1)
    for factory in factories.values():
        explain = factory(setup.model)
        lerf = pixel_perturbation(setup.model, setup.test_images, explain(setup.test_images,
                                                                          target),
                                  target=target, fractions=preset.lerf_fractions,
                                  baseline=preset.lerf_baseline)
        assert lerf.changes.shape == (8, 2) and torch.isfinite(lerf.changes).all()
    # ROAR for one method: its retraining is the preset's recipe.
    train_maps = explain(setup.train_images, setup.model(setup.train_images).argmax(1))
    roar = remove_and_retrain(setup.train_images, setup.train_labels, setup.test_images,
                              setup.test_labels, train_maps, explain(setup.test_images, target),
                              setup.retrain, fractions=preset.roar_fractions,
                              seeds=preset.roar_seeds, baseline=0.0)
    assert roar.accuracy.shape == (2, 1) and ((roar.accuracy >= 0) & (roar.accuracy <= 1)).all()
    again = prepare_paper(tmp_path / "data", preset, cache_dir=tmp_path / "cache",
                          verify=False, progress=False)
    assert again.info["from_cache"]


def test_scene_preset_model_is_cached_by_its_key(tmp_path):
    quick = replace(SCENE, canvas_size=32, digit_size=16, distractor_size=8, n_distractors=1,
                    widths=(4, 8, 8), epochs=1)
    assert quick.key() != SCENE.key()
    assert replace(SCENE, n_eval=10, roar_fractions=(0.5,)).key() == SCENE.key()
    model, info = load_scene_model(quick, cache_dir=tmp_path, progress=False)
    assert not info["from_cache"] and info["path"].endswith(f"digits_scene_{quick.key()}.pt")
    assert 0 <= info["test_accuracy"] <= 1 and info["preset"]["canvas_size"] == 32
    again, info2 = load_scene_model(quick, cache_dir=tmp_path, progress=False)
    assert info2["from_cache"] and not again.training
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(),
                                                 again.state_dict().values()))
    assert quick.data("test").images.shape == (360, 3, 32, 32)
    with pytest.raises(TypeError, match="ScenePreset"):
        load_scene_model(PAPER)
