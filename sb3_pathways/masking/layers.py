"""Masked layers: ``nn.Linear`` and ``nn.Conv2d`` whose weight is used through a binary mask.

A masked layer keeps three tensors:

- ``weight`` (the parameter): the *live* weight, equal to θ ⊙ m. Dormant entries are exact
  zeros, so the forward pass is the stock ``nn.Linear`` / ``nn.Conv2d`` forward, at no cost.
- ``weight_mask`` (bool buffer, shape ``(n_pathways, *weight.shape)``): one mask per pathway
  (one per task in multi-task training, a single one otherwise).
- ``weight_stored`` (buffer, shape of ``weight``): the stored value θ of every dormant entry,
  so that a weight that leaves the pathway and comes back returns with its value.

The gradient of ``weight`` is multiplied by the mask inside autograd (a tensor hook), so
dormant entries receive exactly zero gradient, before any gradient clipping or optimizer
step, and also where an algorithm takes gradients with ``th.autograd.grad`` and writes the
weights itself (TRPO). Only scoring lets gradients reach dormant weights
(:meth:`MaskedWeightMixin.unmasked_gradients`).

With several pathways (one per task), a linear layer routes every sample through its task's
mask (:class:`TaskRouter`), one matrix product per task present in the batch
(:class:`TaskGroupedLinear`); on the CPU, a sparse pathway's products are sparse ones, its
CSR layout built once per mask (:class:`TaskPathwayLayout`). Until the pathways are merged,
each task trains its own copy of the weights (``task_weight``, shape ``(n_pathways, *weight.shape)``, live values θ_t ⊙ m_t
beside ``task_weight_stored`` as for the single weight);
:meth:`MultiTaskMaskedLinear.merge_task_weights` averages the copies into the shared
``weight`` over the tasks that use each entry and frees them; from then on the gradient of a
shared entry is the average over those tasks, not their sum.

Recurrent layers (``nn.LSTM``) keep their stock fused forward pass too: each weight matrix
gets a :class:`MaskedRecurrentWeight` child that holds its mask and stored values, the weight
itself staying the LSTM's parameter.

Existing layers are converted in place (:func:`convert_to_masked`), the way
``torch.nn.utils.parametrize`` does it: every reference to the layer stays valid, its
parameters (and so the optimizers that hold them) are unchanged.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F
from torch.utils.hooks import unserializable_hook

TaskIdFunction = Callable[[th.Tensor], th.Tensor]


#: the buffers a masked layer adds to its stock layer (a multi-task layer adds the last three)
MASK_BUFFERS = ("weight_mask", "weight_stored", "_gradient_mask", "task_weight_stored", "_task_masks", "merged")
#: the parameters a multi-task layer adds to its stock layer
MASK_PARAMETERS = ("task_weight",)


class TaskRouter:
    """
    The task of every sample in the batch being processed, shared by the masked layers of a
    multi-task policy. The policy sets it from each network's input (the observation) before
    the network runs.

    :param n_tasks: number of tasks (pathways)
    """

    def __init__(self, n_tasks: int) -> None:
        self.n_tasks = n_tasks
        self.task_ids: th.Tensor | None = None
        #: samples sorted by task, samples per task, and the permutation back to batch order
        self.order = self.inverse = th.empty(0, dtype=th.long)
        self.counts: list[int] = []

    def set_tasks(self, task_ids: th.Tensor) -> None:
        """Set the batch's tasks and group its samples by task (once for all layers)."""
        task_ids = task_ids.reshape(-1).long()
        counts = th.bincount(task_ids, minlength=self.n_tasks)
        if counts.numel() > self.n_tasks or (task_ids.numel() and int(task_ids.min()) < 0):
            raise ValueError(f"task ids must be in [0, {self.n_tasks - 1}], got {task_ids.unique().tolist()}")
        self.task_ids = task_ids
        self.order = th.argsort(task_ids, stable=True)
        self.inverse = th.argsort(self.order)
        self.counts = counts.tolist()

    def follow_features_extractors(self, model: nn.Module, task_ids: TaskIdFunction) -> None:
        """Make every features extractor inside ``model`` set the tasks of the batch it
        receives (``task_ids(observation)``), before the layers that read them run."""

        def set_tasks(_: nn.Module, args: tuple[Any, ...]) -> None:
            self.set_tasks(task_ids(args[0]))

        for module in model.modules():
            if isinstance(module, BaseFeaturesExtractor):
                module.register_forward_pre_hook(set_tasks)

    def check(self, batch_size: int) -> None:
        if self.task_ids is None or self.task_ids.numel() != batch_size:
            raise RuntimeError(
                f"no task ids for a batch of {batch_size} samples: a multi-task layer ran outside a network "
                "whose input the policy routes (its features extractor sets the tasks)"
            )


