"""Multi-task pathways: one pathway per task inside one network (``n_tasks`` in
``policy_kwargs``), multi-task DAPD, MetaWorld environments and pathway analysis."""

from sb3_pathways.multitask.analysis import task_active_weights, task_overlap
from sb3_pathways.multitask.buffers import TaskBalancedReplayBuffer
from sb3_pathways.multitask.callbacks import MultiTaskDAPDCallback, MultiTaskDAPDUpdater
from sb3_pathways.multitask.envs import (
    MT10_TASKS,
    TaskOneHot,
    make_metaworld_task,
    make_mt10_env,
    make_mt50_env,
    make_multitask_env,
)
from sb3_pathways.policies import OneHotTaskId

__all__ = [
    "MT10_TASKS",
    "MultiTaskDAPDCallback",
    "MultiTaskDAPDUpdater",
    "OneHotTaskId",
    "TaskBalancedReplayBuffer",
    "TaskOneHot",
    "make_metaworld_task",
    "make_mt10_env",
    "make_mt50_env",
    "make_multitask_env",
    "task_active_weights",
    "task_overlap",
]
