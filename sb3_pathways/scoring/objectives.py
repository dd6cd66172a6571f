"""Each algorithm's own training loss, evaluated on a batch, per network.

An *objective* is a function ``(model, batch) -> {network name: loss}``: the loss whose
gradient the algorithm's ``train()`` step would use for each network, written as in SB3 /
sb3-contrib. The scores of DAPD (and SNIP, RigL) are computed from these losses. An
algorithm that is not built in can be added with :func:`register_objective`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from sb3_contrib import QRDQN, TQC, CrossQ
from sb3_contrib.common.utils import quantile_huber_loss
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

Objective = Callable[[Any, Any], dict[str, th.Tensor]]

_OBJECTIVES: dict[type[BaseAlgorithm], Objective] = {}


def register_objective(algorithm: type[BaseAlgorithm], objective: Objective) -> None:
    """
    Declare the training loss of an algorithm, so that loss-based mask updates (DAPD, SNIP,
    RigL) work with it. Subclasses of ``algorithm`` use it too unless they register their own.

    :param algorithm: the algorithm class, e.g. ``SAC``
    :param objective: ``(model, batch) -> {network name: loss}``; the batch is what the
        algorithm's buffer gives (``ReplayBufferSamples`` off-policy,
        ``RolloutBufferSamples`` on-policy) and the names are the policy's network names
    """
    if not (isinstance(algorithm, type) and issubclass(algorithm, BaseAlgorithm)):
        raise TypeError(f"algorithm must be a BaseAlgorithm subclass, got {algorithm!r}")
    if not callable(objective):
        raise TypeError(f"objective must be callable, got {objective!r}")
    _OBJECTIVES[algorithm] = objective


def objective_for(model: BaseAlgorithm) -> Objective:
    """The objective registered for ``model``'s class (or its closest registered base)."""
    for cls in type(model).__mro__:
        if cls in _OBJECTIVES:
            return _OBJECTIVES[cls]
    known = sorted(cls.__name__ for cls in _OBJECTIVES)
    raise TypeError(
        f"no training objective is registered for {type(model).__name__}; built in: {known}. "
        "Add one with sb3_pathways.register_objective(AlgoClass, fn)."
    )


def _discounts(model: Any, batch: Any) -> Any:
    return batch.discounts if getattr(batch, "discounts", None) is not None else model.gamma


def _entropy_coefficient(model: Any) -> th.Tensor:
    if getattr(model, "log_ent_coef", None) is not None:
        return th.exp(model.log_ent_coef.detach())
    return model.ent_coef_tensor


#: the entropy weight of the DAPD reference implementation's scoring copy of SAC (its initial
#: temperature; the copy never receives the learned one)
REFERENCE_SCORING_ENTROPY_WEIGHT = 0.1


def sac_objective(model: SAC, batch: Any) -> dict[str, th.Tensor]:
    """SAC: the clipped double-Q critic loss and the actor loss with its entropy term."""
    critic_loss, actor_loss = _sac_losses(model, batch, _entropy_coefficient(model))
    return {"critic": 0.5 * critic_loss, "actor": actor_loss}


def sac_reference_objective(model: SAC, batch: Any) -> dict[str, th.Tensor]:
    """
    SAC's losses as the DAPD reference implementation scores them (``dapd_utils.py``): the
    entropy weight fixed at 0.1, the critic loss MSE1 + MSE2, and the critic's gradient also
    collecting the actor loss's (the reference runs both backward passes into one gradient).
    Pass it as ``DAPDCallback(objective=sac_reference_objective)``.
    """
    critic_loss, actor_loss = _sac_losses(model, batch, REFERENCE_SCORING_ENTROPY_WEIGHT)
    return {"critic": critic_loss + actor_loss, "actor": actor_loss}


