"""Single-shot pathways for offline RL: scored once on the dataset, then fixed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sb3_pathways.callbacks import PathwayUpdateCallback
from sb3_pathways.masking.pathway import merge_task_weights
from sb3_pathways.multitask.callbacks import MultiTaskDAPDUpdater
from sb3_pathways.policies import pathway_policy
from sb3_pathways.scoring.data import stored_transitions
from sb3_pathways.updaters.dapd import DAPDUpdater
from sb3_pathways.validation import positive_int


class SingleShotPathways(PathwayUpdateCallback):
    """
    The offline pathway (DAPD's offline setting): before the first gradient step, every
    weight is scored once with the algorithm's own loss on the dataset
    (``|θ · ∂L(θ0; D)/∂θ|``, SNIP), the top-k of each network becomes its mask, and the masks
    never change afterwards. With ``n_tasks > 1`` each task's pathway is scored on that task's
    transitions only; the task weights then start merged (one shared weight, each task's mask
    on it, gradients averaged where masks overlap).

    :param n_samples: transitions scored, drawn uniformly without replacement from the
        dataset (seeded with the model); ``None`` scores them all
    :param score_at: ``"dense"`` (every connection of the scored network on at θ0) or
        ``"masked"``
    :param chunk_size: transitions per scoring forward pass (bounds memory)
    :param allocation: how a network's k is split among its layers (see
        :class:`~sb3_pathways.updaters.DAPDUpdater`)
    :param within_layer: ``"top_k"``, ``"per_unit"`` or ``"balanced"`` (see
        :class:`~sb3_pathways.updaters.DAPDUpdater`)
    :param cover_inputs: every input unit of every layer keeps a connection, so no
        observation feature is cut off (see :class:`~sb3_pathways.updaters.DAPDUpdater`)
    :param networks: the networks scored: ``"default"`` (the algorithm's choice: every
        network of IQL and BCQ), ``"all"``, or names (e.g. ``("actor",)``); the others keep
        their initial ``mask_init`` mask (one per task)
    :param verbose: 1 prints the discovery
    """

    runs_offline = True

    def __init__(
        self,
        n_samples: int | None = 10_000,
        score_at: str = "dense",
        chunk_size: int = 2048,
        allocation: str = "global",
        within_layer: str = "top_k",
        cover_inputs: bool = False,
        networks: str | Sequence[str] = "default",
        verbose: int = 0,
    ) -> None:
        self.n_samples = None if n_samples is None else positive_int(n_samples, "n_samples")
        self._rule_arguments = dict(
            moving_average=1,
            score_at=score_at,
            chunk_size=chunk_size,
            allocation=allocation,
            within_layer=within_layer,
            cover_inputs=cover_inputs,
            networks=networks,
        )
        super().__init__(DAPDUpdater(**self._rule_arguments), max_warmup_steps=1, verbose=verbose)  # type: ignore[arg-type]

    def _init_callback(self) -> None:
        policy = pathway_policy(self.model, type(self).__name__)
        if policy.n_tasks > 1 and not isinstance(self.updater, MultiTaskDAPDUpdater):
            self.updater = MultiTaskDAPDUpdater(**self._rule_arguments)  # type: ignore[arg-type]
        if getattr(self.model, "dataset", None) is None:
            raise ValueError(f"{type(self).__name__} scores a fixed dataset: use it with an offline algorithm (IQL, BCQ)")
        super()._init_callback()

    def _on_training_start(self) -> None:
        state = self.state
        if state.initialised:  # a resumed run keeps its pathway
            return
        self._update(self.n_samples or stored_transitions(self._buffer()), initial=True)
        for network in pathway_policy(self.model, type(self).__name__).pathways().values():
            merge_task_weights(network)
        state.initialised = True
        self._freeze("single shot on the dataset")
        self._record()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        pass

    def _scored_transitions(self, window: int) -> Any:
        buffer = self._buffer()
        available = stored_transitions(buffer)
        assert self._sample_generator is not None
        chosen = np.sort(self._sample_generator.choice(available, size=min(window, available), replace=False))
        random_state = np.random.get_state()
        try:
            return buffer._get_samples(chosen, env=self.model.get_vec_normalize_env())
        finally:
            np.random.set_state(random_state)
