"""Multi-task pathways: routing, independent warm-up, merge with gradient averaging, per-task
DAPD and freeze, save/load and per-task export, on a hand-made two-task environment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from torch.nn import functional as F

import sb3_pathways
from sb3_pathways import export_pathway, get_masks
from sb3_pathways.masking.layers import (
    MultiTaskMaskedLinear,
    TaskGroupedLinear,
    TaskPathwayLayout,
    TaskRouter,
    convert_to_masked,
)
from sb3_pathways.multitask import MultiTaskDAPDCallback, task_active_weights, task_overlap


class TwoTaskEnv(gym.Env):
    """Three random features and a one-hot task id; task 0 wants action -0.5, task 1 +0.5."""

    def __init__(self, task: int, discrete: bool = False) -> None:
        self.task_id, self.task_name = task, ["left", "right"][task]
        self.observation_space = gym.spaces.Box(-1, 1, (5,), np.float32)
        self.action_space = gym.spaces.Discrete(2) if discrete else gym.spaces.Box(-1, 1, (1,), np.float32)
        self._steps = 0

    def _observation(self) -> np.ndarray:
        observation = np.zeros(5, np.float32)
        observation[:3] = self.np_random.uniform(-1, 1, 3)
        observation[3 + self.task_id] = 1
        return observation

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._steps = 0
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._steps += 1
        value = float(np.asarray(action).reshape(-1)[0])
        error = abs(value - (0.5 if self.task_id else -0.5))
        return self._observation(), -error, False, self._steps >= 20, {"is_success": float(error < 0.25)}


def two_task_env(discrete: bool = False) -> DummyVecEnv:
    return DummyVecEnv(
        [lambda task=task: Monitor(TwoTaskEnv(task, discrete), info_keywords=("is_success",)) for task in (0, 1)]
    )


def two_task_sac(**kwargs: Any) -> SAC:
    policy_kwargs = {"n_tasks": 2, "sparsity": 0.7, "net_arch": [16, 16], **kwargs.pop("policy_kwargs", {})}
    return SAC(
        "PathwayPolicy",
        two_task_env(),
        learning_starts=40,
        batch_size=32,
        seed=0,
        device="cpu",
        policy_kwargs=policy_kwargs,
        **kwargs,
    )


def task_observations(task: int, n: int = 8) -> np.ndarray:
    observations = np.zeros((n, 5), np.float32)
    observations[:, :3] = np.random.default_rng(task).uniform(-1, 1, (n, 3))
    observations[:, 3 + task] = 1
    return observations


@pytest.fixture
def two_task_layer() -> tuple[MultiTaskMaskedLinear, TaskRouter]:
    layer = th.nn.Sequential(th.nn.Linear(3, 4))
    (masked,) = convert_to_masked(layer, n_pathways=2)
    assert isinstance(masked, MultiTaskMaskedLinear)
    router = TaskRouter(2)
    masked.task_router = router
    masks = th.tensor(
        [
            [[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 1]],  # task 0
            [[0, 0, 1], [1, 0, 0], [0, 1, 1], [1, 0, 0]],  # task 1: overlaps task 0 at (1, 0) and (3, 0)
        ],
        dtype=th.bool,
    )
    masked.set_mask(masks)
    return masked, router


def test_routing_applies_each_samples_task_mask(two_task_layer: tuple[MultiTaskMaskedLinear, TaskRouter]) -> None:
    layer, router = two_task_layer
    inputs = th.randn(6, 3)
    tasks = th.tensor([0, 1, 1, 0, 1, 0])
    router.set_tasks(tasks)
    outputs = layer(inputs)
    for sample, task in enumerate(tasks.tolist()):
        weight = layer.task_weight[task] * layer.weight_mask[task]
        assert th.allclose(outputs[sample], F.linear(inputs[sample], weight, layer.bias), atol=1e-6)
    with pytest.raises(RuntimeError, match="no task ids for a batch of 2 samples"):
        layer(inputs[:2])


@pytest.mark.parametrize("shared", [False, True], ids=["task-copies", "shared-weight"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_grouped_product_matches_each_samples_own_product(shared: bool, with_bias: bool) -> None:
    generator = th.Generator().manual_seed(0)
    n_tasks, tasks = 4, th.tensor([2, 0, 2, 3, 0, 0, 3])  # task 1 absent from the batch
    router = TaskRouter(n_tasks)
    router.set_tasks(tasks)
    inputs = th.randn(7, 5, generator=generator, dtype=th.float64, requires_grad=True)
    masks = (th.rand(n_tasks, 3, 5, generator=generator) < 0.5).double()
    weight_shape = (3, 5) if shared else (n_tasks, 3, 5)
    weight = th.randn(weight_shape, generator=generator, dtype=th.float64, requires_grad=True)
    bias = th.randn(3, generator=generator, dtype=th.float64, requires_grad=True) if with_bias else None
    task_masks = masks if shared else None

    outputs = TaskGroupedLinear.apply(inputs, weight, bias, task_masks, router)
    for sample, task in enumerate(tasks.tolist()):
        task_weight = weight * masks[task] if shared else weight[task]
        assert th.allclose(outputs[sample], F.linear(inputs[sample], task_weight, bias))
    arguments = (inputs, weight) if bias is None else (inputs, weight, bias)
    assert th.autograd.gradcheck(lambda x, w, b=None: TaskGroupedLinear.apply(x, w, b, task_masks, router), arguments)
    outputs.sum().backward()
    assert weight.grad is not None
    if not shared:
        assert th.all(weight.grad[1] == 0), "a task absent from the batch gets a zero gradient"


@pytest.mark.parametrize("shared", [False, True], ids=["task-copies", "shared-weight"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_sparse_products_match_the_dense_route_on_every_active_weight(shared: bool, with_bias: bool) -> None:
    generator = th.Generator().manual_seed(1)
    n_tasks, tasks = 4, th.tensor([2, 0, 2, 3, 0, 0, 3, 2])  # task 1 absent from the batch
    router = TaskRouter(n_tasks)
    router.set_tasks(tasks)
    inputs = th.randn(8, 30, generator=generator, dtype=th.float64, requires_grad=True)
    bool_masks = th.rand(n_tasks, 20, 30, generator=generator) < 0.1
    masks = bool_masks.double()
    weight = th.randn((20, 30) if shared else (n_tasks, 20, 30), generator=generator, dtype=th.float64)
    if not shared:
        weight = weight * masks  # task copies hold zeros off their pathway
    weight.requires_grad_(True)
    bias = th.randn(20, generator=generator, dtype=th.float64, requires_grad=True) if with_bias else None
    task_masks = masks if shared else None
    layout = TaskPathwayLayout(bool_masks)

    sparse = TaskGroupedLinear.apply(inputs, weight, bias, task_masks, router, layout)
    dense = TaskGroupedLinear.apply(inputs, weight, bias, task_masks, router)
    assert th.allclose(sparse, dense)
    gradient = th.randn(8, 20, generator=generator, dtype=th.float64)
    sparse_grads = th.autograd.grad(sparse, (inputs, weight), gradient)
    dense_grads = th.autograd.grad(dense, (inputs, weight), gradient)
    assert th.allclose(sparse_grads[0], dense_grads[0])
    on_pathway = bool_masks.any(dim=0) if shared else bool_masks
    assert th.allclose(sparse_grads[1], dense_grads[1] * on_pathway), "the gradient the mask keeps, and zeros elsewhere"
    assert th.count_nonzero(sparse_grads[1][~on_pathway]) == 0
    arguments = (inputs, weight) if bias is None else (inputs, weight, bias)
    assert th.autograd.gradcheck(lambda x, w, b=None: TaskGroupedLinear.apply(x, w, b, task_masks, router, layout), arguments)


def test_sparse_layer_uses_its_csr_layout_only_while_training_on_the_cpu() -> None:
    (layer,) = convert_to_masked(th.nn.Sequential(th.nn.Linear(40, 30)), n_pathways=3)
    assert isinstance(layer, MultiTaskMaskedLinear)
    router = TaskRouter(3)
    layer.task_router = router
    router.set_tasks(th.tensor([0, 1, 2, 1, 0, 2]))
    layer.set_mask(th.rand(3, 30, 40, generator=th.Generator().manual_seed(0)) < 0.05)
    inputs = th.randn(6, 40)
    assert int((layer.weight_mask.sum(dim=0) > 1).sum()) > 0, "shared weights, whose merged gradient is averaged"
    assert layer._sparse_layout() is None, "a small layer keeps the dense products (faster there)"
    layer.csr_min_weights = 0
    assert layer._sparse_layout() is not None
    with layer.unmasked_gradients():
        assert layer._sparse_layout() is None, "scoring needs every weight's gradient"
    with layer.all_connections_on():
        assert layer._sparse_layout() is None, "scoring reads every connection"
    for merged in (False, True):
        if merged:
            layer.merge_task_weights()
        results = []
        for max_density in (0.1, 0.0):  # the sparse route, then the dense one
            layer.csr_max_density = max_density
            layer.zero_grad()
            outputs = layer(inputs)
            outputs.pow(2).sum().backward()
            trained = layer.weight if merged else layer.task_weight
            assert trained.grad is not None
            results.append((outputs.detach(), trained.grad.clone()))
        assert th.allclose(results[0][0], results[1][0], atol=1e-6)
        assert th.allclose(results[0][1], results[1][1], atol=1e-6), "the masked (merged: task-averaged) gradient"
    assert layer._sparse_layout() is None
    layer.csr_max_density = 0.1
    layer.set_mask(th.rand(3, 30, 40, generator=th.Generator().manual_seed(1)) < 0.5)
    assert layer._sparse_layout() is None, "a dense pathway keeps the dense products"


def test_merged_layer_whose_tasks_share_one_mask_runs_one_product_with_the_same_result() -> None:
    (layer,) = convert_to_masked(th.nn.Sequential(th.nn.Linear(60, 40)), n_pathways=3)
    assert isinstance(layer, MultiTaskMaskedLinear)
    layer.csr_min_weights = 0  # a layer the sparse products would otherwise take
    router = TaskRouter(3)
    layer.task_router = router
    router.set_tasks(th.tensor([0, 2, 2, 1, 0]))
    shared_mask = th.rand(40, 60, generator=th.Generator().manual_seed(0)) < 0.05
    layer.set_mask(shared_mask.expand(3, 40, 60))
    layer.merge_task_weights()
    assert layer._same_mask_for_every_task and layer._sparse_layout() is None
    inputs = th.randn(5, 60)
    results = []
    for one_product in (True, False):
        layer._same_mask_for_every_task = one_product
        layer.zero_grad()
        outputs = layer(inputs)
        outputs.pow(2).sum().backward()
        assert layer.weight.grad is not None
        results.append((outputs.detach(), layer.weight.grad.clone()))
    assert th.allclose(results[0][0], results[1][0], atol=1e-6)
    assert th.allclose(results[0][1], results[1][1], atol=1e-6), "masked and averaged over the three tasks"
    assert th.count_nonzero(results[0][1][~shared_mask]) == 0
    layer.set_mask(th.rand(3, 40, 60, generator=th.Generator().manual_seed(1)) < 0.5)
    assert not layer._same_mask_for_every_task


def test_sparse_products_train_a_multi_task_policy_as_the_dense_products_do(monkeypatch: pytest.MonkeyPatch) -> None:
    parameters = []
    monkeypatch.setattr(MultiTaskMaskedLinear, "csr_min_weights", 0)
    for max_density in (0.1, 0.0):
        monkeypatch.setattr(MultiTaskMaskedLinear, "csr_max_density", max_density)
        model = two_task_sac(policy_kwargs={"sparsity": 0.95, "net_arch": [64, 64]}, gradient_steps=2)
        model.learn(80)
        layers = [module for module in model.policy.modules() if isinstance(module, MultiTaskMaskedLinear)]
        assert (layers[1]._layout is not None) == (max_density > 0)
        parameters.append(th.cat([parameter.detach().reshape(-1) for parameter in model.policy.parameters()]))
    assert th.allclose(parameters[0], parameters[1], atol=1e-5)


def test_warm_up_trains_task_copies_independently(two_task_layer: tuple[MultiTaskMaskedLinear, TaskRouter]) -> None:
    layer, router = two_task_layer
    router.set_tasks(th.tensor([0, 0, 1]))
    layer(th.randn(3, 3)).sum().backward()
    assert layer.weight.grad is None, "the shared weight is not read before merging"
    assert layer.task_weight.grad is not None
    assert th.all(layer.task_weight.grad[~layer.weight_mask] == 0)
    assert th.all(layer.task_weight.grad[layer.weight_mask] != 0)


def test_task_copies_keep_dormant_values_aside(two_task_layer: tuple[MultiTaskMaskedLinear, TaskRouter]) -> None:
    layer, router = two_task_layer
    masks = layer.weight_mask.clone()
    assert th.all(layer.task_weight[~masks] == 0), "dormant entries of a task copy are exact zeros"
    with th.no_grad():
        layer.task_weight.add_(masks * 0.25)
    theta = layer.task_full_weight()

    layer.set_mask(~masks)
    assert th.equal(layer.task_weight.detach(), (theta * ~masks).detach())
    with layer.all_connections_on():
        assert th.equal(layer.task_weight.detach(), theta), "the dense view shows every copy at θ"
        router.set_tasks(th.tensor([0, 1]))
        inputs = th.randn(2, 3)
        outputs = layer(inputs)
        for task in (0, 1):
            assert th.allclose(outputs[task], F.linear(inputs[task], theta[task], layer.bias), atol=1e-6)
    assert th.equal(layer.task_weight.detach(), (theta * ~masks).detach())

    layer.set_mask(masks)
    assert th.equal(layer.task_weight.detach(), theta * masks), "returning weights get their stored value"


def test_merge_averages_copies_and_gradients_over_the_tasks_using_a_weight(
    two_task_layer: tuple[MultiTaskMaskedLinear, TaskRouter],
) -> None:
    layer, router = two_task_layer
    with th.no_grad():
        layer.task_weight[0].fill_(1.0)
        layer.task_weight[1].fill_(3.0)
    layer.merge_task_weights()
    masks = layer.weight_mask
    assert layer.weight[1, 0] == 2.0 and layer.weight[3, 0] == 2.0  # shared: mean of 1 and 3
    assert layer.weight[0, 0] == 1.0 and layer.weight[0, 2] == 3.0  # one task each
    assert layer.weight[0, 1] == 0.0  # used by no task: dormant

    inputs, tasks = th.randn(5, 3), th.tensor([0, 1, 0, 1, 1])
    router.set_tasks(tasks)
    layer(inputs).pow(2).sum().backward()
    expected = th.zeros_like(layer.weight)
    for task in (0, 1):
        effective = (layer.weight.detach() * masks[task]).requires_grad_(True)
        F.linear(inputs[tasks == task], effective, layer.bias.detach()).pow(2).sum().backward()
        assert effective.grad is not None
        expected += effective.grad * masks[task]
    users = masks.sum(dim=0)
    expected = th.where(users > 0, expected / users.clamp(min=1), th.zeros_like(expected))
    assert layer.weight.grad is not None
    assert th.allclose(layer.weight.grad, expected, atol=1e-6)
    assert layer.weight.grad[1, 0] != 0  # a shared entry gets the mean, not the sum


def test_single_task_is_exactly_the_single_task_policy() -> None:
    default = SAC("PathwayPolicy", "Pendulum-v1", seed=3, device="cpu", policy_kwargs=dict(net_arch=[16], sparsity=0.5))
    one_task = SAC(
        "PathwayPolicy", "Pendulum-v1", seed=3, device="cpu", policy_kwargs=dict(net_arch=[16], sparsity=0.5, n_tasks=1)
    )
    first, second = default.policy.state_dict(), one_task.policy.state_dict()
    assert first.keys() == second.keys()
    assert all(th.equal(first[key], second[key]) for key in first)


def test_policy_routes_a_mixed_batch_like_each_tasks_pathway() -> None:
    model = two_task_sac()
    model.learn(100)
    mixed = np.concatenate([task_observations(0), task_observations(1)])
    actions, _ = model.predict(mixed, deterministic=True)
    for task in (0, 1):
        alone, _ = model.predict(task_observations(task), deterministic=True)
        assert np.allclose(actions[task * 8 : (task + 1) * 8], alone, atol=1e-6)
        exported = export_pathway(model, task=task)(th.as_tensor(task_observations(task))).numpy()
        assert np.abs(exported - alone).max() <= 1e-5
    masks = [get_masks(model, task) for task in (0, 1)]
    assert any(not th.equal(masks[0][name], masks[1][name]) for name in masks[0]), "each task has its own pathway"
    with pytest.raises(ValueError, match=r"the policy has 2 task pathways: pass task=0\.\.1"):
        export_pathway(model)


class CapturedRecords(KVWriter):
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        self.records.append(dict(key_values))


def test_per_task_dapd_freezes_each_task_on_its_own_metric() -> None:
    model = two_task_sac()
    captured = CapturedRecords()
    model.set_logger(Logger(folder=None, output_formats=[captured]))
    # task 0 freezes at its first episode (any return >= -1e9), task 1 never (returns are <= 0)
    callback = MultiTaskDAPDCallback(freeze_metric="return", freeze_threshold=[-1e9, 1.0], moving_average=2)
    model.learn(200, callback=callback)
    last = captured.records[-1]
    assert last["pathways/task/left/frozen"] == 1 and last["pathways/task/right/frozen"] == 0
    assert 0.0 <= last["pathways/task/right/success"] <= 1.0 and last["pathways/task/left/return"] < 0
    state = model.pathway_discovery
    assert list(state.task_frozen_steps) == [0] and not state.frozen
    assert callback.task_names == ["left", "right"]
    frozen_masks = get_masks(model, 0)
    changing_masks = get_masks(model, 1)
    model.learn(100, callback=callback, reset_num_timesteps=False)
    assert all(th.equal(frozen_masks[name], mask) for name, mask in get_masks(model, 0).items())
    assert any(not th.equal(changing_masks[name], mask) for name, mask in get_masks(model, 1).items())
    layer = model.policy.actor.latent_pi[0]
    assert layer.independent
    for task in (0, 1):
        active = task_active_weights(model)[task]
        assert active["actor"] == model.policy.pathways()["actor"].n_keep


def test_warm_up_end_freezes_every_task_and_merges() -> None:
    model = two_task_sac()
    callback = MultiTaskDAPDCallback(max_warmup_steps=100, moving_average=2)
    model.learn(160, callback=callback)
    state = model.pathway_discovery
    assert state.frozen and sorted(state.task_frozen_steps) == [0, 1]
    for module in model.policy.modules():
        if isinstance(module, MultiTaskMaskedLinear):
            assert not module.independent
    overlap = task_overlap(model)
    assert overlap.shape == (2, 2) and overlap[0, 0] == 1.0 and 0.0 < overlap[0, 1] < 1.0


def test_merge_frees_the_task_copies_and_a_merged_model_saves_and_loads(tmp_path: Path) -> None:
    warm_up = two_task_sac()
    warm_up.save(tmp_path / "warm_up")
    model = two_task_sac()
    model.learn(160, callback=MultiTaskDAPDCallback(max_warmup_steps=100, moving_average=2))
    layers = [module for module in model.policy.modules() if isinstance(module, MultiTaskMaskedLinear)]
    assert layers and all(layer.task_weight.numel() == layer.task_weight_stored.numel() == 0 for layer in layers)
    copies = {id(layer.task_weight) for layer in layers}
    for optimizer in (model.actor.optimizer, model.critic.optimizer):
        assert not any(id(parameter) in copies for parameter in optimizer.state), "the copies' Adam moments are gone"

    model.save(tmp_path / "merged")
    loaded = SAC.load(tmp_path / "merged", env=two_task_env(), device="cpu")
    original, restored = model.policy.state_dict(), loaded.policy.state_dict()
    assert all(th.equal(original[key], restored[key]) for key in original)
    mixed = np.concatenate([task_observations(0), task_observations(1)])
    assert np.array_equal(model.predict(mixed, deterministic=True)[0], loaded.predict(mixed, deterministic=True)[0])
    shared = loaded.policy.actor.latent_pi[0].weight.detach().clone()
    loaded.learn(60, reset_num_timesteps=False)
    assert not th.equal(shared, loaded.policy.actor.latent_pi[0].weight), "the merged weights go on training"

    # a warm-up checkpoint brings its copies back into a merged model
    loaded.set_parameters(str(tmp_path / "warm_up"))
    layer = loaded.policy.actor.latent_pi[0]
    assert layer.independent and layer.task_weight.shape == (2, *layer.weight.shape)
    assert th.equal(layer.task_weight.detach(), warm_up.policy.actor.latent_pi[0].task_weight.detach())


def test_without_merge_the_task_copies_stay_apart_after_the_freeze() -> None:
    model = two_task_sac()
    model.learn(160, callback=MultiTaskDAPDCallback(max_warmup_steps=100, moving_average=2, merge=False))
    assert model.pathway_discovery.frozen
    layers = [module for module in model.policy.modules() if isinstance(module, MultiTaskMaskedLinear)]
    assert layers and all(layer.independent for layer in layers)
    masks = get_masks(model)
    before = {id(layer): layer.task_weight.detach().clone() for layer in layers}
    model.learn(40, reset_num_timesteps=False)
    assert all(th.equal(mask, get_masks(model)[name]) for name, mask in masks.items())
    actor_layer = model.policy.actor.latent_pi[0]
    assert not th.equal(actor_layer.task_weight.detach(), before[id(actor_layer)])  # the copies still train
    with pytest.raises(ValueError, match="merge must be True or False, got 'no'"):
        MultiTaskDAPDCallback(merge="no")  # type: ignore[arg-type]


def test_budget_fraction_freezes_every_task_and_selection_options_reach_each_task() -> None:
    model = two_task_sac()
    callback = MultiTaskDAPDCallback(max_warmup_fraction=0.5, moving_average=2, cover_inputs=True, allocation="erk")
    model.learn(200, callback=callback)
    state = model.pathway_discovery
    # learning_starts=40: the warm-up ends at 40 + 0.5 * 160 = 120 steps (two envs step together)
    assert state.frozen and set(state.task_frozen_steps.values()) == {120} and state.frozen_step == 120
    assert not model.policy.actor.latent_pi[0].independent
    updater = callback.updater
    assert (updater.allocation, updater.within_layer, updater.cover_inputs) == ("erk", "top_k", True)
    for task in (0, 1):
        for name, mask in get_masks(model, task).items():
            if mask.dim() == 2:
                assert bool(mask.any(dim=0).all()), f"task {task}: an input of {name} feeds nothing"
                assert bool(mask.any(dim=1).all()), f"task {task}: an output of {name} reads nothing"


def test_a_stock_policy_loads_into_every_task_copy() -> None:
    dense = SAC("MlpPolicy", two_task_env(), policy_kwargs={"net_arch": [16, 16]}, seed=1, device="cpu")
    model = two_task_sac()
    model.set_parameters({"policy": dense.get_parameters()["policy"]}, exact_match=False)
    stock = dense.policy.actor.latent_pi[0].weight.detach()
    layer = model.policy.actor.latent_pi[0]
    assert isinstance(layer, MultiTaskMaskedLinear) and layer.independent
    for task in range(2):
        assert th.equal(layer.task_full_weight()[task], stock)
        assert th.equal(layer.task_weight[task].detach(), stock * layer.weight_mask[task])
    assert th.equal(layer.full_weight(), stock)


def test_save_load_keeps_task_masks_weights_and_freeze_state(tmp_path: Path) -> None:
    model = two_task_sac()
    model.learn(200, callback=MultiTaskDAPDCallback(freeze_metric="return", freeze_threshold=[-1e9, 1.0]))
    model.save(tmp_path / "mt")
    loaded = SAC.load(tmp_path / "mt", env=two_task_env(), device="cpu")
    assert loaded.policy.n_tasks == 2
    for task in (0, 1):
        masks, loaded_masks = get_masks(model, task), get_masks(loaded, task)
        assert all(th.equal(masks[name], loaded_masks[name]) for name in masks)
    original, restored = model.policy.state_dict(), loaded.policy.state_dict()
    assert all(th.equal(original[key], restored[key]) for key in original)
    assert loaded.pathway_discovery.task_frozen_steps == model.pathway_discovery.task_frozen_steps
    mixed = np.concatenate([task_observations(0), task_observations(1)])
    assert np.array_equal(model.predict(mixed, deterministic=True)[0], loaded.predict(mixed, deterministic=True)[0])
    # training goes on after loading: task weights still in the optimizer
    before = loaded.policy.actor.latent_pi[0].task_weight.detach().clone()
    loaded.learn(60)
    assert not th.equal(before, loaded.policy.actor.latent_pi[0].task_weight)


def test_multitask_dqn_trains_and_routes() -> None:
    model = DQN(
        "PathwayPolicy",
        two_task_env(discrete=True),
        learning_starts=40,
        batch_size=16,
        train_freq=4,
        seed=0,
        device="cpu",
        policy_kwargs=dict(n_tasks=2, net_arch=[16], sparsity=0.6),
    )
    model.learn(120, callback=MultiTaskDAPDCallback())
    q_values = [export_pathway(model, task=task).network_output(th.as_tensor(task_observations(task))) for task in (0, 1)]
    with th.no_grad():
        routed = model.policy.q_net(th.as_tensor(np.concatenate([task_observations(0), task_observations(1)])))
    assert th.allclose(th.cat(q_values), routed, atol=1e-5)


def test_multitask_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="n_tasks must be a positive int, got 0"):
        two_task_sac(policy_kwargs=dict(n_tasks=0))
    with pytest.raises(ValueError, match=r"multi-task pathways \(n_tasks > 1\) support linear layers only"):
        convert_to_masked(th.nn.Conv2d(1, 2, 3), n_pathways=2)
    single = SAC("PathwayPolicy", "Pendulum-v1", device="cpu", learning_starts=10)
    with pytest.raises(ValueError, match=r"needs a multi-task policy: policy_kwargs=dict\(n_tasks=N\)"):
        single.learn(20, callback=MultiTaskDAPDCallback())
    with pytest.raises(ValueError, match="freeze_metric must be one of"):
        MultiTaskDAPDCallback(freeze_metric="eval")
    with pytest.raises(ValueError, match=r"max_warmup_fraction must be"):
        MultiTaskDAPDCallback(max_warmup_fraction=1.5)
    with pytest.raises(ValueError, match=r"allocation must be one of"):
        MultiTaskDAPDCallback(allocation="uniform")
    with pytest.raises(ValueError, match=r"cover_inputs"):
        MultiTaskDAPDCallback(within_layer="per_unit", cover_inputs=True)
    assert sb3_pathways  # aliases registered


def test_task_balanced_replay_gives_every_task_the_same_share_of_a_batch() -> None:
    from sb3_pathways.multitask import TaskBalancedReplayBuffer

    model = two_task_sac(replay_buffer_class=TaskBalancedReplayBuffer)
    model.learn(60)
    buffer = model.replay_buffer
    assert isinstance(buffer, TaskBalancedReplayBuffer)
    np.random.seed(0)
    for batch_size in (32, 33):
        tasks = model.policy.task_ids(buffer.sample(batch_size).observations)
        counts = th.bincount(tasks, minlength=2).tolist()
        assert sorted(counts) == [batch_size // 2, batch_size - batch_size // 2]
    counts = np.bincount(buffer.balanced_env_indices(1000 * 2 + 1), minlength=2)
    assert sorted(counts.tolist()) == [1000, 1001]
    # a stock buffer's batches vary around the same mean
    stock = two_task_sac()
    stock.learn(60)
    shares = [int(stock.policy.task_ids(stock.replay_buffer.sample(32).observations).sum()) for _ in range(50)]
    assert len(set(shares)) > 1


def test_task_routing_benchmark_times_every_route_of_one_layer(load_benchmark, capsys: pytest.CaptureFixture[str]) -> None:
    load_benchmark("task_routing").main(["--width", "48", "--batch", "40", "--calls", "1", "--repeats", "1"])
    rows = [line.strip("| ").split(" | ") for line in capsys.readouterr().out.splitlines() if line.endswith("x |")]
    assert [name for name, _, _ in rows] == [
        "dense", "warm-up", "merged", "warm-up-dense", "merged-dense", "chunks-only", "sparse-csr"
    ]  # fmt: skip
    assert rows[0][2] == "1.00x" and all(float(milliseconds) > 0 for _, milliseconds, _ in rows)
