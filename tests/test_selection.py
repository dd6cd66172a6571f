"""Layer budgets, random masks and the global top-k."""

from __future__ import annotations

import math

import pytest
import torch as th

from sb3_pathways.masking.layers import convert_to_masked
from sb3_pathways.masking.overlap import overlap_matrix
from sb3_pathways.masking.pathway import NetworkPathway
from sb3_pathways.masking.selection import (
    balanced_scores,
    guaranteed_connections,
    keep_count,
    layer_budgets,
    per_unit_top_k,
    random_masks,
    top_k_masks,
)

SHAPES = [th.Size((64, 3)), th.Size((64, 64)), th.Size((1, 64))]


@pytest.mark.parametrize("distribution", ["random", "erk"])
@pytest.mark.parametrize("keep_ratio", [0.03, 0.05, 0.3, 0.9])
def test_budgets_sum_exactly_to_k(distribution: str, keep_ratio: float) -> None:
    total = sum(math.prod(shape) for shape in SHAPES)
    keep = keep_count(total, keep_ratio)
    budgets = layer_budgets(SHAPES, keep, distribution)
    assert sum(budgets) == keep
    assert all(0 <= budget <= math.prod(shape) for budget, shape in zip(budgets, SHAPES))
    masks = random_masks(SHAPES, keep, distribution, generator=th.Generator().manual_seed(0))
    assert [int(mask.sum()) for mask in masks] == budgets


def test_uniform_budgets_give_every_layer_the_same_share_at_least_one_per_output_unit() -> None:
    budgets = layer_budgets(SHAPES, 435, "random")  # 10% of 4352: 19.1 < 64 output units, raised to 64
    assert budgets[0] == 64
    assert budgets == [64, 365, 6]  # the other 371 split 4096:64 by largest remainder (365.3, 5.7)
    assert layer_budgets([th.Size((64, 64)), th.Size((2, 64))], 410, "random") == [398, 12]  # 397.6, 12.4: no floor binds


@pytest.mark.parametrize("distribution", ["random", "erk"])
def test_random_masks_give_every_output_unit_an_input(distribution: str) -> None:
    shapes = [th.Size((256, 3)), th.Size((256, 256)), th.Size((1, 256)), th.Size((32, 4, 8, 8))]
    keep = keep_count(sum(math.prod(shape) for shape in shapes), 0.05)
    for seed in range(5):
        masks = random_masks(shapes, keep, distribution, generator=th.Generator().manual_seed(seed))
        assert sum(int(mask.sum()) for mask in masks) == keep
        for mask in masks:
            assert bool(mask.reshape(mask.shape[0], -1).any(dim=1).all())


def test_top_k_keeps_the_best_input_of_every_output_unit() -> None:
    # the output layer's scores are all below the hidden layer's (a small-gain output layer)
    hidden, output = th.rand(64, 8) + 1.0, th.rand(2, 64) * 1e-3
    masks = top_k_masks([hidden, output], 70)
    assert sum(int(mask.sum()) for mask in masks) == 70
    assert masks[1].sum(dim=1).tolist() == [1, 1]
    assert masks[1][0, int(output[0].argmax())] and masks[1][1, int(output[1].argmax())]
    assert bool(masks[0].any(dim=1).all())


def test_too_few_weights_for_the_output_units_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"keeps 100 of 4352 weights, fewer than its 129 output units.*at most 0\.9704"):
        layer_budgets(SHAPES, 100, "random")
    with pytest.raises(ValueError, match="fewer than its 129 output units"):
        top_k_masks([th.rand(shape) for shape in SHAPES], 100)


def test_erk_favours_small_layers_and_caps_at_dense() -> None:
    budgets = layer_budgets(SHAPES, keep_count(4352, 0.05), "erk")
    densities = [budget / math.prod(shape) for budget, shape in zip(budgets, SHAPES)]
    assert densities[0] > densities[1] and densities[2] > densities[1]
    # at a high keep ratio the small layers saturate and the rest goes to the large one
    budgets = layer_budgets(SHAPES, keep_count(4352, 0.9), "erk")
    assert budgets[0] == 192 and budgets[2] == 64 and sum(budgets) == keep_count(4352, 0.9)


def test_top_k_is_global_and_exact_with_ties() -> None:
    # each output unit's best input first (0.9, 0.5 or 0.5, 0.8), then the best of the rest
    scores = [th.tensor([[0.1, 0.9], [0.5, 0.5]]), th.tensor([[0.5, 0.0, 0.8]])]
    masks = top_k_masks(scores, 4)
    assert sum(int(m.sum()) for m in masks) == 4
    assert masks[0][0, 1] and masks[1][0, 2]  # 0.9 and 0.8, across layers
    assert int(masks[0][1].sum()) + int(masks[1][0, 0]) == 2  # two of the three tied 0.5 scores
    assert not masks[0][0, 0] and not masks[1][0, 1]
    flat = th.zeros(2, 5)
    assert int(top_k_masks([flat], 4)[0].sum()) == 4


