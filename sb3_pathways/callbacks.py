"""SB3 callbacks of sb3_pathways: DAPD (data-adaptive pathway discovery) and pathway logging."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.buffers import BaseBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback, EventCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import safe_mean
from stable_baselines3.common.vec_env import VecMonitor, is_vecenv_wrapped

from sb3_pathways.masking.optimizer_state import validate_optimizer_state
from sb3_pathways.policies import pathway_policy
from sb3_pathways.schedules import SparsitySchedule
from sb3_pathways.scoring.data import is_sequence_batch, newest_transitions, select_transitions, stored_transitions
from sb3_pathways.scoring.objectives import Objective, objective_for
from sb3_pathways.stats import pathway_records, record_pathway_stats
from sb3_pathways.updaters.base import DiscoveryState, Masks, MaskUpdater, UpdateContext
from sb3_pathways.updaters.dapd import DAPDUpdater, SNIPUpdater
from sb3_pathways.updaters.evolution import RigLUpdater, SETUpdater
from sb3_pathways.updaters.magnitude import GradualMagnitudeUpdater
from sb3_pathways.validation import optional_fraction, optional_positive_int, positive_int

#: attribute of the model that holds the discovery state (saved in the model zip)
STATE_ATTRIBUTE = "pathway_discovery"
FREEZE_METRICS = ("rollout", "eval")
DISCOVER_FROM = ("learning_starts", "first_batch")


class PathwayLoggerCallback(BaseCallback):
    """
    Records ``pathways/<network>/sparsity``, ``pathways/<network>/active`` and
    ``pathways/flops_ratio`` in the model's logger at the end of every rollout, for a model
    whose mask no updater changes (the mask updaters record the same keys themselves). The
    masks are read once per ``learn`` call.

    :param verbose: verbosity level
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self._records: dict[str, float] = {}

    def _init_callback(self) -> None:
        pathway_policy(self.model, type(self).__name__)

    def _on_training_start(self) -> None:
        self._records = pathway_records(self.model)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        for key, value in self._records.items():
            self.logger.record(key, value)


def has_episode_statistics(model: Any) -> bool:
    """Whether every sub-environment of a model's env reports Monitor episode statistics."""
    env = model.get_env()
    return env is not None and (all(env.env_is_wrapped(Monitor)) or is_vecenv_wrapped(env, VecMonitor))


def _walk_callbacks(callback: BaseCallback | None) -> Iterator[BaseCallback]:
    if callback is None:
        return
    yield callback
    if isinstance(callback, CallbackList):
        for child in callback.callbacks:
            yield from _walk_callbacks(child)
    elif isinstance(callback, EventCallback):
        yield from _walk_callbacks(callback.callback)


