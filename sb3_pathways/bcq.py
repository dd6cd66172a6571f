"""BCQ: Batch-Constrained deep Q-learning (Fujimoto, Meger & Precup, ICML 2019), continuous
actions, offline.

A conditional VAE models the dataset's actions; the actor only perturbs VAE samples (by at
most ``phi`` of the action range) and the action taken is the best of ``n_action_samples``
perturbed samples under the first Q-network. The twin critic's target is a soft clipped double
Q (``lmbda`` min + ``1 - lmbda`` max) maximised over the same number of samples of the next
state. Defaults are the paper's and the authors' code (sfujim/BCQ, ``continuous_BCQ``): VAE
750x750 with latent 2 x action dim, actor and critic 400x300, Adam 1e-3, batch 100,
γ 0.99, τ 0.005, λ 0.75, φ 0.05, 10 samples.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.policies import BaseModel, BasePolicy, ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.utils import polyak_update
from torch import nn

from sb3_pathways.actor_critic import ActorCriticPathways
from sb3_pathways.offline.base import OfflineAlgorithm, SeparateNetworksPolicy
from sb3_pathways.offline.multi_head import MultiHeadMixin, last_linear
from sb3_pathways.policies import DeploymentSpec
from sb3_pathways.registry import AlgorithmSpec, TrainingPasses, pathway_aliases, register_algorithm

#: the authors' clamp of the VAE's log-std, and of the latent sampled at decoding
LOG_STD_MIN, LOG_STD_MAX, LATENT_CLIP = -4.0, 15.0, 0.5


class _StateActionModel(BaseModel):
    """A network of (features(s), a) with its own features extractor."""

    features_extractor: BaseFeaturesExtractor
    optimizer: th.optim.Optimizer

    def features(self, obs: PyTorchObs) -> th.Tensor:
        return self.extract_features(obs, self.features_extractor)


class Perturbation(_StateActionModel):
    """
    BCQ's actor ξ(s, a): ``a + phi * tanh(f(s, a))``, clipped to [-1, 1] (actions in SB3's
    scaled units).

    :param observation_space: observation space
    :param action_space: action space
    :param net_arch: hidden layer sizes
    :param features_extractor: network that turns observations into features
    :param features_dim: number of features
    :param phi: largest perturbation, as a share of the action range's half-width
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
        phi: float = 0.05,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
    ) -> None:
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        action_dim = get_action_dim(action_space)
        self.phi = phi
        self.mu = nn.Sequential(*create_mlp(features_dim + action_dim, action_dim, net_arch, activation_fn))

    def forward(self, obs: PyTorchObs, actions: th.Tensor) -> th.Tensor:
        perturbation = self.phi * th.tanh(self.mu(th.cat([self.features(obs), actions], dim=1)))
        return (actions + perturbation).clamp(-1.0, 1.0)


