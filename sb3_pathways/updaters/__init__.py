"""Mask update rules behind one interface (:class:`MaskUpdater`)."""

from sb3_pathways.updaters.base import DiscoveryState, Masks, MaskUpdater, UpdateContext
from sb3_pathways.updaters.dapd import DAPDUpdater, SNIPUpdater
from sb3_pathways.updaters.evolution import RigLUpdater, SETUpdater
from sb3_pathways.updaters.magnitude import GradualMagnitudeUpdater

__all__ = [
    "DAPDUpdater",
    "DiscoveryState",
    "GradualMagnitudeUpdater",
    "MaskUpdater",
    "Masks",
    "RigLUpdater",
    "SETUpdater",
    "SNIPUpdater",
    "UpdateContext",
]
