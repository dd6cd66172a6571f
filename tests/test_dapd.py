"""DAPDCallback: scores, moving average, warm-up and freeze, resume, misuse."""

from __future__ import annotations

import math
import pickle
import zipfile
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from conftest import AlgoCase, assert_every_output_unit_has_an_input
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import CallbackList, EvalCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import DummyVecEnv

import sb3_pathways
from sb3_pathways import DAPDCallback, PathwayUpdateCallback, connection_sensitivity
from sb3_pathways.masking.layers import MaskedWeightMixin
from sb3_pathways.masking.selection import keep_count
from sb3_pathways.registry import algorithm_spec
from sb3_pathways.sac import REFERENCE_SCORING_ENTROPY_WEIGHT, sac_objective, sac_reference_objective
from sb3_pathways.scoring.data import newest_replay_transitions, newest_transitions
from sb3_pathways.updaters.base import DiscoveryState, Masks, UpdateContext
from sb3_pathways.updaters.dapd import DAPDUpdater, dapd_masks, normalise
from sb3_pathways.updaters.evolution import RigLUpdater


def _tiny_sac() -> tuple[SAC, ReplayBufferSamples]:
    model = SAC("PathwayPolicy", "Pendulum-v1", seed=0, device="cpu", policy_kwargs=dict(net_arch=[4], sparsity=0.5))
    generator = th.Generator().manual_seed(1)
    n = 8
    batch = ReplayBufferSamples(
        observations=th.randn(n, 3, generator=generator),
        actions=th.rand(n, 1, generator=generator) * 2 - 1,
        next_observations=th.randn(n, 3, generator=generator),
        dones=(th.rand(n, 1, generator=generator) < 0.3).float(),
        rewards=th.randn(n, 1, generator=generator),
    )
    return model, batch


def _small_sac(**policy_kwargs) -> SAC:
    """SAC with a pathway policy, learning from step 100 on batches of 32."""
    return SAC(
        "PathwayPolicy", "Pendulum-v1", learning_starts=100, batch_size=32, seed=0, device="cpu", policy_kwargs=policy_kwargs
    )


def test_sac_critic_score_equals_hand_computed_w_times_grad() -> None:
    model, batch = _tiny_sac()
    critic = model.policy.critic
    th.manual_seed(123)
    scores = connection_sensitivity(model, batch, score_at="dense")["critic"]

    # the same target, with the same random draw for the next actions
    th.manual_seed(123)
    with th.no_grad():
        next_actions, next_log_prob = model.actor.action_log_prob(batch.next_observations)
        next_q = th.cat(model.critic_target(batch.next_observations, next_actions), dim=1).min(dim=1, keepdim=True)[0]
        ent_coef = th.exp(model.log_ent_coef)
        target = batch.rewards + (1 - batch.dones) * model.gamma * (next_q - ent_coef * next_log_prob.reshape(-1, 1))
    x = th.cat([batch.observations, batch.actions], dim=1)
    loss = th.zeros(())
    leaves = {}
    for q in ("qf0", "qf1"):
        first, last = critic.get_submodule(f"{q}.0"), critic.get_submodule(f"{q}.2")
        w1 = first.full_weight().clone().requires_grad_(True)  # dense: every connection on
        w2 = last.full_weight().clone().requires_grad_(True)
        hidden = th.relu(x @ w1.T + first.bias)
        value = hidden @ w2.T + last.bias
        loss = loss + 0.5 * ((value - target) ** 2).mean()
        leaves[f"critic.{q}.0.weight"], leaves[f"critic.{q}.2.weight"] = w1, w2
        # output layer by hand: dL/dW2 = mean over the batch of (value - target) * hidden
        by_hand = ((value - target) * hidden).mean(dim=0, keepdim=True).detach()
        th.testing.assert_close(scores[f"critic.{q}.2.weight"], (w2.detach() * by_hand).abs(), rtol=1e-5, atol=1e-7)
    grads = th.autograd.grad(loss, list(leaves.values()))
    for (name, leaf), grad in zip(leaves.items(), grads):
        th.testing.assert_close(scores[name], (leaf.detach() * grad).abs(), rtol=1e-5, atol=1e-7)
    # dense scoring gives dormant weights a score, so they can come back
    mask = sb3_pathways.get_masks(model)["critic.qf0.0.weight"]
    assert th.count_nonzero(scores["critic.qf0.0.weight"][~mask]) > 0
    masked = connection_sensitivity(model, batch, score_at="masked")["critic"]
    assert th.count_nonzero(masked["critic.qf0.0.weight"][~mask]) == 0


