"""Bad input gets a clear error; pathway statistics reach the SB3 logger."""

from __future__ import annotations

import csv

import pytest
from sb3_contrib import ARS, TRPO, MaskablePPO, RecurrentPPO
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.logger import configure

import sb3_pathways
from sb3_pathways import PathwayLoggerCallback


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


@pytest.mark.parametrize("algorithm", [ARS, MaskablePPO, RecurrentPPO, TRPO], ids=lambda a: a.__name__)
def test_algorithms_without_pathway_policies_say_which_have_them(algorithm) -> None:
    with pytest.raises(ValueError, match=rf"{algorithm.__name__} has no pathway policy in sb3_pathways yet; .*SAC, TQC"):
        algorithm("PathwayPolicy", "CartPole-v1", device="cpu")
