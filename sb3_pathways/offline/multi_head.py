"""The multi-head multi-task (MHMT) baseline: a dense network whose output layers have one head
per task; the hidden layers are shared by every task, and each sample leaves through its
task's head."""

from __future__ import annotations

import math
from typing import Any

import torch as th
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from sb3_pathways.masking.layers import TaskIdFunction, TaskRouter
from sb3_pathways.offline.base import SeparateNetworksPolicy
from sb3_pathways.policies import OneHotTaskId


class TaskHeads(nn.Module):
    """
    ``n_tasks`` linear layers of the same shape; every sample goes through its task's one (the
    tasks of the batch come from ``router``).

    :param in_features: input size
    :param out_features: output size of each head
    :param n_tasks: number of heads
    :param router: holds the task of every sample of the batch being processed
    """

    def __init__(self, in_features: int, out_features: int, n_tasks: int, router: TaskRouter) -> None:
        super().__init__()
        self.in_features, self.out_features, self.n_tasks = in_features, out_features, n_tasks
        self.router = router
        self.weight = nn.Parameter(th.empty(n_tasks, out_features, in_features))
        self.bias = nn.Parameter(th.empty(n_tasks, out_features))
        bound = 1 / math.sqrt(in_features)
        for task in range(n_tasks):  # each head initialised as nn.Linear initialises its weights
            nn.init.kaiming_uniform_(self.weight[task], a=math.sqrt(5))
        nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def like(cls, linear: nn.Linear, n_tasks: int, router: TaskRouter) -> TaskHeads:
        """Heads shaped as ``linear``, on its device."""
        return cls(linear.in_features, linear.out_features, n_tasks, router).to(linear.weight.device)

    def forward(self, inputs: th.Tensor) -> th.Tensor:
        self.router.check(inputs.shape[0])
        assert self.router.task_ids is not None
        # every head on every sample is one small product; each sample then keeps its task's
        every_head = th.nn.functional.linear(inputs, self.weight.flatten(0, 1), self.bias.flatten())
        every_head = every_head.view(inputs.shape[0], self.n_tasks, self.out_features)
        return every_head[th.arange(inputs.shape[0], device=inputs.device), self.router.task_ids.to(inputs.device)]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, n_tasks={self.n_tasks}"


class MultiHeadMixin(SeparateNetworksPolicy):
    """
    Turns a policy's output layers (those :meth:`task_head_layers` names) into
    :class:`TaskHeads`, in the online networks and their targets. Every features extractor
    reads the tasks of the batch it receives, as the multi-task pathway policies do.

    :param n_tasks: number of tasks (heads per output layer)
    :param task_id_fn: observation (as the features extractor receives it) -> task id per
        sample; default :class:`~sb3_pathways.policies.OneHotTaskId` (one-hot task encoding at
        the end of the observation)
    """

    task_router: TaskRouter

    def __init__(self, *args: Any, n_tasks: int = 10, task_id_fn: TaskIdFunction | None = None, **kwargs: Any) -> None:
        if not isinstance(n_tasks, int) or n_tasks < 2:
            raise ValueError(f"n_tasks of a multi-head policy must be an int of at least 2, got {n_tasks!r}")
        # set before the stock constructor, which builds the networks
        self.n_tasks = n_tasks
        self.task_id_fn = task_id_fn if task_id_fn is not None else OneHotTaskId(n_tasks)
        super().__init__(*args, **kwargs)

    def task_head_layers(self) -> list[str]:
        """Module paths of the online networks' output ``nn.Linear`` layers (targets follow)."""
        raise NotImplementedError

    def _finish_build(self, lr_schedule: Schedule) -> None:
        self.task_router = router = TaskRouter(self.n_tasks)
        online_to_target = {online: target for target, online in self.target_networks.items()}
        for path in self.task_head_layers():
            network = path.split(".", 1)[0]
            for owner in (network, online_to_target.get(network)):
                if owner is not None:
                    self._replace(owner + path[len(network) :], router)
        router.follow_features_extractors(self, self.task_id_fn)
        super()._finish_build(lr_schedule)

    def _replace(self, path: str, router: TaskRouter) -> None:
        parent_path, _, name = path.rpartition(".")
        parent = self.get_submodule(parent_path)
        linear = parent.get_submodule(name)
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"{type(self).__name__}.task_head_layers names {path}, a {type(linear).__name__}, not nn.Linear")
        setattr(parent, name, TaskHeads.like(linear, self.n_tasks, router))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(n_tasks=self.n_tasks, task_id_fn=self.task_id_fn)
        return data


def last_linear(module: nn.Module, path: str) -> str:
    """The path of the last ``nn.Linear`` inside the module at ``path`` of ``module``."""
    inner = [name for name, layer in module.get_submodule(path).named_modules() if isinstance(layer, nn.Linear)]
    if not inner:
        raise ValueError(f"{path} holds no nn.Linear layer")
    return f"{path}.{inner[-1]}" if inner[-1] else path
