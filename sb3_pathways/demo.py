"""The built-in default run: SAC with a 95%-sparse pathway policy on Pendulum-v1.

``python -m sb3_pathways.demo [--steps N] [--seed S]``
"""

from __future__ import annotations

import argparse

from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_pathways.stats import format_pathway_stats, pathway_stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5_000, help="environment steps (default: 5000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sparsity", type=float, default=0.95)
    args = parser.parse_args(argv)

    model = SAC("PathwayPolicy", "Pendulum-v1", policy_kwargs=dict(sparsity=args.sparsity), seed=args.seed, verbose=0)
    print(f"Training SAC with PathwayPolicy (sparsity {args.sparsity:.0%}) on Pendulum-v1 for {args.steps} steps...")
    model.learn(args.steps, progress_bar=False)
    env = model.get_env()
    assert env is not None
    mean_return, std_return = evaluate_policy(model, env, n_eval_episodes=5, deterministic=True)
    print(f"Mean evaluation return over 5 episodes: {mean_return:.1f} +/- {std_return:.1f}")
    print(format_pathway_stats(pathway_stats(model)))


if __name__ == "__main__":
    main()
