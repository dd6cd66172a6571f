"""PPO: pathway policies (networks ``"actor"``, ``"critic"`` and, with a shared features
extractor that has weights (CNN), ``"features_extractor"``), its loss for scoring and its
training passes. A2C uses the same policies (:mod:`sb3_pathways.a2c`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import (
    ActorCriticCnnPolicy,
    ActorCriticPolicy,
    MultiInputActorCriticPolicy,
)

from sb3_pathways.actor_critic import OnPolicyPathways
from sb3_pathways.deploy.flops import on_policy_passes
from sb3_pathways.registry import AlgorithmSpec, pathway_aliases, register_algorithm
from sb3_pathways.scoring.objectives import masked_mean, on_policy_terms, same_loss_for_every_network


class PathwayPolicy(OnPolicyPathways, ActorCriticPolicy):
    """PPO / A2C policy (``MlpPolicy``) with pathway masks on the actor and the critic."""


class PathwayCnnPolicy(OnPolicyPathways, ActorCriticCnnPolicy):
    """PPO / A2C ``CnnPolicy`` with pathway masks (convolutions included)."""


class PathwayMultiInputPolicy(OnPolicyPathways, MultiInputActorCriticPolicy):
    """PPO / A2C ``MultiInputPolicy`` with pathway masks."""


POLICIES = pathway_aliases(PathwayPolicy, PathwayCnnPolicy, PathwayMultiInputPolicy)


def ppo_objective(model: PPO, batch: Any) -> dict[str, th.Tensor]:
    """PPO: clipped surrogate + value loss (clipped if ``clip_range_vf``) + entropy term, the
    one loss shared by every network."""
    return same_loss_for_every_network(model, ppo_loss(model, batch))


def ppo_loss(model: Any, batch: Any, valid: th.Tensor | None = None, **evaluate_kwargs: Any) -> th.Tensor:
    """
    PPO's training loss on a rollout batch.

    :param valid: bool mask of the real transitions of a padded sequence batch (RecurrentPPO)
    :param evaluate_kwargs: passed to the policy's ``evaluate_actions`` (MaskablePPO's action
        masks, RecurrentPPO's LSTM states)
    """
    values, log_prob, advantages, entropy_loss = on_policy_terms(model, batch, valid, **evaluate_kwargs)
    progress = model._current_progress_remaining
    clip_range = model.clip_range(progress)
    ratio = th.exp(log_prob - batch.old_log_prob)
    surrogate = th.min(advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range))
    if model.clip_range_vf is not None:
        clip_vf = model.clip_range_vf(progress)
        values = batch.old_values + th.clamp(values - batch.old_values, -clip_vf, clip_vf)
    value_loss = masked_mean((batch.returns - values) ** 2, valid)
    return -masked_mean(surrogate, valid) + model.ent_coef * entropy_loss + model.vf_coef * value_loss


def ppo_gradient_steps(model: BaseAlgorithm) -> int:
    """SB3's PPO counts one ``n_updates`` per epoch: the minibatches of one rollout."""
    return math.ceil(model.n_steps * model.n_envs / model.batch_size)  # type: ignore[attr-defined]


def saved_by_ppo(data: Mapping[str, Any]) -> bool:
    return "clip_range" in data


SPEC = register_algorithm(
    AlgorithmSpec(
        PPO,
        policies=POLICIES,
        objective=ppo_objective,
        training_passes=on_policy_passes,
        gradient_steps_per_update=ppo_gradient_steps,
        saved_by=saved_by_ppo,
    )
)
