"""Small analytic models shared by the evaluation tests."""
import torch


class LinearPixelModel(torch.nn.Module):
    r"""Two classes; logit 0 is ``sum(weights * x)`` (a known linear function of some pixels),
    logit 1 is its negative."""

    def __init__(self, weights):
        super().__init__()
        self.register_buffer("weights", weights.float())

    def forward(self, x):
        z = (x * self.weights).flatten(1).sum(1)
        return torch.stack([z, -z], dim=1)