class ActionVAE(_StateActionModel):
    """
    BCQ's conditional VAE of the dataset's actions given the state.

    :param observation_space: observation space
    :param action_space: action space
    :param net_arch: hidden layer sizes of the encoder and of the decoder
    :param features_extractor: network that turns observations into features
    :param features_dim: number of features
    :param latent_dim: latent size (default 2 x action dim, as the authors)
    :param n_fixed_latents: latents drawn once and stored, decoded for every state when
        actions are chosen deterministically
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
        latent_dim: int | None = None,
        n_fixed_latents: int = 10,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
    ) -> None:
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        action_dim = get_action_dim(action_space)
        self.latent_dim = latent_dim or 2 * action_dim
        self.encoder = nn.Sequential(*create_mlp(features_dim + action_dim, -1, net_arch, activation_fn))
        self.latent_mean = nn.Linear(net_arch[-1], self.latent_dim)
        self.latent_log_std = nn.Linear(net_arch[-1], self.latent_dim)
        self.decoder = nn.Sequential(
            *create_mlp(features_dim + self.latent_dim, action_dim, net_arch, activation_fn, squash_output=True)
        )
        #: latents for deterministic action selection (drawn once, saved with the model)
        self.register_buffer("fixed_latents", th.randn(n_fixed_latents, self.latent_dim))

    def forward(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Reconstructed actions, latent mean and latent std."""
        features = self.features(obs)
        hidden = self.encoder(th.cat([features, actions], dim=1))
        mean = self.latent_mean(hidden)
        std = self.latent_log_std(hidden).clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        latent = mean + std * th.randn_like(std)
        return self._decode(features, latent), mean, std

    fixed_latents: th.Tensor

    def decode(self, obs: PyTorchObs, fixed_per_state: int = 0) -> th.Tensor:
        """
        Actions sampled for ``obs`` from the prior, the latent clipped to ±0.5 as the authors.

        :param fixed_per_state: ``0``: fresh latents; ``n``: ``obs`` holds each state ``n``
            times in a row, which get the same ``n`` stored latents (deterministic decoding)
        """
        features = self.features(obs)
        if fixed_per_state:
            if self.fixed_latents.shape[0] != fixed_per_state:
                raise ValueError(
                    f"the VAE stores {self.fixed_latents.shape[0]} latents, asked for {fixed_per_state} per state"
                )
            latent = self.fixed_latents.repeat(features.shape[0] // fixed_per_state, 1)
        else:
            latent = th.randn(features.shape[0], self.latent_dim, device=features.device)
        return self._decode(features, latent.clamp(-LATENT_CLIP, LATENT_CLIP))

    def _decode(self, features: th.Tensor, latent: th.Tensor) -> th.Tensor:
        return self.decoder(th.cat([features, latent], dim=1))


def _repeat(obs: PyTorchObs, times: int) -> PyTorchObs:
    if isinstance(obs, dict):
        return {key: value.repeat_interleave(times, dim=0) for key, value in obs.items()}
    return obs.repeat_interleave(times, dim=0)


class BCQPolicy(SeparateNetworksPolicy):
    """
    BCQ's networks: ``vae``, ``actor`` (perturbation) and twin ``critic``, with
    ``actor_target`` and ``critic_target``, each with its own features extractor and Adam.

    :param observation_space: observation space
    :param action_space: action space
    :param lr_schedule: learning rate schedule
    :param net_arch: hidden sizes: a dict with ``pi`` (actor), ``qf`` (critic) and ``vae``
        (encoder and decoder), or one list for all
    :param activation_fn: activation function
    :param features_extractor_class: features extractor of every network
    :param features_extractor_kwargs: its keyword arguments
    :param normalize_images: whether to divide image observations by 255
    :param optimizer_class: optimizer of every network
    :param optimizer_kwargs: its keyword arguments, the learning rate excluded
    :param n_critics: number of Q-networks
    :param phi: largest perturbation of the actor (share of the action half-range)
    :param n_action_samples: VAE samples among which the action is chosen
    :param latent_dim: the VAE's latent size (default 2 x action dim)
    """

    trained_networks = ("vae", "actor", "critic")
    target_networks: ClassVar[dict[str, str]] = {"actor_target": "actor", "critic_target": "critic"}
    actor: Perturbation
    actor_target: Perturbation
    critic: ContinuousCritic
    critic_target: ContinuousCritic
    vae: ActionVAE

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
        phi: float = 0.05,
        n_action_samples: int = 10,
        latent_dim: int | None = None,
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
        self.net_arch = net_arch if net_arch is not None else dict(pi=[400, 300], qf=[400, 300], vae=[750, 750])
        self.activation_fn = activation_fn
        self.n_critics = n_critics
        self.phi = phi
        self.n_action_samples = n_action_samples
        self.latent_dim = latent_dim
        self._build(lr_schedule)

    def _build(self, lr_schedule: Schedule) -> None:
        arch = (
            self.net_arch if isinstance(self.net_arch, dict) else dict(pi=self.net_arch, qf=self.net_arch, vae=self.net_arch)
        )
        spaces_ = (self.observation_space, self.action_space)
        common = dict(activation_fn=self.activation_fn, normalize_images=self.normalize_images)
        self.vae = ActionVAE(
            *spaces_,  # type: ignore[arg-type]
            arch["vae"],
            *self._features(),
            latent_dim=self.latent_dim,
            n_fixed_latents=self.n_action_samples,
            **common,  # type: ignore[arg-type]
        )
        self.actor = Perturbation(*spaces_, arch["pi"], *self._features(), phi=self.phi, **common)  # type: ignore[arg-type]
        self.actor_target = Perturbation(*spaces_, arch["pi"], *self._features(), phi=self.phi, **common)  # type: ignore[arg-type]
        critic_kwargs = dict(n_critics=self.n_critics, **common)
        self.critic = ContinuousCritic(*spaces_, arch["qf"], *self._features(), **critic_kwargs)  # type: ignore[arg-type]
        self.critic_target = ContinuousCritic(*spaces_, arch["qf"], *self._features(), **critic_kwargs)  # type: ignore[arg-type]
        self._finish_build(lr_schedule)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            n_critics=self.n_critics,
            phi=self.phi,
            n_action_samples=self.n_action_samples,
            latent_dim=self.latent_dim,
            lr_schedule=self._dummy_schedule,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            features_extractor_class=self.features_extractor_class,
            features_extractor_kwargs=self.features_extractor_kwargs,
        )
        return data

    def best_sampled_actions(
        self,
        obs: PyTorchObs,
        actor: Perturbation,
        critic: ContinuousCritic,
        clipped_double_q: float | None = None,
        deterministic: bool = False,
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        The best of ``n_action_samples`` perturbed VAE samples for each observation, and its
        value: under the first Q-network, or with ``clipped_double_q=λ`` the soft clipped
        double Q (λ min + (1 - λ) max over the Q-networks). ``deterministic``: the VAE decodes
        the same stored latents for every state (the authors draw fresh ones each time).
        """
        n = self.n_action_samples
        repeated = _repeat(obs, n)
        candidates = actor(repeated, self.vae.decode(repeated, fixed_per_state=n if deterministic else 0))
        if clipped_double_q is None:
            values = critic.q1_forward(repeated, candidates)  # type: ignore[arg-type]
        else:
            q_values = th.cat(critic(repeated, candidates), dim=1)
            values = (
                clipped_double_q * q_values.min(dim=1, keepdim=True).values
                + (1 - clipped_double_q) * q_values.max(dim=1, keepdim=True).values
            )
        values = values.view(-1, n)
        best = values.argmax(dim=1)
        chosen = candidates.view(-1, n, candidates.shape[-1])[th.arange(len(best), device=best.device), best]
        return chosen, values.max(dim=1, keepdim=True).values

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.best_sampled_actions(observation, self.actor, self.critic, deterministic=deterministic)[0]


class PathwayPolicy(ActorCriticPathways, BCQPolicy):
    """BCQ policy (``MlpPolicy``) with pathway masks on the perturbation actor and the twin
    critic (their targets follow), as the DAPD paper's offline pathways ("actor and critic masks
    per task"). The VAE, BCQ's model of the dataset's actions, is masked too but dense by default
    (one network all tasks share): ``sparsity={"vae": ...}`` makes it sparse, which measured far
    worse on MT10 (``docs/benchmarks.md``)."""

    pathway_targets: ClassVar[dict[str, str]] = BCQPolicy.target_networks
    dense_by_default: ClassVar[tuple[str, ...]] = ("vae",)

    def pathway_network_paths(self) -> dict[str, list[str]]:
        return {**super().pathway_network_paths(), "vae": ["vae"]}

    def deployment_spec(self) -> DeploymentSpec:
        raise NotImplementedError(
            "export_pathway exports a chain of layers; BCQ chooses its action among VAE samples with its critic. "
            "Use model.predict to run it."
        )

    def pathway_chains(self) -> dict[str, list[tuple[str, ...]]]:
        critics: list[tuple[str, ...]] = [(path,) for path in self.pathway_ensembles()["critic"]]
        return {"actor": [("actor.mu",)], "critic": critics}


class MultiHeadPolicy(MultiHeadMixin, BCQPolicy):
    """BCQ's multi-head multi-task baseline (MHMT): dense networks whose output layers (the
    perturbation's, each Q-network's, the VAE encoder's latent mean and log-std and its
    decoder's) have one head per task. ``n_tasks`` in ``policy_kwargs``."""

    def task_head_layers(self) -> list[str]:
        critics = [last_linear(self, f"critic.qf{index}") for index in range(self.n_critics)]
        vae = ["vae.latent_mean", "vae.latent_log_std", last_linear(self, "vae.decoder")]
        return [last_linear(self, "actor.mu"), *critics, *vae]


MlpPolicy = BCQPolicy


def vae_loss(model: BCQ, batch: Any) -> th.Tensor:
    """The VAE's loss: reconstruction of the dataset actions + 0.5 KL to the unit Gaussian."""
    reconstruction, mean, std = model.policy.vae(batch.observations, batch.actions)
    kl = -0.5 * (1 + th.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()
    return F.mse_loss(reconstruction, batch.actions) + 0.5 * kl


def critic_loss(model: BCQ, batch: Any) -> th.Tensor:
    """The twin critic's loss: squared errors to the soft clipped double-Q target, maximised
    over perturbed VAE samples of the next state (target networks)."""
    policy = model.policy
    with th.no_grad():
        _, next_value = policy.best_sampled_actions(
            batch.next_observations, policy.actor_target, policy.critic_target, clipped_double_q=model.lmbda
        )
        target_q = batch.rewards + (1 - batch.dones) * model.gamma * next_value
    return th.stack([F.mse_loss(q, target_q) for q in policy.critic(batch.observations, batch.actions)]).sum()


def actor_loss(model: BCQ, batch: Any) -> th.Tensor:
    """The actor's loss: minus the first Q-network's value of its perturbed VAE samples."""
    policy = model.policy
    with th.no_grad():
        sampled = policy.vae.decode(batch.observations)
    return -policy.critic.q1_forward(batch.observations, policy.actor(batch.observations, sampled)).mean()


def bcq_losses(model: BCQ, batch: Any) -> dict[str, th.Tensor]:
    """BCQ's three losses at the current weights (the scoring objective): ``"vae"``,
    ``"critic"`` and ``"actor"``."""
    return {
        "vae": vae_loss(model, batch),
        "critic": critic_loss(model, batch),
        "actor": actor_loss(model, batch),
    }


def bcq_passes(model: Any) -> TrainingPasses:
    """Per sample and gradient step: the VAE 1 forward (+ decodes) and 1 backward; the critic
    1 + n forward (target over n samples) and 1 backward; the actor n + 1 forward and 1
    backward (the critic's forward for the actor loss counted with the critic)."""
    n = model.policy.n_action_samples
    return {"vae": (1 + 2 * n, 1), "critic": (2 + n, 2), "actor": (1 + n, 1)}


class BCQ(OfflineAlgorithm):
    """
    Batch-Constrained deep Q-learning (Fujimoto et al., 2019), continuous actions, from a
    fixed dataset. Defaults are the authors'. See
    :class:`~sb3_pathways.offline.base.OfflineAlgorithm` for the shared parameters.

    :param lmbda: λ of the soft clipped double-Q target (weight of the minimum)
    :param kwargs: see :class:`~sb3_pathways.offline.base.OfflineAlgorithm` (``reward_scale``
        is 1 by default: the rewards as they are, as the authors train)
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": MlpPolicy, "MultiHeadPolicy": MultiHeadPolicy}
    policy: BCQPolicy
    actor: Perturbation
    actor_target: Perturbation
    critic: ContinuousCritic
    critic_target: ContinuousCritic
    vae: ActionVAE

    def __init__(
        self,
        policy: str | type[BCQPolicy],
        env: Any,
        dataset: Any = None,
        learning_rate: float | Schedule = 1e-3,
        batch_size: int = 100,
        tau: float = 0.005,
        gamma: float = 0.99,
        lmbda: float = 0.75,
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= lmbda <= 1.0:
            raise ValueError(f"lmbda must be in [0, 1], got {lmbda!r}")
        self.lmbda = float(lmbda)
        super().__init__(policy, env, dataset, learning_rate, batch_size, tau, gamma, **kwargs)

    def _create_aliases(self) -> None:
        self.vae = self.policy.vae
        self.actor = self.policy.actor
        self.actor_target = self.policy.actor_target
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        optimizers: list[th.optim.Optimizer] = [self.vae.optimizer, self.critic.optimizer, self.actor.optimizer]
        self._update_learning_rate(optimizers)
        logged: dict[str, list[float]] = {"vae": [], "critic": [], "actor": []}
        for _ in range(gradient_steps):
            assert self.replay_buffer is not None
            batch = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            # in the authors' order: the actor is improved against the critic just updated
            for name, optimizer, compute_loss in (
                ("vae", self.vae.optimizer, vae_loss),
                ("critic", self.critic.optimizer, critic_loss),
                ("actor", self.actor.optimizer, actor_loss),
            ):
                loss = compute_loss(self, batch)
                for any_optimizer in optimizers:  # the actor loss runs through the critic
                    any_optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                logged[name].append(loss.item())
            polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
            polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
        self.policy.set_training_mode(False)
        self._record_training(logged, gradient_steps)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "vae", "actor", "actor_target", "critic", "critic_target"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "vae.optimizer", "critic.optimizer", "actor.optimizer"], []


SPEC = register_algorithm(
    AlgorithmSpec(BCQ, policies=pathway_aliases(PathwayPolicy), objective=bcq_losses, training_passes=bcq_passes)
)
