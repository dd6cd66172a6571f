"""DAPD and one-shot SNIP: score-based selection (normalised scores, K-step moving average,
top-k)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch as th

from sb3_pathways.masking.pathway import NetworkPathway
from sb3_pathways.masking.selection import check_selection
from sb3_pathways.registry import algorithm_spec
from sb3_pathways.scoring.objectives import Objective
from sb3_pathways.scoring.sensitivity import SCORE_AT, connection_sensitivity
from sb3_pathways.updaters.base import Masks, MaskUpdater, UpdateContext
from sb3_pathways.validation import positive_int

#: the values of ``networks`` that name no network: the algorithm's choice, or every network
NETWORK_CHOICES = ("default", "all")


def normalise(scores: dict[str, th.Tensor]) -> th.Tensor:
    """A network's layer scores as one flat vector summing to 1 (all zeros if they sum to 0)."""
    flat = th.cat([score.reshape(-1) for score in scores.values()]).float()
    total = flat.sum()
    return flat / total if total > 0 else flat


def dapd_masks(
    network: NetworkPathway,
    averaged: th.Tensor,
    allocation: str = "pooled",
    within_layer: str = "top_k",
    cover_inputs: bool = False,
) -> dict[str, th.Tensor] | None:
    """
    The top-k of ``averaged`` over the network's layers (per selection group), or ``None``
    when a k-th score is zero (too few weights carry signal: the previous mask stays).

    :param network: the network's pathway (gives k, the layer shapes and groups)
    :param averaged: flat averaged score vector, layers in ``network.layers`` order
    :param allocation: how k is split among layers (see :meth:`NetworkPathway.top_k`)
    :param within_layer: how a layer's share is chosen (see :meth:`NetworkPathway.top_k`)
    :param cover_inputs: every input unit keeps a connection (see :meth:`NetworkPathway.top_k`)
    """
    shapes = [layer.weight.shape for layer in network.layers.values()]
    parts = averaged.to(next(iter(network.layers.values())).weight.device).split([s.numel() for s in shapes])
    scores = {name: part.view(shape) for name, part, shape in zip(network.layers, parts, shapes)}
    return network.top_k(
        scores, require_positive=True, allocation=allocation, within_layer=within_layer, cover_inputs=cover_inputs
    )


