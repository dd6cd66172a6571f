"""A pathway's chains of linear layers as plain tensors, dead-neuron removal, and the
dead-end analysis of every network.

A chain (the action network, a Q-network, the value network) is read through one pathway's
mask into :class:`LinearStage` s, normalisation layers in evaluation mode folded into the next
linear layer. :func:`remove_dead_neurons` then drops what takes no part in the output.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, pairwise
from typing import Any

import torch as th
from sb3_contrib.common.torch_layers import BatchRenorm
from torch import nn

from sb3_pathways.masking.layers import MASKED_LAYER_TYPES, MaskedWeightMixin
from sb3_pathways.policies import DeploymentSpec, PathwayPolicyMixin, pathway_policy

STOCK_LAYER_TYPES: dict[type[nn.Module], type[nn.Module]] = {masked: stock for stock, masked in MASKED_LAYER_TYPES.items()}

#: modules applied feature by feature, which can be sliced with the neurons they follow
ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
)
#: modules that are the identity on a batch of feature vectors in evaluation mode
IDENTITY_MODULES: tuple[type[nn.Module], ...] = (nn.Identity, nn.Flatten, nn.Dropout)


@dataclass
class LinearStage:
    """
    One linear layer of an action network as a pathway sees it, with the element-wise
    modules that follow it.

    :param weight: θ ⊙ m, shaped ``(out_features, in_features)``
    :param mask: which entries of ``weight`` are live
    :param bias: the bias (zeros for a layer without one)
    :param activations: element-wise modules applied to the layer's output, in order
    """

    weight: th.Tensor
    mask: th.Tensor
    bias: th.Tensor
    activations: list[nn.Module] = field(default_factory=list)

    def activate(self, values: th.Tensor) -> th.Tensor:
        for activation in self.activations:
            values = activation(values)
        return values

    def keep_outputs(self, keep: th.Tensor) -> None:
        self.weight, self.mask, self.bias = self.weight[keep], self.mask[keep], self.bias[keep]

    def keep_inputs(self, keep: th.Tensor) -> None:
        self.weight, self.mask = self.weight[:, keep], self.mask[:, keep]


@dataclass
class PrunedChain:
    """The action network after dead-neuron removal.

    :param stages: the remaining layers
    :param input_index: the input features still read (``None``: all of them)
    :param dead_end_weights: live weights that lie on no input-to-output path and were removed
    :param widths_before: output width of every layer before removal
    """

    stages: list[LinearStage]
    input_index: th.Tensor | None
    dead_end_weights: int
    widths_before: list[int]


def _unroll(module: nn.Module) -> Iterator[nn.Module]:
    if isinstance(module, nn.Sequential):
        for child in module:
            yield from _unroll(child)
    else:
        yield module


def _evaluation_affine(module: nn.Module) -> tuple[th.Tensor, th.Tensor] | None:
    """(scale, shift) of a normalisation layer in evaluation mode, ``None`` for other modules."""
    if isinstance(module, BatchRenorm):
        running_var, running_mean = th.as_tensor(module.ra_var), th.as_tensor(module.ra_mean)
        scale = 1.0 / (running_var + module.eps).sqrt()
        shift = -running_mean * scale
        if module.affine:
            scale, shift = module.scale * scale, module.scale * shift + module.bias
        return scale.detach(), shift.detach()
    if isinstance(module, nn.BatchNorm1d) and module.track_running_stats:
        assert module.running_var is not None and module.running_mean is not None
        scale = 1.0 / (module.running_var + module.eps).sqrt()
        shift = -module.running_mean * scale
        if module.affine:
            scale, shift = module.weight * scale, module.weight * shift + module.bias
        return scale.detach(), shift.detach()
    return None


def linear_stages(modules: Sequence[nn.Module], pathway: int = 0) -> list[LinearStage]:
    """
    Read an action network (linear layers, element-wise activations, normalisation layers in
    evaluation mode) as a list of :class:`LinearStage` through one pathway's masks.

    :param modules: the network's modules in order (``nn.Sequential`` are unrolled)
    :param pathway: which pathway (task) of a multi-pathway policy
    """
    stages: list[LinearStage] = []
    pending: tuple[th.Tensor, th.Tensor] | None = None  # affine map applied to the next layer's input
    for module in chain.from_iterable(_unroll(m) for m in modules):
        affine = _evaluation_affine(module)
        if isinstance(module, nn.Linear):
            if isinstance(module, MaskedWeightMixin):
                weight, mask = module.pathway_weight(pathway), module.weight_mask[pathway].clone()
            else:
                weight = module.weight.detach().clone()
                mask = th.ones_like(weight, dtype=th.bool)
            bias = module.bias.detach().clone() if module.bias is not None else weight.new_zeros(weight.shape[0])
            if pending is not None:
                scale, shift = pending
                bias, weight, pending = bias + weight @ shift, weight * scale, None
            stages.append(LinearStage(weight, mask, bias))
        elif affine is not None:
            if pending is not None:
                affine = (affine[0] * pending[0], affine[0] * pending[1] + affine[1])
            pending = affine
        elif isinstance(module, IDENTITY_MODULES):
            continue
        elif isinstance(module, ELEMENTWISE_MODULES):
            if not stages or pending is not None:
                raise ValueError(f"cannot export: {type(module).__name__} must follow a linear layer")
            stages[-1].activations.append(copy.deepcopy(module))
        else:
            supported = ", ".join(t.__name__ for t in (nn.Linear, nn.BatchNorm1d, BatchRenorm, *ELEMENTWISE_MODULES))
            raise TypeError(f"cannot export a {type(module).__name__} in an action network; supported modules: {supported}")
    if not stages:
        raise ValueError("cannot export: the action network has no linear layer")
    if pending is not None:
        raise ValueError("cannot export: a normalisation layer ends the action network")
    return stages


def remove_dead_neurons(stages: list[LinearStage]) -> PrunedChain:
    """
    Remove the hidden neurons and input features that do not take part in the pathway's
    computation, without changing its output. Neurons with no live input are constants:
    their contribution moves into the next layer's bias. Output neurons are never removed.

    :param stages: the network (modified in place)
    """
    widths_before = [stage.weight.shape[0] for stage in stages]
    live_before = sum(int(stage.mask.sum()) for stage in stages)
    for stage, following in pairwise(stages):
        constant = ~stage.mask.any(dim=1)
        if constant.any():
            values = stage.activate(stage.bias[constant].unsqueeze(0)).squeeze(0)
            following.bias = following.bias + following.weight[:, constant] @ values
            stage.keep_outputs(~constant)
            following.keep_inputs(~constant)
    for stage, following in reversed(list(pairwise(stages))):
        read = following.mask.any(dim=0)
        stage.keep_outputs(read)
        following.keep_inputs(read)
    read_inputs = stages[0].mask.any(dim=0)
    input_index = None
    if not read_inputs.all():
        input_index = read_inputs.nonzero().squeeze(1)
        stages[0].keep_inputs(read_inputs)
    live_after = sum(int(stage.mask.sum()) for stage in stages)
    return PrunedChain(stages, input_index, live_before - live_after, widths_before)


def pathway_index(policy: PathwayPolicyMixin, task: int | None) -> int:
    if task is None:
        if policy.n_pathways > 1:
            raise ValueError(f"the policy has {policy.n_pathways} task pathways: pass task=0..{policy.n_pathways - 1}")
        return 0
    if isinstance(task, bool) or not isinstance(task, int) or not 0 <= task < policy.n_pathways:
        raise ValueError(f"task must be an int in [0, {policy.n_pathways - 1}], got {task!r}")
    return task


def prune_action_network(model: Any, task: int | None = None) -> PrunedChain:
    """
    The action network of a pathway policy after dead-neuron removal (see
    :func:`remove_dead_neurons`); ``dead_end_weights`` counts the live weights that no
    input-to-output path uses.

    :param model: an SB3 model with a pathway policy, or the policy itself
    :param task: which task's pathway of a multi-task policy
    """
    policy = pathway_policy(model, "prune_action_network")
    pathway = pathway_index(policy, task)
    spec: DeploymentSpec = policy.deployment_spec()
    stages = linear_stages([policy.get_submodule(path) for path in spec.chain], pathway)
    if spec.squash:
        stages[-1].activations.append(nn.Tanh())
    return remove_dead_neurons(stages)


@dataclass
class ChainDeadEnds:
    """Live weights of one chain of linear layers and how many of them are dead ends."""

    chain: tuple[str, ...]
    live_weights: int
    dead_end_weights: int
    widths_before: list[int]
    widths_after: list[int]


def dead_ends(model: Any, task: int | None = None) -> dict[str, list[ChainDeadEnds]]:
    """
    For every network, the live weights of each chain of linear layers (the action network,
    each Q-network, the value network) that lie on no input-to-output path: weights into
    neurons nothing reads, and weights out of neurons that receive no input.

    :param model: an SB3 model with a pathway policy, or the policy itself
    :param task: which task's pathway of a multi-task policy
    """
    policy = pathway_policy(model, "dead_ends")
    pathway = pathway_index(policy, task)
    report: dict[str, list[ChainDeadEnds]] = {}
    for network, chains in policy.pathway_chains().items():
        for paths in chains:
            stages = linear_stages([policy.get_submodule(path) for path in paths], pathway)
            live = sum(int(stage.mask.sum()) for stage in stages)
            pruned = remove_dead_neurons(stages)
            widths_after = [stage.weight.shape[0] for stage in pruned.stages]
            report.setdefault(network, []).append(
                ChainDeadEnds(paths, live, pruned.dead_end_weights, pruned.widths_before, widths_after)
            )
    return report
