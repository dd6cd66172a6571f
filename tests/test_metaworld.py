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
