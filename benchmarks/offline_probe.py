"""Why a single-shot offline pathway learns more slowly than the dense network: a short probe.

IQL on the MT10 expert dataset, one seed: after the single shot (or at step 0 for dense), the
standard deviation of the actor's pre-activations on 512 dataset observations, then the mean
absolute error of ``predict`` against the dataset's actions on 2,000 fixed transitions every
500 gradient steps. Arms:

- ``mt``: one dense network (``MlpPolicy``);
- ``pathway``: ``SingleShotPathways(cover_inputs=True)``, 95% per task;
- ``rescale``: the same, then every unit's active weights scaled by
  ``sqrt(fan_in / active inputs)`` (a signal-preserving sparse initialisation);
- ``erk``: the same as ``pathway`` with ERK layer shares (``allocation="erk"``);
- ``balanced``: ``SingleShotPathways(within_layer="balanced")`` (the top-k of scores balanced
  over each layer's units);
- ``actor-only``: the ``pathway`` single shot on the actor alone, the critic and value
  networks a static ERK mask per task (``networks=("actor",)``, ``mask_init="erk"``);
- ``shared``: the ``pathway`` single shot with one mask for all tasks (``n_tasks=1``): a plain
  sparse network that reads the task from the observation's one-hot, as ``mt`` does;
- ``plain-bc``: no package code at all: a 2x256 PyTorch MLP with a static uniform random mask
  per layer at ``--sparsity`` (dense at 0), fitted to the dataset's actions by mean squared
  error (behaviour cloning) with Adam, batch 256: how fast a sparse network of this size fits
  this data on its own.

``--learning-rate`` sets every arm's Adam step size (IQL's 3e-4 by default), ``--reward-scale``
IQL's ``reward_scale`` (its default ``auto``; the records under ``results/offline/probe_*.json``
were made with the rewards as they are, ``--reward-scale 1``, before that default). ``--sparsity``
sets the pathway arms' sparsity (0.95 by default): at 0 every task's pathway is the whole
network, so ``pathway`` must then learn as ``mt`` does, and a sweep shows how the gap grows
with sparsity.

    python benchmarks/offline_probe.py mt pathway rescale erk balanced actor-only --steps 2000
    python benchmarks/offline_probe.py pathway --sparsity 0 0.8 0.95 --steps 2000
    python benchmarks/offline_probe.py plain-bc --sparsity 0 0.8 0.95 --steps 2000
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from offline import reward_scale_argument

from sb3_pathways.masking.layers import MaskedWeightMixin
from sb3_pathways.multitask import make_mt10_env
from sb3_pathways.offline import IQL, SingleShotPathways, load_minari

ARMS = ("mt", "pathway", "rescale", "erk", "balanced", "actor-only", "shared", "plain-bc")
DATASET = "sb3_pathways/mt10/expert-10ep-v0"


def preactivation_std(network: th.nn.Module, observations: np.ndarray, **forward_kwargs: Any) -> list[float]:
    """Standard deviation of every linear layer's output in ``network`` on ``observations``."""
    stds: list[float] = []
    hooks = [
        module.register_forward_hook(lambda _module, _inputs, output: stds.append(round(float(output.std()), 4)))
        for module in network.modules()
        if isinstance(module, th.nn.Linear)
    ]
    with th.no_grad():
        network(th.as_tensor(observations, dtype=th.float32), **forward_kwargs)
    for hook in hooks:
        hook.remove()
    return stds


@th.no_grad()
def rescale_to_dense_fan_in(model: IQL) -> None:
    """Scale each unit's active weights by ``sqrt(fan_in / mean active inputs over its tasks)``.
    The single shot has merged the task copies, so the shared weight is the one to scale."""
    for module in model.policy.modules():
        if not isinstance(module, MaskedWeightMixin):
            continue
        masks = module.weight_mask.flatten(2).float()  # (pathways, out, in)
        active_inputs = masks.sum(-1)
        users = (active_inputs > 0).float().sum(0).clamp(min=1)
        gain = (masks.shape[-1] / (active_inputs.sum(0) / users).clamp(min=1)).sqrt()
        gain = gain.view(-1, *([1] * (module.weight.dim() - 1)))
        module.set_full_weight(module.full_weight() * gain)


