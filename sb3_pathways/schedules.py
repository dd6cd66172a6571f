"""Sparsity schedules: *when* a mask update rule runs and what it aims at, apart from the rule
that decides *which* weights are active (as JaxPruner separates ``sparsity_schedules`` from
its updaters and ``torch.ao.pruning`` its schedulers from its sparsifiers).

A schedule says at which steps updates happen (every episode end or every N environment
steps), between which steps (from a share of the training budget to another, or up to a
step), the share of active weights a drop-and-grow rule replaces at each update, and the
sparsity the pathway should have at each step (constant for DAPD, SET and RigL; a polynomial
ramp for gradual magnitude pruning).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sb3_pathways.masking.selection import keep_count
from sb3_pathways.validation import optional_fraction, optional_positive_int, positive_int

DROP_DECAYS = ("cosine", "constant")


@dataclass
class SparsitySchedule:
    """
    When updates happen and what they aim at.

    :param update_freq: ``"episode"`` (an update when an episode ends) or a number of
        environment steps between updates
    :param start_fraction: updates begin once training reaches this share of the ``learn``
        call's steps after ``learning_starts`` (0: from the first data); the sparsity ramp
        starts there
    :param end_fraction: updates end (the masks freeze) once training reaches this share of
        the ``learn`` call's steps after ``learning_starts``; ``None``: no end from the budget
    :param max_steps: updates end at this environment step at the latest; ``None``: no limit
    :param drop_fraction: share of each layer's active weights a drop-and-grow rule (SET,
        RigL) replaces at the first update
    :param drop_decay: ``"cosine"`` (the drop fraction decays to 0 at the end of updates, as
        RigL) or ``"constant"``
    :param initial_sparsity: sparsity of the pathway when updates begin, ramped to the
        policy's own sparsity at the end of updates (gradual magnitude pruning); ``None``: the
        policy's sparsity all along
    :param sparsity_power: exponent of the ramp ``s_t = s_f + (s_i - s_f)(1 - progress)^power``
        (Zhu & Gupta, 2017: 3)
    """

    update_freq: int | str = "episode"
    start_fraction: float = 0.0
    end_fraction: float | None = None
    max_steps: int | None = None
    drop_fraction: float = 0.5
    drop_decay: str = "cosine"
    initial_sparsity: float | None = None
    sparsity_power: float = 3.0

    def __post_init__(self) -> None:
        if self.update_freq != "episode":
            try:
                positive_int(self.update_freq, "update_freq")
            except ValueError:
                raise ValueError(f"update_freq must be 'episode' or a positive int, got {self.update_freq!r}") from None
        if isinstance(self.start_fraction, bool) or not 0.0 <= float(self.start_fraction) < 1.0:
            raise ValueError(f"start_fraction must be a float in [0, 1), got {self.start_fraction!r}")
        self.end_fraction = optional_fraction(self.end_fraction, "end_fraction")
        if self.end_fraction is not None and self.end_fraction < self.start_fraction:
            raise ValueError(f"end_fraction ({self.end_fraction}) must not be below start_fraction ({self.start_fraction})")
        self.max_steps = optional_positive_int(self.max_steps, "max_steps")
        if isinstance(self.drop_fraction, bool) or not 0.0 < float(self.drop_fraction) <= 1.0:
            raise ValueError(f"drop_fraction must be in (0, 1], got {self.drop_fraction!r}")
        if self.drop_decay not in DROP_DECAYS:
            raise ValueError(f"drop_decay must be one of {DROP_DECAYS}, got {self.drop_decay!r}")
        if self.initial_sparsity is not None and not 0.0 <= float(self.initial_sparsity) < 1.0:
            raise ValueError(f"initial_sparsity must be a float in [0, 1) or None, got {self.initial_sparsity!r}")
        if isinstance(self.sparsity_power, bool) or not float(self.sparsity_power) > 0:
            raise ValueError(f"sparsity_power must be positive, got {self.sparsity_power!r}")
        self.start_step = 0
        self.end_step: int | None = self.max_steps

    def begin(self, learning_starts: int, total_steps: int) -> None:
        """Place the schedule in a ``learn`` call of ``total_steps`` whose first
        ``learning_starts`` steps do not train."""
        first = min(learning_starts, total_steps)
        self.start_step = first + int(self.start_fraction * (total_steps - first))
        budget_end = None if self.end_fraction is None else first + int(self.end_fraction * (total_steps - first))
        ends = [step for step in (self.max_steps, budget_end) if step is not None]
        self.end_step = min(ends) if ends else None

    def started(self, step: int) -> bool:
        """Whether updates may run at ``step`` (always with ``start_fraction=0``: from the first
        data, random steps included where the rule scores them)."""
        return self.start_fraction == 0 or step >= self.start_step

    def ended(self, step: int) -> bool:
        """Whether updates are over (the masks freeze) at ``step``."""
        return self.end_step is not None and step >= self.end_step

    def update_due(self, step: int, last_update_step: int, episode_ended: bool) -> bool:
        """Whether an update is due at ``step`` (the schedule's window is checked apart)."""
        if self.update_freq == "episode":
            return episode_ended
        return step - last_update_step >= int(self.update_freq)

    def drop_fraction_at(self, step: int) -> float:
        """Share of active weights replaced at ``step``: the initial share, decayed as
        ``drop_decay`` says, 0 once updates end."""
        if self.ended(step):
            return 0.0
        if self.end_step is None or self.drop_decay == "constant":
            return self.drop_fraction
        return 0.5 * self.drop_fraction * (1.0 + math.cos(math.pi * step / self.end_step))

    def sparsity_at(self, step: int, final_sparsity: float) -> float:
        """The pathway's sparsity at ``step``: ``final_sparsity`` without an initial sparsity,
        else the polynomial ramp from ``initial_sparsity`` at the start of updates to
        ``final_sparsity`` at their end."""
        if self.initial_sparsity is None or self.end_step is None:
            return final_sparsity
        span = max(self.end_step - self.start_step, 1)
        progress = min(max((step - self.start_step) / span, 0.0), 1.0)
        return final_sparsity + (self.initial_sparsity - final_sparsity) * (1.0 - progress) ** self.sparsity_power

    def keep_at(self, step: int, n_weights: int, final_keep_ratio: float) -> int:
        """Active weights of a network of ``n_weights`` at ``step``."""
        return keep_count(n_weights, 1.0 - self.sparsity_at(step, 1.0 - final_keep_ratio))
