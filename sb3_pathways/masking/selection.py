"""How many weights each layer keeps, and which ones: layer budgets (uniform, ERK), random
masks and the global top-k selection used by every score-based update rule."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch as th

MASK_INITS = ("random", "erk")


def keep_count(n_weights: int, keep_ratio: float) -> int:
    """k = round(keep_ratio × n_weights), the number of active weights of a network."""
    return round(keep_ratio * n_weights)


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


def layer_budgets(shapes: Sequence[th.Size], keep: int, distribution: str = "random") -> list[int]:
    """
    Split ``keep`` active weights among layers.

    :param shapes: weight shape of every layer of one network
    :param keep: active weights of the whole network
    :param distribution: ``"random"`` (the same share of every layer, "uniform") or ``"erk"``
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
    return largest_remainder(shares, keep, sizes)


def random_masks(
    shapes: Sequence[th.Size],
    keep: int,
    distribution: str = "random",
    device: th.device | str = "cpu",
    generator: th.Generator | None = None,
) -> list[th.Tensor]:
    """Random bool masks with the per-layer budgets of ``distribution`` and exactly ``keep``
    active weights in all."""
    masks = []
    for shape, count in zip(shapes, layer_budgets(shapes, keep, distribution)):
        n_weights = math.prod(shape)
        flat = th.zeros(n_weights, dtype=th.bool, device=device)
        flat[th.randperm(n_weights, generator=generator, device="cpu")[:count].to(device)] = True
        masks.append(flat.view(shape))
    return masks


def top_k_masks(scores: Sequence[th.Tensor], keep: int) -> list[th.Tensor]:
    """
    Global top-k across layers: the ``keep`` highest scores of all layers together are active.
    Exactly ``keep`` entries are selected (ties broken by ``torch.topk``).

    :param scores: one score tensor per layer
    :param keep: number of active weights
    :return: bool masks shaped like the scores
    """
    flat = th.cat([score.reshape(-1) for score in scores])
    selected = th.zeros_like(flat, dtype=th.bool)
    selected[th.topk(flat, keep, sorted=False).indices] = True
    return [part.view(score.shape) for part, score in zip(selected.split([s.numel() for s in scores]), scores)]
