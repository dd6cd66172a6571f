"""Forward FLOPs against hand counts, and their place in pathway_stats and the logger."""

from __future__ import annotations

import pytest
import torch as th
from conftest import FixedImageEnv
from stable_baselines3 import PPO, SAC

import sb3_pathways
from sb3_pathways.deploy import forward_flops


def test_linear_flops_by_hand() -> None:
    # actor: Linear(3, 4) -> ReLU -> mu: Linear(4, 1), log_std: Linear(4, 1)
    model = SAC("PathwayPolicy", "Pendulum-v1", device="cpu", policy_kwargs=dict(net_arch=[4], sparsity=0.5))
    flops = forward_flops(model)["actor"]
    masks = sb3_pathways.get_masks(model)
    assert flops["actor.latent_pi.0.weight"].dense == 2 * 3 * 4 + 4
    assert flops["actor.latent_pi.0.weight"].pathway == 2 * int(masks["actor.latent_pi.0.weight"].sum()) + 4
    assert flops["actor.mu.weight"].dense == 2 * 4 + 1
    # critic: two Q-networks Linear(4, 4) -> ReLU -> Linear(4, 1)
    critic = forward_flops(model)["critic"]
    assert sum(f.dense for f in critic.values()) == 2 * ((2 * 16 + 4) + (2 * 4 + 1))


def test_conv_flops_count_every_output_position() -> None:
    model = PPO("PathwayCnnPolicy", FixedImageEnv(), n_steps=32, batch_size=16, device="cpu")
    first = forward_flops(model)["features_extractor"]["features_extractor.cnn.0.weight"]
    # NatureCNN: Conv2d(1, 32, 8, stride 4) on 40x40 -> 9x9 outputs
    active = int(sb3_pathways.get_masks(model)["features_extractor.cnn.0.weight"].sum())
    assert first.dense == (2 * 32 * 1 * 8 * 8 + 32) * 81
    assert first.pathway == (2 * active + 32) * 81


def test_stats_and_logger_carry_the_flops_ratio() -> None:
    model = SAC("PathwayPolicy", "Pendulum-v1", device="cpu", policy_kwargs=dict(sparsity=0.95))
    stats = sb3_pathways.pathway_stats(model)
    actor = stats["actor"]
    assert actor.flops_dense == 2 * actor.total + (256 + 256 + 1 + 1)
    assert actor.flops_ratio == pytest.approx((2 * actor.active + 514) / actor.flops_dense)
    assert 0.05 < actor.flops_ratio < 0.06
    from stable_baselines3.common.logger import Logger

    logger = Logger(folder=None, output_formats=[])
    sb3_pathways.record_pathway_stats(logger, model)
    total = sum(n.flops_pathway for n in stats.values()) / sum(n.flops_dense for n in stats.values())
    assert logger.name_to_value["pathways/flops_ratio"] == pytest.approx(total)
    assert th.isclose(th.tensor(total), th.tensor(0.0536), atol=2e-3)
