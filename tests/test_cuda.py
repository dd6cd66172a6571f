"""Pathways on a GPU: masks, targets, optimizer state, scoring and export stay on the model's
device. Skipped where CUDA is not available (every CPU-only machine, CI included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN, PPO, SAC

import sb3_pathways
from sb3_pathways import DAPDCallback, export_pathway
from sb3_pathways.masking.layers import MaskedWeightMixin, MultiTaskMaskedLinear
from sb3_pathways.masking.optimizer_state import START_STEP_KEY
from sb3_pathways.multitask import MultiTaskDAPDCallback
from sb3_pathways.offline import BCQ, IQL, SingleShotPathways
from sb3_pathways.scoring.data import newest_transitions
from sb3_pathways.scoring.sensitivity import connection_sensitivity

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA device"),
]

CASES = [
    (SAC, "Pendulum-v1", dict(learning_starts=100, batch_size=64)),
    (DQN, "CartPole-v1", dict(learning_starts=100, batch_size=64, target_update_interval=50)),
    (PPO, "CartPole-v1", dict(n_steps=128, batch_size=64)),
]


def _on(tensor: th.Tensor, device: th.device) -> bool:
    return tensor.device.type == device.type


def _assert_all_on(model, device: th.device) -> None:
    """Every masked layer's tensors, every optimizer state and no dormant weight off the mask."""
    for module in model.policy.modules():
        if isinstance(module, MaskedWeightMixin):
            for tensor in (module.weight, module.weight_mask, module.weight_stored, module._gradient_mask):
                assert _on(tensor, device)
            assert th.count_nonzero(module.weight.detach()[~module.active_mask]) == 0
    for optimizer in model.policy.optimizers():
        for state in optimizer.state.values():
            for key, value in state.items():
                if isinstance(value, th.Tensor) and value.dim() > 0:
                    assert _on(value, device), key


@pytest.mark.parametrize(("algo", "env_id", "kwargs"), CASES, ids=[case[0].__name__ for case in CASES])
def test_training_with_dapd_keeps_everything_on_the_gpu(algo, env_id: str, kwargs: dict) -> None:
    model = algo("PathwayPolicy", env_id, device="cuda", seed=0, policy_kwargs=dict(net_arch=[64, 64]), **kwargs)
    model.learn(600, callback=DAPDCallback(max_warmup_fraction=None))
    device = model.device
    assert device.type == "cuda"
    assert model.pathway_discovery.n_updates >= 2
    _assert_all_on(model, device)
    for target, online in type(model.policy).pathway_targets.items():
        online_layers = [m for m in model.policy.get_submodule(online).modules() if isinstance(m, MaskedWeightMixin)]
        target_layers = [m for m in model.policy.get_submodule(target).modules() if isinstance(m, MaskedWeightMixin)]
        for a, b in zip(online_layers, target_layers):
            assert th.equal(a.weight_mask, b.weight_mask)


def test_scores_and_bias_correction_on_the_gpu() -> None:
    model = SAC("PathwayPolicy", "Pendulum-v1", device="cuda", learning_starts=100, batch_size=64, seed=0)
    model.learn(600, callback=DAPDCallback(max_warmup_fraction=None))
    scores = connection_sensitivity(model, newest_transitions(model, 128))
    assert all(_on(score, model.device) for layers in scores.values() for score in layers.values())
    starts = [s[START_STEP_KEY] for opt in model.policy.optimizers() for s in opt.state.values() if START_STEP_KEY in s]
    assert starts and all(_on(start, model.device) for start in starts)


def test_gpu_and_cpu_exports_give_the_policy_actions() -> None:
    model = SAC("PathwayPolicy", "Pendulum-v1", device="cuda", learning_starts=100, seed=0)
    model.learn(300)
    observations = np.stack([model.observation_space.sample() for _ in range(32)])
    expected, _ = model.predict(observations, deterministic=True)
    for device in ("cuda", "cpu"):
        exported = export_pathway(model, device=device)
        actions = exported(th.as_tensor(observations, device=device)).cpu().numpy()
        assert np.abs(actions - expected).max() <= 1e-5
    stats = sb3_pathways.pathway_stats(model)
    assert stats["actor"].sparsity == pytest.approx(0.95, abs=1e-3)


