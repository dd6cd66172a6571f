"""Cost accounting (FLOPs, energy) and deployment of pathways: ``flops`` and ``energy`` count
the cost, ``chains`` reads a pathway's linear chains and removes dead neurons, ``sparse_layers``
chooses dense or CSR layers, ``export`` builds the deployable module, ``numpy_runtime`` runs it
without torch, ``onnx`` writes it out."""

from sb3_pathways.deploy.chains import ChainDeadEnds, PrunedChain, dead_ends, prune_action_network, remove_dead_neurons
from sb3_pathways.deploy.energy import JOULES_PER_FLOP, EnergyCallback, TrainingCost, estimate_energy
from sb3_pathways.deploy.export import ExportedPathway, export_pathway
from sb3_pathways.deploy.flops import (
    LayerFlops,
    TrainingFlops,
    forward_flops,
    gradient_steps_per_update,
    register_training_passes,
    training_flops,
)
from sb3_pathways.deploy.numpy_runtime import NumpyPathway
from sb3_pathways.deploy.onnx import export_onnx
from sb3_pathways.deploy.sparse_layers import CSRLinear

__all__ = [
    "JOULES_PER_FLOP",
    "CSRLinear",
    "ChainDeadEnds",
    "EnergyCallback",
    "ExportedPathway",
    "LayerFlops",
    "NumpyPathway",
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
