"""sb3_pathways: Data Adaptive Pathway Discovery (DAPD) for Stable-Baselines3.

Importing the package registers the ``"PathwayPolicy"``, ``"PathwayCnnPolicy"`` and
``"PathwayMultiInputPolicy"`` aliases on every supported algorithm.
"""

from sb3_contrib import ARS

from sb3_pathways import (
    a2c,
    crossq,
    ddpg,
    dqn,
    offline,  # IQL (offline: sb3_pathways.iql imports the offline base first)
    ppo,
    ppo_mask,
    ppo_recurrent,
    qrdqn,
    sac,
    td3,
    tqc,
    trpo,
)
from sb3_pathways.callbacks import (
    DAPDCallback,
    GMPCallback,
    PathwayLoggerCallback,
    PathwayUpdateCallback,
    RigLCallback,
    SETCallback,
    SNIPCallback,
)
from sb3_pathways.deploy import EnergyCallback, export_onnx, export_pathway, training_flops
from sb3_pathways.multitask import envs as _multitask_envs  # noqa: F401  (registers sb3_pathways/MT10-v0, MT50-v0)
from sb3_pathways.policies import PathwayPolicyMixin
from sb3_pathways.registry import refuse_pathway_aliases
from sb3_pathways.schedules import SparsitySchedule
from sb3_pathways.scoring import connection_sensitivity, register_objective
from sb3_pathways.sparsify import sparsify
from sb3_pathways.stats import format_pathway_stats, get_masks, pathway_stats, record_pathway_stats
from sb3_pathways.version import __version__

refuse_pathway_aliases([ARS], ("PathwayPolicy", "PathwayCnnPolicy", "PathwayMultiInputPolicy"))

__all__ = [
    "DAPDCallback",
    "EnergyCallback",
    "GMPCallback",
    "PathwayLoggerCallback",
    "PathwayPolicyMixin",
    "PathwayUpdateCallback",
    "RigLCallback",
    "SETCallback",
    "SNIPCallback",
    "SparsitySchedule",
    "__version__",
    "a2c",
    "connection_sensitivity",
    "crossq",
    "ddpg",
    "dqn",
    "export_onnx",
    "export_pathway",
    "format_pathway_stats",
    "get_masks",
    "offline",
    "pathway_stats",
    "ppo",
    "ppo_mask",
    "ppo_recurrent",
    "qrdqn",
    "record_pathway_stats",
    "register_objective",
    "sac",
    "sparsify",
    "td3",
    "tqc",
    "training_flops",
    "trpo",
]
