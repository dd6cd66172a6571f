"""How much two or more pathways share: active weights in common over active weights in either."""

from __future__ import annotations

import numpy as np
import torch as th


def overlap_matrix(mask_sets: list[dict[str, th.Tensor]]) -> np.ndarray:
    """Shared active weights over the union of active weights, for every pair of pathways
    (masks keyed by weight name; only the names all of them have are compared)."""
    names = sorted(set.intersection(*(set(masks) for masks in mask_sets)))
    if not names:
        raise ValueError("the pathways have no masked weight in common: compare models of the same architecture")
    flat = []
    for masks in mask_sets:
        for name in names:
            if masks[name].shape != mask_sets[0][name].shape:
                raise ValueError(
                    f"{name} has different shapes in the compared models: compare models of the same architecture"
                )
        flat.append(th.cat([masks[name].reshape(-1) for name in names]))
    matrix = np.ones((len(flat), len(flat)))
    for i, first in enumerate(flat):
        for j, second in enumerate(flat):
            union = int((first | second).sum())
            matrix[i, j] = int((first & second).sum()) / union if union else 1.0
    return matrix
