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
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

from sb3_pathways.deploy.chains import STOCK_LAYER_TYPES, pathway_index, prune_action_network
from sb3_pathways.deploy.numpy_runtime import (
    DEFAULT_TILE_SIZE,
    NumpyLayer,
    NumpyPathway,
    check_tile_size,
    fastest_numpy_layer,
    numpy_activation,
)
from sb3_pathways.deploy.sparse_layers import CSRLinear, SparseLayers, check_sparse_layers, deployed_layer
from sb3_pathways.masking.layers import MASK_BUFFERS, MASK_PARAMETERS, MaskedWeightMixin
from sb3_pathways.policies import pathway_policy


def _bake_masks(module: nn.Module, pathway: int) -> nn.Module:
    """A frozen copy of a features extractor whose masked layers are plain layers holding
    one pathway's weights."""
    if isinstance(module, FlattenExtractor):
        return nn.Flatten()
    baked = copy.deepcopy(module)
    for layer in baked.modules():
        if isinstance(layer, MaskedWeightMixin):
            weight = layer.pathway_weight(pathway)
            for name in MASK_BUFFERS:
                layer._buffers.pop(name, None)
            for name in MASK_PARAMETERS:
                layer._parameters.pop(name, None)
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

    def to_numpy(
        self, sparse_layers: SparseLayers = "auto", batch_size: int = 1, tile_size: int = DEFAULT_TILE_SIZE
    ) -> NumpyPathway:
        """
        The same pathway on NumPy and SciPy (:class:`~sb3_pathways.deploy.NumpyPathway`), with
        no torch call per action: the fastest path at small batches on a CPU.

        :param sparse_layers: ``"auto"`` stores a layer as SciPy CSR, or split into the rows
            with most active weights kept dense and the others CSR, only if that was measured
            at least 10% faster than NumPy's dense product at ``batch_size``
            (:func:`~sb3_pathways.deploy.numpy_runtime.fastest_numpy_layer`); ``"never"``
            keeps every layer dense; ``"always"`` makes every layer CSR
        :param batch_size: the deployment batch size the ``"auto"`` choice is measured at
        :param tile_size: samples that go through the network together: a larger batch is cut
            into tiles of this size, so that a tile's activations stay in the CPU's cache from
            one layer to the next
        """
        check_sparse_layers(sparse_layers, batch_size)
        check_tile_size(tile_size)
        if not isinstance(self.observation_space, (gym.spaces.Box, gym.spaces.Discrete)) or not isinstance(
            self.features_extractor, nn.Flatten
        ):
            raise ValueError(
                "to_numpy supports Box and Discrete observation spaces read by SB3's FlattenExtractor; got "
                f"{type(self.observation_space).__name__} with {type(self.features_extractor).__name__}: "
                "use the exported torch module for this policy"
            )
        if any(buffer.device.type != "cpu" for buffer in self.buffers()):
            raise ValueError("to_numpy needs the exported pathway on the CPU: export it with device='cpu'")
        layers = []
        generator = np.random.default_rng(0)
        output_order: np.ndarray | None = None  # how the previous layer permuted its outputs
        for index, layer in enumerate(self.layers):
            assert isinstance(layer, (nn.Linear, CSRLinear))
            weight = (layer.weight.to_dense() if isinstance(layer, CSRLinear) else layer.weight).detach().numpy()
            bias = layer.bias.detach().numpy()
            if output_order is not None:
                weight = weight[:, output_order]
            if sparse_layers == "auto":
                inputs = generator.standard_normal((weight.shape[1], min(batch_size, tile_size))).astype(np.float32)
                is_last = index == len(self.layers) - 1
                numpy_layer, output_order = fastest_numpy_layer(weight, bias, inputs, reorder_rows=not is_last)
                layers.append(numpy_layer)
            else:
                layers.append(NumpyLayer(weight, bias, sparse=sparse_layers == "always"))
        return NumpyPathway(
            layers=layers,
            activations=[[numpy_activation(module) for module in sequence.children()] for sequence in self.activations],
            observation_space=self.observation_space,
            normalize_images=self.normalize_images,
            input_index=None if self.input_index is None else self.input_index.cpu().numpy(),
            head=self.head,
            action_space=self.action_space,
            n_quantiles=self.n_quantiles,
            tile_size=tile_size,
        )

    def to_dense(self) -> ExportedPathway:
        """A copy whose CSR layers are dense again (for ``torch.jit.trace`` and ONNX)."""
        dense = copy.deepcopy(self)
        dense.layers = nn.ModuleList(
            layer.to_dense_linear() if isinstance(layer, CSRLinear) else layer for layer in dense.layers
        )
        dense.column_layout = False
        return dense


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
    check_sparse_layers(sparse_layers, batch_size)
    policy = pathway_policy(model, "export_pathway")
    pathway = pathway_index(policy, task)
    spec = policy.deployment_spec()
    device = th.device(device)
    pruned = prune_action_network(policy, task)
    layers = []
    for stage in pruned.stages:
        stage.weight, stage.mask, stage.bias = stage.weight.to(device), stage.mask.to(device), stage.bias.to(device)
        layers.append(deployed_layer(stage, sparse_layers, batch_size))
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
