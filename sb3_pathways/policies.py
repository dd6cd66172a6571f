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

from sb3_pathways.masking.layers import (
    MASKED_LAYER_TYPES,
    MaskedLSTM,
    MaskedWeightMixin,
    MultiTaskMaskedLinear,
    TaskIdFunction,
    TaskRouter,
    convert_to_masked,
    mask_recurrent_layers,
)
from sb3_pathways.masking.pathway import NetworkPathway
from sb3_pathways.masking.selection import (
    MASK_INITS,
    check_covers_outputs,
    keep_count,
    proportional_budgets,
    random_masks,
)

SparsitySpec = Union[float, Mapping[str, float]]
MaskChooser = Callable[[NetworkPathway], Mapping[str, th.Tensor]]

DEFAULT_SPARSITY = 0.95
#: ``"default"``: the stock network's own initialisation (torch's, or SB3's orthogonal one);
#: ``"xavier_normal"``: every linear and convolution weight Xavier-normal, biases untouched (the
#: DAPD reference implementation's ``utils.weight_init``)
WEIGHT_INITS = ("default", "xavier_normal")
#: a full check that dormant weights are zeros runs at the first and every this many
#: ``set_training_mode(False)`` calls (a replaced weight tensor is checked at every call)
FULL_DORMANT_CHECK_EVERY = 100

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


class OneHotTaskId:
    """Task ids from a one-hot task encoding in the last ``n_tasks`` observation features (as
    MetaWorld's multi-task benchmarks append it).

    :param n_tasks: number of tasks
    """

    def __init__(self, n_tasks: int) -> None:
        self.n_tasks = n_tasks

    def __call__(self, observation: th.Tensor) -> th.Tensor:
        if not isinstance(observation, th.Tensor):
            raise TypeError("OneHotTaskId reads a flat observation tensor; pass task_id_fn for dict observations")
        return observation.reshape(observation.shape[0], -1)[:, -self.n_tasks :].argmax(dim=1)


def validate_mask_init(mask_init: Any) -> str:
    if mask_init not in MASK_INITS:
        raise ValueError(f"mask_init must be one of {MASK_INITS}, got {mask_init!r}")
    return str(mask_init)


def validate_weight_init(weight_init: Any) -> str:
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}")
    return str(weight_init)


