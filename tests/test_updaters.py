"""Every mask update rule keeps exact sparsity and changes masks when it should, only then."""

from __future__ import annotations

import itertools
import math

import pytest
import torch as th
from conftest import ALGO_CASES, AlgoCase, assert_every_output_unit_has_an_input
from stable_baselines3 import SAC

import sb3_pathways
from sb3_pathways import (
    DAPDCallback,
    GMPCallback,
    PathwayLoggerCallback,
    PathwayUpdateCallback,
    RigLCallback,
    SETCallback,
    SNIPCallback,
)
from sb3_pathways.masking.selection import keep_count
from sb3_pathways.schedules import SparsitySchedule
from sb3_pathways.updaters.base import Masks, UpdateContext
from sb3_pathways.updaters.evolution import SETUpdater, drop_and_grow

SAC_CASE = next(case for case in ALGO_CASES if case.id == "SAC")
PPO_CASE = next(case for case in ALGO_CASES if case.id == "PPO")


def _layer_counts(model) -> dict[str, int]:
    return {name: int(mask.sum()) for name, mask in sb3_pathways.get_masks(model).items()}


def _assert_exact_k(model, sparsity: float) -> None:
    for name, network in model.policy.pathways().items():
        assert sum(int(m.sum()) for m in network.masks().values()) == keep_count(network.n_prunable, 1 - sparsity), name


@pytest.mark.parametrize("case", [SAC_CASE, PPO_CASE], ids=lambda c: c.id)
def test_static_mask_never_changes(case: AlgoCase) -> None:
    model = case.make(sparsity=0.9, mask_init="erk")
    before = sb3_pathways.get_masks(model)
    model.learn(400, callback=PathwayLoggerCallback())
    assert all(th.equal(before[n], m) for n, m in sb3_pathways.get_masks(model).items())
    _assert_exact_k(model, 0.9)


@pytest.mark.parametrize("case", [SAC_CASE, PPO_CASE], ids=lambda c: c.id)
def test_snip_scores_once_then_freezes(case: AlgoCase) -> None:
    model = case.make(sparsity=0.9)
    initial = sb3_pathways.get_masks(model)
    snip = SNIPCallback()
    model.learn(200, callback=snip)
    state = model.pathway_discovery
    assert state.n_updates == 1 and state.frozen
    after_snip = sb3_pathways.get_masks(model)
    assert any(not th.equal(initial[n], m) for n, m in after_snip.items())
    model.learn(300, reset_num_timesteps=False, callback=SNIPCallback())
    assert model.pathway_discovery.n_updates == 1
    assert all(th.equal(after_snip[n], m) for n, m in sb3_pathways.get_masks(model).items())
    _assert_exact_k(model, 0.9)
    assert_every_output_unit_has_an_input(model)


@pytest.mark.parametrize("callback_class", [SETCallback, RigLCallback])
@pytest.mark.parametrize("case", [SAC_CASE, PPO_CASE], ids=lambda c: c.id)
def test_set_and_rigl_evolve_per_layer_until_the_end_step(case: AlgoCase, callback_class) -> None:
    model = case.make(sparsity=0.9, mask_init="erk")
    counts = _layer_counts(model)
    snapshots: list[tuple[int, dict[str, th.Tensor]]] = []

    class Snapshot(PathwayLoggerCallback):
        def _on_rollout_end(self) -> None:
            snapshots.append((self.model.pathway_discovery.n_updates, sb3_pathways.get_masks(self.model)))

    callback = callback_class(update_interval=100, drop_fraction=0.5, end_fraction=0.5)
    model.learn(800, callback=[callback, Snapshot()])
    state = model.pathway_discovery
    assert state.frozen and 400 <= state.frozen_step < 500  # end_fraction 0.5 of 800 steps
    assert 2 <= state.n_updates <= 4
    assert _layer_counts(model) == counts  # layer sparsity never changes
    _assert_exact_k(model, 0.9)
    assert_every_output_unit_has_an_input(model)
    changes = 0
    for (updates_before, before), (updates_after, after) in itertools.pairwise(snapshots):
        changed = any(not th.equal(before[n], after[n]) for n in counts)
        assert not changed or updates_after == updates_before + 1  # masks change at updates only
        changes += changed
    assert changes >= 2  # late updates may replace nothing: the drop fraction decays to 0
    assert snapshots[-1][0] == state.n_updates


