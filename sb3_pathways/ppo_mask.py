"""MaskablePPO (sb3-contrib): pathway policies on its maskable actor-critic policies (the
layout of PPO's: networks ``"actor"``, ``"critic"`` and a shared ``"features_extractor"``
with weights), its loss for scoring (PPO's, with the stored action masks) and its passes."""

from __future__ import annotations

from typing import Any

import torch as th
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import (
    MaskableActorCriticCnnPolicy,
    MaskableActorCriticPolicy,
    MaskableMultiInputActorCriticPolicy,
)

from sb3_pathways.actor_critic import OnPolicyPathways
from sb3_pathways.deploy.flops import on_policy_passes
from sb3_pathways.ppo import ppo_gradient_steps, ppo_loss
from sb3_pathways.registry import AlgorithmSpec, pathway_aliases, register_algorithm
from sb3_pathways.scoring.objectives import same_loss_for_every_network


class PathwayPolicy(OnPolicyPathways, MaskableActorCriticPolicy):
    """MaskablePPO policy (``MlpPolicy``) with pathway masks on the actor and the critic."""


class PathwayCnnPolicy(OnPolicyPathways, MaskableActorCriticCnnPolicy):
    """MaskablePPO ``CnnPolicy`` with pathway masks (convolutions included)."""


class PathwayMultiInputPolicy(OnPolicyPathways, MaskableMultiInputActorCriticPolicy):
    """MaskablePPO ``MultiInputPolicy`` with pathway masks."""


def maskable_ppo_objective(model: MaskablePPO, batch: Any) -> dict[str, th.Tensor]:
    """MaskablePPO: PPO's loss with the action masks stored in the rollout, shared by every
    network."""
    return same_loss_for_every_network(model, ppo_loss(model, batch, action_masks=batch.action_masks))


SPEC = register_algorithm(
    AlgorithmSpec(
        MaskablePPO,
        policies=pathway_aliases(PathwayPolicy, PathwayCnnPolicy, PathwayMultiInputPolicy),
        objective=maskable_ppo_objective,
        training_passes=on_policy_passes,
        gradient_steps_per_update=ppo_gradient_steps,
    )
)
