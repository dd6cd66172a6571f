"""sparsify(): stock models become pathway models; stock checkpoints load into pathway policies."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from conftest import AlgoCase, assert_every_output_unit_has_an_input, observations
from stable_baselines3 import SAC
from stable_baselines3.sac.policies import SACPolicy

import sb3_pathways
from sb3_pathways.masking.selection import keep_count


def test_sparsify_trained_stock_model_by_magnitude(case: AlgoCase, tmp_path) -> None:
    model = case.make(case.stock_policy)
    model.learn(200)
    dense = {name: p.detach().clone() for name, p in model.policy.named_parameters()}
    sb3_pathways.sparsify(model, sparsity=0.9)
    assert type(model.policy) is model.policy_class
    masks = sb3_pathways.get_masks(model)
    for network_name, network in model.policy.pathways().items():
        names = list(network.layers)
        keep = 1.0 if network_name in model.policy.dense_by_default else 0.1  # BCQ's VAE stays dense
        assert sum(int(masks[n].sum()) for n in names) == keep_count(network.n_prunable, keep)
        # the kept weights are the largest in magnitude across the layers of each selection
        # group (the whole network, or each Q-network of a critic ensemble)
        # (after the strongest input of every output unit, kept whatever its magnitude)
        for group, budget in zip(network.selection_groups(), network.group_budgets()):
            strongest = {n: _strongest_inputs(dense[n]) for n in group}
            kept = th.cat([dense[n][masks[n] & ~strongest[n]].abs() for n in group])
            pruned = th.cat([dense[n][~masks[n]].abs() for n in group])
            assert all(bool(masks[n][strongest[n]].all()) for n in group)
            assert sum(int(masks[n].sum()) for n in group) == budget
            if pruned.numel():  # a network dense by default prunes nothing
                assert kept.min() >= pruned.max()
        for n in names:
            weight = model.policy.get_parameter(n)
            assert th.equal(weight[masks[n]], dense[n][masks[n]])
            assert th.count_nonzero(weight[~masks[n]]) == 0
    # aliases held by the algorithm (model.actor, model.q_net, ...) still point to the policy's networks
    for alias in ("actor", "critic", "q_net", "quantile_net"):
        if hasattr(model, alias):
            assert getattr(model, alias) is getattr(model.policy, alias)
    model.learn(200, reset_num_timesteps=False)
    model.save(tmp_path / "sparse")
    loaded = case.algo.load(tmp_path / "sparse", env=model.get_env(), device="cpu", **case.load_kwargs)
    assert type(loaded.policy) is type(model.policy)
    assert all(th.equal(sb3_pathways.get_masks(loaded)[n], m) for n, m in sb3_pathways.get_masks(model).items())
    obs = observations(model)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    # the policy alone too (its constructor parameters include the pathway policy's own)
    model.policy.save(tmp_path / "policy.pth")
    policy = type(model.policy).load(tmp_path / "policy.pth", device="cpu")
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], policy.predict(obs, deterministic=True)[0])


def _strongest_inputs(weight: th.Tensor) -> th.Tensor:
    rows = weight.abs().reshape(weight.shape[0], -1)
    return th.zeros_like(rows, dtype=th.bool).scatter_(1, rows.argmax(1, keepdim=True), True).view(weight.shape)


@pytest.mark.parametrize("method", ["magnitude", "random"])
def test_sparsify_fresh_model_keeps_every_output_unit_connected(case: AlgoCase, method: str) -> None:
    # SB3 initialises output layers with a small gain: a plain global top-k of magnitudes
    # emptied PPO's action_net (0 of 128 active at 90%)
    model = case.make(case.stock_policy, net_arch=[64, 64])
    sb3_pathways.sparsify(model, sparsity=0.95, method=method)
    assert_every_output_unit_has_an_input(model)


@pytest.mark.parametrize("mask_init", ["random", "erk"])
def test_initial_masks_keep_every_output_unit_connected(case: AlgoCase, mask_init: str) -> None:
    model = case.make(sparsity=0.95, mask_init=mask_init, net_arch=[64, 64])
    assert_every_output_unit_has_an_input(model)


def test_sparsity_too_high_for_the_output_units_is_refused_before_any_change() -> None:
    model = SAC("MlpPolicy", "Pendulum-v1", device="cpu", seed=0, policy_kwargs=dict(net_arch=[16, 16]))
    with pytest.raises(ValueError, match=r"network 'actor' keeps 17 of 336 weights, fewer than its 34 output units"):
        sb3_pathways.sparsify(model, sparsity=0.95)
    assert type(model.policy) is SACPolicy
    assert not any(isinstance(m, sb3_pathways.masking.layers.MaskedWeightMixin) for m in model.policy.modules())


def test_sparsify_random_and_per_network() -> None:
    model = SAC("MlpPolicy", "Pendulum-v1", device="cpu", seed=0)
    sb3_pathways.sparsify(model, sparsity={"actor": 0.5, "critic": 0.99}, method="random")
    stats = sb3_pathways.pathway_stats(model)
    assert stats["actor"].active == keep_count(stats["actor"].total, 0.5)
    assert stats["critic"].active == keep_count(stats["critic"].total, 0.01)
    assert model.policy_kwargs["sparsity"] == {"actor": 0.5, "critic": 0.99}


def test_stock_checkpoint_weights_load_into_pathway_policy(tmp_path) -> None:
    stock = SAC("MlpPolicy", "Pendulum-v1", device="cpu", seed=0)
    stock.learn(300)
    stock.save(tmp_path / "stock")
    model = SAC("PathwayPolicy", "Pendulum-v1", device="cpu", seed=1)
    masks = sb3_pathways.get_masks(model)
    model.set_parameters(str(tmp_path / "stock"))
    assert all(th.equal(sb3_pathways.get_masks(model)[n], m) for n, m in masks.items())
    for name, mask in masks.items():
        stock_weight = stock.policy.get_parameter(name)
        assert th.equal(model.policy.get_parameter(name), stock_weight * mask)
        assert th.equal(model.policy.masked_layer(name).full_weight(), stock_weight)


def test_sparsify_rejects_bad_input() -> None:
    model = SAC("MlpPolicy", "Pendulum-v1", device="cpu")
    with pytest.raises(ValueError, match="method must be one of"):
        sb3_pathways.sparsify(model, method="snip")
    with pytest.raises(ValueError, match=r"sparsity must be a float in \[0, 1\)"):
        sb3_pathways.sparsify(model, sparsity=1.0)
    with pytest.raises(ValueError, match="unknown networks"):
        sb3_pathways.sparsify(model, sparsity={"qf": 0.9})
    assert type(model.policy) is SACPolicy  # a rejected call leaves the model as it was

    class CustomPolicy(SACPolicy):
        pass

    custom = SAC(CustomPolicy, "Pendulum-v1", device="cpu")
    with pytest.raises(TypeError, match="CustomPolicy is not supported; accepted"):
        sb3_pathways.sparsify(custom)
    sparse = SAC("PathwayPolicy", "Pendulum-v1", device="cpu")
    with pytest.raises(TypeError, match="already has a pathway policy"):
        sb3_pathways.sparsify(sparse)