def plain_behaviour_cloning(steps: int, seed: int, sparsity: float, learning_rate: float) -> dict[str, Any]:
    """The ``plain-bc`` arm (see the module documentation), measured as :func:`probe` measures."""
    dataset = load_minari(DATASET)
    observations = th.as_tensor(dataset.observations, dtype=th.float32)
    actions = th.as_tensor(dataset.actions, dtype=th.float32).clamp(-1, 1)
    rows = th.as_tensor(np.random.default_rng(seed).choice(len(dataset), 2_000, replace=False))
    th.manual_seed(seed)
    widths = (observations.shape[1], 256, 256, actions.shape[1])
    layers = [th.nn.Linear(n_in, n_out) for n_in, n_out in itertools.pairwise(widths)]
    network = th.nn.Sequential(layers[0], th.nn.ReLU(), layers[1], th.nn.ReLU(), layers[2], th.nn.Tanh())
    masks = [(th.rand(layer.weight.shape) >= sparsity).float() for layer in layers]
    with th.no_grad():
        for layer, mask in zip(layers, masks):
            layer.weight.mul_(mask)
    stds = preactivation_std(network, dataset.observations[rows[:512].numpy()])
    optimizer = th.optim.Adam(network.parameters(), lr=learning_rate)
    errors = {}
    for step in range(1, steps + 1):
        batch = th.randint(len(observations), (256,))
        loss = ((network(observations[batch]) - actions[batch]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        for layer, mask in zip(layers, masks):
            layer.weight.grad.mul_(mask)  # type: ignore[union-attr]
        optimizer.step()
        if step % 500 == 0:
            with th.no_grad():
                errors[step] = round(float((network(observations[rows]) - actions[rows]).abs().mean()), 4)
            print(f"plain-bc {sparsity}", step, "action error", errors[step], flush=True)
    return {
        "arm": "plain-bc",
        "seed": seed,
        "learning_rate": learning_rate,
        "sparsity": sparsity,
        "std": stds,
        "action_error": errors,
    }


def probe(
    arm: str, steps: int, seed: int, sparsity: float = 0.95, learning_rate: float = 3e-4, reward_scale: float | str = "auto"
) -> dict[str, Any]:
    dataset = load_minari(DATASET)
    env = make_mt10_env(max_episode_steps=200)
    common = dict(env=env, dataset=dataset, seed=seed, device="cpu", learning_rate=learning_rate, reward_scale=reward_scale)
    if arm == "mt":
        model = IQL("MlpPolicy", **common)
        callback = None
    else:
        mask_init = "erk" if arm == "actor-only" else "random"
        policy_kwargs = dict(n_tasks=1 if arm == "shared" else 10, sparsity=sparsity, mask_init=mask_init)
        model = IQL("PathwayPolicy", **common, policy_kwargs=policy_kwargs)
        selection: dict[str, Any] = (
            {"within_layer": "balanced"}
            if arm == "balanced"
            else {"cover_inputs": True, "allocation": "erk" if arm == "erk" else "global"}
        )
        if arm == "actor-only":
            selection["networks"] = ("actor",)
        callback = SingleShotPathways(**selection)
    rows = np.random.default_rng(seed).choice(len(dataset), 2_000, replace=False)
    model.learn(1, callback=callback)
    if arm == "rescale":
        rescale_to_dense_fan_in(model)
    std = preactivation_std(model.policy.actor, dataset.observations[rows[:512]], deterministic=True)
    record: dict[str, Any] = {
        "arm": arm,
        "seed": seed,
        "learning_rate": learning_rate,
        "reward_scale": reward_scale,
        "std": std,
    }
    if arm != "mt":
        record["sparsity"] = sparsity
    label = f"{arm} {record.get('sparsity', '')}"
    errors = {}
    while model.num_timesteps < steps:
        model.learn(500, reset_num_timesteps=False)
        actions, _ = model.predict(dataset.observations[rows], deterministic=True)
        errors[model.num_timesteps] = round(float(np.abs(actions - dataset.actions[rows]).mean()), 4)
        print(label, model.num_timesteps, "action error", errors[model.num_timesteps], flush=True)
    record["action_error"] = errors
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arms", nargs="+", choices=ARMS)
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sparsity", type=float, nargs="+", default=[0.95], help="of the pathway arms (one run per value)")
    parser.add_argument("--learning-rate", type=float, default=3e-4, help="of every arm (IQL's default: 3e-4)")
    parser.add_argument("--reward-scale", type=reward_scale_argument, default="auto", help="IQL's reward_scale")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/offline/probe.json"))
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    records = [
        plain_behaviour_cloning(args.steps, args.seed, sparsity, args.learning_rate)
        if arm == "plain-bc"
        else probe(arm, args.steps, args.seed, sparsity, args.learning_rate, args.reward_scale)
        for arm in args.arms
        for sparsity in ([0.95] if arm == "mt" else args.sparsity)
    ]
    for record in records:
        label = f"{record['arm']} {record.get('sparsity', '')}"
        print(label, "pre-activation std", record["std"], "action error", record["action_error"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    main()
