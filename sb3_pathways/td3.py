"""Pathway policies for TD3 and DDPG. Networks: ``"actor"`` and ``"critic"``; ``actor_target``
and ``critic_target`` use their online network's masks."""

from typing import ClassVar

from stable_baselines3 import DDPG, TD3
from stable_baselines3.td3.policies import CnnPolicy, MultiInputPolicy, TD3Policy

from sb3_pathways.actor_critic import ActorCriticPathways
from sb3_pathways.registry import register_pathway_policies


class _TD3Pathways(ActorCriticPathways):
    pathway_targets: ClassVar[dict[str, str]] = {"actor_target": "actor", "critic_target": "critic"}


class PathwayPolicy(_TD3Pathways, TD3Policy):
    """TD3 / DDPG policy (``MlpPolicy``) with pathway masks on the actor and the critic."""


class PathwayCnnPolicy(_TD3Pathways, CnnPolicy):
    """TD3 / DDPG ``CnnPolicy`` with pathway masks (convolutions included)."""


class PathwayMultiInputPolicy(_TD3Pathways, MultiInputPolicy):
    """TD3 / DDPG ``MultiInputPolicy`` with pathway masks."""


register_pathway_policies(
    [TD3, DDPG],
    {
        "PathwayPolicy": PathwayPolicy,
        "PathwayCnnPolicy": PathwayCnnPolicy,
        "PathwayMultiInputPolicy": PathwayMultiInputPolicy,
    },
)
