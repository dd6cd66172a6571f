"""Cost accounting (FLOPs, energy) and deployment of pathways."""

from sb3_pathways.deploy.energy import JOULES_PER_FLOP, EnergyCallback, TrainingCost, estimate_energy
from sb3_pathways.deploy.export import (
    ChainDeadEnds,
    CSRLinear,
    ExportedPathway,
    PrunedChain,
    dead_ends,
    export_onnx,
    export_pathway,
    prune_action_network,
    remove_dead_neurons,
)
from sb3_pathways.deploy.flops import (
    LayerFlops,
    TrainingFlops,
    forward_flops,
    gradient_steps_per_update,
    register_training_passes,
    training_flops,
)

__all__ = [
    "JOULES_PER_FLOP",
    "CSRLinear",
    "ChainDeadEnds",
    "EnergyCallback",
    "ExportedPathway",
    "LayerFlops",
    "PrunedChain",
    "TrainingCost",
    "TrainingFlops",
    "dead_ends",
    "estimate_energy",
    "export_onnx",
    "export_pathway",
    "forward_flops",
    "gradient_steps_per_update",
    "prune_action_network",
    "register_training_passes",
    "remove_dead_neurons",
    "training_flops",
]