class MaskedWeightMixin(nn.Module):
    """Mask machinery shared by :class:`MaskedLinear` and :class:`MaskedConv2d`."""

    weight: th.Tensor
    weight_mask: th.Tensor
    weight_stored: th.Tensor
    _gradient_mask: th.Tensor
    #: score every connection (dense) rather than the pathway: set while scoring
    score_dense: bool = False
    #: let gradients reach dormant weights (set while scoring, never while training)
    gradients_unmasked: bool = False
    _active_count: int = 0
    _weight_storage: int = 0

    def _setup_mask(self, n_pathways: int = 1) -> None:
        if n_pathways < 1:
            raise ValueError(f"n_pathways must be at least 1, got {n_pathways}")
        mask = th.ones((n_pathways, *self.weight.shape), dtype=th.bool, device=self.weight.device)
        self.register_buffer("weight_mask", mask)
        self.register_buffer("weight_stored", self.weight.detach().clone())
        # The active mask as floats, kept beside the bool masks so that the gradient hook is a
        # single in-place multiply.
        self.register_buffer("_gradient_mask", th.ones_like(self.weight.detach()), persistent=False)
        self._active_count = self.weight.numel()
        self._weight_storage = self.weight.data_ptr()
        self._register_gradient_mask()

    def _register_gradient_mask(self) -> None:
        # A tensor hook masks the gradient in autograd itself, so dormant weights get a zero
        # gradient whether the algorithm reads ``.grad`` (an optimizer) or calls
        # ``th.autograd.grad`` and writes the weights itself (TRPO's natural-gradient step).
        self.weight.register_hook(self._masked_gradient)

    def _refresh_gradient_mask(self) -> None:
        """Single pathway: the active mask. Several: 1 / (number of pathways using the entry), so
        that the accumulated gradient of a shared entry is the average over its tasks."""
        self._active_count = int(self.active_mask.sum())
        if self.n_pathways == 1:
            self._gradient_mask.copy_(self.weight_mask[0])
        else:
            users = self.weight_mask.sum(dim=0).to(self._gradient_mask.dtype)
            self._gradient_mask.copy_(th.where(users > 0, 1.0 / users.clamp(min=1), th.zeros_like(users)))

    @unserializable_hook
    def _masked_gradient(self, gradient: th.Tensor) -> th.Tensor | None:
        return None if self.gradients_unmasked else gradient * self._gradient_mask

    @contextlib.contextmanager
    def unmasked_gradients(self) -> Iterator[None]:
        """Inside the block gradients reach every weight, dormant ones included (for scoring)."""
        self.gradients_unmasked = True
        try:
            yield
        finally:
            self.gradients_unmasked = False

    def remask_replaced_weights(self) -> None:
        """Apply the mask again before a forward pass whenever the weight's storage was
        replaced (``param.data = ...``, as TRPO's line search writes its actor), so that dormant
        weights are zeros in every forward pass. Policies of such algorithms call this."""
        self.register_forward_pre_hook(MaskedWeightMixin._remask_before_forward)

    def _remask_before_forward(self, inputs: Any) -> None:
        self.remask_if_replaced()

    def remask_if_replaced(self) -> None:
        """Zero the dormant entries again if the weight tensor was replaced since the last
        time (a device move or ``param.data = ...``)."""
        if self.weight.data_ptr() != self._weight_storage:
            with th.no_grad():
                self.weight.mul_(self.active_mask)
            self._weight_storage = self.weight.data_ptr()

    def dormant_weights_are_zero(self) -> bool:
        """Whether every dormant entry of the live weight is an exact zero (one reduction: the
        live weight has no more non-zero entries than active ones)."""
        return int(th.count_nonzero(self.weight)) <= self._active_count

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

    def _connections(self) -> list[tuple[th.Tensor, th.Tensor]]:
        """Every live parameter with its value when all connections are on (θ)."""
        return [(self.weight, self.full_weight())]

    @contextlib.contextmanager
    def all_connections_on(self) -> Iterator[None]:
        """Inside the block every connection is on at its stored value θ (the dense network,
        also across task masks); the live values come back afterwards."""
        connections = self._connections()
        live = [parameter.detach().clone() for parameter, _ in connections]
        with th.no_grad():
            for parameter, full in connections:
                parameter.copy_(full)
        self.score_dense = True
        try:
            yield
        finally:
            with th.no_grad():
                for (parameter, _), value in zip(connections, live):
                    parameter.copy_(value)
            self.score_dense = False

    @property
    def independent(self) -> bool:
        """Whether each pathway trains its own weight copy (multi-task, before merging)."""
        return False

    def scored_weight(self) -> th.Tensor:
        """The parameter the forward pass reads θ from."""
        return self.weight

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
        self.weight.copy_(full * self.active_mask)
        self._refresh_gradient_mask()

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
        weight_key = self._weight_key(prefix)
        if weight_key in state_dict:
            state_dict.setdefault(prefix + "weight_mask", self.weight_mask.clone())
            state_dict.setdefault(prefix + "weight_stored", state_dict[weight_key])
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        with th.no_grad():
            self.weight.mul_(self.active_mask)
            self._refresh_gradient_mask()

    def _weight_key(self, prefix: str) -> str:
        """The state-dict key of the live weight, for this module's ``prefix``."""
        return prefix + "weight"

    def parameter_name(self, module_path: str) -> str:
        """The name of the masked weight in the policy, given this module's path."""
        return f"{module_path}.weight"

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Gradient hooks live on the parameter and are not copied by ``copy.deepcopy``/pickle.
        super().__setstate__(state)
        self._register_gradient_mask()

    def extra_repr(self) -> str:
        active = int(self.active_mask.sum())
        return f"{super().extra_repr()}, active={active}/{self.weight.numel()}, pathways={self.n_pathways}"


