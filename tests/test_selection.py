"""Layer budgets, random masks and the global top-k."""

from __future__ import annotations

import math

import pytest
import torch as th

from sb3_pathways.masking.selection import keep_count, layer_budgets, random_masks, top_k_masks

SHAPES = [th.Size((64, 3)), th.Size((64, 64)), th.Size((1, 64))]


@pytest.mark.parametrize("distribution", ["random", "erk"])
@pytest.mark.parametrize("keep_ratio", [0.01, 0.05, 0.3, 0.9])
def test_budgets_sum_exactly_to_k(distribution: str, keep_ratio: float) -> None:
    total = sum(math.prod(shape) for shape in SHAPES)
    keep = keep_count(total, keep_ratio)
    budgets = layer_budgets(SHAPES, keep, distribution)
    assert sum(budgets) == keep
    assert all(0 <= budget <= math.prod(shape) for budget, shape in zip(budgets, SHAPES))
    masks = random_masks(SHAPES, keep, distribution, generator=th.Generator().manual_seed(0))
    assert [int(mask.sum()) for mask in masks] == budgets


def test_uniform_budgets_give_every_layer_the_same_share() -> None:
    budgets = layer_budgets(SHAPES, 217, "random")  # 5% of 4352
    assert budgets == [10, 204, 3]  # 9.57, 204.24, 3.19: largest remainder


def test_erk_favours_small_layers_and_caps_at_dense() -> None:
    budgets = layer_budgets(SHAPES, keep_count(4352, 0.05), "erk")
    densities = [budget / math.prod(shape) for budget, shape in zip(budgets, SHAPES)]
    assert densities[0] > densities[1] and densities[2] > densities[1]
    # at a high keep ratio the small layers saturate and the rest goes to the large one
    budgets = layer_budgets(SHAPES, keep_count(4352, 0.9), "erk")
    assert budgets[0] == 192 and budgets[2] == 64 and sum(budgets) == keep_count(4352, 0.9)


def test_top_k_is_global_and_exact_with_ties() -> None:
    scores = [th.tensor([[0.1, 0.9], [0.5, 0.5]]), th.tensor([0.5, 0.0, 0.8])]
    masks = top_k_masks(scores, 3)
    assert sum(int(m.sum()) for m in masks) == 3
    assert masks[0][0, 1] and masks[1][2]  # 0.9 and 0.8, across layers
    assert int(masks[0][1].sum()) + int(masks[1][0]) == 1  # one of the three tied 0.5 scores
    assert not masks[0][0, 0] and not masks[1][1]
    flat = th.zeros(10)
    assert int(top_k_masks([flat], 4)[0].sum()) == 4


def test_bad_distribution_is_rejected() -> None:
    with pytest.raises(ValueError, match="mask_init must be one of"):
        layer_budgets(SHAPES, 10, "snip")
