"""Invariants of pathway policies, for every supported algorithm."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch as th
from conftest import ALGO_CASES, AlgoCase, network_outputs, observations
from stable_baselines3 import SAC

import sb3_pathways
from sb3_pathways.masking.layers import MaskedWeightMixin
from sb3_pathways.masking.optimizer_state import START_STEP_KEY
from sb3_pathways.masking.selection import keep_count
from sb3_pathways.policies import PathwayPolicyMixin
from sb3_pathways.registry import algorithm_spec


def test_string_alias_and_class_give_the_same_policy(case: AlgoCase) -> None:
    by_name = case.make("PathwayPolicy")
    spec = algorithm_spec(case.algo)
    assert spec is not None and spec.algorithm is case.algo  # each algorithm has its own spec
    policy_class = spec.policies["PathwayPolicy"]
    assert policy_class.__module__ == f"sb3_pathways.{policy_class.__module__.rsplit('.', 1)[-1]}"  # one module each
    by_class = case.make(policy_class)
    assert type(by_name.policy) is policy_class is type(by_class.policy)
    assert isinstance(by_name.policy, PathwayPolicyMixin)
    for alias, stock in zip(("PathwayCnnPolicy", "PathwayMultiInputPolicy"), case.stock_aliases[1:]):
        assert (alias in case.algo.policy_aliases) == (stock in case.algo.policy_aliases)


def test_exactly_k_active_weights_per_network(case: AlgoCase) -> None:
    model = case.make(sparsity=0.95, net_arch=[64, 64])
    pathways = model.policy.pathways()
    assert tuple(pathways) == case.networks
    dense_by_default = model.policy.dense_by_default  # BCQ's VAE
    for name, network in pathways.items():
        masks = list(network.masks().values())
        assert all(mask.dtype == th.bool for mask in masks)
        active = sum(int(mask.sum()) for mask in masks)
        keep = 1.0 if name in dense_by_default else 0.05
        assert active == keep_count(network.n_prunable, keep) == network.n_keep
        assert all(mask.shape[0] == 1 for mask in masks)  # leading pathway dimension
    stats = sb3_pathways.pathway_stats(model)
    for name, network in stats.items():
        assert network.sparsity == pytest.approx(0.0 if name in dense_by_default else 0.95, abs=1e-3)
        assert network.active == sum(layer.active for layer in network.layers.values())
    masks = sb3_pathways.get_masks(model)
    for name, mask in masks.items():
        assert mask.shape == model.policy.get_parameter(name).shape


def test_sparsity_per_network_and_erk(case: AlgoCase) -> None:
    sparsity = {name: 0.5 + 0.2 * i for i, name in enumerate(case.networks)}
    model = case.make(sparsity=sparsity, mask_init="erk")
    for name, network in sb3_pathways.pathway_stats(model).items():
        assert network.active == keep_count(network.total, 1.0 - sparsity[name])
    assert model.policy.mask_init == "erk"


def test_masked_network_equals_dense_copy_with_pruned_weights_at_zero(case: AlgoCase) -> None:
    model = case.make(sparsity=0.9)
    dense = case.make(case.stock_policy)
    pruned = {}
    for name, value in model.policy.state_dict().items():
        if name.endswith(("weight_mask", "weight_stored")):
            continue
        pruned[name] = value
    for name, mask in sb3_pathways.get_masks(model).items():
        pruned[name] = model.policy.masked_layer(name).full_weight() * mask
    dense.policy.load_state_dict(pruned)
    obs = observations(model)
    for masked_out, dense_out in zip(network_outputs(model.policy, obs), network_outputs(dense.policy, obs)):
        th.testing.assert_close(masked_out, dense_out, rtol=0, atol=1e-6)
    # and the mask matters: the unpruned weights compute something else
    full = {name: model.policy.masked_layer(name).full_weight() for name in sb3_pathways.get_masks(model)}
    dense.policy.load_state_dict({**pruned, **full})
    differs = [not th.allclose(a, b) for a, b in zip(network_outputs(model.policy, obs), network_outputs(dense.policy, obs))]
    assert any(differs)


def test_dormant_weights_get_zero_gradient_and_do_not_drift(case: AlgoCase) -> None:
    model = case.make(sparsity=0.9)
    masks = sb3_pathways.get_masks(model)
    stored_before = {name: model.policy.masked_layer(name).full_weight().clone() for name in masks}
    model.learn(300)
    for name, mask in masks.items():
        weight = model.policy.get_parameter(name)
        assert th.equal(sb3_pathways.get_masks(model)[name], mask)
        assert th.count_nonzero(weight[~mask]) == 0, name
        if weight.grad is not None:
            assert th.count_nonzero(weight.grad[~mask]) == 0, name
        full = model.policy.masked_layer(name).full_weight()
        assert th.equal(full[~mask], stored_before[name][~mask]), name
    assert any(
        not th.equal(model.policy.get_parameter(name)[mask], stored_before[name][mask]) for name, mask in masks.items()
    ), "active weights should train"


def test_optimizer_moments_reset_when_weight_leaves_the_pathway(case: AlgoCase) -> None:
    model = case.make(sparsity=0.5)
    model.learn(300)
    # the first layer an optimizer holds (TRPO's actor is written by its line search instead)
    # with dormant weights (ERK keeps small layers dense)
    network, name, layer = next(
        (network, name, layer)
        for network in model.policy.pathways().values()
        for name, layer in network.layers.items()
        if any(layer.weight in optimizer.state for optimizer in network.optimizers) and not bool(layer.weight_mask.all())
    )
    leaving = layer.weight_mask[0].clone()
    # drop half of the layer's active weights, bring the same number back
    active_idx = leaving.flatten().nonzero().flatten()
    dormant_idx = (~leaving).flatten().nonzero().flatten()
    n_swap = min(len(active_idx), len(dormant_idx)) // 2
    new_mask = leaving.clone().flatten()
    new_mask[active_idx[:n_swap]] = False
    new_mask[dormant_idx[:n_swap]] = True
    new_mask = new_mask.view_as(leaving)
    optimizer = next(opt for opt in network.optimizers if layer.weight in opt.state)
    assert any(th.count_nonzero(v[leaving & ~new_mask]) > 0 for v in optimizer.state[layer.weight].values() if v.dim() > 0)
    network.set_masks({name: new_mask})
    state = optimizer.state[layer.weight]
    for key, value in state.items():
        if value.dim() > 0 and key != START_STEP_KEY:
            assert th.count_nonzero(value[leaving ^ new_mask]) == 0
    if START_STEP_KEY in state:  # Adam: the joining weights count their steps from here
        assert th.all(state[START_STEP_KEY][new_mask & ~leaving] == float(state["step"]))
        assert th.count_nonzero(state[START_STEP_KEY][leaving & ~new_mask]) == 0
    model.learn(200, reset_num_timesteps=False)
    assert th.count_nonzero(layer.weight[~new_mask]) == 0
    assert int(layer.weight_mask.sum()) == int(leaving.sum())


def test_target_networks_use_online_masks(case: AlgoCase) -> None:
    model = case.make(sparsity=0.8)
    policy = model.policy
    assert type(policy).pathway_targets == case.targets
    targets_before = {t: copy.deepcopy(policy.get_submodule(t).state_dict()) for t in case.targets}
    for network in policy.pathways().values():  # a fresh mask, as an updater would install
        network.set_masks({name: th.rand(mask.shape) < 0.3 for name, mask in network.masks().items()})
    model.learn(400)
    for target_path, online_path in case.targets.items():
        online, target = policy.get_submodule(online_path), policy.get_submodule(target_path)
        pairs = [(n, m) for n, m in target.named_modules() if isinstance(m, MaskedWeightMixin)]
        assert pairs
        for sub_name, target_layer in pairs:
            online_layer = online.get_submodule(sub_name)
            assert th.equal(target_layer.weight_mask, online_layer.weight_mask)
            assert th.count_nonzero(target_layer.weight[~online_layer.active_mask]) == 0
        moved = [
            not th.equal(value, targets_before[target_path][key])
            for key, value in target.state_dict().items()
            if key.endswith(".weight")
        ]
        assert any(moved), "polyak / hard target updates must keep working"


def test_save_load_keeps_masks_and_actions(case: AlgoCase, tmp_path) -> None:
    model = case.make(sparsity=0.9, mask_init="erk")
    model.learn(200)
    model.save(tmp_path / "model")
    loaded = case.algo.load(tmp_path / "model", env=model.get_env(), device="cpu", **case.load_kwargs)
    assert type(loaded.policy) is type(model.policy)
    assert loaded.policy.sparsity == 0.9 and loaded.policy.mask_init == "erk"
    masks, loaded_masks = sb3_pathways.get_masks(model), sb3_pathways.get_masks(loaded)
    assert masks.keys() == loaded_masks.keys()
    assert all(th.equal(masks[name], loaded_masks[name]) for name in masks)
    obs = observations(model)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    for name in masks:
        th.testing.assert_close(model.policy.masked_layer(name).full_weight(), loaded.policy.masked_layer(name).full_weight())
    # the loaded model keeps training masked
    loaded.learn(200)
    for name, mask in loaded_masks.items():
        assert th.count_nonzero(loaded.policy.get_parameter(name)[~mask]) == 0

    # set_parameters on a second model copies the masks too
    other = case.make(sparsity=0.9, seed=1)
    other.set_parameters(str(tmp_path / "model"))
    assert all(th.equal(sb3_pathways.get_masks(other)[name], masks[name]) for name in masks)

    # policy.save / Policy.load
    model.policy.save(tmp_path / "policy.pth")
    policy = type(model.policy).load(tmp_path / "policy.pth", device="cpu")
    assert all(th.equal(sb3_pathways.get_masks(policy)[name], masks[name]) for name in masks)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], policy.predict(obs, deterministic=True)[0])


def test_deepcopy_keeps_masks_and_gradient_masking(case: AlgoCase) -> None:
    model = case.make(sparsity=0.9)
    clone = copy.deepcopy(model)
    masks = sb3_pathways.get_masks(model)
    assert all(th.equal(sb3_pathways.get_masks(clone)[name], mask) for name, mask in masks.items())
    clone.learn(300)
    for name, mask in masks.items():
        weight = clone.policy.get_parameter(name)
        assert weight is not model.policy.get_parameter(name)
        assert th.count_nonzero(weight[~mask]) == 0
        if weight.grad is not None:
            assert th.count_nonzero(weight.grad[~mask]) == 0


def test_xavier_weight_init_of_every_network_with_targets_as_copies(case: AlgoCase, tmp_path) -> None:
    model = case.make(sparsity=0.5, mask_init="random", weight_init="xavier_normal")
    for network in model.policy.pathways().values():
        for layer_name, layer in network.layers.items():
            if not isinstance(layer, th.nn.Linear):
                continue
            active = layer.weight[layer.weight_mask[0]]
            if active.numel() < 1_000:
                continue
            fan_out, fan_in = layer.weight.shape
            # the random mask picks positions regardless of value: the active weights are a sample of the init
            assert float(active.std()) == pytest.approx((2.0 / (fan_in + fan_out)) ** 0.5, rel=0.1), layer_name
    for target, online in case.targets.items():
        online_state = model.policy.get_submodule(online).state_dict()
        for key, value in model.policy.get_submodule(target).state_dict().items():
            assert th.equal(value, online_state[key]), f"{target}.{key}"
    model.policy.save(tmp_path / "policy.pth")
    assert type(model.policy).load(tmp_path / "policy.pth", device="cpu").weight_init == "xavier_normal"
    with pytest.raises(ValueError, match=r"weight_init must be one of \('default', 'xavier_normal'\), got 'xavier'"):
        case.make(weight_init="xavier")


@pytest.mark.parametrize("algo_id", ["SAC", "TQC", "CrossQ"])
def test_log_std_bounds_squash_the_actor_log_std_by_tanh(algo_id: str, tmp_path) -> None:
    case = next(case for case in ALGO_CASES if case.id == algo_id)
    model = case.make(log_std_bounds=(-10, 2))
    actor = model.policy.actor
    actor.log_std[0].bias.data.fill_(50.0)  # a raw log-std far above the bounds: tanh squashes it to high
    obs = th.as_tensor(observations(model))
    _, log_std, _ = actor.get_action_dist_params(obs)
    th.testing.assert_close(log_std, th.full_like(log_std, 2.0))
    actor.log_std[0].bias.data.fill_(0.0)
    raw = actor.log_std[0](actor.latent_pi(actor.extract_features(obs, actor.features_extractor)))
    _, log_std, _ = actor.get_action_dist_params(obs)
    th.testing.assert_close(log_std, -10.0 + 6.0 * (th.tanh(raw) + 1.0))
    model.learn(100)
    model.save(tmp_path / "model")
    loaded = case.algo.load(tmp_path / "model", device="cpu")
    assert loaded.policy.log_std_bounds == (-10.0, 2.0)
    for policy in (model.policy, loaded.policy):
        policy.set_training_mode(False)  # CrossQ's batch renormalisation: its running statistics
    th.testing.assert_close(loaded.policy.actor.get_action_dist_params(obs)[1], actor.get_action_dist_params(obs)[1])


def test_log_std_bounds_refuse_bad_values_and_actors_without_a_log_std_layer() -> None:
    sac = next(case for case in ALGO_CASES if case.id == "SAC")
    for bad in [(2, -10), (1.0,), "ab", (float("nan"), 2), (True, 2)]:
        with pytest.raises(ValueError, match=r"log_std_bounds must be None or two finite numbers \(low, high\)"):
            sac.make(log_std_bounds=bad)
    td3 = next(case for case in ALGO_CASES if case.id == "TD3")
    with pytest.raises(ValueError, match=r"needs an actor with a log-std layer .*td3\.PathwayPolicy's actor has none"):
        td3.make(log_std_bounds=(-10, 2))
    with pytest.raises(ValueError, match="log_std_bounds needs an actor with a log-std layer"):
        SAC("PathwayPolicy", "Pendulum-v1", use_sde=True, policy_kwargs=dict(log_std_bounds=(-10, 2)))
