"""SB3 callbacks of sb3_pathways."""

from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback

from sb3_pathways.policies import pathway_policy
from sb3_pathways.stats import record_pathway_stats


class PathwayLoggerCallback(BaseCallback):
    """
    Records ``pathways/<network>/sparsity`` and ``pathways/<network>/active`` in the model's
    logger at the end of every rollout (for a model whose mask no updater changes; the mask
    updaters record the same keys themselves).

    :param verbose: verbosity level
    """

    def _init_callback(self) -> None:
        pathway_policy(self.model, type(self).__name__)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        record_pathway_stats(self.logger, self.model)
