r"""MetaWorld MT10: multi-task SAC with one DAPD pathway per task against dense multi-task SAC.

Both methods see the same environment (one sub-env per task, task one-hot in the
observation, :func:`sb3_pathways.multitask.make_mt10_env`) and the same SAC settings; the
pathway method uses ``PathwayPolicy`` with ``n_tasks=10`` at ``--sparsity`` and
``MultiTaskDAPDCallback``. At the end every task is evaluated on ``--eval-episodes``
deterministic episodes; an episode succeeds if MetaWorld reports success at any step (the
benchmark's convention). One JSON per run under ``--results``, runs already there are not
redone.

    python benchmarks/multitask.py                       # the CPU budget: 100k steps (10k per task), seed 0
    python benchmarks/multitask.py --steps 20000000 --net-arch 400 400 400 \
        --batch-size 1280 --learning-starts 15000 --seeds 0 1 2         # the paper's budget
    python benchmarks/multitask.py --speed --repeats 5   # gradient steps/s: dense, warm-up, merged
    python benchmarks/multitask.py --seeds 0 1 --steps 300000 --net-arch 400 400 400 \
        --max-warmup-steps 150000 --eval-episodes 10 --fused-adam       # the paper's network, CPU budget
    python benchmarks/multitask.py ... --balanced        # every task the same share of each batch
    python benchmarks/multitask.py ... --max-warmup-fraction 0.1   # freeze after a tenth of the budget
    python benchmarks/multitask.py ... --no-merge       # DAPD keeps the task copies apart after the freeze
    python benchmarks/multitask.py ... --networks actor # DAPD rescores the actor; the critic keeps its ERK masks

``--speed`` times ``model.train`` of dense multi-task SAC and of the pathway policy during
warm-up (ten weight copies) and after merging, on one shared replay buffer, alternating within
every repeat, and compares the medians. It also splits one more ``train`` call per model into
the optimizers' steps, the target networks' soft update and the rest (the networks' forward
and backward passes), in milliseconds per gradient step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from learning import package_versions
from overhead import time_train_alternating
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.vec_env import VecEnv

from sb3_pathways.masking.pathway import merge_task_weights
from sb3_pathways.multitask import (
    MT10_TASKS,
    MultiTaskDAPDCallback,
    TaskBalancedReplayBuffer,
    make_mt10_env,
    task_active_weights,
    task_overlap,
)

METHODS = ("dense", "dapd")
DEFAULT_NET_ARCH = (256, 256)


class TrainingSuccess(BaseCallback):
    """Records, for every finished training episode, its step, task and whether it succeeded
    at any step."""

    def __init__(self) -> None:
        super().__init__()
        self.episodes: list[tuple[int, int, bool]] = []
        self._succeeded: np.ndarray | None = None

    def _on_step(self) -> bool:
        infos, dones = self.locals["infos"], self.locals["dones"]
        if self._succeeded is None:
            self._succeeded = np.zeros(len(infos), dtype=bool)
        for task, (info, done) in enumerate(zip(infos, dones)):
            self._succeeded[task] |= bool(info.get("is_success", 0.0))
            if done:
                self.episodes.append((self.num_timesteps, task, bool(self._succeeded[task])))
                self._succeeded[task] = False
        return True


def evaluate_tasks(model: Any, episodes: int, env: VecEnv) -> dict[str, float]:
    """Success rate of every task over deterministic episodes (success at any step) on ``env``,
    one sub-env per MT10 task (building the ten MetaWorld tasks takes seconds: callers that
    evaluate often keep one env)."""
    successes = np.zeros(10)
    for _ in range(episodes):
        observations = env.reset()
        succeeded = np.zeros(10, dtype=bool)
        finished = np.zeros(10, dtype=bool)
        while not finished.all():
            actions, _ = model.predict(observations, deterministic=True)
            observations, _, dones, infos = env.step(actions)
            for index, info in enumerate(infos):
                if not finished[index]:
                    succeeded[index] |= bool(info.get("is_success", 0.0))
                    finished[index] |= bool(dones[index])
        successes += succeeded
    return {task: float(value) / episodes for task, value in zip(MT10_TASKS, successes)}


def network_suffix(args: argparse.Namespace) -> str:
    """``""`` for the default 2x256 network, else ``_<arch>`` (e.g. ``_400x400x400``): result
    files of different networks never collide."""
    return "" if tuple(args.net_arch) == DEFAULT_NET_ARCH else "_" + "x".join(map(str, args.net_arch))


def run_file_name(method: str, seed: int, args: argparse.Namespace) -> str:
    """``<method>_seed<seed>_<steps><network suffix>[_balanced][_warmup<fraction>][_nomerge][_<networks>].json``
    (the last when DAPD rescores only some networks). Fused
    Adam computes the same update, so it is recorded in the run (``fused_adam``) but does not
    name a run of its own."""
    balanced = "_balanced" if args.balanced else ""
    warmup = "" if args.max_warmup_fraction is None else f"_warmup{args.max_warmup_fraction:g}"
    no_merge = "_nomerge" if args.no_merge and method == "dapd" else ""
    rescored = "" if args.networks == ["all"] or method != "dapd" else "_" + "-".join(args.networks)
    return f"{method}_seed{seed}_{args.steps}{network_suffix(args)}{balanced}{warmup}{no_merge}{rescored}.json"


def speed_file_name(args: argparse.Namespace) -> str:
    """``speed<network suffix>[_fused].json``."""
    return f"speed{network_suffix(args)}{'_fused' if args.fused_adam else ''}.json"


def optimizer_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``policy_kwargs`` entries for the optimizer: fused Adam (one kernel per parameter
    instead of one per operation) when ``--fused-adam`` is given, for every method alike."""
    return {"optimizer_kwargs": {"fused": True}} if args.fused_adam else {}


