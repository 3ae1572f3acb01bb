"""The repr of a Pathway is a short summary, not every tensor it holds."""
import torch

from captum_prune import PrunedGradient


def test_pathway_repr_is_short_and_names_what_matters(bias_free_net, images16):
    path = PrunedGradient(bias_free_net).pathway(images16, target=1, sparsity=0.7)
    text = repr(path)
    assert text.startswith("Pathway(3 inputs, ") and len(text) < 400
    assert "kept_fraction=[" in text and "pruned_target=[" in text
    assert str(path) == text and "tensor(" not in text
    assert isinstance(path.masks[0], torch.Tensor)  # the data itself is unchanged
