"""What one multi-task masked layer costs against a dense one, and what bounds it.

A 400x400 ``MultiTaskMaskedLinear`` with 10 task pathways (5% random masks), batch 256 with
random task ids, forward and backward (gradients of the input and of the trained weights), one
thread, median of repeats in one run:

- ``dense``: ``nn.Linear`` (what dense multi-task SAC runs);
- ``warm-up``: the layer before merging (each task its own weight copy), as it runs (on the
  CPU, at 10% density or less, through each task's CSR layout, whatever the layer's size);
- ``merged``: the layer after :meth:`merge_task_weights` (shared weight, each task through its
  mask), as it runs;
- ``warm-up-dense`` and ``merged-dense``: the same layers with dense products
  (``csr_max_density=0``: ``W * M_t`` for every task, then one dense product per task);
- ``chunks-only``: the per-task products alone, on weights masked beforehand and without the
  weight gradient: a floor for any implementation that routes each task through its own mask
  with one product per task;
- ``sparse-csr``: the merged layer's sparse products alone, without autograd: each task's
  pathway a CSR matrix (``torch.sparse``, the layer's own :class:`TaskPathwayLayout`) gathered
  from the shared weight, for the output, the input gradient (the transposed CSR matrix) and
  the weight gradient (``torch.sparse.sampled_addmm``, only the task's entries).

    python benchmarks/task_routing.py
    python benchmarks/task_routing.py --width 1024 --batch 1280
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch as th
from inference import median_seconds_per_call
from torch import nn
from torch.nn import functional as F

from sb3_pathways.masking.layers import (
    MultiTaskMaskedLinear,
    TaskRouter,
    _sparse_task_backward,
    _sparse_task_forward,
    _task_rows,
    convert_to_masked,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=400)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    th.manual_seed(0)
    inputs = th.randn(args.batch, args.width, requires_grad=True)
    tasks = th.randint(0, args.tasks, (args.batch,))
    router = TaskRouter(args.tasks)
    router.set_tasks(tasks)

    dense = nn.Linear(args.width, args.width)
    masks = th.rand(args.tasks, args.width, args.width) < args.density
    layers = {}
    for name in ("warm-up", "merged", "warm-up-dense", "merged-dense"):
        module = nn.Linear(args.width, args.width)
        (layer,) = convert_to_masked(module, n_pathways=args.tasks)
        assert isinstance(layer, MultiTaskMaskedLinear)
        layer.task_router = router
        layer.set_mask(masks)
        if name.startswith("merged"):
            layer.merge_task_weights()
        if name.endswith("dense"):
            layer.csr_max_density = 0.0
        else:
            layer.csr_min_weights = 0  # the layer as a large one runs
        layers[name] = layer
    merged = layers["merged"]
    with th.no_grad():
        task_weights = (merged.weight * merged._task_masks).unbind(0)
    gradient = th.randn(args.batch, args.width)

    def run(layer: nn.Module) -> Callable[[], None]:
        def step() -> None:
            layer.zero_grad(set_to_none=True)
            layer(inputs).backward(gradient)

        return step

    def chunks_only() -> None:
        chunks = inputs[router.order].split(router.counts)
        outputs = [
            F.linear(chunk, weight, merged.bias) for weight, chunk, count in zip(task_weights, chunks, router.counts) if count
        ]
        th.cat(outputs)[router.inverse].backward(gradient)

    sparse_csr = csr_products(merged, inputs.detach(), gradient, router)
    steps = {
        "dense": run(dense),
        "warm-up": run(layers["warm-up"]),
        "merged": run(merged),
        "warm-up-dense": run(layers["warm-up-dense"]),
        "merged-dense": run(layers["merged-dense"]),
        "chunks-only": chunks_only,
        "sparse-csr": sparse_csr,
    }
    times = {name: 1e3 * median_seconds_per_call(step, args.calls, args.repeats) for name, step in steps.items()}
    print(f"width {args.width}, batch {args.batch}, {args.tasks} tasks, density {args.density}, one thread")
    print("| variant | forward + backward (ms) | cost over dense |")
    print("| --- | --- | --- |")
    for name, value in times.items():
        print(f"| {name} | {value:.2f} | {value / times['dense']:.2f}x |")


def csr_products(
    layer: MultiTaskMaskedLinear, inputs: th.Tensor, gradient: th.Tensor, router: TaskRouter
) -> Callable[[], None]:
    """A merged layer's three products through its tasks' CSR layout (the layer's own
    :class:`TaskPathwayLayout`, forward and backward), called directly, without autograd."""
    layout = layer._sparse_layout()
    assert layout is not None, "the merged layer runs sparse products (csr_min_weights=0)"
    flat_weight = layer.weight.detach().reshape(-1)
    grouped_inputs, grouped_gradient = inputs.index_select(0, router.order), gradient.index_select(0, router.order)

    def products() -> None:
        outputs = inputs.new_empty(inputs.shape[0], layout.shape[0])
        input_gradient = th.empty_like(inputs)
        weight_gradient = th.zeros_like(layer.weight)
        for task, rows in _task_rows(router.counts):
            matrix = _sparse_task_forward(layout, task, flat_weight, grouped_inputs[rows], outputs[rows])
            _sparse_task_backward(
                layout, task, matrix, grouped_inputs[rows], grouped_gradient[rows], input_gradient, rows, weight_gradient
            )

    return products


if __name__ == "__main__":
    main()
