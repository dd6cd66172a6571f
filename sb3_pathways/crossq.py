"""CrossQ (sb3-contrib, which has only an ``MlpPolicy``): pathway policy (networks
``"actor"`` and ``"critic"``; CrossQ has no target network and its batch-renormalisation
layers are not masked), its losses for scoring and its training passes."""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
import torch.nn.functional as F
from sb3_contrib import CrossQ
from sb3_contrib.crossq.policies import CrossQPolicy
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_pathways.actor_critic import ActorCriticPathways
from sb3_pathways.registry import AlgorithmSpec, TrainingPasses, register_algorithm
from sb3_pathways.scoring.objectives import discounts, entropy_coefficient


class PathwayPolicy(ActorCriticPathways, CrossQPolicy):
    """CrossQ policy with pathway masks on the actor and the critic."""

    pathway_targets: ClassVar[dict[str, str]] = {}


def crossq_objective(model: CrossQ, batch: Any) -> dict[str, th.Tensor]:
    """CrossQ: the joint (current and next) batch-normalised critic loss and the actor loss.
    Batch-norm statistics are restored by the scorer afterwards."""
    ent_coef = entropy_coefficient(model)
    batch_size = batch.rewards.shape[0]
    with th.no_grad():
        model.actor.set_bn_training_mode(False)
        next_actions, next_log_prob = model.actor.action_log_prob(batch.next_observations)
    all_obs = th.cat([batch.observations, batch.next_observations], dim=0)
    all_actions = th.cat([batch.actions, next_actions], dim=0)
    model.critic.set_bn_training_mode(True)
    all_q = th.cat(model.critic(all_obs, all_actions), dim=1)
    model.critic.set_bn_training_mode(False)
    current_q, next_q = th.split(all_q, batch_size, dim=0)
    with th.no_grad():
        next_q = th.min(next_q.detach(), dim=1, keepdim=True)[0] - ent_coef * next_log_prob.reshape(-1, 1)
        target_q = batch.rewards + (1 - batch.dones) * discounts(model, batch) * next_q
    critic_loss = 0.5 * sum(F.mse_loss(q, target_q) for q in current_q.T[..., None])
    model.actor.set_bn_training_mode(True)
    actions_pi, log_prob = model.actor.action_log_prob(batch.observations)
    model.actor.set_bn_training_mode(False)
    q_pi = th.cat(model.critic(batch.observations, actions_pi), dim=1)
    actor_loss = (ent_coef * log_prob.reshape(-1, 1) - th.min(q_pi, dim=1, keepdim=True)[0]).mean()
    return {"critic": critic_loss, "actor": actor_loss}  # type: ignore[dict-item]


def crossq_passes(model: BaseAlgorithm) -> TrainingPasses:
    """One joint critic pass over observations and next observations (two samples per sample)."""
    actor_share = 1.0 / model.policy_delay  # type: ignore[attr-defined]
    return {"actor": (1 + actor_share, actor_share), "critic": (2 + actor_share, 2 + actor_share)}


SPEC = register_algorithm(
    AlgorithmSpec(CrossQ, policies={"PathwayPolicy": PathwayPolicy}, objective=crossq_objective, training_passes=crossq_passes)
)
