"""Learning check: SAC with DAPD at 95% sparsity against dense SAC, same run, same seeds.

Each run trains for ``--steps`` environment steps and is evaluated every ``--eval-freq``
steps on ``--eval-episodes`` deterministic episodes; its final return is the mean of its
last ``--last-evals`` evaluations (as the paper reports the last evaluations). Runs go in
parallel on ``--workers`` processes, one torch thread each.

    python benchmarks/dapd_vs_dense.py                    # Pendulum-v1, 20k steps, 3 seeds
    python benchmarks/dapd_vs_dense.py --env Hopper-v5 --steps 100000 --threshold 2500
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

#: default freeze thresholds (training-episode mean return)
THRESHOLDS = {"Pendulum-v1": -250.0, "HalfCheetah-v5": 8000.0, "Hopper-v5": 3000.0, "Walker2d-v5": 4000.0}


def run(
    method: str,
    env_id: str,
    seed: int,
    steps: int,
    eval_freq: int,
    eval_episodes: int,
    threshold: float,
    moving_average: int,
    path: Path,
) -> dict:
    """Train one run and write its JSON to ``path`` (an existing file is read back, not redone)."""
    if path.exists():
        return json.loads(path.read_text())
    import torch as th
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
    from stable_baselines3.common.env_util import make_vec_env

    import sb3_pathways
    from sb3_pathways import DAPDCallback

    th.set_num_threads(1)
    start = time.perf_counter()
    policy = "PathwayPolicy" if method == "dapd" else "MlpPolicy"
    policy_kwargs: dict[str, Any] = {"sparsity": 0.95} if method == "dapd" else {}
    model = SAC(policy, env_id, seed=seed, device="cpu", policy_kwargs=policy_kwargs)
    evaluations: list[tuple[int, float]] = []

    class RecordEvaluation(BaseCallback):
        def _on_step(self) -> bool:
            assert self.parent is not None
            evaluations.append((self.num_timesteps, float(self.parent.last_mean_reward)))
            return True

    evaluation = EvalCallback(
        make_vec_env(env_id, seed=seed + 1000),
        eval_freq=eval_freq,
        n_eval_episodes=eval_episodes,
        callback_after_eval=RecordEvaluation(),
        verbose=0,
    )
    callbacks: list[Any] = [evaluation]
    if method == "dapd":
        callbacks.append(DAPDCallback(freeze_threshold=threshold, moving_average=moving_average))
    model.learn(steps, callback=callbacks)
    result = {
        "method": method,
        "env": env_id,
        "seed": seed,
        "steps": steps,
        "moving_average": moving_average if method == "dapd" else None,
        "eval_steps": [step for step, _ in evaluations],
        "eval_returns": [value for _, value in evaluations],
        "seconds": time.perf_counter() - start,
    }
    if method == "dapd":
        state = model.pathway_discovery
        result.update(
            frozen_step=state.frozen_step,
            mask_updates=state.n_updates,
            sparsity={name: s.sparsity for name, s in sb3_pathways.pathway_stats(model).items()},
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-freq", type=int, default=1_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--last-evals", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=None, help="DAPD freeze threshold (default per env)")
    parser.add_argument("--moving-average", type=int, default=5, help="DAPD's K (default 5)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    threshold = args.threshold if args.threshold is not None else THRESHOLDS.get(args.env, float("inf"))
    output = args.output or Path(f"benchmarks/results/dapd_vs_dense_{args.env}.json")

    runs = output.with_suffix("")  # one JSON per finished run: an interrupted benchmark resumes
    jobs = [
        (
            m,
            args.env,
            s,
            args.steps,
            args.eval_freq,
            args.eval_episodes,
            threshold,
            args.moving_average,
            runs / f"{m}{'_k' + str(args.moving_average) if m == 'dapd' else ''}_seed{s}_{args.steps}.json",
        )
        for s in args.seeds
        for m in ("dense", "dapd")
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run, *zip(*jobs)))

    summary: dict[str, Any] = {"env": args.env, "steps": args.steps, "threshold": threshold, "methods": {}}
    for method in ("dense", "dapd"):
        finals = [statistics.mean(r["eval_returns"][-args.last_evals :]) for r in results if r["method"] == method]
        summary["methods"][method] = {"final_returns": finals, "mean": statistics.mean(finals)}
    dense, dapd = summary["methods"]["dense"]["mean"], summary["methods"]["dapd"]["mean"]
    summary["dapd_relative_gap"] = (dapd - dense) / abs(dense)
    print(f"{args.env}, {args.steps} steps, seeds {args.seeds}, final = mean of last {args.last_evals} evaluations")
    print("| method | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |")
    print("| --- | " + " | ".join("---" for _ in args.seeds) + " | --- |")
    for method, data in summary["methods"].items():
        print(f"| {method} | " + " | ".join(f"{v:.1f}" for v in data["final_returns"]) + f" | {data['mean']:.1f} |")
    for r in results:
        if r["method"] == "dapd":
            print(f"DAPD seed {r['seed']}: {r['mask_updates']} mask updates, frozen at step {r['frozen_step']}")
    print(f"DAPD relative to dense: {summary['dapd_relative_gap']:+.1%}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"summary": summary, "runs": results}, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
