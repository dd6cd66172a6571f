"""Cost accounting and deployment of pathways."""

from sb3_pathways.deploy.flops import LayerFlops, forward_flops

__all__ = ["LayerFlops", "forward_flops"]