class MaskedLinear(MaskedWeightMixin, nn.Linear):
    """``nn.Linear`` with a pathway mask on its weight (the bias is never masked). Its forward
    pass is the stock one: dormant entries of the live weight are exact zeros."""


class MultiTaskMaskedLinear(MaskedLinear):
    """A :class:`MaskedLinear` with one pathway per task: each sample goes through its task's
    mask, and until :meth:`merge_task_weights` each task trains its own weight copy (see the
    module documentation)."""

    task_router: TaskRouter | None = None
    #: on the CPU, task products go through the pathways' CSR layout when the layer has at least
    #: ``csr_min_weights`` weights and a mean task density of at most ``csr_max_density``
    #: (``benchmarks/task_routing.py`` and ``multitask.py --speed``: faster at 400x400 below
    #: about 12% density, slower at 256x256; ``csr_max_density = 0`` turns it off)
    csr_max_density: float = 0.1
    csr_min_weights: int = 100_000
    _layout: TaskPathwayLayout | None = None
    _mask_density: float = 1.0
    _same_mask_for_every_task: bool = False
    task_weight: nn.Parameter
    task_weight_stored: th.Tensor
    _task_masks: th.Tensor
    merged: th.Tensor

    def _setup_mask(self, n_pathways: int = 1) -> None:
        if n_pathways < 2:
            raise ValueError(f"a multi-task layer needs at least 2 pathways, got {n_pathways}")
        super()._setup_mask(n_pathways)
        # the task masks as floats: multiplying by a bool tensor is many times slower
        self.register_buffer("_task_masks", th.ones_like(self.weight_mask, dtype=self.weight.dtype), persistent=False)
        copies = self.weight.detach().clone().unsqueeze(0).repeat(n_pathways, 1, 1)
        self.task_weight = nn.Parameter(copies)
        self.task_weight.register_hook(self._masked_task_gradient)
        self.register_buffer("task_weight_stored", copies.clone())
        self.register_buffer("merged", th.tensor(False, device=self.weight.device))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        weight_key, copies_key = prefix + "weight", prefix + "task_weight"
        if weight_key in state_dict and copies_key not in state_dict:
            # a single-network state dict (stock SB3 or single-task): every task starts from its weight
            state_dict[copies_key] = state_dict[weight_key].unsqueeze(0).repeat(self.n_pathways, 1, 1)
            state_dict.setdefault(prefix + "merged", self.merged.clone())
        if copies_key in state_dict:
            state_dict.setdefault(prefix + "task_weight_stored", state_dict[copies_key])
            # a merged layer saves no copies: take the saved layer's number of copies
            self._resize_task_copies(state_dict[copies_key].shape[0])
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._merged = bool(self.merged)
        if self._merged:
            self._release_task_copies()
        else:
            with th.no_grad():
                self.task_weight.mul_(self._task_masks)

    def _resize_task_copies(self, n_copies: int) -> None:
        if self.task_weight.shape[0] != n_copies:
            copies = self.weight.detach().new_zeros((n_copies, *self.weight.shape))
            self.task_weight.data = copies
            self.task_weight_stored = copies.clone()

    def _release_task_copies(self) -> None:
        """Free the task copies, which a merged layer never reads (nor do its optimizer and its
        target network's soft update then pass over them)."""
        self._resize_task_copies(0)

    def _register_gradient_mask(self) -> None:
        super()._register_gradient_mask()
        if "task_weight" in self._parameters:
            self.task_weight.register_hook(self._masked_task_gradient)

    def _refresh_gradient_mask(self) -> None:
        super()._refresh_gradient_mask()
        self._task_masks.copy_(self.weight_mask)
        self._mask_density = self.weight_mask.sum().item() / self.weight_mask.numel()
        self._same_mask_for_every_task = bool((self.weight_mask == self.weight_mask[:1]).all())
        self._layout = None

    def _sparse_layout(self) -> TaskPathwayLayout | None:
        """The pathways' CSR layout when the products should use it (on the CPU, sparse enough,
        and not while scoring, which reads every connection and every gradient)."""
        if self.weight.device.type != "cpu" or self.score_dense or self.gradients_unmasked:
            return None
        if not self.independent and self._same_mask_for_every_task:
            return None  # one dense product (see ``forward``)
        if self._mask_density > self.csr_max_density or self.weight.numel() < self.csr_min_weights:
            return None
        if self._layout is None or self._layout.device != self.weight.device:
            # a merged layer's gradient is averaged over the tasks using each weight
            self._layout = TaskPathwayLayout(self.weight_mask, None if self.independent else self._gradient_mask)
        return self._layout

    @unserializable_hook
    def _masked_gradient(self, gradient: th.Tensor) -> th.Tensor | None:
        if self._sparse_layout() is not None:
            return None  # the sparse products wrote the masked, task-averaged gradient
        return super()._masked_gradient(gradient)

    @unserializable_hook
    def _masked_task_gradient(self, gradient: th.Tensor) -> th.Tensor | None:
        if self.gradients_unmasked or self._sparse_layout() is not None:
            return None
        return gradient * self._task_masks

    @property
    def independent(self) -> bool:
        # a Python mirror of the ``merged`` buffer: no device sync in the forward pass
        return not self._merged

    _merged: bool = False

    def pathway_weight(self, pathway: int = 0) -> th.Tensor:
        if self.independent:
            return self.task_weight[pathway].detach().clone()
        return super().pathway_weight(pathway)

    def task_full_weight(self) -> th.Tensor:
        """θ of every task copy: live values on the task's pathway, stored values elsewhere
        (before merging: a merged layer has no copies)."""
        return th.where(self.weight_mask, self.task_weight.detach(), self.task_weight_stored)

    def _connections(self) -> list[tuple[th.Tensor, th.Tensor]]:
        connections = super()._connections()
        if self.independent:
            connections.append((self.task_weight, self.task_full_weight()))
        return connections

    @th.no_grad()
    def set_mask(self, mask: th.Tensor) -> None:
        if not self.independent:
            super().set_mask(mask)
            return
        task_full = self.task_full_weight()
        super().set_mask(mask)
        self.task_weight_stored.copy_(task_full)
        self.task_weight.copy_(task_full * self._task_masks)

    def scored_weight(self) -> th.Tensor:
        """The parameter the forward pass reads θ from: ``task_weight`` before merging."""
        return self.task_weight if self.independent else self.weight

    @th.no_grad()
    def merge_task_weights(self) -> None:
        """Average the task copies into the shared weight, over the tasks that use each entry
        (entries no task uses keep their stored value); the copies are then freed."""
        if not self.independent:
            return
        users = self.weight_mask.sum(dim=0)
        summed = (self.task_weight * self.weight_mask).sum(dim=0)
        merged = th.where(users > 0, summed / users.clamp(min=1), self.full_weight())
        self.set_full_weight(merged)
        self._release_task_copies()
        self.merged.fill_(True)
        self._merged = True
        self._refresh_gradient_mask()

    def forward(self, inputs: th.Tensor) -> th.Tensor:
        router = self.task_router
        assert router is not None, "a multi-task layer needs the policy's TaskRouter"
        router.check(inputs.shape[0])
        if not self.independent and (self.score_dense or self._same_mask_for_every_task):
            # one product: every connection, or the one pathway all tasks share (dormant entries are zeros)
            return F.linear(inputs, self.weight, self.bias)
        layout = self._sparse_layout()
        if self.independent:
            # dormant entries of the copies are zeros, as in the shared weight
            return TaskGroupedLinear.apply(inputs, self.task_weight, self.bias, None, router, layout)
        return TaskGroupedLinear.apply(inputs, self.weight, self.bias, self._task_masks, router, layout)


