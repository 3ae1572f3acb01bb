"""--sparsity auto: the commands' sparsity type and the method registry pass it through."""
import argparse

import pytest
import torch

from captum_prune import PrunedGradient
from captum_prune.cli import attribute
from captum_prune.cli._common import check_sparsity, parse_sparsity
from captum_prune.cli.errors import CommandError
from captum_prune.cli.methods import build_methods
from captum_prune.integrations.insights import _percent_to_fraction
from captum_prune.zoo.models import build_digits_model


def test_sparsity_option_accepts_auto():
    parser = argparse.ArgumentParser()
    attribute.add_arguments(parser)
    base = ["--out", "x", "--method", "PrunedGradient", "--sparsity"]
    assert parser.parse_args(base + ["auto"]).sparsity == "auto"
    assert parser.parse_args(base + ["0.9"]).sparsity == 0.9
    assert check_sparsity(parse_sparsity("auto")) == "auto"
    with pytest.raises(CommandError, match="--sparsity must be in"):
        check_sparsity(parse_sparsity("1.5"))
    assert _percent_to_fraction("auto") == "auto"  # Insights passes it through


@pytest.mark.filterwarnings("ignore:PrunedGradient. the pruned network no longer depends")
def test_registry_builds_auto():
    model = build_digits_model(seed=0).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    explain = build_methods(["PrunedGradient"], sparsity="auto")["PrunedGradient"](model)
    target = torch.tensor([1, 2])
    expected = PrunedGradient(model).attribute(x, target=target, sparsity="auto")
    assert torch.equal(explain(x, target), expected)
    with pytest.raises(ValueError, match="sparsity must be in"):
        build_methods(["PrunedGradient"], sparsity=1.0)
