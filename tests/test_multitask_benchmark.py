"""benchmarks/multitask.py on a tiny budget: the run record and result files that never collide."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

pytest.importorskip("metaworld")


@pytest.fixture(scope="module")
def multitask(load_benchmark):
    return load_benchmark("multitask")


def test_tiny_run_records_its_network_and_optimizer_in_its_own_file(multitask, tmp_path: Path) -> None:
    args = ["--methods", "dense", "--steps", "600", "--learning-starts", "100", "--batch-size", "32"]
    args += ["--net-arch", "32", "32", "--eval-episodes", "1", "--fused-adam", "--balanced", "--results", str(tmp_path)]
    multitask.main(args)
    assert [path.name for path in tmp_path.iterdir()] == ["dense_seed0_600_32x32_balanced.json"]
    record = json.loads((tmp_path / "dense_seed0_600_32x32_balanced.json").read_text())
    assert record["net_arch"] == [32, 32] and record["fused_adam"] is True and record["steps"] == 600
    assert record["task_balanced_batches"] is True
    # 39 observation + 10 one-hot features in; SAC's actor has two heads (mean, log std) of 4 actions
    assert record["actor_weights"] == 49 * 32 + 32 * 32 + 2 * 32 * 4
    assert set(record["success"]) == set(multitask.MT10_TASKS)
    assert all(0.0 <= value <= 1.0 for value in record["success"].values())


def test_result_files_of_different_networks_and_optimizers_differ(multitask) -> None:
    def settings(**changes: object) -> argparse.Namespace:
        defaults = dict(
            net_arch=[256, 256],
            steps=300_000,
            fused_adam=False,
            balanced=False,
            max_warmup_fraction=None,
            no_merge=False,
            networks=["all"],
        )
        return argparse.Namespace(**{**defaults, **changes})

    def names(net_arch: list[int], fused_adam: bool) -> tuple[str, str]:
        args = settings(net_arch=net_arch, fused_adam=fused_adam)
        return multitask.run_file_name("dapd", 1, args), multitask.speed_file_name(args)

    assert names([256, 256], False) == ("dapd_seed1_300000.json", "speed.json")  # the stored default runs
    assert names([400, 400, 400], False) == ("dapd_seed1_300000_400x400x400.json", "speed_400x400x400.json")
    assert names([400, 400, 400], True) == ("dapd_seed1_300000_400x400x400.json", "speed_400x400x400_fused.json")
    balanced = settings(net_arch=[400, 400, 400], fused_adam=True, balanced=True)
    assert multitask.run_file_name("dapd", 1, balanced) == "dapd_seed1_300000_400x400x400_balanced.json"
    budget = settings(net_arch=[400, 400, 400], max_warmup_fraction=0.1)
    assert multitask.run_file_name("dapd", 0, budget) == "dapd_seed0_300000_400x400x400_warmup0.1.json"
    apart = settings(net_arch=[400, 400, 400], no_merge=True)
    assert multitask.run_file_name("dapd", 0, apart) == "dapd_seed0_300000_400x400x400_nomerge.json"
    assert multitask.run_file_name("dense", 0, apart) == "dense_seed0_300000_400x400x400.json"
    actor = settings(networks=["actor"])
    assert multitask.run_file_name("dapd", 0, actor) == "dapd_seed0_300000_actor.json"
    assert multitask.run_file_name("dense", 0, actor) == "dense_seed0_300000.json"  # dense rescores nothing


def test_speed_run_splits_each_gradient_step_into_optimizer_soft_update_and_the_rest(multitask, tmp_path: Path) -> None:
    args = ["--speed", "--net-arch", "32", "32", "--batch-size", "32", "--train-steps", "3", "--repeats", "1"]
    multitask.main([*args, "--results", str(tmp_path)])
    record = json.loads((tmp_path / "speed_32x32.json").read_text())
    assert set(record["ratio_to_dense"]) == {"dense", "warm-up", "merged"} and record["ratio_to_dense"]["dense"] == 1.0
    for parts in record["milliseconds_per_step"].values():
        assert set(parts) == {"total", "optimizer step", "target soft update", "rest"}
        assert parts["optimizer step"] > 0 and parts["target soft update"] > 0 and parts["rest"] > 0
        assert parts["optimizer step"] + parts["target soft update"] + parts["rest"] == pytest.approx(parts["total"])
