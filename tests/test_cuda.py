"""Pathways on a GPU: masks, targets, optimizer state, scoring and export stay on the model's
device. Skipped where CUDA is not available (every CPU-only machine, CI included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN, PPO, SAC

import sb3_pathways
from sb3_pathways import DAPDCallback, export_pathway
from sb3_pathways.masking.layers import MaskedWeightMixin
from sb3_pathways.masking.optimizer_state import START_STEP_KEY
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


@pytest.mark.parametrize(("algo", "env_id", "kwargs"), CASES, ids=[case[0].__name__ for case in CASES])
def test_training_with_dapd_keeps_everything_on_the_gpu(algo, env_id: str, kwargs: dict) -> None:
    model = algo("PathwayPolicy", env_id, device="cuda", seed=0, policy_kwargs=dict(net_arch=[64, 64]), **kwargs)
    model.learn(600, callback=DAPDCallback(max_warmup_fraction=None))
    device = model.device
    assert device.type == "cuda"
    assert model.pathway_discovery.n_updates >= 2
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