class PathwayPolicyMixin(BasePolicy):
    """
    Adds pathway masks to an SB3 policy. Every ``nn.Linear``, ``nn.Conv2d`` and ``nn.LSTM``
    weight of the policy's networks is masked; biases and normalisation layers are not. Target networks use
    their online network's masks.

    :param sparsity: share of each network's weights that is inactive, a float in [0, 1) for
        every network or a dict network name -> sparsity (networks not named get
        ``DEFAULT_SPARSITY``). The policy's ``dense_by_default`` networks (BCQ's VAE) stay dense
        unless the dict names them
    :param mask_init: initial mask before any discovery, random positions with the layer
        shares of ``"erk"`` (default: Erdős–Rényi-kernel shares, small layers keep more) or
        ``"random"`` (the same share of every layer). A network that no rule rescores keeps
        it for the whole run (SAC's critic under ``DAPDCallback()``)
    :param n_tasks: pathways per network, one per task; each sample runs through its task's
        pathway (``1``: the single-task policy)
    :param task_id_fn: observation (as the features extractor receives it) -> task id per
        sample; default :class:`OneHotTaskId` (one-hot task encoding at the end)
    :param weight_init: initial weights of the pathway networks before masking: ``"default"``
        (the stock policy's) or ``"xavier_normal"`` (the DAPD reference's: every linear and
        convolution weight Xavier-normal, biases untouched); target networks start as copies
    """

    #: target module path -> the online module path whose masks it uses
    pathway_targets: ClassVar[dict[str, str]] = {}
    #: networks that stay dense unless ``sparsity`` (a dict) names them: parts of the agent that
    #: are neither actor nor critic, which the method leaves out of the pathways (BCQ's VAE)
    dense_by_default: ClassVar[tuple[str, ...]] = ()
    #: the algorithm replaces weight tensors itself (``param.data = ...``, TRPO): the masks
    #: are applied again before the next forward pass whenever that happened
    weights_written_directly: ClassVar[bool] = False
    _dormant_checks: int = 0
    #: masks per layer (the leading dimension of ``weight_mask``); one per task in multi-task
    n_pathways: int = 1
    task_router: TaskRouter | None = None
    #: class defaults for a stock policy turned into a pathway policy in place (``sparsify``)
    weight_init: str = "default"

    def __init__(
        self,
        *args: Any,
        sparsity: SparsitySpec = DEFAULT_SPARSITY,
        mask_init: str = "erk",
        n_tasks: int = 1,
        task_id_fn: TaskIdFunction | None = None,
        weight_init: str = "default",
        **kwargs: Any,
    ) -> None:
        # Set before the stock constructor, which calls ``_build``.
        self.sparsity = validate_sparsity(sparsity)
        self.mask_init = validate_mask_init(mask_init)
        self.weight_init = validate_weight_init(weight_init)
        if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1:
            raise ValueError(f"n_tasks must be a positive int, got {n_tasks!r}")
        if task_id_fn is not None and not callable(task_id_fn):
            raise ValueError(f"task_id_fn must be a callable observation -> task ids, got {task_id_fn!r}")
        self.n_pathways = n_tasks
        self.task_id_fn = task_id_fn
        super().__init__(*args, **kwargs)

    @property
    def n_tasks(self) -> int:
        return self.n_pathways

    def task_ids(self, observation: th.Tensor) -> th.Tensor:
        """The task of every observation of a batch (as the features extractor receives it)."""
        if self.n_pathways == 1:
            return th.zeros(observation.shape[0], dtype=th.long, device=observation.device)
        function = self.task_id_fn or OneHotTaskId(self.n_pathways)
        return function(observation)

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
        self._finish_networks()
        self._setup_pathways()

    def _finish_networks(self) -> None:
        """Changes to the stock networks before they are masked: the ``weight_init``, after
        which every target network is a copy of its online network again."""
        if self.weight_init == "default":
            return
        for path in self._online_paths():
            for module in self.get_submodule(path).modules():
                if isinstance(module, (th.nn.Linear, th.nn.Conv2d)):
                    th.nn.init.xavier_normal_(module.weight)
        for target_path, online_path in self.pathway_targets.items():
            self.get_submodule(target_path).load_state_dict(self.get_submodule(online_path).state_dict())

    def _setup_pathways(self, choose_masks: MaskChooser | None = None) -> None:
        """
        Mask the networks (and their targets) and install the initial masks.

        :param choose_masks: network pathway (all masks full) -> its masks; by default a
            random mask with the ``mask_init`` layer shares
        """
        for path in self._online_paths():
            mask_recurrent_layers(self.get_submodule(path), self.n_pathways)  # their weights count in the check
        self._check_covers_outputs()  # check the sparsity before touching the other layers
        for path in [*self._online_paths(), *self.pathway_targets]:
            for layer in convert_to_masked(self.get_submodule(path), self.n_pathways):
                if self.weights_written_directly:
                    layer.remask_replaced_weights()
        if self.n_pathways > 1:
            self._setup_task_routing()
        for network in self.pathways().values():
            network.set_masks(choose_masks(network) if choose_masks else self._random_masks(network))

    def _setup_task_routing(self) -> None:
        """Route every network's samples by task: each features extractor sets the tasks of the
        batch it receives, which the network's masked layers then read. The per-task weight
        copies join the optimizer of their layer's weight."""
        self.task_router = router = TaskRouter(self.n_pathways)
        router.follow_features_extractors(self, self.task_ids)
        for module in self.modules():
            if isinstance(module, MultiTaskMaskedLinear):
                module.task_router = router
        online = [layer for path in self._online_paths() for layer in self.get_submodule(path).modules()]
        for optimizer in self.optimizers():
            for group in optimizer.param_groups:
                held = {id(parameter) for parameter in group["params"]}
                for layer in online:
                    if (
                        isinstance(layer, MultiTaskMaskedLinear)
                        and id(layer.weight) in held
                        and id(layer.task_weight) not in held
                    ):
                        group["params"].append(layer.task_weight)
                        held.add(id(layer.task_weight))

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
            return {
                name: 1.0 - self.sparsity.get(name, 0.0 if name in self.dense_by_default else DEFAULT_SPARSITY)
                for name in names
            }
        return {name: 1.0 if name in self.dense_by_default else 1.0 - self.sparsity for name in names}

    def optimizers(self) -> list[th.optim.Optimizer]:
        """Every optimizer held by the policy or its networks (``policy.optimizer``,
        ``policy.actor.optimizer``, ...)."""
        found: list[th.optim.Optimizer] = []
        for module in self.modules():
            optimizer = module.__dict__.get("optimizer")
            if isinstance(optimizer, th.optim.Optimizer) and optimizer not in found:
                found.append(optimizer)
        return found

    def _network_layers(self) -> dict[str, tuple[dict[str, th.nn.Module], list[list[str]]]]:
        """Network name -> (its prunable layers keyed by weight name, masked or still stock;
        its selection groups: one per ensemble member, then the rest; none for one group)."""
        claimed: set[int] = set()
        result: dict[str, tuple[dict[str, th.nn.Module], list[list[str]]]] = {}
        for name, paths in self.pathway_network_paths().items():
            layers: dict[str, th.nn.Module] = {}
            for path in paths:
                for sub_name, module in self.get_submodule(path).named_modules(prefix=path):
                    if isinstance(module, MaskedWeightMixin):
                        weight_name = module.parameter_name(sub_name)
                    elif type(module) in MASKED_LAYER_TYPES:
                        weight_name = f"{sub_name}.weight"
                    else:
                        continue
                    if id(module) not in claimed:
                        claimed.add(id(module))
                        layers[weight_name] = module
            if not layers:
                continue
            members = [f"{path}." for path in self.pathway_ensembles().get(name, [])]
            groups: list[list[str]] = []
            if members:
                groups = [[layer for layer in layers if layer.startswith(member)] for member in members]
                rest = [layer for layer in layers if not layer.startswith(tuple(members))]
                groups = [group for group in [*groups, rest] if group]
            result[name] = (layers, groups)
        return result

    def _check_covers_outputs(self) -> None:
        """Refuse, before any layer is touched, a sparsity that leaves an output unit of some
        layer without an input (see :func:`~sb3_pathways.masking.selection.check_covers_outputs`)."""
        keep_ratios = self.keep_ratios()
        for name, (layers, groups) in self._network_layers().items():
            shapes: dict[str, th.Size] = {
                layer_name: layer.get_parameter("weight").shape for layer_name, layer in layers.items()
            }
            sizes = {layer_name: shape.numel() for layer_name, shape in shapes.items()}
            keep = keep_count(sum(sizes.values()), keep_ratios[name])
            groups = groups or [list(layers)]
            group_sizes = [sum(sizes[layer_name] for layer_name in group) for group in groups]
            budgets = proportional_budgets(group_sizes, keep)
            for group, budget in zip(groups, budgets):
                where = f"network {name!r}" + (f" (its part {group[0]}, ...)" if len(groups) > 1 else "")
                check_covers_outputs([shapes[layer_name] for layer_name in group], budget, where)

    def pathways(self) -> dict[str, NetworkPathway]:
        """The pathway of every network, keyed by network name: built once, with the
        optimizers looked up again at every call (an algorithm may replace them)."""
        built = self.__dict__.get("_pathways")
        if built is None:
            built = self._build_pathways()
            self.__dict__["_pathways"] = built
        optimizers = self.optimizers()
        for network in built.values():
            network.optimizers = optimizers
        return built

    def _build_pathways(self) -> dict[str, NetworkPathway]:
        keep_ratios = self.keep_ratios()
        optimizers = self.optimizers()
        by_layer: dict[int, tuple[NetworkPathway, str]] = {}
        result: dict[str, NetworkPathway] = {}
        for name, (modules, groups) in self._network_layers().items():
            layers = {layer_name: module for layer_name, module in modules.items() if isinstance(module, MaskedWeightMixin)}
            if not layers:
                continue
            pathway = NetworkPathway(name, keep_ratios[name], layers, optimizers=optimizers, groups=groups)
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

    def set_training_mode(self, mode: bool) -> None:
        super().set_training_mode(mode)
        if not mode:
            self.check_dormant_weights()

    def check_dormant_weights(self) -> None:
        """
        Raise if a dormant weight is no longer an exact zero. SB3 algorithms leave training
        mode after every ``train()`` call, so an algorithm that writes its weights past the
        gradient mask is stopped early instead of training a dense network silently: a
        replaced weight tensor (``param.data = ...``) is checked at once, in-place writes at
        the first check and every ``FULL_DORMANT_CHECK_EVERY`` checks after it. Policies
        with ``weights_written_directly`` apply their masks again instead.
        """
        self._dormant_checks += 1
        layers = self._online_masked_layers()
        pointers = [layer.weight.data_ptr() for _, layer in layers]
        if pointers == self.__dict__.get("_weight_pointers") and self._dormant_checks % FULL_DORMANT_CHECK_EVERY != 1:
            return
        for name, layer in layers:
            if self.weights_written_directly:
                layer.remask_if_replaced()
            elif not layer.dormant_weights_are_zero():
                raise RuntimeError(
                    f"dormant weights of {name} are no longer zero after a training step of "
                    f"{type(self).__module__}.{type(self).__qualname__}: the algorithm wrote its weights past the "
                    "gradient mask. Pathway policies support the algorithms that sb3_pathways registers "
                    "(sb3_pathways.registry); a policy whose algorithm replaces weight tensors itself sets "
                    "weights_written_directly = True."
                )
        self.__dict__["_weight_pointers"] = [layer.weight.data_ptr() for _, layer in layers]

    def _online_masked_layers(self) -> list[tuple[str, MaskedWeightMixin]]:
        """(weight name, layer) of every masked layer of the online networks, found once."""
        found = self.__dict__.get("_online_layer_list")
        if found is None:
            found = [(name, layer) for network in self.pathways().values() for name, layer in network.layers.items()]
            self.__dict__["_online_layer_list"] = found
        return found

    def masked_layer(self, weight_name: str) -> MaskedWeightMixin:
        """The masked layer that holds a weight, e.g. ``"critic.qf0.0.weight"`` (or the mask
        holder of an LSTM weight, ``"lstm_actor.weight_hh_l0"``)."""
        path, _, parameter = weight_name.rpartition(".")
        module: th.nn.Module | None = self.get_submodule(path)
        if isinstance(module, MaskedLSTM):
            module = module.masked_weight(parameter)
        elif parameter != "weight":
            module = None
        if not isinstance(module, MaskedWeightMixin):
            raise KeyError(f"{weight_name!r} is not a masked weight of {type(self).__name__}")
        return module

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(sparsity=self.sparsity, mask_init=self.mask_init, weight_init=self.weight_init)
        if self.n_pathways > 1:
            data.update(n_tasks=self.n_pathways, task_id_fn=self.task_id_fn)
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
