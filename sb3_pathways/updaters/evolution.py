"""Topology evolution: SET (Mocanu et al., 2018) and RigL (Evci et al., 2020).

At every update each layer drops the ``d(t)`` share of its active weights with the smallest
magnitude and grows as many previously dormant connections, at random (SET) or where the
dense loss gradient is largest (RigL). Layer sparsity never changes. ``d(t)`` is the
schedule's (:class:`~sb3_pathways.schedules.SparsitySchedule`: from ``drop_fraction`` to 0,
cosine, until the end of updates). New connections start at zero. Defaults follow Graesser
et al., "The State of Sparse Training in Deep RL" (ICML 2022) for SAC on MuJoCo: an update
every 1000 steps, initial drop fraction 0.5, last update at 80% of training.
"""

from __future__ import annotations

import math

import torch as th

from sb3_pathways.masking.pathway import NetworkPathway
from sb3_pathways.masking.selection import output_units
from sb3_pathways.scoring.sensitivity import loss_gradients
from sb3_pathways.updaters.base import Masks, MaskUpdater, UpdateContext
from sb3_pathways.validation import positive_int


def drop_and_grow(
    network: NetworkPathway, drop_fraction: float, grow_scores: dict[str, th.Tensor] | None
) -> dict[str, th.Tensor]:
    """
    Per layer: drop the ``drop_fraction`` share of active weights with the smallest
    magnitude (never the strongest input of an output unit), grow as many previously dormant
    connections with the highest ``grow_scores`` (random when ``None``).
    """
    masks = {}
    for name, layer in network.layers.items():
        mask = layer.weight_mask[0]
        n_active = int(mask.sum())
        magnitude = th.where(mask, layer.weight.detach().abs(), th.full_like(layer.weight, -1.0))
        rows = magnitude.view(output_units(mask.shape), -1)
        strongest_input = rows.argmax(dim=1, keepdim=True)
        protected = int(mask.view_as(rows).gather(1, strongest_input).sum())
        n_swap = min(round(drop_fraction * n_active), n_active - protected, int((~mask).sum()))
        if n_swap <= 0:
            continue
        magnitude = th.where(mask, magnitude, math.inf)
        magnitude.view_as(rows).scatter_(1, strongest_input, math.inf)  # every unit keeps its strongest input
        magnitude = magnitude.flatten()
        new_mask = mask.clone().flatten()
        new_mask[th.topk(magnitude, n_swap, largest=False).indices] = False
        score = th.rand(mask.shape, device=mask.device) if grow_scores is None else grow_scores[name].abs()
        candidates = th.where(mask, th.full_like(score, -math.inf), score.float()).flatten()
        new_mask[th.topk(candidates, n_swap).indices] = True
        masks[name] = new_mask.view_as(mask)
    return masks


class SETUpdater(MaskUpdater):
    """
    Sparse Evolutionary Training: drop the smallest weights, grow random connections. The
    share replaced at each update is the schedule's
    (:meth:`~sb3_pathways.schedules.SparsitySchedule.drop_fraction_at`).
    """

    discovers_initial_pathway = False
    needs_data = False
    grow_at_zero = True

    def _grow_scores(self, context: UpdateContext, network: str) -> dict[str, th.Tensor] | None:
        return None

    def update_masks(self, context: UpdateContext) -> Masks:
        fraction = context.schedule.drop_fraction_at(context.step)
        return {
            name: drop_and_grow(network, fraction, self._grow_scores(context, name))
            for name, network in context.pathways.items()
        }


class RigLUpdater(SETUpdater):
    """
    Rigged Lottery: drop the smallest weights, grow where the dense gradient of the
    algorithm's loss (on the newest transitions) is largest.

    :param chunk_size: transitions per gradient forward pass
    """

    needs_data = True

    def __init__(self, chunk_size: int = 2048) -> None:
        self.chunk_size = positive_int(chunk_size, "chunk_size")
        self._gradients: dict[str, dict[str, tuple[th.Tensor, th.Tensor]]] = {}

    def update_masks(self, context: UpdateContext) -> Masks:
        self._gradients = loss_gradients(context.model, context.batch, "masked", self.chunk_size)
        return super().update_masks(context)

    def _grow_scores(self, context: UpdateContext, network: str) -> dict[str, th.Tensor] | None:
        layers = self._gradients.get(network)
        if layers is None:  # the objective gives this network no loss: random growth
            return None
        return {name: gradient for name, (_, gradient) in layers.items()}
