"""TD3: pathway policies (networks ``"actor"`` and ``"critic"``; ``actor_target`` and
``critic_target`` use their online network's masks), its losses for scoring and its
training passes. DDPG uses the same (:mod:`sb3_pathways.ddpg`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch as th
import torch.nn.functional as F
from stable_baselines3 import TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.td3.policies import CnnPolicy, MultiInputPolicy, TD3Policy

from sb3_pathways.actor_critic import ActorCriticPathways
from sb3_pathways.registry import AlgorithmSpec, TrainingPasses, pathway_aliases, register_algorithm
from sb3_pathways.scoring.objectives import discounts


class _TD3Pathways(ActorCriticPathways):
    pathway_targets: ClassVar[dict[str, str]] = {"actor_target": "actor", "critic_target": "critic"}


class PathwayPolicy(_TD3Pathways, TD3Policy):
    """TD3 / DDPG policy (``MlpPolicy``) with pathway masks on the actor and the critic."""


class PathwayCnnPolicy(_TD3Pathways, CnnPolicy):
    """TD3 / DDPG ``CnnPolicy`` with pathway masks (convolutions included)."""


class PathwayMultiInputPolicy(_TD3Pathways, MultiInputPolicy):
    """TD3 / DDPG ``MultiInputPolicy`` with pathway masks."""


POLICIES = pathway_aliases(PathwayPolicy, PathwayCnnPolicy, PathwayMultiInputPolicy)


def td3_objective(model: TD3, batch: Any) -> dict[str, th.Tensor]:
    """TD3 / DDPG: the (clipped double-Q, smoothed-target) critic loss and the actor loss."""
    with th.no_grad():
        noise = batch.actions.clone().normal_(0, model.target_policy_noise)
        noise = noise.clamp(-model.target_noise_clip, model.target_noise_clip)
        next_actions = (model.actor_target(batch.next_observations) + noise).clamp(-1, 1)
        next_q = th.cat(model.critic_target(batch.next_observations, next_actions), dim=1)
        target_q = batch.rewards + (1 - batch.dones) * discounts(model, batch) * th.min(next_q, dim=1, keepdim=True)[0]
    critic_loss = sum(F.mse_loss(q, target_q) for q in model.critic(batch.observations, batch.actions))
    actor_loss = -model.critic.q1_forward(batch.observations, model.actor(batch.observations)).mean()
    return {"critic": critic_loss, "actor": actor_loss}  # type: ignore[dict-item]


def td3_passes(model: BaseAlgorithm) -> TrainingPasses:
    """The actor loss runs every ``policy_delay`` steps, through the first Q-network only."""
    actor_share = 1.0 / getattr(model, "policy_delay", 1)
    first_q_share = actor_share / int(model.policy.critic.n_critics)  # type: ignore[union-attr, arg-type]
    return {"actor": (1 + actor_share, actor_share), "critic": (2 + first_q_share, 1 + first_q_share)}


def saved_by_ddpg(data: Mapping[str, Any]) -> bool:
    """DDPG is TD3 without its tricks: a zip with DDPG's settings is DDPG's."""
    return data.get("policy_delay") == 1 and data.get("target_noise_clip") == 0.0


SPEC = register_algorithm(
    AlgorithmSpec(
        TD3,
        policies=POLICIES,
        objective=td3_objective,
        training_passes=td3_passes,
        saved_by=lambda data: not saved_by_ddpg(data),
    )
)
