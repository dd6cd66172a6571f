"""The built-in default run: SAC with a 95%-sparse pathway found by DAPD on Pendulum-v1.

``python -m sb3_pathways.demo [--steps N] [--seed S] [--sparsity P] [--freeze-threshold R]``
"""

from __future__ import annotations

import argparse

from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_pathways.callbacks import DAPDCallback
from sb3_pathways.stats import format_pathway_stats, pathway_stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10_000, help="environment steps (default: 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sparsity", type=float, default=0.95)
    parser.add_argument(
        "--freeze-threshold", type=float, default=-250.0, help="training return at which the mask freezes (default: -250)"
    )
    parser.add_argument("--moving-average", type=int, default=5, help="DAPD's K (default: 5)")
    args = parser.parse_args(argv)

    model = SAC(
        "PathwayPolicy",
        "Pendulum-v1",
        learning_rate=1e-3,
        policy_kwargs=dict(sparsity=args.sparsity),
        seed=args.seed,
    )
    discovery = DAPDCallback(freeze_threshold=args.freeze_threshold, moving_average=args.moving_average)
    print(f"Training SAC + DAPD (sparsity {args.sparsity:.0%}) on Pendulum-v1 for {args.steps} steps...", flush=True)
    model.learn(args.steps, callback=discovery, progress_bar=False)
    env = model.get_env()
    assert env is not None
    mean_return, std_return = evaluate_policy(model, env, n_eval_episodes=10, deterministic=True)
    state = discovery.state
    print(f"\nFinal return (10 deterministic episodes): {mean_return:.1f} +/- {std_return:.1f}")
    frozen = f"frozen at step {state.frozen_step}" if state.frozen else "not frozen (threshold not reached)"
    print(f"Mask updates: {state.n_updates}; mask {frozen}")
    print(format_pathway_stats(pathway_stats(model)))


if __name__ == "__main__":
    main()
