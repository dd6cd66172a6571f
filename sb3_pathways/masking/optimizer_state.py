"""What happens to the optimizer state of weights that join or leave a pathway.

Two policies, chosen per mask update rule (``optimizer_state`` of the pathway callbacks):

- ``"reset"``: every per-weight statistic (Adam moments, RMSprop averages, momentum) of a
  weight that changes state is zeroed, so a weight that joins starts as if its optimizer were
  new. Adam's bias correction uses one step counter per parameter tensor, which a joining
  weight would share with weights trained for thousands of steps: with zeroed moments and
  ``1 - beta ** t`` already near 1, its first step would be ``(1 - beta1) / sqrt(1 - beta2)``
  (3.2x with the default betas) times the learning rate. :class:`EntryBiasCorrection` gives
  such a weight its own count, so that its updates are exactly those of a fresh Adam.
- ``"keep"``: the state is left as it is, as in the DAPD reference implementation (which
  masks gradients and never touches the optimizer). Only the momentum (Adam's first moment,
  SGD's and RMSprop's momentum buffer) of a weight that leaves is zeroed, because a dormant
  weight must stay an exact zero and momentum would move it; its second moment decays as the
  reference's does, and comes back with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch as th

OPTIMIZER_STATES = ("reset", "keep")
#: optimizer state entries that move a weight whose gradient is zero
MOMENTUM_KEYS = ("exp_avg", "momentum_buffer")
#: the per-entry step at which a weight's Adam moments last started from zero
START_STEP_KEY = "pathway_start_step"
#: optimizers whose bias correction :class:`EntryBiasCorrection` makes per-entry
BIAS_CORRECTED = (th.optim.Adam, th.optim.AdamW)
#: optimizers with a shared bias-correction step that ``"reset"`` cannot make per-entry
UNSUPPORTED_FOR_RESET = (th.optim.NAdam, th.optim.RAdam, th.optim.Adamax)

_HOOK_ATTRIBUTE = "_pathway_entry_bias_correction"
_INDEX_ATTRIBUTE = "_pathway_joined_index"


def validate_optimizer_state(value: Any) -> str:
    if value not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer_state must be one of {OPTIMIZER_STATES}, got {value!r}")
    return str(value)


def update_optimizer_state(
    optimizers: Iterable[th.optim.Optimizer],
    transitions: Mapping[th.Tensor, tuple[th.Tensor, th.Tensor]],
    optimizer_state: str = "reset",
) -> None:
    """
    Apply an ``optimizer_state`` policy (see the module documentation) to the weights that
    joined or left a pathway.

    :param optimizers: optimizers that may hold the parameters
    :param transitions: parameter -> (bool tensor of entries active before, after)
    :param optimizer_state: ``"reset"`` or ``"keep"``
    """
    validate_optimizer_state(optimizer_state)
    for optimizer in optimizers:
        if optimizer_state == "reset" and isinstance(optimizer, BIAS_CORRECTED):
            EntryBiasCorrection.attach(optimizer)
        for parameter, (before, after) in transitions.items():
            state = optimizer.state.get(parameter)
            if not state:
                continue
            if optimizer_state == "reset":
                _reset_entries(optimizer, parameter, state, before, after)
            else:
                leaving = before & ~after
                for key in MOMENTUM_KEYS:
                    if isinstance(state.get(key), th.Tensor):
                        state[key].masked_fill_(leaving, 0.0)


def _reset_entries(
    optimizer: th.optim.Optimizer, parameter: th.Tensor, state: dict[str, Any], before: th.Tensor, after: th.Tensor
) -> None:
    changed = before ^ after
    if isinstance(optimizer, UNSUPPORTED_FOR_RESET) and bool(changed.any()):
        raise ValueError(
            f"optimizer_state='reset' cannot give {type(optimizer).__name__} a per-weight bias correction; "
            "use Adam or AdamW, or optimizer_state='keep'"
        )
    for key, value in state.items():
        if key != START_STEP_KEY and isinstance(value, th.Tensor) and value.shape == parameter.shape:
            value.masked_fill_(changed, 0.0)
    if isinstance(optimizer, BIAS_CORRECTED) and "step" in state and bool(changed.any()):
        start = state.get(START_STEP_KEY)
        if start is None:
            start = state[START_STEP_KEY] = th.zeros_like(parameter, dtype=th.float32)
        start.masked_fill_((after & ~before).to(start.device), float(state["step"]))
        start.masked_fill_((before & ~after).to(start.device), 0.0)  # zero moments: no update to correct


class EntryBiasCorrection:
    """
    An optimizer step hook that gives every Adam/AdamW weight whose moments were reset when it
    joined a pathway its own bias-correction count.

    Adam updates a weight by ``lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)``
    with ``t`` shared by the whole tensor. After each step, weights that joined at step ``t0``
    are moved from that update to the one with ``s = t - t0`` in place of ``t``: the update of
    a fresh Adam that started at ``t0``. The start steps live in the optimizer state (key
    ``"pathway_start_step"``, 0 for weights that need no correction), so they are saved and
    loaded with it. Only the joined weights are computed on; a weight whose corrections both
    equal 1 in float32 leaves the set, and the key goes once the set is empty.
    """

    @staticmethod
    def attach(optimizer: th.optim.Optimizer) -> None:
        """Register the hook on ``optimizer`` once."""
        if getattr(optimizer, _HOOK_ATTRIBUTE, None) is None:
            setattr(optimizer, _HOOK_ATTRIBUTE, optimizer.register_step_post_hook(EntryBiasCorrection.after_step))

    @staticmethod
    @th.no_grad()
    def after_step(optimizer: th.optim.Optimizer, *_: Any) -> None:
        for group in optimizer.param_groups:
            joined = []
            for parameter in group["params"]:
                state = optimizer.state.get(parameter)
                if state and START_STEP_KEY in state:
                    index, starts = EntryBiasCorrection._joined(state[START_STEP_KEY])
                    if index.numel() == 0:
                        del state[START_STEP_KEY]
                    else:
                        joined.append((parameter, state, index, starts))
            if joined:
                EntryBiasCorrection._correct(joined, group)

    @staticmethod
    def _joined(start: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Flat indices of the non-zero start steps and their values, cached on the tensor
        until it changes."""
        cached = getattr(start, _INDEX_ATTRIBUTE, None)
        if cached is None or cached[0] != start._version:
            index = start.reshape(-1).nonzero().squeeze(1)
            cached = (start._version, index, start.reshape(-1).index_select(0, index))
            setattr(start, _INDEX_ATTRIBUTE, cached)
        return cached[1], cached[2]

    @staticmethod
    def _correct(joined: list[tuple[th.Tensor, dict[str, Any], th.Tensor, th.Tensor]], group: dict[str, Any]) -> None:
        """Correct the joined weights of one parameter group, all in one computation (a few
        small tensors: the cost is the number of operations, not their size)."""
        beta1, beta2 = (float(beta) for beta in group["betas"])
        lr, eps = float(group["lr"]), float(group["eps"])
        second_key = "max_exp_avg_sq" if group.get("amsgrad", False) else "exp_avg_sq"
        steps = [float(state["step"]) for _, state, _, _ in joined]
        if len(set(steps)) == 1:
            shared_step: float | th.Tensor = steps[0]
        else:
            shared_step = th.cat([th.full_like(starts, step) for (_, _, _, starts), step in zip(joined, steps)])
        starts = th.cat([starts for _, _, _, starts in joined])
        first = th.cat([state["exp_avg"].reshape(-1).index_select(0, index) for _, state, index, _ in joined]).float()
        second = th.cat([state[second_key].reshape(-1).index_select(0, index) for _, state, index, _ in joined]).float()
        own_step = (shared_step - starts).clamp(min=1.0)
        shared = first / (1 - beta1**shared_step) / ((second / (1 - beta2**shared_step)).sqrt() + eps)
        own = first / (1 - beta1**own_step) / ((second / (1 - beta2**own_step)).sqrt() + eps)
        corrections = ((shared - own) * lr).split([index.numel() for _, _, index, _ in joined])
        horizon = math.ceil(math.log(2.0**-24) / math.log(max(beta1, beta2, 1e-12)))
        for (parameter, state, index, starts), correction, step in zip(joined, corrections, steps):
            parameter.view(-1).index_add_(0, index, correction.to(parameter.dtype))
            if int(step) % 1000 == 0:  # now and then, the weights past the horizon leave the set
                state[START_STEP_KEY].view(-1).index_fill_(0, index[step - starts >= horizon], 0.0)
