"""Optimizer state of weights that join or leave a pathway, against a hand-computed Adam."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC
from torch import nn

from sb3_pathways import DAPDCallback
from sb3_pathways.masking.layers import convert_to_masked
from sb3_pathways.masking.optimizer_state import START_STEP_KEY
from sb3_pathways.masking.pathway import NetworkPathway

LR, BETA1, BETA2, EPS = 1e-2, 0.9, 0.999, 1e-8


def _network(optimizer_class: type[th.optim.Optimizer] = th.optim.Adam, **optimizer_kwargs):
    th.manual_seed(0)
    layer = nn.Linear(6, 4)
    (masked,) = convert_to_masked(layer)
    optimizer = optimizer_class(layer.parameters(), lr=LR, **optimizer_kwargs)
    network = NetworkPathway("net", 0.5, {"weight": masked}, optimizers=[optimizer])
    start = th.zeros(4, 6, dtype=th.bool)
    start[:, :3] = True  # the first three inputs active, the last three dormant
    network.set_masks({"weight": start})
    return layer, optimizer, network


def _train(layer: nn.Linear, optimizer: th.optim.Optimizer, steps: int, generator: th.Generator) -> list[th.Tensor]:
    """Steps on a random regression loss; the masked gradient of every step."""
    gradients = []
    for _ in range(steps):
        inputs = th.randn(16, 6, generator=generator)
        targets = th.randn(16, 4, generator=generator)
        optimizer.zero_grad()
        ((layer(inputs) - targets) ** 2).mean().backward()
        gradients.append(layer.weight.grad.detach().double().clone())
        optimizer.step()
    return gradients


def _swapped_mask(old: th.Tensor) -> th.Tensor:
    """Input 0 leaves the pathway, input 4 (never active before) joins."""
    new = old.clone()
    new[:, 0] = False
    new[:, 4] = True
    return new


def _hand_adam(weight: np.ndarray, gradients: list[np.ndarray], reset_at: int, joined: np.ndarray, left: np.ndarray):
    """Adam written out entry by entry: moments and step count start afresh for the entries
    that change state after ``reset_at`` steps (dormant entries get zero gradients and keep
    their value θ, which a joining entry comes back with)."""
    m, v = np.zeros_like(weight), np.zeros_like(weight)
    count = np.zeros_like(weight)
    weight = weight.copy()
    for step, grad in enumerate(gradients):
        if step == reset_at:
            changed = joined | left
            m[changed], v[changed], count[changed] = 0.0, 0.0, 0.0
            weight[left] = 0.0
        count += 1
        m = BETA1 * m + (1 - BETA1) * grad
        v = BETA2 * v + (1 - BETA2) * grad**2
        weight -= LR * (m / (1 - BETA1**count)) / (np.sqrt(v / (1 - BETA2**count)) + EPS)
    return weight


def test_reset_weight_takes_the_steps_of_a_fresh_adam() -> None:
    layer, optimizer, network = _network()
    generator = th.Generator().manual_seed(1)
    initial = network.full_weights()["weight"].double().numpy().copy()  # θ, dormant values included
    before = _train(layer, optimizer, 200, generator)
    old = network.masks()["weight"][0].clone()
    new = _swapped_mask(old)
    network.set_masks({"weight": new}, optimizer_state="reset")
    joined_value = layer.weight.detach()[:, 4].clone()
    after = _train(layer, optimizer, 30, generator)

    joined, left = (new & ~old).numpy(), (old & ~new).numpy()
    # dormant entries have zero gradient, so the hand computation sees the same gradients
    expected = _hand_adam(initial, [g.numpy() for g in before + after], 200, joined, left) * new.numpy()
    np.testing.assert_allclose(layer.weight.detach().double().numpy(), expected, rtol=0, atol=2e-6)
    assert th.count_nonzero(layer.weight.detach()[~new]) == 0
    # a fresh Adam's first step is lr * g / (|g| + eps): at most the learning rate
    first_step = _single_step_change(joined_value, after[0][:, 4])
    assert first_step <= LR * (1 + 1e-5)


def _single_step_change(before: th.Tensor, gradient: th.Tensor) -> float:
    """|Δθ| of a fresh Adam's first step for gradient ``gradient`` (hand formula)."""
    m, v = (1 - BETA1) * gradient, (1 - BETA2) * gradient**2
    return float((LR * (m / (1 - BETA1)) / ((v / (1 - BETA2)).sqrt() + EPS)).abs().max())


