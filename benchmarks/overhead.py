"""Training speed of pathway policies against the stock dense policy, in the same run.

For each algorithm, dense (``MlpPolicy``), pathway (``PathwayPolicy``, fixed mask) and
pathway with DAPD rescoring at every episode end are trained in turn, ``--repeats`` times
each, and the environment steps per second of a timed ``learn`` call (after an untimed
warm-up that fills the buffer) are compared by their medians.

    python benchmarks/overhead.py                 # SAC HalfCheetah-v5, PPO and DQN CartPole-v1
    python benchmarks/overhead.py --algos dqn-atari --repeats 3  # DQN Breakout, hyperparams/dqn.yml's DAPD
    python benchmarks/overhead.py --algos sac --repeats 7 --steps 2000
    python benchmarks/overhead.py --train-steps 200 # also: gradient steps alone (SAC train()), interleaved
    python benchmarks/overhead.py --algos sac --train-steps 500 --device cuda   # the same on a GPU

The whole-``learn`` figures include environment steps and are noisy on a shared machine; the
``--train-steps`` figures time ``model.train`` alone on the same filled replay buffer, dense and
pathway models alternating within every repeat, so they isolate the cost of masking.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch as th
import yaml
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

from sb3_pathways import DAPDCallback

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setup:
    """
    One algorithm's timing setup.

    :param algo: the algorithm class
    :param env: environment id
    :param kwargs: algorithm keyword arguments
    :param warmup: untimed environment steps before the timed ``learn`` (fills the buffer;
        the initial pathway discovery happens there)
    :param policies: the dense and the pathway policy alias
    :param dapd_kwargs: ``DAPDCallback`` arguments of the ``pathway+dapd`` variant
    :param timed_steps: timed environment steps (``None``: ``--steps``); a multiple of the
        DAPD update interval when it counts steps, so the timed window holds whole periods
    :param atari: make the env with SB3's Atari wrappers and a 4-frame stack
    """

    algo: type[BaseAlgorithm]
    env: str
    kwargs: dict[str, Any]
    warmup: int
    policies: tuple[str, str] = ("MlpPolicy", "PathwayPolicy")
    dapd_kwargs: dict[str, Any] = field(default_factory=dict)
    timed_steps: int | None = None
    atari: bool = False

    def make_env(self, seed: int) -> Any:
        if not self.atari:
            return self.env
        import ale_py  # the "atari" extra
        import gymnasium as gym

        gym.register_envs(ale_py)
        return VecFrameStack(make_atari_env(self.env, n_envs=1, seed=seed), n_stack=4)


def _breakout_entry() -> dict[str, Any]:
    with open(ROOT / "hyperparams" / "dqn.yml") as file:
        return dict(yaml.safe_load(file)["BreakoutNoFrameskip-v4"])


def _breakout_dapd_kwargs() -> dict[str, Any]:
    return dict(_breakout_entry()["callback"][0]["sb3_pathways.DAPDCallback"])


#: timed steps of the Atari setup: one DAPD rescoring falls in each timed window
ATARI_TIMED_STEPS = 2_000


def _atari_setup() -> Setup:
    """DQN on Breakout with the settings of ``hyperparams/dqn.yml``, a 10k replay buffer and
    1k initial steps so the run fits a short benchmark. DAPD rescores every
    ``ATARI_TIMED_STEPS`` here (one rescoring per timed window); the cost at the shipped
    interval is projected from it (see :func:`projected_ratio`)."""
    entry = _breakout_entry()
    kwargs = {key: entry[key] for key in ("learning_rate", "batch_size", "target_update_interval", "train_freq")}
    dapd_kwargs = dict(_breakout_dapd_kwargs(), update_freq=ATARI_TIMED_STEPS)
    return Setup(
        DQN,
        "BreakoutNoFrameskip-v4",
        dict(kwargs, buffer_size=10_000, learning_starts=1_000, optimize_memory_usage=False),
        1_200,
        policies=("CnnPolicy", "PathwayCnnPolicy"),
        dapd_kwargs=dapd_kwargs,
        timed_steps=ATARI_TIMED_STEPS,
        atari=True,
    )


def projected_ratio(medians: dict[str, float], timed_steps: int, update_freq: int) -> float:
    """
    Steps per second of ``pathway+dapd`` relative to dense at another rescoring interval: the
    measured cost of one rescoring (the extra time of the ``pathway+dapd`` window over the
    ``pathway`` one, which has one rescoring per ``timed_steps``) spread over ``update_freq``.
    """
    rescoring_seconds = timed_steps / medians["pathway+dapd"] - timed_steps / medians["pathway"]
    seconds_per_step = 1.0 / medians["pathway"] + rescoring_seconds / update_freq
    return 1.0 / seconds_per_step / medians["dense"]


SETUPS: dict[str, Setup] = {
    "sac": Setup(SAC, "HalfCheetah-v5", dict(learning_starts=1_000), 1_200),
    "ppo": Setup(PPO, "CartPole-v1", dict(n_steps=1024), 1_024),
    "dqn": Setup(DQN, "CartPole-v1", dict(learning_starts=1_000, train_freq=1), 1_200),
}
#: set up on demand (needs the "atari" extra): python benchmarks/overhead.py --algos dqn-atari
OPTIONAL_SETUPS: dict[str, Any] = {"dqn-atari": _atari_setup}


def variants(setup: Setup) -> dict[str, tuple[str, Any]]:
    """Variant name -> (policy alias, callback factory)."""
    dense, pathway = setup.policies
    return {
        "dense": (dense, lambda: None),
        "pathway": (pathway, lambda: None),
        "pathway+dapd": (pathway, lambda: DAPDCallback(**setup.dapd_kwargs)),
    }


def _synchronize(device: str) -> None:
    if th.device(device).type == "cuda":
        th.cuda.synchronize()


def steps_per_second(setup: Setup, policy: str, callback: Any, steps: int, seed: int, device: str = "cpu") -> float:
    model = setup.algo(policy, setup.make_env(seed), seed=seed, device=device, **setup.kwargs)
    model.learn(setup.warmup, callback=callback)
    _synchronize(device)
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False, callback=callback)
    _synchronize(device)
    return steps / (time.perf_counter() - start)


def gradient_steps_per_second(train_steps: int, repeats: int, device: str = "cpu") -> dict[str, list[float]]:
    """SAC on HalfCheetah-v5: ``model.train(train_steps)`` for dense and pathway models sharing
    one filled replay buffer, alternating within every repeat. ``pathway+reset`` has just had
    every mask replaced, so every weight that changed state carries its own Adam
    bias-correction count (the worst case of DAPD's warm-up for the optimizer step hook)."""
    models = {
        name: SAC(policy, "HalfCheetah-v5", learning_starts=1_000, seed=0, device=device)
        for name, policy in (("dense", "MlpPolicy"), ("pathway", "PathwayPolicy"), ("pathway+reset", "PathwayPolicy"))
    }
    models["dense"].learn(1_200)
    reset = models["pathway+reset"]
    _train_on(reset, models["dense"].replay_buffer)
    reset.train(gradient_steps=10, batch_size=reset.batch_size)  # Adam state exists
    for network in reset.policy.pathways().values():
        network.set_masks(reset.policy._random_masks(network))
    return time_train_alternating(models, models["dense"].replay_buffer, train_steps, repeats, device)


def _train_on(model: Any, replay_buffer: Any) -> None:
    """Let ``model.train`` sample ``replay_buffer`` (logger and schedules set, as learn() does)."""
    model.replay_buffer = replay_buffer
    model._setup_learn(1, reset_num_timesteps=False)


def time_train_alternating(
    models: dict[str, Any], replay_buffer: Any, train_steps: int, repeats: int, device: str = "cpu"
) -> dict[str, list[float]]:
    """Gradient steps per second of ``model.train(train_steps)`` for every model, all sampling
    ``replay_buffer``, the models alternating within every repeat."""
    for model in models.values():
        _train_on(model, replay_buffer)
    samples: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            _synchronize(device)
            start = time.perf_counter()
            model.train(gradient_steps=train_steps, batch_size=model.batch_size)
            _synchronize(device)
            samples[name].append(train_steps / (time.perf_counter() - start))
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="*", default=list(SETUPS), choices=[*SETUPS, *OPTIONAL_SETUPS])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1_500, help="timed environment steps per repeat")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one core per run)")
    parser.add_argument("--train-steps", type=int, default=0, help="also time SAC train() alone (0: skip)")
    parser.add_argument("--device", default="cpu", help="torch device of every model (default cpu; e.g. cuda)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/overhead.json"))
    args = parser.parse_args(argv)
    if th.device(args.device).type == "cuda" and not th.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    th.set_num_threads(args.threads)
    train_only: dict[str, Any] = {}
    if args.train_steps:
        train_samples = gradient_steps_per_second(args.train_steps, args.repeats, args.device)
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
        setup = SETUPS[algo] if algo in SETUPS else OPTIONAL_SETUPS[algo]()
        steps = setup.timed_steps or args.steps
        samples: dict[str, list[float]] = {name: [] for name in variants(setup)}
        for repeat in range(args.repeats):
            for name, (policy, make_callback) in variants(setup).items():
                samples[name].append(steps_per_second(setup, policy, make_callback(), steps, seed=repeat, device=args.device))
        medians = {name: statistics.median(values) for name, values in samples.items()}
        results[algo] = {
            "env": setup.env,
            "timed_steps": steps,
            "dapd_kwargs": setup.dapd_kwargs,
            "median_steps_per_second": medians,
            "ratio_to_dense": {name: medians[name] / medians["dense"] for name in medians},
            "samples": samples,
        }
        row = "  ".join(f"{name} {value:8.1f} ({value / medians['dense']:.3f})" for name, value in medians.items())
        print(f"{algo:9s} {setup.env:22s} steps/s: {row}", flush=True)
        if setup.atari:
            shipped = int(_breakout_dapd_kwargs()["update_freq"])
            projected = projected_ratio(medians, steps, shipped)
            results[algo]["projected_ratio_at_shipped_update_freq"] = {"update_freq": shipped, "ratio_to_dense": projected}
            print(f"{'':9s} pathway+dapd at the shipped update_freq {shipped}: {projected:.3f} of dense (projected)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "device": args.device,
        "repeats": args.repeats,
        "steps": args.steps,
        "results": results,
        "sac_train_only": train_only,
    }
    args.output.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
