"""Which pathway policy stands for which stock SB3 policy, and the string aliases
(``"PathwayPolicy"``, ...) registered on each algorithm."""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy

from sb3_pathways.policies import PathwayPolicyMixin

#: stock SB3 policy class -> its pathway equivalent (used by ``sparsify``)
PATHWAY_EQUIVALENTS: dict[type[BasePolicy], type[PathwayPolicyMixin]] = {}
#: names of the algorithms that have pathway policies, in registration order
SUPPORTED_ALGORITHMS: list[str] = []


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
        if algorithm.__name__ not in SUPPORTED_ALGORITHMS:
            SUPPORTED_ALGORITHMS.append(algorithm.__name__)
    for policy in policies.values():
        stock = next(base for base in policy.__bases__ if not issubclass(base, PathwayPolicyMixin))
        assert issubclass(stock, BasePolicy)
        PATHWAY_EQUIVALENTS[stock] = policy


def refuse_pathway_aliases(algorithms: list[type[BaseAlgorithm]], aliases: tuple[str, ...]) -> None:
    """
    Give ``algorithms``, which have no pathway policy, the ``aliases`` as policies that refuse
    to be built with an error naming the supported algorithms (instead of SB3's bare "Policy
    PathwayPolicy unknown").

    :param algorithms: algorithm classes without pathway policies
    :param aliases: the alias names to refuse (``"PathwayPolicy"``, ...)
    """
    for algorithm in algorithms:
        refusal = _refusing_policy(algorithm.__name__)
        algorithm.policy_aliases = {**algorithm.policy_aliases, **{alias: refusal for alias in aliases}}


def _refusing_policy(algorithm_name: str) -> type[BasePolicy]:
    class UnsupportedPathwayPolicy(BasePolicy):
        def __new__(cls, *args: Any, **kwargs: Any) -> UnsupportedPathwayPolicy:
            raise ValueError(
                f"{algorithm_name} has no pathway policy in sb3_pathways yet; pathway policies exist for "
                f"{', '.join(SUPPORTED_ALGORITHMS)} (see the README's supported algorithms)"
            )

    UnsupportedPathwayPolicy.__qualname__ = f"Unsupported{algorithm_name}PathwayPolicy"
    return UnsupportedPathwayPolicy
