"""Multi-task DAPD: one pathway per task, each scored on its own task's data, with its own
moving average of scores and its own freeze; the task weight copies merge once all froze."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.preprocessing import preprocess_obs

from sb3_pathways.callbacks import (
    PathwayUpdateCallback,
    has_episode_statistics,
)
from sb3_pathways.masking.pathway import merge_task_weights
from sb3_pathways.policies import PathwayPolicyMixin, pathway_policy
from sb3_pathways.scoring.data import select_transitions
from sb3_pathways.scoring.sensitivity import connection_sensitivity
from sb3_pathways.updaters.base import Masks, UpdateContext
from sb3_pathways.updaters.dapd import DAPDUpdater
from sb3_pathways.validation import optional_fraction, optional_positive_int

TASK_FREEZE_METRICS = ("success", "return")


def batch_task_ids(policy: PathwayPolicyMixin, observations: Any) -> th.Tensor:
    """The task of every transition of a buffer sample, from its observations."""
    preprocessed = preprocess_obs(observations, policy.observation_space, normalize_images=policy.normalize_images)
    return policy.task_ids(preprocessed)  # type: ignore[arg-type]


class MultiTaskDAPDUpdater(DAPDUpdater):
    """
    DAPD per task: the transitions of each task not yet frozen are scored with the
    algorithm's loss (all of them routed through that task's pathway), normalised, averaged
    over that task's last ``moving_average`` updates, and the top-k becomes its mask.
    Arguments as :class:`~sb3_pathways.updaters.DAPDUpdater` (K is per task).
    """

    def update_masks(self, context: UpdateContext) -> Masks:
        policy = pathway_policy(context.model, type(self).__name__)
        assert context.batch is not None
        tasks = batch_task_ids(policy, context.batch.observations)
        masks = {
            name: {layer: mask.clone() for layer, mask in network.masks().items()}
            for name, network in context.pathways.items()
        }
        changed: set[str] = set()
        networks = self.rescored_networks(context.model)
        for task in range(policy.n_tasks):
            index = (tasks == task).nonzero().squeeze(1)
            if task in context.state.task_frozen_steps or index.numel() == 0:
                continue
            batch = select_transitions(context.batch, index)
            scores = connection_sensitivity(context.model, batch, self.score_at, self.chunk_size, self.objective, networks)
            for name, layer_scores in scores.items():
                network = context.pathways[name]
                task_scores = {
                    layer: score[task] if network.layers[layer].independent else score for layer, score in layer_scores.items()
                }
                selected = self.select(f"{name}/task{task}", network, task_scores)
                if selected is None:
                    continue
                for layer, mask in selected.items():
                    masks[name][layer][task] = mask
                changed.add(name)
        return {name: masks[name] for name in changed}


class MultiTaskDAPDCallback(PathwayUpdateCallback):
    """
    Multi-task Data Adaptive Pathway Discovery for a pathway policy with ``n_tasks`` > 1.

    During warm-up each task's pathway is rescored on that task's newest transitions (its own
    K-step moving average) and trains its own copy of the weights. A task's mask freezes when
    its metric over its last ``freeze_window`` episodes reaches its threshold (or at
    ``max_warmup_steps``, or after ``max_warmup_fraction`` of the ``learn`` budget); once
    every task is frozen, the copies merge into the shared
    network (each weight the average over the tasks that use it) and the gradient of a
    shared weight is from then on the average over its tasks. Records
    ``pathways/task/<name>/success``, ``/return`` and ``/frozen`` per task.

    :param update_freq: ``"episode"`` or environment steps between updates
    :param window: transitions per task scored at each update (default: max(batch size,
        episode length)); the newest ``window * n_tasks`` transitions are read
    :param moving_average: K, per task
    :param freeze_threshold: per-task threshold on ``freeze_metric`` (one number for all
        tasks, or one per task); ``None``: freeze only at ``max_warmup_steps``
    :param freeze_metric: ``"success"`` (mean ``is_success`` of the task's last episodes) or
        ``"return"``
    :param freeze_window: episodes per task averaged by the metric
    :param max_warmup_steps: freeze every task at this environment step
    :param max_warmup_fraction: freeze every task once training reaches this share of the
        ``learn`` call's steps after ``learning_starts`` (as :class:`DAPDCallback`'s);
        ``None`` (default): no such limit
    :param task_names: name of each task for the logs (default: the environments'
        ``task_name`` attribute, else ``task0``, ``task1``, ...)
    :param score_at: ``"dense"`` or ``"masked"``
    :param chunk_size: transitions per scoring forward pass
    :param allocation: how each task's k active weights are split among the layers (see
        :class:`~sb3_pathways.DAPDCallback`)
    :param within_layer: how a layer's share is chosen (see :class:`~sb3_pathways.DAPDCallback`)
    :param cover_inputs: every input unit of every layer keeps a connection in each task's
        pathway (see :class:`~sb3_pathways.DAPDCallback`)
    :param networks: the networks rescored (see :class:`~sb3_pathways.DAPDCallback`):
        ``"all"`` by default (single-task SAC rescores its actor alone by default; on MT10 the
        actor alone did as well as every network, not better: docs/benchmarks.md),
        ``"default"`` or network names
    :param merge: merge the task copies into the shared network once every task is frozen
        (the paper's freeze and merge); ``False`` keeps each task's copy for the rest of
        training (no weight is shared between tasks)
    :param verbose: 1 prints updates and freezes
    """

    def __init__(
        self,
        update_freq: int | str = "episode",
        window: int | None = None,
        moving_average: int = 1,
        freeze_threshold: float | Sequence[float] | None = None,
        freeze_metric: str = "success",
        freeze_window: int = 10,
        max_warmup_steps: int | None = None,
        task_names: Sequence[str] | None = None,
        score_at: str = "dense",
        chunk_size: int = 2048,
        max_warmup_fraction: float | None = None,
        allocation: str = "global",
        within_layer: str = "top_k",
        cover_inputs: bool = False,
        networks: str | Sequence[str] = "all",
        merge: bool = True,
        verbose: int = 0,
    ) -> None:
        if not isinstance(merge, bool):
            raise ValueError(f"merge must be True or False, got {merge!r}")
        if freeze_metric not in TASK_FREEZE_METRICS:
            raise ValueError(f"freeze_metric must be one of {TASK_FREEZE_METRICS}, got {freeze_metric!r}")
        thresholds = None if freeze_threshold is None else np.atleast_1d(np.asarray(freeze_threshold, dtype=float))
        updater = MultiTaskDAPDUpdater(
            moving_average,
            score_at,
            chunk_size,
            allocation,
            within_layer=within_layer,
            cover_inputs=cover_inputs,
            networks=networks,
        )
        super().__init__(
            updater,
            update_freq=update_freq,
            window=window,
            freeze_threshold=None,
            freeze_window=freeze_window,
            max_warmup_steps=optional_positive_int(max_warmup_steps, "max_warmup_steps"),
            end_fraction=optional_fraction(max_warmup_fraction, "max_warmup_fraction"),
            verbose=verbose,
        )
        self.merge = merge
        self.task_thresholds = thresholds
        self.task_freeze_metric = freeze_metric
        self.task_names = list(task_names) if task_names is not None else None
        self._task_episodes: list[deque[tuple[float, float]]] = []

    @property
    def n_tasks(self) -> int:
        return pathway_policy(self.model, type(self).__name__).n_tasks

    def _init_callback(self) -> None:
        super()._init_callback()
        n_tasks = self.n_tasks
        if n_tasks < 2:
            raise ValueError("MultiTaskDAPDCallback needs a multi-task policy: policy_kwargs=dict(n_tasks=N) with N >= 2")
        if self.task_thresholds is not None and len(self.task_thresholds) not in (1, n_tasks):
            raise ValueError(f"freeze_threshold needs one value or {n_tasks} (one per task), got {len(self.task_thresholds)}")
        if self.task_names is None:
            self.task_names = self._names_from_env(n_tasks)
        elif len(self.task_names) != n_tasks:
            raise ValueError(f"task_names needs {n_tasks} names, got {len(self.task_names)}")
        self._task_episodes = [deque(maxlen=self.freeze_window) for _ in range(n_tasks)]
        self.state.task_names = list(self.task_names)

    def _names_from_env(self, n_tasks: int) -> list[str]:
        names = [f"task{task}" for task in range(n_tasks)]
        env = self.model.get_env()
        try:
            listed = env.get_attr("task_names")[0]  # type: ignore[union-attr]
            if len(listed) == n_tasks:
                return [str(name) for name in listed]
        except AttributeError:
            pass
        try:
            ids, env_names = env.get_attr("task_id"), env.get_attr("task_name")  # type: ignore[union-attr]
        except AttributeError:
            return names
        for task, name in zip(ids, env_names):
            names[int(task)] = str(name)
        return names

    def _on_training_start(self) -> None:
        super()._on_training_start()
        if not has_episode_statistics(self.model):
            raise ValueError(
                "MultiTaskDAPDCallback reads each task's episodes from Monitor: wrap every task environment in a "
                "Monitor (make_mt10_env and make_vec_env do)"
            )

    def _on_step(self) -> bool:
        super()._on_step()
        dones = np.asarray(self.locals["dones"], dtype=bool)
        if not dones.any():
            return True
        policy = pathway_policy(self.model, type(self).__name__)
        infos = self.locals["infos"]
        for env_index in np.flatnonzero(dones):
            info = infos[env_index]
            last = info.get("terminal_observation")
            if last is None or "episode" not in info:
                continue
            observation, _ = policy.obs_to_tensor(last)
            task = int(batch_task_ids(policy, observation)[0])
            success = float(info.get("is_success", info.get("success", 0.0)))
            self._task_episodes[task].append((float(info["episode"]["r"]), success))
        return True

    def _window(self) -> int:
        return super()._window() * self.n_tasks

    def task_metric(self, task: int) -> float | None:
        """The freeze metric of a task over its last ``freeze_window`` episodes."""
        episodes = self._task_episodes[task]
        if not episodes:
            return None
        column = 1 if self.task_freeze_metric == "success" else 0
        return float(np.mean([episode[column] for episode in episodes]))

    def _check_freeze(self) -> None:
        state = self.state
        if state.frozen:
            return
        warmup_over = self.schedule.ended(self.num_timesteps)
        for task in range(self.n_tasks):
            if task in state.task_frozen_steps:
                continue
            value = self.task_metric(task)
            threshold = (
                None if self.task_thresholds is None else self.task_thresholds[min(task, len(self.task_thresholds) - 1)]
            )
            if warmup_over or (threshold is not None and value is not None and value >= threshold):
                state.task_frozen_steps[task] = self.num_timesteps
                if self.verbose >= 1:
                    assert self.task_names is not None
                    print(f"{type(self).__name__}: task {self.task_names[task]} frozen at step {self.num_timesteps}")
        if len(state.task_frozen_steps) == self.n_tasks:
            if self.merge:
                for network in pathway_policy(self.model, type(self).__name__).pathways().values():
                    merge_task_weights(network)
            state.threshold_step = max(state.task_frozen_steps.values())
            self._freeze("every task frozen; task weights " + ("merged" if self.merge else "kept apart"))

    def _record(self) -> None:
        super()._record()
        assert self.task_names is not None
        for task, name in enumerate(self.task_names):
            episodes = self._task_episodes[task]
            if episodes:
                self.logger.record(f"pathways/task/{name}/success", float(np.mean([e[1] for e in episodes])))
                self.logger.record(f"pathways/task/{name}/return", float(np.mean([e[0] for e in episodes])))
            self.logger.record(f"pathways/task/{name}/frozen", int(task in self.state.task_frozen_steps))
