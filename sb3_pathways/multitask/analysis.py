"""How the task pathways of a multi-task policy use the network: active weights per task and
the overlap between tasks."""

from __future__ import annotations

from typing import Any

import numpy as np

from sb3_pathways.masking.overlap import overlap_matrix
from sb3_pathways.policies import pathway_policy
from sb3_pathways.stats import get_masks


def task_active_weights(model: Any) -> dict[int, dict[str, int]]:
    """Task -> network name -> active weights of that task's pathway."""
    policy = pathway_policy(model, "task_active_weights")
    return {
        task: {
            name: int(sum(int(mask[task].sum()) for mask in network.masks().values()))
            for name, network in policy.pathways().items()
        }
        for task in range(policy.n_tasks)
    }


def task_overlap(model: Any) -> np.ndarray:
    """
    The overlap between every pair of task pathways: weights active in both over weights
    active in either (all masked weights of the policy), shaped ``(n_tasks, n_tasks)``.
    """
    policy = pathway_policy(model, "task_overlap")
    return overlap_matrix([get_masks(policy, task) for task in range(policy.n_tasks)])
