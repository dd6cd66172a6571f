"""benchmarks/overhead.py: the projection of a rescoring's cost to another interval."""

from __future__ import annotations

import pytest


def test_rescoring_cost_is_spread_over_the_update_interval(load_benchmark) -> None:
    overhead = load_benchmark("overhead")
    # one rescoring per 2000-step window costs 25 s - 20 s = 5 s; every 10,000 steps it adds
    # 0.5 ms to the pathway's 10 ms per step
    medians = {"dense": 110.0, "pathway": 100.0, "pathway+dapd": 80.0}
    assert overhead.projected_ratio(medians, 2000, 10_000) == pytest.approx(1 / 0.0105 / 110)
    assert overhead.projected_ratio(medians, 2000, 2000) == pytest.approx(80.0 / 110)


def test_atari_setup_reads_the_shipped_hyperparameters(load_benchmark) -> None:
    overhead = load_benchmark("overhead")
    setup = overhead._atari_setup()
    assert setup.policies == ("CnnPolicy", "PathwayCnnPolicy")
    assert setup.dapd_kwargs["update_freq"] == setup.timed_steps == overhead.ATARI_TIMED_STEPS
    assert overhead._breakout_dapd_kwargs()["update_freq"] == 10_000
    assert setup.kwargs["train_freq"] == 4 and setup.kwargs["batch_size"] == 32
