"""MetaWorld MT10 offline: pathway BCQ and IQL against the dense multi-task (MT) and multi-head
multi-task (MHMT) baselines, on the same dataset and gradient-step budget.

Methods, for each algorithm:

- ``pathway``: ``PathwayPolicy`` with ``n_tasks=10`` at ``--sparsity`` (95%), every task's
  pathway found once on its own transitions by ``SingleShotPathways`` before the first
  gradient step and never changed. The pathways are on the actor and the critic (IQL: also its
  value network); BCQ's VAE stays dense and shared, the policy's default;
- ``pathway-sparse-vae`` and ``pathway-cover-sparse-vae`` (BCQ): ``pathway`` and
  ``pathway-cover`` with the VAE at ``--sparsity`` too, a pathway per task (the package's
  default before it measured the dense VAE far better);
- ``pathway-cover``: the same, with ``SingleShotPathways(cover_inputs=True)``: every input
  unit of every layer keeps its best connection, so no task's pathway loses an observation
  feature;
- ``pathway-balanced``: the same, with ``SingleShotPathways(within_layer="balanced")``: each
  layer's top-k of scores balanced over its units, so that the connections spread over the
  units instead of gathering on the few with large errors and activations;
- ``mt``: ``MlpPolicy``, one dense network for all tasks (the task one-hot in the observation);
- ``mhmt``: ``MultiHeadPolicy``, one dense network with one output head per task.

The dataset is a local Minari dataset of MetaWorld's scripted policies
(:func:`sb3_pathways.offline.collect_scripted`), made the first time it is needed. Each run
is evaluated every ``eval_freq`` gradient steps and at the end on deterministic episodes of
every task (success: MetaWorld reports success at any step of the episode) and records the
active weights and forward FLOPs per sample of every network for one task. One JSON per run
under ``--results``; runs already there are not redone, so a stopped benchmark resumes.

    python benchmarks/offline.py --preset cpu --commit            # 3 seeds, ~30 min per seed here
    python benchmarks/offline.py --preset cpu --algos iql --seeds 0   # one algorithm, one seed
    python benchmarks/offline.py --preset cpu --algos iql --seeds 0 --learning-rate 1e-3   # another step size
    python benchmarks/offline.py --preset sizes --commit          # BCQ on 10k / 50k / 100k transitions
    python benchmarks/offline.py --preset sizes --episodes-per-task 20 --seeds 1   # 100k only, one seed
    python benchmarks/offline.py --preset paper                   # 1M gradient steps, 5 seeds
    python benchmarks/offline.py --preset cpu --summarise         # table and figure of the runs so far
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from learning import package_versions
from multitask import evaluate_tasks
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from sb3_pathways.deploy.flops import forward_flops
from sb3_pathways.multitask import MT10_TASKS, make_mt10_env, task_active_weights
from sb3_pathways.offline import BCQ, IQL, SingleShotPathways, collect_scripted, scripted_dataset_id
from sb3_pathways.offline.base import OfflineAlgorithm, check_reward_scale, dataset_reward_scale
from sb3_pathways.offline.collect import QUALITIES
from sb3_pathways.offline.multi_head import TaskHeads

ROOT = Path(__file__).resolve().parent.parent
ALGOS: dict[str, type[OfflineAlgorithm]] = {"bcq": BCQ, "iql": IQL}
#: pathway methods -> their SingleShotPathways arguments
PATHWAY_METHODS: dict[str, dict[str, Any]] = {
    "pathway": {},
    "pathway-cover": {"cover_inputs": True},
    "pathway-balanced": {"within_layer": "balanced"},
    "pathway-sparse-vae": {},
    "pathway-cover-sparse-vae": {"cover_inputs": True},
}
#: pathway methods -> the networks they make sparse although the policy keeps them dense by default
SPARSE_TOO: dict[str, tuple[str, ...]] = {"pathway-sparse-vae": ("vae",), "pathway-cover-sparse-vae": ("vae",)}
METHODS = (*PATHWAY_METHODS, "mt", "mhmt")
POLICIES = {**dict.fromkeys(PATHWAY_METHODS, "PathwayPolicy"), "mt": "MlpPolicy", "mhmt": "MultiHeadPolicy"}

#: preset -> runs (algorithms x methods x dataset sizes x seeds), gradient steps and evaluation
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {
        "algos": ["iql", "bcq"],
        "episodes_per_task": [10],
        "steps": {"iql": 10_000, "bcq": 5_000},
        "seeds": [0, 1, 2],
        "eval_freq": 5_000,
        "eval_episodes": 5,
    },
    "sizes": {
        "algos": ["bcq"],
        "episodes_per_task": [2, 10, 20],  # 10k, 50k and 100k transitions
        "steps": {"bcq": 5_000},
        "seeds": [0, 1, 2],
        "eval_freq": 10_000,
        "eval_episodes": 5,
    },
    "paper": {
        "algos": ["iql", "bcq"],
        "episodes_per_task": [10],
        "steps": {"iql": 1_000_000, "bcq": 1_000_000},
        "seeds": [0, 1, 2, 3, 4],
        "eval_freq": 50_000,
        "eval_episodes": 10,
    },
}


class SuccessEvaluation(BaseCallback):
    """Every ``eval_freq`` gradient steps: the success rate of every task (see :func:`evaluate_tasks`)."""

    def __init__(self, eval_freq: int, episodes: int, env: VecEnv) -> None:
        super().__init__()
        self.eval_freq, self.episodes, self.env = eval_freq, episodes, env
        self.curve: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.num_timesteps % self.eval_freq == 0:
            success = evaluate_tasks(self.model, self.episodes, self.env)
            self.curve.append((self.num_timesteps, float(np.mean(list(success.values())))))
        return True


def dense_layer_costs(network: nn.Module) -> tuple[int, int]:
    """Weights and forward FLOPs per sample that one task uses in a dense network (of
    :class:`TaskHeads`, the task's own head only)."""
    weights = flops = 0
    for module in network.modules():
        if isinstance(module, nn.Linear):
            layer_weights, outputs = module.weight.numel(), module.out_features
        elif isinstance(module, TaskHeads):
            layer_weights, outputs = module.in_features * module.out_features, module.out_features
        else:
            continue
        weights += layer_weights
        flops += 2 * layer_weights + outputs
    return weights, flops


def task_costs(model: OfflineAlgorithm, method: str) -> dict[str, dict[str, float]]:
    """Network -> weights and forward FLOPs per sample one task uses, averaged over tasks."""
    if method not in PATHWAY_METHODS:
        return {
            name: dict(zip(("weights", "flops"), dense_layer_costs(getattr(model.policy, name))))
            for name in model.policy.trained_networks  # type: ignore[attr-defined]
        }
    active = task_active_weights(model)
    flops = [forward_flops(model, pathway=task) for task in active]
    return {
        name: {
            "weights": float(np.mean([active[task][name] for task in active])),
            "flops": float(np.mean([sum(layer.pathway for layer in per_task[name].values()) for per_task in flops])),
        }
        for name in active[0]
    }


def dataset_for(episodes_per_task: int, quality: str) -> str:
    """The local Minari dataset of these settings, collected if it is not there yet."""
    import minari

    dataset_id = scripted_dataset_id("MT10", quality, episodes_per_task)
    if dataset_id not in minari.list_local_datasets():
        print(f"collecting {dataset_id} ...", flush=True)
        collect_scripted("MT10", episodes_per_task, quality, dataset_id, verbose=1)
    return dataset_id


def run_name(
    algo: str,
    method: str,
    quality: str,
    episodes_per_task: int,
    seed: int,
    steps: int,
    reward_scale: float | str | None = None,
    learning_rate: float | None = None,
) -> str:
    """A run's file name; ``reward_scale`` and ``learning_rate`` only where they were given
    (``None``: the algorithm's default)."""
    rewards = "" if reward_scale is None else f"_rewards{reward_scale}"
    rate = "" if learning_rate is None else f"_lr{learning_rate:g}"
    return f"{algo}_{method}_{quality}{episodes_per_task}ep_seed{seed}_{steps}{rewards}{rate}.json"


def default_learning_rate(algo: str) -> float:
    """The algorithm's own default learning rate (IQL 3e-4, BCQ 1e-3)."""
    return float(inspect.signature(ALGOS[algo]).parameters["learning_rate"].default)


def reward_scale_argument(text: str) -> float | str:
    """``--reward-scale``: ``auto`` or a finite positive number (checked as the algorithms check it)."""
    try:
        scale: float | str = text if text == "auto" else float(text)
        check_reward_scale(scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a finite positive number, got {text!r}") from None
    return scale


def positive_float(text: str) -> float:
    """``--learning-rate``: a finite positive number."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):  # NaN fails it too
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {text!r}")
    return value


def pathway_sparsity(algo: str, method: str, sparsity: float) -> float | dict[str, float]:
    """The ``sparsity`` policy argument of a pathway method: ``sparsity`` (the policy's networks
    that are dense by default stay dense), or ``sparsity`` for every network where the method
    makes those sparse too."""
    sparse_too = SPARSE_TOO.get(method, ())
    networks = ALGOS[algo].policy_aliases["MlpPolicy"].trained_networks  # type: ignore[attr-defined]
    missing = [name for name in sparse_too if name not in networks]
    if missing:
        raise ValueError(f"method {method!r} makes {missing} sparse, which {algo} does not have (its networks: {networks})")
    return dict.fromkeys(networks, sparsity) if sparse_too else sparsity


def run(
    algo: str,
    method: str,
    dataset_id: str,
    seed: int,
    steps: int,
    eval_freq: int,
    eval_episodes: int,
    sparsity: float,
    eval_episode_steps: int | None = None,
    reward_scale: float | str | None = None,
    learning_rate: float | None = None,
) -> dict[str, Any]:
    """Train one model on the dataset and evaluate it (see the module documentation);
    ``eval_episode_steps`` shortens the evaluation episodes (MetaWorld's: 500);
    ``reward_scale`` and ``learning_rate``: the algorithm's arguments (``None``: its defaults)."""
    # the environment gives the spaces and serves every evaluation; offline, training never steps it
    env = make_mt10_env(n_envs=10, seed=seed + 10_000, max_episode_steps=eval_episode_steps)
    policy_kwargs: dict[str, Any] = {} if method == "mt" else {"n_tasks": len(MT10_TASKS)}
    if method in PATHWAY_METHODS:
        policy_kwargs["sparsity"] = pathway_sparsity(algo, method, sparsity)
    algo_kwargs: dict[str, Any] = {} if reward_scale is None else {"reward_scale": reward_scale}
    if learning_rate is not None:
        algo_kwargs["learning_rate"] = learning_rate
    model = ALGOS[algo](
        POLICIES[method], env, dataset=dataset_id, seed=seed, device="cpu", policy_kwargs=policy_kwargs, **algo_kwargs
    )
    evaluation = SuccessEvaluation(eval_freq, max(1, eval_episodes // 2), env)
    callbacks: list[BaseCallback] = [evaluation]
    if method in PATHWAY_METHODS:
        callbacks.insert(0, SingleShotPathways(**PATHWAY_METHODS[method]))
    start = time.perf_counter()
    model.learn(steps, callback=callbacks)
    seconds = time.perf_counter() - start
    success = evaluate_tasks(model, eval_episodes, env)
    env.close()
    return {
        "algo": algo,
        "method": method,
        "dataset": dataset_id,
        "dataset_transitions": len(model.dataset),  # type: ignore[arg-type]
        "seed": seed,
        "steps": steps,
        "sparsity": sparsity if method in PATHWAY_METHODS else 0.0,
        "network_sparsity": (
            {name: 1.0 - keep for name, keep in model.policy.keep_ratios().items()}  # type: ignore[operator]
            if method in PATHWAY_METHODS
            else dict.fromkeys(model.policy.trained_networks, 0.0)  # type: ignore[attr-defined]
        ),
        "reward_scale": model.reward_scale,
        "reward_factor": dataset_reward_scale(model.dataset, model.reward_scale),  # type: ignore[arg-type]
        "learning_rate": model.learning_rate,
        "eval_episodes": eval_episodes,
        "success": success,
        "mean_success": float(np.mean(list(success.values()))),
        "curve": evaluation.curve,
        "per_task_costs": task_costs(model, method),
        "train_seconds": seconds,
        "gradient_steps_per_second": steps / seconds,
        "versions": package_versions("metaworld", "minari"),
    }


def settings_label(record: dict[str, Any]) -> str:
    """How a run's rewards were scaled: ``raw``, ``scaled to max 1`` (``"auto"``: divided by the largest
    absolute reward) or ``x <factor>``; then ``, lr <rate>`` where its learning rate is not the
    algorithm's default (records made before the rate was recorded ran at the default)."""
    scale = record["reward_scale"]
    label = "raw" if scale == 1.0 else "scaled to max 1" if scale == "auto" else f"x {scale:g}"
    default = default_learning_rate(record["algo"])
    rate = record.get("learning_rate", default)
    return label if rate == default else f"{label}, lr {rate:g}"


GroupKey = tuple[str, str, int, int, str, str]


def group_runs(records: list[dict[str, Any]]) -> dict[GroupKey, list[dict[str, Any]]]:
    """The runs of each (algorithm, dataset, transitions, gradient steps, settings, method): its seeds."""
    groups: dict[GroupKey, list[dict[str, Any]]] = {}
    for record in records:
        key = (
            record["algo"],
            record["dataset"],
            record["dataset_transitions"],
            record["steps"],
            settings_label(record),
            record["method"],
        )
        groups.setdefault(key, []).append(record)
    return groups


def setting_order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """Order of a ``(algorithm, dataset, transitions, ...)`` group: by algorithm, then dataset
    size (10k before 50k before 100k), then the rest."""
    return (key[0], key[2], key[1], *key[3:])


def summarise(records: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """A markdown table (mean ± std success over seeds, weights and FLOPs per task) and its data."""
    groups = group_runs(records)
    rows = [
        "| algorithm | dataset | transitions | gradient steps | settings | method | seeds | success | weights per task | "
        "forward FLOPs per task | weakest tasks |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    summary: dict[str, Any] = {}
    for (algo, dataset, transitions, steps, settings, method), group in sorted(
        groups.items(), key=lambda item: setting_order(item[0])
    ):
        successes = [record["mean_success"] for record in group]
        std = statistics.stdev(successes) if len(successes) > 1 else 0.0
        costs = group[0]["per_task_costs"]
        weights = sum(entry["weights"] for entry in costs.values())
        flops = sum(entry["flops"] for entry in costs.values())
        per_task = {task: float(np.mean([record["success"][task] for record in group])) for task in MT10_TASKS}
        weakest = ", ".join(f"{task} {value:.2f}" for task, value in sorted(per_task.items(), key=lambda x: x[1])[:2])
        rows.append(
            f"| {algo.upper()} | {dataset} | {transitions} | {steps} | {settings} | {method} | {len(group)} | "
            f"{np.mean(successes):.3f} ± {std:.3f} | {weights:,.0f} | {flops:,.0f} | {weakest} |"
        )
        summary[f"{algo}/{dataset}/{steps}/{settings}/{method}"] = {
            "mean_success": float(np.mean(successes)),
            "std": std,
            "seeds": [record["seed"] for record in group],
            "success_per_task": per_task,
            "weights_per_task": weights,
            "flops_per_task": flops,
            "per_network_costs": costs,
        }
    return "\n".join(rows) + "\n", summary


def plot(records: list[dict[str, Any]], path: Path) -> Path:
    """Success per task of each method (mean over seeds), one panel per algorithm, dataset and
    gradient-step budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group_runs(records)
    panels = sorted({key[:-1] for key in groups}, key=setting_order)  # one per setting; its bars are the methods
    figure, axes = plt.subplots(len(panels), 1, figsize=(11, 3.4 * len(panels)), squeeze=False)
    colours = {
        "pathway": "tab:green",
        "pathway-cover": "tab:olive",
        "pathway-balanced": "tab:blue",
        "pathway-sparse-vae": "tab:cyan",
        "pathway-cover-sparse-vae": "tab:purple",
        "mt": "black",
        "mhmt": "tab:grey",
    }
    width = 0.8 / len(METHODS)
    for axis, panel in zip(axes[:, 0], panels):
        algo, dataset, transitions, steps, settings = panel
        for offset, method in enumerate(METHODS):
            group = groups.get((*panel, method))
            if not group:
                continue
            means = [np.mean([r["success"][task] for r in group]) for task in MT10_TASKS]
            overall = np.mean([r["mean_success"] for r in group])
            axis.bar(
                np.arange(len(MT10_TASKS)) + (offset - (len(METHODS) - 1) / 2) * width,
                means,
                width,
                color=colours[method],
                label=f"{method} (mean {overall:.2f}, {len(group)} seed{'s' if len(group) > 1 else ''})",
            )
        axis.set_xticks(
            np.arange(len(MT10_TASKS)), [task.removesuffix("-v3") for task in MT10_TASKS], fontsize=8, rotation=20, ha="right"
        )
        axis.set_ylim(0, 1.05)
        axis.set_ylabel("success rate")
        axis.set_title(
            f"{algo.upper()} on {dataset} ({transitions:,} transitions), {steps:,} gradient steps, rewards {settings}",
            fontsize=10,
        )
        axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def commit(path: Path, message: str) -> None:
    for _ in range(5):
        added = subprocess.run(["git", "add", str(path)], cwd=ROOT, capture_output=True)
        committed = subprocess.run(["git", "commit", "-q", "-m", message, "--", str(path)], cwd=ROOT, capture_output=True)
        if added.returncode == 0 and committed.returncode == 0:
            return
        time.sleep(2)
    print(f"could not commit {path}: {committed.stderr.decode().strip()}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--algos", nargs="+", choices=sorted(ALGOS), default=None, help="default: the preset's")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the preset's")
    parser.add_argument("--steps", type=int, default=None, help="gradient steps of every run (default: the preset's)")
    parser.add_argument(
        "--episodes-per-task",
        nargs="+",
        type=int,
        default=None,
        help="dataset sizes, in scripted episodes per task (500 transitions each; default: the preset's)",
    )
    parser.add_argument("--quality", default="expert", choices=sorted(QUALITIES), help="dataset quality")
    parser.add_argument("--sparsity", type=float, default=0.95)
    parser.add_argument(
        "--reward-scale",
        type=reward_scale_argument,
        default=None,
        help="'auto' or a factor, of every run (default: each algorithm's own: IQL 'auto', BCQ 1)",
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=None,
        help="Adam's learning rate of every network in every run (default: each algorithm's own: IQL 3e-4, BCQ 1e-3)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "offline")
    parser.add_argument("--commit", action="store_true", help="git-commit each finished run's JSON")
    parser.add_argument("--summarise", action="store_true", help="run nothing: table and figure of the runs so far")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    th.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    runs_dir = args.results / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    if not args.summarise:
        for algo in args.algos or preset["algos"]:
            for method in sorted(set(args.methods) & set(PATHWAY_METHODS)):
                try:
                    pathway_sparsity(algo, method, args.sparsity)
                except ValueError as error:
                    parser.error(str(error))
        for seed in args.seeds or preset["seeds"]:
            for episodes_per_task in args.episodes_per_task or preset["episodes_per_task"]:
                for algo in args.algos or preset["algos"]:
                    steps = args.steps or preset["steps"][algo]
                    for method in args.methods:
                        path = runs_dir / run_name(
                            algo, method, args.quality, episodes_per_task, seed, steps, args.reward_scale, args.learning_rate
                        )
                        if path.exists():
                            continue
                        dataset_id = dataset_for(episodes_per_task, args.quality)
                        record = run(
                            algo,
                            method,
                            dataset_id,
                            seed,
                            steps,
                            preset["eval_freq"],
                            preset["eval_episodes"],
                            args.sparsity,
                            reward_scale=args.reward_scale,
                            learning_rate=args.learning_rate,
                        )
                        path.write_text(json.dumps(record, indent=2))
                        print(
                            f"{algo} {method} {dataset_id} seed {seed}: success {record['mean_success']:.3f} "
                            f"({record['train_seconds'] / 60:.1f} min, {record['gradient_steps_per_second']:.0f} steps/s)",
                            flush=True,
                        )
                        if args.commit:
                            commit(path, f"offline benchmark: {algo} {method} on {dataset_id}, seed {seed}")
    records = [json.loads(path.read_text()) for path in sorted(runs_dir.glob("*.json"))]
    if not records:
        raise SystemExit(f"no offline runs under {runs_dir}")
    table, summary = summarise(records)
    (args.results / "summary.md").write_text(table)
    (args.results / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(records, args.results / "offline_mt10.png")
    print(table)


if __name__ == "__main__":
    main()
