r"""Can a sparse SAC actor represent what a dense one learned? A distillation probe.

Trains a dense SAC teacher (``hyperparams/sac.yml`` settings, as the learning benchmark's
``dense`` arm) or loads it, collects states from the teacher's own stochastic rollouts, then
fits sparse students' action means to the teacher's by regression, and evaluates every student
(10 deterministic episodes). A student that matches the teacher's return shows the sparse
network *can* hold the policy, so a gap in RL is in how the sparse network learns, not in what
it can represent.

Students (``--masks``), at each ``--sparsity``:

- ``erk``: a fresh ``PathwayPolicy`` with a random ERK mask (the mask SAC's critic keeps under
  ``DAPDCallback()``), fitted from its initial weights;
- ``magnitude``: the teacher itself, pruned by :func:`sb3_pathways.sparsify` (global magnitude
  top-k), evaluated right after pruning and again after fitting.

Examples::

    python benchmarks/capacity.py --env HalfCheetah-v5 --seed 0      # trains the teacher first (~30 min)
    python benchmarks/capacity.py --env Pendulum-v1 --teacher-steps 8000 --steps 2000

The teacher is saved as ``results/capacity/teacher_<env>_seed<seed>_<steps>.zip`` (not in git)
and reused; the record goes to ``results/capacity/<env>_seed<seed>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from learning import machine_description, package_versions, sac_settings
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

import sb3_pathways

RESULTS = Path(__file__).parent / "results" / "capacity"
MASKS = ("erk", "magnitude")


def train_teacher(env: str, seed: int, steps: int, path: Path) -> SAC:
    """The dense teacher: loaded from ``path`` or trained with the benchmark's SAC settings."""
    if path.exists():
        return SAC.load(path, env=make_vec_env(env, seed=seed), device="cpu")
    sac_kwargs, _ = sac_settings(env)
    teacher = SAC("MlpPolicy", env, seed=seed, device="cpu", **sac_kwargs)
    teacher.learn(steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    teacher.save(path)
    return teacher


def teacher_states(teacher: SAC, n_states: int, seed: int) -> np.ndarray:
    """Observations of the teacher's stochastic rollouts (the states its policy visits)."""
    env = teacher.get_env()
    assert env is not None
    env.seed(seed)
    observation = env.reset()
    states = []
    while len(states) < n_states:
        states.append(observation[0].copy())
        action, _ = teacher.predict(observation, deterministic=False)
        observation, *_ = env.step(action)
    return np.asarray(states, dtype=np.float32)


def action_means(model: SAC, states: th.Tensor) -> th.Tensor:
    """The actor's Gaussian means before the tanh squashing."""
    return model.actor.get_action_dist_params(states)[0]


def fit(student: SAC, targets: th.Tensor, states: th.Tensor, steps: int, batch_size: int, seed: int) -> list[float]:
    """Regress the student's action means on the teacher's; the dormant weights stay at zero
    (the pathway policy masks their gradients). Returns the training loss every 1,000 steps."""
    generator = th.Generator().manual_seed(seed)
    optimizer = th.optim.Adam(student.actor.parameters(), lr=1e-3)
    student.policy.set_training_mode(True)
    losses = []
    for step in range(steps):
        batch = th.randint(len(states), (batch_size,), generator=generator)
        loss = th.nn.functional.mse_loss(action_means(student, states[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 1000 == 0 or step == steps - 1:
            losses.append(loss.item())
    student.policy.set_training_mode(False)
    return losses


def evaluate(model: SAC, env: str, seed: int, episodes: int) -> float:
    """Mean return of deterministic episodes on evaluation seeds (those of the learning benchmark)."""
    mean, _ = evaluate_policy(model, make_vec_env(env, seed=seed + 1000), n_eval_episodes=episodes, deterministic=True)
    return float(mean)


def probe(args: argparse.Namespace) -> dict[str, Any]:
    th.set_num_threads(1)
    th.manual_seed(args.seed)
    started = time.perf_counter()
    teacher_path = args.results / f"teacher_{args.env}_seed{args.seed}_{args.teacher_steps}.zip"
    teacher = train_teacher(args.env, args.seed, args.teacher_steps, teacher_path)
    states = th.as_tensor(teacher_states(teacher, args.states, args.seed))
    with th.no_grad():
        targets = action_means(teacher, states)
    held_out = len(states) // 10
    train_states, test_states = states[held_out:], states[:held_out]
    train_targets, test_targets = targets[held_out:], targets[:held_out]
    record: dict[str, Any] = {
        "env": args.env,
        "seed": args.seed,
        "teacher_steps": args.teacher_steps,
        "teacher_return": evaluate(teacher, args.env, args.seed, args.eval_episodes),
        "states": args.states,
        "fit_steps": args.steps,
        "students": [],
    }
    print(f"{args.env} seed {args.seed}: teacher {record['teacher_return']:.1f}", flush=True)
    sac_kwargs, _ = sac_settings(args.env)
    for sparsity in args.sparsity:
        for mask in args.masks:
            entry: dict[str, Any] = {"sparsity": sparsity, "mask": mask}
            if mask == "erk":
                policy_kwargs = {**sac_kwargs["policy_kwargs"], "sparsity": sparsity, "mask_init": "erk"}
                student = SAC("PathwayPolicy", args.env, seed=args.seed, device="cpu", policy_kwargs=policy_kwargs)
            else:
                student = SAC.load(teacher_path, device="cpu")
                sb3_pathways.sparsify(student, sparsity={"actor": sparsity, "critic": 0.0}, method="magnitude")
                entry["pruned_return"] = evaluate(student, args.env, args.seed, args.eval_episodes)
            entry["actor_active"] = sb3_pathways.pathway_stats(student)["actor"].active
            entry["fit_losses"] = fit(student, train_targets, train_states, args.steps, args.batch_size, args.seed)
            with th.no_grad():
                entry["held_out_mse"] = float(th.nn.functional.mse_loss(action_means(student, test_states), test_targets))
            entry["return"] = evaluate(student, args.env, args.seed, args.eval_episodes)
            record["students"].append(entry)
            print(f"  {mask} {sparsity}: {entry}", flush=True)
    record.update(seconds=time.perf_counter() - started, versions=package_versions(), machine=machine_description())
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="HalfCheetah-v5", help="an env of hyperparams/sac.yml (default HalfCheetah-v5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher-steps", type=int, default=100_000, help="the dense teacher's SAC steps")
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.0, 0.8, 0.95], help="students' actor sparsity")
    parser.add_argument("--masks", nargs="+", choices=MASKS, default=list(MASKS), help="students' masks")
    parser.add_argument("--states", type=int, default=50_000, help="teacher states collected for the fit")
    parser.add_argument("--steps", type=int, default=20_000, help="gradient steps of each student's fit")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the teacher zip and the record")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    for value in args.sparsity:
        if not 0.0 <= value < 1.0:
            raise SystemExit(f"--sparsity values must be in [0, 1), got {value}")
    record = probe(args)
    args.results.mkdir(parents=True, exist_ok=True)
    output = args.results / f"{args.env}_seed{args.seed}.json"
    output.write_text(json.dumps(record, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
