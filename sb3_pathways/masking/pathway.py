"""A network's pathway: its masked layers, the target layers that follow them, one mask
update entry point that keeps masks, live weights, targets and optimizer state consistent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch as th

from sb3_pathways.masking.layers import MaskedWeightMixin, MultiTaskMaskedLinear
from sb3_pathways.masking.optimizer_state import update_optimizer_state
from sb3_pathways.masking.selection import (
    SCORE_ALLOCATIONS,
    balanced_scores,
    check_covers_inputs,
    check_selection,
    guaranteed_connections,
    keep_count,
    layer_budgets,
    per_unit_top_k,
    proportional_budgets,
    top_k_masks,
)


@dataclass
class NetworkPathway:
    """
    The masked layers of one network of a policy (e.g. SAC's ``"critic"``).

    :param name: network name (``"actor"``, ``"critic"``, ``"q_net"``, ...)
    :param keep_ratio: share of the network's prunable weights that is active (1 - sparsity)
    :param layers: masked layers, keyed by the qualified name of their weight in the policy
    :param followers: for a layer name, the target-network layers that use the same mask
    :param optimizers: optimizers that hold the network's weights (their state follows mask
        changes, see :mod:`sb3_pathways.masking.optimizer_state`)
    :param groups: layer names of each ensemble member (e.g. each of SAC's twin Q-networks);
        score-based selection keeps a share of k proportional to each group's size and takes
        the top-k within it, so no member can lose all its weights to another. Empty: one
        group of all layers (global top-k across the network).
    """

    name: str
    keep_ratio: float
    layers: dict[str, MaskedWeightMixin]
    followers: dict[str, list[MaskedWeightMixin]] = field(default_factory=dict)
    optimizers: list[th.optim.Optimizer] = field(default_factory=list)
    groups: list[list[str]] = field(default_factory=list)

    @property
    def n_prunable(self) -> int:
        return sum(layer.weight.numel() for layer in self.layers.values())

    @property
    def n_keep(self) -> int:
        """k: active weights per pathway."""
        return keep_count(self.n_prunable, self.keep_ratio)

    @property
    def n_pathways(self) -> int:
        return next(iter(self.layers.values())).n_pathways

    def selection_groups(self, pooled: bool = False) -> list[list[str]]:
        """Layer names of each selection group (one group of all layers by default, or when
        ``pooled``)."""
        return [list(self.layers)] if pooled or not self.groups else self.groups

    def group_budgets(self, keep: int | None = None, pooled: bool = False) -> list[int]:
        """Active weights per selection group, proportional to size, summing exactly to
        ``keep`` (default k)."""
        sizes = [sum(self.layers[name].weight.numel() for name in group) for group in self.selection_groups(pooled)]
        return proportional_budgets(sizes, self.n_keep if keep is None else keep)

    def top_k(
        self,
        scores: Mapping[str, th.Tensor],
        require_positive: bool = False,
        allocation: str = "global",
        keep: int | None = None,
        within_layer: str = "top_k",
        cover_inputs: bool = False,
    ) -> dict[str, th.Tensor] | None:
        """
        Masks of the highest scores, every output unit keeping its highest-scoring input,
        exactly k active in all.

        :param scores: layer name -> score tensor shaped like the weight
        :param require_positive: return ``None`` if a group's k-th highest score is not
            positive (too few weights carry signal to choose from)
        :param allocation: ``"global"`` (one top-k across the layers of each selection group:
            the scores decide each layer's share), ``"pooled"`` (one top-k across every layer
            of the network, its selection groups pooled, as the DAPD reference selects over
            SAC's twin Q-networks; every output unit still keeps an input) or a layer distribution of
            :func:`~sb3_pathways.masking.selection.layer_budgets` (``"random"``: the same share
            of every layer, ``"erk"``), the top-k then taken within each layer
        :param keep: active weights in all (default k; a schedule that ramps the sparsity
            passes its own)
        :param within_layer: ``"top_k"`` (a layer's highest scores), ``"per_unit"`` (every
            output unit of a layer the same number of inputs, its highest-scoring ones; see
            :func:`~sb3_pathways.masking.selection.per_unit_top_k`) or ``"balanced"`` (the
            highest of the layer's scores balanced over its units, see
            :func:`~sb3_pathways.masking.selection.balanced_scores`), once the layer's share is set
        :param cover_inputs: every input unit of every layer also keeps its highest-scoring
            output (the observation features included), not with ``within_layer="per_unit"``
        :return: layer name -> bool mask
        """
        check_selection(allocation, within_layer, cover_inputs)
        masks: dict[str, th.Tensor] = {}
        pooled = allocation == "pooled"
        for group, budget in zip(self.selection_groups(pooled), self.group_budgets(keep, pooled)):
            group_scores = [scores[name] for name in group]
            if require_positive:
                flat = th.cat([score.reshape(-1) for score in group_scores])
                if th.topk(flat, budget, sorted=False).values.min() <= 0:
                    return None
            if allocation in SCORE_ALLOCATIONS:
                selected = top_k_masks(group_scores, budget, cover_inputs)
                if within_layer == "top_k":
                    masks.update(zip(group, selected))
                    continue
                counts = [int(mask.sum()) for mask in selected]
            if within_layer == "balanced":
                # once the layer shares are set, only the order within each layer matters
                group_scores = [balanced_scores(score) for score in group_scores]
            if allocation not in SCORE_ALLOCATIONS:
                floors = None
                if cover_inputs:
                    guaranteed = [guaranteed_connections(score, cover_inputs=True) for score in group_scores]
                    check_covers_inputs(guaranteed, budget)
                    floors = [int(kept.sum()) for kept in guaranteed]
                counts = layer_budgets([score.shape for score in group_scores], budget, allocation, floors)
            choose = (
                per_unit_top_k
                if within_layer == "per_unit"
                else lambda score, count: top_k_masks([score], count, cover_inputs)[0]
            )
            masks.update((name, choose(score, count)) for name, score, count in zip(group, group_scores, counts))
        return masks

    def masks(self) -> dict[str, th.Tensor]:
        """Current masks, shaped ``(n_pathways, *weight.shape)``."""
        return {name: layer.weight_mask for name, layer in self.layers.items()}

    def full_weights(self) -> dict[str, th.Tensor]:
        """θ of every layer: live values of active weights, stored values of dormant ones."""
        return {name: layer.full_weight() for name, layer in self.layers.items()}

    @th.no_grad()
    def set_masks(
        self, masks: Mapping[str, th.Tensor], grown_value: float | None = None, optimizer_state: str = "reset"
    ) -> float:
        """
        Install new masks in the network and its target copies and update the optimizer
        state of every weight that changed state.

        :param masks: one bool mask per layer name, shaped like the weight (single pathway)
            or ``(n_pathways, *weight.shape)``
        :param grown_value: value given to weights that join the pathway (``None``: their
            stored value, as DAPD; ``0.0``: start at zero, as SET and RigL)
        :param optimizer_state: ``"reset"`` (weights that change state start with fresh
            optimizer statistics, Adam's bias correction included) or ``"keep"`` (as the DAPD
            reference: statistics kept; only the momentum of leaving weights is zeroed), see
            :mod:`sb3_pathways.masking.optimizer_state`
        :return: share of the previously active weights that were replaced
        """
        unknown = set(masks) - set(self.layers)
        if unknown:
            raise KeyError(f"unknown layers for network {self.name!r}: {sorted(unknown)}")
        replaced = 0
        previously_active = 0
        transitions: dict[th.Tensor, tuple[th.Tensor, th.Tensor]] = {}
        for name, mask in masks.items():
            layer = self.layers[name]
            old = layer.active_mask.clone()
            old_masks = layer.weight_mask.clone()
            layer.set_mask(mask.to(layer.weight_mask.device))
            new = layer.active_mask
            replaced += int((old & ~new).sum())
            previously_active += int(old.sum())
            transitions[layer.weight] = (old, new)
            if layer.independent:
                transitions[layer.scored_weight()] = (old_masks, layer.weight_mask)
            followers = self.followers.get(name, [])
            for follower in followers:
                follower.set_mask(layer.weight_mask)
            if grown_value is not None:
                for grown_layer in [layer, *followers]:
                    grown_layer.set_full_weight(th.where(new & ~old, grown_value, grown_layer.full_weight()))
        update_optimizer_state(self.optimizers, transitions, optimizer_state)
        return replaced / max(previously_active, 1)


def merge_task_weights(network: NetworkPathway) -> None:
    """Merge the per-task weight copies of a multi-task network (and its targets) into its
    shared weights (see :meth:`~sb3_pathways.masking.layers.MultiTaskMaskedLinear.merge_task_weights`);
    the optimizer state of the copies is dropped with them."""
    for name, layer in network.layers.items():
        for merged_layer in [layer, *network.followers.get(name, [])]:
            if isinstance(merged_layer, MultiTaskMaskedLinear):
                for optimizer in network.optimizers:
                    optimizer.state.pop(merged_layer.task_weight, None)  # the copies' Adam moments
                merged_layer.merge_task_weights()
