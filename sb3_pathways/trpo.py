"""TRPO (sb3-contrib): the PPO pathway policies (TRPO uses SB3's ``ActorCriticPolicy``), its
losses for scoring and its training passes.

TRPO takes its policy gradient with ``th.autograd.grad`` and writes the actor's weights
itself (``param.data = ...``) during a line search. The masked layers mask gradients inside
autograd, so the gradients and Hessian-vector products are zero on dormant weights; the
conjugate-gradient solver still starts from random noise on every weight, so TRPO's pathway
policies apply the mask again before the next forward pass whenever a weight tensor was
replaced (``weights_written_directly``): the line search evaluates, and keeps, the masked
policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch as th
import torch.nn.functional as F
from sb3_contrib import TRPO
from stable_baselines3.common.policies import (
    ActorCriticCnnPolicy,
    ActorCriticPolicy,
    MultiInputActorCriticPolicy,
)

from sb3_pathways.actor_critic import OnPolicyPathways
from sb3_pathways.deploy.flops import on_policy_passes
from sb3_pathways.registry import AlgorithmSpec, pathway_aliases, register_algorithm
from sb3_pathways.scoring.objectives import on_policy_terms


class _TRPOPathways(OnPolicyPathways):
    # the conjugate-gradient solver starts from random noise on every weight and the line
    # search assigns ``param.data``: the mask is applied again before each forward pass
    weights_written_directly = True


class PathwayPolicy(_TRPOPathways, ActorCriticPolicy):
    """TRPO policy (``MlpPolicy``) with pathway masks on the actor and the critic."""


class PathwayCnnPolicy(_TRPOPathways, ActorCriticCnnPolicy):
    """TRPO ``CnnPolicy`` with pathway masks (convolutions included)."""


class PathwayMultiInputPolicy(_TRPOPathways, MultiInputActorCriticPolicy):
    """TRPO ``MultiInputPolicy`` with pathway masks."""


def trpo_objective(model: TRPO, batch: Any) -> dict[str, th.Tensor]:
    """TRPO: the actor's surrogate objective (negated: a loss), the critic's value loss, and
    both for a shared features extractor."""
    values, log_prob, advantages, _ = on_policy_terms(model, batch)
    surrogate_loss = -(advantages * th.exp(log_prob - batch.old_log_prob)).mean()
    value_loss = F.mse_loss(batch.returns, values)
    return {"actor": surrogate_loss, "critic": value_loss, "features_extractor": surrogate_loss + value_loss}


def saved_by_trpo(data: Mapping[str, Any]) -> bool:
    return "cg_max_steps" in data


SPEC = register_algorithm(
    AlgorithmSpec(
        TRPO,
        policies=pathway_aliases(PathwayPolicy, PathwayCnnPolicy, PathwayMultiInputPolicy),
        objective=trpo_objective,
        training_passes=on_policy_passes,
        saved_by=saved_by_trpo,
    )
)
