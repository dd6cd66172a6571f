"""Task-balanced replay: every task the same share of each sampled batch."""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize


class TaskBalancedReplayBuffer(ReplayBuffer):
    """
    A :class:`~stable_baselines3.common.buffers.ReplayBuffer` that samples every environment of
    the vectorised env equally often in each batch (``batch_size // n_envs`` transitions each,
    the remainder to environments drawn without replacement), instead of drawing each sample's
    environment at random. With one environment per task (as
    :func:`~sb3_pathways.multitask.make_mt10_env` builds them) every task gets the same number
    of samples per gradient step, as multi-task RL baselines sample.

    Use it as SB3's own buffers: ``SAC(..., replay_buffer_class=TaskBalancedReplayBuffer)``.
    """

    def balanced_env_indices(self, n_samples: int) -> np.ndarray:
        """Environment index of each of ``n_samples`` samples, every environment
        ``n_samples // n_envs`` times (one more for ``n_samples % n_envs`` of them), shuffled."""
        repeats, remainder = divmod(n_samples, self.n_envs)
        indices = np.concatenate([np.repeat(np.arange(self.n_envs), repeats), np.random.permutation(self.n_envs)[:remainder]])
        return np.random.permutation(indices)

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        env_indices = self.balanced_env_indices(len(batch_inds))
        if self.optimize_memory_usage:
            next_obs = self._normalize_obs(self.observations[(batch_inds + 1) % self.buffer_size, env_indices, :], env)
        else:
            next_obs = self._normalize_obs(self.next_observations[batch_inds, env_indices, :], env)
        data = (
            self._normalize_obs(self.observations[batch_inds, env_indices, :], env),
            self.actions[batch_inds, env_indices, :],
            next_obs,
            (self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])).reshape(-1, 1),
            self._normalize_reward(self.rewards[batch_inds, env_indices].reshape(-1, 1), env),
        )
        return ReplayBufferSamples(*tuple(map(self.to_torch, data)))
