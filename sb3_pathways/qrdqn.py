"""QR-DQN (sb3-contrib): pathway policies (network ``"quantile_net"``;
``quantile_net_target`` uses its masks) and its loss for scoring."""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
from sb3_contrib import QRDQN
from sb3_contrib.common.utils import quantile_huber_loss
from sb3_contrib.qrdqn.policies import CnnPolicy, MultiInputPolicy, QRDQNPolicy

from sb3_pathways.deploy.flops import q_learning_passes
from sb3_pathways.policies import DeploymentSpec, PathwayPolicyMixin
from sb3_pathways.registry import AlgorithmSpec, pathway_aliases, register_algorithm
from sb3_pathways.scoring.objectives import discounts


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


def qrdqn_objective(model: QRDQN, batch: Any) -> dict[str, th.Tensor]:
    """QR-DQN: the quantile Huber loss against the target network."""
    batch_size = batch.rewards.shape[0]
    with th.no_grad():
        next_quantiles = model.quantile_net_target(batch.next_observations)
        greedy = next_quantiles.mean(dim=1, keepdim=True).argmax(dim=2, keepdim=True)
        next_quantiles = next_quantiles.gather(dim=2, index=greedy.expand(batch_size, model.n_quantiles, 1)).squeeze(2)
        target = batch.rewards + (1 - batch.dones) * discounts(model, batch) * next_quantiles
    actions = batch.actions[..., None].long().expand(batch_size, model.n_quantiles, 1)
    current = th.gather(model.quantile_net(batch.observations), dim=2, index=actions).squeeze(dim=2)
    return {"quantile_net": quantile_huber_loss(current, target, sum_over_quantiles=True)}


SPEC = register_algorithm(
    AlgorithmSpec(
        QRDQN,
        policies=pathway_aliases(PathwayPolicy, PathwayCnnPolicy, PathwayMultiInputPolicy),
        objective=qrdqn_objective,
        training_passes=q_learning_passes,
    )
)
