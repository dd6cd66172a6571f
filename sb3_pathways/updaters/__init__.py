"""Mask update rules behind one interface (:class:`MaskUpdater`)."""

from sb3_pathways.updaters.base import DiscoveryState, Masks, MaskUpdater, UpdateContext
from sb3_pathways.updaters.dapd import DAPDUpdater, SNIPUpdater
from sb3_pathways.updaters.evolution import RigLUpdater, SETUpdater

__all__ = [
    "DAPDUpdater",
    "DiscoveryState",
    "MaskUpdater",
    "Masks",
    "RigLUpdater",
    "SETUpdater",
    "SNIPUpdater",
    "UpdateContext",
]
