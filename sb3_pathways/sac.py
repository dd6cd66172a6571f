"""Pathway policies for SAC. Networks: ``"actor"`` and ``"critic"`` (``critic_target`` uses the
critic's masks)."""

from stable_baselines3 import SAC
from stable_baselines3.sac.policies import CnnPolicy, MultiInputPolicy, SACPolicy

from sb3_pathways.actor_critic import ActorCriticPathways
from sb3_pathways.registry import register_pathway_policies


class PathwayPolicy(ActorCriticPathways, SACPolicy):
    """SAC policy (``MlpPolicy``) with pathway masks on the actor and the critic."""


class PathwayCnnPolicy(ActorCriticPathways, CnnPolicy):
    """SAC ``CnnPolicy`` with pathway masks (convolutions included)."""


class PathwayMultiInputPolicy(ActorCriticPathways, MultiInputPolicy):
    """SAC ``MultiInputPolicy`` with pathway masks."""


register_pathway_policies(
    [SAC],
    {
        "PathwayPolicy": PathwayPolicy,
        "PathwayCnnPolicy": PathwayCnnPolicy,
        "PathwayMultiInputPolicy": PathwayMultiInputPolicy,
    },
)