@pytest.mark.parametrize("algo", [IQL, BCQ], ids=["IQL", "BCQ"])
def test_offline_single_shot_pathways_train_on_the_gpu(algo: type, tmp_path) -> None:
    from test_offline import pendulum_dataset

    data = pendulum_dataset(episodes=3)
    net_arch = [64, 64] if algo is IQL else dict(pi=[64, 64], qf=[64, 64], vae=[64, 64])
    model = algo("PathwayPolicy", "Pendulum-v1", dataset=data, batch_size=64, seed=0, device="cuda",
                 policy_kwargs=dict(net_arch=net_arch))  # fmt: skip
    model.learn(60, callback=SingleShotPathways())
    assert model.device.type == "cuda"
    masks = sb3_pathways.get_masks(model)
    assert all(_on(mask, model.device) for mask in masks.values())
    _assert_all_on(model, model.device)
    model.learn(40, reset_num_timesteps=False, callback=SingleShotPathways())
    assert all(th.equal(masks[name], mask) for name, mask in sb3_pathways.get_masks(model).items())
    model.save(tmp_path / "offline")
    loaded = algo.load(tmp_path / "offline", device="cpu")
    observations = data.observations[:16]
    if algo is BCQ:  # an argmax over sampled actions: near-ties may flip between devices, the best value may not
        values = []
        for policy in (model.policy, loaded.policy):
            with th.no_grad():
                obs = th.as_tensor(observations, device=policy.device)
                values.append(policy.best_sampled_actions(obs, policy.actor, policy.critic, deterministic=True)[1].cpu())
        assert th.allclose(values[0], values[1], atol=1e-4)
    else:
        on_gpu, _ = model.predict(observations, deterministic=True)
        on_cpu, _ = loaded.predict(observations, deterministic=True)
        assert np.abs(on_gpu - on_cpu).max() <= 1e-5


def test_multitask_warm_up_and_merge_on_the_gpu() -> None:
    from test_multitask import task_observations, two_task_env

    model = SAC("PathwayPolicy", two_task_env(), learning_starts=40, batch_size=32, seed=0, device="cuda",
                policy_kwargs=dict(n_tasks=2, sparsity=0.7, net_arch=[16, 16]))  # fmt: skip
    model.learn(160, callback=MultiTaskDAPDCallback(max_warmup_steps=100, moving_average=2))
    assert model.pathway_discovery.frozen
    layers = [module for module in model.policy.modules() if isinstance(module, MultiTaskMaskedLinear)]
    assert layers and not any(layer.independent for layer in layers)
    _assert_all_on(model, model.device)
    mixed = np.concatenate([task_observations(0), task_observations(1)])
    routed, _ = model.predict(mixed, deterministic=True)
    per_task = [export_pathway(model, task=task, device="cpu")(th.as_tensor(task_observations(task))) for task in (0, 1)]
    assert np.abs(th.cat(per_task).numpy() - routed).max() <= 1e-5


def test_multi_head_policy_on_the_gpu() -> None:
    from test_offline import two_task_dataset

    from sb3_pathways.offline.multi_head import TaskHeads

    env, data = two_task_dataset()
    model = IQL("MultiHeadPolicy", env, dataset=data, batch_size=32, seed=0, device="cuda",
                policy_kwargs=dict(n_tasks=2, net_arch=[16, 16]))  # fmt: skip
    model.learn(30)
    heads = [module for module in model.policy.modules() if isinstance(module, TaskHeads)]
    assert heads and all(_on(head.weight, model.device) for head in heads)
    actions, _ = model.predict(data.observations[:8], deterministic=True)
    assert actions.shape == (8, 1) and np.isfinite(actions).all()