def test_bad_distribution_is_rejected() -> None:
    with pytest.raises(ValueError, match="mask_init must be one of"):
        layer_budgets(SHAPES, 10, "snip")


def test_overlap_is_shared_over_union_and_refuses_other_architectures() -> None:
    first = {"a": th.tensor([[True, True, False, False]])}
    second = {"a": th.tensor([[True, False, True, False]])}
    matrix = overlap_matrix([first, second])
    assert matrix.tolist() == [[1.0, 1 / 3], [1 / 3, 1.0]]
    with pytest.raises(ValueError, match="a has different shapes"):
        overlap_matrix([first, {"a": th.ones(2, 4, dtype=th.bool)}])
    with pytest.raises(ValueError, match="no masked weight in common"):
        overlap_matrix([first, {"b": th.ones(1, 4, dtype=th.bool)}])


def test_per_unit_top_k_gives_every_output_unit_the_same_number_of_its_best_inputs() -> None:
    # an outer-product score (as SNIP scores of a layer nearly are): a layer's top-k gives the
    # units with the largest errors the extra inputs, the rest keeping only their best one
    errors, activations = th.tensor([9.0, 8.0, 1.0, 0.5, 0.2]), th.tensor([3.0, 2.0, 1.0, 0.1])
    score = errors[:, None] * activations[None, :]
    layer_top_k = top_k_masks([score], 8)[0]
    assert layer_top_k.sum(dim=1).tolist() == [3, 2, 1, 1, 1]
    per_unit = per_unit_top_k(score, 8)
    assert per_unit.sum().item() == 8 and per_unit.sum(dim=1).tolist() == [2, 2, 2, 1, 1]
    assert per_unit[:, :2].sum().item() == 8  # each unit's best inputs; the extra ones to the units scoring highest next
    full = per_unit_top_k(score, 20)
    assert bool(full.all())
    with pytest.raises(ValueError, match=r"keep must be between 5 \(one input per output unit\) and 20, got 4"):
        per_unit_top_k(score, 4)


def test_within_layer_per_unit_keeps_the_layer_shares_and_exact_k() -> None:
    layers = {"a": th.nn.Linear(6, 8), "b": th.nn.Linear(8, 3)}
    masked = [layer for module in layers.values() for layer in convert_to_masked(module)]
    network = NetworkPathway("net", 0.3, dict(zip(["a.weight", "b.weight"], masked)))
    generator = th.Generator().manual_seed(0)
    scores = {"a.weight": th.rand(8, 6, generator=generator), "b.weight": th.rand(3, 8, generator=generator)}
    for allocation in ("global", "erk"):
        top_k = network.top_k(scores, allocation=allocation)
        per_unit = network.top_k(scores, allocation=allocation, within_layer="per_unit")
        assert top_k is not None and per_unit is not None
        assert [int(m.sum()) for m in per_unit.values()] == [int(m.sum()) for m in top_k.values()]
        for name, mask in per_unit.items():
            fan_ins = mask.sum(dim=1)
            assert int(fan_ins.max() - fan_ins.min()) <= 1, (allocation, name)
    with pytest.raises(ValueError, match=r"within_layer must be one of \('top_k', 'per_unit', 'balanced'\), got 'rows'"):
        network.top_k(scores, within_layer="rows")


def test_cover_inputs_keeps_a_connection_of_every_input_feature() -> None:
    # an outer-product score whose last two inputs carry little activation (observation
    # features that vary little): the top-k never reads them; cover_inputs keeps their best output
    errors, activations = th.tensor([9.0, 8.0, 1.0, 0.5]), th.tensor([3.0, 2.0, 1.0, 1e-3, 1e-4])
    first = errors[:, None] * activations[None, :]
    second = th.rand(2, 4, generator=th.Generator().manual_seed(0))
    plain = top_k_masks([first, second], 14)
    assert plain[0][:, 3:].sum().item() == 0
    covered = top_k_masks([first, second], 14, cover_inputs=True)
    assert sum(int(mask.sum()) for mask in covered) == 14
    for mask in covered:
        assert bool(mask.any(dim=0).all()) and bool(mask.any(dim=1).all())
    assert covered[0][0, 3] and covered[0][0, 4]  # each feature's best output: the unit with the largest error
    needed = sum(int(guaranteed_connections(score, cover_inputs=True).sum()) for score in (first, second))
    assert 9 <= needed <= 15  # between max(rows, columns) and rows + columns per layer
    with pytest.raises(ValueError, match=rf"cannot give every output unit an input and every input unit an output \({needed}"):
        top_k_masks([first, second], needed - 1, cover_inputs=True)


def test_cover_inputs_of_a_convolution_keeps_every_input_channel() -> None:
    score = th.rand(8, 4, 3, 3, generator=th.Generator().manual_seed(1))
    score[:, 2] *= 1e-6
    mask = guaranteed_connections(score, cover_inputs=True)
    best = score[:, 2].reshape(-1).argmax()
    assert mask[:, 2].sum().item() == 1 and mask[:, 2].reshape(-1)[best]
    assert bool(mask.reshape(8, -1).any(dim=1).all()) and bool(mask.transpose(0, 1).reshape(4, -1).any(dim=1).all())
    assert top_k_masks([score], 40, cover_inputs=True)[0][:, 2].any()