def test_grown_connections_start_at_zero_and_dropped_are_smallest() -> None:
    model = SAC("PathwayPolicy", "Pendulum-v1", seed=0, device="cpu", policy_kwargs=dict(net_arch=[16, 16], sparsity=0.5))
    network = model.policy.pathways()["actor"]
    name, layer = list(network.layers.items())[1]  # the hidden 16x16 layer
    before = layer.weight_mask[0].clone()
    weights = layer.weight.detach().clone()
    masks = drop_and_grow(network, 0.5, grow_scores=None)
    n_swap = round(0.5 * int(before.sum()))
    dropped = before & ~masks[name]
    assert int(dropped.sum()) == n_swap and int((masks[name] & ~before).sum()) == n_swap
    strongest = th.zeros_like(before).scatter_(1, th.where(before, weights.abs(), -1.0).argmax(1, keepdim=True), True)
    assert not (dropped & strongest).any()  # every output unit keeps its strongest input
    assert weights[dropped].abs().max() <= weights[before & masks[name] & ~strongest].abs().min()
    network.set_masks(masks, grown_value=0.0)
    grown = masks[name] & ~before
    assert th.count_nonzero(layer.weight[grown]) == 0
    assert th.count_nonzero(layer.weight[masks[name] & before]) == int((masks[name] & before).sum())


def test_drop_and_grow_never_leaves_an_output_unit_without_an_input() -> None:
    model = SAC("PathwayPolicy", "Pendulum-v1", seed=0, device="cpu", policy_kwargs=dict(net_arch=[16, 16], sparsity=0.8))
    network = model.policy.pathways()["actor"]
    everywhere = {name: th.ones_like(layer.weight) for name, layer in network.layers.items()}
    masks = drop_and_grow(network, 1.0, grow_scores=everywhere)
    for name, mask in masks.items():
        assert int(mask.sum()) == int(network.layers[name].weight_mask.sum())
        assert bool(mask.any(dim=1).all()), name


def test_rigl_grows_where_the_gradient_is_largest() -> None:
    model = SAC("PathwayPolicy", "Pendulum-v1", seed=0, device="cpu", policy_kwargs=dict(net_arch=[16, 16], sparsity=0.5))
    network = model.policy.pathways()["critic"]
    gradient = {name: th.rand(layer.weight.shape) for name, layer in network.layers.items()}
    masks = drop_and_grow(network, 0.2, grow_scores=gradient)
    for name, layer in network.layers.items():
        if name not in masks:
            continue
        before = layer.weight_mask[0]
        grown = masks[name] & ~before
        not_grown = ~before & ~masks[name]
        if grown.any() and not_grown.any():
            assert gradient[name][grown].min() >= gradient[name][not_grown].max()


