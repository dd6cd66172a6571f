"""Pathway policies for TQC (sb3-contrib). Networks: ``"actor"`` and ``"critic"``
(``critic_target`` uses the critic's masks)."""

from sb3_contrib import TQC
from sb3_contrib.tqc.policies import CnnPolicy, MultiInputPolicy, TQCPolicy

from sb3_pathways.actor_critic import ActorCriticPathways
from sb3_pathways.registry import register_pathway_policies


class PathwayPolicy(ActorCriticPathways, TQCPolicy):
    """TQC policy (``MlpPolicy``) with pathway masks on the actor and the quantile critics."""


class PathwayCnnPolicy(ActorCriticPathways, CnnPolicy):
    """TQC ``CnnPolicy`` with pathway masks (convolutions included)."""


class PathwayMultiInputPolicy(ActorCriticPathways, MultiInputPolicy):
    """TQC ``MultiInputPolicy`` with pathway masks."""


register_pathway_policies(
    [TQC],
    {
        "PathwayPolicy": PathwayPolicy,
        "PathwayCnnPolicy": PathwayCnnPolicy,
        "PathwayMultiInputPolicy": PathwayMultiInputPolicy,
    },
)
