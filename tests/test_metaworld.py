"""MetaWorld environments for multi-task pathways (needs the metaworld extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("metaworld")

import gymnasium as gym
from stable_baselines3 import SAC

from sb3_pathways.multitask import MT10_TASKS, MultiTaskDAPDCallback, make_mt10_env, make_multitask_env


def test_mt10_env_has_one_task_per_sub_env_with_one_hot_and_success() -> None:
    env = make_mt10_env(n_envs=10, seed=0)
    observations = env.reset()
    assert observations.shape == (10, 39 + 10)
    assert observations[:, -10:].argmax(axis=1).tolist() == list(range(10))
    assert env.get_attr("task_name") == list(MT10_TASKS)
    _, _, _, infos = env.step(np.stack([env.action_space.sample() for _ in range(10)]))
    assert all("is_success" in info for info in infos)
    env.close()


def test_round_robin_id_plays_every_task_in_turn() -> None:
    env = gym.make("sb3_pathways/MT10-v0")
    tasks = []
    for _ in range(12):
        observation, _ = env.reset()
        tasks.append(int(np.argmax(observation[-10:])))
    assert tasks == [*range(10), 0, 1]
    assert env.unwrapped.task_names == list(MT10_TASKS)  # type: ignore[attr-defined]


def test_multitask_sac_trains_on_metaworld_tasks() -> None:
    env = make_multitask_env(["reach-v3", "push-v3"], seed=0, max_episode_steps=30)
    model = SAC(
        "PathwayPolicy",
        env,
        learning_starts=60,
        batch_size=32,
        device="cpu",
        policy_kwargs=dict(n_tasks=2, net_arch=[32, 32]),
    )
    callback = MultiTaskDAPDCallback(max_warmup_steps=200)
    model.learn(240, callback=callback)
    assert callback.task_names == ["reach-v3", "push-v3"]
    assert model.pathway_discovery.frozen and sorted(model.pathway_discovery.task_frozen_steps) == [0, 1]
    assert model.pathway_discovery.task_names == ["reach-v3", "push-v3"]


def test_mt10_hyperparameters_run_through_the_command(tmp_path: Path) -> None:
    tiny = "policy_kwargs:dict(sparsity=0.95, n_tasks=10, net_arch=[32])"
    args = ["--algo", "sac", "--env", "sb3_pathways/MT10-v0", "-n", "200", "-f", "logs", "--seed", "0"]
    params = ["-params", "learning_starts:100", "batch_size:64", "buffer_size:1000", tiny]
    result = subprocess.run(
        [sys.executable, "-m", "sb3_pathways", "train", *args, *params],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tasks      10 pathways, task weights independent (warm-up)" in result.stdout
    assert "reach-v3" in result.stdout and "overlap between task pathways" in result.stdout
    assert (tmp_path / "logs" / "sac" / "sb3_pathways-MT10-v0_1" / "sb3_pathways-MT10-v0_task_overlap.png").is_file()


def test_merged_gradients_on_a_real_mt10_batch_average_the_task_gradients_over_each_weights_users() -> None:
    """The seeds' "gradient average for overlapped mask", checked by hand on MetaWorld MT10
    transitions: after the merge, a shared weight's gradient is the mean, over the tasks whose
    pathway holds it, of each task's gradient through its own pathway."""
    import torch as th
    import torch.nn.functional as F

    from sb3_pathways.masking.pathway import merge_task_weights
    from sb3_pathways.multitask.callbacks import batch_task_ids

    env = make_mt10_env(n_envs=10, seed=0, max_episode_steps=20)
    policy_kwargs = dict(n_tasks=10, sparsity=0.9, net_arch=[64, 64])
    model = SAC("PathwayPolicy", env, learning_starts=100, batch_size=128, seed=0, device="cpu", policy_kwargs=policy_kwargs)
    model.learn(100)  # random actions of all ten tasks, no gradient step
    for network in model.policy.pathways().values():
        merge_task_weights(network)
    batch = model.replay_buffer.sample(256)
    observations, tasks = batch.observations, batch_task_ids(model.policy, batch.observations)
    assert len(tasks.unique()) == 10

    actor = model.policy.actor
    layers = [actor.latent_pi[0], actor.latent_pi[2], actor.mu]
    actor.zero_grad()
    actor(observations, deterministic=True).pow(2).sum().backward()

    expected_weight = [th.zeros_like(layer.weight) for layer in layers]
    expected_bias = [th.zeros_like(layer.bias) for layer in layers]
    for task in range(10):
        effective = [(layer.weight.detach() * layer.weight_mask[task]).requires_grad_(True) for layer in layers]
        biases = [layer.bias.detach().clone().requires_grad_(True) for layer in layers]
        hidden = observations[tasks == task].float()
        for index, (weight, bias) in enumerate(zip(effective, biases)):
            hidden = F.linear(hidden, weight, bias)
            hidden = F.relu(hidden) if index < len(layers) - 1 else th.tanh(hidden)
        hidden.pow(2).sum().backward()
        for index, layer in enumerate(layers):
            expected_weight[index] += effective[index].grad * layer.weight_mask[task]
            expected_bias[index] += biases[index].grad
    for index, layer in enumerate(layers):
        users = layer.weight_mask.sum(dim=0)
        expected = th.where(users > 0, expected_weight[index] / users.clamp(min=1), 0.0)
        assert th.allclose(layer.weight.grad, expected, atol=1e-6), index
        assert th.allclose(layer.bias.grad, expected_bias[index], atol=1e-6), index  # biases are shared, summed
        assert int((users > 1).sum()) > 0  # some weights are shared by several tasks
