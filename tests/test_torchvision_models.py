"""Every torchvision classifier family runs with random weights and small inputs."""
import pytest
import torch
import torchvision.models as tvm
from captum.attr import Saliency
from torchvision.models.googlenet import BasicConv2d as GoogLeNetConv

from captum_prune import PrunedGradient, find_activation_layers

FAMILIES = {
    "resnet18": (lambda: tvm.resnet18(num_classes=10), 32),
    "vgg11_bn": (lambda: tvm.vgg11_bn(num_classes=10), 32),
    "alexnet": (lambda: tvm.alexnet(num_classes=10), 64),
    "squeezenet": (lambda: tvm.squeezenet1_1(num_classes=10), 32),
    "densenet121": (lambda: tvm.densenet121(num_classes=10), 32),
    "mobilenet_v2": (lambda: tvm.mobilenet_v2(num_classes=10), 32),
    "mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(num_classes=10), 32),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(num_classes=10), 32),
    "shufflenet": (lambda: tvm.shufflenet_v2_x0_5(num_classes=10), 32),
    "mnasnet": (lambda: tvm.mnasnet0_5(num_classes=10), 32),
    "regnet": (lambda: tvm.regnet_y_400mf(num_classes=10), 32),
    "convnext": (
        lambda: tvm.ConvNeXt(
            [tvm.convnext.CNBlockConfig(16, 32, 1), tvm.convnext.CNBlockConfig(32, None, 1)],
            num_classes=10,
        ),
        32,
    ),
    "vit": (
        lambda: tvm.VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
            mlp_dim=64, num_classes=10,
        ),
        32,
    ),
    "swin": (
        lambda: tvm.SwinTransformer(
            patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 2],
            window_size=[4, 4], num_classes=10,
        ),
        32,
    ),
}


def _wake_up(model):
    """Some random inits make a network (almost) ignore its hidden units: ViT's zero head,
    ConvNeXt's 1e-6 layer scale. Give those parameters ordinary values."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, tvm.convnext.CNBlock):
                module.layer_scale.fill_(1.0)
            if isinstance(module, tvm.vision_transformer.VisionTransformer):
                torch.nn.init.normal_(module.heads.head.weight, std=0.5)
    return model


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family(name):
    factory, size = FAMILIES[name]
    torch.manual_seed(0)
    model = _wake_up(factory().eval())
    x = torch.randn(2, 3, size, size)
    assert find_activation_layers(model), "no default neuron layers found"
    pg = PrunedGradient(model)
    plain = Saliency(model).attribute(x, target=[1, 2], abs=False)
    torch.testing.assert_close(pg.attribute(x, target=[1, 2], sparsity=0.0), plain)
    path = pg.pathway(x, target=[1, 2], sparsity=0.9, threshold="exact")
    expected = 1 - round(0.9 * path.num_neurons) / path.num_neurons
    assert path.kept_fraction.tolist() == pytest.approx([expected] * 2, abs=1e-6)
    attribution = pg.attribute(x, target=[1, 2], sparsity=0.9, threshold="exact")
    assert attribution.shape == x.shape and torch.isfinite(attribution).all()
    # Pruning 90% of the neurons changes the map (relative to its scale: random deep nets
    # have tiny input gradients).
    assert (attribution - plain).abs().max() > 1e-3 * plain.abs().max()
    assert all(not m._forward_hooks for m in model.modules())


def test_functional_relu_families_get_a_clear_error():
    # GoogLeNet (like Inception) calls F.relu inside BasicConv2d: no activation modules.
    model = tvm.googlenet(num_classes=10, aux_logits=False, init_weights=True).eval()
    with pytest.raises(ValueError, match="functional activations"):
        PrunedGradient(model)
    # The way out the error names: pass modules whose outputs are the neurons.
    layers = [m.bn for m in model.modules() if isinstance(m, GoogLeNetConv)]
    x = torch.randn(1, 3, 32, 32)
    attribution = PrunedGradient(model, layers=layers).attribute(x, target=0, sparsity=0.5)
    assert attribution.shape == x.shape
