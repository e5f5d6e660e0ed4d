"""What the dream maximises, as a function of the end layer's activations.

Each objective returns a scalar whose gradient with respect to the activations is the
`diff` google/deepdream's notebook writes into the end blob.
"""
from __future__ import annotations

from typing import Callable

import torch

Objective = Callable[[torch.Tensor], torch.Tensor]


def l2(acts: torch.Tensor) -> torch.Tensor:
    """Gradient = the activations: amplify whatever the layer already sees."""
    return 0.5 * (acts * acts).sum()


def guide(guide_features: torch.Tensor) -> Objective:
    """Pulls each position towards the guide feature it already resembles most."""
    y = guide_features.reshape(guide_features.shape[-3], -1)

    def objective(acts: torch.Tensor) -> torch.Tensor:
        x = acts.reshape(acts.shape[-3], -1)
        with torch.no_grad():
            best = (x.t() @ y).argmax(1)
            target = y[:, best]
        return (x * target).sum()

    return objective


OBJECTIVES = {"l2": l2, "guide": guide}
