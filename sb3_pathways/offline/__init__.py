"""Offline RL: algorithms that learn from a fixed dataset (IQL, BCQ), datasets from Minari or
SB3 replay buffers or MetaWorld's scripted policies, and single-shot pathways scored once on the dataset."""

from sb3_pathways.bcq import BCQ
from sb3_pathways.iql import IQL
from sb3_pathways.offline.base import OfflineAlgorithm
from sb3_pathways.offline.collect import collect_scripted, scripted_dataset_id
from sb3_pathways.offline.datasets import OfflineDataset, as_dataset, load_minari, load_replay_buffer
from sb3_pathways.offline.single_shot import SingleShotPathways

__all__ = [
    "BCQ",
    "IQL",
    "OfflineAlgorithm",
    "OfflineDataset",
    "SingleShotPathways",
    "as_dataset",
    "collect_scripted",
    "load_minari",
    "load_replay_buffer",
    "scripted_dataset_id",
]