def test_scoring_changes_no_training_state(case: AlgoCase) -> None:
    model = case.make(sparsity=0.8)
    model.learn(300)
    if isinstance(model, OnPolicyAlgorithm):  # a fresh rollout with its advantages, not yet trained on
        callback = CallbackList([])
        callback.init_callback(model)
        model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    model.policy.set_training_mode(False)
    params = {name: p.detach().clone() for name, p in model.policy.named_parameters()}
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in model.policy.named_parameters()}
    buffers = {name: b.clone() for name, b in model.policy.named_buffers()}
    optimizer_states = [
        {id(p): {k: v.clone() for k, v in s.items() if isinstance(v, th.Tensor)} for p, s in opt.state.items()}
        for opt in model.policy.optimizers()
    ]
    torch_rng, numpy_rng = th.get_rng_state(), np.random.get_state()[1].copy()
    modes = [m.training for m in model.policy.modules()]

    scores = connection_sensitivity(model, newest_transitions(model, 64))
    assert set(scores) == set(case.networks)
    assert all(th.isfinite(s).all() and s.sum() > 0 for layers in scores.values() for s in layers.values())

    for name, p in model.policy.named_parameters():
        assert th.equal(p, params[name]), name
        assert (p.grad is None and grads[name] is None) or th.equal(p.grad, grads[name]), name
    for name, b in model.policy.named_buffers():
        assert th.equal(b, buffers[name]), name
    for opt, before in zip(model.policy.optimizers(), optimizer_states):
        assert {id(p) for p in opt.state} == set(before)
        for p, s in opt.state.items():
            for k, v in s.items():
                if isinstance(v, th.Tensor):
                    assert th.equal(v, before[id(p)][k])
    assert th.equal(th.get_rng_state(), torch_rng)
    assert np.array_equal(np.random.get_state()[1], numpy_rng)
    assert [m.training for m in model.policy.modules()] == modes


def test_moving_average_is_the_mean_of_the_last_k_normalised_scores() -> None:
    updater = DAPDUpdater(moving_average=3)
    vectors = [th.rand(10) for _ in range(4)]
    normalised = [normalise({"w": v}) for v in vectors]
    assert all(th.isclose(n.sum(), th.tensor(1.0)) for n in normalised)
    for n in normalised:
        averaged = updater.push_scores("critic", n)
    th.testing.assert_close(averaged, th.stack(normalised[1:]).mean(dim=0))
    assert len(updater.score_history["critic"]) == 3


def test_callback_masks_are_the_top_k_of_the_averaged_history() -> None:
    model = _small_sac(net_arch=[32, 32], sparsity=0.9)
    model.learn(700, callback=DAPDCallback(max_warmup_fraction=None, update_freq=100, moving_average=3, networks="all"))
    state = model.pathway_discovery
    assert state.n_updates >= 4
    for name, network in model.policy.pathways().items():
        history = state.rule_states["DAPDUpdater"]["score_history"][name]
        assert len(history) == 3
        expected = dapd_masks(network, th.stack(history).mean(dim=0), allocation="pooled")  # the default
        assert expected is not None
        for layer_name, mask in network.masks().items():
            assert th.equal(mask[0], expected[layer_name])


def test_cover_inputs_keeps_every_input_unit_on_the_rescored_pathway() -> None:
    model = _small_sac(net_arch=[32, 32], sparsity=0.8)
    callback = DAPDCallback(max_warmup_fraction=None, update_freq=100, moving_average=2, cover_inputs=True, networks="all")
    model.learn(500, callback=callback)
    assert model.pathway_discovery.n_updates >= 3 and callback.updater.cover_inputs
    for name, network in model.policy.pathways().items():
        history = model.pathway_discovery.rule_states["DAPDUpdater"]["score_history"][name]
        expected = dapd_masks(network, th.stack(history).mean(dim=0), cover_inputs=True)
        assert expected is not None
        for layer_name, mask in network.masks().items():
            assert th.equal(mask[0], expected[layer_name])
            assert bool(mask[0].any(dim=0).all()), (name, layer_name)  # every input unit feeds the pathway
        assert sum(int(mask.sum()) for mask in network.masks().values()) == network.n_keep


def test_each_q_network_of_a_critic_ensemble_keeps_its_share(case: AlgoCase) -> None:
    model = case.make(sparsity=0.95, net_arch=[64, 64])
    if not hasattr(getattr(model.policy, "critic", None), "q_networks"):
        pytest.skip("no critic ensemble")
    critic = model.policy.pathways()["critic"]
    n_members = len(model.policy.critic.q_networks)
    assert len(critic.selection_groups()) == n_members
    # one Q-network scores far higher than the others: it still cannot take their weights
    scores = {
        name: th.rand(layer.weight.shape) * (1000.0 if ".qf0." in name else 1.0) for name, layer in critic.layers.items()
    }
    masks = critic.top_k(scores)
    assert masks is not None
    budgets = critic.group_budgets()
    assert sum(budgets) == critic.n_keep
    for group, budget in zip(critic.selection_groups(), budgets):
        assert sum(int(masks[name].sum()) for name in group) == budget > 0
    # the reference's pooled top-k: the high-scoring Q-network takes nearly all of k, and
    # every output unit of the others still keeps its one input
    pooled = critic.top_k(scores, allocation="pooled")
    assert pooled is not None
    assert sum(int(mask.sum()) for mask in pooled.values()) == critic.n_keep
    first, *others = critic.selection_groups()
    if others:
        assert sum(int(pooled[name].sum()) for name in first) > budgets[0]
    else:  # one Q-network (DDPG): nothing to pool
        assert all(th.equal(pooled[name], masks[name]) for name in first)
    for group in others:
        rows = sum(critic.layers[name].weight.shape[0] for name in group)
        assert sum(int(pooled[name].sum()) for name in group) == rows
        assert all(bool(pooled[name].any(dim=1).all()) for name in group)