class DAPDUpdater(MaskUpdater):
    """
    Data Adaptive Pathway Discovery: SNIP scores with the algorithm's loss on the newest
    data, normalised per network, averaged over the last ``moving_average`` updates, top-k.

    :param moving_average: K, the number of normalised score vectors averaged
    :param score_at: ``"dense"``, ``"agent"`` or ``"masked"`` (see :func:`connection_sensitivity`)
    :param chunk_size: transitions per scoring forward pass
    :param allocation: ``"pooled"`` (one top-k per network, ensemble members pooled: the
        scores decide the layer shares), ``"global"`` (one top-k per ensemble member) or fixed
        layer shares, ``"random"`` (uniform) or ``"erk"``, with the top-k taken within each layer
    :param objective: ``(model, batch) -> {network name: loss}`` scored instead of the
        algorithm's registered objective
    :param within_layer: ``"top_k"`` (a layer's highest scores), ``"per_unit"`` (every
        output unit the same number of inputs, its highest-scoring ones) or ``"balanced"``
        (the highest scores balanced over the layer's units)
    :param cover_inputs: every input unit of every layer (each observation feature, each
        hidden unit) also keeps its highest-scoring output; not with ``within_layer="per_unit"``
    :param networks: the networks rescored: ``"default"`` (the algorithm's choice, its spec's
        ``dapd_networks``: SAC's actor; every network for the others), ``"all"``, or names of
        ``policy.pathways()`` (e.g. ``("actor",)``); the others keep their initial
        ``mask_init`` mask
    """

    def __init__(
        self,
        moving_average: int = 1,
        score_at: str = "dense",
        chunk_size: int = 2048,
        allocation: str = "pooled",
        objective: Objective | None = None,
        within_layer: str = "top_k",
        cover_inputs: bool = False,
        networks: str | Sequence[str] = "default",
    ) -> None:
        named = not isinstance(networks, str) and networks and all(isinstance(name, str) for name in networks)
        if networks not in NETWORK_CHOICES and not named:
            raise ValueError(f"networks must be one of {NETWORK_CHOICES} or a sequence of network names, got {networks!r}")
        if score_at not in SCORE_AT:
            raise ValueError(f"score_at must be one of {SCORE_AT}, got {score_at!r}")
        check_selection(allocation, within_layer, cover_inputs)
        if objective is not None and not callable(objective):
            raise TypeError(f"objective must be a callable (model, batch) -> {{network: loss}} or None, got {objective!r}")
        self.moving_average = positive_int(moving_average, "moving_average")
        self.score_at = score_at
        self.chunk_size = positive_int(chunk_size, "chunk_size")
        self.allocation = allocation
        self.within_layer = within_layer
        self.cover_inputs = cover_inputs
        self.objective = objective
        self.networks: str | tuple[str, ...] = networks if isinstance(networks, str) else tuple(networks)
        #: history key (a network, or a network's task) -> the last ``moving_average``
        #: normalised score vectors (CPU), oldest first
        self.score_history: dict[str, list[th.Tensor]] = {}

    def push_scores(self, key: str, normalised: th.Tensor) -> th.Tensor:
        """Add a normalised score vector under ``key`` and return the mean of the last
        ``moving_average`` there."""
        history = self.score_history.setdefault(key, [])
        history.append(normalised.detach().cpu())
        del history[: -self.moving_average]
        return th.stack(history).mean(dim=0)

    def state_dict(self) -> dict[str, Any]:
        return {"score_history": {key: list(history) for key, history in self.score_history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = sorted(set(state) - {"score_history"})
        if unknown:
            raise ValueError(f"{type(self).__name__} state has keys {unknown}; accepted: ['score_history']")
        saved = state.get("score_history", {})
        self.score_history = {
            key: [vector.cpu() for vector in history[-self.moving_average :]] for key, history in saved.items()
        }

    def rescored_networks(self, model: Any) -> tuple[str, ...] | None:
        """The names of the networks rescored for ``model`` (``None``: every network)."""
        if not isinstance(self.networks, str):
            return self.networks
        spec = algorithm_spec(model) if self.networks == "default" else None
        return None if spec is None else spec.dapd_networks

    def update_masks(self, context: UpdateContext) -> Masks:
        scores = connection_sensitivity(
            context.model,
            context.batch,
            self.score_at,
            self.chunk_size,
            self.objective,
            self.rescored_networks(context.model),
        )
        masks: Masks = {}
        for name, layer_scores in scores.items():
            selected = self.select(name, context.pathways[name], layer_scores)
            if selected is not None:
                masks[name] = selected
        return masks

    def select(self, history: str, network: NetworkPathway, scores: dict[str, th.Tensor]) -> dict[str, th.Tensor] | None:
        """
        One network's new masks: its scores normalised, averaged with the last
        ``moving_average`` score vectors kept under ``history``, top-k (``None``: keep the mask).
        """
        averaged = self.push_scores(history, normalise(scores))
        return dapd_masks(network, averaged, self.allocation, self.within_layer, self.cover_inputs)


class SNIPUpdater(DAPDUpdater):
    """One-shot SNIP (Lee et al., 2019): the pathway is scored once on the first data
    collected and never changes afterwards."""

    def __init__(self, score_at: str = "dense", chunk_size: int = 2048) -> None:
        super().__init__(moving_average=1, score_at=score_at, chunk_size=chunk_size)

    def update_masks(self, context: UpdateContext) -> Masks:
        if context.state.initialised:
            return {}
        return super().update_masks(context)