class PathwayUpdateCallback(BaseCallback):
    """
    Runs a mask update rule (:class:`~sb3_pathways.updaters.MaskUpdater`) during training:
    decides when it runs, which transitions it sees, when the masks freeze, installs the new
    masks (targets and optimizer state included), logs and keeps the run's state on the model.

    :param updater: the mask update rule
    :param update_freq: ``"episode"`` (update when an episode ends: as Monitor reports it
        when the environment has one, so a lost life under ``AtariWrapper`` is not an end) or
        a number of environment steps between updates (the schedule's; see ``schedule``)
    :param window: transitions the rule sees at each update; default max(batch size, length
        of the last episode). The initial discovery sees everything collected so far.
    :param window_samples: ``None``: the rule sees each transition of the window once; a
        number: it sees that many drawn at random, with replacement, from the window (as the
        DAPD reference, which draws one batch)
    :param schedule: when updates happen and what they aim at
        (:class:`~sb3_pathways.schedules.SparsitySchedule`), instead of ``update_freq``,
        ``max_warmup_steps`` and ``end_fraction``
    :param discover_from: off-policy, when the initial pathway is chosen:
        ``"learning_starts"`` (from everything collected before the first gradient step) or
        ``"first_batch"`` (as soon as the buffer holds one batch; updates then go on through
        the random steps, as the DAPD reference)
    :param freeze_threshold: return at which the masks freeze; ``None``: no return threshold
    :param freeze_metric: ``"rollout"``: mean return of the last ``freeze_window`` training
        episodes (needs Monitor episode statistics); ``"eval"``: last mean reward of an
        ``EvalCallback`` run in the same ``learn`` call
    :param freeze_window: training episodes averaged by the ``"rollout"`` metric
    :param continual: keep updating after the threshold is reached (the step at which it
        was reached is still recorded)
    :param max_warmup_steps: freeze once training reaches this many environment steps (the
        schedule's ``max_steps``)
    :param end_fraction: freeze once training reaches this share of the ``learn`` call's
        steps after ``learning_starts`` (the end of the rule's schedule); ``None``: no such end
    :param optimizer_state: what happens to the optimizer statistics of weights that join or
        leave the pathway: ``"reset"`` (they start afresh, Adam's bias correction counted per
        weight) or ``"keep"`` (left as they are, as the DAPD reference implementation)
    :param verbose: 1 prints mask updates and the freeze
    """

    def __init__(
        self,
        updater: MaskUpdater,
        update_freq: int | str = "episode",
        window: int | None = None,
        freeze_threshold: float | None = None,
        freeze_metric: str = "rollout",
        freeze_window: int = 10,
        continual: bool = False,
        max_warmup_steps: int | None = None,
        end_fraction: float | None = None,
        optimizer_state: str = "reset",
        window_samples: int | None = None,
        discover_from: str = "learning_starts",
        schedule: SparsitySchedule | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if not isinstance(updater, MaskUpdater):
            raise TypeError(f"updater must be a MaskUpdater, got {updater!r}")
        if schedule is None:
            schedule = SparsitySchedule(
                update_freq=update_freq,
                end_fraction=end_fraction,
                max_steps=optional_positive_int(max_warmup_steps, "max_warmup_steps"),
            )
        elif not isinstance(schedule, SparsitySchedule):
            raise TypeError(f"schedule must be a SparsitySchedule or None, got {schedule!r}")
        elif (update_freq, max_warmup_steps, end_fraction) != ("episode", None, None):
            raise ValueError("give either schedule or update_freq / max_warmup_steps / end_fraction, not both")
        if discover_from not in DISCOVER_FROM:
            raise ValueError(f"discover_from must be one of {DISCOVER_FROM}, got {discover_from!r}")
        if freeze_metric not in FREEZE_METRICS:
            raise ValueError(f"freeze_metric must be one of {FREEZE_METRICS}, got {freeze_metric!r}")
        if freeze_threshold is not None and (
            isinstance(freeze_threshold, bool) or not isinstance(freeze_threshold, (int, float))
        ):
            raise ValueError(f"freeze_threshold must be a number or None, got {freeze_threshold!r}")
        self.updater = updater
        self.schedule = schedule
        self.window = optional_positive_int(window, "window")
        self.window_samples = optional_positive_int(window_samples, "window_samples")
        self.discover_from = discover_from
        self._sample_generator: np.random.Generator | None = None  # seeded with the model
        self.freeze_threshold = freeze_threshold
        self.freeze_metric = freeze_metric
        self.freeze_window = positive_int(freeze_window, "freeze_window")
        self.continual = bool(continual)
        self.optimizer_state = validate_optimizer_state(optimizer_state)
        self._eval_callback: EvalCallback | None = None
        self._episode_ended = False
        self._monitored = False
        self._episode_steps = np.zeros(1, dtype=np.int64)
        self._last_episode_length: int | None = None

    @property
    def update_freq(self) -> int | str:
        return self.schedule.update_freq

    @property
    def max_warmup_steps(self) -> int | None:
        return self.schedule.max_steps

    @property
    def end_fraction(self) -> float | None:
        return self.schedule.end_fraction

    @property
    def _rule_name(self) -> str:
        return type(self.updater).__name__

    @property
    def state(self) -> DiscoveryState:
        """The discovery state stored on the model."""
        return getattr(self.model, STATE_ATTRIBUTE)

    #: whether the callback works with an offline algorithm (one that learns from a fixed
    #: dataset and collects no data), as the single-shot pathway does
    runs_offline: ClassVar[bool] = False

    def _init_callback(self) -> None:
        pathway_policy(self.model, type(self).__name__)
        if getattr(self.model, "learns_offline", False) and not self.runs_offline:
            raise ValueError(
                f"{type(self).__name__} updates masks as new data come in, but {type(self.model).__name__} learns from a "
                "fixed dataset: use sb3_pathways.offline.SingleShotPathways (scored once on the dataset)"
            )
        if self.updater.needs_data:
            objective_for(self.model)
        if not isinstance(getattr(self.model, STATE_ATTRIBUTE, None), DiscoveryState):
            setattr(self.model, STATE_ATTRIBUTE, DiscoveryState())
        self.updater.load_state_dict(self.state.rule_states.get(self._rule_name, {}))
        self._episode_steps = np.zeros(self.model.n_envs, dtype=np.int64)
        self._sample_generator = np.random.default_rng(self.model.seed)

    def _on_training_start(self) -> None:
        self._monitored = has_episode_statistics(self.model)
        # shares of the steps that train, so the warm-up never ends before it began
        self.schedule.begin(getattr(self.model, "learning_starts", 0), self.model._total_timesteps)
        if self.freeze_threshold is None:
            return
        if self.freeze_metric == "rollout":
            if not has_episode_statistics(self.model):
                raise ValueError(
                    "freeze_metric='rollout' needs episode statistics, but the environment is not wrapped in a Monitor "
                    "(use make_vec_env, Monitor or VecMonitor), or use freeze_metric='eval' with an EvalCallback"
                )
        else:
            evals = [cb for cb in _walk_callbacks(self.locals.get("callback")) if isinstance(cb, EvalCallback)]
            if not evals:
                raise ValueError(
                    "freeze_metric='eval' needs an EvalCallback in the same learn() call, e.g. "
                    f"callback=[EvalCallback(eval_env), {type(self).__name__}(freeze_metric='eval', ...)]"
                )
            self._eval_callback = evals[0]

    def _on_step(self) -> bool:
        if self._monitored:
            # Monitor's episode ends are the game's: wrappers such as AtariWrapper end an
            # episode at every lost life, which would rescore several times per game
            lengths = [info["episode"]["l"] for info in self.locals["infos"] if "episode" in info]
            if lengths:
                self._episode_ended = True
                self._last_episode_length = int(max(lengths))
            return True
        dones = np.asarray(self.locals["dones"], dtype=bool)
        self._episode_steps += 1
        if dones.any():
            self._episode_ended = True
            self._last_episode_length = int(self._episode_steps[dones].max())
            self._episode_steps[dones] = 0
        return True

    def _on_rollout_end(self) -> None:
        state = self.state
        updated = False
        if not state.initialised:
            if not self._discovery_may_start():
                return
            if self.updater.discovers_initial_pathway:
                self._update(stored_transitions(self._buffer()), initial=True)
                updated = True
            else:
                state.last_update_step = self.num_timesteps
            state.initialised = True
        was_frozen = state.frozen
        self._check_freeze()  # no update once the end of the schedule is reached
        due = self.schedule.started(self.num_timesteps) and self._update_due()
        if not updated and (not state.frozen or self.continual) and due:
            self._update(self._window())
            updated = True
        self._check_freeze()
        if updated or self._episode_ended or state.frozen != was_frozen:
            self._record()

    def _discovery_may_start(self) -> bool:
        if not isinstance(self.model, OffPolicyAlgorithm):
            return True
        if self.discover_from == "first_batch":
            return stored_transitions(self._buffer()) >= self.model.batch_size
        return self.num_timesteps > self.model.learning_starts

    def _buffer(self) -> BaseBuffer:
        if isinstance(self.model, OffPolicyAlgorithm):
            assert self.model.replay_buffer is not None
            return self.model.replay_buffer
        assert isinstance(self.model, OnPolicyAlgorithm)
        return self.model.rollout_buffer

    def _update_due(self) -> bool:
        return self.schedule.update_due(self.num_timesteps, self.state.last_update_step, self._episode_ended)

    def _window(self) -> int:
        if self.window is not None:
            return self.window
        batch_size = getattr(self.model, "batch_size", None) or self._buffer().buffer_size * self.model.n_envs
        return max(batch_size, self._last_episode_length or 0)

    def _update(self, window: int, initial: bool = False) -> None:
        context = self._context(window)
        self._install(context, self.updater.initial_masks(context) if initial else self.updater.update_masks(context))

    def _final_update(self) -> None:
        """What the rule's masks become when the schedule ends (most rules: nothing new)."""
        if self.state.initialised:
            context = self._context(self._window())
            masks = self.updater.final_masks(context)
            if masks:
                self._install(context, masks)

    def _context(self, window: int) -> UpdateContext:
        return UpdateContext(
            model=self.model,
            pathways=pathway_policy(self.model, type(self).__name__).pathways(),
            state=self.state,
            step=self.num_timesteps,
            schedule=self.schedule,
            batch=self._scored_transitions(window) if self.updater.needs_data else None,
        )

    def _install(self, context: UpdateContext, masks: Masks) -> None:
        """Install new masks (targets and optimizer state follow), log and count the update."""
        state = self.state
        grown_value = 0.0 if self.updater.grow_at_zero else None
        changes = {}
        for name, network in context.pathways.items():
            change = network.set_masks(masks[name], grown_value, self.optimizer_state) if name in masks else 0.0
            changes[name] = change
            self.logger.record(f"pathways/{name}/mask_change", change)
            if self.verbose >= 1:
                print(f"{type(self).__name__} step {self.num_timesteps}: {name} mask change {change:.2%}")
        state.mask_changes.append((self.num_timesteps, changes))
        state.rule_states[self._rule_name] = self.updater.state_dict()
        state.n_updates += 1
        state.last_update_step = self.num_timesteps
        self._episode_ended = False

    def _scored_transitions(self, window: int) -> Any:
        batch = newest_transitions(self.model, window)
        if self.window_samples is None:
            return batch
        if is_sequence_batch(batch):
            raise ValueError(
                f"window_samples draws single transitions, but {type(self.model).__name__} is scored on whole sequences "
                "(a recurrent policy): leave window_samples=None"
            )
        assert self._sample_generator is not None
        drawn = self._sample_generator.integers(len(batch.actions), size=self.window_samples)
        return select_transitions(batch, th.as_tensor(drawn, device=batch.actions.device))

    def freeze_metric_value(self) -> float | None:
        """The current value of the freeze metric, or ``None`` if none is available yet."""
        if self.freeze_metric == "eval":
            value = self._eval_callback.last_mean_reward if self._eval_callback is not None else -np.inf
            return None if not np.isfinite(value) else float(value)
        episodes = list(self.model.ep_info_buffer or [])[-self.freeze_window :]
        return float(safe_mean([episode["r"] for episode in episodes])) if episodes else None

    def _check_freeze(self) -> None:
        state = self.state
        if state.frozen:
            return
        if self.freeze_threshold is not None and state.threshold_step is None:
            value = self.freeze_metric_value()
            if value is not None and value >= self.freeze_threshold:
                state.threshold_step = self.num_timesteps
                if not self.continual:
                    self._freeze(f"{self.freeze_metric} return {value:.1f} >= {self.freeze_threshold}")
        if not state.frozen and self.schedule.ended(self.num_timesteps):
            self._final_update()
            self._freeze(f"step {self.schedule.end_step} reached")

    def _freeze(self, reason: str) -> None:
        self.state.frozen = True
        self.state.frozen_step = self.num_timesteps
        if not self.continual:  # a saved model stays small
            self.updater.forget()
            self.state.rule_states.pop(self._rule_name, None)
        if self.verbose >= 1:
            print(f"{type(self).__name__}: masks frozen at step {self.num_timesteps} ({reason})")

    def _record(self) -> None:
        state = self.state
        self.logger.record("pathways/mask_updates", state.n_updates)
        self.logger.record("pathways/frozen", int(state.frozen))
        if state.frozen_step is not None:
            self.logger.record("pathways/frozen_step", state.frozen_step)
        if state.threshold_step is not None:
            self.logger.record("pathways/threshold_step", state.threshold_step)
        record_pathway_stats(self.logger, self.model)
        self._episode_ended = False


class DAPDCallback(PathwayUpdateCallback):
    """
    Data Adaptive Pathway Discovery (Arnob et al., NeurIPS 2024) for any pathway policy.

    The initial pathway is found from the first data the agent collects (the
    ``learning_starts`` transitions off-policy, the first rollout on-policy), before the first
    gradient step. During warm-up, the weights are rescored on the most recent ``window``
    transitions with the algorithm's own loss (``abs(θ · ∂L/∂θ)``), each network's scores are
    normalised to sum 1, averaged over the last ``moving_average`` updates, and the top-k of
    every network becomes its mask. Once the return reaches ``freeze_threshold``, or after
    ``max_warmup_steps`` or a ``max_warmup_fraction`` of the ``learn`` budget (a tenth by
    default), the masks are frozen for the rest of training.

    :param moving_average: K, the number of normalised score vectors averaged (the reference
        implementation uses 1; 5 by default, see the DAPD guide for the measurements)
    :param max_warmup_fraction: freeze once training reaches this share of the ``learn``
        call's steps after ``learning_starts`` (default 0.1: the pathway trains fixed for the
        last nine tenths; ``None``: no such limit, as the reference)
    :param score_at: ``"dense"`` (every connection of the scored network on at its stored
        value, the rest of the agent as it runs), ``"agent"`` (every network and target dense,
        as the reference implementation) or ``"masked"`` (the pathway as it runs)
    :param chunk_size: transitions per scoring forward pass (bounds memory)
    :param allocation: how each network's k active weights are split among its layers:
        ``"pooled"`` (default: one top-k across the layers, as the reference: the scores
        decide, a critic's Q-networks pooled in one top-k), ``"global"`` (the same, each
        Q-network of a critic ensemble keeping its share of k), ``"erk"`` (Erdős-Rényi-kernel
        layer shares, small layers keep more) or ``"random"`` (the same share of every layer).
        A network without an ensemble selects the same under ``"pooled"`` and ``"global"``;
        rescoring SAC's critic on Pendulum, ``"pooled"`` measured at least as good (DAPD guide)
    :param within_layer: how a layer's share is chosen: ``"top_k"`` (default: the layer's
        highest scores, as the reference), ``"per_unit"`` (every output unit the same number
        of inputs, its highest-scoring ones; better on Pendulum, far worse on MuJoCo: see the
        DAPD guide) or ``"balanced"`` (the highest scores once balanced over the layer's
        units, so that the connections spread over the units as a random mask's do, see
        :func:`~sb3_pathways.masking.selection.balanced_scores`)
    :param cover_inputs: every input unit of every layer (each observation feature, each
        hidden unit) also keeps its highest-scoring output (not with ``within_layer="per_unit"``)
    :param objective: ``(model, batch) -> {network name: loss}`` to score instead of the
        algorithm's registered loss, e.g.
        :func:`~sb3_pathways.sac.sac_reference_objective` (the reference's)
    :param networks: the networks DAPD rescores; the others keep their initial ``mask_init``
        mask (ERK by default). ``"default"``: the algorithm's choice (SAC: the actor alone, its
        critic a static mask, as measured best in the DAPD guide; every network for the other
        algorithms); ``"all"``: every network, as the reference; or names of
        ``policy.pathways()``, e.g. ``("actor",)``
    :param callback_kwargs: when to rescore and freeze, passed to
        :class:`PathwayUpdateCallback`: ``update_freq`` (``"episode"`` by default, as the
        reference), ``window``, ``window_samples``, ``discover_from``, ``freeze_threshold``
        (``None`` by default: no return threshold), ``freeze_metric``, ``freeze_window``,
        ``continual``, ``max_warmup_steps``, ``optimizer_state`` (``"reset"`` by default;
        ``"keep"`` as the reference), ``verbose``
    """

    def __init__(
        self,
        moving_average: int = 5,
        max_warmup_fraction: float | None = 0.1,
        score_at: str = "dense",
        chunk_size: int = 2048,
        allocation: str = "pooled",
        within_layer: str = "top_k",
        objective: Objective | None = None,
        cover_inputs: bool = False,
        networks: str | Sequence[str] = "default",
        **callback_kwargs: Any,
    ) -> None:
        for replaced in ("updater", "schedule", "end_fraction"):
            if replaced in callback_kwargs:
                raise TypeError(
                    f"DAPDCallback takes no {replaced!r}: the rule is DAPD and its end is max_warmup_fraction "
                    "(or max_warmup_steps); use PathwayUpdateCallback(DAPDUpdater(...), ...) for another schedule"
                )
        updater = DAPDUpdater(
            moving_average, score_at, chunk_size, allocation, objective, within_layer, cover_inputs, networks
        )
        super().__init__(
            updater, end_fraction=optional_fraction(max_warmup_fraction, "max_warmup_fraction"), **callback_kwargs
        )


class SNIPCallback(PathwayUpdateCallback):
    """
    One-shot SNIP: the pathway is scored once with the algorithm's loss on the first data
    collected (before the first gradient step) and frozen for the rest of training.

    :param score_at: ``"dense"`` or ``"masked"``
    :param verbose: verbosity level
    """

    def __init__(self, score_at: str = "dense", verbose: int = 0) -> None:
        super().__init__(SNIPUpdater(score_at=score_at), update_freq="episode", max_warmup_steps=1, verbose=verbose)


def _drop_and_grow(update_interval: int, drop_fraction: float, end_fraction: float) -> SparsitySchedule:
    """SET's and RigL's schedule: an update every ``update_interval`` steps, the drop fraction
    decaying (cosine) to 0 at ``end_fraction`` of training."""
    return SparsitySchedule(update_freq=update_interval, drop_fraction=drop_fraction, end_fraction=end_fraction)


class SETCallback(PathwayUpdateCallback):
    """
    SET (Mocanu et al., 2018): every ``update_interval`` steps each layer replaces its
    smallest active weights by random new connections; the share replaced decays from
    ``drop_fraction`` to 0 (cosine) at ``end_fraction`` of training, when the mask freezes.
    Start from ``mask_init="erk"`` as the paper's RL study does.

    :param update_interval: environment steps between updates
    :param drop_fraction: share of each layer's active weights replaced at the first update
    :param end_fraction: share of the training steps after which the mask is fixed
    :param verbose: verbosity level
    """

    def __init__(
        self, update_interval: int = 1000, drop_fraction: float = 0.5, end_fraction: float = 0.8, verbose: int = 0
    ) -> None:
        super().__init__(SETUpdater(), schedule=_drop_and_grow(update_interval, drop_fraction, end_fraction), verbose=verbose)


class RigLCallback(PathwayUpdateCallback):
    """
    RigL (Evci et al., 2020): like SET, but new connections are those where the gradient of
    the algorithm's loss on the newest ``window`` transitions is largest.

    :param update_interval: environment steps between updates
    :param drop_fraction: share of each layer's active weights replaced at the first update
    :param end_fraction: share of the training steps after which the mask is fixed
    :param window: transitions the gradient is computed on (default: the batch size)
    :param verbose: verbosity level
    """

    def __init__(
        self,
        update_interval: int = 1000,
        drop_fraction: float = 0.5,
        end_fraction: float = 0.8,
        window: int | None = None,
        verbose: int = 0,
    ) -> None:
        schedule = _drop_and_grow(update_interval, drop_fraction, end_fraction)
        super().__init__(RigLUpdater(), window=window, schedule=schedule, verbose=verbose)


class GMPCallback(PathwayUpdateCallback):
    """
    Gradual magnitude pruning (Zhu & Gupta, 2017): the networks start dense (or at
    ``initial_sparsity``) and every ``update_interval`` steps between ``start_fraction`` and
    ``end_fraction`` of training keep their largest weights at a sparsity that ramps (cubic)
    to the policy's own; from ``end_fraction`` on the pathway is fixed at that sparsity.
    Defaults follow Graesser et al., "The State of Sparse Training in Deep RL" (ICML 2022):
    pruning from 20% to 80% of training.

    :param update_interval: environment steps between updates
    :param initial_sparsity: sparsity when pruning starts (0: dense)
    :param start_fraction: share of the training steps after which pruning starts
    :param end_fraction: share of the training steps at which the policy's sparsity is reached
    :param power: exponent of the ramp (3 as Zhu & Gupta)
    :param verbose: verbosity level
    """

    def __init__(
        self,
        update_interval: int = 1000,
        initial_sparsity: float = 0.0,
        start_fraction: float = 0.2,
        end_fraction: float = 0.8,
        power: float = 3.0,
        verbose: int = 0,
    ) -> None:
        schedule = SparsitySchedule(
            update_freq=update_interval,
            start_fraction=start_fraction,
            end_fraction=end_fraction,
            initial_sparsity=initial_sparsity,
            sparsity_power=power,
        )
        super().__init__(GradualMagnitudeUpdater(), schedule=schedule, verbose=verbose)