def test_zero_kth_score_keeps_the_previous_mask() -> None:
    model, _ = _tiny_sac()
    network = model.policy.pathways()["critic"]
    before = {name: mask.clone() for name, mask in network.masks().items()}
    sparse_scores = th.zeros(network.n_prunable)
    sparse_scores[: network.n_keep - 1] = 1.0
    assert dapd_masks(network, sparse_scores) is None
    assert all(th.equal(before[name], mask) for name, mask in network.masks().items())


def test_warm_up_changes_masks_then_freeze_stops_them(case: AlgoCase, tmp_path) -> None:
    case.skip_if_offline()
    model = case.make(sparsity=0.9)
    initial = sb3_pathways.get_masks(model)
    model.learn(500, callback=DAPDCallback(max_warmup_fraction=None, update_freq=64, max_warmup_steps=400))
    state = model.pathway_discovery
    assert state.initialised and state.frozen and 400 <= state.frozen_step < 500
    assert state.n_updates >= 3
    at_freeze = sb3_pathways.get_masks(model)
    assert any(not th.equal(initial[name], at_freeze[name]) for name in initial)
    model.learn(
        300, reset_num_timesteps=False, callback=DAPDCallback(max_warmup_fraction=None, update_freq=64, max_warmup_steps=400)
    )
    assert model.pathway_discovery.n_updates == state.n_updates
    assert_every_output_unit_has_an_input(model)
    final = sb3_pathways.get_masks(model)
    assert all(th.equal(at_freeze[name], final[name]) for name in at_freeze)
    for name, network in model.policy.pathways().items():
        assert sum(int(m.sum()) for m in network.masks().values()) == keep_count(network.n_prunable, 0.1), name
        for layer_name, followers in network.followers.items():
            for follower in followers:
                assert th.equal(follower.weight_mask, network.layers[layer_name].weight_mask)
                assert th.count_nonzero(follower.weight[~follower.active_mask]) == 0
        for layer_name, layer in network.layers.items():
            assert th.count_nonzero(layer.weight[~layer.active_mask]) == 0, layer_name


def test_initial_discovery_happens_before_the_first_gradient_step() -> None:
    seen: list[tuple[int, int]] = []

    class Spy(DAPDCallback):
        def _update(self, window: int, initial: bool = False) -> None:
            seen.append((self.model._n_updates, window))
            super()._update(window, initial)

    model = SAC(
        "PathwayPolicy",
        "Pendulum-v1",
        learning_starts=150,
        seed=0,
        device="cpu",
        policy_kwargs=dict(net_arch=[16, 16], sparsity=0.8),
    )
    initial = sb3_pathways.get_masks(model)
    model.learn(160, callback=Spy())
    assert seen[0] == (0, 151)  # every transition collected before training, no gradient step yet
    assert any(not th.equal(initial[n], m) for n, m in sb3_pathways.get_masks(model).items())

    seen.clear()
    ppo = PPO("PathwayPolicy", "CartPole-v1", n_steps=128, seed=0, device="cpu")
    ppo.learn(128, callback=Spy())
    assert seen == [(0, 128)]


