"""Gradual magnitude pruning (Zhu & Gupta, "To prune, or not to prune", 2017), a standard
baseline of sparse RL studies (Graesser et al., ICML 2022).

The pathway starts at the schedule's initial sparsity (dense by default) and at every update
each network keeps its largest-magnitude weights at the schedule's current sparsity
(:meth:`~sb3_pathways.schedules.SparsitySchedule.sparsity_at`, a cubic ramp); a pruned weight
never comes back. The policy's own sparsity is reached when the schedule ends.
"""

from __future__ import annotations

import torch as th

from sb3_pathways.masking.pathway import NetworkPathway
from sb3_pathways.updaters.base import Masks, MaskUpdater, UpdateContext


def magnitude_masks(network: NetworkPathway, keep: int, full: bool) -> dict[str, th.Tensor]:
    """The ``keep`` largest weights of a network (per selection group, every output unit
    keeping its largest input), by the magnitude of θ (``full``: dormant weights at their
    stored value) or of the live weights (dormant weights at zero: they cannot return)."""
    weights = network.full_weights() if full else {name: layer.weight.detach() for name, layer in network.layers.items()}
    masks = network.top_k({name: weight.abs() for name, weight in weights.items()}, keep=keep)
    assert masks is not None
    return masks


class GradualMagnitudeUpdater(MaskUpdater):
    """
    Gradual magnitude pruning: the largest weights of each network at the schedule's
    current sparsity. Single-pathway policies only.
    """

    needs_data = False

    def _masks_at(self, context: UpdateContext, step: int, full: bool) -> Masks:
        masks: Masks = {}
        for name, network in context.pathways.items():
            if network.n_pathways != 1:
                raise ValueError("gradual magnitude pruning supports single-pathway policies (n_tasks=1)")
            keep = context.schedule.keep_at(step, network.n_prunable, network.keep_ratio)
            masks[name] = magnitude_masks(network, keep, full)
        return masks

    def initial_masks(self, context: UpdateContext) -> Masks:
        # from the stored θ, so the start is the initial sparsity whatever the policy's mask_init
        return self._masks_at(context, context.schedule.start_step, full=True)

    def update_masks(self, context: UpdateContext) -> Masks:
        return self._masks_at(context, context.step, full=False)

    def final_masks(self, context: UpdateContext) -> Masks:
        assert context.schedule.end_step is not None, "gradual magnitude pruning needs a schedule with an end"
        return self._masks_at(context, context.schedule.end_step, full=False)
