"""A2C: the PPO pathway policies (as in SB3), its loss for scoring and its batch (the whole
rollout)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch as th
import torch.nn.functional as F
from stable_baselines3 import A2C
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_pathways.deploy.flops import on_policy_passes
from sb3_pathways.ppo import POLICIES, PathwayCnnPolicy, PathwayMultiInputPolicy, PathwayPolicy
from sb3_pathways.registry import AlgorithmSpec, register_algorithm
from sb3_pathways.scoring.objectives import on_policy_terms, same_loss_for_every_network

__all__ = ["SPEC", "PathwayCnnPolicy", "PathwayMultiInputPolicy", "PathwayPolicy", "a2c_objective"]


def a2c_objective(model: A2C, batch: Any) -> dict[str, th.Tensor]:
    """A2C: policy gradient + value loss + entropy term, the one loss shared by every network."""
    values, log_prob, advantages, entropy_loss = on_policy_terms(model, batch)
    policy_loss = -(advantages * log_prob).mean()
    loss = policy_loss + model.ent_coef * entropy_loss + model.vf_coef * F.mse_loss(batch.returns, values)
    return same_loss_for_every_network(model, loss)


def rollout_size(model: BaseAlgorithm) -> int:
    """A2C trains on the whole rollout at once."""
    return model.n_steps * model.n_envs  # type: ignore[attr-defined]


def saved_by_a2c(data: Mapping[str, Any]) -> bool:
    """A2C saves neither PPO's ``clip_range`` nor TRPO's ``cg_max_steps``."""
    return "clip_range" not in data and "cg_max_steps" not in data


SPEC = register_algorithm(
    AlgorithmSpec(
        A2C,
        policies=POLICIES,
        objective=a2c_objective,
        training_passes=on_policy_passes,
        batch_size=rollout_size,
        saved_by=saved_by_a2c,
    )
)
