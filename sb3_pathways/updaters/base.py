"""The interface every mask update rule implements, and the state a run keeps."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch as th

from sb3_pathways.masking.pathway import NetworkPathway
from sb3_pathways.schedules import SparsitySchedule

#: network name -> layer weight name -> bool mask (a network left out keeps its mask)
Masks = dict[str, dict[str, th.Tensor]]


@dataclass
class DiscoveryState:
    """
    What mask updates have done so far in a run; stored on the model
    (``model.pathway_discovery``) so that it travels in the model zip and a resumed run
    continues where it stopped.

    :param n_updates: mask updates done (the initial discovery included)
    :param initialised: whether the initial pathway was chosen
    :param frozen: whether the masks are frozen
    :param frozen_step: environment step at which they froze
    :param threshold_step: step at which the freeze threshold was first reached
    :param last_update_step: environment step of the last update
    :param rule_states: rule class name -> the rule's :meth:`MaskUpdater.state_dict` after its
        last update (DAPD: its score history), dropped when the masks freeze for good (it is
        only needed to resume a warm-up)
    :param mask_changes: one ``(step, {network name: share of active weights replaced})`` per
        mask update, for plots
    :param task_frozen_steps: multi-task: task -> environment step at which its mask froze
    :param task_names: multi-task: the name of every task
    """

    n_updates: int = 0
    initialised: bool = False
    frozen: bool = False
    frozen_step: int | None = None
    threshold_step: int | None = None
    last_update_step: int = 0
    rule_states: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    mask_changes: list[tuple[int, dict[str, float]]] = field(default_factory=list, repr=False)
    task_frozen_steps: dict[int, int] = field(default_factory=dict)
    task_names: list[str] = field(default_factory=list)

    def __setstate__(self, saved: dict[str, Any]) -> None:
        """Unpickle, also from zips saved before the rules kept their own state (which stored
        DAPD's score history as ``score_history``)."""
        saved = dict(saved)
        score_history = saved.pop("score_history", None)
        self.__dict__.update(saved)
        self.__dict__.setdefault("rule_states", {})
        if score_history:
            self.rule_states.setdefault("DAPDUpdater", {"score_history": score_history})


@dataclass
class UpdateContext:
    """
    What an update rule may use to choose masks.

    :param model: the SB3 model
    :param pathways: the policy's network pathways
    :param state: the run's discovery state
    :param step: current environment step
    :param batch: the newest transitions of the model's buffer (``None`` if the rule needs none)
    :param schedule: the run's sparsity schedule (drop fraction and sparsity at each step)
    """

    model: Any
    pathways: dict[str, NetworkPathway]
    state: DiscoveryState
    step: int
    batch: Any = None
    schedule: SparsitySchedule = field(default_factory=SparsitySchedule)

    @property
    def end_step(self) -> int | None:
        """Environment step at which updates stop (``None``: no end), the schedule's."""
        return self.schedule.end_step


class MaskUpdater(ABC):
    """
    A mask update rule. :class:`~sb3_pathways.callbacks.PathwayUpdateCallback` decides when it
    runs; the rule decides what the masks become.
    """

    #: whether the initial pathway is chosen by the rule from the first data collected
    #: (otherwise the policy's ``mask_init`` mask is kept until the first update)
    discovers_initial_pathway: ClassVar[bool] = True
    #: whether the rule reads recent transitions
    needs_data: ClassVar[bool] = True
    #: whether connections that join the pathway start at zero (SET, RigL) instead of at
    #: their stored value
    grow_at_zero: ClassVar[bool] = False

    def initial_masks(self, context: UpdateContext) -> Masks:
        """Masks chosen from the first data collected (by default, a regular update)."""
        return self.update_masks(context)

    @abstractmethod
    def update_masks(self, context: UpdateContext) -> Masks:
        """New masks for some or all networks."""

    def state_dict(self) -> dict[str, Any]:
        """What the rule carries from one update to the next, saved with the model so that a
        resumed run goes on where it stopped (by default nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (an empty dict: start afresh)."""
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, got a state with keys {sorted(state)}")

    def forget(self) -> None:
        """Drop what :meth:`state_dict` holds; called when the masks freeze for good."""
        self.load_state_dict({})

    def final_masks(self, context: UpdateContext) -> Masks:
        """Masks installed when the schedule ends, just before they freeze (by default none:
        the last update's stay). A rule whose target sparsity changes over the schedule
        reaches its final sparsity here."""
        return {}
