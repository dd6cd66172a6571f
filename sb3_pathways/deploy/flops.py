"""FLOPs of each masked layer, dense against pathway, forward and per training step.

Convention: a multiply-accumulate counts 2 FLOPs and a bias addition 1, per sample. A dense
layer costs 2 x weights (+ outputs) per output position, its pathway 2 x active weights
(+ outputs); convolutions multiply by the number of output positions, measured with one
forward pass of each features extractor on a sample observation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from sb3_pathways.masking.layers import MaskedConv2d, MaskedWeightMixin
from sb3_pathways.policies import pathway_policy
from sb3_pathways.registry import PassCounter, TrainingPasses, algorithm_spec, minibatch_size, specs_with, update_algorithm


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


def q_learning_passes(model: BaseAlgorithm) -> TrainingPasses:
    """DQN-family: the target network and the online network forward, the online one backward."""
    return {name: (2, 1) for name in pathway_policy(model, "training_flops").network_names}


def on_policy_passes(model: BaseAlgorithm) -> TrainingPasses:
    """PPO-family: one forward and one backward pass of every network per minibatch sample."""
    return {name: (1, 1) for name in pathway_policy(model, "training_flops").network_names}


def register_training_passes(algorithm: type[BaseAlgorithm], passes: PassCounter) -> None:
    """
    Declare how many forward and backward passes per sample each network of an algorithm
    makes in one gradient step, for :func:`training_flops`.

    :param algorithm: the algorithm class (subclasses use it too)
    :param passes: model -> network name -> (forward passes, backward passes)
    """
    if not callable(passes):
        raise TypeError(f"passes must be callable, got {passes!r}")
    update_algorithm(algorithm, training_passes=passes)


def training_batch_size(model: BaseAlgorithm) -> int:
    """Samples per gradient step: the minibatch (A2C: the whole rollout)."""
    spec = algorithm_spec(model)
    return spec.batch_size(model) if spec is not None else minibatch_size(model)


def gradient_steps_per_update(model: BaseAlgorithm) -> int:
    """Gradient steps per increment of SB3's ``train/n_updates`` (PPO counts epochs)."""
    spec = algorithm_spec(model)
    return spec.gradient_steps_per_update(model) if spec is not None else 1


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
    spec = algorithm_spec(model)
    counter = spec.training_passes if spec is not None else None
    if counter is None:
        known = sorted(spec.name for spec in specs_with("training_passes"))
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
