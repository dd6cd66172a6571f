"""Offline datasets for MetaWorld multi-task benchmarks, written as local Minari datasets.

Episodes come from MetaWorld's own scripted policies (``metaworld.policies``), one per task,
in three qualities after the data mixes of the offline RL literature: ``"expert"`` (the
scripted policy), ``"medium"`` (each of its actions replaced by a uniform random action with
probability :data:`MEDIUM_RANDOM_ACTION_PROB`) and ``"medium-expert"`` (episodes of the two
alternating). Gaussian noise on the scripted actions barely lowers their success, hence the
random replacement. Every step records the task id and MetaWorld's ``success`` flag, which
:func:`~sb3_pathways.offline.datasets.load_minari` reads back.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np

from sb3_pathways.multitask.envs import TaskOneHot, _metaworld_env, metaworld_task_names

#: share of a medium episode's actions replaced by uniform random actions (measured on MT10,
#: 3 episodes per task: scripted 0.97 success, medium 0.73)
MEDIUM_RANDOM_ACTION_PROB = 0.5
#: quality -> random-action probability of each episode, cycled over a task's episodes
QUALITIES: dict[str, tuple[float, ...]] = {
    "expert": (0.0,),
    "medium": (MEDIUM_RANDOM_ACTION_PROB,),
    "medium-expert": (0.0, MEDIUM_RANDOM_ACTION_PROB),
}
BENCHMARKS = ("MT10", "MT50")


def scripted_dataset_id(benchmark: str = "MT10", quality: str = "expert", episodes_per_task: int = 10) -> str:
    """The id :func:`collect_scripted` gives a dataset, e.g. ``"sb3_pathways/mt10/expert-10ep-v0"``."""
    return f"sb3_pathways/{benchmark.lower()}/{quality}-{episodes_per_task}ep-v0"


def collect_scripted(
    benchmark: str = "MT10",
    episodes_per_task: int = 10,
    quality: str = "expert",
    dataset_id: str | None = None,
    seed: int = 0,
    max_episode_steps: int | None = None,
    overwrite: bool = False,
    verbose: int = 0,
) -> str:
    """
    Run MetaWorld's scripted policy of every task of ``benchmark`` and write the episodes as a
    local Minari dataset; observations carry the task one-hot, as
    :func:`~sb3_pathways.multitask.make_mt10_env` gives them. Returns the dataset id, which
    ``IQL(..., dataset=...)`` and ``BCQ(..., dataset=...)`` accept.

    :param benchmark: ``"MT10"`` or ``"MT50"``
    :param episodes_per_task: episodes of each task (MetaWorld episodes are 500 steps, so 10
        episodes of MT10 are 50,000 transitions)
    :param quality: ``"expert"``, ``"medium"`` or ``"medium-expert"`` (see the module)
    :param dataset_id: Minari id of the new dataset (default: :func:`scripted_dataset_id`)
    :param seed: seed of the environments (episode ``i`` of a task is reset with ``seed + i``)
        and of the random actions
    :param max_episode_steps: episode length (MetaWorld's default: 500)
    :param overwrite: replace a local dataset of the same id (otherwise an error)
    :param verbose: 1: print each task's success rate
    """
    try:
        import minari
        from metaworld.policies import ENV_POLICY_MAP
    except ImportError as error:
        raise ImportError(
            "collecting MetaWorld datasets needs the offline and metaworld extras: "
            "pip install 'sb3-pathways[offline,metaworld]'"
        ) from error
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {sorted(QUALITIES)}, got {quality!r}")
    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be at least 1, got {episodes_per_task}")
    dataset_id = dataset_id or scripted_dataset_id(benchmark, quality, episodes_per_task)
    if dataset_id in minari.list_local_datasets():
        if not overwrite:
            raise FileExistsError(f"a local Minari dataset {dataset_id!r} exists; pass overwrite=True to replace it")
        minari.delete_dataset(dataset_id)

    tasks = metaworld_task_names(benchmark)
    rng = np.random.default_rng(seed)
    episodes: list[Any] = []  # minari's EpisodeBuffer
    success_per_task: dict[str, float] = {}
    start = time.perf_counter()
    for task_id, task_name in enumerate(tasks):
        env = TaskOneHot(_metaworld_env(task_name, seed, max_episode_steps), task_id, len(tasks), task_name)
        scripted = ENV_POLICY_MAP[task_name]()  # type: ignore[abstract]
        successes = []
        for episode in range(episodes_per_task):
            random_action_prob = QUALITIES[quality][episode % len(QUALITIES[quality])]
            buffer = _scripted_episode(env, scripted, random_action_prob, seed + episode, rng, len(episodes))
            episodes.append(buffer)
            successes.append(float(np.max(buffer.infos["success"])))
        env.close()
        success_per_task[task_name] = float(np.mean(successes))
        if verbose:
            print(f"{task_name}: success {success_per_task[task_name]:.2f} over {episodes_per_task} episodes")
    mean_success = float(np.mean(list(success_per_task.values())))
    description = (
        f"MetaWorld {benchmark}, {quality} episodes of the scripted policies (metaworld.policies), "
        f"{episodes_per_task} per task, seed {seed}; episode success per task: "
        + ", ".join(f"{name} {value:.2f}" for name, value in success_per_task.items())
        + f"; mean {mean_success:.3f}"
    )
    minari.create_dataset_from_buffers(
        dataset_id,
        episodes,
        env=f"sb3_pathways/{benchmark}-v0",
        algorithm_name=f"metaworld.policies scripted ({quality})",
        author="sb3_pathways",
        description=description,
    )
    if verbose:
        seconds = time.perf_counter() - start
        print(f"{dataset_id}: {len(episodes)} episodes, mean success {mean_success:.3f}, {seconds:.0f} s")
    return dataset_id


def _scripted_episode(
    env: TaskOneHot, scripted: Any, random_action_prob: float, seed: int, rng: np.random.Generator, episode_id: int
) -> Any:
    from minari.data_collector import EpisodeBuffer

    observation, _ = env.reset(seed=seed)
    observations, actions, rewards, terminations, truncations = [observation], [], [], [], []
    task_ids, successes = [env.task_id], [False]
    action_space = env.action_space
    assert isinstance(action_space, gym.spaces.Box)
    low, high = action_space.low, action_space.high
    while True:
        # the scripted policy reads MetaWorld's own observation, without the one-hot; it gets a
        # copy, as some of them write into their input (door-open-v3 shifts the door position)
        action = np.clip(scripted.get_action(observation[: -env.n_tasks].copy()), low, high)
        if random_action_prob and rng.random() < random_action_prob:
            action = rng.uniform(low, high)
        observation, reward, terminated, truncated, info = env.step(action.astype(env.action_space.dtype))
        observations.append(observation)
        actions.append(action.astype(env.action_space.dtype))
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        task_ids.append(env.task_id)
        successes.append(bool(info.get("success", False)))
        if terminated or truncated:
            break
    return EpisodeBuffer(
        id=episode_id,
        seed=seed,
        observations=observations,
        actions=actions,
        rewards=rewards,
        terminations=terminations,
        truncations=truncations,
        infos={"task_id": np.array(task_ids, dtype=np.int64), "success": np.array(successes)},
    )
