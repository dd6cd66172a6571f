"""Shared fixtures: one small configuration per supported algorithm."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import QRDQN, TQC, TRPO, CrossQ, MaskablePPO, RecurrentPPO
from sb3_contrib.common.wrappers import ActionMasker
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

import sb3_pathways  # registers the aliases
from sb3_pathways.offline import BCQ, IQL, OfflineDataset

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"
MASKED_CARTPOLE = "sb3_pathways_tests/MaskedCartPole-v1"


def _masked_cartpole() -> gym.Env:
    """CartPole whose action masks forbid pushing left once the cart is right of centre."""
    return ActionMasker(gym.make("CartPole-v1"), lambda env: np.array([env.unwrapped.state[0] < 0.0, True]))


if MASKED_CARTPOLE not in gym.registry:
    gym.register(MASKED_CARTPOLE, entry_point=_masked_cartpole)


def _load_benchmark(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses and worker processes look it up there
    sys.path.insert(0, str(BENCHMARKS))  # benchmark scripts import their siblings (learning, overhead)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.fixture(scope="session")
def load_benchmark() -> Callable[[str], ModuleType]:
    """Loads ``benchmarks/<name>.py`` as a module (the scripts are not a package)."""
    return _load_benchmark


@dataclass
class AlgoCase:
    algo: type[BaseAlgorithm]
    env_id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    networks: tuple[str, ...] = ()
    targets: dict[str, str] = field(default_factory=dict)
    policy_defaults: dict[str, Any] = field(default_factory=dict)
    #: the stock policy aliases standing for PathwayPolicy, PathwayCnnPolicy, PathwayMultiInputPolicy
    stock_aliases: tuple[str, str, str] = ("MlpPolicy", "CnnPolicy", "MultiInputPolicy")
    #: learns from a fixed dataset (``kwargs["dataset"]``): online mask updates are refused
    offline: bool = False
    #: its action is a chain of layers that export_pathway exports (not an LSTM, not BCQ's sampling)
    exportable: bool = True

    @property
    def id(self) -> str:
        return self.algo.__name__

    @property
    def load_kwargs(self) -> dict[str, Any]:
        """What ``Algo.load`` needs besides the zip to go on learning (an offline algorithm's dataset)."""
        return {"dataset": self.kwargs["dataset"]} if self.offline else {}

    def skip_if_offline(self) -> None:
        if self.offline:
            pytest.skip("offline algorithms refuse online mask updates (tests/test_offline.py)")

    @property
    def stock_policy(self) -> str:
        """The stock ``MlpPolicy`` alias of the algorithm."""
        return self.stock_aliases[0]

    def make(self, policy: Any = "PathwayPolicy", seed: int = 0, **policy_kwargs: Any) -> BaseAlgorithm:
        kwargs = dict(self.kwargs)
        policy_kwargs = {"net_arch": [64, 64], **self.policy_defaults, **policy_kwargs}
        return self.algo(policy, self.env_id, seed=seed, device="cpu", policy_kwargs=policy_kwargs, **kwargs)


def random_dataset(env_id: str, size: int, seed: int = 0) -> OfflineDataset:
    """Transitions of a uniformly random policy, for offline algorithms' test cases."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    observation, _ = env.reset(seed=seed)
    rows: list[tuple[Any, ...]] = []
    for _ in range(size):
        action = env.action_space.sample()
        next_observation, reward, terminated, truncated, _ = env.step(action)
        rows.append((observation, action, reward, next_observation, terminated))
        observation = env.reset()[0] if terminated or truncated else next_observation
    columns = [np.array(column, dtype=np.float32) for column in zip(*rows)]
    return OfflineDataset(*columns, observation_space=env.observation_space, action_space=env.action_space)


OFF_POLICY = dict(learning_starts=50, batch_size=32, buffer_size=2_000, train_freq=8, gradient_steps=2)
#: offline algorithms learn from 600 random Pendulum transitions (one dataset for both)
OFFLINE = dict(dataset=random_dataset("Pendulum-v1", 600), batch_size=32)
ALGO_CASES = [
    AlgoCase(SAC, "Pendulum-v1", OFF_POLICY, ("actor", "critic"), {"critic_target": "critic"}),
    AlgoCase(TQC, "Pendulum-v1", OFF_POLICY, ("actor", "critic"), {"critic_target": "critic"}),
    AlgoCase(CrossQ, "Pendulum-v1", OFF_POLICY, ("actor", "critic")),
    AlgoCase(
        TD3,
        "Pendulum-v1",
        {**OFF_POLICY, "policy_delay": 1},
        ("actor", "critic"),
        {"actor_target": "actor", "critic_target": "critic"},
    ),
    AlgoCase(DDPG, "Pendulum-v1", OFF_POLICY, ("actor", "critic"), {"actor_target": "actor", "critic_target": "critic"}),
    AlgoCase(DQN, "CartPole-v1", {**OFF_POLICY, "target_update_interval": 10}, ("q_net",), {"q_net_target": "q_net"}),
    AlgoCase(
        QRDQN,
        "CartPole-v1",
        {**OFF_POLICY, "target_update_interval": 10},
        ("quantile_net",),
        {"quantile_net_target": "quantile_net"},
    ),
    AlgoCase(PPO, "CartPole-v1", dict(n_steps=64, batch_size=32, n_epochs=2), ("actor", "critic")),
    AlgoCase(A2C, "Pendulum-v1", dict(n_steps=8), ("actor", "critic")),
    AlgoCase(TRPO, "Pendulum-v1", dict(n_steps=64, batch_size=32), ("actor", "critic")),
    AlgoCase(MaskablePPO, MASKED_CARTPOLE, dict(n_steps=64, batch_size=32, n_epochs=2), ("actor", "critic")),
    AlgoCase(
        RecurrentPPO,
        "CartPole-v1",
        dict(n_steps=64, batch_size=32, n_epochs=2),
        ("actor", "critic"),
        policy_defaults=dict(lstm_hidden_size=32),
        stock_aliases=("MlpLstmPolicy", "CnnLstmPolicy", "MultiInputLstmPolicy"),
        exportable=False,
    ),
    AlgoCase(
        IQL,
        "Pendulum-v1",
        OFFLINE,
        ("actor", "critic", "value"),
        {"critic_target": "critic"},
        offline=True,
    ),
    AlgoCase(
        BCQ,
        "Pendulum-v1",
        OFFLINE,
        ("actor", "critic", "vae"),
        {"actor_target": "actor", "critic_target": "critic"},
        offline=True,
        exportable=False,
    ),
]


@pytest.fixture(params=ALGO_CASES, ids=lambda case: case.id)
def case(request: pytest.FixtureRequest) -> AlgoCase:
    return request.param


def observations(model: BaseAlgorithm, n: int = 16, seed: int = 0) -> np.ndarray:
    space = model.observation_space
    space.seed(seed)
    return np.stack([space.sample() for _ in range(n)])


def network_outputs(policy: th.nn.Module, obs: np.ndarray) -> list[th.Tensor]:
    """The outputs of every online network of a policy on a batch of observations."""
    with th.no_grad():
        obs_tensor, _ = policy.obs_to_tensor(obs)
        if hasattr(policy, "lstm_actor"):  # recurrent: one step from the zero state
            layers, _, size = policy.lstm_hidden_state_shape
            lstm_states = (th.zeros(layers, len(obs), size), th.zeros(layers, len(obs), size))
            starts = th.ones(len(obs))
            actions = policy._predict(obs_tensor, lstm_states, starts, deterministic=True)[0]
            return [actions.float(), policy.predict_values(obs_tensor, lstm_states, starts)]
        outputs = [policy._predict(obs_tensor, deterministic=True).float()]
        if hasattr(policy, "critic"):
            actions = outputs[0] if outputs[0].dim() == 2 else outputs[0].unsqueeze(-1)
            outputs.extend(q.float() for q in _as_tuple(policy.critic(obs_tensor, actions)))
        if hasattr(policy, "q_net"):
            outputs.append(policy.q_net(obs_tensor))
        if hasattr(policy, "quantile_net"):
            outputs.append(policy.quantile_net(obs_tensor))
        if hasattr(policy, "predict_values"):
            outputs.append(policy.predict_values(obs_tensor))
    return outputs


def assert_every_output_unit_has_an_input(model: BaseAlgorithm) -> None:
    """Every output unit (row, output channel) of every masked layer keeps an active input,
    in every pathway."""
    for name, mask in sb3_pathways.get_masks(model).items():
        rows = mask.reshape(mask.shape[0], mask.shape[1], -1) if mask.dim() > 2 else mask.unsqueeze(0)
        dead = int((~rows.any(dim=-1)).sum())
        assert dead == 0, f"{name}: {dead} output units without an input"


def _as_tuple(value: Any) -> tuple[th.Tensor, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


class FixedImageEnv(gym.Env):
    """A tiny image environment (40x40 grayscale) for CNN policies."""

    def __init__(self, discrete: bool = True) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (40, 40, 1), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1, 1, (2,), dtype=np.float32)
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._steps = 0
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._steps += 1
        return self.observation_space.sample(), 0.0, False, self._steps >= 20, {}
