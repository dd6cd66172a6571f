"""Training cost of a run: FLOPs counted from the masks, an energy estimate from them and,
with the optional ``energy`` extra (codecarbon), the energy measured on the machine."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from sb3_pathways.deploy.flops import gradient_steps_per_update, training_flops
from sb3_pathways.policies import pathway_policy

#: Joules per FLOP of the estimate: peak FP32 efficiency of a current server CPU core
#: (about 100 GFLOP/s at about 10 W). Small-batch RL runs far below peak, so estimates made
#: with it are lower bounds; pass the figure of your hardware as ``joules_per_flop``.
JOULES_PER_FLOP = 1e-10


def estimate_energy(flops: float, joules_per_flop: float = JOULES_PER_FLOP) -> float:
    """Energy in joules of ``flops`` floating-point operations at ``joules_per_flop``."""
    return flops * joules_per_flop


@dataclass
class TrainingCost:
    """Cumulative training cost of a run (the dense figures: same gradient steps, all weights)."""

    gradient_steps: int = 0
    train_flops: float = 0.0
    train_flops_dense: float = 0.0
    energy_estimate_j: float = 0.0
    energy_estimate_dense_j: float = 0.0
    #: measured by codecarbon (whole process, the machine's CPU/RAM share), ``None`` if not measured
    energy_measured_j: float | None = None

    @property
    def flops_ratio(self) -> float:
        return self.train_flops / self.train_flops_dense if self.train_flops_dense else 1.0


class EnergyCallback(BaseCallback):
    """
    Accounts the training FLOPs of a pathway run (gradient steps x
    :func:`~sb3_pathways.deploy.training_flops` of the current masks) against the dense
    network, converts them to an energy estimate, and measures the run's energy with
    codecarbon when the ``energy`` extra is installed. Records under ``pathways/``:
    ``train_flops``, ``train_flops_dense``, ``train_flops_ratio``, ``energy_estimate_j``,
    ``energy_estimate_dense_j`` and, at the end, ``energy_measured_j``.

    :param joules_per_flop: energy per FLOP of the estimate (see ``JOULES_PER_FLOP``)
    :param measure: measure with codecarbon: ``None`` if it is installed, ``True`` always
        (an error if it is missing), ``False`` never
    :param country_iso_code: country of the machine, for codecarbon's offline tracker
    :param account_freq: environment steps between two readings of the masks
    :param verbose: verbosity level
    """

    def __init__(
        self,
        joules_per_flop: float = JOULES_PER_FLOP,
        measure: bool | None = None,
        country_iso_code: str = "USA",
        account_freq: int = 1000,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if isinstance(joules_per_flop, bool) or not isinstance(joules_per_flop, (int, float)) or joules_per_flop <= 0:
            raise ValueError(f"joules_per_flop must be a positive float, got {joules_per_flop!r}")
        if measure not in (None, True, False):
            raise ValueError(f"measure must be None, True or False, got {measure!r}")
        codecarbon_installed = importlib.util.find_spec("codecarbon") is not None
        if measure and not codecarbon_installed:
            raise ImportError("EnergyCallback(measure=True) needs codecarbon: pip install 'sb3-pathways[energy]'")
        if isinstance(account_freq, bool) or not isinstance(account_freq, int) or account_freq < 1:
            raise ValueError(f"account_freq must be a positive int, got {account_freq!r}")
        self.joules_per_flop = float(joules_per_flop)
        self.measure = codecarbon_installed if measure is None else measure
        self.country_iso_code = country_iso_code
        self.account_freq = account_freq
        self.cost = TrainingCost()
        self._tracker: Any = None
        self._counted_updates = 0
        self._counted_at = 0

    def _init_callback(self) -> None:
        pathway_policy(self.model, type(self).__name__)
        training_flops(self.model)  # fails now, not mid-run, for an algorithm without a pass count

    def _on_training_start(self) -> None:
        self._counted_updates = self.model._n_updates
        self._counted_at = self.num_timesteps
        if self.measure and self._tracker is None:
            from codecarbon import OfflineEmissionsTracker

            self._tracker = OfflineEmissionsTracker(
                country_iso_code=self.country_iso_code, log_level="error", save_to_file=False
            )
            self._tracker.start()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.num_timesteps - self._counted_at >= self.account_freq:
            self._account()
            self._record()

    def _on_training_end(self) -> None:
        self._account()
        if self._tracker is not None:
            self._tracker.stop()
            self.cost.energy_measured_j = float(self._tracker.final_emissions_data.energy_consumed) * 3.6e6
            self._tracker = None
        self._record()

    def _account(self) -> None:
        updates = self.model._n_updates - self._counted_updates
        self._counted_updates = self.model._n_updates
        self._counted_at = self.num_timesteps
        if updates <= 0:
            return
        steps = updates * gradient_steps_per_update(self.model)
        per_step = training_flops(self.model)
        cost = self.cost
        cost.gradient_steps += steps
        cost.train_flops += steps * per_step.pathway
        cost.train_flops_dense += steps * per_step.dense
        cost.energy_estimate_j = estimate_energy(cost.train_flops, self.joules_per_flop)
        cost.energy_estimate_dense_j = estimate_energy(cost.train_flops_dense, self.joules_per_flop)

    def _record(self) -> None:
        for key, value in asdict(self.cost).items():
            if value is not None and key != "gradient_steps":
                self.logger.record(f"pathways/{key}", value)
        self.logger.record("pathways/train_flops_ratio", self.cost.flops_ratio)
