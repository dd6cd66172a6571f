"""Connection sensitivity (SNIP) scores ``abs(θ · ∂L/∂θ)`` with an algorithm's own loss.

Scoring is side-effect free: no optimizer steps, no ``.grad`` written, random generators,
batch-norm statistics and train/eval modes restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from typing import Any

import numpy as np
import torch as th

from sb3_pathways.masking.layers import MASK_BUFFERS
from sb3_pathways.masking.pathway import NetworkPathway
from sb3_pathways.policies import pathway_policy
from sb3_pathways.scoring.data import split_batch
from sb3_pathways.scoring.objectives import Objective, objective_for

#: where the loss is evaluated: the scored network dense ("dense"), the whole agent dense,
#: targets included ("agent", as the DAPD reference), or every network as it runs ("masked")
SCORE_AT = ("dense", "agent", "masked")


@contextlib.contextmanager
def preserved_training_state(policy: th.nn.Module) -> Iterator[None]:
    """Run a block with the policy in training mode and restore random generators, buffers
    other than masks (batch-norm statistics) and train/eval modes afterwards."""
    modes = [(module, module.training) for module in policy.modules()]
    buffers = {name: buffer.clone() for name, buffer in policy.named_buffers() if name.rsplit(".", 1)[-1] not in MASK_BUFFERS}
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
def all_connections_on(pathways: dict[str, NetworkPathway], targets: bool = False) -> Iterator[None]:
    """Run a block with every online masked weight at its stored value θ (dense network;
    multi-task layers skip their task masks), and the target copies too if ``targets``."""
    with contextlib.ExitStack() as stack:
        for network in pathways.values():
            for name, layer in network.layers.items():
                for dense_layer in [layer, *(network.followers.get(name, []) if targets else [])]:
                    stack.enter_context(dense_layer.all_connections_on())
        yield


@contextlib.contextmanager
def unmasked_gradients(network: NetworkPathway) -> Iterator[None]:
    """Run a block in which gradients reach the dormant weights of a network too."""
    with contextlib.ExitStack() as stack:
        for layer in network.layers.values():
            stack.enter_context(layer.unmasked_gradients())
        yield


def _scoring_point(pathways: dict[str, NetworkPathway], scored: str, score_at: str) -> contextlib.AbstractContextManager:
    if score_at == "dense":
        return all_connections_on({scored: pathways[scored]})
    if score_at == "agent":
        return all_connections_on(pathways, targets=True)
    return contextlib.nullcontext()


def loss_gradients(
    model: Any,
    batch: Any,
    score_at: str = "dense",
    chunk_size: int = 2048,
    objective: Objective | None = None,
    networks: Collection[str] | None = None,
) -> dict[str, dict[str, tuple[th.Tensor, th.Tensor]]]:
    """
    The gradient ∂L/∂θ of every masked weight (dormant ones included), with L the
    algorithm's training loss for the weight's network, averaged over ``batch``.

    :param model: an SB3 model with a pathway policy and a registered objective
    :param batch: buffer samples (``ReplayBufferSamples``, ``RolloutBufferSamples``, ...)
    :param score_at: ``"dense"``: every connection of the evaluated network on at its stored
        value, the rest of the agent as it runs; ``"agent"``: every connection of every
        network and target on; ``"masked"``: every network as it runs
    :param chunk_size: transitions per forward pass (bounds memory); gradients are averaged
    :param objective: ``(model, batch) -> {network name: loss}`` to differentiate instead of
        the objective registered for the model's algorithm
    :param networks: the networks differentiated (``None``: every network of the policy);
        the others are not evaluated
    :return: network name -> layer weight name -> (θ at which the loss was evaluated, ∂L/∂θ);
        networks the objective gives no loss are left out
    """
    if score_at not in SCORE_AT:
        raise ValueError(f"score_at must be one of {SCORE_AT}, got {score_at!r}")
    policy = pathway_policy(model, "loss_gradients")
    objective = objective or objective_for(model)
    total = len(batch.actions)
    result: dict[str, dict[str, tuple[th.Tensor, th.Tensor]]] = {}
    pathways = policy.pathways()
    unknown = sorted(set(networks or ()) - set(pathways))
    if unknown:
        raise ValueError(f"networks must name networks of the policy, {sorted(pathways)}; got {unknown}")
    for name, network in pathways.items():
        if networks is not None and name not in networks:
            continue
        # every network starts from the same random state (same sampled actions)
        scoring = _scoring_point(pathways, name, score_at)
        with preserved_training_state(policy), scoring, unmasked_gradients(network):
            weights = [layer.scored_weight() for layer in network.layers.values()]
            gradients = [th.zeros_like(weight) for weight in weights]
            for chunk, length in split_batch(batch, chunk_size):
                loss = objective(model, chunk).get(name)
                if loss is None:
                    break
                for gradient, grad in zip(gradients, th.autograd.grad(loss, weights, allow_unused=True)):
                    if grad is not None:
                        gradient.add_(grad.detach(), alpha=length / total)
            else:
                result[name] = {
                    layer_name: (weight.detach().clone(), gradient)
                    for layer_name, weight, gradient in zip(network.layers, weights, gradients)
                }
    return result


def connection_sensitivity(
    model: Any,
    batch: Any,
    score_at: str = "dense",
    chunk_size: int = 2048,
    objective: Objective | None = None,
    networks: Collection[str] | None = None,
) -> dict[str, dict[str, th.Tensor]]:
    """
    SNIP scores ``S(θ_q) = abs(θ_q · ∂L/∂θ_q)`` of every masked weight (see
    :func:`loss_gradients` for the loss, ``score_at``, ``chunk_size``, ``objective`` and
    ``networks``).

    :param score_at: ``"dense"`` or ``"agent"`` (dormant weights score at their stored value
        and can come back) or ``"masked"`` (dormant weights score 0)
    :return: network name -> layer weight name -> score, shaped like the weight
    """
    gradients = loss_gradients(model, batch, score_at, chunk_size, objective, networks)
    return {
        name: {layer: (weight * gradient).abs() for layer, (weight, gradient) in layers.items()}
        for name, layers in gradients.items()
    }