class TaskPathwayLayout:
    """
    Every task's pathway through one layer laid out as a CSR matrix (the index structures of the
    matrix and of its transpose), so that a task's products read only its active weights. The
    values are gathered from the weight at every product, so the layout stays valid until the
    masks change.

    :param masks: bool masks, ``(n_tasks, out_features, in_features)``
    :param gradient_scale: a factor per weight for the weight gradient (a shared weight's
        ``1 / number of tasks using it``), or ``None`` (1)
    """

    def __init__(self, masks: th.Tensor, gradient_scale: th.Tensor | None = None) -> None:
        self.shape = (int(masks.shape[1]), int(masks.shape[2]))
        self.device = masks.device
        n_out, n_in = self.shape
        self.entries: list[th.Tensor] = []
        self._columns: list[th.Tensor] = []
        self._row_starts: list[th.Tensor] = []
        self._transposed: list[th.Tensor] = []
        self._transposed_columns: list[th.Tensor] = []
        self._column_starts: list[th.Tensor] = []
        self.gradient_scales: list[th.Tensor | None] = []
        for mask in masks:
            entries = mask.reshape(-1).nonzero().squeeze(1)  # row-major: the CSR order
            rows, columns = entries // n_in, entries % n_in
            transposed = th.argsort(columns * n_out + rows)
            self.entries.append(entries)
            self._columns.append(columns.int())
            self._row_starts.append(_starts(rows, n_out))
            self._transposed.append(transposed)
            self._transposed_columns.append(rows[transposed].int())
            self._column_starts.append(_starts(columns, n_in))
            self.gradient_scales.append(None if gradient_scale is None else gradient_scale.reshape(-1)[entries])
        with warnings.catch_warnings():
            # torch warns once per process that CSR tensors are in beta: let that once be here,
            # not in a product
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
            self.matrix(0, th.zeros(masks[0].numel(), device=masks.device))

    def matrix(self, task: int, flat_weight: th.Tensor) -> th.Tensor:
        """Task ``task``'s weight ``(out, in)`` as a CSR matrix, its values read from ``flat_weight``."""
        values = flat_weight.index_select(0, self.entries[task])  # several times faster than indexing
        return _csr(self._row_starts[task], self._columns[task], values, self.shape)

    def transposed_matrix(self, task: int, matrix: th.Tensor) -> th.Tensor:
        """The transpose ``(in, out)`` of a task's CSR matrix, as a CSR matrix."""
        values = matrix.values().index_select(0, self._transposed[task])
        return _csr(self._column_starts[task], self._transposed_columns[task], values, self.shape[::-1])


