"""Pathway policies for QR-DQN (sb3-contrib). Network: ``"quantile_net"``
(``quantile_net_target`` uses its masks)."""

from typing import ClassVar

from sb3_contrib import QRDQN
from sb3_contrib.qrdqn.policies import CnnPolicy, MultiInputPolicy, QRDQNPolicy

from sb3_pathways.policies import DeploymentSpec, PathwayPolicyMixin
from sb3_pathways.registry import register_pathway_policies


class _QRDQNPathways(PathwayPolicyMixin):
    pathway_targets: ClassVar[dict[str, str]] = {"quantile_net_target": "quantile_net"}

    def pathway_network_paths(self) -> dict[str, list[str]]:
        return {"quantile_net": ["quantile_net"]}

    def deployment_spec(self) -> DeploymentSpec:
        n_quantiles = int(self.get_submodule("quantile_net").n_quantiles)  # type: ignore[arg-type]
        return DeploymentSpec(
            "quantile_net.features_extractor", ("quantile_net.quantile_net",), "quantile_argmax", n_quantiles=n_quantiles
        )


class PathwayPolicy(_QRDQNPathways, QRDQNPolicy):
    """QR-DQN policy (``MlpPolicy``) with a pathway mask on the quantile network."""


class PathwayCnnPolicy(_QRDQNPathways, CnnPolicy):
    """QR-DQN ``CnnPolicy`` with a pathway mask (convolutions included)."""


class PathwayMultiInputPolicy(_QRDQNPathways, MultiInputPolicy):
    """QR-DQN ``MultiInputPolicy`` with a pathway mask."""


register_pathway_policies(
    [QRDQN],
    {
        "PathwayPolicy": PathwayPolicy,
        "PathwayCnnPolicy": PathwayCnnPolicy,
        "PathwayMultiInputPolicy": PathwayMultiInputPolicy,
    },
)