def test_balanced_scores_give_every_unit_the_same_total_by_rescaling_rows_and_columns() -> None:
    generator = th.Generator().manual_seed(0)
    errors, activations = th.rand(6, 1, generator=generator) * 10, th.rand(1, 9, generator=generator)
    score = errors * activations * th.rand(6, 9, generator=generator)
    balanced = balanced_scores(score)
    assert th.allclose(balanced.sum(dim=1), th.full((6,), 1 / 6), rtol=1e-4)
    assert th.allclose(balanced.sum(dim=0), th.full((9,), 1 / 9), rtol=1e-4)
    # a rescaling of rows and columns: balanced = r_i · score · c_j, so the ratio is an outer product
    ratio = (balanced / score).double()
    assert th.allclose(ratio, ratio[:, :1] * ratio[:1, :] / ratio[0, 0], rtol=1e-4)
    # a single output (a critic's last layer) or a single input: nothing to balance against
    assert th.equal(balanced_scores(score[:1]), score[:1]) and th.equal(balanced_scores(score[:, :1]), score[:, :1])
    conv_score = th.rand(4, 3, 2, 2, generator=generator)
    assert th.allclose(balanced_scores(conv_score).sum(dim=(1, 2, 3)), th.full((4,), 1 / 4), rtol=1e-4)


@pytest.mark.parametrize("allocation", ["global", "erk"])
def test_within_layer_balanced_spreads_the_connections_over_the_units(allocation: str) -> None:
    # outer-product scores with a few large output errors and input activations: a layer's
    # top-k gathers on those units, the balanced top-k spreads over all of them
    layers = {"a": th.nn.Linear(32, 32), "b": th.nn.Linear(32, 4)}
    masked = [layer for module in layers.values() for layer in convert_to_masked(module)]
    network = NetworkPathway("net", 0.15, dict(zip(["a.weight", "b.weight"], masked)))
    generator = th.Generator().manual_seed(1)
    errors = th.rand(32, 1, generator=generator) ** 4
    activations = th.rand(1, 32, generator=generator) ** 4
    scores = {
        "a.weight": errors * activations * th.rand(32, 32, generator=generator),
        "b.weight": th.rand(4, 32, generator=generator),
    }
    top_k = network.top_k(scores, allocation=allocation)
    balanced = network.top_k(scores, allocation=allocation, within_layer="balanced")
    assert top_k is not None and balanced is not None
    # the same layer shares, exactly k in all
    assert [int(m.sum()) for m in balanced.values()] == [int(m.sum()) for m in top_k.values()]
    assert sum(int(m.sum()) for m in balanced.values()) == network.n_keep
    top_k_fan_in, balanced_fan_in = top_k["a.weight"].sum(dim=1), balanced["a.weight"].sum(dim=1)
    top_k_fan_out, balanced_fan_out = top_k["a.weight"].sum(dim=0), balanced["a.weight"].sum(dim=0)
    assert int(balanced_fan_in.max()) < int(top_k_fan_in.max())
    assert float(balanced_fan_out.float().std()) < 0.5 * float(top_k_fan_out.float().std())
    assert 3 * int((balanced_fan_out == 0).sum()) <= int((top_k_fan_out == 0).sum())
    balanced_cover = network.top_k(scores, allocation=allocation, within_layer="balanced", cover_inputs=True)
    assert balanced_cover is not None and all(bool(m.any(dim=0).all()) for m in balanced_cover.values())


@pytest.mark.parametrize("allocation", ["global", "erk", "random"])
def test_network_top_k_covers_inputs_with_every_allocation(allocation: str) -> None:
    layers = {"a": th.nn.Linear(12, 16), "b": th.nn.Linear(16, 16), "c": th.nn.Linear(16, 2)}
    masked = [layer for module in layers.values() for layer in convert_to_masked(module)]
    network = NetworkPathway("net", 0.75, dict(zip(["a.weight", "b.weight", "c.weight"], masked)))
    generator = th.Generator().manual_seed(2)
    scores = {name: th.rand(layer.weight.shape, generator=generator) for name, layer in network.layers.items()}
    scores["a.weight"][:, 6:] *= 1e-4
    masks = network.top_k(scores, allocation=allocation, cover_inputs=True)
    assert masks is not None and sum(int(mask.sum()) for mask in masks.values()) == network.n_keep
    assert all(bool(mask.any(dim=0).all()) for mask in masks.values())
    with pytest.raises(ValueError, match=r"cover_inputs=True works with within_layer='top_k'"):
        network.top_k(scores, within_layer="per_unit", cover_inputs=True)
    with pytest.raises(TypeError, match="cover_inputs must be a bool, got 'yes'"):
        network.top_k(scores, cover_inputs="yes")  # type: ignore[arg-type]
