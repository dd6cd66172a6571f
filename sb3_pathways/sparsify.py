"""Turning an existing SB3 model (stock policy, fresh or trained) into a pathway model."""

from __future__ import annotations

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_pathways.masking.pathway import NetworkPathway
from sb3_pathways.policies import PathwayPolicyMixin, SparsitySpec, validate_sparsity
from sb3_pathways.registry import pathway_equivalent, specs_with
from sb3_pathways.updaters.magnitude import magnitude_masks

SPARSIFY_METHODS = ("magnitude", "random")


def sparsify(model: BaseAlgorithm, sparsity: SparsitySpec = 0.95, method: str = "magnitude") -> BaseAlgorithm:
    """
    Turn ``model``'s stock policy into its pathway equivalent, in place: the same weights,
    masked by magnitude (global top-k of ``abs(θ)`` per network, every output unit keeping its
    strongest input) or at random (the same share of every
    layer). The policy object, its optimizers and every alias the algorithm holds stay valid;
    the optimizer state of the pruned weights is reset. ``model.save`` then stores a pathway
    policy and ``Algo.load`` gives it back.

    :param model: an SB3 / sb3-contrib model with a stock policy (``MlpPolicy``, ...)
    :param sparsity: a float in [0, 1) or a dict network name -> sparsity
    :param method: ``"magnitude"`` or ``"random"``
    :return: the same model
    """
    if method not in SPARSIFY_METHODS:
        raise ValueError(f"method must be one of {SPARSIFY_METHODS}, got {method!r}")
    sparsity = validate_sparsity(sparsity)
    policy = model.policy
    if isinstance(policy, PathwayPolicyMixin):
        raise TypeError("sparsify: the model already has a pathway policy; its masks are changed by a mask updater")
    pathway_class = pathway_equivalent(model)
    if pathway_class is None:
        accepted = sorted(
            {
                f"{spec.name}: {stock.__module__}.{stock.__qualname__}"
                for spec in specs_with("policies")
                for policy in spec.policies.values()
                for stock in policy.__bases__
                if not issubclass(stock, PathwayPolicyMixin)
            }
        )
        raise TypeError(
            f"sparsify: {type(model).__name__} with policy class {type(policy).__qualname__} is not supported; "
            f"accepted: {accepted}"
        )

    stock_class = type(policy)
    policy.__class__ = pathway_class
    assert isinstance(policy, PathwayPolicyMixin)
    policy.sparsity = sparsity
    policy.mask_init = "random"
    try:
        policy._check_covers_outputs()
    except ValueError:
        policy.__class__ = stock_class  # type: ignore[assignment]
        raise
    policy._setup_pathways(_largest_weights if method == "magnitude" else None)
    model.policy_class = pathway_class
    model.policy_kwargs = {**model.policy_kwargs, "sparsity": sparsity, "mask_init": "random"}
    return model


def _largest_weights(network: NetworkPathway) -> dict[str, th.Tensor]:
    """Top-k ``abs(θ)`` across the network's layers (per selection group)."""
    return magnitude_masks(network, network.n_keep, full=True)
