"""Convolutions are masked, shared features extractors once, biases and norms never."""

from __future__ import annotations

import torch as th
from conftest import FixedImageEnv
from sb3_contrib import CrossQ
from stable_baselines3 import PPO, SAC
from torch import nn

import sb3_pathways
from sb3_pathways.masking.layers import MaskedConv2d, MaskedWeightMixin
from sb3_pathways.masking.selection import keep_count


def _layer_names(model) -> list[str]:
    return [name for network in model.policy.pathways().values() for name in network.layers]


def test_ppo_shared_cnn_is_one_network_masked_once() -> None:
    model = PPO("PathwayCnnPolicy", FixedImageEnv(), n_steps=32, batch_size=16, device="cpu", seed=0)
    pathways = model.policy.pathways()
    assert list(pathways) == ["features_extractor", "actor", "critic"]
    extractor = pathways["features_extractor"]
    assert sum(isinstance(layer, MaskedConv2d) for layer in extractor.layers.values()) == 3
    names = _layer_names(model)
    assert len(names) == len(set(names))
    assert all(not name.startswith(("pi_features_extractor", "vf_features_extractor")) for name in names)
    n_masked = sum(isinstance(m, MaskedWeightMixin) for m in model.policy.modules())
    assert n_masked == len(names)
    for network in pathways.values():
        assert sum(int(m.sum()) for m in network.masks().values()) == keep_count(network.n_prunable, 0.05)
    model.learn(64)
    for name, mask in sb3_pathways.get_masks(model).items():
        assert th.count_nonzero(model.policy.get_parameter(name)[~mask]) == 0


def test_sac_cnn_separate_and_shared_extractors() -> None:
    env = FixedImageEnv(discrete=False)
    kwargs = dict(buffer_size=200, learning_starts=20, batch_size=8, device="cpu", seed=0)
    separate = SAC("PathwayCnnPolicy", env, **kwargs)
    names = _layer_names(separate)
    assert any(name.startswith("actor.features_extractor.cnn.") for name in names)
    assert any(name.startswith("critic.features_extractor.cnn.") for name in names)

    shared = SAC("PathwayCnnPolicy", env, policy_kwargs=dict(share_features_extractor=True), **kwargs)
    names = _layer_names(shared)
    assert len(names) == len(set(names))
    assert any(name.startswith("actor.features_extractor.cnn.") for name in names)
    assert not any(name.startswith("critic.features_extractor") for name in names)
    # the target critic has its own extractor, which follows the (actor-owned) online one
    actor_network = shared.policy.pathways()["actor"]
    follower = actor_network.followers["actor.features_extractor.cnn.0.weight"]
    assert follower == [shared.policy.critic_target.features_extractor.cnn[0]]
    shared.learn(40)
    target_conv = shared.policy.critic_target.features_extractor.cnn[0]
    assert th.equal(target_conv.weight_mask, shared.policy.actor.features_extractor.cnn[0].weight_mask)


def test_biases_and_normalisation_layers_are_not_masked() -> None:
    model = CrossQ("PathwayPolicy", "Pendulum-v1", device="cpu", policy_kwargs=dict(net_arch=[16, 16], sparsity=0.8))
    masked_weights = set(_layer_names(model))
    linear_weights = {
        f"{name}.weight" for name, module in model.policy.named_modules() if isinstance(module, (nn.Linear, nn.Conv2d))
    }
    assert masked_weights == linear_weights
    norms = [m for m in model.policy.modules() if "Renorm" in type(m).__name__]
    assert norms and not any(isinstance(m, MaskedWeightMixin) for m in norms)
    masked_buffers = {name for name, _ in model.policy.named_buffers() if name.endswith(".weight_mask")}
    assert masked_buffers == {name + "_mask" for name in masked_weights}
    model.learn(300)
    for module in model.policy.modules():
        if isinstance(module, MaskedWeightMixin):
            assert th.count_nonzero(module.bias) == module.bias.numel(), "biases stay dense"
