"""An exported pathway run on NumPy and SciPy, with no torch call per action.

At batch 1 a torch module spends most of its time in per-call overhead (dispatch, autograd
bookkeeping, tensor wrappers: tens of microseconds per layer), more than the pathway's few
thousand multiply-adds take. :class:`NumpyPathway` runs the same layers as plain NumPy
matrix-vector products, or SciPy CSR products where those were measured faster, which is
what a latency-bound deployment (one observation at a time, on a CPU) wants.

The network runs feature-major (one column per sample), the layout in which a CSR product
reads each active weight once per tile of samples, and a large batch goes through the whole
network one tile of ``tile_size`` samples at a time, so that a tile's activations stay in the
CPU's cache from one layer to the next.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import scipy.sparse
import torch as th
from torch import nn

from sb3_pathways.deploy.sparse_layers import fastest_if_faster

Activation = Callable[[np.ndarray], np.ndarray]
#: samples per tile: a tile of a 1024-wide layer's activations (512 KiB) stays in a CPU's L2 cache
DEFAULT_TILE_SIZE = 128


def _relu(values: np.ndarray) -> np.ndarray:
    return np.maximum(values, 0.0, out=values)


def _tanh(values: np.ndarray) -> np.ndarray:
    return np.tanh(values, out=values)


def check_tile_size(tile_size: object) -> None:
    """Raise a clear ``ValueError`` for a ``tile_size`` that is not a positive int."""
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
        raise ValueError(f"tile_size must be a positive int, got {tile_size!r}")


class TorchActivation:
    """An element-wise torch module applied to a NumPy array (sharing its memory, no copy).

    :param module: the activation module
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, values: np.ndarray) -> np.ndarray:
        with th.no_grad():
            return self.module(th.from_numpy(values)).numpy()


def numpy_activation(module: nn.Module) -> Activation:
    """The element-wise ``module`` on NumPy arrays: native for ReLU and Tanh, through the
    torch module itself for the others."""
    if type(module) is nn.ReLU:
        return _relu
    if type(module) is nn.Tanh:
        return _tanh
    return TorchActivation(module)