def test_cosine_drop_fraction() -> None:
    schedule = SparsitySchedule(drop_fraction=0.5, end_fraction=1.0)
    schedule.begin(learning_starts=0, total_steps=1000)
    assert schedule.drop_fraction_at(0) == pytest.approx(0.5)
    assert schedule.drop_fraction_at(500) == pytest.approx(0.25)
    assert schedule.drop_fraction_at(1000) == 0.0
    schedule = SparsitySchedule(drop_fraction=0.3, end_fraction=1.0)
    schedule.begin(learning_starts=0, total_steps=1000)
    assert schedule.drop_fraction_at(250) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert SparsitySchedule(drop_fraction=0.3).drop_fraction_at(10**6) == 0.3  # no end: no decay


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: SETCallback(drop_fraction=0.0), r"drop_fraction must be in \(0, 1\]"),
        (lambda: RigLCallback(end_fraction=1.5), r"end_fraction must be in \(0, 1\] or None"),
        (lambda: SETCallback(update_interval=0), r"update_freq must be 'episode' or a positive int"),
        (lambda: SNIPCallback(score_at="sparse"), r"score_at must be one of"),
        (lambda: DAPDCallback(freeze_threshold="high"), r"freeze_threshold must be a number or None"),
    ],
)
def test_bad_updater_arguments(factory, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


@pytest.mark.parametrize(
    "make_callback",
    [
        lambda: SNIPCallback(),
        lambda: SETCallback(update_interval=100, drop_fraction=1.0, end_fraction=1.0),
        lambda: RigLCallback(update_interval=100, drop_fraction=1.0, end_fraction=1.0),
    ],
    ids=["snip", "set", "rigl"],
)
def test_every_rule_leaves_every_output_unit_an_input(case: AlgoCase, make_callback) -> None:
    case.skip_if_offline()
    model = case.make(sparsity=0.95, mask_init="erk")
    model.learn(400, callback=make_callback())
    assert model.pathway_discovery.n_updates >= 1
    assert_every_output_unit_has_an_input(model)
    _assert_exact_k(model, 0.95)


def test_schedule_sparsity_ramp_is_zhu_and_gupta_cubic() -> None:
    schedule = SparsitySchedule(update_freq=100, start_fraction=0.2, end_fraction=0.8, initial_sparsity=0.0)
    schedule.begin(learning_starts=100, total_steps=1100)
    assert (schedule.start_step, schedule.end_step) == (300, 900)
    assert schedule.sparsity_at(200, 0.9) == 0.0  # before pruning starts
    assert schedule.sparsity_at(600, 0.9) == pytest.approx(0.9 - 0.9 * 0.5**3)
    assert schedule.sparsity_at(900, 0.9) == schedule.sparsity_at(5000, 0.9) == pytest.approx(0.9)
    assert SparsitySchedule().sparsity_at(600, 0.9) == 0.9  # no initial sparsity: constant
    assert schedule.keep_at(700, 1000, 0.1) == 133  # 100 + 900 * (1/3)^3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(start_fraction=1.0), r"start_fraction must be a float in \[0, 1\)"),
        (dict(start_fraction=0.5, end_fraction=0.4), r"end_fraction \(0.4\) must not be below start_fraction \(0.5\)"),
        (dict(drop_decay="linear"), r"drop_decay must be one of \('cosine', 'constant'\)"),
        (dict(initial_sparsity=1.0), r"initial_sparsity must be a float in \[0, 1\) or None"),
        (dict(sparsity_power=0), r"sparsity_power must be positive"),
        (dict(max_steps=0), r"max_steps must be a positive int or None"),
    ],
)
def test_schedule_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SparsitySchedule(**kwargs)
    with pytest.raises(ValueError, match="give either schedule or update_freq"):
        PathwayUpdateCallback(SETUpdater(), update_freq=10, schedule=SparsitySchedule())


def test_gmp_prunes_from_dense_to_the_policy_sparsity_and_never_regrows(case: AlgoCase) -> None:
    case.skip_if_offline()
    seen: list[tuple[int, dict[str, th.Tensor]]] = []

    class Recording(GMPCallback):
        def _install(self, context: UpdateContext, masks: Masks) -> None:
            super()._install(context, masks)
            seen.append((self.num_timesteps, {name: m.clone() for name, m in sb3_pathways.get_masks(self.model).items()}))

    model = case.make(sparsity=0.9)
    callback = Recording(update_interval=100, start_fraction=0.2, end_fraction=0.8)
    model.learn(1100, callback=callback)
    schedule = callback.schedule
    networks = model.policy.pathways()
    actives = [sum(int(m.sum()) for m in masks.values()) for _, masks in seen]
    total = sum(network.n_prunable for network in networks.values())
    assert actives[0] == total  # dense at the start
    assert actives == sorted(actives, reverse=True)  # only ever pruned
    for (_, before), (_, after) in itertools.pairwise(seen):
        assert all(not (after[name] & ~before[name]).any() for name in after), "a pruned weight came back"
    for step, masks in seen[1:-1]:
        expected = sum(schedule.keep_at(step, n.n_prunable, n.keep_ratio) for n in networks.values())
        assert sum(int(m.sum()) for m in masks.values()) == expected
    assert seen[-1][0] >= schedule.end_step and model.pathway_discovery.frozen
    for network in networks.values():  # exactly k at the end, dormant weights zero
        assert sum(int(layer.weight_mask.sum()) for layer in network.layers.values()) == network.n_keep
        for layer in network.layers.values():
            assert th.count_nonzero(layer.weight[~layer.active_mask]) == 0
