"""Forward FLOPs of each masked layer, dense against pathway.

Convention: a multiply-accumulate counts 2 FLOPs and a bias addition 1, per sample. A dense
layer costs 2 x weights (+ outputs) per output position, its pathway 2 x active weights
(+ outputs); convolutions multiply by the number of output positions, measured with one
forward pass of each features extractor on a sample observation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th
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
