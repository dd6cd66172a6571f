"""Each algorithm's own training loss, evaluated on a batch, per network.

An *objective* is a function ``(model, batch) -> {network name: loss}``: the loss whose
gradient the algorithm's ``train()`` step would use for each network, written as in SB3 /
sb3-contrib. The scores of DAPD (and SNIP, RigL) are computed from these losses. Each
built-in algorithm declares its objective in its own module (``sb3_pathways/sac.py``, ...);
an algorithm that is not built in can be added with :func:`register_objective`. The helpers
here are the terms several objectives share.
"""

from __future__ import annotations

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_pathways.registry import Objective, algorithm_spec, specs_with, update_algorithm

__all__ = [
    "Objective",
    "discounts",
    "entropy_coefficient",
    "masked_mean",
    "objective_for",
    "on_policy_terms",
    "register_objective",
    "same_loss_for_every_network",
]


def register_objective(algorithm: type[BaseAlgorithm], objective: Objective) -> None:
    """
    Declare the training loss of an algorithm, so that loss-based mask updates (DAPD, SNIP,
    RigL) work with it. Subclasses of ``algorithm`` use it too unless they register their own.

    :param algorithm: the algorithm class, e.g. ``SAC``
    :param objective: ``(model, batch) -> {network name: loss}``; the batch is what the
        algorithm's buffer gives (``ReplayBufferSamples`` off-policy,
        ``RolloutBufferSamples`` on-policy) and the names are the policy's network names
    """
    if not callable(objective):
        raise TypeError(f"objective must be callable, got {objective!r}")
    update_algorithm(algorithm, objective=objective)


def objective_for(model: BaseAlgorithm) -> Objective:
    """The objective registered for ``model``'s class (or its closest registered base)."""
    spec = algorithm_spec(model)
    if spec is None or spec.objective is None:
        known = sorted(spec.name for spec in specs_with("objective"))
        raise TypeError(
            f"no training objective is registered for {type(model).__name__}; built in: {known}. "
            "Add one with sb3_pathways.register_objective(AlgoClass, fn)."
        )
    return spec.objective


def discounts(model: Any, batch: Any) -> Any:
    """The discount of every transition: n-step buffers store one, otherwise ``gamma``."""
    return batch.discounts if getattr(batch, "discounts", None) is not None else model.gamma


def entropy_coefficient(model: Any) -> th.Tensor:
    """The current entropy weight of a SAC-family model (learned or fixed), detached."""
    if getattr(model, "log_ent_coef", None) is not None:
        return th.exp(model.log_ent_coef.detach())
    return model.ent_coef_tensor


def on_policy_terms(
    model: Any, batch: Any, valid: th.Tensor | None = None, **evaluate_kwargs: Any
) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    """
    Values, log-probabilities, (normalised) advantages and entropy loss of a rollout batch,
    as an ``ActorCriticPolicy`` algorithm's ``train()`` computes them.

    :param valid: bool mask of the real transitions of a padded sequence batch (recurrent
        policies): statistics and means are taken over them only
    :param evaluate_kwargs: passed to the policy's ``evaluate_actions``
    """
    actions = batch.actions
    if isinstance(model.action_space, spaces.Discrete):
        actions = actions.long().flatten()
    values, log_prob, entropy = model.policy.evaluate_actions(batch.observations, actions, **evaluate_kwargs)
    advantages = batch.advantages
    real = advantages if valid is None else advantages[valid]
    if getattr(model, "normalize_advantage", False) and len(real) > 1:
        advantages = (advantages - real.mean()) / (real.std() + 1e-8)
    entropy_loss = -masked_mean(-log_prob if entropy is None else entropy, valid)
    return values.flatten(), log_prob, advantages, entropy_loss


def masked_mean(values: th.Tensor, valid: th.Tensor | None = None) -> th.Tensor:
    """The mean of ``values``, over the ``valid`` entries only when a mask is given."""
    return values.mean() if valid is None else values[valid].mean()


def same_loss_for_every_network(model: Any, loss: th.Tensor) -> dict[str, th.Tensor]:
    """One loss shared by every network of the policy (PPO, A2C: one optimizer, one loss)."""
    return dict.fromkeys(model.policy.network_names, loss)
