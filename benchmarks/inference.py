"""Inference speed of a 95% pathway: dense policy, masked policy and exported pathway.

For each hidden size, a SAC actor (2 hidden layers) on HalfCheetah-v5 computes deterministic
actions at batch 1 (latency) and batch 4096 (throughput):

- ``dense``: the stock ``MlpPolicy`` (``policy._predict``, as ``predict`` runs it);
- ``dense-exported``: the same dense network as a plain module (``export_pathway`` of a 0%-sparse
  pathway policy), which separates the pathway's saving from SB3's per-call overhead;
- ``masked``: the ``PathwayPolicy`` as it trains (full-size matrices holding zeros);
- ``exported``: :func:`sb3_pathways.export_pathway` with dense layers only;
- ``exported+csr``: the same with ``sparse_layers="auto"`` (a layer is CSR where measured faster);
- ``numpy``: the exported pathway on NumPy and SciPy (``ExportedPathway.to_numpy``, a layer is
  SciPy CSR, or its densest rows dense and the rest CSR, where measured faster; a large batch
  run in tiles of ``--tile-size`` samples), and
  ``dense-numpy`` the dense network on the same runtime;
- ``predict``: the stock dense model's public ``model.predict`` (NumPy in, NumPy out), the path
  an SB3 user calls.

Two pathways are exported: ``random`` (the uniform 95% mask a pathway policy starts from) and
``dapd`` (the pathway DAPD discovers in a short SAC run, ``--train-steps``). Times are medians
over ``--repeats`` in one run, on ``--threads`` torch threads (1 by default); the FLOP ratio (exported action network
over dense, counting the live weights left after dead-neuron removal) is the limit a perfect
implementation would reach; ``flops_ratio_dense_layers`` is that of the exported layers stored
dense.

    python benchmarks/inference.py                      # hidden 256 and 1024
    python benchmarks/inference.py --hidden 256 --train-steps 2000 --repeats 5
    python benchmarks/inference.py --threads 0           # all threads: inference_threads<N>.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from learning import machine_description
from stable_baselines3 import SAC

from sb3_pathways import DAPDCallback, export_pathway
from sb3_pathways.deploy import prune_action_network
from sb3_pathways.deploy.numpy_runtime import DEFAULT_TILE_SIZE

ENV_ID = "HalfCheetah-v5"
SPARSITY = 0.95


def median_seconds_per_call(function: Callable[[], Any], calls: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean time of ``calls`` back-to-back calls."""
    function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def dense_action_flops(hidden: int, obs_dim: int, action_dim: int) -> int:
    sizes = [obs_dim, hidden, hidden, action_dim]
    return sum(2 * n_in * n_out + n_out for n_in, n_out in itertools.pairwise(sizes))


def pathway_model(hidden: int, mask: str, train_steps: int, seed: int) -> SAC:
    model = SAC(
        "PathwayPolicy",
        ENV_ID,
        learning_starts=1_000,
        seed=seed,
        device="cpu",
        policy_kwargs=dict(net_arch=[hidden, hidden], sparsity=SPARSITY, mask_init="random"),
    )
    if mask == "dapd":
        model.learn(train_steps, callback=DAPDCallback(update_freq=500, moving_average=5))
    return model


