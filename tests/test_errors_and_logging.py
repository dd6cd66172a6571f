"""Bad input gets a clear error; pathway statistics reach the SB3 logger."""

from __future__ import annotations

import csv

import pytest
import torch as th
from sb3_contrib import ARS, TRPO
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.logger import configure

import sb3_pathways
from sb3_pathways import PathwayLoggerCallback, get_masks
from sb3_pathways.policies import FULL_DORMANT_CHECK_EVERY
from sb3_pathways.report import mask_figure


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "0.9", None, True])
def test_sparsity_outside_range_is_rejected(bad) -> None:
    with pytest.raises(ValueError, match=r"sparsity must be a float in \[0, 1\), got"):
        SAC("PathwayPolicy", "Pendulum-v1", policy_kwargs=dict(sparsity=bad))


def test_sparsity_dict_checks_names_and_values() -> None:
    with pytest.raises(ValueError, match=r"unknown networks \['qf0'\]; PathwayPolicy has the networks \['actor', 'critic'\]"):
        SAC("PathwayPolicy", "Pendulum-v1", policy_kwargs=dict(sparsity={"actor": 0.9, "qf0": 0.9}))
    with pytest.raises(ValueError, match=r"sparsity\['critic'\] must be a float in \[0, 1\)"):
        SAC("PathwayPolicy", "Pendulum-v1", policy_kwargs=dict(sparsity={"critic": 1.0}))
    with pytest.raises(ValueError, match=r"networks \['q_net'\]"):
        DQN("PathwayPolicy", "CartPole-v1", policy_kwargs=dict(sparsity={"actor": 0.9}))


def test_mask_init_is_checked() -> None:
    with pytest.raises(ValueError, match=r"mask_init must be one of \('random', 'erk'\), got 'snip'"):
        PPO("PathwayPolicy", "CartPole-v1", policy_kwargs=dict(mask_init="snip"))


def test_stock_policy_where_a_pathway_policy_is_needed() -> None:
    model = SAC("MlpPolicy", "Pendulum-v1")
    for function in (sb3_pathways.get_masks, sb3_pathways.pathway_stats):
        with pytest.raises(TypeError, match=r"needs a model with a pathway policy .* got SACPolicy.*sparsify"):
            function(model)
    with pytest.raises(TypeError, match="PathwayLoggerCallback needs a model with a pathway policy"):
        model.learn(10, callback=PathwayLoggerCallback())


def test_sparsity_is_logged(tmp_path) -> None:
    model = PPO(
        "PathwayPolicy",
        "CartPole-v1",
        n_steps=32,
        batch_size=32,
        n_epochs=1,
        policy_kwargs=dict(sparsity={"actor": 0.9, "critic": 0.8}),
    )
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(64, callback=PathwayLoggerCallback())
    with open(tmp_path / "progress.csv") as file:
        rows = list(csv.DictReader(file))
    assert float(rows[-1]["pathways/actor/sparsity"]) == pytest.approx(0.9, abs=2e-3)
    assert float(rows[-1]["pathways/critic/sparsity"]) == pytest.approx(0.8, abs=2e-3)
    assert int(rows[-1]["pathways/actor/active"]) == sb3_pathways.pathway_stats(model)["actor"].active


def test_algorithms_without_pathway_policies_say_which_have_them() -> None:
    # ARS perturbs its weights at random, without gradients: there is no loss to score
    with pytest.raises(ValueError, match=r"ARS has no pathway policy in sb3_pathways yet; .*SAC, TQC") as refused:
        ARS("PathwayPolicy", "CartPole-v1", device="cpu")
    assert "RecurrentPPO" in str(refused.value) and "MaskablePPO" in str(refused.value)


def test_an_algorithm_writing_weights_past_the_gradient_mask_is_stopped() -> None:
    # TRPO's line search assigns param.data: with PPO's pathway policy (which does not apply
    # its masks again) the first training step is refused, with TRPO's own it keeps zeros
    wrong = TRPO(sb3_pathways.ppo.PathwayPolicy, "Pendulum-v1", n_steps=64, batch_size=32, device="cpu", seed=0)
    with pytest.raises(RuntimeError, match=r"dormant weights of mlp_extractor\.policy_net\.0\.weight are no longer zero"):
        wrong.learn(128)  # stopped when the second rollout starts, after one training step
    right = TRPO("PathwayPolicy", "Pendulum-v1", n_steps=64, batch_size=32, device="cpu", seed=0)
    right.learn(128)
    for name, mask in get_masks(right).items():
        assert th.count_nonzero(right.policy.get_parameter(name)[~mask]) == 0, name


def test_in_place_writes_to_dormant_weights_are_caught_by_the_periodic_check() -> None:
    model = PPO("PathwayPolicy", "CartPole-v1", n_steps=64, batch_size=32, device="cpu", seed=0)
    model.learn(64)
    policy = model.policy
    layer = policy.masked_layer("action_net.weight")
    with th.no_grad():
        layer.weight.add_(0.01)  # in place: the storage stays, only a full check sees it
    calls_to_next_full_check = (1 - policy._dormant_checks) % FULL_DORMANT_CHECK_EVERY or FULL_DORMANT_CHECK_EVERY
    for _ in range(calls_to_next_full_check - 1):
        policy.set_training_mode(False)  # storage unchanged: only the periodic full check looks
    with pytest.raises(RuntimeError, match=r"dormant weights of action_net\.weight are no longer zero"):
        policy.set_training_mode(False)


def test_mask_heat_map_names_its_axes_colours_shapes_and_run() -> None:
    model = SAC("PathwayPolicy", "Pendulum-v1", device="cpu", seed=0)
    figure = mask_figure(model, run_name="logs/sac/Pendulum-v1_1/Pendulum-v1.zip")
    panels = {axes.get_title().split("\n")[0]: axes for axes in figure.axes if axes.get_title()}
    assert set(panels) == {f"{name} ({'x'.join(map(str, mask.shape))})" for name, mask in get_masks(model).items()}
    for axes in panels.values():
        assert axes.get_xlabel() == "inputs" and axes.get_ylabel() == "output units"
    tall = panels["actor.latent_pi.0.weight (256x3)"].get_box_aspect()
    wide = panels["actor.mu.weight (1x256)"].get_box_aspect()
    square = panels["actor.latent_pi.2.weight (256x256)"].get_box_aspect()
    assert tall > square == 1.0 > wide
    (colour_bar,) = [axes for axes in figure.axes if not axes.get_title()]
    assert [label.get_text() for label in colour_bar.get_yticklabels()] == ["dormant", "active"]
    assert figure.get_suptitle() == "SAC pathway masks (logs/sac/Pendulum-v1_1/Pendulum-v1.zip)"
