"""The rl-zoo3 hyperparameter files: every entry uses a pathway policy and a DAPD callback
that can be built, and rl-zoo3 trains and reloads a run from them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rl_zoo3.utils import ALGOS, get_callback_list
from torch import nn

import sb3_pathways
from sb3_pathways import DAPDCallback
from sb3_pathways.multitask import MultiTaskDAPDCallback

HYPERPARAMS = Path(__file__).parent.parent / "hyperparams"
EXPECTED = {
    "sac": {"Pendulum-v1", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "sb3_pathways/MT10-v0"},
    "td3": {"Pendulum-v1", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"},
    "ddpg": {"Pendulum-v1", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"},
    "crossq": {"Pendulum-v1", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"},
    "tqc": {"Pendulum-v1", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"},
    "ppo": {"CartPole-v1", "Pendulum-v1", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"},
    "a2c": {"CartPole-v1", "Pendulum-v1", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"},
    "dqn": {"CartPole-v1", "atari", "BreakoutNoFrameskip-v4", "PongNoFrameskip-v4"},
    "qrdqn": {"CartPole-v1", "atari", "BreakoutNoFrameskip-v4", "PongNoFrameskip-v4"},
    "trpo": {"CartPole-v1", "Pendulum-v1"},
    "ppo_lstm": {"CartPoleNoVel-v1", "PendulumNoVel-v1", "Pendulum-v1"},
}


def _entries(algo: str) -> dict:
    with open(HYPERPARAMS / f"{algo}.yml") as file:
        return yaml.load(file, Loader=yaml.UnsafeLoader)  # as rl-zoo3 reads them


@pytest.mark.parametrize("algo", sorted(EXPECTED))
def test_every_entry_uses_a_pathway_policy_and_dapd(algo: str) -> None:
    entries = _entries(algo)
    assert set(entries) == EXPECTED[algo]
    for env_id, hyperparams in entries.items():
        assert hyperparams["policy"] in ALGOS[algo].policy_aliases, (algo, env_id)
        assert hyperparams["policy"].startswith("Pathway")
        policy_kwargs = eval(hyperparams["policy_kwargs"], {"nn": nn})  # as rl-zoo3 evaluates it
        assert policy_kwargs["sparsity"] == 0.95
        callbacks = get_callback_list(hyperparams)
        if policy_kwargs.get("n_tasks", 1) > 1:
            assert len(callbacks) == 1 and isinstance(callbacks[0], MultiTaskDAPDCallback), (algo, env_id)
            assert callbacks[0].task_thresholds is not None, (algo, env_id)
            continue
        assert len(callbacks) == 1 and isinstance(callbacks[0], DAPDCallback), (algo, env_id)
        dapd = callbacks[0]
        assert any(end is not None for end in (dapd.freeze_threshold, dapd.max_warmup_steps, dapd.end_fraction)), (
            algo,
            env_id,
        )
    assert sb3_pathways  # the aliases come from importing the package


def test_rl_zoo3_trains_and_enjoy_reloads(tmp_path: Path) -> None:
    common = ["--algo", "sac", "--env", "Pendulum-v1", "--gym-packages", "sb3_pathways", "-f", str(tmp_path)]
    train = [sys.executable, "-m", "rl_zoo3.train", *common, "-conf", str(HYPERPARAMS / "sac.yml"), "-n", "300"]
    subprocess.run([*train, "--seed", "0"], check=True, capture_output=True, timeout=300)
    model_path = tmp_path / "sac" / "Pendulum-v1_1" / "Pendulum-v1.zip"
    assert model_path.exists()
    enjoy = [sys.executable, "-m", "rl_zoo3.enjoy", *common, "-n", "201", "--no-render"]
    result = subprocess.run(enjoy, check=True, capture_output=True, text=True, timeout=300)
    assert "Episode Reward:" in result.stdout  # one whole Pendulum episode played by the loaded model

    from stable_baselines3 import SAC

    model = SAC.load(model_path, device="cpu")
    assert type(model.policy) is sb3_pathways.sac.PathwayPolicy
    assert model.pathway_discovery.initialised and model.pathway_discovery.n_updates >= 1
    assert sb3_pathways.pathway_stats(model)["critic"].sparsity == pytest.approx(0.95, abs=1e-3)