def time_variants(models: dict[str, Any], batch: int, repeats: int) -> dict[str, float]:
    """Variant -> seconds per call at this batch size."""
    observation_space = models["dense"].observation_space
    observation_space.seed(0)
    array = np.stack([observation_space.sample() for _ in range(batch)])
    observations = th.as_tensor(array)
    calls = 200 if batch == 1 else 3
    with th.no_grad():
        functions: dict[str, Callable[[], Any]] = {
            "predict": lambda: models["dense"].predict(array, deterministic=True),
            "dense": lambda: models["dense"].policy._predict(observations, deterministic=True),
            "masked": lambda: models["masked"].policy._predict(observations, deterministic=True),
        }
        for name in ("dense-exported", "exported", "exported+csr"):
            module = models[name]
            functions[name] = lambda module=module: module(observations)
        for name in ("dense-numpy", "numpy"):
            runtime = models[name]
            functions[name] = lambda runtime=runtime: runtime(array)
        return {name: median_seconds_per_call(function, calls, repeats) for name, function in functions.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--masks", nargs="+", default=["random", "dapd"], choices=["random", "dapd"])
    parser.add_argument("--train-steps", type=int, default=3_000, help="SAC + DAPD steps that discover the dapd pathway")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: all of this machine's)")
    parser.add_argument(
        "--tile-size", type=int, default=DEFAULT_TILE_SIZE, help="samples per tile of the NumPy runtime (to_numpy's tile_size)"
    )
    parser.add_argument("--output", type=Path, default=None, help="default: results/inference[_threads<N>].json")
    args = parser.parse_args(argv)
    if args.threads > 0:
        th.set_num_threads(args.threads)
    threads = th.get_num_threads()
    if args.output is None:
        suffix = "" if args.threads == 1 else f"_threads{threads}"
        args.output = Path(f"benchmarks/results/inference{suffix}.json")

    results = []
    for hidden in args.hidden:
        dense = SAC("MlpPolicy", ENV_ID, seed=args.seed, device="cpu", policy_kwargs=dict(net_arch=[hidden, hidden]))
        # the dense network through the same plain module: separates the pathway's saving from SB3's overhead
        unmasked = SAC(
            "PathwayPolicy", ENV_ID, seed=args.seed, device="cpu", policy_kwargs=dict(net_arch=[hidden, hidden], sparsity=0.0)
        )
        dense_exported = export_pathway(unmasked, sparse_layers="never")
        obs_dim, action_dim = dense.observation_space.shape[0], dense.action_space.shape[0]
        for mask in args.masks:
            masked = pathway_model(hidden, mask, args.train_steps, args.seed)
            pruned = prune_action_network(masked)
            row: dict[str, Any] = {
                "hidden": hidden,
                "mask": mask,
                "layer_widths": [stage.weight.shape[0] for stage in pruned.stages],
                "inputs_read": int(pruned.input_index.numel()) if pruned.input_index is not None else obs_dim,
                "dead_end_weights": pruned.dead_end_weights,
            }
            for batch in (1, 4096):
                models = {
                    "dense": dense,
                    "dense-exported": dense_exported,
                    "masked": masked,
                    "exported": export_pathway(masked, sparse_layers="never"),
                    "exported+csr": export_pathway(masked, sparse_layers="auto", batch_size=batch),
                    "dense-numpy": dense_exported.to_numpy(sparse_layers="never", tile_size=args.tile_size),
                }
                models["numpy"] = models["exported"].to_numpy(sparse_layers="auto", batch_size=batch, tile_size=args.tile_size)
                dense_flops = dense_action_flops(hidden, obs_dim, action_dim)
                row["flops_ratio"] = export_pathway(masked, sparse_layers="always").flops() / dense_flops
                row["flops_ratio_dense_layers"] = models["exported"].flops() / dense_flops
                row[f"csr_layers_batch{batch}"] = [
                    type(layer).__name__ == "CSRLinear" for layer in models["exported+csr"].layers
                ]
                seconds = time_variants(models, batch, args.repeats)
                row[f"seconds_batch{batch}"] = seconds
                row[f"numpy_csr_layers_batch{batch}"] = [layer.sparse for layer in models["numpy"].layers]
                row[f"numpy_dense_rows_batch{batch}"] = [layer.dense_rows for layer in models["numpy"].layers]
                row[f"speedup_batch{batch}"] = {name: seconds["dense"] / value for name, value in seconds.items()}
                row[f"speedup_vs_predict_batch{batch}"] = {name: seconds["predict"] / value for name, value in seconds.items()}
                row[f"numpy_vs_dense_numpy_batch{batch}"] = seconds["dense-numpy"] / seconds["numpy"]
            results.append(row)
            speedups = "  ".join(
                f"batch {batch}: " + " ".join(f"{name} {value:.2f}x" for name, value in row[f"speedup_batch{batch}"].items())
                for batch in (1, 4096)
            )
            print(
                f"hidden {hidden:5d} {mask:6s} widths {row['layer_widths']} FLOP ratio {row['flops_ratio']:.4f} "
                f"(limit {1 / row['flops_ratio']:.1f}x, dense layers {1 / row['flops_ratio_dense_layers']:.1f}x)  {speedups}",
                flush=True,
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "env": ENV_ID,
                "sparsity": SPARSITY,
                "train_steps": args.train_steps,
                "repeats": args.repeats,
                "threads": threads,
                "tile_size": args.tile_size,
                "machine": machine_description(),
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
