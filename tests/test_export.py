"""export_pathway: dead-neuron removal, equality with the masked policy, saving and ONNX."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch as th
from conftest import AlgoCase, FixedImageEnv, observations
from sb3_contrib import RecurrentPPO
from stable_baselines3 import DQN, PPO, SAC
from torch import nn

from sb3_pathways import export_onnx, export_pathway
from sb3_pathways.deploy import CSRLinear, numpy_runtime, prune_action_network, remove_dead_neurons
from sb3_pathways.deploy.chains import LinearStage
from sb3_pathways.deploy.numpy_runtime import NumpyLayer, numpy_activation


def _hand_made_stages() -> list[LinearStage]:
    """3 inputs -> 4 hidden -> 3 hidden -> 2 outputs, ReLU between layers.

    - input 2 is read by no live weight;
    - hidden-1 neuron 0 has no live input (a constant ReLU(bias) read by hidden-2 neuron 0);
    - hidden-1 neuron 3 has inputs but no live weight reads it (a dead end: 2 live weights);
    - hidden-2 neuron 2 has inputs (from neuron 1) but no output (a dead end: 1 live weight).
    """
    generator = th.Generator().manual_seed(0)
    masks = [
        th.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=th.bool),
        th.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [0, 1, 0, 0]], dtype=th.bool),
        th.tensor([[1, 1, 0], [0, 1, 0]], dtype=th.bool),
    ]
    stages = []
    for index, mask in enumerate(masks):
        weight = th.randn(mask.shape, generator=generator) * mask
        bias = th.rand(mask.shape[0], generator=generator) + 0.5  # positive: the constant neuron is not zero
        stages.append(LinearStage(weight, mask, bias, [nn.ReLU()] if index < 2 else []))
    return stages


def _run(stages: list[LinearStage], inputs: th.Tensor) -> th.Tensor:
    for stage in stages:
        inputs = stage.activate(inputs @ stage.weight.T + stage.bias)
    return inputs


def test_dead_neuron_removal_on_a_hand_made_mask() -> None:
    inputs = th.randn(32, 3, generator=th.Generator().manual_seed(1))
    original = _hand_made_stages()
    expected = _run(original, inputs)
    pruned = remove_dead_neurons(_hand_made_stages())
    assert [stage.weight.shape for stage in pruned.stages] == [(2, 2), (2, 2), (2, 2)]
    assert pruned.input_index is not None and pruned.input_index.tolist() == [0, 1]
    assert pruned.widths_before == [4, 3, 2]
    assert pruned.dead_end_weights == 2 + 1 + 1  # neuron 3's inputs, neuron 2's input, the constant's output weight
    assert sum(int(stage.mask.sum()) for stage in original) - pruned.dead_end_weights == 8
    assert th.allclose(_run(pruned.stages, inputs[:, pruned.input_index]), expected, atol=1e-6)


def test_csr_layer_keeps_torchs_beta_notice_from_users() -> None:
    # torch warns once per process: a fresh one, where the CSR layer is the first sparse tensor
    code = "import torch; from sb3_pathways.deploy import CSRLinear; CSRLinear(torch.eye(4), torch.zeros(4))"
    result = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Sparse CSR tensor support is in beta" not in result.stderr


def test_csr_layer_computes_the_dense_product() -> None:
    weight = th.randn(6, 5) * (th.rand(6, 5) < 0.3)
    bias = th.randn(6)
    inputs = th.randn(4, 5)
    layer = CSRLinear(weight, bias)
    assert th.allclose(layer(inputs.t().contiguous()).t(), inputs @ weight.T + bias, atol=1e-6)
    assert th.equal(layer.to_dense_linear().weight, weight)


def _choose_the_widest_split(dense: object, dense_inputs: object, candidates: list[object], inputs: object) -> object:
    """A stand-in for the timed choice: the split layer with most dense rows when there is
    one (a hidden layer), else the CSR layer."""
    return candidates[-1]


@pytest.mark.parametrize("sparse_layers", ["never", "always", "auto", "split"])
def test_exported_pathway_computes_the_policy_actions(
    case: AlgoCase, sparse_layers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not case.exportable:
        pytest.skip("refused with a clear error (test_recurrent_policies_are_not_exported, test_offline.py)")
    model = case.make(sparsity=0.9, net_arch=[64, 64])
    model.learn(200)
    split = sparse_layers == "split"
    if split:  # every hidden layer of the NumPy runtime split into dense rows + CSR
        monkeypatch.setattr(numpy_runtime, "fastest_if_faster", _choose_the_widest_split)
        sparse_layers = "auto"
    exported = export_pathway(model, sparse_layers=sparse_layers)  # type: ignore[arg-type]
    # dead-end neurons (no path to the output) are removed: as many as the analysis counts
    assert exported.layer_widths() == [stage.weight.shape[0] for stage in prune_action_network(model).stages]
    obs = observations(model, 64)
    expected, _ = model.predict(obs, deterministic=True)
    actions = exported(th.as_tensor(obs)).numpy()
    # the NumPy runtime of the same pathway, whole batches and one observation at a time
    on_numpy = exported.to_numpy(sparse_layers=sparse_layers)  # type: ignore[arg-type]
    numpy_actions = on_numpy(obs)
    single_actions = np.stack([on_numpy(observation) for observation in obs[:4]])
    single_expected = np.stack([model.predict(observation, deterministic=True)[0] for observation in obs[:4]])
    for result, reference in ((actions, expected), (numpy_actions, expected), (single_actions, single_expected)):
        assert result.shape == reference.shape
        if np.issubdtype(reference.dtype, np.integer):
            assert np.array_equal(result, reference)
        else:
            assert np.abs(result - reference).max() <= 1e-5
    if sparse_layers != "auto":
        assert all(layer.sparse == (sparse_layers == "always") for layer in on_numpy.layers)
    elif split:
        # a quarter of every hidden layer's rows dense, the output layer (not reordered) CSR
        assert [layer.dense_rows for layer in on_numpy.layers[:-1]] == [width // 4 for width in exported.layer_widths()[:-1]]
        assert on_numpy.layers[-1].dense_rows == 0 and on_numpy.layers[-1].sparse
    if case.id in ("DQN", "QRDQN"):
        network = model.policy.q_net if case.id == "DQN" else model.policy.quantile_net
        with th.no_grad():
            values = network(th.as_tensor(obs)).reshape(len(obs), -1)
            assert (exported.network_output(th.as_tensor(obs)) - values).abs().max() <= 1e-5


def test_recurrent_policies_are_not_exported() -> None:
    model = RecurrentPPO(
        "PathwayPolicy", "CartPole-v1", n_steps=32, batch_size=16, device="cpu", policy_kwargs=dict(lstm_hidden_size=16)
    )
    with pytest.raises(
        NotImplementedError, match="export_pathway supports feed-forward policies; PathwayPolicy carries an LSTM"
    ):
        export_pathway(model)


def test_exported_cnn_pathway_preprocesses_images() -> None:
    model = PPO("PathwayCnnPolicy", FixedImageEnv(), n_steps=32, batch_size=16, device="cpu", seed=0)
    model.learn(32)
    obs = observations(model, 8)
    exported = export_pathway(model)
    expected, _ = model.predict(obs, deterministic=True)
    assert np.array_equal(exported(th.as_tensor(obs)).numpy(), expected)
    with th.no_grad():
        logits = model.policy.action_net(
            model.policy.mlp_extractor.forward_actor(model.policy.extract_features(th.as_tensor(obs)))
        )
    assert (exported.network_output(th.as_tensor(obs)) - logits).abs().max() <= 1e-5
    assert not any(type(module).__name__.startswith("Masked") for module in exported.modules())
    with pytest.raises(
        ValueError, match="to_numpy supports Box and Discrete observation spaces read by SB3's FlattenExtractor"
    ):
        exported.to_numpy()


@pytest.fixture(scope="module")
def sac_export() -> tuple[SAC, th.Tensor]:
    model = SAC("PathwayPolicy", "Pendulum-v1", device="cpu", seed=0, learning_starts=50, policy_kwargs=dict(sparsity=0.8))
    model.learn(100)
    return model, th.as_tensor(observations(model, 16))


@pytest.mark.parametrize("sparse_layers", ["never", "always"])
def test_exported_pathway_saves_and_traces(sac_export: tuple[SAC, th.Tensor], sparse_layers: str) -> None:
    model, obs = sac_export
    exported = export_pathway(model, sparse_layers=sparse_layers)  # type: ignore[arg-type]
    expected = exported(obs)
    buffer = io.BytesIO()
    th.save(exported, buffer)
    buffer.seek(0)
    assert th.equal(th.load(buffer, weights_only=False)(obs), expected)
    traced = th.jit.trace(exported, obs[:2])
    assert (traced(obs) - expected).abs().max() <= 1e-6
    assert (exported.to_dense()(obs) - expected).abs().max() <= 1e-6


def test_onnx_round_trip(sac_export: tuple[SAC, th.Tensor], tmp_path: pytest.TempPathFactory) -> None:
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    model, obs = sac_export
    exported = export_pathway(model, sparse_layers="always")
    path = export_onnx(exported, tmp_path / "pathway.onnx")  # type: ignore[operator]
    session = onnxruntime.InferenceSession(str(path))
    actions = session.run(None, {"observation": obs.numpy()})[0]
    assert actions.shape == (16, 1)
    assert np.abs(actions - exported(obs).numpy()).max() <= 1e-5


def test_dead_end_count_matches_the_export(sac_export: tuple[SAC, th.Tensor]) -> None:
    model, _ = sac_export
    pruned = prune_action_network(model)
    exported = export_pathway(model, sparse_layers="never")
    assert exported.layer_widths() == [stage.weight.shape[0] for stage in pruned.stages]
    masks = [
        model.policy.actor.latent_pi[0].weight_mask[0],
        model.policy.actor.latent_pi[2].weight_mask[0],
        model.policy.actor.mu.weight_mask[0],
    ]
    assert sum(int(stage.mask.sum()) for stage in pruned.stages) == sum(int(m.sum()) for m in masks) - pruned.dead_end_weights


def test_export_errors_name_the_argument(sac_export: tuple[SAC, th.Tensor]) -> None:
    model, _ = sac_export
    with pytest.raises(ValueError, match=r"sparse_layers must be one of \('auto', 'never', 'always'\), got 'sometimes'"):
        export_pathway(model, sparse_layers="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"task must be an int in \[0, 0\], got 3"):
        export_pathway(model, task=3)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        export_pathway(model, batch_size=0)
    with pytest.raises(TypeError, match="sparsify"):
        export_pathway(SAC("MlpPolicy", "Pendulum-v1", device="cpu"))


def test_numpy_pathway_pickles_and_checks_its_arguments(sac_export: tuple[SAC, th.Tensor]) -> None:
    model, obs = sac_export
    exported = export_pathway(model, sparse_layers="never")
    on_numpy = exported.to_numpy(sparse_layers="always")
    restored = pickle.loads(pickle.dumps(on_numpy))
    assert np.array_equal(restored(obs.numpy()), on_numpy(obs.numpy()))
    assert on_numpy.stored_weights() == sum(int((layer.weight != 0).sum()) for layer in exported.layers)
    with pytest.raises(ValueError, match=r"sparse_layers must be one of \('auto', 'never', 'always'\), got 'often'"):
        exported.to_numpy(sparse_layers="often")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        exported.to_numpy(batch_size=0)


@pytest.mark.parametrize("sparse_layers", ["never", "always"])
def test_numpy_pathway_runs_large_batches_in_tiles(sac_export: tuple[SAC, th.Tensor], sparse_layers: str) -> None:
    model, _ = sac_export
    obs = observations(model, 23)
    expected, _ = model.predict(obs, deterministic=True)
    exported = export_pathway(model)
    whole = exported.to_numpy(sparse_layers=sparse_layers, tile_size=64)  # type: ignore[arg-type]
    tiled = exported.to_numpy(sparse_layers=sparse_layers, tile_size=5)  # type: ignore[arg-type]
    assert (whole.tile_size, tiled.tile_size) == (64, 5)
    # 4 full tiles and a last one of 3 samples, each sample's action where predict puts it
    assert np.abs(tiled(obs) - expected).max() <= 1e-5
    assert np.abs(tiled(obs) - whole(obs)).max() <= 1e-6
    for tile_size in (0, 2.5, True):
        with pytest.raises(ValueError, match=f"tile_size must be a positive int, got {tile_size!r}"):
            exported.to_numpy(tile_size=tile_size)  # type: ignore[arg-type]


def test_split_numpy_layer_computes_the_dense_product() -> None:
    generator = np.random.default_rng(0)
    weight = (generator.standard_normal((12, 9)) * (generator.random((12, 9)) < 0.3)).astype(np.float32)
    weight[0] = 0.0  # a row without any weight, among the dense rows
    bias = generator.standard_normal(12).astype(np.float32)
    columns = generator.standard_normal((9, 5)).astype(np.float32)
    expected = weight @ columns + bias[:, None]
    for dense_rows in (0, 1, 5, 12):
        layer = NumpyLayer(weight, bias, sparse=True, dense_rows=dense_rows)
        assert np.abs(layer(columns) - expected).max() <= 1e-5, dense_rows
        assert layer.stored_weights() == dense_rows * 9 + int(np.count_nonzero(weight[dense_rows:]))
    order = numpy_runtime.rows_by_active_weights(weight)
    counts = np.count_nonzero(weight[order], axis=1)
    assert np.all(np.diff(counts) <= 0) and counts[-1] == 0
    for dense_rows, sparse in ((13, True), (-1, True), (2, False)):
        with pytest.raises(ValueError, match=rf"dense_rows must be in \[0, 12\] .* got {dense_rows}"):
            NumpyLayer(weight, bias, sparse=sparse, dense_rows=dense_rows)


def test_numpy_activations_match_torch() -> None:
    values = th.linspace(-3, 3, 25).reshape(5, 5)
    for module in (nn.ReLU(), nn.Tanh(), nn.ELU(), nn.SiLU(), nn.LeakyReLU(0.1)):
        result = numpy_activation(module)(values.numpy().copy())
        assert np.abs(result - module(values).numpy()).max() <= 1e-6, type(module).__name__


def test_numpy_pathway_one_hot_encodes_discrete_observations() -> None:
    model = DQN("PathwayPolicy", "FrozenLake-v1", learning_starts=0, device="cpu", seed=0, policy_kwargs=dict(sparsity=0.8))
    model.learn(50)
    observations = np.arange(16)
    expected, _ = model.predict(observations, deterministic=True)
    on_numpy = export_pathway(model).to_numpy(sparse_layers="always")
    assert np.array_equal(on_numpy(observations), expected)
    assert on_numpy(np.int64(5)) == model.predict(np.int64(5), deterministic=True)[0]