def _starts(rows: th.Tensor, n_rows: int) -> th.Tensor:
    """CSR row pointers of sorted row indices, as 32-bit integers (which the CPU's sparse
    kernels take without converting them at every product)."""
    return th.cat([rows.new_zeros(1), th.bincount(rows, minlength=n_rows).cumsum(0)]).int()


def _csr(row_starts: th.Tensor, columns: th.Tensor, values: th.Tensor, shape: tuple[int, int]) -> th.Tensor:
    return th.sparse_csr_tensor(row_starts, columns, values, shape, check_invariants=False)


def _sparse_task_forward(
    layout: TaskPathwayLayout, task: int, flat_weight: th.Tensor, task_inputs: th.Tensor, task_outputs: th.Tensor
) -> th.Tensor:
    """One task's output through its CSR matrix, written into ``task_outputs``; returns the
    matrix (the backward products reuse it)."""
    matrix = layout.matrix(task, flat_weight)
    task_outputs.copy_(th.sparse.mm(matrix, task_inputs.t()).t())
    return matrix


class TaskGroupedLinear(th.autograd.Function):
    """
    The product of a multi-task layer: every sample goes through its task's weight, one matrix
    product per task present in the batch, each written in place into one output (and, going
    back, into one gradient), so that no per-task tensor is stacked or concatenated.

    Called as ``TaskGroupedLinear.apply(inputs, weight, bias, task_masks, router[, layout])``:

    - ``task_masks=None``: ``weight`` holds one copy per task, ``(n_tasks, out, in)``, and its
      gradient is each task's own;
    - ``task_masks`` ``(n_tasks, out, in)`` floats: ``weight`` ``(out, in)`` is shared and task
      ``t`` uses ``weight * task_masks[t]``, formed one task at a time in a single scratch
      matrix; the gradient of ``weight`` is the sum over tasks of each task's masked gradient.

    With a :class:`TaskPathwayLayout`, every task's products are sparse ones through its CSR
    matrix, and the weight gradient has values on the task's active entries only, scaled by the
    layout's gradient scale: what the layer's gradient mask makes of the dense route's, so the
    layer's gradient hooks leave it as it is.
    """

    @staticmethod
    def forward(
        ctx: Any,
        inputs: th.Tensor,
        weight: th.Tensor,
        bias: th.Tensor | None,
        task_masks: th.Tensor | None,
        router: TaskRouter,
        layout: TaskPathwayLayout | None = None,
    ) -> th.Tensor:
        """Every sample through its task's weight (see the class documentation)."""
        grouped = inputs.index_select(0, router.order)
        outputs = grouped.new_empty(grouped.shape[0], weight.shape[-2])
        scratch = None if task_masks is None or layout is not None else th.empty_like(weight)
        matrices = {}
        for task, rows in _task_rows(router.counts):
            if layout is not None:
                flat_weight = (weight if task_masks is not None else weight[task]).reshape(-1)
                matrices[task] = _sparse_task_forward(layout, task, flat_weight, grouped[rows], outputs[rows])
                continue
            task_weight = weight[task] if task_masks is None else th.mul(weight, task_masks[task], out=scratch)
            if bias is None:
                th.mm(grouped[rows], task_weight.t(), out=outputs[rows])
            else:
                th.addmm(bias, grouped[rows], task_weight.t(), out=outputs[rows])
        if layout is not None and bias is not None:
            outputs += bias
        ctx.save_for_backward(grouped, weight, task_masks, router.order, router.inverse)
        ctx.counts = router.counts
        ctx.layout, ctx.matrices = layout, matrices
        return outputs.index_select(0, router.inverse)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_outputs: th.Tensor) -> tuple[th.Tensor | None, ...]:
        """Gradients of the inputs, the weight and the bias, one task at a time."""
        grouped, weight, task_masks, order, inverse = ctx.saved_tensors
        needs_inputs, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        layout: TaskPathwayLayout | None = ctx.layout
        grad_outputs = grad_outputs.index_select(0, order)
        grad_grouped = th.empty_like(grouped) if needs_inputs else None
        grad_weight = None
        if needs_weight:
            # independent copies: a task absent from the batch gets a zero gradient
            dense_everywhere = task_masks is None and layout is None and 0 not in ctx.counts
            grad_weight = th.empty_like(weight) if dense_everywhere else th.zeros_like(weight)
        if layout is not None:
            for task, rows in _task_rows(ctx.counts):
                # the shared weight's gradient, or the task copy's
                task_grad_weight = grad_weight if task_masks is not None or grad_weight is None else grad_weight[task]
                _sparse_task_backward(
                    layout, task, ctx.matrices[task], grouped[rows], grad_outputs[rows], grad_grouped, rows, task_grad_weight
                )
        else:
            _dense_backward(grouped, weight, task_masks, ctx.counts, grad_outputs, grad_grouped, grad_weight)
        grad_inputs = None if grad_grouped is None else grad_grouped.index_select(0, inverse)
        grad_bias = grad_outputs.sum(dim=0) if needs_bias else None  # False for a missing bias
        return grad_inputs, grad_weight, grad_bias, None, None, None


