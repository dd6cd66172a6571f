"""Deployed linear layers: dense, or a CSR sparse matrix when that was measured faster at the
deployment batch size."""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Any, Literal

import torch as th
from torch import nn

from sb3_pathways.deploy.chains import LinearStage

SparseLayers = Literal["auto", "never", "always"]
SPARSE_LAYER_CHOICES: tuple[str, ...] = ("auto", "never", "always")


def check_sparse_layers(sparse_layers: Any, batch_size: Any) -> None:
    """Raise a clear ``ValueError`` for a ``sparse_layers`` choice or a ``batch_size`` that
    does not exist."""
    if sparse_layers not in SPARSE_LAYER_CHOICES:
        raise ValueError(f"sparse_layers must be one of {SPARSE_LAYER_CHOICES}, got {sparse_layers!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


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
        return frozen_linear(self.weight.to_dense(), self.bias)

    def __deepcopy__(self, memo: dict[int, Any]) -> CSRLinear:
        # Sparse CSR tensors have no storage that ``copy.deepcopy`` could copy.
        return CSRLinear(self.weight.to_dense(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.weight.values().numel()}"


def frozen_linear(weight: th.Tensor, bias: th.Tensor) -> nn.Linear:
    """A plain ``nn.Linear`` holding ``weight`` and ``bias``, without gradients."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
    layer.weight = nn.Parameter(weight.clone(), requires_grad=False)
    layer.bias = nn.Parameter(bias.clone(), requires_grad=False)
    return layer


def median_seconds(function: Any, inputs: Any, repeats: int = 15) -> float:
    """Median seconds of ``function(inputs)`` over ``repeats`` calls after 3 warm-up calls
    (a torch tensor or a NumPy array; CUDA is synchronised around each call)."""
    on_cuda = isinstance(inputs, th.Tensor) and inputs.device.type == "cuda"
    synchronize = th.cuda.synchronize if on_cuda else (lambda: None)
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


def fastest_if_faster(dense: Any, dense_inputs: Any, candidates: list[Any], candidate_inputs: Any) -> Any:
    """The fastest of ``candidates`` if its call was measured at least 10% faster than
    ``dense``'s (each on its own inputs, medians of :func:`median_seconds`), else ``dense``:
    the rule of every ``sparse_layers="auto"`` choice."""
    times = [median_seconds(candidate, candidate_inputs) for candidate in candidates]
    fastest = min(range(len(candidates)), key=times.__getitem__)
    return candidates[fastest] if times[fastest] < 0.9 * median_seconds(dense, dense_inputs) else dense


def sparse_if_faster(dense: Any, sparse: Any, dense_inputs: Any, sparse_inputs: Any) -> Any:
    """``sparse`` if it was measured at least 10% faster than ``dense``, else ``dense``
    (:func:`fastest_if_faster` with one candidate)."""
    return fastest_if_faster(dense, dense_inputs, [sparse], sparse_inputs)


def deployed_layer(stage: LinearStage, sparse_layers: str, batch_size: int) -> nn.Module:
    """
    One layer of a deployed pathway: dense, or CSR when ``sparse_layers="always"``, or when
    ``"auto"`` and the CSR product was measured at least 10% faster at ``batch_size``.

    :param stage: the layer (its live weights and mask)
    :param sparse_layers: ``"auto"``, ``"never"`` or ``"always"``
    :param batch_size: the deployment batch size the choice is measured at
    """
    dense = frozen_linear(stage.weight, stage.bias)
    if sparse_layers == "never" or stage.weight.numel() == 0:
        return dense
    sparse = CSRLinear(stage.weight * stage.mask, stage.bias)
    if sparse_layers == "always":
        return sparse
    inputs = th.randn(batch_size, stage.weight.shape[1], device=stage.weight.device)
    return sparse_if_faster(dense, sparse, inputs, inputs.t().contiguous())