def test_freeze_on_rollout_return_and_on_eval(tmp_path) -> None:
    model = SAC(
        "PathwayPolicy",
        "Pendulum-v1",
        learning_starts=100,
        seed=0,
        device="cpu",
        policy_kwargs=dict(net_arch=[16, 16], sparsity=0.8),
    )
    model.learn(500, callback=DAPDCallback(max_warmup_fraction=None, freeze_threshold=-1e9))
    state = model.pathway_discovery
    assert state.frozen and state.frozen_step == 200  # first episode end after the initial discovery

    continual = SAC(
        "PathwayPolicy",
        "Pendulum-v1",
        learning_starts=100,
        seed=0,
        device="cpu",
        policy_kwargs=dict(net_arch=[16, 16], sparsity=0.8),
    )
    continual.learn(500, callback=DAPDCallback(max_warmup_fraction=None, freeze_threshold=-1e9, continual=True))
    assert not continual.pathway_discovery.frozen and continual.pathway_discovery.threshold_step == 200
    assert continual.pathway_discovery.n_updates > state.n_updates

    evaluated = PPO("PathwayPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0, device="cpu")
    evaluation = EvalCallback(gym.make("CartPole-v1"), eval_freq=128, n_eval_episodes=2)
    evaluated.learn(
        512, callback=[evaluation, DAPDCallback(max_warmup_fraction=None, freeze_threshold=0.0, freeze_metric="eval")]
    )
    assert evaluated.pathway_discovery.frozen
    assert evaluated.pathway_discovery.frozen_step == 128  # the first evaluation, not before it


def test_rollout_metric_is_the_mean_of_the_last_freeze_window_episodes() -> None:
    model = SAC("PathwayPolicy", "Pendulum-v1", device="cpu", policy_kwargs=dict(net_arch=[8], sparsity=0.5))
    callback = DAPDCallback(freeze_threshold=-200, freeze_window=10)
    callback.init_callback(model)
    assert callback.freeze_metric_value() is None  # no episode yet
    model.ep_info_buffer = deque(maxlen=100)  # as learn() sets it up
    model.ep_info_buffer.extend([{"r": -1000.0, "l": 200}] * 90 + [{"r": -100.0, "l": 200}] * 10)
    assert callback.freeze_metric_value() == -100.0
    with pytest.raises(ValueError, match="freeze_window must be a positive int"):
        DAPDCallback(freeze_window=0)


def test_resume_after_load_continues_discovery(tmp_path) -> None:
    model = _small_sac(net_arch=[16, 16], sparsity=0.8)
    model.learn(400, callback=DAPDCallback(max_warmup_fraction=None, update_freq=100, moving_average=3))
    state = model.pathway_discovery
    history = {name: [t.clone() for t in h] for name, h in state.rule_states["DAPDUpdater"]["score_history"].items()}
    updates = state.n_updates
    model.save(tmp_path / "run")
    loaded = SAC.load(tmp_path / "run", env=model.get_env(), device="cpu")
    restored = loaded.pathway_discovery
    assert restored.n_updates == updates and restored.initialised and not restored.frozen
    for name, vectors in history.items():
        assert all(th.equal(a, b) for a, b in zip(vectors, restored.rule_states["DAPDUpdater"]["score_history"][name]))
    loaded.learn(
        300,
        reset_num_timesteps=False,
        callback=DAPDCallback(max_warmup_fraction=None, update_freq=100, moving_average=3, max_warmup_steps=600),
    )
    # updates at steps 401 and 501 (every 100 steps after 301), no new initial discovery, frozen at 600
    assert loaded.pathway_discovery.n_updates == updates + 2
    assert loaded.pathway_discovery.frozen and loaded.pathway_discovery.frozen_step == 600
    loaded.save(tmp_path / "frozen")
    frozen = SAC.load(tmp_path / "frozen", env=model.get_env(), device="cpu")
    masks = sb3_pathways.get_masks(frozen)
    frozen.learn(300, reset_num_timesteps=False, callback=DAPDCallback(max_warmup_fraction=None, update_freq=50))
    assert frozen.pathway_discovery.frozen
    assert all(th.equal(masks[n], m) for n, m in sb3_pathways.get_masks(frozen).items())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(window=0), r"window must be a positive int or None, got 0"),
        (dict(moving_average=0), r"moving_average must be a positive int, got 0"),
        (dict(update_freq="epoch"), r"update_freq must be 'episode' or a positive int, got 'epoch'"),
        (dict(freeze_metric="return"), r"freeze_metric must be one of \('rollout', 'eval'\)"),
        (dict(score_at="sparse"), r"score_at must be one of \('dense', 'agent', 'masked'\)"),
        (dict(within_layer="rows"), r"within_layer must be one of \('top_k', 'per_unit', 'balanced'\), got 'rows'"),
        (dict(allocation="even"), r"allocation must be one of \('global', 'pooled', 'random', 'erk'\), got 'even'"),
        (dict(max_warmup_steps=-5), r"max_warmup_steps must be a positive int or None"),
        (dict(window_samples=0), r"window_samples must be a positive int or None, got 0"),
        (dict(discover_from="start"), r"discover_from must be one of \('learning_starts', 'first_batch'\)"),
    ],
)
def test_bad_arguments_are_rejected_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DAPDCallback(**kwargs)
    with pytest.raises(TypeError, match=r"objective must be a callable \(model, batch\)"):
        DAPDCallback(objective="sac_reference_objective")


def test_misuse_is_reported_at_training_start() -> None:
    with pytest.raises(TypeError, match="DAPDCallback needs a model with a pathway policy"):
        SAC("MlpPolicy", "Pendulum-v1").learn(10, callback=DAPDCallback())
    with pytest.raises(TypeError, match=r"no training objective is registered for PlainOnPolicy.*register_objective"):
        _plain_on_policy().learn(10, callback=DAPDCallback())
    bare = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    with pytest.raises(ValueError, match="freeze_metric='rollout' needs episode statistics"):
        SAC("PathwayPolicy", bare).learn(10, callback=DAPDCallback(freeze_threshold=-200))
    SAC("PathwayPolicy", bare, learning_starts=5).learn(10, callback=DAPDCallback())  # no threshold: fine
    with pytest.raises(ValueError, match="freeze_metric='eval' needs an EvalCallback"):
        SAC("PathwayPolicy", "Pendulum-v1").learn(10, callback=DAPDCallback(freeze_threshold=-200, freeze_metric="eval"))


