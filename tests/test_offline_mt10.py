"""MetaWorld MT10 offline: scripted datasets, the collect command, the offline benchmark."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("metaworld")
minari = pytest.importorskip("minari")

import sb3_pathways  # noqa: E402
from sb3_pathways.cli import main as cli_main  # noqa: E402
from sb3_pathways.multitask import MT10_TASKS, make_mt10_env  # noqa: E402
from sb3_pathways.offline import BCQ, IQL, SingleShotPathways, collect_scripted, load_minari  # noqa: E402

STEPS = 20  # per episode: enough to check the columns, short enough for the suite


@pytest.fixture(scope="module")
def datasets_path(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(path))
        yield path


@pytest.fixture(scope="module")
def mt10_env():
    env = make_mt10_env()
    yield env
    env.close()


@pytest.fixture(scope="module")
def mt10_dataset(datasets_path) -> str:
    return collect_scripted("MT10", episodes_per_task=2, quality="medium-expert", max_episode_steps=STEPS, seed=3)


def test_collected_dataset_has_every_task_with_its_id_success_and_one_hot(mt10_dataset: str, mt10_env) -> None:
    assert mt10_dataset == "sb3_pathways/mt10/medium-expert-2ep-v0"
    data = load_minari(mt10_dataset)
    assert len(data) == 10 * 2 * STEPS
    assert np.bincount(data.task_ids).tolist() == [2 * STEPS] * 10
    np.testing.assert_array_equal(data.observations[:, -10:].argmax(axis=1), data.task_ids)
    np.testing.assert_array_equal(data.next_observations[:, -10:].argmax(axis=1), data.task_ids)
    assert data.successes is not None and set(np.unique(data.successes)) <= {0.0, 1.0}
    assert data.terminations.sum() == 0  # MetaWorld episodes end on the time limit only
    data.check_spaces(mt10_env.observation_space, mt10_env.action_space)
    data.check_tasks(10)
    assert np.abs(data.actions).max() <= 1.0
    description = minari.load_dataset(mt10_dataset).storage.metadata["description"]
    assert "medium-expert episodes of the scripted policies" in description and "reach-v3" in description


def test_collect_command_writes_the_scripted_policy_s_episodes(datasets_path, capsys: pytest.CaptureFixture) -> None:
    from metaworld.policies import ENV_POLICY_MAP

    args = ["collect", "MT10", "--episodes-per-task", "1", "--max-episode-steps", "5", "--dataset-id", "tests/expert5-v0"]
    assert cli_main(args) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "tests/expert5-v0"
    data = load_minari("tests/expert5-v0")
    assert len(data) == 50
    for task, name in enumerate(MT10_TASKS):  # expert actions are the scripted policy's, clipped
        rows = data.task_ids == task
        scripted = np.stack([ENV_POLICY_MAP[name]().get_action(o[:-10].copy()) for o in data.observations[rows]])
        np.testing.assert_allclose(data.actions[rows], np.clip(scripted, -1, 1), rtol=1e-6, atol=1e-6)
    assert cli_main(args) == 2
    assert "pass overwrite=True" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"quality must be one of \['expert', 'medium', 'medium-expert'\]"):
        collect_scripted("MT10", quality="noisy")
    with pytest.raises(ValueError, match="benchmark must be one of"):
        collect_scripted("MT3")


def test_pathway_iql_learns_from_the_mt10_dataset_with_a_pathway_per_task(mt10_dataset: str, mt10_env) -> None:
    model = IQL("PathwayPolicy", mt10_env, dataset=mt10_dataset, batch_size=64, seed=0, device="cpu",
                policy_kwargs=dict(n_tasks=10, sparsity=0.95, net_arch=[64, 64]))  # fmt: skip
    model.learn(5, callback=SingleShotPathways())
    masks = sb3_pathways.get_masks(model)
    assert all(mask.shape[0] == 10 for mask in masks.values())
    for network in model.policy.pathways().values():
        for task in range(10):
            assert sum(int(mask[task].sum()) for mask in network.masks().values()) == network.n_keep
    with pytest.raises(ValueError, match=r"do not fit n_tasks=5"):
        IQL("PathwayPolicy", mt10_env, dataset=mt10_dataset, policy_kwargs=dict(n_tasks=5))


def test_offline_benchmark_records_success_and_the_costs_of_one_task(mt10_dataset: str, load_benchmark) -> None:
    offline = load_benchmark("offline")
    records = [
        offline.run("iql", method, mt10_dataset, 0, steps=4, eval_freq=2, eval_episodes=1, sparsity=0.95, eval_episode_steps=5)
        for method in ("pathway", "mhmt")
    ]
    pathway, mhmt = records
    assert [step for step, _ in pathway["curve"]] == [2, 4]
    assert set(pathway["success"]) == set(MT10_TASKS) and 0.0 <= pathway["mean_success"] <= 1.0
    dense_actor = mhmt["per_task_costs"]["actor"]["weights"]
    assert dense_actor == 49 * 256 + 256 * 256 + 256 * 4  # MHMT: the shared layers and one head
    assert pathway["per_task_costs"]["actor"]["weights"] == pytest.approx(0.05 * dense_actor, rel=0.01)
    assert pathway["per_task_costs"]["actor"]["flops"] < 0.1 * mhmt["per_task_costs"]["actor"]["flops"]
    largest_reward = float(np.abs(load_minari(mt10_dataset).rewards).max())
    assert pathway["reward_scale"] == "auto" and pathway["reward_factor"] == pytest.approx(1 / largest_reward)
    assert offline.run_name("iql", "mt", "expert", 10, 0, 100) == "iql_mt_expert10ep_seed0_100.json"
    assert offline.run_name("iql", "mt", "expert", 10, 0, 100, 1.0) == "iql_mt_expert10ep_seed0_100_rewards1.0.json"
    assert offline.run_name("iql", "mt", "expert", 10, 0, 100, None, 1e-3) == "iql_mt_expert10ep_seed0_100_lr0.001.json"
    assert pathway["learning_rate"] == 3e-4 == offline.default_learning_rate("iql")
    parser = offline.build_parser()
    assert parser.parse_args(["--reward-scale", "0.1"]).reward_scale == 0.1
    assert parser.parse_args(["--reward-scale", "auto"]).reward_scale == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--reward-scale", "-2"])
    assert parser.parse_args(["--learning-rate", "1e-3"]).learning_rate == 1e-3
    for bad in ("0", "-1e-3", "nan", "fast"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--learning-rate", bad])
    table, summary = offline.summarise(records)
    assert "| IQL | sb3_pathways/mt10/medium-expert-2ep-v0 | 400 | 4 | scaled to max 1 | pathway | 1 |" in table
    assert summary[f"iql/{mt10_dataset}/4/scaled to max 1/mhmt"]["weights_per_task"] == sum(
        entry["weights"] for entry in mhmt["per_task_costs"].values()
    )
    faster = dict(pathway, learning_rate=1e-3)
    older = {key: value for key, value in pathway.items() if key != "learning_rate"}  # made before the rate was recorded
    table, _ = offline.summarise([faster, older])
    assert "| 4 | scaled to max 1, lr 0.001 | pathway | 1 |" in table and "| 4 | scaled to max 1 | pathway | 1 |" in table


def test_offline_benchmark_bcq_pathways_keep_the_vae_dense_unless_the_method_says_sparse_vae(
    mt10_dataset: str, mt10_env, load_benchmark, capsys: pytest.CaptureFixture[str]
) -> None:
    offline = load_benchmark("offline")
    assert offline.pathway_sparsity("bcq", "pathway", 0.9) == 0.9
    assert offline.pathway_sparsity("bcq", "pathway-sparse-vae", 0.9) == {"vae": 0.9, "actor": 0.9, "critic": 0.9}
    with pytest.raises(SystemExit):
        offline.main(["--algos", "iql", "--methods", "pathway-sparse-vae", "--steps", "1"])
    assert "makes ['vae'] sparse, which iql does not have" in capsys.readouterr().err
    dense = BCQ("MlpPolicy", mt10_env, dataset=mt10_dataset, seed=0)
    dense_weights = {
        name: sum(p.numel() for p in getattr(dense.policy, name).parameters() if p.dim() == 2) for name in ("vae", "actor")
    }
    for method, vae_share in (("pathway", 1.0), ("pathway-sparse-vae", 0.05)):
        record = offline.run(
            "bcq", method, mt10_dataset, 0, steps=2, eval_freq=2, eval_episodes=1, sparsity=0.95, eval_episode_steps=5
        )
        assert record["network_sparsity"] == pytest.approx({"vae": 1.0 - vae_share, "actor": 0.95, "critic": 0.95})
        costs = record["per_task_costs"]
        assert costs["vae"]["weights"] == pytest.approx(vae_share * dense_weights["vae"], rel=0.01)
        assert costs["actor"]["weights"] == pytest.approx(0.05 * dense_weights["actor"], rel=0.01)