def _sac_losses(model: SAC, batch: Any, ent_coef: th.Tensor | float) -> tuple[th.Tensor, th.Tensor]:
    """SAC's critic loss MSE1 + MSE2 (not halved) and actor loss at entropy weight ``ent_coef``."""
    with th.no_grad():
        next_actions, next_log_prob = model.actor.action_log_prob(batch.next_observations)
        next_q = th.cat(model.critic_target(batch.next_observations, next_actions), dim=1)
        next_q = th.min(next_q, dim=1, keepdim=True)[0] - ent_coef * next_log_prob.reshape(-1, 1)
        target_q = batch.rewards + (1 - batch.dones) * _discounts(model, batch) * next_q
    critic_loss = sum(F.mse_loss(q, target_q) for q in model.critic(batch.observations, batch.actions))
    actions_pi, log_prob = model.actor.action_log_prob(batch.observations)
    q_pi = th.cat(model.critic(batch.observations, actions_pi), dim=1)
    actor_loss = (ent_coef * log_prob.reshape(-1, 1) - th.min(q_pi, dim=1, keepdim=True)[0]).mean()
    return critic_loss, actor_loss  # type: ignore[return-value]


def tqc_objective(model: TQC, batch: Any) -> dict[str, th.Tensor]:
    """TQC: the truncated quantile critic loss and the actor loss with its entropy term."""
    ent_coef = _entropy_coefficient(model)
    batch_size = batch.rewards.shape[0]
    with th.no_grad():
        next_actions, next_log_prob = model.actor.action_log_prob(batch.next_observations)
        next_quantiles = model.critic_target(batch.next_observations, next_actions)
        n_target = model.critic.quantiles_total - model.top_quantiles_to_drop_per_net * model.critic.n_critics
        next_quantiles = th.sort(next_quantiles.reshape(batch_size, -1))[0][:, :n_target]
        target = next_quantiles - ent_coef * next_log_prob.reshape(-1, 1)
        target = (batch.rewards + (1 - batch.dones) * _discounts(model, batch) * target).unsqueeze(1)
    current = model.critic(batch.observations, batch.actions)
    critic_loss = quantile_huber_loss(current, target, sum_over_quantiles=False)
    actions_pi, log_prob = model.actor.action_log_prob(batch.observations)
    q_pi = model.critic(batch.observations, actions_pi).mean(dim=2).mean(dim=1, keepdim=True)
    actor_loss = (ent_coef * log_prob.reshape(-1, 1) - q_pi).mean()
    return {"critic": critic_loss, "actor": actor_loss}


def crossq_objective(model: CrossQ, batch: Any) -> dict[str, th.Tensor]:
    """CrossQ: the joint (current and next) batch-normalised critic loss and the actor loss.
    Batch-norm statistics are restored by the scorer afterwards."""
    ent_coef = _entropy_coefficient(model)
    batch_size = batch.rewards.shape[0]
    with th.no_grad():
        model.actor.set_bn_training_mode(False)
        next_actions, next_log_prob = model.actor.action_log_prob(batch.next_observations)
    all_obs = th.cat([batch.observations, batch.next_observations], dim=0)
    all_actions = th.cat([batch.actions, next_actions], dim=0)
    model.critic.set_bn_training_mode(True)
    all_q = th.cat(model.critic(all_obs, all_actions), dim=1)
    model.critic.set_bn_training_mode(False)
    current_q, next_q = th.split(all_q, batch_size, dim=0)
    with th.no_grad():
        next_q = th.min(next_q.detach(), dim=1, keepdim=True)[0] - ent_coef * next_log_prob.reshape(-1, 1)
        target_q = batch.rewards + (1 - batch.dones) * _discounts(model, batch) * next_q
    critic_loss = 0.5 * sum(F.mse_loss(q, target_q) for q in current_q.T[..., None])
    model.actor.set_bn_training_mode(True)
    actions_pi, log_prob = model.actor.action_log_prob(batch.observations)
    model.actor.set_bn_training_mode(False)
    q_pi = th.cat(model.critic(batch.observations, actions_pi), dim=1)
    actor_loss = (ent_coef * log_prob.reshape(-1, 1) - th.min(q_pi, dim=1, keepdim=True)[0]).mean()
    return {"critic": critic_loss, "actor": actor_loss}  # type: ignore[dict-item]


def td3_objective(model: TD3, batch: Any) -> dict[str, th.Tensor]:
    """TD3 / DDPG: the (clipped double-Q, smoothed-target) critic loss and the actor loss."""
    with th.no_grad():
        noise = batch.actions.clone().normal_(0, model.target_policy_noise)
        noise = noise.clamp(-model.target_noise_clip, model.target_noise_clip)
        next_actions = (model.actor_target(batch.next_observations) + noise).clamp(-1, 1)
        next_q = th.cat(model.critic_target(batch.next_observations, next_actions), dim=1)
        target_q = batch.rewards + (1 - batch.dones) * _discounts(model, batch) * th.min(next_q, dim=1, keepdim=True)[0]
    critic_loss = sum(F.mse_loss(q, target_q) for q in model.critic(batch.observations, batch.actions))
    actor_loss = -model.critic.q1_forward(batch.observations, model.actor(batch.observations)).mean()
    return {"critic": critic_loss, "actor": actor_loss}  # type: ignore[dict-item]