def run(method: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    env = make_mt10_env(n_envs=10, seed=seed)
    policy_kwargs: dict[str, Any] = {"net_arch": list(args.net_arch), **optimizer_settings(args)}
    training_success = TrainingSuccess()
    callbacks: list[BaseCallback] = [training_success]
    if method == "dapd":
        policy_kwargs.update(n_tasks=10, sparsity=args.sparsity)
        callbacks.append(
            MultiTaskDAPDCallback(
                moving_average=5,
                freeze_metric="success",
                freeze_threshold=0.9,
                max_warmup_steps=args.max_warmup_steps,
                max_warmup_fraction=args.max_warmup_fraction,
                merge=not args.no_merge,
                networks="all" if args.networks == ["all"] else args.networks,
            )
        )
    model = SAC(
        "PathwayPolicy" if method == "dapd" else "MlpPolicy",
        env,
        batch_size=args.batch_size,
        learning_starts=args.learning_starts,
        learning_rate=3e-4,
        buffer_size=min(1_000_000, args.steps),
        replay_buffer_class=TaskBalancedReplayBuffer if args.balanced else None,
        seed=seed,
        device="cpu",
        policy_kwargs=policy_kwargs,
    )
    start = time.perf_counter()
    model.learn(args.steps, callback=CallbackList(callbacks))
    seconds = time.perf_counter() - start
    eval_env = make_mt10_env(n_envs=10, seed=seed + 10_000)
    success = evaluate_tasks(model, args.eval_episodes, eval_env)
    eval_env.close()
    actor_total = sum(
        p.numel() for name, p in model.policy.actor.named_parameters() if name.endswith("weight") and p.dim() == 2
    )
    record: dict[str, Any] = {
        "method": method,
        "seed": seed,
        "steps": args.steps,
        "net_arch": list(args.net_arch),
        "batch_size": args.batch_size,
        "train_seconds": seconds,
        "success": success,
        "mean_success": float(np.mean(list(success.values()))),
        "actor_weights": actor_total,
        "max_warmup_steps": args.max_warmup_steps,
        "max_warmup_fraction": args.max_warmup_fraction,
        "fused_adam": args.fused_adam,
        "task_balanced_batches": args.balanced,
        "merge": not args.no_merge,
        "rescored_networks": args.networks,
        "training_episodes": training_success.episodes,
        "versions": package_versions("metaworld"),
    }
    if method == "dapd":
        active = task_active_weights(model)
        record["active_actor_weights_per_task"] = {MT10_TASKS[task]: value["actor"] for task, value in active.items()}
        record["task_overlap"] = task_overlap(model).round(4).tolist()
        state = model.pathway_discovery
        record["task_frozen_steps"] = {MT10_TASKS[task]: step for task, step in state.task_frozen_steps.items()}
        record["merged"] = bool(state.frozen)
    return record


def training_speed(args: argparse.Namespace) -> dict[str, Any]:
    """Gradient steps per second of dense multi-task SAC and of the pathway policy before and
    after merging (see the module documentation)."""
    env = make_mt10_env(n_envs=10, seed=0)
    settings: dict[str, Any] = {"batch_size": args.batch_size, "learning_starts": 2_000, "seed": 0, "device": "cpu"}
    dense_kwargs = {"net_arch": list(args.net_arch), **optimizer_settings(args)}
    pathway_kwargs = {**dense_kwargs, "n_tasks": 10, "sparsity": args.sparsity}
    models = {
        "dense": SAC("MlpPolicy", env, policy_kwargs=dense_kwargs, **settings),
        "warm-up": SAC("PathwayPolicy", env, policy_kwargs=pathway_kwargs, **settings),
        "merged": SAC("PathwayPolicy", env, policy_kwargs=pathway_kwargs, **settings),
    }
    for network in models["merged"].policy.pathways().values():
        merge_task_weights(network)
    models["dense"].learn(2_000)
    samples = time_train_alternating(models, models["dense"].replay_buffer, args.train_steps, args.repeats)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    breakdown = {name: step_breakdown(model, args.train_steps) for name, model in models.items()}
    return {
        "net_arch": list(args.net_arch),
        "batch_size": args.batch_size,
        "train_steps": args.train_steps,
        "repeats": args.repeats,
        "fused_adam": args.fused_adam,
        "median_gradient_steps_per_second": medians,
        "ratio_to_dense": {name: value / medians["dense"] for name, value in medians.items()},
        "milliseconds_per_step": breakdown,
        "samples": samples,
        "versions": package_versions("metaworld"),
    }


def step_breakdown(model: SAC, train_steps: int) -> dict[str, float]:
    """Milliseconds per gradient step of one ``model.train(train_steps)``: in all, in the
    optimizers' ``step``, in the target networks' soft update, and the rest."""
    import stable_baselines3.sac.sac as sac_module

    spent = {"optimizer step": 0.0, "target soft update": 0.0}

    def timed(part: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - start

        return wrapper

    optimizers = [
        model.actor.optimizer,
        model.critic.optimizer,
        *([model.ent_coef_optimizer] if model.ent_coef_optimizer else []),
    ]
    for optimizer in optimizers:
        optimizer.step = timed("optimizer step", optimizer.step)  # type: ignore[method-assign]
    soft_update = sac_module.polyak_update
    sac_module.polyak_update = timed("target soft update", soft_update)
    try:
        start = time.perf_counter()
        model.train(gradient_steps=train_steps, batch_size=model.batch_size)
        total = time.perf_counter() - start
    finally:
        sac_module.polyak_update = soft_update
        for optimizer in optimizers:
            del optimizer.step  # the class's own method again
    parts = {"total": total, **spent, "rest": total - sum(spent.values())}
    return {part: 1000 * seconds / train_steps for part, seconds in parts.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=100_000, help="environment steps over all tasks")
    parser.add_argument("--net-arch", type=int, nargs="+", default=list(DEFAULT_NET_ARCH))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-starts", type=int, default=5_000)
    parser.add_argument("--sparsity", type=float, default=0.95)
    parser.add_argument("--max-warmup-steps", type=int, default=None, help="freeze every task by this step")
    parser.add_argument(
        "--max-warmup-fraction", type=float, default=None, help="freeze every task after this share of the steps (DAPD)"
    )
    parser.add_argument(
        "--no-merge", action="store_true", help="DAPD keeps each task's weight copy after the freeze (no merge)"
    )
    parser.add_argument(
        "--networks",
        nargs="+",
        default=["all"],
        help="networks DAPD rescores: all (default), or names such as actor (the others keep their ERK masks)",
    )
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument(
        "--fused-adam", action="store_true", help="fused Adam for every method (same update, fewer CPU passes; torch>=2.4)"
    )
    parser.add_argument(
        "--balanced", action="store_true", help="task-balanced batches (TaskBalancedReplayBuffer) for every method"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/multitask"))
    parser.add_argument("--speed", action="store_true", help="time gradient steps instead of training runs")
    parser.add_argument("--train-steps", type=int, default=100, help="gradient steps per timing (--speed)")
    parser.add_argument("--repeats", type=int, default=5, help="timings per variant (--speed)")
    args = parser.parse_args(argv)
    th.set_num_threads(args.threads)
    args.results.mkdir(parents=True, exist_ok=True)
    if args.speed:
        record = training_speed(args)
        (args.results / speed_file_name(args)).write_text(json.dumps(record, indent=2))
        for name, value in record["median_gradient_steps_per_second"].items():
            parts = ", ".join(f"{part} {ms:.1f}" for part, ms in record["milliseconds_per_step"][name].items())
            print(f"{name:8s} {value:6.1f} gradient steps/s ({record['ratio_to_dense'][name]:.2f} of dense); ms/step: {parts}")
        return
    for seed in args.seeds:
        for method in args.methods:
            path = args.results / run_file_name(method, seed, args)
            if path.exists():
                record = json.loads(path.read_text())
            else:
                record = run(method, seed, args)
                path.write_text(json.dumps(record, indent=2))
            active = record.get("active_actor_weights_per_task")
            per_task = (
                f"{int(np.mean(list(active.values())))} of {record['actor_weights']}"
                if active
                else str(record["actor_weights"])
            )
            print(
                f"{method:5s} seed {seed}: mean success {record['mean_success']:.2f}; actor weights per task {per_task}; "
                f"{record['train_seconds'] / 60:.1f} min",
                flush=True,
            )


if __name__ == "__main__":
    main()
