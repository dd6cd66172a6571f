"""Reading a model's pathways: masks, per-network and per-layer counts, logger records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch as th
from stable_baselines3.common.logger import Logger

from sb3_pathways.policies import pathway_policy


@dataclass
class LayerStats:
    """Active and total weights of one masked layer (of one pathway)."""

    total: int
    active: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.active / self.total if self.total else 0.0


@dataclass
class NetworkStats(LayerStats):
    """Active and total weights of one network, with its layers."""

    layers: dict[str, LayerStats] = field(default_factory=dict)


def get_masks(model: Any, pathway: int | None = None) -> dict[str, th.Tensor]:
    """
    The bool mask of every masked weight of a pathway policy, keyed by the weight's qualified
    name in the policy (e.g. ``"critic.qf0.0.weight"``) and shaped like the weight. Target
    networks share their online network's masks and are not listed.

    :param model: an SB3 model with a pathway policy, or the policy itself
    :param pathway: which pathway (task) for a multi-pathway policy; ``None`` for a
        single-pathway policy gives the masks shaped like the weights, and for a
        multi-pathway policy the masks with their leading pathway dimension
    :return: qualified weight name -> bool mask (a copy)
    """
    policy = pathway_policy(model, "get_masks")
    masks = {}
    for network in policy.pathways().values():
        for name, mask in network.masks().items():
            if pathway is not None:
                masks[name] = mask[pathway].clone()
            elif mask.shape[0] == 1:
                masks[name] = mask[0].clone()
            else:
                masks[name] = mask.clone()
    return masks


def pathway_stats(model: Any, pathway: int = 0) -> dict[str, NetworkStats]:
    """
    Total and active weights and sparsity per network and per layer.

    :param model: an SB3 model with a pathway policy, or the policy itself
    :param pathway: which pathway (task) of a multi-pathway policy
    :return: network name -> :class:`NetworkStats`
    """
    policy = pathway_policy(model, "pathway_stats")
    stats = {}
    for name, network in policy.pathways().items():
        layers = {
            layer_name: LayerStats(mask[pathway].numel(), int(mask[pathway].sum()))
            for layer_name, mask in network.masks().items()
        }
        stats[name] = NetworkStats(
            total=sum(layer.total for layer in layers.values()),
            active=sum(layer.active for layer in layers.values()),
            layers=layers,
        )
    return stats


def format_pathway_stats(stats: dict[str, NetworkStats]) -> str:
    """A plain-text table of :func:`pathway_stats`, one row per layer and per network."""
    rows = [("layer", "active", "total", "sparsity")]
    for network_name, network in stats.items():
        for layer_name, layer in network.layers.items():
            rows.append((f"  {layer_name}", str(layer.active), str(layer.total), f"{layer.sparsity:.2%}"))
        rows.append((network_name, str(network.active), str(network.total), f"{network.sparsity:.2%}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths)))
        for row in rows
    ]
    return "\n".join(lines)


def record_pathway_stats(logger: Logger, model: Any) -> None:
    """Record ``pathways/<network>/sparsity`` and ``pathways/<network>/active`` in an SB3 logger."""
    for name, network in pathway_stats(model).items():
        logger.record(f"pathways/{name}/sparsity", network.sparsity)
        logger.record(f"pathways/{name}/active", network.active)