class NumpyLayer:
    """
    One linear layer on NumPy, feature-major: ``Y = W X + b`` for ``X`` shaped
    ``(in_features, samples)``. The weight is dense, a SciPy CSR matrix, or split: its first
    ``dense_rows`` rows dense and the others CSR. A pathway's sparse layer often has a few units
    that gather a large share of its active weights (in a DAPD actor, a tenth of the rows held
    56% of them); run as dense rows those cost less than their CSR entries, and the CSR
    product is left with the thin rows.

    :param weight: the layer's weight, shape ``(out_features, in_features)``
    :param bias: its bias, shape ``(out_features,)``
    :param sparse: store the weight as CSR (all of it, or the rows after ``dense_rows``)
    :param dense_rows: with ``sparse``, how many leading rows stay dense
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, sparse: bool, dense_rows: int = 0) -> None:
        if not 0 <= dense_rows <= weight.shape[0] or (dense_rows and not sparse):
            raise ValueError(
                f"dense_rows must be in [0, {weight.shape[0]}] (the layer's rows) and 0 for a dense layer, got {dense_rows}"
            )
        self.sparse = sparse
        self.dense_rows = dense_rows
        self.bias = np.ascontiguousarray(bias, dtype=np.float32).reshape(-1, 1)
        weight = weight.astype(np.float32)
        self.weight: np.ndarray | scipy.sparse.csr_matrix
        if sparse:
            self.dense_weight = np.ascontiguousarray(weight[:dense_rows])
            self.weight = scipy.sparse.csr_matrix(weight[dense_rows:])
        else:
            self.weight = np.ascontiguousarray(weight)

    def __call__(self, columns: np.ndarray) -> np.ndarray:
        if self.dense_rows:
            outputs = np.empty((self.bias.shape[0], columns.shape[1]), dtype=np.float32)
            np.matmul(self.dense_weight, columns, out=outputs[: self.dense_rows])
            outputs[self.dense_rows :] = self.weight @ columns
        else:
            outputs = np.asarray(self.weight @ columns)
        outputs += self.bias
        return outputs

    def stored_weights(self) -> int:
        """Weights the layer stores (the CSR entries and every entry of its dense rows, or
        every entry of a dense weight)."""
        if isinstance(self.weight, scipy.sparse.csr_matrix):
            return int(self.weight.nnz) + self.dense_weight.size
        return int(self.weight.size)


#: shares of a sparse layer's rows (those with the most active weights) tried as dense rows
DENSE_ROW_SHARES = (0.0625, 0.125, 0.25)


def rows_by_active_weights(weight: np.ndarray) -> np.ndarray:
    """The row order that puts the rows with the most non-zero weights first (stable)."""
    return np.argsort(-np.count_nonzero(weight, axis=1), kind="stable")


def fastest_numpy_layer(
    weight: np.ndarray, bias: np.ndarray, inputs: np.ndarray, reorder_rows: bool
) -> tuple[NumpyLayer, np.ndarray | None]:
    """
    The layer stored dense, as CSR or (when ``reorder_rows``) split into dense rows and CSR
    (:data:`DENSE_ROW_SHARES`), whichever was measured fastest on ``inputs``, by the rule of
    :func:`~sb3_pathways.deploy.sparse_layers.fastest_if_faster`.

    :param weight: the layer's weight, shape ``(out_features, in_features)``
    :param bias: its bias
    :param inputs: feature-major inputs at the deployment batch size
    :param reorder_rows: whether the layer's outputs may be permuted (not for the last layer):
        a split layer puts its rows with most active weights first
    :return: the layer and the permutation of its outputs (``None``: unchanged), which the
        next layer's columns must follow
    """
    dense = NumpyLayer(weight, bias, sparse=False)
    candidates: dict[NumpyLayer, np.ndarray | None] = {NumpyLayer(weight, bias, sparse=True): None}
    if reorder_rows:
        order = rows_by_active_weights(weight)
        for share in DENSE_ROW_SHARES:
            if dense_rows := int(share * len(order)):
                candidates[NumpyLayer(weight[order], bias[order], sparse=True, dense_rows=dense_rows)] = order
    chosen = fastest_if_faster(dense, inputs, list(candidates), inputs)
    return chosen, candidates.get(chosen)


class NumpyPathway:
    """
    The deterministic action of an :class:`~sb3_pathways.deploy.ExportedPathway`, computed
    with NumPy (and SciPy CSR products) instead of torch: ``pathway(observation)`` returns
    what ``model.predict(observation, deterministic=True)[0]`` returns, as a NumPy array.
    Built by :meth:`ExportedPathway.to_numpy <sb3_pathways.deploy.ExportedPathway.to_numpy>`;
    it pickles.

    Observations from a ``Box`` space (images divided by 255 as SB3 does) or a ``Discrete``
    space (one-hot) go through SB3's flattening features extractor; other spaces and
    extractors stay with the torch module.

    :param layers: the linear layers
    :param activations: the element-wise functions after each layer
    :param observation_space: the policy's observation space
    :param normalize_images: whether image observations are divided by 255
    :param input_index: the features the first layer reads (``None``: all)
    :param head: see :class:`sb3_pathways.policies.DeploymentSpec`
    :param action_space: the policy's action space
    :param n_quantiles: quantiles per action for the ``"quantile_argmax"`` head
    :param tile_size: samples that go through the network together (a larger batch is cut
        into tiles of this size)
    """

    def __init__(
        self,
        layers: list[NumpyLayer],
        activations: list[list[Activation]],
        observation_space: gym.Space,
        normalize_images: bool,
        input_index: np.ndarray | None,
        head: str,
        action_space: gym.Space,
        n_quantiles: int = 0,
        tile_size: int = DEFAULT_TILE_SIZE,
    ) -> None:
        check_tile_size(tile_size)
        self.layers = layers
        self.activations = activations
        self.observation_space = observation_space
        self.scale_images = (
            normalize_images
            and isinstance(observation_space, gym.spaces.Box)
            and np.dtype(observation_space.dtype) == np.uint8
            and len(observation_space.shape) == 3
        )
        self.input_index = input_index
        self.head = head
        self.action_space = action_space
        self.n_quantiles = n_quantiles
        self.tile_size = tile_size
        self.observation_size = int(np.prod(observation_space.shape or (1,)))
        if isinstance(action_space, gym.spaces.Box):
            self.action_low = np.asarray(action_space.low, dtype=np.float32).reshape(-1)
            self.action_high = np.asarray(action_space.high, dtype=np.float32).reshape(-1)
            self.action_range = self.action_high - self.action_low

    def features(self, observation: np.ndarray) -> np.ndarray:
        """The batch of flat float32 features the first layer reads, one row per sample."""
        if isinstance(self.observation_space, gym.spaces.Discrete):
            indices = np.asarray(observation, dtype=np.int64).reshape(-1) - int(self.observation_space.start)
            features = np.zeros((len(indices), int(self.observation_space.n)), dtype=np.float32)
            features[np.arange(len(indices)), indices] = 1.0
        else:
            features = np.asarray(observation, dtype=np.float32).reshape(-1, self.observation_size)
            if self.scale_images:
                features = features / np.float32(255.0)
        if self.input_index is not None:
            features = features[:, self.input_index]
        return features

    def network_output(self, observation: np.ndarray) -> np.ndarray:
        """The action network's output before the head (see ``ExportedPathway.network_output``),
        one row per sample."""
        features = self.features(observation)
        if len(features) <= self.tile_size:
            return self.columns_output(features.T).T
        output = np.empty((len(features), self.layers[-1].bias.shape[0]), dtype=np.float32)
        for start in range(0, len(features), self.tile_size):
            tile = features[start : start + self.tile_size]
            output[start : start + len(tile)] = self.columns_output(tile.T).T
        return output

    def columns_output(self, columns: np.ndarray) -> np.ndarray:
        """The network's output for feature-major inputs (one column per sample)."""
        values = np.ascontiguousarray(columns)
        for layer, activations in zip(self.layers, self.activations):
            values = layer(values)
            for activation in activations:
                values = activation(values)
        return values

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        """The deterministic action(s): one observation or a batch, as ``predict`` takes them."""
        observation = np.asarray(observation)
        assert self.observation_space.shape is not None  # Box and Discrete spaces have one
        single = observation.ndim == len(self.observation_space.shape)
        output = self.network_output(observation)
        if self.head == "argmax":
            actions = output.argmax(axis=1)
        elif self.head == "quantile_argmax":
            actions = output.reshape(output.shape[0], self.n_quantiles, -1).mean(axis=1).argmax(axis=1)
        else:
            if self.head == "unscale":
                output = self.action_low + np.float32(0.5) * (output + np.float32(1.0)) * self.action_range
            else:
                output = np.clip(output, self.action_low, self.action_high)
            assert self.action_space.shape is not None
            actions = output.reshape(-1, *self.action_space.shape)
        return actions[0] if single else actions

    def stored_weights(self) -> int:
        """Weights stored over all layers."""
        return sum(layer.stored_weights() for layer in self.layers)
