"""Pathway policies for A2C: the PPO ones, as in SB3."""

from sb3_pathways.ppo import PathwayCnnPolicy, PathwayMultiInputPolicy, PathwayPolicy

__all__ = ["PathwayCnnPolicy", "PathwayMultiInputPolicy", "PathwayPolicy"]