def dqn_objective(model: DQN, batch: Any) -> dict[str, th.Tensor]:
    """DQN: the Huber TD loss against the target network."""
    with th.no_grad():
        next_q = model.q_net_target(batch.next_observations).max(dim=1)[0].reshape(-1, 1)
        target_q = batch.rewards + (1 - batch.dones) * _discounts(model, batch) * next_q
    current_q = th.gather(model.q_net(batch.observations), dim=1, index=batch.actions.long())
    return {"q_net": F.smooth_l1_loss(current_q, target_q)}


def qrdqn_objective(model: QRDQN, batch: Any) -> dict[str, th.Tensor]:
    """QR-DQN: the quantile Huber loss against the target network."""
    batch_size = batch.rewards.shape[0]
    with th.no_grad():
        next_quantiles = model.quantile_net_target(batch.next_observations)
        greedy = next_quantiles.mean(dim=1, keepdim=True).argmax(dim=2, keepdim=True)
        next_quantiles = next_quantiles.gather(dim=2, index=greedy.expand(batch_size, model.n_quantiles, 1)).squeeze(2)
        target = batch.rewards + (1 - batch.dones) * _discounts(model, batch) * next_quantiles
    actions = batch.actions[..., None].long().expand(batch_size, model.n_quantiles, 1)
    current = th.gather(model.quantile_net(batch.observations), dim=2, index=actions).squeeze(dim=2)
    return {"quantile_net": quantile_huber_loss(current, target, sum_over_quantiles=True)}


def _on_policy_terms(model: Any, batch: Any) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    actions = batch.actions
    if isinstance(model.action_space, spaces.Discrete):
        actions = actions.long().flatten()
    values, log_prob, entropy = model.policy.evaluate_actions(batch.observations, actions)
    advantages = batch.advantages
    if model.normalize_advantage and len(advantages) > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
    return values.flatten(), log_prob, advantages, entropy_loss


def _same_loss_for_every_network(model: Any, loss: th.Tensor) -> dict[str, th.Tensor]:
    return dict.fromkeys(model.policy.pathways(), loss)


def ppo_objective(model: PPO, batch: Any) -> dict[str, th.Tensor]:
    """PPO: clipped surrogate + value loss (clipped if ``clip_range_vf``) + entropy term, the
    one loss shared by every network."""
    values, log_prob, advantages, entropy_loss = _on_policy_terms(model, batch)
    progress = model._current_progress_remaining
    clip_range = model.clip_range(progress)  # type: ignore[operator]
    ratio = th.exp(log_prob - batch.old_log_prob)
    policy_loss = -th.min(advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
    if model.clip_range_vf is not None:
        clip_vf = model.clip_range_vf(progress)  # type: ignore[operator]
        values = batch.old_values + th.clamp(values - batch.old_values, -clip_vf, clip_vf)
    loss = policy_loss + model.ent_coef * entropy_loss + model.vf_coef * F.mse_loss(batch.returns, values)
    return _same_loss_for_every_network(model, loss)


def a2c_objective(model: A2C, batch: Any) -> dict[str, th.Tensor]:
    """A2C: policy gradient + value loss + entropy term, the one loss shared by every network."""
    values, log_prob, advantages, entropy_loss = _on_policy_terms(model, batch)
    policy_loss = -(advantages * log_prob).mean()
    loss = policy_loss + model.ent_coef * entropy_loss + model.vf_coef * F.mse_loss(batch.returns, values)
    return _same_loss_for_every_network(model, loss)


for _algorithm, _objective in (
    (SAC, sac_objective),
    (TQC, tqc_objective),
    (CrossQ, crossq_objective),
    (TD3, td3_objective),  # DDPG is a TD3 subclass
    (DQN, dqn_objective),
    (QRDQN, qrdqn_objective),
    (PPO, ppo_objective),
    (A2C, a2c_objective),
):
    register_objective(_algorithm, _objective)