def test_without_the_per_weight_count_a_reset_weight_would_step_3x_the_learning_rate() -> None:
    """The bug this module fixes: zeroed moments under the shared step count."""
    layer, optimizer, network = _network()
    generator = th.Generator().manual_seed(1)
    _train(layer, optimizer, 200, generator)
    old = network.masks()["weight"][0].clone()
    network.set_masks({"weight": _swapped_mask(old)}, optimizer_state="reset")
    del optimizer.state[layer.weight][START_STEP_KEY]  # as before the fix
    value = layer.weight.detach()[:, 4].clone()
    _train(layer, optimizer, 1, generator)
    step = (layer.weight.detach()[:, 4] - value).abs()
    expected = LR * (1 - BETA1) / (1 - BETA2) ** 0.5 / (1 - BETA1**201) * (1 - BETA2**201) ** 0.5
    th.testing.assert_close(step.max().item(), expected, rtol=1e-3, atol=0)


def test_keep_leaves_the_moments_as_the_reference_does() -> None:
    layer, optimizer, network = _network()
    generator = th.Generator().manual_seed(1)
    _train(layer, optimizer, 50, generator)
    old = network.masks()["weight"][0].clone()
    state = optimizer.state[layer.weight]
    second_before = state["exp_avg_sq"].clone()
    new = _swapped_mask(old)
    network.set_masks({"weight": new}, optimizer_state="keep")
    assert th.equal(state["exp_avg_sq"], second_before)
    assert th.count_nonzero(state["exp_avg"][old & ~new]) == 0  # a leaving weight must not move
    assert START_STEP_KEY not in state
    _train(layer, optimizer, 20, generator)
    assert th.count_nonzero(layer.weight.detach()[~new]) == 0


def test_bias_correction_stops_once_it_no_longer_matters() -> None:
    layer, optimizer, network = _network()
    generator = th.Generator().manual_seed(1)
    _train(layer, optimizer, 5, generator)
    network.set_masks({"weight": _swapped_mask(network.masks()["weight"][0])})
    assert START_STEP_KEY in optimizer.state[layer.weight]
    optimizer.state[layer.weight]["step"].fill_(19_999.0)  # far past the reset
    _train(layer, optimizer, 2, generator)  # weights past the horizon leave at step 20,000
    assert START_STEP_KEY not in optimizer.state[layer.weight]


def test_optimizers_without_a_per_weight_count_are_refused_for_reset() -> None:
    layer, optimizer, network = _network(th.optim.NAdam)
    _train(layer, optimizer, 3, th.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="optimizer_state='keep'"):
        network.set_masks({"weight": _swapped_mask(network.masks()["weight"][0])})
    network.set_masks({"weight": _swapped_mask(network.masks()["weight"][0])}, optimizer_state="keep")


def test_bad_optimizer_state_is_rejected() -> None:
    with pytest.raises(ValueError, match="optimizer_state must be one of"):
        DAPDCallback(optimizer_state="zero")


def test_start_steps_travel_in_the_model_zip(tmp_path) -> None:
    model = SAC("PathwayPolicy", "Pendulum-v1", learning_starts=50, batch_size=32, seed=0, device="cpu")
    model.learn(400, callback=DAPDCallback(max_warmup_fraction=None))

    def start_sums(model: SAC) -> list[float]:
        states = [state for opt in model.policy.optimizers() for state in opt.state.values()]
        return sorted(float(state[START_STEP_KEY].sum()) for state in states if START_STEP_KEY in state)

    assert start_sums(model), "DAPD rescoring should have reset some weights"
    model.save(tmp_path / "model")
    loaded = SAC.load(tmp_path / "model", device="cpu")
    assert start_sums(loaded) == start_sums(model)
