"""Connection sensitivity (SNIP) scores |θ · ∂L/∂θ| with an algorithm's own loss.

Scoring is side-effect free: no optimizer steps, no ``.grad`` written, random generators,
batch-norm statistics and train/eval modes restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch as th

from sb3_pathways.masking.pathway import NetworkPathway
from sb3_pathways.policies import pathway_policy
from sb3_pathways.scoring.data import split_batch
from sb3_pathways.scoring.objectives import objective_for

SCORE_AT = ("dense", "masked")


@contextlib.contextmanager
def preserved_training_state(policy: th.nn.Module) -> Iterator[None]:
    """Run a block with the policy in training mode and restore random generators, buffers
    other than masks (batch-norm statistics) and train/eval modes afterwards."""
    modes = [(module, module.training) for module in policy.modules()]
    buffers = {
        name: buffer.clone()
        for name, buffer in policy.named_buffers()
        if not name.endswith(("weight_mask", "weight_stored", "_gradient_mask"))
    }
    numpy_state = np.random.get_state()
    device = next(policy.parameters()).device
    devices = [device.index or 0] if device.type == "cuda" else []
    with th.random.fork_rng(devices=devices):
        try:
            policy.train(True)
            yield
        finally:
            np.random.set_state(numpy_state)
            with th.no_grad():
                for name, value in buffers.items():
                    policy.get_buffer(name).copy_(value)
            for module, mode in modes:
                module.training = mode


@contextlib.contextmanager
def all_connections_on(pathways: dict[str, NetworkPathway]) -> Iterator[None]:
    """Run a block with every online masked weight at its stored value θ (dense network)."""
    live = {}
    with th.no_grad():
        for network in pathways.values():
            for layer in network.layers.values():
                live[layer] = layer.weight.detach().clone()
                layer.weight.copy_(layer.full_weight())
    try:
        yield
    finally:
        with th.no_grad():
            for layer, value in live.items():
                layer.weight.copy_(value)


def connection_sensitivity(
    model: Any,
    batch: Any,
    score_at: str = "dense",
    chunk_size: int = 2048,
) -> dict[str, dict[str, th.Tensor]]:
    """
    SNIP scores S(θ_q) = |θ_q · ∂L/∂θ_q| of every masked weight, with L the algorithm's
    training loss for the weight's network, averaged over ``batch``.

    :param model: an SB3 model with a pathway policy and a registered objective
    :param batch: buffer samples (``ReplayBufferSamples``, ``RolloutBufferSamples``, ...)
    :param score_at: ``"dense"``: every connection on at its stored value (dormant weights
        can score and come back); ``"masked"``: the network as it runs (dormant weights
        score 0)
    :param chunk_size: transitions per forward pass (memory bound), gradients are averaged
    :return: network name -> layer weight name -> score, shaped like the weight
    """
    if score_at not in SCORE_AT:
        raise ValueError(f"score_at must be one of {SCORE_AT}, got {score_at!r}")
    policy = pathway_policy(model, "connection_sensitivity")
    objective = objective_for(model)
    pathways = policy.pathways()
    total = len(batch.actions)
    gradients: dict[str, dict[str, th.Tensor]] = defaultdict(dict)
    weights: dict[str, dict[str, th.Tensor]] = {}
    dense = all_connections_on(pathways) if score_at == "dense" else contextlib.nullcontext()
    with preserved_training_state(policy), dense:
        for name, network in pathways.items():
            weights[name] = {layer_name: layer.weight.detach().clone() for layer_name, layer in network.layers.items()}
        for chunk, length in split_batch(batch, chunk_size):
            losses = objective(model, chunk)
            unknown = set(losses) - set(pathways)
            if unknown:
                raise KeyError(f"the objective returned losses for unknown networks {sorted(unknown)}")
            by_loss: dict[int, list[str]] = defaultdict(list)
            for name in losses:
                by_loss[id(losses[name])].append(name)
            groups = list(by_loss.values())
            for i, names in enumerate(groups):
                params = [
                    (name, layer_name, layer.weight) for name in names for layer_name, layer in pathways[name].layers.items()
                ]
                grads = th.autograd.grad(
                    losses[names[0]],
                    [weight for _, _, weight in params],
                    allow_unused=True,
                    retain_graph=i < len(groups) - 1,
                )
                for (name, layer_name, weight), grad in zip(params, grads):
                    grad = th.zeros_like(weight) if grad is None else grad.detach()
                    previous = gradients[name].get(layer_name)
                    weighted = grad * (length / total)
                    gradients[name][layer_name] = weighted if previous is None else previous + weighted
    return {
        name: {layer_name: (weights[name][layer_name] * grad).abs() for layer_name, grad in layer_grads.items()}
        for name, layer_grads in gradients.items()
    }
