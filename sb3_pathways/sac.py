"""SAC: pathway policies (networks ``"actor"`` and ``"critic"``; ``critic_target`` uses the
critic's masks), its losses for scoring and its training passes."""

from __future__ import annotations

from typing import Any

import torch as th
import torch.nn.functional as F
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.sac.policies import CnnPolicy, MultiInputPolicy, SACPolicy

from sb3_pathways.actor_critic import ActorCriticPathways
from sb3_pathways.registry import AlgorithmSpec, TrainingPasses, pathway_aliases, register_algorithm
from sb3_pathways.scoring.objectives import discounts, entropy_coefficient

#: the entropy weight of the DAPD reference implementation's scoring copy of SAC (its initial
#: temperature; the copy never receives the learned one)
REFERENCE_SCORING_ENTROPY_WEIGHT = 0.1


class PathwayPolicy(ActorCriticPathways, SACPolicy):
    """SAC policy (``MlpPolicy``) with pathway masks on the actor and the critic."""


class PathwayCnnPolicy(ActorCriticPathways, CnnPolicy):
    """SAC ``CnnPolicy`` with pathway masks (convolutions included)."""


class PathwayMultiInputPolicy(ActorCriticPathways, MultiInputPolicy):
    """SAC ``MultiInputPolicy`` with pathway masks."""


def sac_objective(model: SAC, batch: Any) -> dict[str, th.Tensor]:
    """SAC: the clipped double-Q critic loss and the actor loss with its entropy term."""
    critic_loss, actor_loss = _sac_losses(model, batch, entropy_coefficient(model))
    return {"critic": 0.5 * critic_loss, "actor": actor_loss}


def sac_reference_objective(model: SAC, batch: Any) -> dict[str, th.Tensor]:
    """
    SAC's losses as the DAPD reference implementation scores them (``dapd_utils.py``): the
    entropy weight fixed at 0.1, the critic loss MSE1 + MSE2, and the critic's gradient also
    collecting the actor loss's (the reference runs both backward passes into one gradient).
    Pass it as ``DAPDCallback(objective=sac_reference_objective)``.
    """
    critic_loss, actor_loss = _sac_losses(model, batch, REFERENCE_SCORING_ENTROPY_WEIGHT)
    return {"critic": critic_loss + actor_loss, "actor": actor_loss}


def _sac_losses(model: SAC, batch: Any, ent_coef: th.Tensor | float) -> tuple[th.Tensor, th.Tensor]:
    """SAC's critic loss MSE1 + MSE2 (not halved) and actor loss at entropy weight ``ent_coef``."""
    with th.no_grad():
        next_actions, next_log_prob = model.actor.action_log_prob(batch.next_observations)
        next_q = th.cat(model.critic_target(batch.next_observations, next_actions), dim=1)
        next_q = th.min(next_q, dim=1, keepdim=True)[0] - ent_coef * next_log_prob.reshape(-1, 1)
        target_q = batch.rewards + (1 - batch.dones) * discounts(model, batch) * next_q
    critic_loss = sum(F.mse_loss(q, target_q) for q in model.critic(batch.observations, batch.actions))
    actions_pi, log_prob = model.actor.action_log_prob(batch.observations)
    q_pi = th.cat(model.critic(batch.observations, actions_pi), dim=1)
    actor_loss = (ent_coef * log_prob.reshape(-1, 1) - th.min(q_pi, dim=1, keepdim=True)[0]).mean()
    return critic_loss, actor_loss  # type: ignore[return-value]


def sac_passes(model: BaseAlgorithm) -> TrainingPasses:
    """Actor: next observations (target) and observations; critic: target, critic loss and
    actor loss (SAC and TQC)."""
    return {"actor": (2, 1), "critic": (3, 2)}


SPEC = register_algorithm(
    AlgorithmSpec(
        SAC,
        policies=pathway_aliases(PathwayPolicy, PathwayCnnPolicy, PathwayMultiInputPolicy),
        objective=sac_objective,
        training_passes=sac_passes,
        # DAPD's scored critic pathway measured worse than a static ERK critic on Pendulum,
        # HalfCheetah and Hopper (docs/guide/dapd.rst, "Defaults"): the critic keeps its mask
        dapd_networks=("actor",),
    )
)
