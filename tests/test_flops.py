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


def test_training_flops_by_hand() -> None:
    from stable_baselines3 import DQN

    from sb3_pathways.deploy import training_flops

    sac = SAC("PathwayPolicy", "Pendulum-v1", batch_size=32, device="cpu", policy_kwargs=dict(net_arch=[4], sparsity=0.5))
    actor = (2 * 3 * 4 + 4) + 2 * (2 * 4 + 1)  # latent_pi, mu, log_std
    critic = 2 * ((2 * 4 * 4 + 4) + (2 * 4 + 1))  # two Q-networks on (obs, action)
    # actor: 2 forward passes + 1 backward; critic: 3 forward (target, critic loss, actor loss) + 2 backward
    flops = training_flops(sac)
    assert flops.dense == 32 * ((2 + 2 * 1) * actor + (3 + 2 * 2) * critic)
    stats = sb3_pathways.pathway_stats(sac)
    assert flops.pathway == 32 * (4 * stats["actor"].flops_pathway + 7 * stats["critic"].flops_pathway)

    dqn = DQN("PathwayPolicy", "CartPole-v1", batch_size=32, device="cpu", policy_kwargs=dict(net_arch=[4], sparsity=0.5))
    q_net = (2 * 4 * 4 + 4) + (2 * 4 * 2 + 2)
    assert training_flops(dqn).dense == 32 * (2 + 2 * 1) * q_net  # target and online forward, online backward


def test_energy_callback_accounts_every_gradient_step() -> None:
    from stable_baselines3.common.logger import Logger

    from sb3_pathways import EnergyCallback, training_flops
    from sb3_pathways.deploy import JOULES_PER_FLOP

    model = SAC(
        "PathwayPolicy", "Pendulum-v1", learning_starts=50, batch_size=32, device="cpu", policy_kwargs=dict(net_arch=[64, 64])
    )
    logger = Logger(folder=None, output_formats=[])
    model.set_logger(logger)
    callback = EnergyCallback(measure=False, account_freq=50)
    model.learn(300, callback=callback)
    cost = callback.cost
    per_step = training_flops(model)
    assert cost.gradient_steps == model._n_updates > 200
    assert cost.train_flops == cost.gradient_steps * per_step.pathway
    assert cost.train_flops_dense == cost.gradient_steps * per_step.dense
    assert cost.energy_estimate_j == pytest.approx(cost.train_flops * JOULES_PER_FLOP)
    assert cost.energy_measured_j is None
    assert cost.flops_ratio == pytest.approx(per_step.ratio) and per_step.ratio < 0.2
    assert logger.name_to_value["pathways/train_flops_ratio"] == pytest.approx(cost.flops_ratio)


def test_energy_callback_counts_ppo_minibatches() -> None:
    from sb3_pathways import EnergyCallback

    model = PPO("PathwayPolicy", "CartPole-v1", n_steps=64, batch_size=16, n_epochs=3, device="cpu")
    callback = EnergyCallback(measure=False, account_freq=1)
    model.learn(128, callback=callback)
    assert callback.cost.gradient_steps == 2 * 3 * (64 // 16)  # 2 rollouts x 3 epochs x 4 minibatches


def test_energy_callback_measures_with_codecarbon() -> None:
    pytest.importorskip("codecarbon")
    from sb3_pathways import EnergyCallback

    model = SAC(
        "PathwayPolicy", "Pendulum-v1", learning_starts=20, device="cpu", policy_kwargs=dict(net_arch=[16], sparsity=0.5)
    )
    callback = EnergyCallback(measure=True)
    model.learn(60, callback=callback)
    assert callback.cost.energy_measured_j is not None and callback.cost.energy_measured_j > 0


def test_energy_callback_rejects_bad_arguments() -> None:
    from sb3_pathways import EnergyCallback

    with pytest.raises(ValueError, match="joules_per_flop must be a positive float, got -1"):
        EnergyCallback(joules_per_flop=-1)
    with pytest.raises(ValueError, match="measure must be None, True or False, got 'yes'"):
        EnergyCallback(measure="yes")  # type: ignore[arg-type]
