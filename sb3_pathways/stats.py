"""Reading a model's pathways: masks, per-network and per-layer counts, logger records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch as th
from stable_baselines3.common.logger import Logger

from sb3_pathways.deploy.flops import forward_flops
from sb3_pathways.policies import pathway_policy


@dataclass
class LayerStats:
    """Active and total weights of one masked layer (of one pathway) and its forward FLOPs
    per sample, dense and through the pathway."""

    total: int
    active: int
    flops_dense: int = 0
    flops_pathway: int = 0

    @property
    def sparsity(self) -> float:
        return 1.0 - self.active / self.total if self.total else 0.0

    @property
    def flops_ratio(self) -> float:
        """Pathway forward FLOPs over dense forward FLOPs."""
        return self.flops_pathway / self.flops_dense if self.flops_dense else 1.0


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
    Total and active weights, sparsity and forward FLOPs (dense and pathway) per network and
    per layer.

    :param model: an SB3 model with a pathway policy, or the policy itself
    :param pathway: which pathway (task) of a multi-pathway policy
    :return: network name -> :class:`NetworkStats`
    """
    policy = pathway_policy(model, "pathway_stats")
    flops = forward_flops(policy, pathway)
    stats = {}
    for name, network in policy.pathways().items():
        layers = {
            layer_name: LayerStats(
                mask[pathway].numel(),
                int(mask[pathway].sum()),
                flops[name][layer_name].dense,
                flops[name][layer_name].pathway,
            )
            for layer_name, mask in network.masks().items()
        }
        stats[name] = NetworkStats(
            total=sum(layer.total for layer in layers.values()),
            active=sum(layer.active for layer in layers.values()),
            flops_dense=sum(layer.flops_dense for layer in layers.values()),
            flops_pathway=sum(layer.flops_pathway for layer in layers.values()),
            layers=layers,
        )
    return stats


def format_pathway_stats(stats: dict[str, NetworkStats]) -> str:
    """A plain-text table of :func:`pathway_stats`, one row per layer and per network."""
    rows = [("layer", "active", "total", "sparsity", "FLOPs ratio")]
    for network_name, network in stats.items():
        for name, entry in [*((f"  {n}", layer) for n, layer in network.layers.items()), (network_name, network)]:
            rows.append((name, str(entry.active), str(entry.total), f"{entry.sparsity:.2%}", f"{entry.flops_ratio:.3f}"))
    return "\n".join(format_table(rows))


def format_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as aligned text lines: the first column left-aligned, the others right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths)))
        for row in rows
    ]


def pathway_records(model: Any) -> dict[str, float]:
    """``pathways/<network>/sparsity``, ``pathways/<network>/active`` and
    ``pathways/flops_ratio`` (forward FLOPs of all pathways over dense), as logger keys."""
    stats = pathway_stats(model)
    records: dict[str, float] = {}
    for name, network in stats.items():
        records[f"pathways/{name}/sparsity"] = network.sparsity
        records[f"pathways/{name}/active"] = network.active
    dense = sum(network.flops_dense for network in stats.values())
    records["pathways/flops_ratio"] = sum(network.flops_pathway for network in stats.values()) / max(dense, 1)
    return records


def record_pathway_stats(logger: Logger, model: Any) -> None:
    """Record :func:`pathway_records` in an SB3 logger."""
    for key, value in pathway_records(model).items():
        logger.record(key, value)
