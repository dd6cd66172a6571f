"""IQL: Implicit Q-Learning (Kostrikov, Nair & Levine, ICLR 2022), offline.

The value network is fitted to an upper expectile of the target Q-values of dataset actions,
the twin Q-networks to ``r + γ V(s')``, and the actor by advantage-weighted regression
(``exp(β (Q - V))``, capped at 100) on the dataset actions; no action outside the dataset is
ever evaluated. Defaults are the paper's MuJoCo settings (appendix B and the authors' code,
ikostrikov/implicit_q_learning ``configs/mujoco_config.py``): 2x256 networks, Adam 3e-4,
batch 256, expectile 0.7, temperature 3.0, τ 0.005, γ 0.99; the actor is a Gaussian with a
tanh on its mean and a state-independent log-std.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import BaseModel, BasePolicy, ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.utils import polyak_update
from torch import nn

from sb3_pathways.actor_critic import ActorCriticPathways
from sb3_pathways.offline.base import OfflineAlgorithm, SeparateNetworksPolicy
from sb3_pathways.offline.multi_head import MultiHeadMixin, last_linear
from sb3_pathways.registry import AlgorithmSpec, TrainingPasses, pathway_aliases, register_algorithm

SelfIQL = TypeVar("SelfIQL", bound="IQL")

#: the authors' bounds of the actor's log-std
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
#: cap of the advantage weights exp(β A)
MAX_ADVANTAGE_WEIGHT = 100.0


class IQLActor(BasePolicy):
    """
    Gaussian actor: ``tanh(mu(latent_pi(s)))`` is the mean (the deterministic action, in
    [-1, 1]), the log-std a learned vector bounded to [-5, 2].

    :param observation_space: observation space
    :param action_space: action space
    :param net_arch: hidden layer sizes
    :param features_extractor: network that turns observations into features
    :param features_dim: number of features
    :param activation_fn: activation function
    :param normalize_images: whether to divide image observations by 255
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: nn.Module,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            features_extractor=features_extractor,
            normalize_images=normalize_images,
            squash_output=True,
        )
        self.net_arch = net_arch
        self.features_dim = features_dim
        self.activation_fn = activation_fn
        action_dim = get_action_dim(action_space)
        self.latent_pi = nn.Sequential(*create_mlp(features_dim, -1, net_arch, activation_fn))
        self.mu = nn.Linear(net_arch[-1] if net_arch else features_dim, action_dim)
        self.log_std = nn.Parameter(th.zeros(action_dim))
        self.action_dist = DiagGaussianDistribution(action_dim)

    optimizer: th.optim.Optimizer

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            features_dim=self.features_dim,
            activation_fn=self.activation_fn,
            features_extractor=self.features_extractor,
        )
        return data

    def distribution(self, obs: PyTorchObs) -> DiagGaussianDistribution:
        """The action distribution at ``obs`` (actions in [-1, 1] units)."""
        features = self.extract_features(obs, self.features_extractor)
        mean = th.tanh(self.mu(self.latent_pi(features)))
        log_std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        return self.action_dist.proba_distribution(mean, log_std)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.distribution(obs).get_actions(deterministic=deterministic).clamp(-1.0, 1.0)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self(observation, deterministic)


