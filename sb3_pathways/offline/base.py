"""The base of the offline algorithms: an SB3 off-policy algorithm whose replay buffer is a
fixed dataset. The environment gives the spaces and serves evaluation (``EvalCallback``,
``evaluate_policy``); training never steps it. One timestep of ``learn`` is one gradient step."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback, ProgressBarCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

from sb3_pathways.offline.datasets import OfflineDataset, as_dataset

SelfOfflineAlgorithm = TypeVar("SelfOfflineAlgorithm", bound="OfflineAlgorithm")


class GradientStepProgressBar(ProgressBarCallback):
    """SB3's progress bar, one tick per gradient step (an offline algorithm collects no
    environment steps)."""

    def _on_step(self) -> bool:
        self.pbar.update(1)
        return True


def dataset_buffer(
    dataset: OfflineDataset, policy: BasePolicy, device: th.device | str, reward_scale: float = 1.0
) -> ReplayBuffer:
    """A full replay buffer holding exactly the dataset's transitions, Box actions scaled to
    [-1, 1] as SB3's off-policy algorithms store them, rewards multiplied by ``reward_scale``."""
    buffer = ReplayBuffer(len(dataset), dataset.observation_space, dataset.action_space, device=device, n_envs=1)
    actions = dataset.actions
    if isinstance(dataset.action_space, spaces.Box) and not dataset.actions_scaled:
        actions = policy.scale_action(actions)
    buffer.observations[:, 0] = dataset.observations.reshape(buffer.observations[:, 0].shape)
    buffer.next_observations[:, 0] = dataset.next_observations.reshape(buffer.next_observations[:, 0].shape)
    buffer.actions[:, 0] = np.asarray(actions).reshape(buffer.actions[:, 0].shape)
    buffer.rewards[:, 0] = dataset.rewards.reshape(-1) * reward_scale
    buffer.dones[:, 0] = dataset.terminations.reshape(-1)
    buffer.full, buffer.pos = True, 0
    return buffer


def check_reward_scale(reward_scale: object) -> None:
    """Raise a clear ``ValueError`` unless ``reward_scale`` is ``"auto"`` or a finite positive number."""
    if reward_scale == "auto":
        return
    if isinstance(reward_scale, bool) or not isinstance(reward_scale, (int, float)) or not 0 < reward_scale < float("inf"):
        raise ValueError(f"reward_scale must be 'auto' or a finite positive number, got {reward_scale!r}")


def dataset_reward_scale(dataset: OfflineDataset, reward_scale: float | str) -> float:
    """The factor the rewards are multiplied by: ``reward_scale`` itself, or for ``"auto"``
    one over the largest absolute reward of the dataset (1 when every reward is 0)."""
    check_reward_scale(reward_scale)
    if reward_scale != "auto":
        return float(reward_scale)
    largest = float(np.abs(dataset.rewards).max(initial=0.0))
    return 1.0 / largest if largest > 0 else 1.0


