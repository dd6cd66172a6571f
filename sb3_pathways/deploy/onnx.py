"""ONNX export of a deployed pathway (the ``onnx`` extra)."""

from __future__ import annotations

from itertools import chain
from pathlib import Path

import gymnasium as gym
import torch as th

from sb3_pathways.deploy.export import ExportedPathway


def export_onnx(exported: ExportedPathway, path: str | Path, batch_size: int = 1) -> Path:
    """
    Write an exported pathway to an ONNX file (needs the ``onnx`` extra), with a dynamic
    batch dimension. CSR layers are written dense.

    :param exported: a module from :func:`export_pathway`
    :param path: the ``.onnx`` file to write
    :param batch_size: batch size of the example observation used for export
    :return: the path written
    """
    try:
        import onnx  # noqa: F401
    except ImportError as error:
        raise ImportError("export_onnx needs the onnx extra: pip install 'sb3-pathways[onnx]'") from error
    dense = exported.to_dense()
    space = exported.observation_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"export_onnx supports Box observation spaces, got {type(space).__name__}")
    device = next(chain(dense.parameters(), dense.buffers()), th.empty(0)).device
    example = th.as_tensor(space.sample()[None].repeat(batch_size, axis=0), device=device)
    path = Path(path)
    th.onnx.export(
        dense,
        (example,),
        str(path),
        input_names=["observation"],
        output_names=["action"],
        dynamic_axes={"observation": {0: "batch"}, "action": {0: "batch"}},
        dynamo=False,
    )
    return path
