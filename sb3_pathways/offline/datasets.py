"""Offline datasets: transitions from a Minari dataset or an SB3 replay buffer, checked against
the environment and written into the replay buffer an offline algorithm samples from."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.save_util import load_from_pkl


@dataclass
class OfflineDataset:
    """
    A fixed set of transitions, one row per transition, actions in the environment's units.

    :param observations: shape ``(n, *observation shape)``
    :param actions: shape ``(n, *action shape)``
    :param rewards: shape ``(n,)``
    :param next_observations: shape ``(n, *observation shape)``
    :param terminations: shape ``(n,)``, 1 where the episode ended in a terminal state (no
        bootstrapping); a time-limit end is not a termination
    :param observation_space: the space the observations come from
    :param action_space: the space the actions come from
    :param task_ids: multi-task datasets: the task of every transition, shape ``(n,)``
    :param successes: the environment's ``success`` flag at every transition, if recorded
    :param actions_scaled: Box actions are already in [-1, 1], the scale SB3's off-policy
        algorithms store (their replay buffers); ``False``: in the environment's units
    :param name: where the transitions came from, for messages
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminations: np.ndarray
    observation_space: gym.spaces.Space
    action_space: gym.spaces.Space
    task_ids: np.ndarray | None = None
    successes: np.ndarray | None = None
    actions_scaled: bool = False
    name: str = field(default="dataset")

    def __post_init__(self) -> None:
        n = len(self.observations)
        columns = {
            "actions": self.actions,
            "rewards": self.rewards,
            "next_observations": self.next_observations,
            "terminations": self.terminations,
            "task_ids": self.task_ids,
            "successes": self.successes,
        }
        for name, column in columns.items():
            if column is not None and len(column) != n:
                raise ValueError(f"{self.name}: {name} has {len(column)} rows, observations {n}")
        if n == 0:
            raise ValueError(f"{self.name} holds no transitions")

    def __len__(self) -> int:
        return len(self.observations)

    @property
    def n_tasks(self) -> int:
        """Tasks present (1 without task ids)."""
        return 1 if self.task_ids is None else int(self.task_ids.max()) + 1

    def check_spaces(self, env_observation_space: gym.spaces.Space, env_action_space: gym.spaces.Space) -> None:
        """Raise a ``ValueError`` naming the difference if the data do not fit the environment's spaces."""
        for what, data, mine, env_space in (
            ("observation", self.observations, self.observation_space, env_observation_space),
            ("action", self.actions, self.action_space, env_action_space),
        ):
            if type(mine) is not type(env_space) or mine.shape != env_space.shape:
                raise ValueError(
                    f"{self.name}: its {what} space {mine} does not match the environment's {env_space}; "
                    "nothing was truncated or padded"
                )
            if (
                isinstance(env_space, gym.spaces.Box)
                and isinstance(mine, gym.spaces.Box)
                and (not np.allclose(mine.low, env_space.low) or not np.allclose(mine.high, env_space.high))
            ):
                raise ValueError(f"{self.name}: its {what} space bounds {mine} differ from the environment's {env_space}")
            if data.shape[1:] != env_space.shape and not isinstance(env_space, gym.spaces.Discrete):
                raise ValueError(f"{self.name}: {what}s are shaped {data.shape[1:]}, the environment's {env_space.shape}")

    def check_tasks(self, n_tasks: int) -> None:
        """Raise a ``ValueError`` if the task ids do not fit a policy with ``n_tasks`` pathways."""
        if n_tasks == 1:
            return
        if self.task_ids is None:
            raise ValueError(f"{self.name} has no task ids, but the policy has n_tasks={n_tasks}")
        found = np.unique(self.task_ids)
        if found.min() < 0 or found.max() >= n_tasks:
            raise ValueError(f"{self.name}: task ids {found.tolist()} do not fit n_tasks={n_tasks} (0 to {n_tasks - 1})")


def load_replay_buffer(path: str | pathlib.Path) -> OfflineDataset:
    """
    The transitions of an SB3 replay buffer saved with ``model.save_replay_buffer(path)``,
    every environment's transitions in storage order (train SAC online, then IQL offline on
    its buffer).

    :param path: the ``.pkl`` file
    """
    path = pathlib.Path(path)
    if not path.exists() and not path.with_suffix(".pkl").exists():
        raise FileNotFoundError(f"no replay buffer at {path}")
    buffer = load_from_pkl(path)
    if not isinstance(buffer, ReplayBuffer):
        raise ValueError(f"{path} holds a {type(buffer).__name__}, not an SB3 ReplayBuffer")
    return replay_buffer_dataset(buffer, name=str(path))