class SeparateNetworksPolicy(BasePolicy):
    """A policy of several networks, each with its own features extractor and optimizer
    (IQL, BCQ): ``trained_networks`` names those that train (targets never do)."""

    trained_networks: ClassVar[tuple[str, ...]] = ()
    #: target network -> the online network it follows
    target_networks: ClassVar[dict[str, str]] = {}
    optimizer_class: type[th.optim.Optimizer]
    optimizer_kwargs: dict[str, Any]

    def _features(self) -> tuple[BaseFeaturesExtractor, int]:
        """A new features extractor for one network, and its output size."""
        extractor = self.make_features_extractor()
        return extractor, extractor.features_dim

    def _finish_build(self, lr_schedule: Schedule) -> None:
        """The end of ``_build``, once every network exists: targets start as copies of their
        online networks, and each trained network gets its optimizer."""
        for target, online in self.target_networks.items():
            getattr(self, target).load_state_dict(getattr(self, online).state_dict())
            getattr(self, target).set_training_mode(False)
        for name in self.trained_networks:
            network = getattr(self, name)
            network.optimizer = self.optimizer_class(network.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def set_training_mode(self, mode: bool) -> None:
        for name in self.trained_networks:
            getattr(self, name).set_training_mode(mode)
        self.training = mode


class OfflineAlgorithm(OffPolicyAlgorithm):
    """
    An algorithm that learns from a fixed dataset (offline RL). It keeps SB3's interface:
    policy aliases, ``learn`` with callbacks, logger and progress bar, ``save``/``load``,
    ``predict``; ``learn(total_timesteps)`` runs that many gradient steps on the dataset.

    :param policy: the policy model to use
    :param env: the environment, for its spaces and for evaluation only (never stepped in
        ``learn``)
    :param dataset: the transitions to learn from: an
        :class:`~sb3_pathways.offline.datasets.OfflineDataset`, an SB3 ``ReplayBuffer``, the
        path of one saved with ``save_replay_buffer`` (``.pkl``) or a local Minari dataset
        id; ``None`` only to load a trained model (give it with :meth:`set_dataset` or
        ``load(..., dataset=...)`` before learning)
    :param learning_rate: learning rate of every network's optimizer (or a schedule)
    :param batch_size: transitions per gradient step
    :param tau: soft update coefficient of the target networks
    :param gamma: discount factor
    :param reward_scale: the rewards are multiplied by this when the dataset is loaded, or
        for ``"auto"`` divided by the dataset's largest absolute reward, so that they lie in
        [-1, 1] (see each algorithm for its default and why)
    :param policy_kwargs: additional arguments for the policy
    :param stats_window_size: window of SB3's episode statistics (used by evaluation only)
    :param tensorboard_log: log location for tensorboard (if None, no logging)
    :param verbose: 0 no output, 1 info messages, 2 debug messages
    :param seed: seed of the pseudo random generators
    :param device: device of the networks and the dataset buffer
    :param _init_setup_model: whether to build the networks at creation
    """

    #: read by the mask-update callbacks: only those that run offline accept the algorithm
    learns_offline: ClassVar[bool] = True

    def __init__(
        self,
        policy: str | type[BasePolicy],
        env: GymEnv | str,
        dataset: Any = None,
        learning_rate: float | Schedule = 3e-4,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        reward_scale: float | str = 1.0,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size=1,  # replaced by the dataset's buffer
            learning_starts=0,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            support_multi_env=True,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Box,),
        )
        check_reward_scale(reward_scale)
        self.reward_scale = reward_scale
        self.dataset: OfflineDataset | None = None
        self._dataset_argument = dataset
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        self.replay_buffer = None  # a dataset gives it; SB3's one-slot buffer is not used
        self._create_aliases()
        # from __init__, or from ``load(..., dataset=...)`` (SB3 sets load's keywords as attributes)
        dataset = self.__dict__.pop("_dataset_argument", None)
        if dataset is None:
            dataset = self.__dict__.pop("dataset", None)
        self.dataset = None
        if dataset is not None:
            self.set_dataset(dataset)

    def _create_aliases(self) -> None:
        """Shortcuts to the policy's networks (``self.actor``, ...), as SB3's algorithms keep."""

    def set_dataset(self, dataset: Any) -> None:
        """
        Learn from ``dataset`` from now on (see the class parameters for what it may be),
        after checking its spaces against the environment's and its task ids against the
        policy's ``n_tasks``. Its rewards are scaled by ``reward_scale`` (``"auto"``: from
        this dataset's rewards).
        """
        data = as_dataset(dataset)
        data.check_spaces(self.observation_space, self.action_space)
        data.check_tasks(getattr(self.policy, "n_tasks", 1))
        self.replay_buffer = dataset_buffer(data, self.policy, self.device, dataset_reward_scale(data, self.reward_scale))
        self.dataset = data

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "dataset", "_dataset_argument"]

    def _init_callback(self, callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
        if isinstance(callback, list):
            callback = CallbackList(callback)
        if not isinstance(callback, BaseCallback):
            callback = ConvertCallback(callback)
        if progress_bar:
            callback = CallbackList([callback, GradientStepProgressBar()])
        callback.init_callback(self)
        return callback

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        if self.env is None:
            # SB3 resets the environment to start collecting; offline nothing is collected,
            # so a model loaded without an environment learns all the same
            self._last_obs = np.zeros(0, dtype=np.float32)
            if reset_num_timesteps:
                self.num_timesteps = self._episode_num = 0
            reset_num_timesteps = False
        # BaseAlgorithm's set-up: the off-policy one prepares collection (action noise, the
        # last stored transition), which an offline algorithm never does
        return BaseAlgorithm._setup_learn(self, total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)

    def learn(
        self: SelfOfflineAlgorithm,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1000,
        tb_log_name: str = "run",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfOfflineAlgorithm:
        """
        Run ``total_timesteps`` gradient steps on the dataset.

        :param total_timesteps: gradient steps
        :param callback: callback(s) called after every gradient step (``EvalCallback``
            evaluates every ``eval_freq`` gradient steps)
        :param log_interval: gradient steps between two logger dumps
        :param tb_log_name: name of the tensorboard run
        :param reset_num_timesteps: whether to start counting steps from 0
        :param progress_bar: show a progress bar of the gradient steps (needs tqdm and rich)
        """
        if self.replay_buffer is None:
            raise ValueError(
                f"{type(self).__name__} has no dataset to learn from: pass dataset= when creating it, "
                f"{type(self).__name__}.load(path, dataset=...), or call set_dataset(...)"
            )
        total_timesteps, callback = self._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        callback.on_training_start(locals(), globals())
        while self.num_timesteps < total_timesteps:
            self._update_current_progress_remaining(self.num_timesteps, self._total_timesteps)
            self.train(gradient_steps=1, batch_size=self.batch_size)
            self.num_timesteps += 1
            callback.update_locals(locals())
            if not callback.on_step():
                break
            if log_interval > 0 and self.num_timesteps % log_interval == 0:
                self.dump_logs()
        callback.on_training_end()
        return self

    def _record_training(self, losses: dict[str, list[float]], gradient_steps: int) -> None:
        """Count the gradient steps and log each network's mean loss over them (``train/<name>_loss``)."""
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for name, values in losses.items():
            self.logger.record(f"train/{name}_loss", sum(values) / len(values))
