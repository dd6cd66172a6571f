"""Pathway policy for CrossQ (sb3-contrib, which has only an ``MlpPolicy``). Networks:
``"actor"`` and ``"critic"``; CrossQ has no target network and its batch-renormalisation
layers are not masked."""

from typing import ClassVar

from sb3_contrib import CrossQ
from sb3_contrib.crossq.policies import CrossQPolicy

from sb3_pathways.actor_critic import ActorCriticPathways
from sb3_pathways.registry import register_pathway_policies


class PathwayPolicy(ActorCriticPathways, CrossQPolicy):
    """CrossQ policy with pathway masks on the actor and the critic."""

    pathway_targets: ClassVar[dict[str, str]] = {}


register_pathway_policies([CrossQ], {"PathwayPolicy": PathwayPolicy})
