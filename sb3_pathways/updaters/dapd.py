"""DAPD mask selection: normalised scores, K-step moving average, global top-k."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch as th

from sb3_pathways.masking.pathway import NetworkPathway


def normalise(scores: dict[str, th.Tensor]) -> th.Tensor:
    """A network's layer scores as one flat vector summing to 1 (all zeros if they sum to 0)."""
    flat = th.cat([score.reshape(-1) for score in scores.values()]).float()
    total = flat.sum()
    return flat / total if total > 0 else flat


@dataclass
class DiscoveryState:
    """
    What pathway discovery has done so far; stored on the model (``model.pathway_discovery``)
    so that it travels in the model zip and a resumed run continues where it stopped.

    :param n_updates: mask updates done (the initial discovery included)
    :param initialised: whether the initial pathway was discovered
    :param frozen: whether the masks are frozen
    :param frozen_step: environment step at which they froze
    :param threshold_step: step at which the freeze threshold was first reached
    :param last_update_step: environment step of the last update
    :param score_history: network name -> the last normalised score vectors (CPU), oldest first
    """

    n_updates: int = 0
    initialised: bool = False
    frozen: bool = False
    frozen_step: int | None = None
    threshold_step: int | None = None
    last_update_step: int = 0
    score_history: dict[str, list[th.Tensor]] = field(default_factory=dict)

    def push_scores(self, network: str, normalised: th.Tensor, moving_average: int) -> th.Tensor:
        """Add a normalised score vector and return the mean of the last ``moving_average``."""
        history = self.score_history.setdefault(network, [])
        history.append(normalised.detach().cpu())
        del history[:-moving_average]
        return th.stack(history).mean(dim=0)


def dapd_masks(network: NetworkPathway, averaged: th.Tensor) -> dict[str, th.Tensor] | None:
    """
    The top-k of ``averaged`` over the network's layers (per selection group), or ``None``
    when a k-th score is zero (too few weights carry signal: the previous mask stays).

    :param network: the network's pathway (gives k, the layer shapes and groups)
    :param averaged: flat averaged score vector, layers in ``network.layers`` order
    """
    shapes = [layer.weight.shape for layer in network.layers.values()]
    parts = averaged.to(next(iter(network.layers.values())).weight.device).split([s.numel() for s in shapes])
    scores = {name: part.view(shape) for name, part, shape in zip(network.layers, parts, shapes)}
    return network.top_k(scores, require_positive=True)
