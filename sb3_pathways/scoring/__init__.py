"""Scoring weights with an algorithm's own loss on its most recent data."""

from sb3_pathways.scoring.data import newest_transitions
from sb3_pathways.scoring.objectives import objective_for, register_objective
from sb3_pathways.scoring.sensitivity import connection_sensitivity

__all__ = ["connection_sensitivity", "newest_transitions", "objective_for", "register_objective"]
