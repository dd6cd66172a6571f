"""Which pathway policy stands for which stock SB3 policy, and the string aliases
(``"PathwayPolicy"``, ...) registered on each algorithm."""

from __future__ import annotations

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy

from sb3_pathways.policies import PathwayPolicyMixin

#: stock SB3 policy class -> its pathway equivalent (used by ``sparsify``)
PATHWAY_EQUIVALENTS: dict[type[BasePolicy], type[PathwayPolicyMixin]] = {}


def register_pathway_policies(algorithms: list[type[BaseAlgorithm]], policies: dict[str, type[PathwayPolicyMixin]]) -> None:
    """
    Make ``policies`` usable by name in ``algorithms`` (``SAC("PathwayPolicy", env)``) and
    known to :func:`sb3_pathways.sparsify`.

    :param algorithms: algorithm classes that accept these policies
    :param policies: alias -> pathway policy class, each a subclass of
        ``PathwayPolicyMixin`` and of exactly one stock SB3 policy
    """
    for algorithm in algorithms:
        algorithm.policy_aliases = {**algorithm.policy_aliases, **policies}
    for policy in policies.values():
        stock = next(base for base in policy.__bases__ if not issubclass(base, PathwayPolicyMixin))
        assert issubclass(stock, BasePolicy)
        PATHWAY_EQUIVALENTS[stock] = policy
