"""The mixin that turns any SB3 policy into a pathway policy.

Per-algorithm modules (``sb3_pathways.sac``, ``sb3_pathways.ppo``, ...) only combine this mixin
with the stock SB3 policy and name the policy's networks and target networks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union

import torch as th
from stable_baselines3.common.policies import BasePolicy

from sb3_pathways.masking.layers import MaskedWeightMixin, convert_to_masked
from sb3_pathways.masking.pathway import NetworkPathway
from sb3_pathways.masking.selection import MASK_INITS, random_masks

SparsitySpec = Union[float, Mapping[str, float]]
MaskChooser = Callable[[NetworkPathway], Mapping[str, th.Tensor]]

DEFAULT_SPARSITY = 0.95

ActionHead = Literal["unscale", "clip", "argmax", "quantile_argmax"]


@dataclass(frozen=True)
class DeploymentSpec:
    """
    Where a policy's deterministic action comes from, for :func:`sb3_pathways.export_pathway`.

    :param features_extractor: path of the features extractor the action network reads
    :param chain: paths of the modules that map features to the action output, in order
        (``nn.Sequential`` are unrolled; linear layers, element-wise activations and
        normalisation layers in evaluation mode)
    :param head: how the output becomes an action: ``"unscale"`` (from [-1, 1] to the action
        bounds), ``"clip"`` (to the action bounds), ``"argmax"`` (Q-values or logits),
        ``"quantile_argmax"`` (argmax of the mean over quantiles)
    :param squash: apply ``tanh`` to the chain's output (SAC-family actors)
    :param n_quantiles: quantiles per action for ``"quantile_argmax"``
    """

    features_extractor: str
    chain: tuple[str, ...]
    head: ActionHead
    squash: bool = False
    n_quantiles: int = 0


def _check_sparsity_value(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{where} must be a float in [0, 1), got {value!r}")
    return float(value)


def validate_sparsity(sparsity: Any) -> SparsitySpec:
    """Check ``sparsity`` (a float in [0, 1) or a dict network name -> float) and return it."""
    if isinstance(sparsity, Mapping):
        return {str(name): _check_sparsity_value(value, f"sparsity[{name!r}]") for name, value in sparsity.items()}
    return _check_sparsity_value(sparsity, "sparsity")


def validate_mask_init(mask_init: Any) -> str:
    if mask_init not in MASK_INITS:
        raise ValueError(f"mask_init must be one of {MASK_INITS}, got {mask_init!r}")
    return str(mask_init)


class PathwayPolicyMixin(BasePolicy):
    """
    Adds pathway masks to an SB3 policy. Every ``nn.Linear`` and ``nn.Conv2d`` weight of the
    policy's networks is masked; biases and normalisation layers are not. Target networks use
    their online network's masks.

    :param sparsity: share of each network's weights that is inactive, a float in [0, 1) for
        every network or a dict network name -> sparsity (networks not named get
        ``DEFAULT_SPARSITY``)
    :param mask_init: initial mask before any discovery: ``"random"`` (the same share of every
        layer, random positions) or ``"erk"`` (Erdős–Rényi-kernel layer shares)
    """

    #: target module path -> the online module path whose masks it uses
    pathway_targets: ClassVar[dict[str, str]] = {}
    #: masks per layer (the leading dimension of ``weight_mask``); one per task in multi-task
    n_pathways: int = 1

    def __init__(
        self,
        *args: Any,
        sparsity: SparsitySpec = DEFAULT_SPARSITY,
        mask_init: str = "random",
        **kwargs: Any,
    ) -> None:
        # Set before the stock constructor, which calls ``_build``.
        self.sparsity = validate_sparsity(sparsity)
        self.mask_init = validate_mask_init(mask_init)
        super().__init__(*args, **kwargs)

    def pathway_ensembles(self) -> dict[str, list[str]]:
        """
        Network name -> paths of its ensemble members (e.g. twin Q-networks), each of which
        gets its own share of the network's active weights. None by default.
        """
        return {}

    def pathway_network_paths(self) -> dict[str, list[str]]:
        """
        Network name -> paths of the submodules that make it up. A layer reached from two
        networks (a shared features extractor) belongs to the first one listed.
        """
        raise NotImplementedError

    def deployment_spec(self) -> DeploymentSpec:
        """The modules that compute the deterministic action (see :class:`DeploymentSpec`)."""
        raise NotImplementedError(f"{type(self).__name__} does not say how its action is computed for export")

    def pathway_chains(self) -> dict[str, list[tuple[str, ...]]]:
        """
        Network name -> its chains of linear layers (each a tuple of module paths, as
        :attr:`DeploymentSpec.chain`), for the dead-end analysis. By default the action
        network only.
        """
        spec = self.deployment_spec()
        owner = next(name for name, paths in self.pathway_network_paths().items() if _under(spec.chain[0], paths))
        return {owner: [spec.chain]}

    @property
    def network_names(self) -> list[str]:
        return list(self.pathway_network_paths())

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        self._setup_pathways()

    def _setup_pathways(self, choose_masks: MaskChooser | None = None) -> None:
        """
        Mask the networks (and their targets) and install the initial masks.

        :param choose_masks: network pathway (all masks full) -> its masks; by default a
            random mask with the ``mask_init`` layer shares
        """
        self.keep_ratios()  # check the sparsity names before touching the networks
        for path in [*self._online_paths(), *self.pathway_targets]:
            convert_to_masked(self.get_submodule(path), self.n_pathways)
        for network in self.pathways().values():
            network.set_masks(choose_masks(network) if choose_masks else self._random_masks(network))

    def _random_masks(self, network: NetworkPathway) -> dict[str, th.Tensor]:
        shapes = [layer.weight.shape for layer in network.layers.values()]
        per_pathway = [
            random_masks(shapes, network.n_keep, self.mask_init, device=self.device) for _ in range(self.n_pathways)
        ]
        return {name: th.stack([masks[i] for masks in per_pathway]) for i, name in enumerate(network.layers)}

    def _online_paths(self) -> list[str]:
        return [path for paths in self.pathway_network_paths().values() for path in paths]

    def keep_ratios(self) -> dict[str, float]:
        """Network name -> keep ratio (1 - sparsity), after checking the sparsity dict's names."""
        names = self.network_names
        if isinstance(self.sparsity, Mapping):
            unknown = sorted(set(self.sparsity) - set(names))
            if unknown:
                raise ValueError(f"sparsity names unknown networks {unknown}; {type(self).__name__} has the networks {names}")
            return {name: 1.0 - self.sparsity.get(name, DEFAULT_SPARSITY) for name in names}
        return {name: 1.0 - self.sparsity for name in names}

    def optimizers(self) -> list[th.optim.Optimizer]:
        """Every optimizer held by the policy or its networks (``policy.optimizer``,
        ``policy.actor.optimizer``, ...)."""
        found: list[th.optim.Optimizer] = []
        for module in self.modules():
            optimizer = module.__dict__.get("optimizer")
            if isinstance(optimizer, th.optim.Optimizer) and optimizer not in found:
                found.append(optimizer)
        return found

    def pathways(self) -> dict[str, NetworkPathway]:
        """The pathway of every network, keyed by network name."""
        keep_ratios = self.keep_ratios()
        optimizers = self.optimizers()
        claimed: set[int] = set()
        by_layer: dict[int, tuple[NetworkPathway, str]] = {}
        result: dict[str, NetworkPathway] = {}
        for name, paths in self.pathway_network_paths().items():
            layers: dict[str, MaskedWeightMixin] = {}
            for path in paths:
                for sub_name, module in self.get_submodule(path).named_modules(prefix=path):
                    if isinstance(module, MaskedWeightMixin) and id(module) not in claimed:
                        claimed.add(id(module))
                        layers[f"{sub_name}.weight"] = module
            if not layers:
                continue
            pathway = NetworkPathway(name, keep_ratios[name], layers, optimizers=optimizers)
            members = [f"{path}." for path in self.pathway_ensembles().get(name, [])]
            if members:
                pathway.groups = [[layer for layer in layers if layer.startswith(member)] for member in members]
                rest = [layer for layer in layers if not layer.startswith(tuple(members))]
                pathway.groups = [group for group in [*pathway.groups, rest] if group]
            result[name] = pathway
            for layer_name, layer in layers.items():
                by_layer[id(layer)] = (pathway, layer_name)
        for target_path, online_path in self.pathway_targets.items():
            online = self.get_submodule(online_path)
            for sub_name, module in self.get_submodule(target_path).named_modules():
                if isinstance(module, MaskedWeightMixin):
                    pathway, layer_name = by_layer[id(online.get_submodule(sub_name))]
                    pathway.followers.setdefault(layer_name, []).append(module)
        return result

    def masked_layer(self, weight_name: str) -> MaskedWeightMixin:
        """The masked layer that holds a weight, e.g. ``"critic.qf0.0.weight"``."""
        module = self.get_submodule(weight_name.rsplit(".", 1)[0])
        if not isinstance(module, MaskedWeightMixin):
            raise KeyError(f"{weight_name!r} is not a masked weight of {type(self).__name__}")
        return module

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(sparsity=self.sparsity, mask_init=self.mask_init)
        return data


def _under(path: str, prefixes: list[str]) -> bool:
    return any(path == prefix or path.startswith(prefix + ".") for prefix in prefixes)


def pathway_policy(model_or_policy: Any, caller: str) -> PathwayPolicyMixin:
    """The pathway policy of a model (or the policy itself), or a clear error."""
    policy = getattr(model_or_policy, "policy", model_or_policy)
    if not isinstance(policy, PathwayPolicyMixin):
        kind = type(policy).__name__
        raise TypeError(
            f"{caller} needs a model with a pathway policy (policy='PathwayPolicy', 'PathwayCnnPolicy' or "
            f"'PathwayMultiInputPolicy'), got {kind}. Convert a stock model with sb3_pathways.sparsify(model)."
        )
    return policy