def _dense_backward(
    grouped: th.Tensor,
    weight: th.Tensor,
    task_masks: th.Tensor | None,
    counts: list[int],
    grad_outputs: th.Tensor,
    grad_grouped: th.Tensor | None,
    grad_weight: th.Tensor | None,
) -> None:
    """:class:`TaskGroupedLinear`'s backward products with each task's weight as a dense matrix."""
    scratch = None if task_masks is None else th.empty_like(weight)
    product = None if task_masks is None or grad_weight is None else th.empty_like(weight)
    for task, rows in _task_rows(counts):
        task_grad_outputs = grad_outputs[rows]
        if grad_grouped is not None:
            task_weight = weight[task] if task_masks is None else th.mul(weight, task_masks[task], out=scratch)
            th.mm(task_grad_outputs, task_weight, out=grad_grouped[rows])
        if grad_weight is not None:
            if task_masks is None:
                th.mm(task_grad_outputs.t(), grouped[rows], out=grad_weight[task])
            else:
                task_gradient = th.mm(task_grad_outputs.t(), grouped[rows], out=product)
                grad_weight.addcmul_(task_gradient, task_masks[task])


def _sparse_task_backward(
    layout: TaskPathwayLayout,
    task: int,
    matrix: th.Tensor,
    task_inputs: th.Tensor,
    task_grad_outputs: th.Tensor,
    grad_grouped: th.Tensor | None,
    rows: slice,
    grad_weight: th.Tensor | None,
) -> None:
    """One task's backward products through its CSR matrix: the input gradient through the
    transposed matrix, and the weight gradient on the task's active entries only (a sampled
    product, scaled as the layout says), added into ``grad_weight`` (the shared weight's gradient
    or the task copy's)."""
    if grad_grouped is not None:
        grad_grouped[rows] = th.sparse.mm(layout.transposed_matrix(task, matrix), task_grad_outputs.t()).t()
    if grad_weight is not None:
        sampled = th.sparse.sampled_addmm(matrix, task_grad_outputs.t().contiguous(), task_inputs, beta=0.0).values()
        scale = layout.gradient_scales[task]
        grad_weight.view(-1).index_add_(0, layout.entries[task], sampled if scale is None else sampled * scale)


