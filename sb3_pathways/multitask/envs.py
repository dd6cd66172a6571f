"""MetaWorld multi-task benchmarks as SB3 vectorised environments: one task per sub-env, the
task one-hot at the end of every observation, ``is_success`` in ``info`` (so SB3's logger
reports success rates) and Monitor statistics per sub-env."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

#: the ten training tasks of MetaWorld MT10 (v3 environments), in benchmark order
MT10_TASKS: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)


class TaskOneHot(gym.Wrapper):
    """
    Appends a one-hot task encoding to the observation, names the task (``task_id``,
    ``task_name`` attributes, read by :class:`~sb3_pathways.multitask.MultiTaskDAPDCallback`)
    and reports MetaWorld's ``success`` as ``is_success``.

    :param env: a single-task environment
    :param task_id: this task's index
    :param n_tasks: number of tasks
    :param task_name: this task's name
    """

    def __init__(self, env: gym.Env, task_id: int, n_tasks: int, task_name: str) -> None:
        super().__init__(env)
        if not 0 <= task_id < n_tasks:
            raise ValueError(f"task_id must be in [0, {n_tasks - 1}], got {task_id}")
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"TaskOneHot needs a flat Box observation space, got {space}")
        self.task_id, self.n_tasks, self.task_name = task_id, n_tasks, task_name
        self._one_hot = np.zeros(n_tasks, dtype=space.dtype)
        self._one_hot[task_id] = 1
        low = np.concatenate([space.low, np.zeros(n_tasks, dtype=space.dtype)])
        high = np.concatenate([space.high, np.ones(n_tasks, dtype=space.dtype)])
        self.observation_space = gym.spaces.Box(low, high, dtype=space.dtype)

    def _observation(self, observation: np.ndarray) -> np.ndarray:
        return np.concatenate([observation, self._one_hot]).astype(self.observation_space.dtype)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the task; the observation gets the one-hot."""
        observation, info = self.env.reset(**kwargs)
        return self._observation(observation), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step the task; ``info["is_success"]`` mirrors MetaWorld's ``success``."""
        observation, reward, terminated, truncated, info = self.env.step(action)
        if "success" in info:
            info["is_success"] = float(info["success"])
        return self._observation(observation), float(reward), terminated, truncated, info


def metaworld_task_names(benchmark: str) -> tuple[str, ...]:
    """The training tasks of a MetaWorld benchmark (``"MT10"`` or ``"MT50"``)."""
    if benchmark == "MT10":
        return MT10_TASKS
    if benchmark == "MT50":
        import metaworld

        return tuple(metaworld.MT50().train_classes)
    raise ValueError(f"benchmark must be 'MT10' or 'MT50', got {benchmark!r}")


def make_metaworld_task(
    task_name: str, task_id: int, n_tasks: int, seed: int, max_episode_steps: int | None = None
) -> gym.Env:
    """One MetaWorld task (goal positions resampled at every reset) with its one-hot and
    Monitor (``is_success`` recorded with every episode)."""
    env = _metaworld_env(task_name, seed, max_episode_steps)
    return Monitor(TaskOneHot(env, task_id, n_tasks, task_name), info_keywords=("is_success",))


class RoundRobinTasks(gym.Env):
    """
    One environment that plays a list of MetaWorld tasks in turn, a new task at every reset,
    with the task one-hot in the observation: a gym id (``sb3_pathways/MT10-v0``,
    ``sb3_pathways/MT50-v0``) for tools that build every sub-env from the same id, such as
    rl-zoo3. ``task_names`` lists the tasks in one-hot order. A task's simulation is built the
    first time it is played.

    :param benchmark: ``"MT10"`` or ``"MT50"``
    :param seed: offsets the first task (sub-envs seeded differently start on different tasks)
    """

    def __init__(self, benchmark: str = "MT10", seed: int = 0) -> None:
        self.task_names = list(metaworld_task_names(benchmark))
        self._seed = seed
        self._tasks: list[TaskOneHot | None] = [None] * len(self.task_names)
        self.observation_space = self._task(0).observation_space
        self.action_space = self._task(0).action_space
        self._current = seed % len(self._tasks) - 1

    def _task(self, task: int) -> TaskOneHot:
        env = self._tasks[task]
        if env is None:
            name = self.task_names[task]
            env = self._tasks[task] = TaskOneHot(_metaworld_env(name, self._seed), task, len(self.task_names), name)
        return env

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode of the next task."""
        super().reset(seed=seed)
        if seed is not None:
            self._current = seed % len(self._tasks) - 1
        self._current = (self._current + 1) % len(self._tasks)
        return self._task(self._current).reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One step of the current task."""
        return self._task(self._current).step(action)

    def close(self) -> None:
        """Close every task's environment."""
        for env in self._tasks:
            if env is not None:
                env.close()


