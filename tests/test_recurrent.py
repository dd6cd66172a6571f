"""RecurrentPPO: masked LSTMs, sequence scoring data and its loss."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch as th
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.env_util import make_vec_env

import sb3_pathways
from sb3_pathways import DAPDCallback
from sb3_pathways.masking.layers import MaskedLSTM
from sb3_pathways.ppo_recurrent import recurrent_ppo_objective
from sb3_pathways.scoring.data import newest_transitions


def _model(**policy_kwargs: object) -> RecurrentPPO:
    kwargs = dict(lstm_hidden_size=16, net_arch=[32], sparsity=0.9, **policy_kwargs)
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    return RecurrentPPO("PathwayPolicy", env, n_steps=48, batch_size=32, seed=0, device="cpu", policy_kwargs=kwargs)


def _collect_one_rollout(model: RecurrentPPO) -> None:
    """Fill the rollout buffer (advantages computed) without training, as at rollout end."""
    model._setup_learn(model.n_steps * model.n_envs, callback=None)
    callback = model._init_callback(None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)


def _sb3_train_loss(model: RecurrentPPO, batch: object) -> th.Tensor:
    """RecurrentPPO.train()'s loss, written out as sb3-contrib computes it."""
    mask = batch.mask > 1e-8
    values, log_prob, entropy = model.policy.evaluate_actions(
        batch.observations, batch.actions.long().flatten(), batch.lstm_states, batch.episode_starts
    )
    advantages = batch.advantages
    advantages = (advantages - advantages[mask].mean()) / (advantages[mask].std() + 1e-8)
    ratio = th.exp(log_prob - batch.old_log_prob)
    clip = model.clip_range(model._current_progress_remaining)
    policy_loss = -th.mean(th.min(advantages * ratio, advantages * th.clamp(ratio, 1 - clip, 1 + clip))[mask])
    value_loss = th.mean(((batch.returns - values.flatten()) ** 2)[mask])
    entropy_loss = -th.mean(entropy[mask])
    return policy_loss + model.ent_coef * entropy_loss + model.vf_coef * value_loss


def test_scoring_reads_the_sequences_training_reads_and_their_loss() -> None:
    model = _model()
    _collect_one_rollout(model)
    np.random.seed(3)
    batch = newest_transitions(model, model.n_steps * model.n_envs)
    np.random.seed(3)
    trained_on = next(copy.deepcopy(model.rollout_buffer).get(batch_size=None))  # train()'s full batch
    for name in ("observations", "actions", "advantages", "returns", "mask", "episode_starts"):
        assert th.equal(getattr(batch, name), getattr(trained_on, name)), name
    assert all(th.equal(a, b) for a, b in zip(batch.lstm_states.pi, trained_on.lstm_states.pi))
    assert not model.rollout_buffer.generator_ready  # the buffer itself is untouched
    losses = recurrent_ppo_objective(model, batch)
    assert set(losses) == {"actor", "critic"}
    th.testing.assert_close(losses["actor"], _sb3_train_loss(model, trained_on))


def test_a_window_reads_the_newest_steps_of_every_env_from_their_stored_lstm_states() -> None:
    model = _model()
    _collect_one_rollout(model)
    batch = newest_transitions(model, 20)  # 10 steps of each of the 2 envs
    assert int((batch.mask > 0).sum()) == 20
    buffer = model.rollout_buffer
    newest = buffer.observations[-10:].swapaxes(0, 1).reshape(20, -1)
    real = batch.observations[batch.mask > 0].numpy()
    assert sorted(map(tuple, real)) == sorted(map(tuple, newest))
    # every sequence starts from the LSTM state stored with its first step
    stored = {
        tuple(np.round(buffer.observations[t, e], 6)): buffer.hidden_states_pi[t, :, e]
        for t in range(38, 48)
        for e in range(2)
    }
    starts = batch.observations.reshape(len(batch.lstm_states.pi[0][0]), -1, batch.observations.shape[-1])[:, 0]
    for sequence, first in enumerate(starts):
        expected = stored[tuple(np.round(first.numpy(), 6))]
        assert np.allclose(batch.lstm_states.pi[0][:, sequence].numpy(), expected)


@pytest.mark.parametrize(
    "layout, critic_paths",
    [
        (dict(), ["lstm_critic.weight_ih_l0", "lstm_critic.weight_hh_l0"]),
        (dict(enable_critic_lstm=False), ["critic.weight"]),
        (dict(shared_lstm=True, enable_critic_lstm=False), []),
    ],
    ids=["own-lstm", "linear-critic", "shared-lstm"],
)
def test_every_lstm_layout_masks_its_lstm_weights(layout: dict, critic_paths: list[str]) -> None:
    model = _model(**layout)
    masks = sb3_pathways.get_masks(model)
    assert {"lstm_actor.weight_ih_l0", "lstm_actor.weight_hh_l0"} <= set(model.policy.pathways()["actor"].layers)
    critic_layers = list(model.policy.pathways()["critic"].layers)
    assert [name for name in critic_layers if not name.startswith(("mlp_extractor", "value_net"))] == critic_paths
    assert isinstance(model.policy.lstm_actor, MaskedLSTM)
    for name, mask in masks.items():
        weight = model.policy.get_parameter(name)
        assert weight.shape == mask.shape and th.count_nonzero(weight[~mask]) == 0
    model.learn(96)
    for name, mask in masks.items():
        weight = model.policy.get_parameter(name)
        assert th.count_nonzero(weight[~mask]) == 0, name
        assert weight.grad is not None and th.count_nonzero(weight.grad[~mask]) == 0, name


def test_policy_save_and_load_keep_the_lstm_settings(tmp_path) -> None:
    model = _model(n_lstm_layers=2)
    model.policy.save(tmp_path / "policy.pth")
    policy = type(model.policy).load(tmp_path / "policy.pth", device="cpu")
    assert policy.lstm_hidden_state_shape == (2, 1, 16)
    assert all(th.equal(a, b) for a, b in zip(sb3_pathways.get_masks(policy).values(), sb3_pathways.get_masks(model).values()))


def test_dapd_rescoring_runs_on_sequences_and_refuses_single_transition_draws() -> None:
    model = _model()
    model.learn(192, callback=DAPDCallback(update_freq=96, max_warmup_fraction=None))
    state = model.pathway_discovery
    assert state.n_updates == 2 and any(change["actor"] > 0 for _, change in state.mask_changes)
    with pytest.raises(
        ValueError, match="window_samples draws single transitions, but RecurrentPPO is scored on whole sequences"
    ):
        _model().learn(96, callback=DAPDCallback(window_samples=64))
