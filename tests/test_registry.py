"""One spec per algorithm: every registered algorithm is complete and tested, and a saved zip
names the algorithm that saved it."""

from __future__ import annotations

import pytest
from conftest import ALGO_CASES, AlgoCase
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.policies import ActorCriticPolicy

import sb3_pathways
from sb3_pathways.policies import PathwayPolicyMixin
from sb3_pathways.registry import AlgorithmSpec, algorithm_spec, register_algorithm, specs_with, supported_algorithms
from sb3_pathways.report import algorithm_for


def test_every_registered_algorithm_is_complete_and_has_a_test_case() -> None:
    tested = {case.algo for case in ALGO_CASES}
    for spec in specs_with("policies"):
        assert spec.algorithm in tested, f"{spec.name} has pathway policies but no case in tests/conftest.py ALGO_CASES"
        assert spec.objective is not None and spec.training_passes is not None, spec.name
        assert "PathwayPolicy" in spec.policies, spec.name
    assert set(supported_algorithms()) == {case.algo.__name__ for case in ALGO_CASES}


@pytest.mark.parametrize("stock", [False, True], ids=["pathway", "stock"])
def test_a_saved_zip_names_the_algorithm_that_saved_it(case: AlgoCase, stock: bool, tmp_path) -> None:
    model = case.make(case.stock_policy if stock else "PathwayPolicy")
    model.save(tmp_path / "model.zip")
    assert algorithm_for(tmp_path / "model.zip") is case.algo


def test_register_algorithm_checks_its_spec() -> None:
    with pytest.raises(TypeError, match="algorithm must be a BaseAlgorithm subclass"):
        register_algorithm(AlgorithmSpec(object))  # type: ignore[arg-type]

    class TwoStockBases(PathwayPolicyMixin, ActorCriticPolicy, SAC.policy_aliases["MlpPolicy"]):  # type: ignore[misc]
        pass

    with pytest.raises(TypeError, match="must derive from exactly one stock SB3 policy"):
        register_algorithm(AlgorithmSpec(PPO, policies={"PathwayPolicy": TwoStockBases}))
    assert algorithm_spec(PPO).policies["PathwayPolicy"] is sb3_pathways.ppo.PathwayPolicy  # type: ignore[union-attr]