class PlainOnPolicy(OnPolicyAlgorithm):
    """An on-policy algorithm sb3_pathways does not know (its training step does nothing)."""

    def train(self) -> None:
        pass


def _plain_on_policy() -> PlainOnPolicy:
    return PlainOnPolicy(
        sb3_pathways.ppo.PathwayPolicy,
        "CartPole-v1",
        learning_rate=3e-4,
        n_steps=64,
        gamma=0.99,
        gae_lambda=0.95,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.5,
        use_sde=False,
        sde_sample_freq=-1,
        seed=0,
        policy_kwargs=dict(net_arch=[64, 64]),
    )


def test_dapd_rescores_only_the_networks_named_and_the_others_keep_their_initial_mask() -> None:
    model = SAC("PathwayPolicy", "Pendulum-v1", learning_starts=100, seed=0, device="cpu", policy_kwargs=dict(mask_init="erk"))
    initial = {name: mask.clone() for name, mask in sb3_pathways.get_masks(model).items()}
    callback = DAPDCallback(networks=["actor"], max_warmup_fraction=None)
    model.learn(500, callback=callback)
    masks = sb3_pathways.get_masks(model)
    assert callback.state.n_updates >= 2
    critic = [name for name in masks if name.startswith("critic.")]
    actor = [name for name in masks if name.startswith("actor.")]
    assert critic and actor
    assert all(th.equal(masks[name], initial[name]) for name in critic)
    assert any(not th.equal(masks[name], initial[name]) for name in actor)
    for networks in ("actor", [], [1]):
        with pytest.raises(ValueError, match=r"networks must be one of \('default', 'all'\) or a sequence of network names"):
            DAPDCallback(networks=networks)  # type: ignore[arg-type]
    wrong = SAC("PathwayPolicy", "Pendulum-v1", learning_starts=100, seed=0, device="cpu")
    expected = r"networks must name networks of the policy, \[.actor., .critic.\]; got \[.actors.\]"
    with pytest.raises(ValueError, match=expected):
        wrong.learn(200, callback=DAPDCallback(networks=["actors"]))


@pytest.mark.parametrize("networks", ["default", "all"])
def test_dapd_rescores_the_algorithms_default_networks(networks: str) -> None:
    model = SAC("PathwayPolicy", "Pendulum-v1", learning_starts=100, seed=0, device="cpu")
    assert model.policy.mask_init == "erk"  # the mask a network keeps when DAPD does not rescore it
    initial = {name: mask.clone() for name, mask in sb3_pathways.get_masks(model).items()}
    model.learn(300, callback=DAPDCallback(networks=networks, max_warmup_fraction=None))
    masks = sb3_pathways.get_masks(model)
    critic_changed = [not th.equal(masks[name], initial[name]) for name in masks if name.startswith("critic.")]
    assert any(not th.equal(masks[name], initial[name]) for name in masks if name.startswith("actor."))
    # SAC's spec rescores the actor alone by default (measured in the DAPD guide); "all" is the reference's
    assert any(critic_changed) == (networks == "all")
    assert algorithm_spec(SAC).dapd_networks == ("actor",)  # type: ignore[union-attr]


def test_dapd_rescores_every_network_of_an_algorithm_without_a_default() -> None:
    model = DQN("PathwayPolicy", "CartPole-v1", learning_starts=100, seed=0, device="cpu")
    assert algorithm_spec(DQN).dapd_networks is None  # type: ignore[union-attr]
    initial = {name: mask.clone() for name, mask in sb3_pathways.get_masks(model).items()}
    model.learn(300, callback=DAPDCallback(max_warmup_fraction=None))
    masks = sb3_pathways.get_masks(model)
    assert any(not th.equal(masks[name], initial[name]) for name in masks if name.startswith("q_net."))


def test_register_objective_adds_an_algorithm() -> None:
    def value_objective(model, batch):
        values, _, _ = model.policy.evaluate_actions(batch.observations, batch.actions.long().flatten())
        return {"critic": F.mse_loss(batch.returns, values.flatten())}

    sb3_pathways.register_objective(PlainOnPolicy, value_objective)
    model = _plain_on_policy()
    critic_before = {n: m.clone() for n, m in sb3_pathways.get_masks(model).items() if "value" in n}
    actor_before = {n: m.clone() for n, m in sb3_pathways.get_masks(model).items() if "value" not in n}
    model.learn(64, callback=DAPDCallback())
    after = sb3_pathways.get_masks(model)
    assert any(not th.equal(after[n], m) for n, m in critic_before.items())
    assert all(th.equal(after[n], m) for n, m in actor_before.items())  # no loss for the actor: unchanged
    assert algorithm_spec(PlainOnPolicy).objective is value_objective  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="algorithm must be a BaseAlgorithm subclass"):
        sb3_pathways.register_objective(object, value_objective)  # type: ignore[arg-type]


