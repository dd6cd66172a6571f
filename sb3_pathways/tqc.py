"""TQC (sb3-contrib): pathway policies (networks ``"actor"`` and ``"critic"``;
``critic_target`` uses the critic's masks) and its losses for scoring."""

from __future__ import annotations

from typing import Any

import torch as th
from sb3_contrib import TQC
from sb3_contrib.common.utils import quantile_huber_loss
from sb3_contrib.tqc.policies import CnnPolicy, MultiInputPolicy, TQCPolicy

from sb3_pathways.actor_critic import ActorCriticPathways
from sb3_pathways.registry import AlgorithmSpec, pathway_aliases, register_algorithm
from sb3_pathways.sac import sac_passes
from sb3_pathways.scoring.objectives import discounts, entropy_coefficient


class PathwayPolicy(ActorCriticPathways, TQCPolicy):
    """TQC policy (``MlpPolicy``) with pathway masks on the actor and the quantile critics."""


class PathwayCnnPolicy(ActorCriticPathways, CnnPolicy):
    """TQC ``CnnPolicy`` with pathway masks (convolutions included)."""


class PathwayMultiInputPolicy(ActorCriticPathways, MultiInputPolicy):
    """TQC ``MultiInputPolicy`` with pathway masks."""


def tqc_objective(model: TQC, batch: Any) -> dict[str, th.Tensor]:
    """TQC: the truncated quantile critic loss and the actor loss with its entropy term."""
    ent_coef = entropy_coefficient(model)
    batch_size = batch.rewards.shape[0]
    with th.no_grad():
        next_actions, next_log_prob = model.actor.action_log_prob(batch.next_observations)
        next_quantiles = model.critic_target(batch.next_observations, next_actions)
        n_target = model.critic.quantiles_total - model.top_quantiles_to_drop_per_net * model.critic.n_critics
        next_quantiles = th.sort(next_quantiles.reshape(batch_size, -1))[0][:, :n_target]
        target = next_quantiles - ent_coef * next_log_prob.reshape(-1, 1)
        target = (batch.rewards + (1 - batch.dones) * discounts(model, batch) * target).unsqueeze(1)
    current = model.critic(batch.observations, batch.actions)
    critic_loss = quantile_huber_loss(current, target, sum_over_quantiles=False)
    actions_pi, log_prob = model.actor.action_log_prob(batch.observations)
    q_pi = model.critic(batch.observations, actions_pi).mean(dim=2).mean(dim=1, keepdim=True)
    actor_loss = (ent_coef * log_prob.reshape(-1, 1) - q_pi).mean()
    return {"critic": critic_loss, "actor": actor_loss}


SPEC = register_algorithm(
    AlgorithmSpec(
        TQC,
        policies=pathway_aliases(PathwayPolicy, PathwayCnnPolicy, PathwayMultiInputPolicy),
        objective=tqc_objective,
        training_passes=sac_passes,
    )
)
