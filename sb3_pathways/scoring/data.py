"""The most recent transitions of an algorithm's buffer, read without touching it.

Off-policy: the newest ``n`` transitions of the replay buffer, over every environment and
across the wrap-around, built by the buffer's own ``_get_samples`` (so n-step returns,
``optimize_memory_usage`` and ``VecNormalize`` are handled as in training). On-policy: the
newest ``n`` transitions of the rollout buffer once its advantages are computed; for a
recurrent policy (RecurrentPPO), the newest steps of every environment as whole padded
sequences with their LSTM states, the way its ``train()`` reads them. Neither the buffer nor
numpy's global random state is changed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch as th
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer, RolloutBuffer


def stored_transitions(buffer: BaseBuffer) -> int:
    """Number of transitions a buffer holds (all environments together)."""
    slots = buffer.buffer_size if buffer.full else buffer.pos
    return slots * buffer.n_envs


def _newest_slots(buffer: BaseBuffer, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(time index, env index) of the newest ``n`` transitions, newest first."""
    available = stored_transitions(buffer)
    if n < 1 or available < 1:
        raise ValueError(f"cannot read {n} transitions from a buffer holding {available}")
    n = min(n, available)
    n_slots = math.ceil(n / buffer.n_envs)
    slots = (buffer.pos - 1 - np.arange(n_slots)) % buffer.buffer_size
    time_index = np.repeat(slots, buffer.n_envs)[:n]
    env_index = np.tile(np.arange(buffer.n_envs), n_slots)[:n]
    return time_index, env_index


def _is_per_transition(value: Any, buffer: BaseBuffer) -> bool:
    return isinstance(value, np.ndarray) and value.shape[:2] == (buffer.buffer_size, buffer.n_envs)


def _single_env_view(buffer: ReplayBuffer, env: int) -> ReplayBuffer:
    """A shallow copy of the buffer that sees only environment ``env`` (as ``n_envs == 1``)."""
    view = copy.copy(buffer)
    for name, value in vars(buffer).items():
        if _is_per_transition(value, buffer):
            setattr(view, name, value[:, env : env + 1])
        elif isinstance(value, dict) and value and all(_is_per_transition(v, buffer) for v in value.values()):
            setattr(view, name, {key: v[:, env : env + 1] for key, v in value.items()})
    view.n_envs = 1
    return view


def concatenate_batches(batches: Sequence[Any]) -> Any:
    """Concatenate buffer samples (tensors or dicts of tensors, ``None`` fields kept)."""
    first = batches[0]
    fields: list[Any] = []
    for i, value in enumerate(first):
        if value is None:
            fields.append(None)
        elif isinstance(value, dict):
            fields.append({key: th.cat([b[i][key] for b in batches]) for key in value})
        else:
            fields.append(th.cat([b[i] for b in batches]))
    return type(first)(*fields)


def select_transitions(batch: Any, index: slice | th.Tensor) -> Any:
    """The transitions of a buffer sample at ``index`` (a slice or an index tensor)."""
    fields: list[Any] = []
    for value in batch:
        if value is None:
            fields.append(None)
        elif isinstance(value, dict):
            fields.append({key: v[index] for key, v in value.items()})
        else:
            fields.append(value[index])
    return type(batch)(*fields)


def is_sequence_batch(batch: Any) -> bool:
    """Whether a buffer sample is padded sequences with LSTM states (recurrent policies), which
    must be read whole."""
    return getattr(batch, "lstm_states", None) is not None


def split_batch(batch: Any, size: int) -> Iterator[tuple[Any, int]]:
    """Consecutive chunks of at most ``size`` transitions, with their lengths (a sequence
    batch is one chunk: its sequences and LSTM states stay together)."""
    total = len(batch.actions)
    if is_sequence_batch(batch):
        yield batch, total
        return
    for start in range(0, total, size):
        stop = min(start + size, total)
        yield select_transitions(batch, slice(start, stop)), stop - start


def newest_replay_transitions(buffer: ReplayBuffer, n: int, vec_normalize: Any = None) -> Any:
    """The newest ``n`` transitions of a replay buffer, as the buffer's own samples."""
    time_index, env_index = _newest_slots(buffer, n)
    random_state = np.random.get_state()
    try:
        batches = [
            _single_env_view(buffer, env)._get_samples(time_index[env_index == env], env=vec_normalize)
            for env in np.unique(env_index)
        ]
    finally:
        np.random.set_state(random_state)
    return concatenate_batches(batches)


def newest_rollout_transitions(buffer: RolloutBuffer, n: int) -> Any:
    """The newest ``n`` transitions of a rollout buffer (advantages must be computed)."""
    if buffer.generator_ready:
        raise RuntimeError("the rollout buffer was already flattened for training; read it at rollout end")
    time_index, env_index = _newest_slots(buffer, n)
    view = copy.copy(buffer)
    for name, value in vars(buffer).items():
        if _is_per_transition(value, buffer):
            setattr(view, name, value[time_index, env_index])
        elif isinstance(value, dict) and value and all(_is_per_transition(v, buffer) for v in value.values()):
            setattr(view, name, {key: v[time_index, env_index] for key, v in value.items()})
    view.generator_ready = True
    return view._get_samples(np.arange(len(time_index)))


def newest_sequence_transitions(buffer: RecurrentRolloutBuffer | RecurrentDictRolloutBuffer, n: int) -> Any:
    """The newest ``ceil(n / n_envs)`` steps of every environment of a recurrent rollout
    buffer (advantages must be computed), as the padded sequences, LSTM states and padding
    mask its ``get`` gives for training."""
    if buffer.generator_ready:
        raise RuntimeError("the rollout buffer was already flattened for training; read it at rollout end")
    stop = buffer.buffer_size if buffer.full else buffer.pos
    steps = max(1, min(stop, math.ceil(n / buffer.n_envs)))
    view = copy.copy(buffer)
    for name, value in vars(buffer).items():
        if isinstance(value, np.ndarray) and value.ndim >= 2 and value.shape[0] == buffer.buffer_size:
            setattr(view, name, value[stop - steps : stop])
        elif isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
            setattr(view, name, {key: v[stop - steps : stop] for key, v in value.items()})
    view.buffer_size, view.full = steps, True
    random_state = np.random.get_state()  # get() rotates the sequences by a random offset
    try:
        return next(view.get(batch_size=None))
    finally:
        np.random.set_state(random_state)


def newest_transitions(model: Any, n: int) -> Any:
    """The newest ``n`` transitions of an SB3 model's replay or rollout buffer."""
    replay_buffer = getattr(model, "replay_buffer", None)
    if replay_buffer is not None:
        return newest_replay_transitions(replay_buffer, n, model.get_vec_normalize_env())
    rollout_buffer = getattr(model, "rollout_buffer", None)
    if isinstance(rollout_buffer, (RecurrentRolloutBuffer, RecurrentDictRolloutBuffer)):
        return newest_sequence_transitions(rollout_buffer, n)
    if rollout_buffer is not None:
        return newest_rollout_transitions(rollout_buffer, n)
    raise TypeError(f"{type(model).__name__} has neither a replay buffer nor a rollout buffer")