def _task_rows(counts: list[int]) -> Iterator[tuple[int, slice]]:
    """``(task, rows of its samples)`` for every task present in a batch sorted by task."""
    start = 0
    for task, count in enumerate(counts):
        if count:
            yield task, slice(start, start + count)
            start += count


class MaskedConv2d(MaskedWeightMixin, nn.Conv2d):
    """``nn.Conv2d`` with a pathway mask on its weight (the bias is never masked)."""

    def _setup_mask(self, n_pathways: int = 1) -> None:
        if n_pathways > 1:
            raise ValueError("multi-task pathways (n_tasks > 1) support linear layers only, not Conv2d (CNN policies)")
        super()._setup_mask(n_pathways)


class MaskedRecurrentWeight(MaskedWeightMixin):
    """
    The pathway mask of one weight matrix of a recurrent layer (``weight_ih_l0``,
    ``weight_hh_l0``, ...). It lives inside the layer as a child module named after the weight
    (``ih_l0``, ``hh_l0``, ...) and holds the mask buffers, while the weight stays the
    layer's own parameter: the layer's stock (fused) forward pass runs on it, dormant
    entries being exact zeros, and its gradient is masked as a linear layer's.

    :param owner: the recurrent layer whose weight this masks
    :param weight_name: the weight's parameter name in ``owner``
    """

    def __init__(self, owner: nn.RNNBase, weight_name: str) -> None:
        super().__init__()
        self._owner = [owner]  # a list, so that the layer is not registered as a child of its own child
        self.weight_name = weight_name

    @property
    def weight(self) -> th.Tensor:  # type: ignore[override]
        return getattr(self._owner[0], self.weight_name)

    @property
    def bias(self) -> th.Tensor | None:
        return getattr(self._owner[0], self.weight_name.replace("weight", "bias", 1), None)

    def _weight_key(self, prefix: str) -> str:
        owner_prefix = prefix[: -len(self.child_name) - 1]
        return owner_prefix + self.weight_name

    def parameter_name(self, module_path: str) -> str:
        # the LSTM's own parameter name: ``lstm_actor.weight_ih_l0``, not ``lstm_actor.ih_l0.weight``
        owner_path = module_path[: -len(self.child_name) - 1]
        return f"{owner_path}.{self.weight_name}"

    @property
    def child_name(self) -> str:
        """The name of this module inside its layer (the weight name without ``weight_``)."""
        return self.weight_name.removeprefix("weight_")

    def __setstate__(self, state: dict[str, Any]) -> None:
        # the owner is not restored yet here (``copy.deepcopy`` restores it after its
        # children): the owning :class:`MaskedLSTM` registers the gradient mask again
        nn.Module.__setstate__(self, state)


