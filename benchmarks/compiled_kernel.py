"""Would a compiled kernel make a DAPD pathway faster at batch 1? A measurement with numba.

Issue 16 asks for a small compiled kernel only if it is measured faster than the runtimes the
package has. This script builds the pathway ``benchmarks/inference.py`` builds (SAC on
HalfCheetah-v5, 95%, DAPD rescorings over 3,000 steps), then times one observation through
its linear layers (ReLU between them) four ways, one thread, medians of 7 repeats:

- ``numpy pathway``: ``export_pathway(model).to_numpy(batch_size=1)``, the package's runtime
  (observation handling and action squashing included);
- ``dense numpy``: the dense network of the same size through the same runtime;
- ``numba csr``: one compiled function running every layer as a CSR product, the weights
  compiled in as constants (so the call passes a single array);
- ``numba dense``: the dense network's layers as compiled loops, the same way.

numba is not a dependency of the package: ``pip install numba`` first.

    python benchmarks/compiled_kernel.py --hidden 256 1024
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import scipy.sparse
import torch as th
from inference import ENV_ID, median_seconds_per_call, pathway_model
from stable_baselines3 import SAC

from sb3_pathways import export_pathway

try:
    from numba import njit
except ImportError:  # pragma: no cover - the script says what to install
    raise SystemExit("this measurement needs numba: pip install numba") from None


def layer_arrays(exported: object) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) of every linear layer of an exported pathway, float32."""
    return [
        (layer.weight.detach().numpy().astype(np.float32), layer.bias.detach().numpy().astype(np.float32))
        for layer in exported.layers  # type: ignore[attr-defined]
    ]


def compiled_csr_chain(layers: list[tuple[np.ndarray, np.ndarray]]) -> Callable[[np.ndarray], np.ndarray]:
    """The layers as one compiled function of the input vector: CSR products, ReLU between."""
    matrices = [scipy.sparse.csr_matrix(weight) for weight, _ in layers]
    sizes = np.array([matrix.shape[0] for matrix in matrices])
    row_starts = np.cumsum([0, *(size + 1 for size in sizes[:-1])])  # each layer's indptr has size + 1 entries
    offsets = np.cumsum([0, *(matrix.nnz for matrix in matrices[:-1])])
    indptr = np.concatenate([matrix.indptr + offset for matrix, offset in zip(matrices, offsets)]).astype(np.int64)
    indices = np.concatenate([matrix.indices for matrix in matrices]).astype(np.int64)
    data = np.concatenate([matrix.data for matrix in matrices]).astype(np.float32)
    biases = np.concatenate([bias for _, bias in layers])
    bias_starts = np.cumsum([0, *sizes[:-1]])
    n_layers = len(layers)

    @njit(fastmath=True)
    def run(inputs: np.ndarray) -> np.ndarray:
        current = inputs
        for layer in range(n_layers):
            outputs = np.empty(sizes[layer], np.float32)
            for row in range(sizes[layer]):
                total = biases[bias_starts[layer] + row]
                for entry in range(indptr[row_starts[layer] + row], indptr[row_starts[layer] + row + 1]):
                    total += data[entry] * current[indices[entry]]
                outputs[row] = total if layer == n_layers - 1 or total > 0 else 0.0
            current = outputs
        return current

    return run


def compiled_dense_chain(layers: list[tuple[np.ndarray, np.ndarray]]) -> Callable[[np.ndarray], np.ndarray]:
    """The layers as one compiled function of the input vector: dense loops, ReLU between."""
    (w1, b1), (w2, b2), (w3, b3) = layers  # a SAC actor: two hidden layers and the mean head

    @njit(fastmath=True)
    def run(inputs: np.ndarray) -> np.ndarray:
        current = inputs
        for weight, bias, last in ((w1, b1, False), (w2, b2, False), (w3, b3, True)):
            outputs = np.empty(weight.shape[0], np.float32)
            for row in range(weight.shape[0]):
                total = bias[row]
                for column in range(weight.shape[1]):
                    total += weight[row, column] * current[column]
                outputs[row] = total if last or total > 0 else 0.0
            current = outputs
        return current

    return run


def reference(layers: list[tuple[np.ndarray, np.ndarray]], inputs: np.ndarray) -> np.ndarray:
    current = inputs
    for index, (weight, bias) in enumerate(layers):
        current = weight @ current + bias
        if index < len(layers) - 1:
            current = np.maximum(current, 0.0)
    return current


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    for hidden in args.hidden:
        pathway = export_pathway(pathway_model(hidden, "dapd", 3_000, 0), sparse_layers="never")
        unmasked = SAC("PathwayPolicy", ENV_ID, seed=0, device="cpu", policy_kwargs=dict(net_arch=[hidden] * 2, sparsity=0.0))
        dense = export_pathway(unmasked, sparse_layers="never")
        observation = pathway.observation_space.sample()[None]  # type: ignore[attr-defined]
        timings: dict[str, float] = {}
        numpy_pathway, dense_numpy = pathway.to_numpy(batch_size=1), dense.to_numpy(sparse_layers="never")
        for name, runtime in (("numpy pathway", numpy_pathway), ("dense numpy", dense_numpy)):
            timings[name] = median_seconds_per_call(
                lambda runtime=runtime, observation=observation: runtime(observation), 2_000, args.repeats
            )
        pathway_layers = layer_arrays(pathway)
        for name, layers, build in (
            ("numba csr", pathway_layers, compiled_csr_chain),
            ("numba dense", layer_arrays(dense), compiled_dense_chain),
        ):
            run = build(layers)
            inputs = np.random.default_rng(0).standard_normal(layers[0][0].shape[1]).astype(np.float32)
            assert np.allclose(run(inputs), reference(layers, inputs), atol=1e-4)
            timings[name] = median_seconds_per_call(lambda run=run, inputs=inputs: run(inputs), 5_000, args.repeats)
        active = sum(int(np.count_nonzero(weight)) for weight, _ in pathway_layers)
        print(
            f"hidden {hidden}: {active} active weights; "
            + ", ".join(f"{name} {seconds * 1e6:.1f} µs" for name, seconds in timings.items())
            + f"; numba csr over numba dense {timings['numba dense'] / timings['numba csr']:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
