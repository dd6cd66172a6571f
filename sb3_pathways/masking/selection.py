"""How many weights each layer keeps, and which ones: layer budgets (uniform, ERK), random
masks and the global top-k selection used by every score-based update rule.

Every selection keeps at least one input for each output unit of each layer (each row of a
linear weight, each output channel of a convolution): a global top-k of magnitudes would
otherwise empty the output layers SB3 initialises with a small gain, and a uniform share
would leave most units of a narrow first layer without an input. Score-based selections can
also keep at least one output for each input unit (``cover_inputs``): a top-k of SNIP scores
otherwise drops the observation features whose scores are small, and leaves hidden units
that feed nothing."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch as th

MASK_INITS = ("random", "erk")
#: how a score-based selection splits k among layers: one global top-k (within each ensemble
#: member, or ``"pooled"`` over all of them), or fixed layer shares
ALLOCATIONS = ("global", "pooled", *MASK_INITS)
#: the allocations whose scores decide the layer shares
SCORE_ALLOCATIONS = ("global", "pooled")
#: how a layer's active weights are chosen from its scores: its top-k, the same number of
#: top-scoring inputs for every output unit, or the top-k of scores balanced over units
WITHIN_LAYER = ("top_k", "per_unit", "balanced")
#: Sinkhorn iterations of :func:`balanced_scores`
BALANCING_ITERATIONS = 10


def check_selection(allocation: str, within_layer: str, cover_inputs: bool) -> None:
    """Raise a clear ``ValueError`` for a selection that does not exist."""
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
    if within_layer not in WITHIN_LAYER:
        raise ValueError(f"within_layer must be one of {WITHIN_LAYER}, got {within_layer!r}")
    if not isinstance(cover_inputs, bool):
        raise TypeError(f"cover_inputs must be a bool, got {cover_inputs!r}")
    if cover_inputs and within_layer == "per_unit":
        raise ValueError(
            "cover_inputs=True works with within_layer='top_k' or 'balanced' (per_unit gives every output unit "
            f"its own count), got within_layer={within_layer!r}"
        )


def keep_count(n_weights: int, keep_ratio: float) -> int:
    """k = round(keep_ratio × n_weights), the number of active weights of a network."""
    return round(keep_ratio * n_weights)


def output_units(shape: Sequence[int]) -> int:
    """Output units of a layer of weight shape ``shape`` (rows of a linear weight, output
    channels of a convolution): the fewest active weights that give each one an input."""
    return int(shape[0])


def input_units(shape: Sequence[int]) -> int:
    """Input units of a layer of weight shape ``shape`` (columns of a linear weight, input
    channels of a convolution)."""
    return int(shape[1])


def check_covers_outputs(shapes: Sequence[Sequence[int]], keep: int, where: str = "the network") -> None:
    """Raise a clear ``ValueError`` when ``keep`` active weights cannot give every output unit
    of every layer an input."""
    needed = sum(output_units(shape) for shape in shapes)
    if keep < needed:
        total = sum(math.prod(shape) for shape in shapes)
        raise ValueError(
            f"{where} keeps {keep} of {total} weights, fewer than its {needed} output units (each keeps one "
            f"input): lower the sparsity to at most {1 - needed / total:.4f}"
        )


def largest_remainder(shares: Sequence[float], total: int, caps: Sequence[int]) -> list[int]:
    """Integer counts close to ``shares``, each at most its cap, summing exactly to ``total``."""
    counts = [min(math.floor(share), cap) for share, cap in zip(shares, caps)]
    order = sorted(range(len(shares)), key=lambda i: shares[i] - math.floor(shares[i]), reverse=True)
    missing = total - sum(counts)
    while missing > 0:
        progressed = False
        for i in order:
            if missing == 0:
                break
            if counts[i] < caps[i]:
                counts[i] += 1
                missing -= 1
                progressed = True
        if not progressed:
            raise ValueError(f"cannot place {total} weights in layers of sizes {list(caps)}")
    return counts


def _erk_densities(shapes: Sequence[th.Size], keep: int) -> list[float]:
    """Erdős–Rényi-kernel densities (Evci et al., 2020): density ∝ sum(shape) / prod(shape),
    scaled to keep ``keep`` weights in all, layers that would exceed 1 capped at dense."""
    sizes = [math.prod(shape) for shape in shapes]
    raw = [sum(shape) / size for shape, size in zip(shapes, sizes)]
    dense: set[int] = set()
    while True:
        budget = keep - sum(sizes[i] for i in dense)
        weighted = sum(raw[i] * sizes[i] for i in range(len(sizes)) if i not in dense)
        scale = budget / weighted if weighted > 0 else 0.0
        over = {i for i in range(len(sizes)) if i not in dense and raw[i] * scale > 1.0}
        if not over:
            return [1.0 if i in dense else raw[i] * scale for i in range(len(sizes))]
        dense |= over


def proportional_budgets(sizes: Sequence[int], keep: int) -> list[int]:
    """``keep`` split in proportion to ``sizes``, summing exactly to ``keep``."""
    return largest_remainder([keep * size / sum(sizes) for size in sizes], keep, sizes)


def _raise_to_floors(shares: Sequence[float], floors: Sequence[int], total: int) -> list[float]:
    """``shares`` (summing to ``total``) with every share below its floor raised to it and the
    others scaled down to keep the sum."""
    fixed: set[int] = set()
    while True:
        free = [i for i in range(len(shares)) if i not in fixed]
        budget = total - sum(floors[i] for i in fixed)
        weight = sum(shares[i] for i in free)
        scale = budget / weight if weight > 0 else 0.0
        below = {i for i in free if shares[i] * scale < floors[i]}
        if not below:
            return [float(floors[i]) if i in fixed else shares[i] * scale for i in range(len(shares))]
        fixed |= below


def layer_budgets(
    shapes: Sequence[th.Size], keep: int, distribution: str = "random", floors: Sequence[int] | None = None
) -> list[int]:
    """
    Split ``keep`` active weights among layers, each layer keeping at least one weight per
    output unit.

    :param shapes: weight shape of every layer of one network
    :param keep: active weights of the whole network
    :param distribution: ``"random"`` (the same share of every layer, "uniform") or ``"erk"``
    :param floors: the fewest active weights of each layer (default: its output units; at
        least that many)
    :return: active weights per layer, summing exactly to ``keep``
    """
    sizes = [math.prod(shape) for shape in shapes]
    if not 0 <= keep <= sum(sizes):
        raise ValueError(f"keep must be in [0, {sum(sizes)}], got {keep}")
    if distribution == "random":
        total = sum(sizes)
        shares = [keep * size / total for size in sizes]
    elif distribution == "erk":
        shares = [density * size for density, size in zip(_erk_densities(shapes, keep), sizes)]
    else:
        raise ValueError(f"mask_init must be one of {MASK_INITS}, got {distribution!r}")
    check_covers_outputs(shapes, keep)
    if floors is None:
        floors = [output_units(shape) for shape in shapes]
    elif sum(floors) > keep:
        raise ValueError(f"the layers' floors {list(floors)} hold {sum(floors)} weights, more than keep={keep}")
    return largest_remainder(_raise_to_floors(shares, floors, keep), keep, sizes)


def random_masks(
    shapes: Sequence[th.Size],
    keep: int,
    distribution: str = "random",
    device: th.device | str = "cpu",
    generator: th.Generator | None = None,
) -> list[th.Tensor]:
    """Random bool masks with the per-layer budgets of ``distribution`` and exactly ``keep``
    active weights in all: one random input for every output unit, the rest at random."""
    masks = []
    for shape, count in zip(shapes, layer_budgets(shapes, keep, distribution)):
        units = output_units(shape)
        fan_in = math.prod(shape) // units
        rows = th.zeros((units, fan_in), dtype=th.bool)
        rows[th.arange(units), th.randint(fan_in, (units,), generator=generator)] = True
        rest = (~rows).flatten().nonzero().squeeze(1)
        rows.view(-1)[rest[th.randperm(rest.numel(), generator=generator)[: count - units]]] = True
        masks.append(rows.view(shape).to(device))
    return masks


def guaranteed_connections(score: th.Tensor, cover_inputs: bool = False) -> th.Tensor:
    """
    The connections a selection keeps whatever k is: the highest-scoring input of every
    output unit and, with ``cover_inputs``, the highest-scoring output of every input unit (for
    a convolution, its best output channel and kernel position).

    :param score: score tensor shaped like the layer's weight
    :param cover_inputs: also keep one connection of every input unit
    :return: bool mask shaped like ``score``
    """
    units = output_units(score.shape)
    rows = score.detach().reshape(units, -1)
    guaranteed = th.zeros_like(rows, dtype=th.bool).scatter_(1, rows.argmax(dim=1, keepdim=True), True)
    if cover_inputs:
        inputs = input_units(score.shape)
        by_input = score.detach().reshape(units, inputs, -1).transpose(0, 1).reshape(inputs, -1)
        best = by_input.argmax(dim=1)
        kernel = by_input.shape[1] // units
        guaranteed.view(units, inputs, kernel)[best // kernel, th.arange(inputs, device=best.device), best % kernel] = True
    return guaranteed.view(score.shape)


def check_covers_inputs(guaranteed: Sequence[th.Tensor], keep: int) -> None:
    """Raise a clear ``ValueError`` when ``keep`` active weights cannot hold the ``guaranteed``
    connections of :func:`guaranteed_connections` with ``cover_inputs``."""
    needed = sum(int(kept.sum()) for kept in guaranteed)
    if keep < needed:
        total = sum(kept.numel() for kept in guaranteed)
        raise ValueError(
            f"keeping {keep} of {total} weights cannot give every output unit an input and every input unit an "
            f"output ({needed} connections here): lower the sparsity to at most {1 - needed / total:.4f} "
            "or set cover_inputs=False"
        )


def top_k_masks(scores: Sequence[th.Tensor], keep: int, cover_inputs: bool = False) -> list[th.Tensor]:
    """
    Global top-k across layers: the guaranteed connections of every layer (the
    highest-scoring input of every output unit, and with ``cover_inputs`` the highest-scoring
    output of every input unit), then the highest of the remaining scores of all layers
    together, ``keep`` active in all (ties broken by ``torch.topk``).

    :param scores: one score tensor per layer, shaped like its weight
    :param keep: number of active weights
    :param cover_inputs: every input unit of every layer keeps a connection
    :return: bool masks shaped like the scores
    """
    check_covers_outputs([score.shape for score in scores], keep)
    guaranteed = [guaranteed_connections(score, cover_inputs).reshape(-1) for score in scores]
    if cover_inputs:
        check_covers_inputs(guaranteed, keep)
    flat = th.cat([th.where(kept, math.inf, score.detach().reshape(-1).float()) for kept, score in zip(guaranteed, scores)])
    selected = th.zeros_like(flat, dtype=th.bool)
    selected[th.topk(flat, keep, sorted=False).indices] = True
    return [part.view(score.shape) for part, score in zip(selected.split([s.numel() for s in scores]), scores)]


def per_unit_top_k(score: th.Tensor, keep: int) -> th.Tensor:
    """
    The same number of inputs for every output unit, its highest-scoring ones: ``keep //
    units`` each, and one more for the ``keep % units`` units whose next input scores
    highest. Unlike a layer's top-k, which gathers on the few units whose scores are large
    (SNIP scores of a layer are close to an outer product of output errors and input
    activations), every unit keeps its share of the inputs.

    :param score: score tensor shaped like the layer's weight
    :param keep: active weights in the layer (at least one per output unit)
    :return: bool mask shaped like ``score``
    """
    units = output_units(score.shape)
    rows = score.detach().reshape(units, -1).float()
    fan_in = rows.shape[1]
    if keep < units or keep > rows.numel():
        raise ValueError(f"keep must be between {units} (one input per output unit) and {rows.numel()}, got {keep}")
    per_unit, extra = divmod(keep, units)
    order = rows.argsort(dim=1, descending=True, stable=True)
    rank = th.empty_like(order).scatter_(1, order, th.arange(fan_in, device=order.device).expand_as(order))
    selected = rank < per_unit
    if extra:
        next_best = rows.gather(1, order[:, per_unit : per_unit + 1]).squeeze(1)
        lucky = th.topk(next_best, extra, sorted=False).indices
        selected[lucky] |= rank[lucky] == per_unit
    return selected.view(score.shape)


def balanced_scores(score: th.Tensor, iterations: int = BALANCING_ITERATIONS) -> th.Tensor:
    """
    A layer's scores rescaled so that every output unit and every input unit carries the same
    total (Sinkhorn balancing: rows and input columns normalised in turn). SNIP scores of a
    layer are close to an outer product of output errors and input activations, so that a
    top-k of them gathers on a few units (on HalfCheetah, a tenth of the hidden units receive
    60% of the connections and most receive one); the top-k of balanced scores keeps, for every
    unit, the connections that are large *for that unit*, spread over the units as a random
    mask is. The result is ``r_i · score_ij · c_j``: a rescaling of the rows and of the input
    columns, nothing else. A layer with a single output unit or a single input unit keeps its
    scores: there the unit factors cannot be told from the weights' own scores (balancing
    would make every score equal).

    :param score: non-negative score tensor shaped like the layer's weight
    :param iterations: row and column normalisations
    :return: balanced scores, shaped like ``score``
    """
    units, inputs = output_units(score.shape), input_units(score.shape)
    if units == 1 or inputs == 1:
        return score.detach().clone()
    balanced = score.detach().reshape(units, inputs, -1).double().clamp(min=0)
    # a unit whose scores are all zero keeps them zero; a tiny floor keeps the divisions finite
    balanced = balanced + balanced.amax().clamp(min=1e-300) * 1e-12
    for _ in range(iterations):
        balanced = balanced / balanced.sum(dim=(1, 2), keepdim=True) / units
        balanced = balanced / balanced.sum(dim=(0, 2), keepdim=True) / inputs
    return balanced.to(score.dtype).view(score.shape)