class MaskedLSTM(nn.LSTM):
    """``nn.LSTM`` whose weight matrices carry pathway masks (one
    :class:`MaskedRecurrentWeight` child per weight; biases are never masked). Its forward
    pass is the stock one."""

    def recurrent_weights(self) -> list[MaskedRecurrentWeight]:
        return [module for module in self.children() if isinstance(module, MaskedRecurrentWeight)]

    def masked_weight(self, weight_name: str) -> MaskedRecurrentWeight | None:
        """The mask holder of a weight (``"weight_ih_l0"``), if it is masked."""
        return next((weight for weight in self.recurrent_weights() if weight.weight_name == weight_name), None)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for weight in self.recurrent_weights():
            weight._register_gradient_mask()


def mask_recurrent_layers(module: nn.Module, n_pathways: int = 1) -> None:
    """
    Give every ``nn.LSTM`` inside ``module`` pathway masks on its weight matrices, in place
    (all masks start full). LSTMs already masked are left as they are.

    :param module: the network to convert
    :param n_pathways: masks per weight; recurrent layers support one (no multi-task)
    """
    for layer in list(module.modules()):
        if type(layer) is not nn.LSTM:
            continue
        if n_pathways > 1:
            raise ValueError("multi-task pathways (n_tasks > 1) support linear layers only, not LSTMs (recurrent policies)")
        layer.__class__ = MaskedLSTM
        for name in layer._flat_weights_names:
            if name.startswith("weight_"):
                weight = MaskedRecurrentWeight(layer, name)
                layer.add_module(weight.child_name, weight)
                weight._setup_mask(n_pathways)


MASKED_LAYER_TYPES: dict[type[nn.Module], type[MaskedWeightMixin]] = {
    nn.Linear: MaskedLinear,
    nn.Conv2d: MaskedConv2d,
}


def convert_to_masked(module: nn.Module, n_pathways: int = 1) -> list[MaskedWeightMixin]:
    """
    Turn every ``nn.Linear`` and ``nn.Conv2d`` inside ``module`` into its masked version, in
    place (all masks start full). Layers already masked are left as they are, and the masked
    weights of recurrent layers (:func:`mask_recurrent_layers`) are listed too.

    :param module: the network to convert
    :param n_pathways: number of masks per layer (tasks in multi-task training)
    :return: the masked layers of ``module``, in ``named_modules`` order
    """
    layers = []
    for layer in module.modules():
        masked_type = MASKED_LAYER_TYPES.get(type(layer))
        if masked_type is MaskedLinear and n_pathways > 1:
            masked_type = MultiTaskMaskedLinear
        if masked_type is not None:
            layer.__class__ = masked_type
            assert isinstance(layer, MaskedWeightMixin)
            layer._setup_mask(n_pathways)
        if isinstance(layer, MaskedWeightMixin):
            layers.append(layer)
    return layers
