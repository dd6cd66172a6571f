"""FLOPs of each masked layer, dense against pathway, forward and per training step.

Convention: a multiply-accumulate counts 2 FLOPs and a bias addition 1, per sample. A dense
layer costs 2 x weights (+ outputs) per output position, its pathway 2 x active weights
(+ outputs); convolutions multiply by the number of output positions, measured with one
forward pass of each features extractor on a sample observation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch as th
from sb3_contrib import QRDQN, TQC, CrossQ
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from sb3_pathways.masking.layers import MaskedConv2d, MaskedWeightMixin
from sb3_pathways.policies import pathway_policy


@dataclass
class LayerFlops:
    """Forward FLOPs per sample of one layer."""

    dense: int
    pathway: int


def _conv_output_positions(policy: Any) -> dict[int, int]:
    """id(conv layer) -> number of output positions (H x W), from one forward pass."""
    positions: dict[int, int] = {}
    convs = [m for m in policy.modules() if isinstance(m, MaskedConv2d)]
    if not convs:
        return positions
    handles = [
        conv.register_forward_hook(lambda module, _, output: positions.__setitem__(id(module), output.shape[-2:].numel()))
        for conv in convs
    ]
    try:
        observation, _ = policy.obs_to_tensor(policy.observation_space.sample())
        features_input = preprocess_obs(observation, policy.observation_space, normalize_images=policy.normalize_images)
        with th.no_grad():
            for module in policy.modules():
                if isinstance(module, BaseFeaturesExtractor):
                    module(features_input)
    finally:
        for handle in handles:
            handle.remove()
    return positions


def _layer_flops(layer: MaskedWeightMixin, active: int, positions: int) -> LayerFlops:
    bias = layer.weight.shape[0] if getattr(layer, "bias", None) is not None else 0
    return LayerFlops(
        dense=(2 * layer.weight.numel() + bias) * positions,
        pathway=(2 * active + bias) * positions,
    )


def forward_flops(model: Any, pathway: int = 0) -> dict[str, dict[str, LayerFlops]]:
    """
    Forward FLOPs per sample of every masked layer, dense and through the pathway.

    :param model: an SB3 model with a pathway policy, or the policy itself
    :param pathway: which pathway (task) of a multi-pathway policy
    :return: network name -> layer weight name -> :class:`LayerFlops`
    """
    policy = pathway_policy(model, "forward_flops")
    positions = _conv_output_positions(policy)
    return {
        name: {
            layer_name: _layer_flops(layer, int(layer.weight_mask[pathway].sum()), positions.get(id(layer), 1))
            for layer_name, layer in network.layers.items()
        }
        for name, network in policy.pathways().items()
    }


#: FLOPs of a backward pass relative to its forward pass (gradients of the inputs and of the weights)
BACKWARD_TO_FORWARD = 2

#: network name -> (forward passes, backward passes) per batch sample in one gradient step
TrainingPasses = dict[str, tuple[float, float]]
PassCounter = Callable[[BaseAlgorithm], TrainingPasses]


def _sac_passes(model: BaseAlgorithm) -> TrainingPasses:
    # actor: next observations (target) and observations; critic: target, critic loss and actor loss
    return {"actor": (2, 1), "critic": (3, 2)}


def _td3_passes(model: BaseAlgorithm) -> TrainingPasses:
    # the actor loss runs every policy_delay steps through the first Q-network only
    actor_share = 1.0 / getattr(model, "policy_delay", 1)
    first_q_share = actor_share / int(model.policy.critic.n_critics)  # type: ignore[union-attr, arg-type]
    return {"actor": (1 + actor_share, actor_share), "critic": (2 + first_q_share, 1 + first_q_share)}


def _crossq_passes(model: BaseAlgorithm) -> TrainingPasses:
    # one joint critic pass over observations and next observations (two samples per sample)
    actor_share = 1.0 / model.policy_delay  # type: ignore[attr-defined]
    return {"actor": (1 + actor_share, actor_share), "critic": (2 + actor_share, 2 + actor_share)}


def _q_learning_passes(model: BaseAlgorithm) -> TrainingPasses:
    # target network and online network forward, online backward
    return {name: (2, 1) for name in pathway_policy(model, "training_flops").network_names}


def _on_policy_passes(model: BaseAlgorithm) -> TrainingPasses:
    return {name: (1, 1) for name in pathway_policy(model, "training_flops").network_names}


TRAINING_PASSES: dict[type[BaseAlgorithm], PassCounter] = {
    SAC: _sac_passes,
    TQC: _sac_passes,
    CrossQ: _crossq_passes,
    TD3: _td3_passes,
    DQN: _q_learning_passes,
    QRDQN: _q_learning_passes,
    PPO: _on_policy_passes,
    A2C: _on_policy_passes,
}


def register_training_passes(algorithm: type[BaseAlgorithm], passes: PassCounter) -> None:
    """
    Declare how many forward and backward passes per sample each network of an algorithm
    makes in one gradient step, for :func:`training_flops`.

    :param algorithm: the algorithm class (subclasses use it too)
    :param passes: model -> network name -> (forward passes, backward passes)
    """
    TRAINING_PASSES[algorithm] = passes


def training_batch_size(model: BaseAlgorithm) -> int:
    """Samples per gradient step: the minibatch (A2C: the whole rollout)."""
    if isinstance(model, A2C):
        return model.n_steps * model.n_envs
    return int(model.batch_size)  # type: ignore[attr-defined]


def gradient_steps_per_update(model: BaseAlgorithm) -> int:
    """Gradient steps per increment of SB3's ``train/n_updates`` (PPO counts epochs)."""
    if isinstance(model, PPO):
        return math.ceil(model.n_steps * model.n_envs / model.batch_size)
    return 1


@dataclass
class TrainingFlops:
    """Training FLOPs of one gradient step, dense network against pathway."""

    dense: float
    pathway: float
    batch_size: int

    @property
    def ratio(self) -> float:
        return self.pathway / self.dense if self.dense else 1.0


def training_flops(model: BaseAlgorithm, pathway: int = 0) -> TrainingFlops:
    """
    FLOPs of one gradient step: the forward and backward passes (a backward pass costs
    ``BACKWARD_TO_FORWARD`` forward passes) of every network the algorithm runs, target
    networks included, times the batch size; dense against the pathway's active weights.

    :param model: an SB3 model with a pathway policy
    :param pathway: which pathway (task) of a multi-pathway policy
    """
    counter = next((TRAINING_PASSES[cls] for cls in type(model).__mro__ if cls in TRAINING_PASSES), None)
    if counter is None:
        known = sorted(cls.__name__ for cls in TRAINING_PASSES)
        raise KeyError(
            f"no training pass count for {type(model).__name__} (known: {known}); "
            "declare one with sb3_pathways.deploy.register_training_passes"
        )
    flops = forward_flops(model, pathway)
    batch_size = training_batch_size(model)
    dense = pathway_total = 0.0
    for name, (forward, backward) in counter(model).items():
        multiplier = batch_size * (forward + BACKWARD_TO_FORWARD * backward)
        dense += multiplier * sum(layer.dense for layer in flops.get(name, {}).values())
        pathway_total += multiplier * sum(layer.pathway for layer in flops.get(name, {}).values())
    return TrainingFlops(dense, pathway_total, batch_size)
