"""One spec per supported algorithm, declared in the algorithm's own module
(``sb3_pathways/sac.py``, ...): its pathway policies and their aliases, its training loss for
scoring, its training-pass counts for FLOPs, and how to recognise a model zip it saved.

Adding an algorithm: write ``sb3_pathways/<algo>.py`` with its pathway policies (the mixin of
:mod:`sb3_pathways.policies` on the stock policy), its objective and pass counts, and call
:func:`register_algorithm` there; import the module in ``sb3_pathways/__init__.py``; add a
case to ``tests/conftest.py``'s ``ALGO_CASES`` and a ``hyperparams/<algo>.yml``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy

from sb3_pathways.policies import PathwayPolicyMixin

#: ``(model, batch) -> {network name: loss}``: the loss whose gradient the algorithm's training
#: step uses for each network, on a batch of its buffer's samples
Objective = Callable[[Any, Any], dict[str, th.Tensor]]
#: network name -> (forward passes, backward passes) per batch sample in one gradient step
TrainingPasses = dict[str, tuple[float, float]]
PassCounter = Callable[[BaseAlgorithm], TrainingPasses]


def pathway_aliases(
    mlp: type[PathwayPolicyMixin],
    cnn: type[PathwayPolicyMixin] | None = None,
    multi_input: type[PathwayPolicyMixin] | None = None,
) -> dict[str, type[PathwayPolicyMixin]]:
    """The aliases of an algorithm's pathway policies, named after SB3's ``MlpPolicy``,
    ``CnnPolicy`` and ``MultiInputPolicy``."""
    aliases = {"PathwayPolicy": mlp, "PathwayCnnPolicy": cnn, "PathwayMultiInputPolicy": multi_input}
    return {alias: policy for alias, policy in aliases.items() if policy is not None}


def minibatch_size(model: BaseAlgorithm) -> int:
    """Samples per gradient step: the algorithm's ``batch_size``."""
    return int(model.batch_size)  # type: ignore[attr-defined]


def one_gradient_step(model: BaseAlgorithm) -> int:
    """One gradient step per increment of SB3's ``train/n_updates``."""
    return 1


def saved_by_any(data: Mapping[str, Any]) -> bool:
    """A spec that is the only user of its policy classes recognises every zip that names them."""
    return True


@dataclass(frozen=True)
class AlgorithmSpec:
    """
    Everything sb3_pathways needs to know about one algorithm.

    :param algorithm: the algorithm class (its subclasses use the spec too, unless they have
        their own)
    :param policies: alias -> pathway policy class (``"PathwayPolicy"``, ...), each a subclass
        of ``PathwayPolicyMixin`` and of exactly one stock policy; registered on the algorithm
        so that ``Algo("PathwayPolicy", env)`` works, and used by :func:`sb3_pathways.sparsify`
    :param objective: the training loss per network, for loss-based mask updates (DAPD, SNIP,
        RigL); ``None``: those rules refuse the algorithm
    :param training_passes: model -> network -> (forward, backward) passes per sample in one
        gradient step, for :func:`~sb3_pathways.deploy.training_flops`
    :param batch_size: model -> samples per gradient step
    :param gradient_steps_per_update: model -> gradient steps per increment of SB3's
        ``train/n_updates`` (PPO counts epochs)
    :param saved_by: the ``data`` of a model zip -> whether this algorithm saved it; tells apart
        algorithms that share policy classes (PPO / A2C / TRPO, TD3 / DDPG)
    :param dapd_networks: the networks that DAPD rescores by default (``networks="default"``),
        names of ``policy.pathways()``; the others keep their initial ``mask_init`` mask.
        ``None``: every network
    """

    algorithm: type[BaseAlgorithm]
    policies: Mapping[str, type[PathwayPolicyMixin]] = field(default_factory=dict)
    objective: Objective | None = None
    training_passes: PassCounter | None = None
    batch_size: Callable[[BaseAlgorithm], int] = minibatch_size
    gradient_steps_per_update: Callable[[BaseAlgorithm], int] = one_gradient_step
    saved_by: Callable[[Mapping[str, Any]], bool] = saved_by_any
    dapd_networks: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.algorithm.__name__

    def pathway_equivalent(self, stock_policy: type[BasePolicy]) -> type[PathwayPolicyMixin] | None:
        """The pathway policy of this algorithm that stands for a stock policy class."""
        return next((policy for policy in self.policies.values() if stock_policy in policy.__bases__), None)


_SPECS: dict[type[BaseAlgorithm], AlgorithmSpec] = {}


def register_algorithm(spec: AlgorithmSpec) -> AlgorithmSpec:
    """
    Make an algorithm known to sb3_pathways: its policy aliases are registered on the
    algorithm class and its loss, pass counts and batch size are used wherever needed.

    :param spec: the algorithm's spec (replaces an earlier one for the same class)
    :return: the spec
    """
    if not (isinstance(spec.algorithm, type) and issubclass(spec.algorithm, BaseAlgorithm)):
        raise TypeError(f"algorithm must be a BaseAlgorithm subclass, got {spec.algorithm!r}")
    for alias, policy in spec.policies.items():
        if not (isinstance(policy, type) and issubclass(policy, PathwayPolicyMixin)):
            raise TypeError(f"policy {alias!r} of {spec.name} must be a PathwayPolicyMixin subclass, got {policy!r}")
        stock = [base for base in policy.__bases__ if not issubclass(base, PathwayPolicyMixin)]
        if len(stock) != 1 or not issubclass(stock[0], BasePolicy):
            raise TypeError(f"policy {alias!r} of {spec.name} must derive from exactly one stock SB3 policy")
    if spec.objective is not None and not callable(spec.objective):
        raise TypeError(f"objective must be callable, got {spec.objective!r}")
    spec.algorithm.policy_aliases = {**spec.algorithm.policy_aliases, **spec.policies}
    _SPECS[spec.algorithm] = spec
    return spec


def update_algorithm(algorithm: type[BaseAlgorithm], **changes: Any) -> AlgorithmSpec:
    """Register ``algorithm``'s spec with some fields changed (a new spec if it had none)."""
    current = _SPECS.get(algorithm, AlgorithmSpec(algorithm))
    return register_algorithm(dataclasses.replace(current, **changes))


def algorithm_spec(model_or_class: BaseAlgorithm | type[BaseAlgorithm]) -> AlgorithmSpec | None:
    """The spec of a model's algorithm (or of the closest registered base class), if any."""
    cls = model_or_class if isinstance(model_or_class, type) else type(model_or_class)
    return next((_SPECS[base] for base in cls.__mro__ if base in _SPECS), None)


def specs_with(attribute: str) -> list[AlgorithmSpec]:
    """The registered specs whose ``attribute`` is set, in registration order."""
    return [spec for spec in _SPECS.values() if getattr(spec, attribute)]


def supported_algorithms() -> list[str]:
    """Names of the algorithms that have pathway policies, in registration order."""
    return [spec.name for spec in specs_with("policies")]


def pathway_equivalent(model: BaseAlgorithm) -> type[PathwayPolicyMixin] | None:
    """The pathway policy class that stands for ``model``'s stock policy, if any."""
    spec = algorithm_spec(model)
    return spec.pathway_equivalent(type(model.policy)) if spec is not None else None


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
                f"{', '.join(supported_algorithms())} (see the README's supported algorithms)"
            )

    UnsupportedPathwayPolicy.__qualname__ = f"Unsupported{algorithm_name}PathwayPolicy"
    return UnsupportedPathwayPolicy
