"""Training speed of pathway policies against the stock dense policy, in the same run.

For each algorithm, dense (``MlpPolicy``), pathway (``PathwayPolicy``, fixed mask) and
pathway with DAPD rescoring at every episode end are trained in turn, ``--repeats`` times
each, and the environment steps per second of a timed ``learn`` call (after an untimed
warm-up that fills the buffer) are compared by their medians.

    python benchmarks/overhead.py                 # SAC HalfCheetah-v5, PPO and DQN CartPole-v1
    python benchmarks/overhead.py --algos sac --repeats 7 --steps 2000
    python benchmarks/overhead.py --train-steps 200 # also: gradient steps alone (SAC train()), interleaved

The whole-``learn`` figures include environment steps and are noisy on a shared machine; the
``--train-steps`` figures time ``model.train`` alone on the same filled replay buffer, dense and
pathway models alternating within every repeat, so they isolate the cost of masking.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_pathways import DAPDCallback

SETUPS: dict[str, tuple[type[BaseAlgorithm], str, dict[str, Any], int]] = {
    # algo name: (class, env id, kwargs, warm-up steps)
    "sac": (SAC, "HalfCheetah-v5", dict(learning_starts=1_000), 1_200),
    "ppo": (PPO, "CartPole-v1", dict(n_steps=1024), 1_024),
    "dqn": (DQN, "CartPole-v1", dict(learning_starts=1_000, train_freq=1), 1_200),
}


def variants() -> dict[str, tuple[str, Any]]:
    """Variant name -> (policy alias, callback factory)."""
    return {
        "dense": ("MlpPolicy", lambda: None),
        "pathway": ("PathwayPolicy", lambda: None),
        "pathway+dapd": ("PathwayPolicy", lambda: DAPDCallback()),
    }


def steps_per_second(algo: str, policy: str, callback: Any, steps: int, seed: int) -> float:
    algo_class, env_id, kwargs, warmup = SETUPS[algo]
    model = algo_class(policy, env_id, seed=seed, device="cpu", **kwargs)
    model.learn(warmup, callback=callback)
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False, callback=callback)
    return steps / (time.perf_counter() - start)


def gradient_steps_per_second(train_steps: int, repeats: int) -> dict[str, list[float]]:
    """SAC on HalfCheetah-v5: ``model.train(train_steps)`` for dense and pathway models sharing
    one filled replay buffer, alternating within every repeat. ``pathway+reset`` has just had
    every mask replaced, so every weight that changed state carries its own Adam
    bias-correction count (the worst case of DAPD's warm-up for the optimizer step hook)."""
    models = {
        name: SAC(policy, "HalfCheetah-v5", learning_starts=1_000, seed=0, device="cpu")
        for name, policy in (("dense", "MlpPolicy"), ("pathway", "PathwayPolicy"), ("pathway+reset", "PathwayPolicy"))
    }
    models["dense"].learn(1_200)
    reset = models["pathway+reset"]
    _train_on(reset, models["dense"].replay_buffer)
    reset.train(gradient_steps=10, batch_size=reset.batch_size)  # Adam state exists
    for network in reset.policy.pathways().values():
        network.set_masks(reset.policy._random_masks(network))
    return time_train_alternating(models, models["dense"].replay_buffer, train_steps, repeats)


def _train_on(model: Any, replay_buffer: Any) -> None:
    """Let ``model.train`` sample ``replay_buffer`` (logger and schedules set, as learn() does)."""
    model.replay_buffer = replay_buffer
    model._setup_learn(1, reset_num_timesteps=False)


def time_train_alternating(
    models: dict[str, Any], replay_buffer: Any, train_steps: int, repeats: int
) -> dict[str, list[float]]:
    """Gradient steps per second of ``model.train(train_steps)`` for every model, all sampling
    ``replay_buffer``, the models alternating within every repeat."""
    for model in models.values():
        _train_on(model, replay_buffer)
    samples: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.train(gradient_steps=train_steps, batch_size=model.batch_size)
            samples[name].append(train_steps / (time.perf_counter() - start))
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="*", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1_500, help="timed environment steps per repeat")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one core per run)")
    parser.add_argument("--train-steps", type=int, default=0, help="also time SAC train() alone (0: skip)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/overhead.json"))
    args = parser.parse_args(argv)
    th.set_num_threads(args.threads)
    train_only: dict[str, Any] = {}
    if args.train_steps:
        train_samples = gradient_steps_per_second(args.train_steps, args.repeats)
        train_medians = {name: statistics.median(values) for name, values in train_samples.items()}
        ratios = {name: value / train_medians["dense"] for name, value in train_medians.items()}
        train_only = {
            "median_gradient_steps_per_second": train_medians,
            "pathway_ratio": ratios["pathway"],
            "ratio_to_dense": ratios,
            "samples": train_samples,
        }
        row = "  ".join(f"{name} {value:.1f} ({ratios[name]:.3f})" for name, value in train_medians.items())
        print(f"sac  train() gradient steps/s: {row}", flush=True)

    results: dict[str, dict[str, Any]] = {}
    for algo in args.algos:
        samples: dict[str, list[float]] = {name: [] for name in variants()}
        for repeat in range(args.repeats):
            for name, (policy, make_callback) in variants().items():
                samples[name].append(steps_per_second(algo, policy, make_callback(), args.steps, seed=repeat))
        medians = {name: statistics.median(values) for name, values in samples.items()}
        results[algo] = {
            "env": SETUPS[algo][1],
            "median_steps_per_second": medians,
            "ratio_to_dense": {name: medians[name] / medians["dense"] for name in medians},
            "samples": samples,
        }
        row = "  ".join(f"{name} {value:8.1f} ({value / medians['dense']:.3f})" for name, value in medians.items())
        print(f"{algo:4s} {SETUPS[algo][1]:15s} steps/s: {row}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {"repeats": args.repeats, "steps": args.steps, "results": results, "sac_train_only": train_only}
    args.output.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
