"""Network layouts shared by several algorithms' pathway policies."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch as th
from sb3_contrib.common.maskable.distributions import MaskableCategoricalDistribution
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution

from sb3_pathways.masking.layers import MASKED_LAYER_TYPES
from sb3_pathways.policies import ActionHead, DeploymentSpec, PathwayPolicyMixin


class TanhBoundedLogStd(th.nn.Module):
    """
    Squashes a log-std into ``[low, high]`` with ``low + (high - low) (tanh(x) + 1) / 2``, as
    the DAPD reference's actor does, where SB3's actors clamp it into [-20, 2].

    :param low: smallest log-std
    :param high: largest log-std
    """

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low = low
        self.high = high

    def forward(self, log_std: th.Tensor) -> th.Tensor:
        return self.low + 0.5 * (self.high - self.low) * (th.tanh(log_std) + 1.0)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


def validate_log_std_bounds(bounds: Any) -> tuple[float, float] | None:
    """Check ``log_std_bounds`` (``None`` or two finite numbers, low < high) and return it."""
    if bounds is None:
        return None
    numbers = (
        isinstance(bounds, (tuple, list))
        and len(bounds) == 2
        and all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in bounds)
    )
    if not numbers or not -math.inf < bounds[0] < bounds[1] < math.inf:  # NaN fails the comparison too
        raise ValueError(f"log_std_bounds must be None or two finite numbers (low, high) with low < high, got {bounds!r}")
    return float(bounds[0]), float(bounds[1])


class ActorCriticPathways(PathwayPolicyMixin):
    """
    Off-policy actor-critic layout (SAC, TQC, CrossQ, TD3, DDPG): networks ``"actor"`` and
    ``"critic"``; ``critic_target`` uses the critic's masks. Each Q-network of the critic
    ensemble (``qf0``, ``qf1``, ...) keeps its own share of the critic's active weights.

    :param log_std_bounds: ``(low, high)``: the actor's log-std squashed by tanh into this range
        (:class:`TanhBoundedLogStd`; the DAPD reference uses ``(-10, 2)``) instead of SB3's clamp
        into [-20, 2]. Needs a log-std layer (SAC, TQC, CrossQ without gSDE). ``None``: SB3's clamp
    """

    pathway_targets: ClassVar[dict[str, str]] = {"critic_target": "critic"}
    log_std_bounds: tuple[float, float] | None = None

    def __init__(self, *args: Any, log_std_bounds: tuple[float, float] | None = None, **kwargs: Any) -> None:
        self.log_std_bounds = validate_log_std_bounds(log_std_bounds)
        super().__init__(*args, **kwargs)

    def _finish_networks(self) -> None:
        if self.log_std_bounds is not None:
            actor = self.get_submodule("actor")
            log_std = getattr(actor, "log_std", None)
            if not isinstance(log_std, th.nn.Linear):
                raise ValueError(
                    f"log_std_bounds needs an actor with a log-std layer (SAC, TQC or CrossQ without use_sde); "
                    f"{type(self).__module__}.{type(self).__qualname__}'s actor has none"
                )
            actor.log_std = th.nn.Sequential(log_std, TanhBoundedLogStd(*self.log_std_bounds))
        super()._finish_networks()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(log_std_bounds=self.log_std_bounds)
        return data

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