class ValueNetwork(BaseModel):
    """
    State-value network V(s).

    :param observation_space: observation space
    :param action_space: action space
    :param net_arch: hidden layer sizes
    :param features_extractor: network that turns observations into features
    :param features_dim: number of features
    :param activation_fn: activation function
    :param normalize_images: whether to divide image observations by 255
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
    ) -> None:
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        self.vf = nn.Sequential(*create_mlp(features_dim, 1, net_arch, activation_fn))

    features_extractor: BaseFeaturesExtractor
    optimizer: th.optim.Optimizer

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        return self.vf(self.extract_features(obs, self.features_extractor))


class IQLPolicy(SeparateNetworksPolicy):
    """
    IQL's networks: ``actor``, twin ``critic`` (with ``critic_target``) and ``value``, each
    with its own features extractor and Adam optimizer.

    :param observation_space: observation space
    :param action_space: action space
    :param lr_schedule: learning rate schedule
    :param net_arch: hidden layer sizes of every network (or a dict with ``pi``, ``qf``, ``vf``)
    :param activation_fn: activation function
    :param features_extractor_class: features extractor of every network
    :param features_extractor_kwargs: its keyword arguments
    :param normalize_images: whether to divide image observations by 255
    :param optimizer_class: optimizer of every network
    :param optimizer_kwargs: its keyword arguments, the learning rate excluded
    :param n_critics: number of Q-networks
    """

    trained_networks = ("actor", "critic", "value")
    target_networks: ClassVar[dict[str, str]] = {"critic_target": "critic"}
    actor: IQLActor
    critic: ContinuousCritic
    critic_target: ContinuousCritic
    value: ValueNetwork

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
            normalize_images=normalize_images,
        )
        if net_arch is None:
            net_arch = [256, 256]
        self.net_arch = net_arch
        self.activation_fn = activation_fn
        self.n_critics = n_critics
        self._build(lr_schedule)

    def _build(self, lr_schedule: Schedule) -> None:
        archs = (
            self.net_arch if isinstance(self.net_arch, dict) else dict(pi=self.net_arch, qf=self.net_arch, vf=self.net_arch)
        )
        spaces_ = (self.observation_space, self.action_space)
        common = dict(activation_fn=self.activation_fn, normalize_images=self.normalize_images)
        self.actor = IQLActor(*spaces_, archs["pi"], *self._features(), **common)  # type: ignore[arg-type]
        critic_kwargs = dict(n_critics=self.n_critics, **common)
        self.critic = ContinuousCritic(*spaces_, archs["qf"], *self._features(), **critic_kwargs)  # type: ignore[arg-type]
        self.critic_target = ContinuousCritic(*spaces_, archs["qf"], *self._features(), **critic_kwargs)  # type: ignore[arg-type]
        self.value = ValueNetwork(*spaces_, archs["vf"], *self._features(), **common)  # type: ignore[arg-type]
        self._finish_build(lr_schedule)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            n_critics=self.n_critics,
            lr_schedule=self._dummy_schedule,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            features_extractor_class=self.features_extractor_class,
            features_extractor_kwargs=self.features_extractor_kwargs,
        )
        return data

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.actor(observation, deterministic)


class PathwayPolicy(ActorCriticPathways, IQLPolicy):
    """IQL policy (``MlpPolicy``) with pathway masks on the actor, the twin critic (its target
    follows) and the value network."""

    pathway_targets: ClassVar[dict[str, str]] = IQLPolicy.target_networks

    def pathway_network_paths(self) -> dict[str, list[str]]:
        return {**super().pathway_network_paths(), "value": ["value"]}


class MultiHeadPolicy(MultiHeadMixin, IQLPolicy):
    """IQL's multi-head multi-task baseline (MHMT): dense networks whose output layers (the
    actor's mean, each Q-network's and the value network's last layer) have one head per
    task; the actor's state-independent log-std is shared. ``n_tasks`` in ``policy_kwargs``."""

    def task_head_layers(self) -> list[str]:
        critics = [last_linear(self, f"critic.qf{index}") for index in range(self.n_critics)]
        return ["actor.mu", *critics, last_linear(self, "value.vf")]


MlpPolicy = IQLPolicy


def iql_losses(model: IQL, batch: Any) -> dict[str, th.Tensor]:
    """
    IQL's three losses on a batch of dataset transitions (Box actions in [-1, 1]):
    ``"value"`` (expectile regression of V(s) on min of the target Q-values), ``"critic"``
    (sum over Q-networks of the squared error to ``r + γ (1 - done) V(s')``) and ``"actor"``
    (advantage-weighted negative log-likelihood of the dataset action, V held fixed).
    """
    policy = model.policy
    with th.no_grad():
        target_q = th.min(th.cat(policy.critic_target(batch.observations, batch.actions), dim=1), dim=1, keepdim=True).values
        next_v = policy.value(batch.next_observations)
        td_target = batch.rewards + (1 - batch.dones) * model.gamma * next_v
    v = policy.value(batch.observations)
    difference = target_q - v
    weight = th.where(difference < 0, 1 - model.expectile, model.expectile)
    value_loss = (weight * difference.pow(2)).mean()
    critic_loss = th.stack([F.mse_loss(q, td_target) for q in policy.critic(batch.observations, batch.actions)]).sum()
    advantage_weight = th.exp(model.temperature * (target_q - v.detach())).clamp(max=MAX_ADVANTAGE_WEIGHT)
    log_prob = policy.actor.distribution(batch.observations).log_prob(batch.actions)
    actor_loss = -(advantage_weight.squeeze(1) * log_prob).mean()
    return {"value": value_loss, "critic": critic_loss, "actor": actor_loss}