def replay_buffer_dataset(buffer: ReplayBuffer, name: str = "replay buffer") -> OfflineDataset:
    """The transitions stored in an SB3 replay buffer (all environments); Box actions stay in
    the [-1, 1] scale SB3's off-policy algorithms store them in."""
    stop = buffer.buffer_size if buffer.full else buffer.pos
    if buffer.optimize_memory_usage:
        raise ValueError(
            f"{name}: buffers with optimize_memory_usage=True are not supported (next observations are not stored)"
        )

    def rows(array: np.ndarray) -> np.ndarray:
        return array[:stop].swapaxes(0, 1).reshape(stop * buffer.n_envs, *array.shape[2:])

    terminations = rows(buffer.dones) * (1 - rows(buffer.timeouts))
    return OfflineDataset(
        observations=rows(buffer.observations),
        actions=rows(buffer.actions),
        rewards=rows(buffer.rewards),
        next_observations=rows(buffer.next_observations),
        terminations=terminations,
        observation_space=buffer.observation_space,
        action_space=buffer.action_space,
        actions_scaled=isinstance(buffer.action_space, gym.spaces.Box),
        name=name,
    )


def load_minari(dataset_id: str) -> OfflineDataset:
    """
    The transitions of a local Minari dataset (nothing is downloaded). Steps carry
    ``infos["task_id"]`` and ``infos["success"]`` when the collector recorded them.

    :param dataset_id: the dataset's id, e.g. ``"sb3_pathways/mt10/expert-v0"``
    """
    try:
        import minari
    except ImportError as error:
        raise ImportError("Minari datasets need the offline extra: pip install 'sb3-pathways[offline]'") from error
    local = sorted(minari.list_local_datasets())
    if dataset_id not in local:
        raise ValueError(f"no local Minari dataset {dataset_id!r}; local datasets: {local} (nothing is downloaded)")
    dataset = minari.load_dataset(dataset_id)
    columns: dict[str, list[np.ndarray]] = {key: [] for key in ("obs", "next", "act", "rew", "term", "task", "success")}
    for episode in dataset.iterate_episodes():
        observations = np.asarray(episode.observations)
        steps = len(episode.actions)
        columns["obs"].append(observations[:-1])
        columns["next"].append(observations[1:])
        columns["act"].append(np.asarray(episode.actions))
        columns["rew"].append(np.asarray(episode.rewards, dtype=np.float32))
        columns["term"].append(np.asarray(episode.terminations, dtype=np.float32))
        infos = episode.infos or {}
        if "task_id" in infos:
            columns["task"].append(np.asarray(infos["task_id"][1 : steps + 1]).astype(np.int64).reshape(steps))
        if "success" in infos:
            columns["success"].append(np.asarray(infos["success"][1 : steps + 1]).astype(np.float32).reshape(steps))
    return OfflineDataset(
        observations=np.concatenate(columns["obs"]),
        actions=np.concatenate(columns["act"]),
        rewards=np.concatenate(columns["rew"]),
        next_observations=np.concatenate(columns["next"]),
        terminations=np.concatenate(columns["term"]),
        observation_space=dataset.observation_space,
        action_space=dataset.action_space,
        task_ids=np.concatenate(columns["task"]) if columns["task"] else None,
        successes=np.concatenate(columns["success"]) if columns["success"] else None,
        name=f"Minari dataset {dataset_id!r}",
    )


def as_dataset(data: Any) -> OfflineDataset:
    """
    A dataset from what a user passes: an :class:`OfflineDataset`, an SB3 ``ReplayBuffer``, the
    path of a saved replay buffer (``.pkl``) or a local Minari dataset id.
    """
    if isinstance(data, OfflineDataset):
        return data
    if isinstance(data, ReplayBuffer):
        return replay_buffer_dataset(data)
    if isinstance(data, pathlib.Path) or (isinstance(data, str) and data.endswith(".pkl")):
        return load_replay_buffer(data)
    if isinstance(data, str):
        return load_minari(data)
    raise TypeError(
        "dataset must be an OfflineDataset, an SB3 ReplayBuffer, the path of a saved replay buffer (.pkl) "
        f"or a local Minari dataset id, got {type(data).__name__}"
    )