def test_newest_transitions_across_envs_and_wrap_around() -> None:
    space = gym.spaces.Box(-np.inf, np.inf, (1,), dtype=np.float32)
    # 10 transitions = 5 time slots of 2 envs; 8 steps wrap around: the slots hold steps 5, 6, 7, 3, 4
    buffer = ReplayBuffer(10, space, gym.spaces.Box(-1, 1, (1,), dtype=np.float32), device="cpu", n_envs=2)
    for t in range(8):
        obs = np.array([[t * 10.0], [t * 10.0 + 1]], dtype=np.float32)
        buffer.add(
            obs, obs + 0.5, np.zeros((2, 1), dtype=np.float32), np.array([t, t], dtype=np.float32), np.zeros(2), [{}, {}]
        )
    rng = np.random.get_state()
    batch = newest_replay_transitions(buffer, 5)
    assert np.array_equal(np.random.get_state()[1], rng[1])
    assert sorted(batch.observations.flatten().tolist()) == [50.0, 60.0, 61.0, 70.0, 71.0]
    th.testing.assert_close(batch.next_observations, batch.observations + 0.5)
    th.testing.assert_close(batch.rewards.flatten(), (batch.observations.flatten() // 10))
    everything = newest_replay_transitions(buffer, 100)
    assert len(everything.observations) == 10


def test_defaults_average_five_scores_and_freeze_after_a_tenth_of_the_budget() -> None:
    callback = DAPDCallback()
    assert isinstance(callback.updater, DAPDUpdater)
    assert (callback.updater.moving_average, callback.updater.allocation, callback.updater.within_layer) == (
        5,
        "pooled",
        "top_k",
    )
    model = SAC("PathwayPolicy", "Pendulum-v1", learning_starts=50, batch_size=32, seed=0, device="cpu")
    model.learn(800, callback=callback)
    assert model.pathway_discovery.frozen_step == 50 + 75  # a tenth of the steps after learning_starts
    assert model.pathway_discovery.n_updates >= 1
    with pytest.raises(ValueError, match="max_warmup_fraction must be in"):
        DAPDCallback(max_warmup_fraction=1.5)


class _ThreeLivesGame(gym.Env):
    """A game of 3 lives of 20 steps each; ``info["lives"]`` as the ALE reports it."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._steps = 0
        return self.observation_space.sample(), {"lives": 3}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._steps += 1
        return self.observation_space.sample(), 1.0, self._steps >= 60, False, {"lives": 3 - self._steps // 20}


class _EndOfLifeIsEndOfEpisode(gym.Wrapper):
    """What ``AtariWrapper``'s ``EpisodicLifeEnv`` does: a lost life ends the agent's episode,
    the game goes on."""

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        if getattr(self, "_game_over", True):
            observation, info = self.env.reset(**kwargs)
        else:
            observation, _, _, _, info = self.env.step(0)
        self._lives = info["lives"]
        return observation, info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._game_over = terminated or truncated
        life_lost = info["lives"] < self._lives
        self._lives = info["lives"]
        return observation, reward, terminated or life_lost, truncated, info


def _dapd_updates_on_three_lives_games(monitored: bool) -> int:
    game = (lambda: Monitor(_ThreeLivesGame())) if monitored else _ThreeLivesGame
    env = DummyVecEnv([lambda: _EndOfLifeIsEndOfEpisode(game())])
    model = DQN(
        "PathwayPolicy",
        env,
        learning_starts=100,
        train_freq=4,
        seed=0,
        device="cpu",
        policy_kwargs=dict(net_arch=[16], sparsity=0.5),
    )
    model.learn(700, callback=DAPDCallback(max_warmup_fraction=None))
    return model.pathway_discovery.n_updates


def test_rescoring_follows_the_games_end_not_each_lost_life() -> None:
    # a game is 58 agent steps (the wrapper spends a no-op step after each lost life): games
    # end at steps 58, 116, ..., 696; the initial discovery at step 104, then one update for
    # each of the 11 games that end after it
    assert _dapd_updates_on_three_lives_games(monitored=True) == 1 + 11
    # no Monitor: every lost life (game offsets 20, 39, 58) rescores, 31 of them after step 104
    assert _dapd_updates_on_three_lives_games(monitored=False) == 1 + 31


def test_a_resumed_rule_continues_its_moving_average_from_the_zip(tmp_path) -> None:
    model = _small_sac(net_arch=[16, 16], sparsity=0.8)
    model.learn(400, callback=DAPDCallback(max_warmup_fraction=None, update_freq=100, moving_average=3, networks="all"))
    saved = model.pathway_discovery.rule_states["DAPDUpdater"]["score_history"]
    model.save(tmp_path / "run")
    loaded = SAC.load(tmp_path / "run", env=model.get_env(), device="cpu")
    callback = DAPDCallback(max_warmup_fraction=None, update_freq=100, moving_average=3, networks="all")
    callback.init_callback(loaded)
    updater = callback.updater
    assert isinstance(updater, DAPDUpdater) and set(updater.score_history) == set(saved) == {"actor", "critic"}
    for name, vectors in saved.items():
        assert len(updater.score_history[name]) == len(vectors) == 3
        assert all(th.equal(a, b) for a, b in zip(updater.score_history[name], vectors))
    # the next average is over the two newest saved vectors and the new one
    new = th.rand_like(saved["critic"][-1])
    th.testing.assert_close(updater.push_scores("critic", new), th.stack([*saved["critic"][-2:], new]).mean(dim=0))


def test_zips_saved_before_rules_kept_their_own_state_still_load() -> None:
    history = {"critic": [th.rand(5), th.rand(5)]}
    old_layout = dict(
        n_updates=3,
        initialised=True,
        frozen=False,
        frozen_step=None,
        threshold_step=None,
        last_update_step=300,
        score_history=history,
        mask_changes=[],
        task_frozen_steps={},
        task_names=[],
    )

    class SavedByAnOlderVersion:
        def __reduce__(self) -> Any:  # how an older DiscoveryState was pickled into a zip
            return object.__new__, (DiscoveryState,), old_layout

    state = pickle.loads(pickle.dumps(SavedByAnOlderVersion()))
    assert isinstance(state, DiscoveryState) and state.n_updates == 3 and not hasattr(state, "score_history")
    assert list(state.rule_states) == ["DAPDUpdater"] and list(state.rule_states["DAPDUpdater"]) == ["score_history"]
    migrated = state.rule_states["DAPDUpdater"]["score_history"]["critic"]
    assert [th.equal(a, b) for a, b in zip(migrated, history["critic"])] == [True, True]
    updater = DAPDUpdater(moving_average=5)
    updater.load_state_dict(state.rule_states["DAPDUpdater"])
    assert [th.equal(a, b) for a, b in zip(updater.score_history["critic"], history["critic"])] == [True, True]
    frozen = pickle.loads(pickle.dumps(SavedByAnOlderVersion()).replace(b"score_history", b"score_historX"))
    assert isinstance(frozen, DiscoveryState) and frozen.rule_states == {}  # a layout without it, e.g. a frozen run


def test_each_rule_owns_and_checks_its_state() -> None:
    updater = DAPDUpdater(moving_average=2)
    for _ in range(3):
        updater.push_scores("actor", normalise({"w": th.rand(4)}))
    state = updater.state_dict()
    assert list(state) == ["score_history"] and len(state["score_history"]["actor"]) == 2
    longer = DAPDUpdater(moving_average=1)
    longer.load_state_dict(state)
    assert len(longer.score_history["actor"]) == 1 and th.equal(
        longer.score_history["actor"][0], state["score_history"]["actor"][-1]
    )
    longer.load_state_dict({})
    assert longer.score_history == {}
    with pytest.raises(ValueError, match=r"DAPDUpdater state has keys \['scores'\]; accepted: \['score_history'\]"):
        longer.load_state_dict({"scores": {}})
    with pytest.raises(ValueError, match="RigLUpdater keeps no state"):
        RigLUpdater().load_state_dict({"score_history": {}})
    assert RigLUpdater().state_dict() == {}


def test_dapd_callback_passes_the_common_arguments_through() -> None:
    callback = DAPDCallback(update_freq=300, window=64, freeze_threshold=-200, optimizer_state="keep", verbose=1)
    assert (callback.update_freq, callback.window, callback.freeze_threshold) == (300, 64, -200)
    assert (callback.optimizer_state, callback.verbose, callback.end_fraction) == ("keep", 1, 0.1)
    with pytest.raises(TypeError, match=r"DAPDCallback takes no 'end_fraction'.*max_warmup_fraction"):
        DAPDCallback(end_fraction=0.5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'update_frequency'"):
        DAPDCallback(update_frequency=100)
    with pytest.raises(ValueError, match="update_freq"):
        DAPDCallback(update_freq="rollout")


def test_a_frozen_run_saves_no_score_history_and_prints_briefly(tmp_path) -> None:
    model = SAC("PathwayPolicy", "Pendulum-v1", learning_starts=100, seed=0, device="cpu")
    model.learn(700, callback=DAPDCallback(update_freq=100, max_warmup_steps=400))
    state = model.pathway_discovery
    assert state.frozen and state.rule_states == {}
    assert len(repr(state)) < 300 and "tensor" not in repr(state)
    model.save(tmp_path / "frozen")
    warming = SAC("PathwayPolicy", "Pendulum-v1", learning_starts=100, seed=0, device="cpu")
    warming.learn(300, callback=DAPDCallback(update_freq=100, max_warmup_fraction=None, networks="all"))
    saved_history = warming.pathway_discovery.rule_states["DAPDUpdater"]["score_history"]
    assert len(saved_history["critic"]) == 2  # kept to resume the moving average
    warming.save(tmp_path / "warming")
    with zipfile.ZipFile(tmp_path / "frozen.zip") as frozen, zipfile.ZipFile(tmp_path / "warming.zip") as warm:
        # a 2x256 SAC's history is 67k actor + 133k critic scores per update: the frozen zip is free of it
        assert frozen.getinfo("data").file_size < 200_000 < warm.getinfo("data").file_size


def test_the_update_rule_checks_its_own_arguments() -> None:
    with pytest.raises(ValueError, match="moving_average must be a positive int, got 0"):
        DAPDUpdater(moving_average=0)  # once meant "keep every score vector" (del history[:-0])
    with pytest.raises(ValueError, match="chunk_size must be a positive int, got -1"):
        DAPDUpdater(chunk_size=-1)
    with pytest.raises(ValueError, match=r"allocation must be one of \('global', 'pooled', 'random', 'erk'\)"):
        DAPDCallback(allocation="layer")


def test_reference_objective_sums_both_losses_at_a_fixed_entropy_weight() -> None:
    model, batch = _tiny_sac()
    with th.no_grad():
        model.log_ent_coef.fill_(math.log(REFERENCE_SCORING_ENTROPY_WEIGHT))
    th.manual_seed(5)
    ours = sac_objective(model, batch)
    th.manual_seed(5)
    reference = sac_reference_objective(model, batch)
    th.testing.assert_close(reference["actor"], ours["actor"])
    th.testing.assert_close(reference["critic"], 2 * ours["critic"] + ours["actor"])  # MSE1 + MSE2 + actor loss
    with th.no_grad():
        model.log_ent_coef.fill_(0.0)  # the learned weight does not reach the reference's scoring
    th.manual_seed(5)
    assert th.equal(sac_reference_objective(model, batch)["critic"], reference["critic"])
    th.manual_seed(5)
    assert not th.equal(sac_objective(model, batch)["critic"], ours["critic"])


@pytest.mark.parametrize(
    ("score_at", "dense_while_scoring"),
    [
        ("dense", {"actor": {"actor"}, "critic": {"critic"}}),
        ("agent", {"actor": {"actor", "critic", "critic_target"}, "critic": {"actor", "critic", "critic_target"}}),
        ("masked", {"actor": set(), "critic": set()}),
    ],
)
def test_scoring_point_decides_which_networks_run_dense(score_at: str, dense_while_scoring: dict[str, set[str]]) -> None:
    model = _small_sac(net_arch=[16, 16], sparsity=0.8)
    model.learn(120)
    batch = newest_transitions(model, 32)
    seen: list[set[str]] = []

    def spying_objective(model: SAC, batch: Any) -> dict[str, th.Tensor]:
        dense = {
            name.split(".")[0]
            for name, module in model.policy.named_modules()
            if isinstance(module, MaskedWeightMixin) and th.count_nonzero(module.weight[~module.active_mask]) > 0
        }
        seen.append(dense)
        return sac_objective(model, batch)

    scores = connection_sensitivity(model, batch, score_at=score_at, objective=spying_objective)
    assert seen == [dense_while_scoring[name] for name in scores]
    for name, module in model.policy.named_modules():
        if isinstance(module, MaskedWeightMixin):
            assert th.count_nonzero(module.weight[~module.active_mask]) == 0, name  # masked again afterwards


def test_window_samples_draws_with_replacement_from_the_window() -> None:
    draws: list[tuple[th.Tensor, th.Tensor]] = []

    class Recording(DAPDUpdater):
        def update_masks(self, context: UpdateContext) -> Masks:
            window = newest_transitions(context.model, 50)
            draws.append((context.batch.observations, window.observations))
            return super().update_masks(context)

    model = _small_sac(net_arch=[16, 16], sparsity=0.8)
    model.learn(450, callback=PathwayUpdateCallback(Recording(), window=50, window_samples=200))
    assert len(draws) == 3  # the initial discovery, then two episode ends
    for drawn, window in draws[1:]:
        assert len(drawn) == 200
        assert (drawn[:, None] == window[None]).all(dim=2).any(dim=1).all()  # every row from the window
        assert 40 < len(th.unique(drawn, dim=0)) < 200  # spread over the window, drawn with replacement


def test_discovery_from_the_first_batch_rescores_through_the_random_steps() -> None:
    seen: list[tuple[int, int, int]] = []

    class Spy(DAPDCallback):
        def _update(self, window: int, initial: bool = False) -> None:
            seen.append((self.num_timesteps, self.model._n_updates, window))
            super()._update(window, initial)

    model = SAC("PathwayPolicy", "Pendulum-v1", learning_starts=300, batch_size=32, seed=0, device="cpu")
    model.learn(320, callback=Spy(discover_from="first_batch"))
    assert seen == [(32, 0, 32), (200, 0, 200)]  # one batch stored; an episode end of random steps
    assert model.pathway_discovery.frozen_step == 302  # a tenth of the 20 training steps