def iql_passes(model: Any) -> TrainingPasses:
    """Per sample and gradient step: the actor 1 forward and 1 backward; the critic 2
    forward (online and target) and 1 backward; the value network 2 forward (s, s') and 1
    backward."""
    return {"actor": (1, 1), "critic": (2, 1), "value": (2, 1)}


class IQL(OfflineAlgorithm):
    """
    Implicit Q-Learning (Kostrikov et al., 2022) from a fixed dataset. See
    :class:`~sb3_pathways.offline.base.OfflineAlgorithm` for the parameters it shares; the
    defaults are the paper's MuJoCo settings.

    :param expectile: τ of the value network's expectile regression (0.5: the mean)
    :param temperature: β, the inverse temperature of the advantage weights
    :param reward_scale: ``"auto"`` (default) divides the rewards by the dataset's largest
        absolute reward. β weighs advantages in reward units, and the paper's β = 3 goes with
        rewards of order 1 per step (it normalises the D4RL locomotion rewards to a return
        range of 1,000 over 1,000 steps). With MetaWorld's rewards (0 to 10 per step) the
        advantage weights saturate, and a 95% pathway stops fitting the dataset's actions (see
        the offline guide); ``1.0`` keeps the rewards as they are
    :param kwargs: see :class:`~sb3_pathways.offline.base.OfflineAlgorithm`
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy, "MultiHeadPolicy": MultiHeadPolicy}
    policy: IQLPolicy
    actor: IQLActor
    critic: ContinuousCritic
    critic_target: ContinuousCritic
    value: ValueNetwork

    def __init__(
        self,
        policy: str | type[IQLPolicy],
        env: Any,
        dataset: Any = None,
        learning_rate: float | Schedule = 3e-4,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        expectile: float = 0.7,
        temperature: float = 3.0,
        reward_scale: float | str = "auto",
        **kwargs: Any,
    ) -> None:
        if not 0.0 < expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {expectile!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
        self.expectile = float(expectile)
        self.temperature = float(temperature)
        super().__init__(policy, env, dataset, learning_rate, batch_size, tau, gamma, reward_scale=reward_scale, **kwargs)

    def _create_aliases(self) -> None:
        self.actor = self.policy.actor
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target
        self.value = self.policy.value

    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        self.policy.set_training_mode(True)
        optimizers: list[th.optim.Optimizer] = [self.actor.optimizer, self.critic.optimizer, self.value.optimizer]
        self._update_learning_rate(optimizers)
        logged: dict[str, list[float]] = {"value": [], "critic": [], "actor": []}
        for _ in range(gradient_steps):
            assert self.replay_buffer is not None
            batch = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            losses = iql_losses(self, batch)
            for optimizer in optimizers:
                optimizer.zero_grad()
            th.stack(list(losses.values())).sum().backward()  # the three losses share no parameters
            for optimizer in optimizers:
                optimizer.step()
            polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
            for name, loss in losses.items():
                logged[name].append(loss.item())
        self.policy.set_training_mode(False)
        self._record_training(logged, gradient_steps)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "actor", "critic", "critic_target", "value"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "actor.optimizer", "critic.optimizer", "value.optimizer"], []


SPEC = register_algorithm(
    AlgorithmSpec(IQL, policies=pathway_aliases(PathwayPolicy), objective=iql_losses, training_passes=iql_passes)
)
