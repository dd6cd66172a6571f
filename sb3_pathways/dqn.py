"""Pathway policies for DQN. Network: ``"q_net"`` (``q_net_target`` uses its masks)."""

from typing import ClassVar

from stable_baselines3 import DQN
from stable_baselines3.dqn.policies import CnnPolicy, DQNPolicy, MultiInputPolicy

from sb3_pathways.policies import DeploymentSpec, PathwayPolicyMixin
from sb3_pathways.registry import register_pathway_policies


class _DQNPathways(PathwayPolicyMixin):
    pathway_targets: ClassVar[dict[str, str]] = {"q_net_target": "q_net"}

    def pathway_network_paths(self) -> dict[str, list[str]]:
        return {"q_net": ["q_net"]}

    def deployment_spec(self) -> DeploymentSpec:
        return DeploymentSpec("q_net.features_extractor", ("q_net.q_net",), "argmax")


class PathwayPolicy(_DQNPathways, DQNPolicy):
    """DQN policy (``MlpPolicy``) with a pathway mask on the Q-network."""


class PathwayCnnPolicy(_DQNPathways, CnnPolicy):
    """DQN ``CnnPolicy`` with a pathway mask (convolutions included)."""


class PathwayMultiInputPolicy(_DQNPathways, MultiInputPolicy):
    """DQN ``MultiInputPolicy`` with a pathway mask."""


register_pathway_policies(
    [DQN],
    {
        "PathwayPolicy": PathwayPolicy,
        "PathwayCnnPolicy": PathwayCnnPolicy,
        "PathwayMultiInputPolicy": PathwayMultiInputPolicy,
    },
)
