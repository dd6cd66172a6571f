"""DQN: pathway policies (network ``"q_net"``; ``q_net_target`` uses its masks) and its loss
for scoring."""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
import torch.nn.functional as F
from stable_baselines3 import DQN
from stable_baselines3.dqn.policies import CnnPolicy, DQNPolicy, MultiInputPolicy

from sb3_pathways.deploy.flops import q_learning_passes
from sb3_pathways.policies import DeploymentSpec, PathwayPolicyMixin
from sb3_pathways.registry import AlgorithmSpec, pathway_aliases, register_algorithm
from sb3_pathways.scoring.objectives import discounts


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


def dqn_objective(model: DQN, batch: Any) -> dict[str, th.Tensor]:
    """DQN: the Huber TD loss against the target network."""
    with th.no_grad():
        next_q = model.q_net_target(batch.next_observations).max(dim=1)[0].reshape(-1, 1)
        target_q = batch.rewards + (1 - batch.dones) * discounts(model, batch) * next_q
    current_q = th.gather(model.q_net(batch.observations), dim=1, index=batch.actions.long())
    return {"q_net": F.smooth_l1_loss(current_q, target_q)}


SPEC = register_algorithm(
    AlgorithmSpec(
        DQN,
        policies=pathway_aliases(PathwayPolicy, PathwayCnnPolicy, PathwayMultiInputPolicy),
        objective=dqn_objective,
        training_passes=q_learning_passes,
    )
)
