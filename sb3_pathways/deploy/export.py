"""Deployable pathways: a plain ``torch.nn.Module`` that computes a pathway policy's
deterministic action with the least work.

A masked policy still multiplies full-size weight matrices, most of whose entries are zero.
:func:`export_pathway` turns the action network into small dense layers:

1. the linear layers of the action network are read through the pathway's mask, and
   normalisation layers (evaluation mode) are folded into the next linear layer;
2. a hidden neuron with no live input outputs a constant: its contribution is folded into the
   next layer's bias and the neuron is removed;
3. a hidden neuron whose output no live weight reads is removed, and so is an input feature
   no live weight reads;
4. each remaining layer is stored dense, or as a CSR sparse matrix when that was measured to
   be faster at the deployment batch size (``sparse_layers="auto"``).

Observation preprocessing (SB3's ``preprocess_obs``) and the action head (tanh squashing and
rescaling to the action bounds, clipping, argmax over Q-values or quantile means) are part of
the module, so ``module(observation)`` is what ``model.predict(observation,
deterministic=True)`` returns, as a tensor.
"""

from __future__ import annotations

import copy
import statistics
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, pairwise
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import torch as th
from sb3_contrib.common.torch_layers import BatchRenorm
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

from sb3_pathways.masking.layers import MASKED_LAYER_TYPES, MaskedWeightMixin
from sb3_pathways.policies import DeploymentSpec, PathwayPolicyMixin, pathway_policy

STOCK_LAYER_TYPES: dict[type[nn.Module], type[nn.Module]] = {masked: stock for stock, masked in MASKED_LAYER_TYPES.items()}
SparseLayers = Literal["auto", "never", "always"]
SPARSE_LAYER_CHOICES: tuple[str, ...] = ("auto", "never", "always")

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