def _metaworld_env(task_name: str, seed: int, max_episode_steps: int | None = None) -> gym.Env:
    try:
        import metaworld  # noqa: F401  (registers the Meta-World/ environments)
    except ImportError as error:
        raise ImportError("MetaWorld environments need the metaworld extra: pip install 'sb3-pathways[metaworld]'") from error
    kwargs: dict[str, Any] = {"env_name": task_name, "seed": seed}
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    return gym.make("Meta-World/MT1", **kwargs)


def make_multitask_env(
    tasks: Sequence[str],
    n_envs: int | None = None,
    seed: int = 0,
    vec_env_cls: type[VecEnv] = DummyVecEnv,
    max_episode_steps: int | None = None,
) -> VecEnv:
    """
    An SB3 VecEnv of MetaWorld tasks: sub-env ``i`` runs task ``i % len(tasks)``.

    :param tasks: MetaWorld task names (e.g. :data:`MT10_TASKS`)
    :param n_envs: number of sub-environments (default: one per task); a multiple of the
        number of tasks
    :param seed: seed of the first sub-env (the others get seed + i)
    :param vec_env_cls: ``DummyVecEnv`` or ``SubprocVecEnv``
    :param max_episode_steps: episode length (MetaWorld's default: 500)
    """
    tasks = list(tasks)
    n_envs = len(tasks) if n_envs is None else n_envs
    if n_envs < 1 or n_envs % len(tasks):
        raise ValueError(f"n_envs must be a positive multiple of the {len(tasks)} tasks, got {n_envs}")
    if vec_env_cls not in (DummyVecEnv, SubprocVecEnv):
        raise ValueError(f"vec_env_cls must be DummyVecEnv or SubprocVecEnv, got {vec_env_cls!r}")

    def maker(index: int) -> Any:
        task = index % len(tasks)
        return lambda: make_metaworld_task(tasks[task], task, len(tasks), seed + index, max_episode_steps)

    return vec_env_cls([maker(index) for index in range(n_envs)])


def make_mt10_env(
    n_envs: int = 10,
    seed: int = 0,
    vec_env_cls: type[VecEnv] = DummyVecEnv,
    max_episode_steps: int | None = None,
) -> VecEnv:
    """MetaWorld MT10 as an SB3 VecEnv, one task per sub-env (see :func:`make_multitask_env`)."""
    return make_multitask_env(MT10_TASKS, n_envs, seed, vec_env_cls, max_episode_steps)


def make_mt50_env(
    n_envs: int = 50,
    seed: int = 0,
    vec_env_cls: type[VecEnv] = DummyVecEnv,
    max_episode_steps: int | None = None,
) -> VecEnv:
    """MetaWorld MT50 as an SB3 VecEnv, one task per sub-env (see :func:`make_multitask_env`)."""
    return make_multitask_env(metaworld_task_names("MT50"), n_envs, seed, vec_env_cls, max_episode_steps)


for _benchmark in ("MT10", "MT50"):
    if f"sb3_pathways/{_benchmark}-v0" not in gym.registry:
        gym.register(
            f"sb3_pathways/{_benchmark}-v0",
            entry_point="sb3_pathways.multitask.envs:RoundRobinTasks",
            kwargs={"benchmark": _benchmark},
        )
