"""Network layouts shared by several algorithms' pathway policies."""

from __future__ import annotations

from typing import Any, ClassVar

from sb3_contrib.common.maskable.distributions import MaskableCategoricalDistribution
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution

from sb3_pathways.masking.layers import MASKED_LAYER_TYPES
from sb3_pathways.policies import ActionHead, DeploymentSpec, PathwayPolicyMixin


class ActorCriticPathways(PathwayPolicyMixin):
    """Off-policy actor-critic layout (SAC, TQC, CrossQ, TD3, DDPG): networks ``"actor"`` and
    ``"critic"``; ``critic_target`` uses the critic's masks. Each Q-network of the critic
    ensemble (``qf0``, ``qf1``, ...) keeps its own share of the critic's active weights."""

    pathway_targets: ClassVar[dict[str, str]] = {"critic_target": "critic"}

    def pathway_network_paths(self) -> dict[str, list[str]]:
        return {"actor": ["actor"], "critic": ["critic"]}

    def pathway_ensembles(self) -> dict[str, list[str]]:
        critic = self.get_submodule("critic")
        return {"critic": [f"critic.{name}" for name, _ in critic.named_children() if name.startswith("qf")]}

    def deployment_spec(self) -> DeploymentSpec:
        # SAC-family actors: latent_pi then mu, squashed by tanh; TD3/DDPG: mu ends with tanh.
        stochastic = hasattr(self.get_submodule("actor"), "latent_pi")
        return DeploymentSpec(
            features_extractor="actor.features_extractor",
            chain=("actor.latent_pi", "actor.mu") if stochastic else ("actor.mu",),
            head="unscale" if self.squash_output else "clip",
            squash=stochastic,
        )

    def pathway_chains(self) -> dict[str, list[tuple[str, ...]]]:
        critics: list[tuple[str, ...]] = [(path,) for path in self.pathway_ensembles()["critic"]]
        return {"actor": [self.deployment_spec().chain], "critic": critics}


class OnPolicyPathways(PathwayPolicyMixin):
    """``ActorCriticPolicy`` layout (PPO, A2C, TRPO, MaskablePPO): networks ``"actor"``
    (policy MLP and action head), ``"critic"`` (value MLP and value head) and, when the
    features extractor is shared and has weights (e.g. NatureCNN), ``"features_extractor"``.
    The ``log_std`` parameter is not masked."""

    features_extractor: Any
    share_features_extractor: bool
    action_dist: Any

    def pathway_network_paths(self) -> dict[str, list[str]]:
        networks: dict[str, list[str]] = {}
        extractor_has_weights = any(
            isinstance(module, tuple(MASKED_LAYER_TYPES)) for module in self.features_extractor.modules()
        )
        if self.share_features_extractor and extractor_has_weights:
            networks["features_extractor"] = ["features_extractor"]
        networks["actor"] = ["pi_features_extractor", "mlp_extractor.policy_net", "action_net"]
        networks["critic"] = ["vf_features_extractor", "mlp_extractor.value_net", "value_net"]
        return networks

    def deployment_spec(self) -> DeploymentSpec:
        head: ActionHead
        if isinstance(self.action_dist, (CategoricalDistribution, MaskableCategoricalDistribution)):
            head = "argmax"
        elif isinstance(self.action_dist, DiagGaussianDistribution):
            head = "clip"
        else:
            raise NotImplementedError(
                f"export supports Box (DiagGaussian) and Discrete (Categorical) actions, got {type(self.action_dist).__name__}"
            )
        return DeploymentSpec("pi_features_extractor", ("mlp_extractor.policy_net", "action_net"), head)

    def pathway_chains(self) -> dict[str, list[tuple[str, ...]]]:
        return {"actor": [("mlp_extractor.policy_net", "action_net")], "critic": [("mlp_extractor.value_net", "value_net")]}