class CSRLinear(nn.Module):
    """
    A linear layer whose weight is a CSR sparse matrix. It works on feature-major inputs
    (one column per sample), the layout in which a CSR product is fastest:
    ``Y = W X + b``, ``X`` shaped ``(in_features, batch)``.
    """

    weight: th.Tensor
    bias: th.Tensor

    def __init__(self, weight: th.Tensor, bias: th.Tensor) -> None:
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        with warnings.catch_warnings():  # torch's "support is in beta" notice is ours to carry
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            self.register_buffer("weight", weight.to_sparse_csr())
        self.register_buffer("bias", bias.clone())

    def forward(self, columns: th.Tensor) -> th.Tensor:
        return th.sparse.addmm(self.bias.unsqueeze(1), self.weight, columns)

    def to_dense_linear(self) -> nn.Linear:
        return _frozen_linear(self.weight.to_dense(), self.bias)

    def __deepcopy__(self, memo: dict[int, Any]) -> CSRLinear:
        # Sparse CSR tensors have no storage that ``copy.deepcopy`` could copy.
        return CSRLinear(self.weight.to_dense(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.weight.values().numel()}"


def _frozen_linear(weight: th.Tensor, bias: th.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
    layer.weight = nn.Parameter(weight.clone(), requires_grad=False)
    layer.bias = nn.Parameter(bias.clone(), requires_grad=False)
    return layer


def _median_seconds(function: Any, inputs: th.Tensor, repeats: int = 15) -> float:
    synchronize = th.cuda.synchronize if inputs.device.type == "cuda" else (lambda: None)
    times = []
    with th.no_grad():
        for i in range(repeats + 3):
            synchronize()
            start = time.perf_counter()
            function(inputs)
            synchronize()
            if i >= 3:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def _deployed_layer(stage: LinearStage, sparse_layers: str, batch_size: int) -> nn.Module:
    dense = _frozen_linear(stage.weight, stage.bias)
    if sparse_layers == "never" or stage.weight.numel() == 0:
        return dense
    sparse = CSRLinear(stage.weight * stage.mask, stage.bias)
    if sparse_layers == "always":
        return sparse
    inputs = th.randn(batch_size, stage.weight.shape[1], device=stage.weight.device)
    dense_seconds = _median_seconds(dense, inputs)
    sparse_seconds = _median_seconds(sparse, inputs.t().contiguous())
    return sparse if sparse_seconds < 0.9 * dense_seconds else dense


def _bake_masks(module: nn.Module, pathway: int) -> nn.Module:
    """A frozen copy of a features extractor whose masked layers are plain layers holding
    one pathway's weights."""
    if isinstance(module, FlattenExtractor):
        return nn.Flatten()
    baked = copy.deepcopy(module)
    for layer in baked.modules():
        if isinstance(layer, MaskedWeightMixin):
            weight = layer.pathway_weight(pathway)
            for name in ("weight_mask", "weight_stored", "_gradient_mask"):
                del layer._buffers[name]
            layer.__class__ = next(stock for masked, stock in STOCK_LAYER_TYPES.items() if isinstance(layer, masked))  # type: ignore[assignment]
            layer.weight = nn.Parameter(weight, requires_grad=False)
    baked.requires_grad_(False)
    return baked.eval()


class ExportedPathway(nn.Module):
    """
    A deployable pathway policy: observation in, deterministic action out.

    :param observation_space: the policy's observation space (for preprocessing)
    :param normalize_images: whether image observations are divided by 255
    :param features_extractor: the (frozen) features extractor
    :param input_index: the features the first layer reads (``None``: all)
    :param layers: the action network's linear layers (dense or :class:`CSRLinear`)
    :param activations: the element-wise modules after each layer
    :param head: see :class:`sb3_pathways.policies.DeploymentSpec`
    :param action_space: the policy's action space
    :param n_quantiles: quantiles per action for the ``"quantile_argmax"`` head
    """

    input_index: th.Tensor | None
    action_low: th.Tensor
    action_high: th.Tensor

    def __init__(
        self,
        observation_space: gym.Space,
        normalize_images: bool,
        features_extractor: nn.Module,
        input_index: th.Tensor | None,
        layers: list[nn.Module],
        activations: list[list[nn.Module]],
        head: str,
        action_space: gym.Space,
        n_quantiles: int = 0,
    ) -> None:
        super().__init__()
        self.observation_space = observation_space
        self.action_space = action_space
        self.normalize_images = normalize_images
        self.features_extractor = features_extractor
        self.register_buffer("input_index", input_index)
        self.layers = nn.ModuleList(layers)
        # With a CSR layer, the whole network runs feature-major (one column per sample).
        self.column_layout = any(isinstance(layer, CSRLinear) for layer in layers)
        self.activations = nn.ModuleList(nn.Sequential(*modules) for modules in activations)
        self.head = head
        self.n_quantiles = n_quantiles
        if isinstance(action_space, gym.spaces.Box):
            self.register_buffer("action_low", th.as_tensor(action_space.low, dtype=th.float32).reshape(-1))
            self.register_buffer("action_high", th.as_tensor(action_space.high, dtype=th.float32).reshape(-1))
        self.requires_grad_(False)
        self.eval()

    def network_output(self, observation: th.Tensor) -> th.Tensor:
        """The action network's output before the head: Q-values, quantiles, logits or the
        (squashed) mean action."""
        features = self.features_extractor(preprocess_obs(observation, self.observation_space, self.normalize_images))
        if self.input_index is not None:
            features = features.index_select(1, self.input_index)
        if not self.column_layout:
            for layer, activation in zip(self.layers, self.activations):
                features = activation(layer(features))
            return features
        columns = features.t().contiguous()
        for layer, activation in zip(self.layers, self.activations):
            if isinstance(layer, CSRLinear):
                columns = activation(layer(columns))
            else:
                assert isinstance(layer, nn.Linear)
                columns = activation(th.addmm(layer.bias.unsqueeze(1), layer.weight, columns))
        return columns.t()

    def forward(self, observation: th.Tensor) -> th.Tensor:
        """The deterministic action for a batch of observations."""
        output = self.network_output(observation)
        if self.head == "argmax":
            return output.argmax(dim=1)
        if self.head == "quantile_argmax":
            return output.view(output.shape[0], self.n_quantiles, -1).mean(dim=1).argmax(dim=1)
        if self.head == "unscale":
            output = self.action_low + 0.5 * (output + 1.0) * (self.action_high - self.action_low)
        else:
            output = th.maximum(th.minimum(output, self.action_high), self.action_low)
        return output.reshape(-1, *self.action_space.shape)  # type: ignore[misc]

    def flops(self) -> int:
        """FLOPs per observation of the action network's layers (2 per multiply-accumulate,
        1 per bias addition; CSR layers count their stored entries)."""
        total = 0
        for layer in self.layers:
            assert isinstance(layer, (nn.Linear, CSRLinear))
            entries = layer.weight.values().numel() if isinstance(layer, CSRLinear) else layer.weight.numel()
            total += 2 * entries + layer.out_features
        return total

    def layer_widths(self) -> list[int]:
        """Output width of every layer (after dead-neuron removal)."""
        return [int(layer.out_features) for layer in self.layers]  # type: ignore[arg-type]

    def to_dense(self) -> ExportedPathway:
        """A copy whose CSR layers are dense again (for ``torch.jit.trace`` and ONNX)."""
        dense = copy.deepcopy(self)
        dense.layers = nn.ModuleList(
            layer.to_dense_linear() if isinstance(layer, CSRLinear) else layer for layer in dense.layers
        )
        dense.column_layout = False
        return dense


def _pathway_index(policy: PathwayPolicyMixin, task: int | None) -> int:
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
    pathway = _pathway_index(policy, task)
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
    pathway = _pathway_index(policy, task)
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


def export_pathway(
    model: Any,
    task: int | None = None,
    sparse_layers: SparseLayers = "auto",
    batch_size: int = 1,
    device: th.device | str = "cpu",
) -> ExportedPathway:
    """
    A plain ``torch.nn.Module`` computing the policy's deterministic action through its
    pathway with the least work (see the module documentation). It can be saved with
    ``torch.save``, traced with ``torch.jit.trace`` and exported to ONNX with
    :func:`export_onnx` (which writes CSR layers dense).

    :param model: an SB3 model with a pathway policy, or the policy itself
    :param task: which task's pathway of a multi-task policy (``None`` for single-task)
    :param sparse_layers: ``"auto"`` stores a layer as CSR only if that was measured to be
        faster at ``batch_size``; ``"never"`` keeps every layer dense; ``"always"`` makes every
        layer CSR
    :param batch_size: the deployment batch size the ``"auto"`` choice is measured at
    :param device: where the exported module lives
    """
    if sparse_layers not in SPARSE_LAYER_CHOICES:
        raise ValueError(f"sparse_layers must be one of {SPARSE_LAYER_CHOICES}, got {sparse_layers!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    policy = pathway_policy(model, "export_pathway")
    pathway = _pathway_index(policy, task)
    spec = policy.deployment_spec()
    device = th.device(device)
    pruned = prune_action_network(policy, task)
    layers = []
    for stage in pruned.stages:
        stage.weight, stage.mask, stage.bias = stage.weight.to(device), stage.mask.to(device), stage.bias.to(device)
        layers.append(_deployed_layer(stage, sparse_layers, batch_size))
    exported = ExportedPathway(
        observation_space=policy.observation_space,
        normalize_images=policy.normalize_images,
        features_extractor=_bake_masks(policy.get_submodule(spec.features_extractor), pathway),
        input_index=pruned.input_index,
        layers=layers,
        activations=[stage.activations for stage in pruned.stages],
        head=spec.head,
        action_space=policy.action_space,
        n_quantiles=spec.n_quantiles,
    )
    return exported.to(device)


def export_onnx(exported: ExportedPathway, path: str | Path, batch_size: int = 1) -> Path:
    """
    Write an exported pathway to an ONNX file (needs the ``onnx`` extra), with a dynamic
    batch dimension. CSR layers are written dense.

    :param exported: a module from :func:`export_pathway`
    :param path: the ``.onnx`` file to write
    :param batch_size: batch size of the example observation used for export
    :return: the path written
    """
    try:
        import onnx  # noqa: F401
    except ImportError as error:
        raise ImportError("export_onnx needs the onnx extra: pip install 'sb3-pathways[onnx]'") from error
    dense = exported.to_dense()
    space = exported.observation_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"export_onnx supports Box observation spaces, got {type(space).__name__}")
    device = next(chain(dense.parameters(), dense.buffers()), th.empty(0)).device
    example = th.as_tensor(space.sample()[None].repeat(batch_size, axis=0), device=device)
    path = Path(path)
    th.onnx.export(
        dense,
        (example,),
        str(path),
        input_names=["observation"],
        output_names=["action"],
        dynamic_axes={"observation": {0: "batch"}, "action": {0: "batch"}},
        dynamo=False,
    )
    return path
