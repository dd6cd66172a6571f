"""Masked layers: ``nn.Linear`` and ``nn.Conv2d`` whose weight is used through a binary mask.

A masked layer keeps three tensors:

- ``weight`` (the parameter): the *live* weight, equal to θ ⊙ m. Dormant entries are exact
  zeros, so the forward pass is the stock ``nn.Linear`` / ``nn.Conv2d`` forward, at no cost.
- ``weight_mask`` (bool buffer, shape ``(n_pathways, *weight.shape)``): one mask per pathway
  (one per task in multi-task training, a single one otherwise).
- ``weight_stored`` (buffer, shape of ``weight``): the stored value θ of every dormant entry,
  so that a weight that leaves the pathway and comes back returns with its value.

The gradient of ``weight`` is multiplied by the mask as soon as it is accumulated, so dormant
entries receive exactly zero gradient, before any gradient clipping or optimizer step.

Existing layers are converted in place (:func:`convert_to_masked`), the way
``torch.nn.utils.parametrize`` does it: every reference to the layer stays valid, its
parameters (and so the optimizers that hold them) are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch as th
from torch import nn


class MaskedWeightMixin(nn.Module):
    """Mask machinery shared by :class:`MaskedLinear` and :class:`MaskedConv2d`."""

    weight: th.Tensor
    weight_mask: th.Tensor
    weight_stored: th.Tensor
    _gradient_mask: th.Tensor

    def _setup_mask(self, n_pathways: int = 1) -> None:
        if n_pathways < 1:
            raise ValueError(f"n_pathways must be at least 1, got {n_pathways}")
        mask = th.ones((n_pathways, *self.weight.shape), dtype=th.bool, device=self.weight.device)
        self.register_buffer("weight_mask", mask)
        self.register_buffer("weight_stored", self.weight.detach().clone())
        # The active mask as floats, kept beside the bool masks so that the gradient hook is a
        # single in-place multiply.
        self.register_buffer("_gradient_mask", th.ones_like(self.weight.detach()), persistent=False)
        self._register_gradient_mask()

    def _register_gradient_mask(self) -> None:
        self.weight.register_post_accumulate_grad_hook(self._mask_gradient)

    def _mask_gradient(self, weight: th.Tensor) -> None:
        if weight.grad is not None:
            weight.grad.mul_(self._gradient_mask)

    @property
    def n_pathways(self) -> int:
        return self.weight_mask.shape[0]

    @property
    def active_mask(self) -> th.Tensor:
        """Bool mask of the weights used by at least one pathway (shape of ``weight``)."""
        if self.n_pathways == 1:
            return self.weight_mask[0]
        return self.weight_mask.any(dim=0)

    def full_weight(self) -> th.Tensor:
        """θ: the live value of active weights and the stored value of dormant ones."""
        return th.where(self.active_mask, self.weight.detach(), self.weight_stored)

    def pathway_weight(self, pathway: int = 0) -> th.Tensor:
        """The weight as one pathway sees it: θ ⊙ m for that pathway (a detached copy)."""
        return (self.full_weight() * self.weight_mask[pathway]).detach().clone()

    @th.no_grad()
    def set_mask(self, mask: th.Tensor) -> None:
        """
        Replace the mask. Dormant weights are set to zero in the live tensor and keep their
        value aside; weights that become active again get their stored value back.

        :param mask: bool tensor shaped ``(n_pathways, *weight.shape)`` or ``weight.shape``
            (single pathway)
        """
        if mask.shape == self.weight.shape:
            mask = mask.unsqueeze(0)
        if mask.shape != self.weight_mask.shape:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {tuple(self.weight_mask.shape)}")
        full = self.full_weight()
        self.weight_mask.copy_(mask)
        self.weight_stored.copy_(full)
        self._gradient_mask.copy_(self.active_mask)
        self.weight.copy_(full * self._gradient_mask)

    @th.no_grad()
    def set_full_weight(self, weight: th.Tensor) -> None:
        """Overwrite θ (live and stored values) and keep the current mask."""
        self.weight_stored.copy_(weight)
        self.weight.copy_(weight * self.active_mask)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A dense (stock SB3) state dict has no mask: keep the current mask and take the
        # incoming weight as θ.
        weight_key = prefix + "weight"
        if weight_key in state_dict:
            state_dict.setdefault(prefix + "weight_mask", self.weight_mask.clone())
            state_dict.setdefault(prefix + "weight_stored", state_dict[weight_key])
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        with th.no_grad():
            self._gradient_mask.copy_(self.active_mask)
            self.weight.mul_(self._gradient_mask)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Gradient hooks live on the parameter and are not copied by ``copy.deepcopy``/pickle.
        super().__setstate__(state)
        self._register_gradient_mask()

    def extra_repr(self) -> str:
        active = int(self.active_mask.sum())
        return f"{super().extra_repr()}, active={active}/{self.weight.numel()}, pathways={self.n_pathways}"


class MaskedLinear(MaskedWeightMixin, nn.Linear):
    """``nn.Linear`` with a pathway mask on its weight (the bias is never masked)."""


class MaskedConv2d(MaskedWeightMixin, nn.Conv2d):
    """``nn.Conv2d`` with a pathway mask on its weight (the bias is never masked)."""


MASKED_LAYER_TYPES: dict[type[nn.Module], type[MaskedWeightMixin]] = {
    nn.Linear: MaskedLinear,
    nn.Conv2d: MaskedConv2d,
}


def convert_to_masked(module: nn.Module, n_pathways: int = 1) -> list[MaskedWeightMixin]:
    """
    Turn every ``nn.Linear`` and ``nn.Conv2d`` inside ``module`` into its masked version, in
    place (all masks start full). Layers already masked are left as they are.

    :param module: the network to convert
    :param n_pathways: number of masks per layer (tasks in multi-task training)
    :return: the masked layers of ``module``, in ``named_modules`` order
    """
    layers = []
    for layer in module.modules():
        masked_type = MASKED_LAYER_TYPES.get(type(layer))
        if masked_type is not None:
            layer.__class__ = masked_type
            assert isinstance(layer, MaskedWeightMixin)
            layer._setup_mask(n_pathways)
        if isinstance(layer, MaskedWeightMixin):
            layers.append(layer)
    return layers
