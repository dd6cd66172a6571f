"""Pathway policies for PPO and A2C. Networks: ``"actor"``, ``"critic"`` and, with a shared
features extractor that has weights (CNN), ``"features_extractor"``."""

from stable_baselines3 import A2C, PPO
from stable_baselines3.common.policies import (
    ActorCriticCnnPolicy,
    ActorCriticPolicy,
    MultiInputActorCriticPolicy,
)

from sb3_pathways.actor_critic import OnPolicyPathways
from sb3_pathways.registry import register_pathway_policies


class PathwayPolicy(OnPolicyPathways, ActorCriticPolicy):
    """PPO / A2C policy (``MlpPolicy``) with pathway masks on the actor and the critic."""


class PathwayCnnPolicy(OnPolicyPathways, ActorCriticCnnPolicy):
    """PPO / A2C ``CnnPolicy`` with pathway masks (convolutions included)."""


class PathwayMultiInputPolicy(OnPolicyPathways, MultiInputActorCriticPolicy):
    """PPO / A2C ``MultiInputPolicy`` with pathway masks."""


register_pathway_policies(
    [PPO, A2C],
    {
        "PathwayPolicy": PathwayPolicy,
        "PathwayCnnPolicy": PathwayCnnPolicy,
        "PathwayMultiInputPolicy": PathwayMultiInputPolicy,
    },
)
