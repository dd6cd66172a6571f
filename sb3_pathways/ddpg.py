"""Pathway policies for DDPG: the TD3 ones, as in SB3."""

from sb3_pathways.td3 import PathwayCnnPolicy, PathwayMultiInputPolicy, PathwayPolicy

__all__ = ["PathwayCnnPolicy", "PathwayMultiInputPolicy", "PathwayPolicy"]
