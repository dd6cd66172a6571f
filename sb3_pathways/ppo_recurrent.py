"""RecurrentPPO (sb3-contrib): pathway policies on its LSTM actor-critic policies, its loss
for scoring (PPO's over padded sequences, the padding left out) and its training passes.

Networks: ``"actor"`` (features extractor, ``lstm_actor``, policy MLP, action head) and
``"critic"`` (features extractor, ``lstm_critic`` or the linear ``critic`` that replaces it,
value MLP, value head); with ``shared_lstm=True`` the one LSTM belongs to the actor. The LSTM
weight matrices are masked like linear layers (:class:`~sb3_pathways.masking.layers.MaskedLSTM`),
so the LSTM keeps its fused forward pass. DAPD scores whole sequences: the newest steps of
every environment, with the LSTM states stored at their start.
"""

from __future__ import annotations

from typing import Any

import torch as th
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import (
    RecurrentActorCriticCnnPolicy,
    RecurrentActorCriticPolicy,
    RecurrentMultiInputActorCriticPolicy,
)

from sb3_pathways.actor_critic import OnPolicyPathways
from sb3_pathways.deploy.flops import on_policy_passes
from sb3_pathways.policies import DeploymentSpec, PathwayPolicyMixin
from sb3_pathways.ppo import ppo_gradient_steps, ppo_loss
from sb3_pathways.registry import AlgorithmSpec, pathway_aliases, register_algorithm
from sb3_pathways.scoring.objectives import same_loss_for_every_network


class RecurrentPathways(OnPolicyPathways):
    """``RecurrentActorCriticPolicy`` layout: PPO's networks with the LSTMs in them. The masks
    are installed once the stock constructor has built the LSTMs (after ``_build``)."""

    lstm_actor: th.nn.LSTM
    lstm_critic: th.nn.LSTM | None
    critic: th.nn.Linear | None
    lstm_hidden_state_shape: tuple[int, int, int]
    lstm_kwargs: dict[str, Any]
    shared_lstm: bool
    enable_critic_lstm: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._finish_networks()
        self._setup_pathways()

    def _build(self, lr_schedule: Any) -> None:
        # the stock constructor builds the LSTMs after ``_build``: no weight init or masks yet
        super(PathwayPolicyMixin, self)._build(lr_schedule)  # type: ignore[misc]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # the stock policy leaves its LSTM settings out, so ``Policy.load`` would rebuild it
        # with the default LSTM
        data = super()._get_constructor_parameters()
        n_layers, _, hidden_size = self.lstm_hidden_state_shape
        data.update(
            lstm_hidden_size=hidden_size,
            n_lstm_layers=n_layers,
            shared_lstm=self.shared_lstm,
            enable_critic_lstm=self.enable_critic_lstm,
            lstm_kwargs=self.lstm_kwargs,
        )
        return data

    def pathway_network_paths(self) -> dict[str, list[str]]:
        networks = super().pathway_network_paths()
        networks["actor"].insert(1, "lstm_actor")
        critic_input = [path for path in ("lstm_critic", "critic") if getattr(self, path) is not None]
        networks["critic"][1:1] = critic_input
        return networks

    def deployment_spec(self) -> DeploymentSpec:
        raise NotImplementedError(
            f"export_pathway supports feed-forward policies; {type(self).__name__} carries an LSTM state from one "
            "step to the next. Use model.predict(obs, state=..., episode_start=...) to run it."
        )

    def pathway_chains(self) -> dict[str, list[tuple[str, ...]]]:
        # the chains after the LSTMs (their outputs are the MLPs' inputs)
        return {"actor": [("mlp_extractor.policy_net", "action_net")], "critic": [("mlp_extractor.value_net", "value_net")]}


class PathwayPolicy(RecurrentPathways, RecurrentActorCriticPolicy):
    """RecurrentPPO policy (``MlpLstmPolicy``) with pathway masks on the actor and the critic,
    LSTMs included."""


class PathwayCnnPolicy(RecurrentPathways, RecurrentActorCriticCnnPolicy):
    """RecurrentPPO ``CnnLstmPolicy`` with pathway masks (convolutions and LSTMs included)."""


class PathwayMultiInputPolicy(RecurrentPathways, RecurrentMultiInputActorCriticPolicy):
    """RecurrentPPO ``MultiInputLstmPolicy`` with pathway masks."""


def recurrent_ppo_objective(model: RecurrentPPO, batch: Any) -> dict[str, th.Tensor]:
    """RecurrentPPO: PPO's loss over the real steps of padded sequences, the LSTMs starting
    from the states stored at each sequence's start; one loss shared by every network."""
    loss = ppo_loss(model, batch, valid=batch.mask > 1e-8, lstm_states=batch.lstm_states, episode_starts=batch.episode_starts)
    return same_loss_for_every_network(model, loss)


SPEC = register_algorithm(
    AlgorithmSpec(
        RecurrentPPO,
        policies=pathway_aliases(PathwayPolicy, PathwayCnnPolicy, PathwayMultiInputPolicy),
        objective=recurrent_ppo_objective,
        training_passes=on_policy_passes,
        gradient_steps_per_update=ppo_gradient_steps,
    )
)
