"""DDPG: the TD3 pathway policies, loss and passes, as in SB3 (DDPG is a TD3 subclass)."""

import dataclasses

from stable_baselines3 import DDPG

from sb3_pathways.registry import register_algorithm
from sb3_pathways.td3 import SPEC as TD3_SPEC
from sb3_pathways.td3 import PathwayCnnPolicy, PathwayMultiInputPolicy, PathwayPolicy, saved_by_ddpg

__all__ = ["SPEC", "PathwayCnnPolicy", "PathwayMultiInputPolicy", "PathwayPolicy"]

SPEC = register_algorithm(dataclasses.replace(TD3_SPEC, algorithm=DDPG, saved_by=saved_by_ddpg))
